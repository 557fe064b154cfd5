//! A blocking driver for [`wsgi_core`]: serves an [`Application`] on TCP and Unix listeners with
//! std sockets and threads.
//!
//! # Design
//!
//! ```text
//!   poller thread (mio)                          app threads (bounded pool)
//!   ───────────────────                          ──────────────────────────
//!   listeners ─accept─▶ idle connections          app.serve(next_job):
//!                       │ readable                  next_job: take a ready connection,
//!                       └──────▶ ready queue ──────▶  read what it has (non-blocking);
//!   deadlines: keep-alive idle close,                 a complete head → Job for the app;
//!   408 for a head that stalls               ◀──────  otherwise back to the poller
//!                        ◀── after the response: idle again (see below)
//! ```
//!
//! After its response a connection goes back to the ready queue: under load its next request
//! has usually arrived by the time an app thread takes it, and one read costs less than the
//! poller's round trip; when it has not, the thread hands it to the poller. (While one thread
//! serves a Python application, the poller takes it instead: see below.)
//!
//! On Linux a TCP listener sets `TCP_DEFER_ACCEPT`: the kernel queues a connection for `accept`
//! only once its first bytes have arrived, so the poller hands a new connection straight to the
//! ready queue, with no registration and readiness round trip first. A client that connects and
//! stays silent is held by the kernel (for about a second, then accepted and treated as below).
//! An app thread that finds the ready queue empty accepts such a connection itself before it
//! waits, so that under a stream of new connections most skip the hand-off and its wake-up.
//!
//! Idle keep-alive connections sit in the poller and cost no thread; an app thread is busy only
//! from a complete request head to the end of its response. A slow client sending its head
//! never pins an app thread: each readable burst is consumed without blocking and the
//! connection goes back to the poller. While a request runs, body reads and response writes
//! block the app thread (that is the backpressure: a slow client slows its own request, and the
//! server never buffers a whole body), bounded by [`ServerConfig::io_timeout`].
//!
//! For an application that runs one thread at a time (Python with its GIL; see
//! [`Application::serializes_threads`]) the app threads take requests through a
//! [`wsgi_driver::Gate`]: one thread serves while requests finish promptly (two take turns while
//! they are very short), and the others join in when requests block, so the GIL is not handed
//! from thread to thread on every request. While one thread serves and other requests wait, a
//! response is ended as soon as its body is complete and its last bytes are held for the poller
//! to write, several at a time, so that the thread running the application does not pay each
//! client's wake-up; what a slow reader's socket cannot take is written by the poller as room
//! appears (within the I/O timeout), never by an app thread between requests. The connections
//! then wait in the poller, which reads each next request before it hands the connection over,
//! so that between requests the one thread running the application makes no system call for
//! them (a request body beyond the first read, and a response not held, it still reads and
//! writes itself).
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use adapter_std::{Listener, ServerConfig, start};
//! use wsgi_core::{Job, ResponseHead};
//!
//! fn hello(mut job: Job) {
//!     let head = ResponseHead::from_wsgi("200 OK", [("Content-Length", "6")]).unwrap();
//!     let _ = job.io.send_head(&head).and_then(|()| job.io.send_body(b"hello\n"));
//!     let _ = job.io.send_end();
//! }
//!
//! let listener = Listener::bind_tcp("127.0.0.1:8000")?;
//! let server = start(hello, vec![listener], ServerConfig::default())?;
//! // ... later, from any thread:
//! server.handle().shutdown();
//! server.join(Duration::from_secs(30));
//! # Ok::<(), std::io::Error>(())
//! ```

mod conn;
mod net;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use wsgi_core::{Application, Connection, HttpDate, ServerInfo};

pub use net::Listener;
pub use wsgi_driver::{AccessLog, AccessRecord, ServerConfig};
use wsgi_driver::{Gate, read_available};

use conn::{Conn, Step};
use net::Stream;

