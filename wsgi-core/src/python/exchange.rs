//! One request's state shared by its Python objects: the connection, the `start_response`
//! bookkeeping, and the log context. Also `start_response` and `write()` themselves.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyString, PyTuple};

use super::{ErrorLog, Level};
use crate::app::{AppIo, AppIoError};
use crate::environ::Environ;
use crate::error::{StartError, UsageError};
use crate::response::{ResponseHead, StartResponse};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What became of the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Still going.
    Open,
    /// Ended cleanly or with a 500 the bridge sent.
    Finished,
    /// The connection was aborted, or the client went away.
    Broken,
}

/// Whom a log line concerns: the request's environ while it is served, then only its label
/// (`GET /path`), kept if Python objects of the request outlive it.
enum Request {
    Environ(Environ),
    Label(String),
}

impl Request {
    fn label(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Request::Environ(environ) => format!(
                "{} {}{}",
                environ.get("REQUEST_METHOD").unwrap_or_default(),
                environ.get("SCRIPT_NAME").unwrap_or_default(),
                environ.get("PATH_INFO").unwrap_or_default()
            )
            .into(),
            Request::Label(label) => label.as_str().into(),
        }
    }
}

/// One request's connection and response state.
pub(crate) struct Exchange {
    /// Held while the connection is used, with the GIL released; apart from `state` so that a
    /// thread blocked on a slow client holds up no other use of the request's objects.
    io: Mutex<Option<Box<dyn AppIo>>>,
    /// One lock for the rest: taking a lock is an atomic read-modify-write or two, and with a
    /// lock per field they added up to a tenth of the bridge's time for a small response.
    state: Mutex<State>,
    app: Arc<str>,
    log: Arc<dyn ErrorLog>,
}

/// What the request's objects share besides the connection.
pub(crate) struct State {
    pub(crate) start: StartResponse,
    pub(crate) outcome: Outcome,
    /// The declared Content-Length, once the body reached it and the connection dropped more.
    pub(crate) overflow: Option<u64>,
    /// The request body not yet handed to the application, and whether it ended.
    pub(crate) input: (Bytes, bool),
    /// How many bytes of a body with a Content-Length the application has yet to read
    /// (buffered in `input` or not yet received); `None` for a chunked body.
    pub(crate) input_left: Option<u64>,
    /// Why reading the request body failed, when that was the client's fault.
    pub(crate) client_fault: Option<String>,
    /// `wsgi.errors` text not yet ending in a newline.
    pub(crate) errors: String,
    /// Formatted into a label only when a line is logged: most requests log nothing.
    request: Request,
}

impl State {
    /// The request's log label (`GET /path`).
    pub(crate) fn label(&self) -> String {
        self.request.label().into_owned()
    }

    /// A `wsgi.errors` line the application left without its newline, taken out to be logged
    /// (with the label it goes under).
    fn take_unterminated(&mut self) -> Option<(String, String)> {
        (!self.errors.is_empty()).then(|| (std::mem::take(&mut self.errors), self.label()))
    }

    fn new(environ: Environ) -> State {
        let input_left = environ.content_length();
        State {
            start: StartResponse::new(),
            outcome: Outcome::Open,
            overflow: None,
            input: (Bytes::new(), false),
            input_left,
            client_fault: None,
            errors: String::new(),
            request: Request::Environ(environ),
        }
    }
}

impl Exchange {
    pub(crate) fn new(
        io: Box<dyn AppIo>,
        environ: Environ,
        app: &Arc<str>,
        log: Arc<dyn ErrorLog>,
    ) -> Exchange {
        Exchange {
            io: Mutex::new(Some(io)),
            state: Mutex::new(State::new(environ)),
            app: app.clone(),
            log,
        }
    }

    /// Makes a finished exchange serve a new request, as [`new`](Self::new) would have made it:
    /// for an app thread that reuses its request objects (see `objects.rs`).
    pub(crate) fn begin(&self, io: Box<dyn AppIo>, environ: Environ) {
        *lock(&self.io) = Some(io);
        let mut state = self.state();
        let errors = std::mem::take(&mut state.errors);
        *state = State::new(environ);
        state.errors = errors; // empty: its buffer kept
    }

    /// The request's state. Never held across a call that takes it again.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Whether this exchange serves the application named `app`.
    pub(crate) fn serves(&self, app: &Arc<str>) -> bool {
        Arc::ptr_eq(&self.app, app)
    }

