//! What every [`wsgi_core`] adapter shares.
//!
//! - [`ServerConfig`]: threads, protocol limits, root path, scheme, I/O timeout, access log;
//! - [`AccessRecord`] and [`AccessEntry`]: the access log's view of one request;
//! - [`Exchange`]: the response rules every driver's `AppIo` applies the same way;
//! - [`http_date`]: the `Date` header value, formatted at most once a second per thread;
//! - [`recv_into`] and [`read_available`]: reads into a thread's buffer, given to the connection
//!   without a copy when large;
//! - [`Gate`]: which app threads take requests, for an application that runs one thread at a
//!   time (Python's GIL);
//! - with the `async` feature, [`rt`]: one connection driver for every async runtime, written
//!   over the small [`rt::Runtime`] trait. adapter-smol and adapter-tokio are that driver plus
//!   an implementation of the trait; a server author on another runtime can write their own.
//!
//! Applications, requests and responses are [`wsgi_core`]'s; nothing here parses HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wsgi_core::{Config, Environ, HttpDate, ResponseHead, Scheme, TrustedProxies};

mod exchange;
mod gate;
mod read;
#[cfg(feature = "async")]
pub mod rt;

pub use exchange::{BodyStep, Exchange};
pub use gate::{Gate, SHORT, STALL, Seat, in_io};
pub use read::{
    HAND_OVER, READ_CHUNK, detach, hand_over, read_available, read_rest, recv_into, with_read_vec,
};

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
    /// The access log: given a record of each finished request.
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

/// The access log's sink: called once per finished request with that request's
/// [`AccessRecord`], on the app thread, after the response went out.
///
/// The call is on the request's path: a sink that formats or writes should hand the record to
/// a thread of its own. Capturing the response head costs a copy of it, so it is kept only when
/// the log asks for it ([`with_response_head`](Self::with_response_head)).
///
/// ```
/// use wsgi_driver::{AccessLog, ServerConfig};
/// let mut config = ServerConfig::default();
/// config.access_log = Some(AccessLog::new(|record| {
///     let method = record.environ.get("REQUEST_METHOD").unwrap_or("-");
///     eprintln!("{method} {} {}", record.status, record.body_bytes);
/// }));
/// ```
#[derive(Clone)]
pub struct AccessLog {
    write: Arc<dyn Fn(AccessRecord) + Send + Sync>,
    response_head: bool,
}

impl AccessLog {
    /// An access log that passes each record to `write`.
    pub fn new(write: impl Fn(AccessRecord) + Send + Sync + 'static) -> AccessLog {
        AccessLog { write: Arc::new(write), response_head: false }
    }

    /// Also keeps a copy of each response head ([`AccessRecord::response_head`]), for a log
    /// that records response header values.
    #[must_use]
    pub fn with_response_head(mut self) -> AccessLog {
        self.response_head = true;
        self
    }

    /// Returns `true` if records carry the response head.
    pub fn keeps_response_head(&self) -> bool {
        self.response_head
    }

    /// Hands `record` to the sink.
    pub fn write(&self, record: AccessRecord) {
        (self.write)(record);
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("response_head", &self.response_head)
            .finish_non_exhaustive()
    }
}

/// What the access log learns of one request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccessRecord {
    /// The request's environ as the application received it: method, target, protocol,
    /// `REMOTE_ADDR` (as a trusted proxy's headers may have set it) and every request header
    /// as `HTTP_*`. A copy that shares the request head's bytes.
    pub environ: Environ,
    /// The socket peer's address (`None` for Unix sockets).
    pub peer: Option<std::net::SocketAddr>,
    /// The response status (0 if no response head was sent).
    pub status: u16,
    /// Response body bytes the application produced.
    pub body_bytes: u64,
    /// From the complete request head to the end of the response.
    pub duration: Duration,
    /// When the request head was complete.
    pub started: SystemTime,
    /// The response head that went out, if the log asked for it
    /// ([`AccessLog::with_response_head`]) and one was sent.
    pub response_head: Option<ResponseHead>,
}

impl AccessRecord {
    /// Returns the request method.
    pub fn method(&self) -> &str {
        self.environ.get("REQUEST_METHOD").unwrap_or_default()
    }

    /// Returns the request target as sent (`RAW_URI`).
    pub fn target(&self) -> &str {
        self.environ.get("RAW_URI").unwrap_or_default()
    }

    /// Returns the protocol: `HTTP/1.0` or `HTTP/1.1`.
    pub fn version(&self) -> &str {
        self.environ.get("SERVER_PROTOCOL").unwrap_or("HTTP/1.1")
    }

    /// Returns the client's address as the application saw it (`REMOTE_ADDR`), if any.
    pub fn remote_addr(&self) -> Option<&str> {
        self.environ.get("REMOTE_ADDR").filter(|a| !a.is_empty())
    }

    /// Returns the value of the request header `name` (any case), from the environ: repeated
    /// fields are joined as the environ joins them.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        let key = cgi_key(name);
        self.environ.get(&key)
    }

    /// Returns the value of the response header `name` (any case), repeated fields joined with
    /// `, `; `None` if the header was not sent or the response head was not kept.
    pub fn response_header(&self, name: &str) -> Option<String> {
        let head = self.response_head.as_ref()?;
        let mut joined: Option<String> = None;
        for (n, v) in head.headers() {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                let v = String::from_utf8_lossy(v);
                match &mut joined {
                    Some(j) => {
                        j.push_str(", ");
                        j.push_str(&v);
                    }
                    None => joined = Some(v.into_owned()),
                }
            }
        }
        joined
    }
}

