//! The in-memory client, connection and log every bridge test runs its applications over.
//!
//! A [`Client`] is the bytes a client sends, in the pieces it sends them. [`Loaded::serve`] runs
//! them through a real [`Connection`] and the application's [`Application::serve`] loop: each
//! request head becomes a [`Job`] whose [`AppIo`] (`MemIo`) pulls body events from the
//! connection on demand and writes the response through the connection's commands into one
//! output buffer. The test then asserts the exact bytes on the wire and the exact log lines.
//!
//! Every blocking call (`next_job` and each `AppIo` method) first checks that another thread
//! can take the GIL: the bridge must release it around them.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use wsgi_core::python::{AppSpec, ErrorLog, Level, LoadError, PyApplication, PyOptions};
use wsgi_core::{
    AppIo, AppIoError, Application, Config, Connection, Environ, Event, Job, ResponseHead,
    ServerInfo,
};

/// Put before every test module: the validator, warnings turned into errors (a `WSGIWarning`
/// then fails the request, so a test sees it), a hook that records exceptions Python could not
/// raise (the validator's "Iterator garbage collected without being closed" is one), and
/// `event()`, which the apps use to record what happened for the test to read back.
const PREAMBLE: &str = r#"
import io
import sys
import warnings
from wsgiref.validate import validator, WSGIWarning

warnings.simplefilter("error", WSGIWarning)
if not hasattr(sys, "bridge_test_unraisable"):
    sys.bridge_test_unraisable = []

    def _record_unraisable(u, seen=sys.bridge_test_unraisable):
        # wsgiref.validate's own bug: when iter(result) fails in IteratorWrapper.__init__,
        # its __del__ reads the `closed` it never set. The tests see the TypeError itself.
        if isinstance(u.exc_value, AttributeError) and "IteratorWrapper" in repr(u.object):
            return
        seen.append(f"{u.err_msg or 'exception ignored'}: {u.exc_value!r} in {u.object!r}")

    sys.unraisablehook = _record_unraisable

EVENTS = []


def event(*args):
    EVENTS.append(" ".join(str(a) for a in args))

"#;

/// Which callable of a test module serves: the app itself, or the app wrapped in
/// `wsgiref.validate.validator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    Raw,
    Validated,
}

pub(crate) use Variant::{Raw, Validated};

/// Both variants, for tests that expect the same from each.
pub(crate) const BOTH: [Variant; 2] = [Raw, Validated];

impl Variant {
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Raw => "app",
            Validated => "validated",
        }
    }
}

/// An [`ErrorLog`] that keeps every line for the test to assert.
#[derive(Default)]
pub(crate) struct CaptureLog(Mutex<Vec<(Level, String)>>);