/// State shared by the poller and the app threads.
pub(crate) struct Shared {
    config: ServerConfig,
    ready_tx: Sender<Conn>,
    idle_tx: Sender<Conn>,
    waker: Waker,
    shutting_down: AtomicBool,
    /// Connections owned by an app thread right now (held ones among them).
    busy: AtomicUsize,
    /// Which app threads take requests.
    gate: Gate,
    /// Kept-alive connections whose last response is held back (see [`Shared::hold`]).
    held: Mutex<Held>,
    /// The listeners, which the poller accepts on and an app thread with nothing to do too
    /// (see [`Shared::accept_waiting`]); emptied (so closed) when a shutdown starts.
    listeners: RwLock<Vec<Listening>>,
}

/// A listener and what its connections' [`ServerInfo`] starts from.
struct Listening {
    listener: Listener,
    template: Template,
}

/// Connections whose last response waits to be written with others'.
#[derive(Default)]
struct Held {
    conns: Vec<Conn>,
    /// The poller was woken to write them.
    woken: bool,
}

/// When this many responses are held, the poller is woken to write them.
const HOLD_MAX: usize = 8;

/// While responses are held, the poller writes them at least this often.
const HOLD_FOR: Duration = Duration::from_micros(500);

/// While a response may be held (see [`Shared::may_hold`]) but none is, the poller looks at
/// least this often, so that one held while it sleeps waits no longer.
const HOLD_WITHIN: Duration = Duration::from_millis(10);

impl Shared {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn date(&self) -> HttpDate {
        wsgi_driver::http_date()
    }

    /// Takes back a connection after its response. While one app thread takes the requests
    /// ([`Gate::solo`]), one with nothing buffered goes to the poller, which reads the next
    /// request for that thread ([`read_for`](Self::read_for)). Otherwise it goes back to the
    /// app threads, which look for the next request at once: under load it has usually arrived
    /// by the time a thread takes the connection, and a read costs less than the poller's round
    /// trip (two `epoll_ctl`, a wake-up). When it has not, that thread hands it to the poller.
    pub(crate) fn ready(&self, c: Conn) {
        if c.conn.is_idle() && self.gate.solo() {
            self.to_idle(c);
        } else {
            // Still busy: it goes straight back to the app threads, not through the poller.
            let _ = self.ready_tx.send(c);
        }
    }

    /// Reads, in the poller, what a connection it hands to the app threads has received, when
    /// one app thread takes the requests ([`Gate::solo`]): that thread then finds the request
    /// buffered ([`Conn::advance`]), and the application, which waits for it, waits for no
    /// read. The poller runs beside it, on a core that has room.
    fn read_for(&self, c: &mut Conn) {
        if self.gate.solo() {
            read_available(&c.stream, &mut c.conn);
        }
    }

