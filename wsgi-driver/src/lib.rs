//! What every [`wsgi_core`] adapter shares.
//!
//! - [`ServerConfig`]: threads, protocol limits, root path, scheme, I/O timeout, access log;
//! - [`AccessRecord`] and [`AccessEntry`]: the access log's view of one request;
//! - [`Exchange`]: the response rules every driver's `AppIo` applies the same way;
//! - [`http_date`]: the `Date` header value, formatted at most once a second per thread;
//! - with the `async` feature, [`rt`]: one connection driver for every async runtime, written
//!   over the small [`rt::Runtime`] trait. adapter-smol and adapter-tokio are that driver plus
//!   an implementation of the trait; a server author on another runtime can write their own.
//!
//! Applications, requests and responses are [`wsgi_core`]'s; nothing here parses HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wsgi_core::{Config, Environ, HttpDate, Scheme, TrustedProxies};

mod exchange;
#[cfg(feature = "async")]
pub mod rt;

pub use exchange::{BodyStep, Exchange};

/// How a server runs: the same fields for every adapter.
#[non_exhaustive]
#[derive(Clone)]
pub struct ServerConfig {
    /// App threads: requests served at once.
    pub threads: usize,
    /// The protocol's limits and deadlines (head and keep-alive timeouts among them).
    pub core: Config,
    /// The path the application is mounted at (`SCRIPT_NAME`).
    pub root_path: String,
    /// `wsgi.url_scheme`.
    pub scheme: Scheme,
    /// The peers whose proxy headers (`Forwarded`, `X-Forwarded-*`) set the client's address,
    /// the scheme, the host and a path prefix; `None` (the default) believes no one. Turn on
    /// [`Config::proxy_protocol`] for a PROXY protocol header instead.
    pub trusted_proxies: Option<Arc<TrustedProxies>>,
    /// How long one read of a request body or one write of a response may wait on the client
    /// before the client is given up on.
    pub io_timeout: Duration,
    /// At shutdown, how long requests in flight have to finish before their connections are
    /// cut (the async adapters; adapter-std takes it as `Server::join`'s argument).
    pub graceful_timeout: Duration,
    /// Called once per finished request, on the app thread, after the response went out.
    pub access_log: Option<AccessLog>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("threads", &self.threads)
            .field("core", &self.core)
            .field("root_path", &self.root_path)
            .field("scheme", &self.scheme)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("io_timeout", &self.io_timeout)
            .field("graceful_timeout", &self.graceful_timeout)
            .field("access_log", &self.access_log.is_some())
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            threads: 8,
            core: Config::default(),
            root_path: String::new(),
            scheme: Scheme::Http,
            trusted_proxies: None,
            io_timeout: Duration::from_secs(60),
            graceful_timeout: Duration::from_secs(30),
            access_log: None,
        }
    }
}

/// The access-log callback: one call per request.
pub type AccessLog = Arc<dyn Fn(&AccessRecord<'_>) + Send + Sync>;

/// What the access log learns of one request.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct AccessRecord<'a> {
    /// The peer's address (`None` for Unix sockets).
    pub peer: Option<std::net::SocketAddr>,
    /// The request method.
    pub method: &'a str,
    /// The request target as sent.
    pub target: &'a str,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: &'a str,
    /// The response status (0 if no response head was sent).
    pub status: u16,
    /// Response body bytes the application produced.
    pub body_bytes: u64,
    /// The Referer header, if sent.
    pub referer: Option<&'a str>,
    /// The User-Agent header, if sent.
    pub user_agent: Option<&'a str>,
    /// From the complete request head to the end of the response.
    pub duration: Duration,
    /// When the request head was complete.
    pub started: SystemTime,
}

/// The request's side of an access-log line, kept by a driver from the request head until the
/// response ends.
#[derive(Debug)]
pub struct AccessEntry {
    method: String,
    target: String,
    version: &'static str,
    referer: Option<String>,
    user_agent: Option<String>,
    status: u16,
    body_bytes: u64,
    start: Instant,
    started: SystemTime,
}

