//! The app thread's side of a request: an [`AppIo`] that holds the connection, does the socket
//! I/O itself while the socket is ready, and otherwise hands it to the connection's task; and,
//! once the response is out, a [`Resume`] that looks for the connection's next request before
//! the connection goes back to its task.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use event_listener::{Event as Notify, EventListener, Listener as _};
use wsgi_core::{AppIo, AppIoError, Connection, Environ, Event, Job, ResponseHead, ServerInfo};

use super::conn::{send, would_block};
use super::{Shared, Socket};
use crate::{
    BodyStep, Exchange, hand_over, http_date, in_io, read_available, read_rest, recv_into,
};

/// Writes queued for the task while the app thread owns the connection; at most this many (each
/// one response piece) wait at once before the application blocks (backpressure).
const MAX_QUEUED: usize = 4;

/// From the app thread to the connection's task. The channel is unbounded so that `Done`
/// never blocks; writes are bounded by [`MAX_QUEUED`] instead.
pub(super) enum Up {
    /// Write these bytes (the socket would not take them right away).
    Write(Vec<u8>),
    /// Answer [`Down::Writable`] once everything queued is written and the socket can take more
    /// (the app thread then sends a file itself: disk reads stay off the runtime's threads).
    WaitWritable,
    /// Wait until the socket is readable and read what it has.
    Read,
    /// The exchange is over; the connection is in [`LinkState::conn`].
    Done,
}

/// From the connection's task to the app thread: the answer to [`Up::Read`] or
/// [`Up::WaitWritable`].
pub(super) enum Down {
    Data(Vec<u8>),
    Eof,
    Writable,
    Failed,
}

/// What the task and the app thread share about the exchange in progress.
pub(super) struct LinkState {
    /// The connection on its way back to the task.
    conn: Mutex<Option<Connection>>,
    /// Writes queued for the task and not yet done: while any is, the app thread must queue
    /// too (bytes go out in order).
    pub(super) queued: AtomicUsize,
    /// The client is gone (a write failed or timed out): the response cannot be completed.
    failed: AtomicBool,
    /// Notified when a queued write is done or the exchange fails.
    progress: Notify,
}