    /// Logs `message` with the application and request it concerns.
    ///
    /// A `wsgi.errors` line the application left without its newline goes out first: the
    /// application's own output comes before what the bridge says about the request.
    pub(crate) fn log(&self, level: Level, message: &str) {
        let (label, unterminated) = {
            let mut state = self.state();
            (state.label(), state.take_unterminated())
        };
        self.log_unterminated(unterminated);
        self.log_as(&label, level, message);
    }

    fn log_unterminated(&self, unterminated: Option<(String, String)>) {
        if let Some((line, label)) = unterminated {
            self.log_as(&label, Level::Error, &line);
        }
    }

    /// Logs `message` for the request labelled `label`.
    pub(crate) fn log_as(&self, label: &str, level: Level, message: &str) {
        let line = format!("{label} [{}]: {message}", self.app);
        self.log.log(level, &line);
    }

    pub(crate) fn outcome(&self) -> Outcome {
        self.state().outcome
    }

    /// Returns the Content-Length the body was cut at, once more than it was sent.
    pub(crate) fn overflowed(&self) -> Option<u64> {
        self.state().overflow
    }

    /// Runs `f` on the connection with the GIL released.
    pub(crate) fn with_io<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut dyn AppIo) -> Result<T, AppIoError> + Send,
    ) -> Result<T, AppIoError> {
        py.detach(|| match lock(&self.io).as_mut() {
            Some(io) => f(io.as_mut()),
            None => Err(AppIoError::Disconnected),
        })
    }

    /// What must go out before `chunk`: `Some(head)` if the head is due with it (PEP 3333: the
    /// head goes with the first non-empty chunk), `Some(None)` if it already went, and `None`
    /// when there is nothing to send at all (an empty chunk before the head).
    fn head_before(&self, chunk: &[u8]) -> PyResult<Option<Option<ResponseHead>>> {
        let mut state = self.state();
        if state.outcome != Outcome::Open {
            return Err(PyOSError::new_err("the response has already ended"));
        }
        let head = state.start.before_body(chunk).map_err(start_error)?;
        Ok((head.is_some() || !chunk.is_empty()).then_some(head))
    }

    /// Sends `chunk` of body, the head first if it has not gone out.
    pub(crate) fn send_chunk(&self, py: Python<'_>, chunk: &[u8]) -> PyResult<()> {
        let Some(head) = self.head_before(chunk)? else { return Ok(()) };
        let sent = self.with_io(py, |io| {
            if let Some(head) = &head {
                io.send_head(head)?;
            }
            io.send_body(chunk)
        });
        self.io_result(sent)
    }

    /// Maps a connection error to what the application sees, noting a lost client.
    pub(crate) fn io_result(&self, result: Result<(), AppIoError>) -> PyResult<()> {
        match result {
            Ok(()) => Ok(()),
            Err(AppIoError::Usage(UsageError::BodyTooLong { declared })) => {
                // The body is complete; what to tell the application is the caller's call.
                self.state().overflow = Some(declared);
                Ok(())
            }
            Err(e) => {
                self.state().outcome = Outcome::Broken;
                Err(PyOSError::new_err(format!("cannot send the response: {e}")))
            }
        }
    }

    /// Ends the response: sends the head if it has not gone out, then the end.
    pub(crate) fn finish(&self, py: Python<'_>) {
        // Bound first: the guard must not live into `fail`, which takes the lock again.
        let head = {
            let mut state = self.state();
            if state.outcome != Outcome::Open {
                return;
            }
            state.start.before_end()
        };
        let head = match head {
            Ok(head) => head,
            Err(StartError::NotCalled) => {
                return self.fail(
                    py,
                    "application returned without calling start_response()",
                    None,
                );
            }
            Err(e) => return self.fail(py, &e.to_string(), None),
        };
        let ended = self.with_io(py, |io| {
            if let Some(head) = &head {
                io.send_head(head)?;
            }
            io.send_end()
        });
        self.record_end(ended);
    }

    /// Sends a whole body of one non-empty `chunk` with the head that is pending (given a
    /// Content-Length if it has none): the head, the chunk and the end in one call on the
    /// connection. The same as [`send_chunk`](Self::send_chunk) then [`finish`](Self::finish),
    /// releasing the GIL once instead of twice. `Ok(false)`, having done nothing, if no head is
    /// pending (`start_response` not called, or the head already sent).
    pub(crate) fn send_whole(&self, py: Python<'_>, chunk: &[u8]) -> PyResult<bool> {
        let head = {
            let mut state = self.state();
            if state.outcome != Outcome::Open {
                return Ok(false);
            }
            match state.start.pending_head() {
                Some(head) => head.set_content_length_if_absent(chunk.len() as u64),
                None => return Ok(false),
            }
            state.start.before_body(chunk).map_err(start_error)?
        };
        let sent = self.with_io(py, |io| {
            if let Some(head) = &head {
                io.send_head(head)?;
            }
            let body = io.send_body(chunk);
            match body {
                // As after send_chunk: the excess is dropped and the response ends (PEP 3333
                // lets a server stop at the Content-Length; only write() is told, by an error).
                Ok(()) | Err(AppIoError::Usage(UsageError::BodyTooLong { .. })) => {
                    Ok((body, io.send_end()))
                }
                Err(e) => Err(e),
            }
        });
        let (body, ended) = match sent {
            Ok(results) => results,
            Err(e) => return self.io_result(Err(e)).map(|()| true),
        };
        self.io_result(body)?;
        self.record_end(ended);
        Ok(true)
    }

    /// Records how sending the end went.
    fn record_end(&self, ended: Result<(), AppIoError>) {
        match ended {
            Ok(()) => self.state().outcome = Outcome::Finished,
            Err(AppIoError::Usage(UsageError::BodyTooShort { declared, sent })) => {
                self.state().outcome = Outcome::Broken;
                self.log(
                    Level::Error,
                    &format!(
                        "application sent {sent} bytes of its Content-Length of {declared}; \
                         connection closed"
                    ),
                );
            }
            Err(e) => {
                self.state().outcome = Outcome::Broken;
                self.log(Level::Info, &format!("response not completed: {e}"));
            }
        }
    }

    /// Fails the request: logs `what` (and the exception's traceback), then answers 500 if
    /// the head has not gone out, or aborts the connection if it has.
    pub(crate) fn fail(&self, py: Python<'_>, what: &str, error: Option<PyErr>) {
        // A failure that followed the client's own (a vanished client, a malformed body) is
        // the client's doing: routine, and the application's traceback would only mislead.
        let client_fault = self.state().client_fault.clone();
        let (level, message) = match (client_fault, error) {
            (Some(fault), _) => (Level::Info, format!("{fault}; the application stopped: {what}")),
            (None, Some(e)) => (Level::Error, format!("{what}:\n{}", format_exception(py, &e))),
            (None, None) => (Level::Error, what.to_owned()),
        };
        // Only now: formatting the exception ran Python code (its `__str__`, finalizers), which
        // may have used the request's objects, `write()` included.
        enum Next {
            Nothing,
            Abort,
            Answer500,
        }
        let next = {
            let mut state = self.state();
            if state.outcome != Outcome::Open {
                Next::Nothing
            } else if state.start.is_sent() {
                state.outcome = Outcome::Broken;
                Next::Abort
            } else {
                state.start = StartResponse::new();
                Next::Answer500
            }
        };
        match next {
            Next::Nothing => self.log(level, &message),
            Next::Abort => {
                self.log(
                    level,
                    &format!("{message} (after the response head; connection aborted)"),
                );
                let _ = self.with_io(py, |io| {
                    io.abort();
                    Ok(())
                });
            }
            Next::Answer500 => {
                self.log(level, &message);
                const BODY: &[u8] = b"Internal Server Error\n";
                let head =
                    ResponseHead::plain_text(500, "Internal Server Error", BODY.len() as u64);
                let sent = self.with_io(py, |io| {
                    io.send_head(&head)?;
                    io.send_body(BODY)?;
                    io.send_end()
                });
                self.state().outcome =
                    if sent.is_ok() { Outcome::Finished } else { Outcome::Broken };
            }
        }
    }

    /// Releases the connection: later calls through lingering Python objects see it gone. The
    /// environ goes too; its label stays if `lingering` (Python objects of the request outlive
    /// it and may still log).
    ///
    /// With `flush_errors`, a last `wsgi.errors` line without its newline is logged now (for
    /// objects that are kept, where dropping them would have).
    pub(crate) fn release(&self, lingering: bool, flush_errors: bool) -> Option<Box<dyn AppIo>> {
        let unterminated = {
            let mut state = self.state();
            let unterminated = if flush_errors { state.take_unterminated() } else { None };
            if let Request::Environ(_) = &state.request {
                let label = if lingering { state.label() } else { String::new() };
                state.request = Request::Label(label);
            }
            unterminated
        };
        self.log_unterminated(unterminated);
        lock(&self.io).take()
    }
}