/// The environ key of the request header `name`: `CONTENT_TYPE`, `CONTENT_LENGTH`, else
/// `HTTP_` and the name upper-cased with `-` as `_`.
pub fn cgi_key(name: &str) -> String {
    let upper: String =
        name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }).collect();
    match upper.as_str() {
        "CONTENT_TYPE" | "CONTENT_LENGTH" => upper,
        _ => format!("HTTP_{upper}"),
    }
}

/// The request's side of an access-log line, kept by a driver from the request head until the
/// response ends.
#[derive(Debug)]
pub struct AccessEntry {
    environ: Environ,
    status: u16,
    body_bytes: u64,
    keep_head: bool,
    response_head: Option<ResponseHead>,
    start: Instant,
    started: SystemTime,
}

impl AccessEntry {
    /// Starts an entry for the request `environ` describes, for `log`; the clock starts now.
    pub fn new(environ: &Environ, log: &AccessLog) -> AccessEntry {
        AccessEntry {
            environ: environ.clone(),
            status: 0,
            body_bytes: 0,
            keep_head: log.response_head,
            response_head: None,
            start: Instant::now(),
            started: SystemTime::now(),
        }
    }

    /// Records the response head that went out (its status; the head itself if the log keeps
    /// it).
    pub fn set_head(&mut self, head: &ResponseHead) {
        self.status = head.status();
        if self.keep_head {
            self.response_head = Some(head.clone());
        }
    }

    /// Records the status of a response the server sent itself (an error answer).
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
        self.response_head = None;
    }

    /// Counts body bytes the application produced.
    pub fn add_body(&mut self, bytes: u64) {
        self.body_bytes += bytes;
    }

    /// The finished record, for a request from `peer`.
    pub fn into_record(self, peer: Option<std::net::SocketAddr>) -> AccessRecord {
        AccessRecord {
            environ: self.environ,
            peer,
            status: self.status,
            body_bytes: self.body_bytes,
            duration: self.start.elapsed(),
            started: self.started,
            response_head: self.response_head,
        }
    }
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

    fn request(raw: &str) -> (wsgi_core::Connection, Environ) {
        let now = Instant::now();
        let mut conn = wsgi_core::Connection::new(Config::default(), now);
        conn.handle_input(raw.as_bytes(), now);
        let Ok(Some(wsgi_core::Event::Request(head))) = conn.poll_event() else {
            panic!("not a request: {raw:?}")
        };
        let server = wsgi_core::ServerInfo::new(
            Some("127.0.0.1:8000".parse().unwrap()),
            Some("10.0.0.7:4000".parse().unwrap()),
        );
        (conn, Environ::new(head, &server))
    }

    /// Runs one exchange through [`Exchange`] with `log` and returns the record it produced.
    fn exchange(log: AccessLog, records: &std::sync::Mutex<Vec<AccessRecord>>) -> AccessRecord {
        let (mut conn, environ) = request(
            "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Req: one\r\nX-Req: two\r\n\
             Content-Type: text/csv\r\nReferer: http://r/\r\n\r\n",
        );
        let mut ex = Exchange::new(&environ, Some(&log));
        let head = ResponseHead::from_wsgi(
            "201 Created",
            [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")],
        )
        .unwrap();
        ex.head(&mut conn, &head, false).unwrap();
        ex.body(&mut conn, b"hello").unwrap();
        ex.end(&mut conn).unwrap();
        ex.log(Some(&log), Some("10.0.0.7:4000".parse().unwrap()));
        // Once only.
        ex.log(Some(&log), None);
        let mut records = records.lock().unwrap();
        assert_eq!(records.len(), 1);
        records.pop().unwrap()
    }

    #[test]
    fn access_record_carries_the_request_and_the_response() {
        let records = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = records.clone();
        let log = AccessLog::new(move |r| sink.lock().unwrap().push(r));
        let record = exchange(log.clone(), &records);
        assert_eq!(record.method(), "GET");
        assert_eq!(record.target(), "/a/b?x=1");
        assert_eq!(record.version(), "HTTP/1.1");
        assert_eq!(record.remote_addr(), Some("10.0.0.7"));
        assert_eq!(record.status, 201);
        assert_eq!(record.body_bytes, 5);
        assert_eq!(record.request_header("x-req"), Some("one,two"));
        assert_eq!(record.request_header("Referer"), Some("http://r/"));
        assert_eq!(record.request_header("content-type"), Some("text/csv"));
        assert_eq!(record.request_header("x-absent"), None);
        // Not asked for: the response head is not kept.
        assert!(record.response_head.is_none());
        assert_eq!(record.response_header("content-type"), None);

        let record = exchange(log.with_response_head(), &records);
        assert_eq!(record.response_header("content-type").as_deref(), Some("text/plain"));
        assert_eq!(record.response_header("SET-COOKIE").as_deref(), Some("a=1, b=2"));
        assert_eq!(record.response_header("x-absent"), None);
    }

    #[test]
    fn cgi_keys_of_header_names() {
        assert_eq!(cgi_key("x-req"), "HTTP_X_REQ");
        assert_eq!(cgi_key("User-Agent"), "HTTP_USER_AGENT");
        assert_eq!(cgi_key("content-type"), "CONTENT_TYPE");
        assert_eq!(cgi_key("Content-Length"), "CONTENT_LENGTH");
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