impl LinkState {
    /// Marks the client gone and wakes an app thread waiting to queue.
    pub(super) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        self.progress.notify(usize::MAX);
    }

    /// Counts a queued write as done.
    pub(super) fn written(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.progress.notify(usize::MAX);
    }

    fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(super) fn take_conn(&self) -> Option<Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The task's ends of a connection's channels to its app threads (their ends are the
/// connection's [`Line`]), made at its first request and reused.
pub(super) struct Link {
    pub(super) up: Receiver<Up>,
    pub(super) down_tx: Sender<Down>,
    pub(super) state: Arc<LinkState>,
    /// The graceful timeout's cut, listened for once per connection rather than per request.
    pub(super) on_cut: EventListener,
}

/// Makes a connection's [`Link`] and [`Line`], at its first request.
pub(super) fn link<S: Socket>(
    socket: Arc<S>,
    shared: Arc<Shared>,
    info: ServerInfo,
) -> (Link, Arc<Line<S>>) {
    let (up_tx, up) = async_channel::unbounded();
    let (down_tx, down) = async_channel::bounded(1);
    let state = Arc::new(LinkState {
        conn: Mutex::new(None),
        queued: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        progress: Notify::new(),
    });
    let on_cut = shared.cut.listen();
    let line = Line { socket, up: up_tx, down, state: state.clone(), shared, info };
    (Link { up, down_tx, state, on_cut }, Arc::new(line))
}

impl Drop for Link {
    fn drop(&mut self) {
        // The task is gone: an app thread still using the connection must not wait for it.
        self.state.fail();
    }
}

/// What the app threads hold of a connection from one request to the next: made with its
/// [`Link`], shared by every [`ChannelIo`] and [`Resume`] of it.
pub(super) struct Line<S> {
    socket: Arc<S>,
    up: Sender<Up>,
    down: Receiver<Down>,
    state: Arc<LinkState>,
    shared: Arc<Shared>,
    info: ServerInfo,
}

impl<S: Socket> Line<S> {
    /// Hands the connection back to its task, which waits for its next bytes. Never waits
    /// (the channel is unbounded). The task may be gone (the connection was cut): then there
    /// is nobody to tell.
    fn give_back(&self, conn: Connection) {
        *self.state.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
        let _ = self.up.try_send(Up::Done);
    }

    /// Queues bytes for the task to write, counted in [`LinkState::queued`] until it has.
    /// `false` if the task is gone.
    fn write_later(&self, bytes: Vec<u8>) -> bool {
        self.state.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self.up.try_send(Up::Write(bytes)).is_ok();
        if !sent {
            self.state.written();
        }
        sent
    }
}

/// The start of a request's exchange: the job for an app thread.
pub(super) fn job<S: Socket>(conn: Connection, line: Arc<Line<S>>, environ: Environ) -> Job {
    let ex = Exchange::new(&environ, line.shared.config.access_log.as_ref());
    Job { environ, io: Box::new(ChannelIo { conn: Some(conn), line, ex }) }
}

/// What an app thread takes from the queue.
pub(super) enum Work {
    /// A request its connection's task read.
    Job(Job),
    /// A connection whose response just went out, queued behind the work already waiting.
    /// By its turn a busy client's next request has usually arrived: the app thread reads
    /// and serves it at once, and the connection's task is not woken between the two
    /// requests. Otherwise the connection goes back to its task.
    Resume(Box<dyn Advance>),
}

/// A [`Resume`] with its socket type erased, so that one queue carries every kind.
pub(super) trait Advance: Send {
    /// Reads what the socket has, without blocking. Returns the job for the connection's next
    /// request if it is complete, and otherwise hands the connection back to its task.
    fn advance(self: Box<Self>) -> Option<Job>;
}

/// A connection between two requests, on its way through the app threads' queue. Dropped
/// unused (by [`Advance::advance`], or with the queue), it gives the connection back to its
/// task.
pub(super) struct Resume<S: Socket>(Option<(Connection, Arc<Line<S>>)>);

impl<S: Socket> Advance for Resume<S> {
    fn advance(mut self: Box<Self>) -> Option<Job> {
        let (conn, line) = self.0.as_mut()?;
        // A failure or a shutdown is the task's to handle (what arrives during a shutdown is
        // answered with `Connection: close`; an idle connection closes). No writes can be
        // queued: a connection is resumed only with none, and nothing writes meanwhile.
        if line.state.is_failed() || line.shared.is_shutting_down() {
            return None;
        }
        read_available(&*line.socket, conn);
        conn.set_date(http_date());
        loop {
            match conn.poll_event() {
                Ok(Some(Event::Request(head))) => {
                    let environ = Environ::new(head, &line.info);
                    let (conn, line) = self.0.take()?;
                    return Some(job(conn, line, environ));
                }
                // A body nobody read is drained by the connection, not reported.
                Ok(Some(Event::Body(_) | Event::EndOfBody)) => {}
                Ok(Some(Event::Closed) | None) => return None,
                Err(e) => {
                    // The answer goes out through the task, which then closes the connection.
                    let mut out = Vec::new();
                    conn.send_error(&e, &mut out);
                    line.write_later(out);
                    return None;
                }
            }
        }
    }
}

impl<S: Socket> Drop for Resume<S> {
    fn drop(&mut self) {
        if let Some((conn, line)) = self.0.take() {
            line.give_back(conn);
        }
    }
}

/// The connection, lent to an application for one request.
pub(super) struct ChannelIo<S: Socket> {
    conn: Option<Connection>,
    line: Arc<Line<S>>,
    ex: Exchange,
}

impl<S: Socket> ChannelIo<S> {
    /// The client is gone: the response cannot be completed.
    fn lost(&mut self) -> AppIoError {
        self.line.state.fail();
        self.ex.out.clear();
        if let Some(c) = self.conn.as_mut() {
            c.abort();
        }
        AppIoError::Disconnected
    }

    /// Queues bytes for the task to write; blocks while [`MAX_QUEUED`] writes wait already
    /// (backpressure: a client that does not read stops the application).
    fn queue(&mut self, bytes: Vec<u8>) -> Result<(), AppIoError> {
        let state = &self.line.state;
        while state.queued.load(Ordering::Acquire) >= MAX_QUEUED && !state.is_failed() {
            let listener = state.progress.listen();
            if state.queued.load(Ordering::Acquire) < MAX_QUEUED || state.is_failed() {
                break;
            }
            listener.wait();
        }
        if state.is_failed() || !self.line.write_later(bytes) {
            return Err(self.lost());
        }
        Ok(())
    }

    /// Sends a message to the task (the channel is unbounded: this never waits).
    fn send(&mut self, message: Up) -> Result<(), AppIoError> {
        match self.line.up.try_send(message) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.lost()),
        }
    }

    /// Asks the task something and waits for its answer.
    fn ask(&mut self, message: Up) -> Result<Down, AppIoError> {
        self.send(message)?;
        match self.line.down.recv_blocking() {
            Ok(Down::Failed) | Err(_) => Err(self.lost()),
            Ok(answer) => Ok(answer),
        }
    }

    /// Writes what the connection produced: straight to the socket while it takes bytes and
    /// nothing is queued ahead, the rest through the task.
    fn flush(&mut self) -> Result<(), AppIoError> {
        if self.ex.out.is_empty() {
            return Ok(());
        }
        in_io(|| self.write_out())
    }

    /// [`flush`](Self::flush)'s writes.
    fn write_out(&mut self) -> Result<(), AppIoError> {
        // `queued` first: the task marks a failure before it counts the failed write as done.
        let queued = self.line.state.queued.load(Ordering::Acquire);
        if self.line.state.is_failed() {
            return Err(self.lost());
        }
        let mut written = 0;
        if queued == 0 {
            while written < self.ex.out.len() {
                match send(&*self.line.socket, &self.ex.out[written..]) {
                    Ok(n) => written += n,
                    Err(e) if would_block(&e) => break,
                    Err(_) => return Err(self.lost()),
                }
            }
        }
        if written == self.ex.out.len() {
            self.ex.out.clear();
            return Ok(());
        }
        let rest = if written == 0 {
            std::mem::take(&mut self.ex.out)
        } else {
            let rest = self.ex.out[written..].to_vec();
            self.ex.out.clear();
            rest
        };
        self.queue(rest)
    }

    /// Reads what the socket has into the connection: directly if it has bytes now, otherwise
    /// through the task, which waits for them.
    fn fill(&mut self) -> Result<(), AppIoError> {
        if self.line.state.is_failed() {
            return Err(self.lost());
        }
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        let socket = &*self.line.socket;
        let direct = match recv_into(socket, conn, rustix::net::RecvFlags::DONTWAIT) {
            Ok(0) => Ok(true), // the connection was told
            Ok(n) => {
                // What else has arrived makes the same piece.
                read_rest(socket, conn, n);
                Ok(true)
            }
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(_) => Err(()),
        };
        match direct {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(()) => return Err(self.lost()),
        }
        let answer = self.ask(Up::Read)?;
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        match answer {
            Down::Data(mut bytes) => {
                let n = bytes.len();
                hand_over(conn, &mut bytes, Instant::now());
                read_rest(&*self.line.socket, conn, n);
            }
            Down::Eof => conn.handle_eof(Instant::now()),
            Down::Writable | Down::Failed => return Err(self.lost()),
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `offset` with `sendfile`, on the app thread, waiting
    /// through the task while writes are queued ahead or the socket is full.
    fn send_file_range(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<(), AppIoError> {
        let mut at = offset;
        let end = offset.saturating_add(len);
        while at < end {
            // `queued` first, as in `flush`.
            let queued = self.line.state.queued.load(Ordering::Acquire);
            if self.line.state.is_failed() {
                return Err(self.lost());
            }
            if queued == 0 {
                let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(1 << 30);
                match rustix::fs::sendfile(&*self.line.socket, file, Some(&mut at), want) {
                    // The file is shorter than it was: the body cannot be completed.
                    Ok(0) => return Err(self.lost()),
                    Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::AGAIN) => {}
                    Err(_) => return Err(self.lost()),
                }
            }
            // Writes are queued ahead, or the socket is full: the task says when it can take
            // more. The file is sent here, on the app thread, before this returns.
            match self.ask(Up::WaitWritable)? {
                Down::Writable => {}
                _ => return Err(self.lost()),
            }
        }
        Ok(())
    }
}

impl<S: Socket> AppIo for ChannelIo<S> {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        self.ex.before_body(conn)?;
        self.flush()?;
        loop {
            let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
            match self.ex.next_body(conn) {
                Ok(BodyStep::Ready(piece)) => return Ok(piece),
                Err(e) => {
                    let _ = self.flush();
                    return Err(AppIoError::BadRequest(e));
                }
                Ok(BodyStep::NeedInput) => in_io(|| self.fill())?,
            }
        }
    }

    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        let shutting_down = self.line.shared.is_shutting_down();
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        Ok(self.ex.head(conn, head, shutting_down)?)
    }

    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        let sent = self.ex.body(conn, chunk);
        let flushed = self.flush();
        sent?;
        flushed
    }

    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<bool, AppIoError> {
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        let external = self.ex.external(conn, len)?;
        // The head and any chunk prefix go first.
        self.flush()?;
        in_io(|| self.send_file_range(file, offset, external.send))?;
        // Its suffix goes with the next flush (the end, or the next piece of body).
        self.ex.external_sent(&external)?;
        Ok(true)
    }

    fn send_end(&mut self) -> Result<(), AppIoError> {
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        let ended = self.ex.end(conn);
        let flushed = self.flush();
        ended?;
        flushed
    }

    fn abort(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.abort();
        }
    }
}

impl<S: Socket> Drop for ChannelIo<S> {
    fn drop(&mut self) {
        let _ = self.flush();
        let Some(mut conn) = self.conn.take() else { return };
        self.ex.finish(&mut conn);
        let line = &self.line;
        let access_log = line.shared.config.access_log.as_ref();
        let peer = line.info.peer();
        let state = &line.state;
        let goes_on = !conn.is_closed()
            && !state.is_failed()
            && state.queued.load(Ordering::Acquire) == 0
            && !line.shared.is_shutting_down();
        if goes_on {
            // Logged first, so that the log keeps the connection's order: the next request may
            // start on another app thread. (A sink that blocks thus delays this client's next
            // request, as the access log's docs warn: it is on the request's path.)
            self.ex.log(access_log, peer);
            let resume = Resume(Some((conn, line.clone())));
            // The queue is unbounded: this never waits. Closed (the server is gone), the
            // resume is dropped, which gives the connection back to its task.
            let _ = line.shared.jobs.try_send(Work::Resume(Box::new(resume)));
        } else {
            line.give_back(conn);
            // Last, so that nothing the callback does can keep the connection from its task.
            // The bytes queued for the task may still be on their way to the client.
            self.ex.log(access_log, peer);
        }
    }
}
