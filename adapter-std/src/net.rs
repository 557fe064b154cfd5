//! Listeners and streams: TCP (IPv4, IPv6) and Unix sockets behind one type each.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::sockopt::Timeout;

/// A listening socket the server accepts connections on.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener (IPv4 or IPv6).
    Tcp(TcpListener),
    /// A Unix stream socket listener, and the path it is bound to.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds a TCP listener, e.g. `"127.0.0.1:8000"` or `"[::1]:8000"`.
    ///
    /// # Errors
    ///
    /// The error from `bind`.
    pub fn bind_tcp(addr: impl ToSocketAddrs) -> io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::bind(addr)?))
    }

    /// Binds a Unix socket at `path`, replacing a stale socket file left there.
    ///
    /// # Errors
    ///
    /// The error from `bind`.
    pub fn bind_unix(path: impl AsRef<Path>) -> io::Result<Listener> {
        let path = path.as_ref();
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            std::fs::remove_file(path)?;
        }
        Ok(Listener::Unix(UnixListener::bind(path)?, path.to_owned()))
    }

    /// Sets how many connections the kernel queues for `accept` before it drops new ones
    /// (std binds with 128; a burst of clients beyond the queue waits a second for a SYN
    /// retransmission). Linux caps it at `net.core.somaxconn`.
    ///
    /// # Errors
    ///
    /// The error from `listen`.
    pub fn set_backlog(&self, backlog: u32) -> io::Result<()> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        match self {
            Listener::Tcp(l) => rustix::net::listen(l, backlog),
            Listener::Unix(l, _) => rustix::net::listen(l, backlog),
        }
        .map_err(io::Error::from)
    }

    /// Returns the TCP address this listener is bound to (`None` for Unix sockets).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Describes the listener for log lines: `http://127.0.0.1:8000` or `unix:/path`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "tcp".to_owned(),
            },
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// Readies the listener to serve: non-blocking, and for TCP on Linux, where an accepted
    /// socket inherits them, `TCP_NODELAY` and the blocking I/O timeout `io_timeout` of its
    /// connections, set once here rather than three system calls per connection.
    pub(crate) fn prepare(&self, io_timeout: Duration) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                #[cfg(target_os = "linux")]
                nix::sys::socket::setsockopt(l, DeferAccept, &DEFER_ACCEPT_SECS)?;
                if TCP_OPTIONS_INHERITED {
                    let timeout = Some(io_timeout.max(MIN_TIMEOUT));
                    rustix::net::sockopt::set_tcp_nodelay(l, true)?;
                    rustix::net::sockopt::set_socket_timeout(l, Timeout::Recv, timeout)?;
                    rustix::net::sockopt::set_socket_timeout(l, Timeout::Send, timeout)?;
                }
                Ok(())
            }
            Listener::Unix(l, _) => l.set_nonblocking(true),
        }
    }

    /// Whether the connections this listener accepts have (nearly always) sent their first
    /// bytes already, so that reading them at once is worth more than waiting for readiness:
    /// TCP on Linux, where [`prepare`](Self::prepare) sets `DeferAccept`.
    pub(crate) fn defers_accept(&self) -> bool {
        matches!(self, Listener::Tcp(_)) && cfg!(target_os = "linux")
    }

    /// Accepts one connection: the stream and its peer's address (TCP only). The caller then
    /// [`configure`](Stream::configure)s it.
    pub(crate) fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, peer)| (Stream::Tcp(s), Some(peer))),
            Listener::Unix(l, _) => Ok((Stream::Unix(l.accept()?.0), None)),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

// `TCP_DEFER_ACCEPT`: the kernel completes a connection's handshake but queues it for
// `accept` only once its first bytes arrive (or, for a client that sends nothing, once the
// period below has passed). A connection the poller accepts then has its request waiting, so it
// goes straight to an app thread instead of through the poller's registration and a readiness
// round trip; a client that connects and stays silent costs the server nothing meanwhile.
#[cfg(target_os = "linux")]
use nix::{libc, setsockopt_impl, sockopt_impl};
#[cfg(target_os = "linux")]
sockopt_impl!(
    /// Linux's `TCP_DEFER_ACCEPT`, in seconds.
    DeferAccept,
    SetOnly,
    libc::IPPROTO_TCP,
    libc::TCP_DEFER_ACCEPT,
    i32
);

