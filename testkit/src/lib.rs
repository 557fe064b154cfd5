//! What the adapters' loopback tests share: for adapter-tokio and adapter-smol, the Rust test
//! application, a blocking HTTP/1.1 client with timeouts on every read, the server configuration
//! the tests use and a temporary directory; for adapter-std too, the exchanges all three run
//! alike (bodies past their Content-Length). Not published.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use wsgi_core::{AppIoError, Job, ResponseHead};
use wsgi_driver::ServerConfig;

/// Every socket read gives up after this; every client exchange within `DEADLINE`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How long `serve` may take to return after `shutdown`.
pub const STOP_WITHIN: Duration = Duration::from_secs(5);
pub const BIG: usize = 8 << 20;
/// `/stream-drop`: 1 MiB pieces sent, and how far the app got (1: `send_end` returned, 2: the
/// job was dropped).
pub const STREAM_PIECES: usize = 24;
pub static STREAM_STAGE: AtomicUsize = AtomicUsize::new(0);
/// A `/past-length/...` request's path, and what each call that sent its body returned.
pub type SendCalls = (String, Vec<Result<(), AppIoError>>);
/// The `/past-length/...` requests served.
pub static PAST_LENGTH: Mutex<Vec<SendCalls>> = Mutex::new(Vec::new());
/// The bytes `/past-length/file` sends from: the test binary, which is far longer than 100.
pub fn past_length_file() -> std::fs::File {
    std::fs::File::open(std::env::current_exe().unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The application

/// `len` bytes of a pattern that does not repeat at any power-of-two period.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

pub fn respond(job: &mut Job, body: &[u8]) {
    let length = body.len().to_string();
    let head = ResponseHead::from_wsgi("200 OK", [("Content-Length", length.as_str())]).unwrap();
    job.io.send_head(&head).unwrap();
    job.io.send_body(body).unwrap();
    job.io.send_end().unwrap();
}

/// By path: `/big` sends `BIG` bytes of `pattern` in 64 KiB pieces; `/chunked` sends three
/// pieces without a Content-Length (so chunked); `/peer` answers `REMOTE_ADDR:REMOTE_PORT`;
/// `/past-length/...` see [`bodies_past_their_length`]; anything else echoes `METHOD PATH\n` and
/// the request body, after 300 ms for `/slow`.
pub fn app(mut job: Job) {
    let path = job.environ.get("PATH_INFO").unwrap_or_default().to_owned();
    match path.as_str() {
        "/past-length/large" | "/past-length/chunk" | "/past-length/file" => {
            let length = match path.as_str() {
                "/past-length/large" => "100000",
                "/past-length/chunk" => "30000",
                _ => "10",
            };
            let head = ResponseHead::from_wsgi("200 OK", [("Content-Length", length)]).unwrap();
            job.io.send_head(&head).unwrap();
            let mut calls = Vec::new();
            match path.as_str() {
                "/past-length/large" => {
                    for (byte, len) in [(b'a', 40_000), (b'b', 40_000), (b'c', 20_000)] {
                        calls.push(job.io.send_body(&vec![byte; len]));
                    }
                }
                "/past-length/chunk" => calls.push(job.io.send_body(&[b'o'; 40_000])),
                _ => calls.push(job.io.send_file(&past_length_file(), 0, 100).map(|_| ())),
            }
            calls.push(job.io.send_end());
            PAST_LENGTH.lock().unwrap().push((path, calls));
        }
        "/big" => {
            let length = BIG.to_string();
            let head =
                ResponseHead::from_wsgi("200 OK", [("Content-Length", length.as_str())]).unwrap();
            job.io.send_head(&head).unwrap();
            for piece in pattern(BIG).chunks(64 << 10) {
                job.io.send_body(piece).unwrap();
            }
            job.io.send_end().unwrap();
        }
        "/chunked" => {
            let head = ResponseHead::from_wsgi("200 OK", [("Content-Type", "text/plain")]).unwrap();
            job.io.send_head(&head).unwrap();
            for piece in [&b"one,"[..], b"two,", b"three"] {
                job.io.send_body(piece).unwrap();
            }
            job.io.send_end().unwrap();
        }
        "/no-head" => {
            // Ends a response whose head never went: refused, and the connection is aborted.
            assert!(job.io.send_end().is_err());
        }
        "/ignore-body" => respond(&mut job, b"ignored"),
        "/stream-drop" => {
            let head = ResponseHead::from_wsgi("200 OK", [("Content-Type", "x/y")]).unwrap();
            job.io.send_head(&head).unwrap();
            for _ in 0..STREAM_PIECES {
                if job.io.send_body(&[b'z'; 1 << 20]).is_err() {
                    return;
                }
            }
            let _ = job.io.send_end();
            STREAM_STAGE.store(1, Ordering::SeqCst);
            drop(job);
            STREAM_STAGE.store(2, Ordering::SeqCst);
        }
        "/peer" => {
            let peer = format!(
                "{}:{}",
                job.environ.get("REMOTE_ADDR").unwrap_or_default(),
                job.environ.get("REMOTE_PORT").unwrap_or_default()
            );
            respond(&mut job, peer.as_bytes());
        }
        _ => {
            let method = job.environ.get("REQUEST_METHOD").unwrap_or_default();
            let mut body = format!("{method} {path}\n").into_bytes();
            while let Some(piece) = job.io.read_body().unwrap() {
                body.extend_from_slice(&piece);
            }
            if path == "/slow" {
                thread::sleep(Duration::from_millis(300));
            }
            respond(&mut job, &body);
        }
    }
}

pub fn config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.threads = 2;
    config.graceful_timeout = Duration::from_secs(10);
    // A client that stops sending while its unread body is drained is given up on after this.
    config.io_timeout = Duration::from_secs(2);
    config
}

pub trait Conn: Read + Write {
    fn set_timeouts(&self);
}

impl Conn for TcpStream {
    fn set_timeouts(&self) {
        self.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        self.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    }
}

impl Conn for UnixStream {
    fn set_timeouts(&self) {
        self.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        self.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    }
}

pub struct Response {
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// A 200 whose body is `body`.
    pub fn assert_ok(&self, body: &[u8]) {
        assert_eq!(self.status_line(), "HTTP/1.1 200 OK", "{}", self.head);
        assert!(self.body == body, "{}: body of {} bytes differs", self.head, self.body.len());
    }
}

pub struct Client<S> {
    pub s: S,
    pub buf: Vec<u8>,
    pub deadline: Instant,
}

impl<S: Conn> Client<S> {
    pub fn new(s: S) -> Client<S> {
        s.set_timeouts();
        Client { s, buf: Vec::new(), deadline: Instant::now() + DEADLINE }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Reads what the socket has into the buffer; `false` at the end of the stream.
    pub fn read_more(&mut self) -> bool {
        assert!(Instant::now() < self.deadline, "client deadline passed");
        let mut chunk = vec![0; 64 << 10];
        let n = self.s.read(&mut chunk).unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    pub fn more(&mut self) {
        assert!(self.read_more(), "connection closed; unparsed: {:?}", self.text());
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]).into_owned()
    }

    /// Takes bytes up to and including the first `delimiter`, without it.
    pub fn until(&mut self, delimiter: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buf.windows(delimiter.len()).position(|w| w == delimiter) {
                let taken = self.buf.drain(..at + delimiter.len()).take(at).collect();
                return taken;
            }
            self.more();
        }
    }

    pub fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.more();
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one response, framed by Content-Length or chunked (neither: no body, as a 1xx).
    pub fn response(&mut self) -> Response {
        let head = String::from_utf8(self.until(b"\r\n\r\n")).unwrap();
        let mut response = Response { head, body: Vec::new() };
        if let Some(length) = response.header("Content-Length") {
            response.body = self.take(length.parse().unwrap());
        } else if response.header("Transfer-Encoding") == Some("chunked") {
            loop {
                let line = String::from_utf8(self.until(b"\r\n")).unwrap();
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16);
                let size = size.unwrap();
                if size == 0 {
                    while !self.until(b"\r\n").is_empty() {}
                    break;
                }
                response.body.extend(self.take(size));
                assert_eq!(self.take(2), b"\r\n");
            }
        }
        response
    }

    pub fn responses(&mut self, n: usize) -> Vec<Response> {
        (0..n).map(|_| self.response()).collect()
    }

    /// Asserts the server closes the connection with nothing more to say.
    pub fn assert_closed(&mut self) {
        while self.read_more() {}
        assert!(self.buf.is_empty(), "unexpected bytes before the close: {:?}", self.text());
    }
}