    /// Hands a connection from the poller to the app threads.
    fn to_ready(&self, c: Conn) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        let _ = self.ready_tx.send(c);
    }

    /// Hands a busy connection to the poller to wait for its next bytes. It stops counting as
    /// busy once it is on its way: a shutdown that finds no connection busy and none idle ends
    /// the poller, and one counted out before it was sent could be dropped unsent.
    pub(crate) fn to_idle(&self, c: Conn) {
        self.to_poller([c]);
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// Hands connections no app thread counts as busy to the poller, with one wake-up for
    /// them all.
    fn to_poller(&self, conns: impl IntoIterator<Item = Conn>) {
        let mut sent = false;
        for c in conns {
            sent |= self.idle_tx.send(c).is_ok();
        }
        if sent {
            let _ = self.waker.wake();
        }
    }

    /// Notes that a busy connection closed: a graceful shutdown waits for the count to reach 0.
    pub(crate) fn done(&self) {
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether a finished response may be held back rather than written now: one app thread
    /// takes the requests of an application that runs one thread at a time ([`Gate::solo`]),
    /// and another connection is waiting for it.
    pub(crate) fn may_hold(&self) -> bool {
        self.gate.solo() && !self.ready_tx.is_empty()
    }

    /// Holds a kept-alive connection whose response end is in [`Conn::unsent`], for the
    /// poller to write.
    ///
    /// Writing a response to a client that sleeps until it arrives costs the writer the
    /// client's wake-up (on a small VM some 15 µs, a third of a Flask request) and, on
    /// loopback, the client's side of TCP too. With one app thread serving, the application
    /// waits through both. So while other requests wait, finished responses are held and the
    /// poller writes them: woken once [`HOLD_MAX`] are held (one wake-up for them all), at
    /// least every [`HOLD_FOR`] while some are held (and within [`HOLD_WITHIN`] of the
    /// first), and whenever it wakes anyway. An app thread
    /// with nothing left to serve writes them itself. Under such load the rate rises, and the
    /// latency falls with it: the requests waiting are served sooner.
    pub(crate) fn hold(&self, c: Conn) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.conns.push(c);
        if held.conns.len() >= HOLD_MAX && !held.woken {
            held.woken = true;
            drop(held);
            let _ = self.waker.wake();
        }
    }

    /// Accepts one connection on listener `i`, ready to go to the app threads or to the
    /// poller; with whether its request has (nearly always) arrived already
    /// ([`Listener::defers_accept`]). `None` when none is waiting, or the listener is gone.
    fn accept(&self, i: usize) -> Option<(Conn, bool)> {
        let listeners = self.listeners.read().unwrap_or_else(PoisonError::into_inner);
        let Listening { listener, template } = listeners.get(i)?;
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if stream.configure(self.config.io_timeout).is_err() {
                        continue;
                    }
                    let info = template.connection(&stream, peer);
                    let conn = Connection::new(self.config.core.clone(), Instant::now());
                    return Some((Conn::new(stream, conn, info), listener.defers_accept()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: none waiting. Out of descriptors and the like: stop for now, the
                // next readiness retries.
                Err(_) => return None,
            }
        }
    }

    /// For an app thread that has nothing to serve: a new connection whose request has
    /// arrived, taken from a listener straight away. Under a load of new connections this
    /// spares each one the poller's hand-off and the wake-up of an app thread; the poller
    /// still accepts whatever arrives while the app threads are busy.
    fn accept_waiting(&self) -> Option<Conn> {
        if self.is_shutting_down() {
            return None;
        }
        let count = self.listeners.read().unwrap_or_else(PoisonError::into_inner).len();
        (0..count).find_map(|i| {
            let (c, deferred) = self.accept(i)?;
            if deferred {
                self.busy.fetch_add(1, Ordering::AcqRel);
                Some(c)
            } else {
                // Its request may still be on the way: the poller waits for it.
                self.to_poller([c]);
                None
            }
        })
    }

    /// Writes the held responses without waiting, and gives `hand_back` the connections that
    /// go back to the poller (the poller adds them itself, an app thread sends them with one
    /// wake-up for them all), counting them out of `busy` once handed (as
    /// [`to_idle`](Self::to_idle) does). What a client slow to read leaves is among them: the
    /// poller writes it as room appears (no app thread waits on that client: one that did,
    /// between requests, would stall an application that runs one thread at a time).
    fn write_held(&self, hand_back: impl FnOnce(Vec<Conn>)) {
        let conns = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.conns.is_empty() {
                return;
            }
            held.woken = false;
            std::mem::take(&mut held.conns)
        };
        let mut back = Vec::new();
        for mut c in conns {
            match c.send_unsent() {
                // Still busy (a pipelined request is buffered): straight to the app threads.
                conn::Sent::All if !c.conn.is_idle() => {
                    let _ = self.ready_tx.send(c);
                }
                conn::Sent::All => back.push(c),
                conn::Sent::Partly => {
                    c.write_deadline = Some(Instant::now() + self.config.io_timeout);
                    back.push(c);
                }
                conn::Sent::Failed => {
                    c.stream.shutdown();
                    self.done();
                }
            }
        }
        let count = back.len();
        hand_back(back);
        self.busy.fetch_sub(count, Ordering::AcqRel);
    }
}

/// A way to stop a running server from any thread.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Starts a graceful shutdown: stop accepting, close idle connections, let requests in
    /// flight finish (their responses say `Connection: close`). [`Server::join`] waits for it.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        let _ = self.shared.waker.wake();
    }
}

/// A running server.
pub struct Server {
    handle: Handle,
    poller: Option<JoinHandle<()>>,
    app_threads: Vec<JoinHandle<()>>,
    grace_deadline: Arc<Mutex<Option<Instant>>>,
}