fn start_error(e: StartError) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// Formats an exception with its traceback, as Python prints it.
pub(crate) fn format_exception(py: Python<'_>, e: &PyErr) -> String {
    // The three-argument form: before 3.12 a fetched error keeps its traceback beside the
    // exception object, not in its `__traceback__`.
    let args = (e.get_type(py), e.value(py), e.traceback(py));
    let formatted = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", args))
        .and_then(|lines| lines.extract::<Vec<String>>());
    match formatted {
        Ok(lines) => lines.concat().trim_end().to_owned(),
        Err(_) => e.to_string(),
    }
}

/// The name of an object's type, for error messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".to_owned())
}

/// The bytes of a body item: `bytes`, `bytearray` or `memoryview`; anything else is the
/// application's mistake, explained.
pub(crate) enum Chunk<'a, 'py> {
    Borrowed(&'a Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl Chunk<'_, '_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Chunk::Borrowed(b) => b.as_bytes(),
            Chunk::Owned(v) => v,
        }
    }
}

/// The message for a body item that is not bytes; `str` gets the fix spelled out.
pub(crate) fn not_bytes_message(what: &str, item: &Bound<'_, PyAny>) -> String {
    if item.is_instance_of::<PyString>() {
        format!("{what} str in its response body; WSGI bodies are bytes: use 'text'.encode()")
    } else {
        format!("{what} {} in its response body; WSGI bodies are bytes", type_name(item))
    }
}