// ---------------------------------------------------------------------------------------------
// Exchanges both adapters' tests run

/// A request and a bad one behind it in one write: the first is served, the second answered
/// 400 with `Connection: close`, and the connection closed. The app thread that served the
/// first finds the second already received, and its answer goes out through the connection's
/// task.
pub fn bad_request_behind_a_served_one<S: Conn>(c: &mut Client<S>) {
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n");
    c.response().assert_ok(b"GET /a\n");
    let r = c.response();
    assert_eq!(r.status_line(), "HTTP/1.1 400 Bad Request", "{}", r.head);
    assert_eq!(r.header("Connection"), Some("close"), "{}", r.head);
    c.assert_closed();
}

/// A request and half of the next in one write, the rest a moment later: the app thread finds
/// half a head after the first response and hands the connection back to its task, which waits
/// for the rest. Both are served, and a third after them.
pub fn half_head_behind_a_served_one<S: Conn>(c: &mut Client<S>) {
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT");
    c.response().assert_ok(b"GET /a\n");
    thread::sleep(Duration::from_millis(50));
    c.send(b"TP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /b\n");
    c.send(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /c\n");
}

/// Three pipelined responses with a Content-Length: one sent whole in large chunks, one whose
/// 40,000-byte chunk passes its 30,000, and one whose 100-byte file passes its 10. The client
/// gets exactly the declared bytes of each, the calls that passed the length return
/// `BodyTooLong`, and the connection goes on to serve a request after them.
pub fn bodies_past_their_length<S: Conn>(c: &mut Client<S>) {
    use wsgi_core::UsageError;
    c.send(
        b"GET /past-length/large HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /past-length/chunk HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /past-length/file HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut large = vec![b'a'; 40_000];
    large.extend(vec![b'b'; 40_000]);
    large.extend(vec![b'c'; 20_000]);
    c.response().assert_ok(&large);
    c.response().assert_ok(&[b'o'; 30_000]);
    let mut file_start = vec![0; 10];
    past_length_file().read_exact(&mut file_start).unwrap();
    c.response().assert_ok(&file_start);
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    c.response().assert_ok(b"GET /after\n");

    let too_long = |declared| Err(AppIoError::Usage(UsageError::BodyTooLong { declared }));
    let mut seen = PAST_LENGTH.lock().unwrap().clone();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let calls = |path: &str, calls| -> SendCalls { (path.to_owned(), calls) };
    assert_eq!(
        seen,
        [
            calls("/past-length/chunk", vec![too_long(30_000), Ok(())]),
            calls("/past-length/file", vec![too_long(10), Ok(())]),
            calls("/past-length/large", vec![Ok(()), Ok(()), Ok(()), Ok(())]),
        ]
    );
}

/// A request on a fresh connection is served: the server still works.
pub fn assert_serves<S: Conn>(mut other: Client<S>) {
    other.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    other.response().assert_ok(b"GET /after\n");
}

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