impl AccessEntry {
    /// Starts an entry for the request `environ` describes; the clock starts now.
    pub fn new(environ: &Environ) -> AccessEntry {
        let get = |k| environ.get(k).map(str::to_owned);
        AccessEntry {
            method: get("REQUEST_METHOD").unwrap_or_default(),
            target: get("RAW_URI").unwrap_or_default(),
            version: if environ.get("SERVER_PROTOCOL") == Some("HTTP/1.0") {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            },
            referer: get("HTTP_REFERER"),
            user_agent: get("HTTP_USER_AGENT"),
            status: 0,
            body_bytes: 0,
            start: Instant::now(),
            started: SystemTime::now(),
        }
    }

    /// Records the status of the response head that went out.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Counts body bytes the application produced.
    pub fn add_body(&mut self, bytes: u64) {
        self.body_bytes += bytes;
    }

    /// The finished record, for a request from `peer`.
    pub fn record(&self, peer: Option<std::net::SocketAddr>) -> AccessRecord<'_> {
        AccessRecord {
            peer,
            method: &self.method,
            target: &self.target,
            version: self.version,
            status: self.status,
            body_bytes: self.body_bytes,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
            duration: self.start.elapsed(),
            started: self.started,
        }
    }
}

/// Bytes read from a socket per read call: as much as a connection buffers before it stops
/// wanting input.
pub const READ_CHUNK: usize = 64 * 1024;

/// Feeds `conn` what `socket` already holds, without blocking, for as long as the connection
/// wants input. A driver calls it after a read that returned bytes: what arrived together then
/// reaches the application as one body piece (in the Python bridge, one release of the GIL per
/// piece rather than one per read).
///
/// The reads are opportunistic: a socket error ends them like the end of the stream, so bytes
/// already received (a complete body from a client that then reset the connection) are still
/// delivered, and a body left incomplete fails as such.
pub fn read_available(
    socket: impl std::os::fd::AsFd,
    conn: &mut wsgi_core::Connection,
    buf: &mut [u8],
) {
    use rustix::io::Errno;
    while conn.wants_read() {
        match rustix::net::recv(&socket, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => conn.handle_input(&buf[..n], Instant::now()),
            Err(Errno::AGAIN) => break,
            Err(Errno::INTR) => {}
            Ok(_) | Err(_) => {
                conn.handle_eof(Instant::now());
                break;
            }
        }
    }
}

/// Runs `f` with this thread's read buffer of [`READ_CHUNK`] bytes: one allocation per thread,
/// not one per read, and none held by an idle connection.
pub fn with_read_buf<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.is_empty() {
                buf.resize(READ_CHUNK, 0);
            }
            f(&mut buf)
        }
        // Re-entered (cannot happen in the drivers, which never nest reads): a fresh buffer.
        Err(_) => f(&mut vec![0; READ_CHUNK]),
    })
}

/// The `Date` header value, formatted at most once a second per thread.
pub fn http_date() -> HttpDate {
    thread_local! {
        static CACHE: std::cell::Cell<(u64, Option<HttpDate>)> = const { std::cell::Cell::new((0, None)) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| match cache.get() {
        (s, Some(date)) if s == second => date,
        _ => {
            let date = HttpDate::from(now);
            cache.set((second, Some(date)));
            date
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffer_is_reused_and_survives_reentry() {
        let first = with_read_buf(|b| b.as_ptr() as usize);
        let second = with_read_buf(|b| b.as_ptr() as usize);
        assert_eq!(first, second);
        let nested = with_read_buf(|outer| {
            outer[0] = 7;
            with_read_buf(|inner| (inner.len(), inner[0]))
        });
        assert_eq!(nested, (READ_CHUNK, 0));
    }

    #[test]
    fn date_is_an_imf_fixdate() {
        let date = http_date();
        let text = std::str::from_utf8(date.as_bytes()).unwrap();
        assert_eq!(text.len(), 29, "{text}");
        assert!(text.ends_with(" GMT"), "{text}");
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