pub(crate) fn chunk_of<'a, 'py>(item: &'a Bound<'py, PyAny>) -> Option<Chunk<'a, 'py>> {
    if let Ok(b) = item.cast::<PyBytes>() {
        return Some(Chunk::Borrowed(b));
    }
    if let Ok(b) = item.cast::<PyByteArray>() {
        return Some(Chunk::Owned(b.to_vec()));
    }
    if item.is_instance_of::<PyMemoryView>() {
        return item.call_method0("tobytes").ok()?.extract::<Vec<u8>>().ok().map(Chunk::Owned);
    }
    None
}

/// The `start_response` callable of one request.
#[pyclass(frozen, module = "wsgi_core")]
pub(crate) struct StartResponseFn {
    exchange: Arc<Exchange>,
    /// What every call returns.
    write: Py<WriteFn>,
}

impl StartResponseFn {
    pub(crate) fn new<'py>(
        py: Python<'py>,
        exchange: &Arc<Exchange>,
    ) -> PyResult<Bound<'py, StartResponseFn>> {
        let write = Py::new(py, WriteFn { exchange: exchange.clone() })?;
        Bound::new(py, StartResponseFn { exchange: exchange.clone(), write })
    }

    /// Whether nothing but this object holds its `write()` callable.
    pub(crate) fn write_idle(&self, py: Python<'_>) -> bool {
        super::objects::refcnt(py, &self.write) == 1
    }
}

#[pymethods]
impl StartResponseFn {
    #[pyo3(signature = (status, response_headers, exc_info = None))]
    fn __call__(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        response_headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<WriteFn>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        if let Some(exc_info) = exc_info {
            if self.exchange.state().start.is_sent() {
                // PEP 3333: with exc_info after the head was sent, re-raise it.
                return Err(reraise(py, exc_info));
            }
        }
        let list = response_headers.cast::<PyList>().ok();
        let head = match list.and_then(|list| cached_head(status, list)) {
            Some(head) => head,
            None => {
                let head = parse_head(status, response_headers)?;
                if let Some(list) = list {
                    remember_head(status, list, &head);
                }
                head
            }
        };
        let started = self.exchange.state().start.start(head, exc_info.is_some());
        started.map_err(|e| match e {
            StartError::HeadAlreadySent => match exc_info {
                Some(exc_info) => reraise(py, exc_info),
                None => start_error(e),
            },
            e => start_error(e),
        })?;
        Ok(self.write.clone_ref(py))
    }
}