impl ErrorLog for CaptureLog {
    fn log(&self, level: Level, message: &str) {
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

impl CaptureLog {
    fn take(&self) -> Vec<(Level, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A fresh, empty directory for one test's Python files (under the target directory).
pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python_bridge").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `source` (after [`PREAMBLE`]) as `<name>.py` in `dir`; `validated = validator(app)`
/// is appended when the source defines `app`.
pub(crate) fn write_module(dir: &Path, name: &str, source: &str) {
    let mut text = String::from(PREAMBLE);
    text.push_str(source);
    text.push_str("\n\nif 'app' in globals():\n    validated = validator(app)\n");
    fs::write(dir.join(format!("{name}.py")), text).unwrap();
}

/// Loads `spec` with a capturing log and otherwise `options`.
pub(crate) fn load_with(spec: &AppSpec, options: PyOptions) -> Result<Loaded, LoadError> {
    let log = Arc::new(CaptureLog::default());
    let app = PyApplication::load(spec, PyOptions { log: log.clone(), ..options })?;
    Ok(Loaded { app, log })
}

/// A test module (named `name`, which must be unique across the tests: every test shares one
/// interpreter and its `sys.modules`) loaded twice: as `name:app` and as `name:validated`.
pub(crate) struct TestApp {
    pub(crate) module: String,
    pub(crate) dir: PathBuf,
    raw: Loaded,
    validated: Loaded,
}

impl TestApp {
    pub(crate) fn new(name: &str, source: &str) -> TestApp {
        TestApp::with_options(name, source, &PyOptions::default())
    }

    pub(crate) fn with_options(name: &str, source: &str, options: &PyOptions) -> TestApp {
        let dir = fresh_dir(name);
        write_module(&dir, name, source);
        let load = |v: Variant| {
            let spec = AppSpec::new(&format!("{name}:{}", v.attr())).with_chdir(&dir);
            load_with(&spec, options.clone()).unwrap_or_else(|e| panic!("loading {name}: {e}"))
        };
        TestApp {
            module: name.to_owned(),
            raw: load(Raw),
            validated: load(Validated),
            dir: dir.clone(),
        }
    }

    pub(crate) fn get(&self, v: Variant) -> &Loaded {
        match v {
            Raw => &self.raw,
            Validated => &self.validated,
        }
    }

    /// Serves `client` with the `v` callable and reads back the module's `EVENTS`.
    pub(crate) fn serve(&self, v: Variant, client: &Client) -> Served {
        let mut served = self.get(v).serve(client);
        served.events = Python::attach(|py| {
            let events = py.import(&*self.module).unwrap().getattr("EVENTS").unwrap();
            let list: Vec<String> = events.extract().unwrap();
            events.call_method0("clear").unwrap();
            list
        });
        served
    }

    /// Evaluates `expr` in the module's namespace and returns its `repr()`.
    pub(crate) fn eval(&self, expr: &str) -> String {
        Python::attach(|py| {
            let module = py.import(&*self.module).unwrap();
            let code = CString::new(expr).unwrap();
            let value = py.eval(&code, Some(&module.dict()), None).unwrap();
            value.repr().unwrap().to_string()
        })
    }

    /// Sets the module global `name` to the bytes `value`.
    pub(crate) fn set_bytes(&self, name: &str, value: &[u8]) {
        Python::attach(|py| {
            let module = py.import(&*self.module).unwrap();
            module.setattr(name, PyBytes::new(py, value)).unwrap();
        });
    }
}

/// A loaded application and the log it writes to.
pub(crate) struct Loaded {
    pub(crate) app: PyApplication,
    log: Arc<CaptureLog>,
}

impl Loaded {
    /// Runs the whole conversation: every request `client` sends, answered by the application
    /// through [`Application::serve`], until the connection closes or the input runs out.
    pub(crate) fn serve(&self, client: &Client) -> Served {
        let wire = Arc::new(Mutex::new(Wire::new(client)));
        let mut next_job = || {
            gil_free(&wire, "next_job");
            next_job(&wire, client)
        };
        self.app.serve(&mut next_job);
        let unraisable = Python::attach(|py| {
            py.import("gc").unwrap().call_method0("collect").unwrap();
            let seen = py.import("sys").unwrap().getattr("bridge_test_unraisable").unwrap();
            let list: Vec<String> = seen.extract().unwrap();
            seen.call_method0("clear").unwrap();
            list
        });
        assert!(unraisable.is_empty(), "Python could not raise: {unraisable:#?}");
        let w = wire.lock().unwrap();
        assert!(w.gil_held.is_empty(), "the GIL was held during {:?}", w.gil_held);
        Served {
            wire: w.out.clone(),
            log: self.log.take(),
            events: Vec::new(),
            aborted: w.aborted,
            closed: w.conn.is_closed(),
            body_events: w.body_events.clone(),
            reads_after_end: w.reads_after_end,
            files: w.files.clone(),
        }
    }
}

/// What a client sends and how its connection behaves.
#[derive(Clone)]
pub(crate) struct Client {
    /// The bytes, in the pieces they arrive in: the connection sees the next piece only when
    /// it has reported everything buffered (so a body split in pieces arrives as several
    /// `Body` events).
    pieces: Vec<Vec<u8>>,
    server: ServerInfo,
    /// The driver can send files zero-copy: `send_file` reads the file and records the call.
    pub(crate) sendfile: bool,
    /// The client goes away at this `send_body` call (0-based): it and every later call fail
    /// with [`AppIoError::Disconnected`].
    disconnect_at_body: Option<usize>,
}

impl Client {
    pub(crate) fn new(pieces: &[&[u8]]) -> Client {
        Client {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            server: ServerInfo::new(
                Some("127.0.0.1:8000".parse().unwrap()),
                Some("10.0.0.7:53211".parse().unwrap()),
            ),
            sendfile: false,
            disconnect_at_body: None,
        }
    }

    /// `GET <target>` on HTTP/1.1 with `Host: example.com`.
    pub(crate) fn get(target: &str) -> Client {
        Client::new(&[format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n").as_bytes()])
    }

    /// `POST <target>` with a Content-Length body sent together with the head.
    pub(crate) fn post(target: &str, body: &[u8]) -> Client {
        let mut request = format!(
            "POST {target} HTTP/1.1\r\nHost: example.com\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        Client::new(&[&request])
    }

    #[must_use]
    pub(crate) fn with_server(mut self, server: ServerInfo) -> Client {
        self.server = server;
        self
    }

    #[must_use]
    pub(crate) fn with_sendfile(mut self) -> Client {
        self.sendfile = true;
        self
    }

    #[must_use]
    pub(crate) fn disconnecting_at_body(mut self, call: usize) -> Client {
        self.disconnect_at_body = Some(call);
        self
    }
}

/// The connection and everything the test inspects afterwards.
struct Wire {
    conn: Connection,
    now: Instant,
    input: VecDeque<Vec<u8>>,
    out: Vec<u8>,
    /// Per request: `read_body` calls so far and whether the body ended.
    reads: usize,
    body_ended: bool,
    reads_after_end: usize,
    body_events: Vec<usize>,
    body_sends: usize,
    gone: bool,
    aborted: bool,
    files: Vec<(u64, u64)>,
    /// The blocking calls made while the calling thread held the GIL (there must be none).
    gil_held: Vec<&'static str>,
}

/// Records `call` if the GIL is not free while it runs: another thread must be able to take
/// it (a driver's blocking call would otherwise stall every Python thread).
fn gil_free(wire: &Mutex<Wire>, call: &'static str) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        Python::attach(|_| ());
        let _ = tx.send(());
    });
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        wire.lock().unwrap().gil_held.push(call);
    }
}

impl Wire {
    fn new(client: &Client) -> Wire {
        let now = Instant::now();
        Wire {
            conn: Connection::new(Config::default(), now),
            now,
            input: client.pieces.iter().cloned().collect(),
            out: Vec::new(),
            reads: 0,
            body_ended: false,
            reads_after_end: 0,
            body_events: Vec::new(),
            body_sends: 0,
            gone: false,
            aborted: false,
            files: Vec::new(),
            gil_held: Vec::new(),
        }
    }

    /// Feeds the next piece of input; `false` when there is none left.
    fn feed(&mut self) -> bool {
        match self.input.pop_front() {
            Some(piece) => {
                self.conn.handle_input(&piece, self.now);
                true
            }
            None => false,
        }
    }
}

/// The job source: the next request head on the connection, as a job.
fn next_job(wire: &Arc<Mutex<Wire>>, client: &Client) -> Option<Job> {
    let mut w = wire.lock().unwrap();
    loop {
        if w.conn.is_closed() || w.gone {
            return None;
        }
        match w.conn.poll_event() {
            Ok(Some(Event::Request(head))) => {
                w.reads = 0;
                w.body_ended = false;
                let environ = Environ::new(head, &client.server);
                let io = MemIo {
                    wire: wire.clone(),
                    sendfile: client.sendfile,
                    disconnect_at_body: client.disconnect_at_body,
                };
                return Some(Job { environ, io: Box::new(io) });
            }
            Ok(Some(Event::Closed)) => return None,
            Ok(Some(other)) => panic!("{other:?} between requests"),
            Ok(None) => {
                if !w.feed() {
                    return None;
                }
            }
            Err(e) => {
                let Wire { conn, out, .. } = &mut *w;
                conn.send_error(&e, out);
                return None;
            }
        }
    }
}

/// The [`AppIo`] of one request: the connection's commands, output into the wire buffer.
struct MemIo {
    wire: Arc<Mutex<Wire>>,
    sendfile: bool,
    disconnect_at_body: Option<usize>,
}

impl AppIo for MemIo {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        gil_free(&self.wire, "read_body");
        let mut w = self.wire.lock().unwrap();
        if w.gone {
            return Err(AppIoError::Disconnected);
        }
        if w.body_ended {
            w.reads_after_end += 1;
            return Ok(None);
        }
        w.reads += 1;
        if w.reads == 1 {
            let Wire { conn, out, .. } = &mut *w;
            conn.send_continue(out)?;
        }
        loop {
            match w.conn.poll_event() {
                Ok(Some(Event::Body(bytes))) => {
                    w.body_events.push(bytes.len());
                    return Ok(Some(bytes));
                }
                Ok(Some(Event::EndOfBody)) => {
                    w.body_ended = true;
                    return Ok(None);
                }
                Ok(Some(other)) => panic!("{other:?} inside a request body"),
                Ok(None) => {
                    if !w.feed() {
                        return Err(AppIoError::Disconnected);
                    }
                }
                Err(e) => return Err(AppIoError::BadRequest(e)),
            }
        }
    }

    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        gil_free(&self.wire, "send_head");
        let mut w = self.wire.lock().unwrap();
        if w.gone {
            return Err(AppIoError::Disconnected);
        }
        let Wire { conn, out, .. } = &mut *w;
        Ok(conn.send_head(head, out)?)
    }

    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        gil_free(&self.wire, "send_body");
        let mut w = self.wire.lock().unwrap();
        if self.disconnect_at_body == Some(w.body_sends) {
            w.gone = true;
        }
        w.body_sends += 1;
        if w.gone {
            return Err(AppIoError::Disconnected);
        }
        let Wire { conn, out, .. } = &mut *w;
        Ok(conn.send_body(chunk, out)?)
    }

    fn send_file(&mut self, file: &fs::File, offset: u64, len: u64) -> Result<bool, AppIoError> {
        gil_free(&self.wire, "send_file");
        if !self.sendfile {
            return Ok(false);
        }
        let mut contents = vec![0; usize::try_from(len).unwrap()];
        file.read_exact_at(&mut contents, offset).unwrap();
        self.wire.lock().unwrap().files.push((offset, len));
        self.send_body(&contents)?;
        Ok(true)
    }

    fn send_end(&mut self) -> Result<(), AppIoError> {
        gil_free(&self.wire, "send_end");
        let mut w = self.wire.lock().unwrap();
        if w.gone {
            return Err(AppIoError::Disconnected);
        }
        let Wire { conn, out, now, .. } = &mut *w;
        Ok(conn.send_end(*now, out)?)
    }

    fn abort(&mut self) {
        gil_free(&self.wire, "abort");
        let mut w = self.wire.lock().unwrap();
        w.conn.abort();
        w.aborted = true;
    }
}

/// What came of a conversation.
#[derive(Debug)]
pub(crate) struct Served {
    /// Every byte the server wrote.
    pub(crate) wire: Vec<u8>,
    /// The bridge's log lines, in order.
    pub(crate) log: Vec<(Level, String)>,
    /// What the test module recorded with `event()`.
    pub(crate) events: Vec<String>,
    /// Whether the bridge aborted the connection.
    pub(crate) aborted: bool,
    /// Whether the connection is closed at the end.
    pub(crate) closed: bool,
    /// The sizes of the request body pieces the application's reads pulled from the connection.
    pub(crate) body_events: Vec<usize>,
    /// `read_body` calls made after it had reported the end of the body.
    pub(crate) reads_after_end: usize,
    /// `(offset, len)` of each zero-copy `send_file`.
    pub(crate) files: Vec<(u64, u64)>,
}

impl Served {
    /// Asserts the wire holds exactly `expected`.
    #[track_caller]
    pub(crate) fn assert_wire(&self, expected: &[u8]) {
        assert!(
            self.wire == expected,
            "wire bytes differ\n   got: {}\nwanted: {}\n   log: {:#?}",
            show(&self.wire),
            show(expected),
            self.log
        );
    }

