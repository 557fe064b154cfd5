//! A smol driver for [`wsgi_core`]: serves an [`Application`] on the caller's smol executor.
//!
//! Each connection is a task on your runtime from accept to close; it holds no thread while it
//! waits, so one process keeps thousands of idle keep-alive or slow connections. The
//! application itself runs on a bounded pool of blocking app threads
//! ([`ServerConfig::threads`]), as WSGI applications expect; request bodies and response bodies
//! move between the two through bounded channels, so a slow client stops its application and
//! nothing buffers a whole body. The driver is [`wsgi_driver::rt`]'s, shared with
//! adapter-tokio; its module documentation describes the design.
//!
//! There is no hidden global executor: [`Server::new`] takes the
//! [`Executor`] to spawn connection tasks on, and you run it (for
//! instance with `smol::block_on(executor.run(...))`, as `wsgi-serve --runtime smol` does on
//! one thread). Sockets and timers use async-io's reactor, smol's own.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use adapter_smol::{Listener, Server, ServerConfig};
//! use async_executor::Executor;
//! use wsgi_core::{Job, ResponseHead};
//!
//! fn hello(mut job: Job) {
//!     if let Ok(head) = ResponseHead::from_wsgi("200 OK", [("Content-Type", "text/plain")]) {
//!         let _ = job.io.send_head(&head).and_then(|()| job.io.send_body(b"Hello!\n"));
//!         let _ = job.io.send_end();
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let executor = Arc::new(Executor::new());
//!     let listener = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 8000))?;
//!     let server = Server::new(executor.clone(), hello, ServerConfig::default())?;
//!     // `server.handle().shutdown()` (from anywhere) stops it gracefully.
//!     async_io::block_on(executor.run(server.serve(vec![Listener::from(listener)])));
//!     Ok(())
//! }
//! ```

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_executor::Executor;
use async_io::{Async, Timer};
use wsgi_core::Application;
use wsgi_driver::rt::{self, Accepted, Acceptor, Direction};

pub use wsgi_driver::rt::Handle;
pub use wsgi_driver::{AccessLog, AccessRecord, ServerConfig};

/// A listening socket: TCP (IPv4 or IPv6) or Unix.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(Async<TcpListener>),
    /// A Unix stream socket listener, and the path it is bound to (removed when dropped).
    Unix(Async<UnixListener>, Option<PathBuf>),
}

impl From<Async<TcpListener>> for Listener {
    fn from(l: Async<TcpListener>) -> Listener {
        Listener::Tcp(l)
    }
}

impl From<Async<UnixListener>> for Listener {
    fn from(l: Async<UnixListener>) -> Listener {
        Listener::Unix(l, None)
    }
}

impl Listener {
    /// Takes over a std TCP listener (for instance one inherited from a supervisor), setting
    /// it non-blocking.
    ///
    /// # Errors
    ///
    /// An error registering the socket with the reactor.
    pub fn from_std_tcp(l: TcpListener) -> io::Result<Listener> {
        Ok(Listener::Tcp(Async::new(l)?))
    }

    /// Takes over a std Unix listener bound to `path`, as [`from_std_tcp`](Self::from_std_tcp).
    ///
    /// # Errors
    ///
    /// An error registering the socket with the reactor.
    pub fn from_std_unix(l: UnixListener, path: Option<PathBuf>) -> io::Result<Listener> {
        Ok(Listener::Unix(Async::new(l)?, path))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Acceptor for Listener {
    type Socket = Stream;

    async fn accept(&self) -> io::Result<Accepted<Stream>> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.get_ref().set_nodelay(true)?;
                let local = s.get_ref().local_addr().ok();
                Ok(Accepted { socket: Stream::Tcp(s), local, peer: Some(peer) })
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok(Accepted { socket: Stream::Unix(s), local: None, peer: None })
            }
        }
    }
}

/// A connected socket: TCP or Unix.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(Async<TcpStream>),
    /// A Unix stream connection.
    Unix(Async<UnixStream>),
}

impl From<Async<TcpStream>> for Stream {
    fn from(s: Async<TcpStream>) -> Stream {
        Stream::Tcp(s)
    }
}

impl From<Async<UnixStream>> for Stream {
    fn from(s: Async<UnixStream>) -> Stream {
        Stream::Unix(s)
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.get_ref().as_fd(),
            Stream::Unix(s) => s.get_ref().as_fd(),
        }
    }
}

impl rt::Socket for Stream {
    async fn ready(&self, direction: Direction) -> io::Result<()> {
        match (self, direction) {
            (Stream::Tcp(s), Direction::Read) => s.readable().await,
            (Stream::Tcp(s), Direction::Write) => s.writable().await,
            (Stream::Unix(s), Direction::Read) => s.readable().await,
            (Stream::Unix(s), Direction::Write) => s.writable().await,
        }
    }

    fn try_io<T>(&self, _: Direction, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        // async-io keeps no readiness cache: each `ready` waits for a fresh event.
        f()
    }
}

/// The [`rt::Runtime`] of a smol executor and async-io's reactor.
#[derive(Clone, Debug)]
pub struct Smol(Arc<Executor<'static>>);

impl rt::Runtime for Smol {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.spawn(task).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        let timer = Timer::at(deadline);
        async move {
            timer.await;
        }
    }
}

/// A server on a smol executor: the app threads plus the connection driver.
#[derive(Debug)]
pub struct Server {
    inner: rt::Server<Smol>,
}

impl Server {
    /// Starts `config.threads` app threads running `app`; connections will be served as tasks
    /// spawned on `executor`, which the caller runs.
    ///
    /// # Errors
    ///
    /// A thread could not be spawned.
    pub fn new<A: Application>(
        executor: Arc<Executor<'static>>,
        app: A,
        config: ServerConfig,
    ) -> io::Result<Server> {
        Ok(Server { inner: rt::Server::new(Smol(executor), app, config)? })
    }

    /// Returns a handle that stops the server gracefully.
    pub fn handle(&self) -> Handle {
        self.inner.handle()
    }

    /// Accepts and serves connections on `listeners` until [`Handle::shutdown`], then lets the
    /// requests in flight finish (at most [`ServerConfig::graceful_timeout`]) and returns.
    pub async fn serve(&self, listeners: Vec<Listener>) {
        self.inner.serve(listeners).await;
    }

    /// Serves one accepted connection until it closes.
    pub async fn serve_connection(&self, stream: impl Into<Stream>) {
        let stream = stream.into();
        let (local, peer) = match &stream {
            Stream::Tcp(s) => (s.get_ref().local_addr().ok(), s.get_ref().peer_addr().ok()),
            Stream::Unix(_) => (None::<SocketAddr>, None),
        };
        self.inner.serve_connection(stream, local, peer).await;
    }
}