/// Checks what an application passed to `start_response` and makes the head of it.
fn parse_head(
    status: &Bound<'_, PyAny>,
    response_headers: &Bound<'_, PyAny>,
) -> PyResult<ResponseHead> {
    let status = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "start_response() status must be a str such as '200 OK', not {}",
            type_name(status)
        ))
    })?;
    let status = status.to_str()?;
    let list = response_headers.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "start_response() response_headers must be a list of (name, value) tuples, not {}",
            type_name(response_headers)
        ))
    })?;
    let mut pairs = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let pair = item.cast::<PyTuple>().ok().filter(|t| t.len() == 2).ok_or_else(|| {
            let found = match item.cast::<PyTuple>() {
                Ok(t) => format!("a tuple of {}", t.len()),
                Err(_) => type_name(&item),
            };
            PyTypeError::new_err(format!(
                "start_response() header #{i} must be a (name, value) tuple of two str, \
                     not {found}"
            ))
        })?;
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let (Ok(n), Ok(v)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "start_response() header #{i} must be two str, not ({}, {})",
                type_name(&name),
                type_name(&value)
            )));
        };
        pairs.push((n.clone(), v.clone()));
    }
    let mut strs = Vec::with_capacity(pairs.len());
    for (n, v) in &pairs {
        strs.push((n.to_str()?, v.to_str()?));
    }
    ResponseHead::from_wsgi(status, strs.iter().copied()).map_err(|e| {
        let detail = match e {
            crate::ResponseError::BadHeaderName { index }
            | crate::ResponseError::BadHeaderValue { index }
            | crate::ResponseError::NotLatin1 { index }
            | crate::ResponseError::HopByHop { index }
            | crate::ResponseError::BadContentLength { index } => {
                strs.get(index).map(|(n, v)| format!(" ({n:?}: {v:?})")).unwrap_or_default()
            }
            _ => format!(" (status {status:?})"),
        };
        PyValueError::new_err(format!("start_response(): {e}{detail}"))
    })
}

/// The last head an app thread's application passed, by the identity of its objects: apps such
/// as the classic hello pass the same constant status and header tuples on every request, and
/// checking them again was an eighth of the bridge's work per request. The cache holds
/// references, so no object it names can be freed and another take its address; `str` and
/// tuples are immutable.
struct CachedHead {
    status: Py<PyAny>,
    headers: Vec<Py<PyAny>>,
    head: ResponseHead,
}

thread_local! {
    static LAST_HEAD: std::cell::RefCell<Option<CachedHead>> = const { std::cell::RefCell::new(None) };
}

/// The head made from these very objects last time on this thread, if they are the same.
fn cached_head(status: &Bound<'_, PyAny>, list: &Bound<'_, PyList>) -> Option<ResponseHead> {
    LAST_HEAD
        .try_with(|last| {
            let last = last.try_borrow().ok()?;
            let last = last.as_ref()?;
            let same = status.is(&last.status)
                && list.len() == last.headers.len()
                && list.iter().zip(&last.headers).all(|(item, cached)| item.is(cached));
            same.then(|| last.head.clone())
        })
        .ok()
        .flatten()
}

/// Remembers the objects a valid head was made from, when they are all immutable: an exact
/// `str` status and exact tuples of exact `str`.
fn remember_head(status: &Bound<'_, PyAny>, list: &Bound<'_, PyList>, head: &ResponseHead) {
    let exact_str = |o: &Bound<'_, PyAny>| o.is_exact_instance_of::<PyString>();
    if !exact_str(status) {
        return;
    }
    let mut headers = Vec::with_capacity(list.len());
    for item in list.iter() {
        let Ok(pair) = item.cast::<PyTuple>() else { return };
        if !item.is_exact_instance_of::<PyTuple>() || !pair.iter().all(|o| exact_str(&o)) {
            return;
        }
        headers.push(item.unbind());
    }
    let cached = CachedHead { status: status.clone().unbind(), headers, head: head.clone() };
    super::put_local(&LAST_HEAD, Some(cached));
}

/// Re-raises the exception in an `exc_info` triple.
fn reraise(py: Python<'_>, exc_info: &Bound<'_, PyAny>) -> PyErr {
    match exc_info.get_item(1) {
        Ok(value) if !value.is_none() => PyErr::from_value(value),
        _ => {
            let _ = py;
            PyRuntimeError::new_err("start_response() called with exc_info after the head was sent")
        }
    }
}

/// The `write()` callable `start_response` returns (PEP 3333's imperative body API).
#[pyclass(frozen, module = "wsgi_core")]
pub(crate) struct WriteFn {
    exchange: Arc<Exchange>,
}

#[pymethods]
impl WriteFn {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(chunk) = chunk_of(data) else {
            return Err(PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}{}",
                type_name(data),
                if data.is_instance_of::<PyString>() {
                    "; WSGI bodies are bytes: use 'text'.encode()"
                } else {
                    ""
                }
            )));
        };
        self.exchange.send_chunk(py, chunk.as_bytes())?;
        match self.exchange.overflowed() {
            // PEP 3333: an error for writing past the Content-Length.
            Some(declared) => Err(PyValueError::new_err(format!(
                "write() past the response's Content-Length of {declared}; the excess was not sent"
            ))),
            None => Ok(()),
        }
    }
}