impl Server {
    /// Returns a handle that can stop the server.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits for the server to stop: after [`Handle::shutdown`], for the requests in flight to
    /// finish, but no longer than `grace` (connections still busy then are cut).
    pub fn join(mut self, grace: Duration) {
        *self.grace_deadline.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Instant::now() + grace);
        let _ = self.handle.shared.waker.wake();
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
        for t in self.app_threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts serving `app` on `listeners`: one poller thread and `config.threads` app threads.
///
/// # Errors
///
/// An error setting up the poller or the listeners.
pub fn start<A: Application>(
    app: A,
    listeners: Vec<Listener>,
    config: ServerConfig,
) -> io::Result<Server> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
    let (idle_tx, idle_rx) = crossbeam_channel::unbounded();
    let threads = config.threads.max(1);
    for (i, l) in listeners.iter().enumerate() {
        l.prepare(config.io_timeout)?;
        poll.registry().register(&mut SourceFd(&l.as_raw_fd()), Token(i), Interest::READABLE)?;
    }
    let count = listeners.len();
    let listeners = listeners
        .into_iter()
        .map(|listener| Listening { template: Template::new(&listener, &config), listener })
        .collect();
    let shared = Arc::new(Shared {
        config,
        ready_tx,
        idle_tx,
        waker,
        shutting_down: AtomicBool::new(false),
        busy: AtomicUsize::new(0),
        gate: Gate::new(threads, app.serializes_threads()),
        held: Mutex::default(),
        listeners: RwLock::new(listeners),
    });
    let grace_deadline = Arc::new(Mutex::new(None));
    // The poller holds the only sender: when it stops, every app thread's select wakes and ends.
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let app = Arc::new(app);
    let app_threads = (0..threads)
        .map(|i| {
            let app = app.clone();
            let shared = shared.clone();
            let ready_rx = ready_rx.clone();
            let stop_rx = stop_rx.clone();
            std::thread::Builder::new()
                .name(format!("wsgi-app-{i}"))
                .spawn(move || app_thread(&*app, &shared, &ready_rx, &stop_rx))
        })
        .collect::<io::Result<Vec<_>>>()?;
    drop(ready_rx);
    let poller = {
        let shared = shared.clone();
        let grace_deadline = grace_deadline.clone();
        std::thread::Builder::new().name("wsgi-poller".to_owned()).spawn(move || {
            Poller::new(poll, count, shared.clone(), idle_rx, grace_deadline).run();
            // However the poller stopped, the listeners close with it.
            shared.listeners.write().unwrap_or_else(PoisonError::into_inner).clear();
            drop(stop_tx);
        })?
    };
    Ok(Server { handle: Handle { shared }, poller: Some(poller), app_threads, grace_deadline })
}

fn app_thread<A: Application>(
    app: &A,
    shared: &Arc<Shared>,
    ready_rx: &Receiver<Conn>,
    stop_rx: &Receiver<()>,
) {
    let mut seat = shared.gate.seat();
    let mut take = || {
        loop {
            let mut accepted = None;
            if ready_rx.is_empty() {
                // Nothing else to do: this thread writes what it held, and takes a new
                // connection itself if one waits.
                shared.write_held(|back| shared.to_poller(back));
                accepted = shared.accept_waiting();
            }
            let c = match accepted {
                Some(c) => c,
                None => crossbeam_channel::select! {
                    recv(ready_rx) -> c => c.ok()?,
                    recv(stop_rx) -> _ => return None,
                },
            };
            match c.advance(shared) {
                Step::Job(job) => return Some(job),
                Step::Idle(c) => shared.to_idle(*c),
                Step::Closed => shared.done(),
            }
        }
    };
    app.serve(&mut || seat.next(&mut take));
}

const WAKER: Token = Token(usize::MAX);

/// A listener's [`ServerInfo`] (scheme, root path, trusted proxies), made once so that each
/// accepted connection adds only its addresses.
struct Template {
    info: ServerInfo,
    /// The listener's address when it is every connection's local address (bound to one IP),
    /// which spares a `getsockname` per connection; `None` for a wildcard address or a Unix
    /// socket.
    local: Option<SocketAddr>,
}