    /// Asserts nothing was logged: the application and the validator were happy.
    #[track_caller]
    pub(crate) fn assert_quiet(&self) {
        assert!(self.log.is_empty(), "unexpected log lines: {:#?}", self.log);
    }

    /// Asserts exactly one log line, at error level, and returns it.
    #[track_caller]
    pub(crate) fn one_error(&self) -> &str {
        match self.log.as_slice() {
            [(Level::Error, line)] => line,
            other => panic!("wanted exactly one error line, got {other:#?}"),
        }
    }

    /// Returns the wire as text (latin-1), for `contains` checks on long responses.
    pub(crate) fn text(&self) -> String {
        self.wire.iter().map(|&b| char::from(b)).collect()
    }
}

/// Bytes as a string literal would spell them.
pub(crate) fn show(bytes: &[u8]) -> String {
    format!("b\"{}\"", bytes.escape_ascii())
}

/// The 500 the bridge answers when an application fails before its head.
pub(crate) const ERROR_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n\r\nInternal Server Error\n";

/// A chunked response body: each part as one chunk, then the last chunk.
pub(crate) fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// `head` (a status line and fields, each line ending in CRLF) followed by the blank line and
/// `body`.
pub(crate) fn response(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The body of the first final response on `wire` (after any `100 Continue`), de-chunked if
/// it is chunked.
pub(crate) fn body(wire: &[u8]) -> Vec<u8> {
    let wire = wire.strip_prefix(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap_or(wire);
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole head") + 4;
    let (head, mut rest) = wire.split_at(end);
    let head_text = String::from_utf8_lossy(head);
    if let Some(length) = head_text.lines().find_map(|l| l.strip_prefix("Content-Length: ")) {
        return rest[..length.parse::<usize>().unwrap()].to_vec();
    }
    if !head_text.contains("\r\nTransfer-Encoding: chunked\r\n") {
        return rest.to_vec();
    }
    let mut out = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[line + 2..line + 2 + size]);
        rest = &rest[line + 2 + size + 2..];
    }
}