/// How long the kernel holds a silent connection back from `accept`. It then queues it anyway,
/// and the head-read deadline applies from there.
#[cfg(target_os = "linux")]
const DEFER_ACCEPT_SECS: i32 = 1;

/// Whether a TCP socket `accept` returns has the listener's `TCP_NODELAY`, `SO_RCVTIMEO` and
/// `SO_SNDTIMEO` (Linux copies the listening socket; a Unix socket's peer is made afresh).
const TCP_OPTIONS_INHERITED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// The shortest I/O timeout: zero would mean none at all.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// An accepted connection's socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// Sets up an accepted stream as its listener's [`prepare`](Listener::prepare) says:
    /// blocking reads and writes bounded by `io_timeout`, no Nagle delay; only what it did not
    /// inherit from the listener.
    pub(crate) fn configure(&self, io_timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(_) if TCP_OPTIONS_INHERITED => Ok(()),
            Stream::Tcp(s) => {
                s.set_nodelay(true)?;
                self.set_timeouts(io_timeout)
            }
            Stream::Unix(_) => self.set_timeouts(io_timeout),
        }
    }

    pub(crate) fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        let timeout = Some(timeout.max(MIN_TIMEOUT));
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
        }
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Unix(_) => None,
        }
    }

    /// Writes what it can of `bytes` without waiting: `Ok(n)` with `n` possibly short, an
    /// error of kind `WouldBlock` if the socket's buffer is full.
    pub(crate) fn send_nonblocking(&self, bytes: &[u8]) -> io::Result<usize> {
        use rustix::net::SendFlags;
        loop {
            match rustix::net::send(self, bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Err(rustix::io::Errno::INTR) => {}
                sent => return sent.map_err(io::Error::from),
            }
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Accepts the connection a client has made to the prepared `listener` and configures it
    /// as the poller does; checks the options every connection gets (blocking, the I/O
    /// timeout) and returns the stream and its peer.
    fn accept_one(listener: &Listener, timeout: Duration) -> (Stream, Option<SocketAddr>) {
        let (stream, peer) = loop {
            match listener.accept() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                accepted => break accepted.unwrap(),
            }
        };
        stream.configure(timeout).unwrap();
        let (read, write) = match &stream {
            Stream::Tcp(s) => (s.read_timeout().unwrap(), s.write_timeout().unwrap()),
            Stream::Unix(s) => (s.read_timeout().unwrap(), s.write_timeout().unwrap()),
        };
        assert_eq!((read, write), (Some(timeout), Some(timeout)));
        assert!(!rustix::fs::fcntl_getfl(&stream).unwrap().contains(rustix::fs::OFlags::NONBLOCK));
        (stream, peer)
    }

    /// However the options get there (inherited from the listener or set per connection), an
    /// accepted stream is blocking, has the I/O timeout and, over TCP, no Nagle delay.
    #[test]
    fn accepted_streams_have_the_connection_options() {
        let timeout = Duration::from_millis(1500);
        let tcp = Listener::bind_tcp("127.0.0.1:0").unwrap();
        tcp.prepare(timeout).unwrap();
        let _client = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let (stream, peer) = accept_one(&tcp, timeout);
        assert!(peer.is_some());
        let Stream::Tcp(s) = &stream else { panic!("not TCP") };
        assert!(s.nodelay().unwrap());

        let path = std::env::temp_dir().join(format!("adapter-std-net-{}", std::process::id()));
        let unix = Listener::bind_unix(&path).unwrap();
        unix.prepare(timeout).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (stream, peer) = accept_one(&unix, timeout);
        assert!(peer.is_none() && matches!(stream, Stream::Unix(_)));
        std::fs::remove_file(&path).unwrap();
    }
}