impl Template {
    fn new(listener: &Listener, config: &ServerConfig) -> Template {
        let local = listener.local_addr().filter(|a| !a.ip().is_unspecified());
        let info = ServerInfo::new(local, None)
            .with_scheme(config.scheme)
            .with_root_path(&config.root_path)
            .with_trusted_proxies(config.trusted_proxies.clone());
        Template { info, local }
    }

    fn connection(&self, stream: &Stream, peer: Option<SocketAddr>) -> ServerInfo {
        let local = self.local.or_else(|| stream.local_addr());
        self.info.clone().with_addresses(local, peer)
    }
}

/// How long, at shutdown, a connection that has sent nothing yet may take to send its first
/// request.
const FRESH_GRACE: Duration = Duration::from_secs(1);

/// The poller thread: accepts, holds idle connections, enforces their deadlines.
struct Poller {
    poll: Poll,
    /// How many listeners there are (in [`Shared::listeners`]) until a shutdown closes them:
    /// their tokens, and the least connection token.
    listeners: usize,
    shared: Arc<Shared>,
    idle_rx: Receiver<Conn>,
    idle: HashMap<usize, Conn>,
    next_token: usize,
    grace_deadline: Arc<Mutex<Option<Instant>>>,
}

impl Poller {
    fn new(
        poll: Poll,
        listeners: usize,
        shared: Arc<Shared>,
        idle_rx: Receiver<Conn>,
        grace_deadline: Arc<Mutex<Option<Instant>>>,
    ) -> Poller {
        let next_token = listeners;
        Poller {
            poll,
            listeners,
            shared,
            idle_rx,
            idle: HashMap::new(),
            next_token,
            grace_deadline,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut listening = true;
        let mut shutdown_started: Option<Instant> = None;
        // Its own handle, so that `write_held` can hand connections back to `self`.
        let shared = self.shared.clone();
        loop {
            let timeout = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            let timeout = if self.shared.is_shutting_down() {
                Some(timeout.unwrap_or(Duration::from_millis(50)).min(Duration::from_millis(50)))
            } else {
                timeout
            };
            // While responses are held, the poller looks often enough to write them in time; while
            // one may be held, at least every HOLD_WITHIN.
            let look = if !self
                .shared
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .conns
                .is_empty()
            {
                Some(HOLD_FOR)
            } else if self.shared.gate.solo() && self.shared.busy.load(Ordering::Acquire) > 0 {
                Some(HOLD_WITHIN)
            } else {
                None
            };
            let timeout = match (timeout, look) {
                (Some(t), Some(l)) => Some(t.min(l)),
                (t, l) => t.or(l),
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(i) if i < self.listeners => self.accept(i),
                    Token(t) => self.ready(t),
                }
            }
            shared.write_held(|back| back.into_iter().for_each(|c| self.add_idle(c)));
            while let Ok(c) = self.idle_rx.try_recv() {
                self.add_idle(c);
            }
            self.expire(Instant::now());
            if self.shared.is_shutting_down() {
                if listening {
                    listening = false;
                    let mut listeners =
                        self.shared.listeners.write().unwrap_or_else(PoisonError::into_inner);
                    for l in listeners.iter() {
                        let fd = l.listener.as_raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                    // Closed, not only unwatched: once no process holds the socket, a new
                    // connection is refused at once rather than queued unanswered until exit.
                    // (Connection tokens start past the listeners' and stay there.)
                    listeners.clear();
                }
                // Idle kept-alive connections close now, and busy ones when their response ends.
                // A connection accepted just before the listeners stopped may have its first
                // request on the way: it gets FRESH_GRACE to arrive and is then answered with
                // `Connection: close` rather than dropped unanswered.
                let now = Instant::now();
                let fresh_until = *shutdown_started.get_or_insert(now) + FRESH_GRACE;
                let registry = self.poll.registry();
                self.idle.retain(|_, c| {
                    // The rest of a response still goes out, within the grace period.
                    let keep = (c.requests == 0 && now < fresh_until) || !c.unsent.is_empty();
                    if !keep {
                        let _ = registry.deregister(&mut SourceFd(&c.stream.as_raw_fd()));
                        c.stream.shutdown();
                    }
                    keep
                });
                let deadline = *self.grace_deadline.lock().unwrap_or_else(PoisonError::into_inner);
                let busy = self.shared.busy.load(Ordering::Acquire);
                let done = busy == 0 && self.idle.is_empty();
                if done || deadline.is_some_and(|d| now >= d) {
                    return; // the caller then drops the stop sender, which ends the app threads
                }
            }
        }
    }

    fn accept(&mut self, i: usize) {
        while let Some((mut c, deferred)) = self.shared.accept(i) {
            if deferred {
                // Its first bytes have arrived: straight to an app thread (which hands the
                // connection back here if they are not a whole head yet).
                self.shared.read_for(&mut c);
                self.shared.to_ready(c);
            } else {
                self.add_idle(c);
            }
        }
    }

    fn add_idle(&mut self, c: Conn) {
        if self.shared.is_shutting_down() && c.requests > 0 && c.unsent.is_empty() {
            c.stream.shutdown();
            return;
        }
        let interest = if c.unsent.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1).max(self.listeners);
        let registered = self.poll.registry().register(
            &mut SourceFd(&c.stream.as_raw_fd()),
            Token(token),
            interest,
        );
        if registered.is_ok() {
            self.idle.insert(token, c);
        } else {
            c.stream.shutdown();
        }
    }

    /// An idle connection's socket is ready: the rest of its last response goes out first,
    /// then it goes to the app threads once a request has arrived (in the socket, or already
    /// read with the last one and waiting in the connection).
    fn ready(&mut self, t: usize) {
        let Some(c) = self.idle.get_mut(&t) else { return };
        if !c.unsent.is_empty() {
            match c.send_unsent() {
                conn::Sent::Partly => return, // more when there is room
                conn::Sent::Failed => return self.close_idle(t),
                // Nothing buffered: readable only from now on (bytes that already arrived are
                // reported then).
                conn::Sent::All if c.conn.is_idle() => {
                    let fd = c.stream.as_raw_fd();
                    let registry = self.poll.registry();
                    if registry
                        .reregister(&mut SourceFd(&fd), Token(t), Interest::READABLE)
                        .is_err()
                    {
                        self.close_idle(t);
                    }
                    return;
                }
                conn::Sent::All => {} // a request waits in the connection: hand it over
            }
        }
        if let Some(mut c) = self.take_idle(t) {
            self.shared.read_for(&mut c);
            self.shared.to_ready(c);
        }
    }

    /// Takes an idle connection out of the poller.
    fn take_idle(&mut self, t: usize) -> Option<Conn> {
        let c = self.idle.remove(&t)?;
        let _ = self.poll.registry().deregister(&mut SourceFd(&c.stream.as_raw_fd()));
        Some(c)
    }

    /// Closes an idle connection.
    fn close_idle(&mut self, t: usize) {
        if let Some(c) = self.take_idle(t) {
            c.stream.shutdown();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.idle.values().filter_map(deadline).min()
    }

    /// Closes idle connections past their keep-alive deadline; answers 408 to heads that stalled.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .idle
            .iter()
            .filter(|(_, c)| deadline(c).is_some_and(|d| d <= now))
            .map(|(&t, _)| t)
            .collect();
        for t in expired {
            let Some(mut c) = self.take_idle(t) else { continue };
            if !c.unsent.is_empty() {
                c.stream.shutdown(); // a client that did not read its response in time
                continue;
            }
            c.conn.handle_timeout(now);
            if let Err(e) = c.conn.poll_event() {
                let mut out = Vec::new();
                c.conn.send_error(&e, &mut out);
                let _ = c.stream.set_nonblocking(true);
                let _ = std::io::Write::write_all(&mut c.stream, &out);
            }
            c.stream.shutdown();
        }
    }
}

/// When the poller must act on an idle connection: while the rest of its response waits for
/// room, its write deadline; otherwise the connection's own (keep-alive, a head that stalls).
fn deadline(c: &Conn) -> Option<Instant> {
    if c.unsent.is_empty() { c.conn.poll_timeout() } else { c.write_deadline }
}
