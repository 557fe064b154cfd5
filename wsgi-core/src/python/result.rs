//! Calling the application and walking its result iterable; `wsgi.file_wrapper`.

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::Level;
use super::exchange::{Exchange, Outcome, StartResponseFn, chunk_of, not_bytes_message, type_name};

/// Calls `app(environ, start_response)` and sends what it returns. `close()` is called on the
/// result exactly once, whatever happens. The caller releases the connection afterwards.
pub(crate) fn run(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    environ: Bound<'_, PyDict>,
    start_response: &Bound<'_, StartResponseFn>,
    exchange: &Arc<Exchange>,
) {
    match app.call1((environ, start_response)) {
        Ok(result) => {
            // The response ends before close(): a close() that fails (it only releases the
            // application's resources) is logged, and cannot spoil a response already whole.
            if !send_result(py, &result, exchange) {
                exchange.finish(py);
            }
            close(py, &result, exchange);
        }
        Err(e) => exchange.fail(py, "application raised an exception", Some(e)),
    }
}

fn close(py: Python<'_>, result: &Bound<'_, PyAny>, exchange: &Exchange) {
    // A result without close() has nothing to release. Lists and tuples (most results) have
    // none: skip the lookup, whose miss builds and discards an AttributeError.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return;
    }
    if let Ok(Some(close)) = result.getattr_opt(pyo3::intern!(py, "close")) {
        if let Err(e) = close.call0() {
            exchange.fail(py, "the result's close() raised an exception", Some(e));
        }
    }
}

/// Sends what the application returned; `true` when the response is over (sent whole, or
/// failed), `false` when [`Exchange::finish`] must still end it.
fn send_result(py: Python<'_>, result: &Bound<'_, PyAny>, exchange: &Exchange) -> bool {
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        match send_file(py, wrapper.get(), exchange) {
            Ok(true) => return false,
            Ok(false) => {} // not a regular file, or the driver cannot: iterate instead
            Err(e) => {
                exchange.fail(py, "sending the file_wrapper failed", Some(e));
                return true;
            }
        }
    }
    // A one-item list or tuple is the whole body: give it a Content-Length if the app did not.
    let single = match (result.cast::<PyList>(), result.cast::<PyTuple>()) {
        (Ok(l), _) if l.len() == 1 => l.get_item(0).ok(),
        (_, Ok(t)) if t.len() == 1 => t.get_item(0).ok(),
        _ => None,
    };
    if let Some(item) = single.as_ref().and_then(|i| i.cast::<PyBytes>().ok()) {
        let bytes = item.as_bytes();
        // An exact list or tuple has no close() and cannot change what follows: the head, the
        // item and the end go to the connection at once.
        let exact =
            result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        if exact && !bytes.is_empty() {
            match exchange.send_whole(py, bytes) {
                Ok(true) => return true,
                Ok(false) => {} // the head is not pending: the iteration says why
                Err(e) => {
                    send_failed(py, exchange, e);
                    return true;
                }
            }
        } else if let Some(head) = exchange.state().start.pending_head() {
            head.set_content_length_if_absent(bytes.len() as u64);
        }
    }
    send_items(py, result, exchange);
    false
}

/// Sends the items of an iterable result one by one.
fn send_items(py: Python<'_>, result: &Bound<'_, PyAny>, exchange: &Exchange) {
    // Iterable, but of ints or characters: the body itself instead of an iterable of bodies.
    if result.is_instance_of::<PyString>() {
        let what = "application returned str, not an iterable of bytes: return ['text'.encode()]";
        return exchange.fail(py, what, None);
    }
    if chunk_of(result).is_some() {
        let what = format!(
            "application returned {}, not an iterable of bytes: return [body]",
            type_name(result)
        );
        return exchange.fail(py, &what, None);
    }
    let iter = match result.try_iter() {
        Ok(iter) => iter,
        Err(e) => {
            let what = format!(
                "application returned {}, which is not iterable; a WSGI application returns an \
                 iterable of bytes, e.g. [b'body']",
                type_name(result)
            );
            return exchange.fail(py, &what, Some(e));
        }
    };
    for item in iter {
        let item = match item {
            Ok(item) => item,
            Err(e) => return exchange.fail(py, "application raised an exception", Some(e)),
        };
        let Some(chunk) = chunk_of(&item) else {
            return exchange.fail(py, &not_bytes_message("application returned", &item), None);
        };
        if let Err(e) = exchange.send_chunk(py, chunk.as_bytes()) {
            return send_failed(py, exchange, e);
        }
        if exchange.overflowed().is_some() {
            // PEP 3333: stop iterating once the Content-Length is sent (a file_wrapper serving
            // a range of its file, say); the connection dropped the excess.
            return;
        }
    }
}

/// Ends the response after sending failed: a client that went away is routine, anything else a
/// failure.
fn send_failed(py: Python<'_>, exchange: &Exchange, e: PyErr) {
    if exchange.outcome() == Outcome::Broken {
        exchange.log(Level::Info, "client went away before the response ended");
        return;
    }
    exchange.fail(py, "sending the response failed", Some(e));
}

/// Sends a file-backed `wsgi.file_wrapper` with the driver's zero-copy path. Returns
/// `Ok(false)` when that does not apply (no `fileno()`, not a regular file, a driver without
/// sendfile), leaving the caller to iterate.
fn send_file(py: Python<'_>, wrapper: &FileWrapper, exchange: &Exchange) -> PyResult<bool> {
    let filelike = wrapper.filelike.bind(py);
    let Ok(fd) = filelike.call_method0("fileno").and_then(|f| f.extract::<i32>()) else {
        return Ok(false);
    };
    let Ok(offset) = filelike.call_method0("tell").and_then(|t| t.extract::<u64>()) else {
        return Ok(false);
    };
    // The same file through /proc (std gives no safe way to borrow a raw descriptor).
    let Ok(file) = std::fs::File::open(format!("/proc/self/fd/{fd}")) else { return Ok(false) };
    let Ok(meta) = file.metadata() else { return Ok(false) };
    if !meta.is_file() {
        return Ok(false);
    }
    let mut len = meta.len().saturating_sub(offset);
    let head = {
        let mut state = exchange.state();
        let start = &mut state.start;
        if let Some(head) = start.pending_head() {
            head.set_content_length_if_absent(len);
            // Never more than the application's own Content-Length (a range of the file).
            len = head.content_length().map_or(len, |declared| declared.min(len));
        }
        match start.before_body(b"file") {
            Ok(head) => head,
            Err(e) => return Err(PyTypeError::new_err(e.to_string())),
        }
    };
    let sent = exchange.with_io(py, |io| {
        if let Some(head) = &head {
            io.send_head(head)?;
        }
        io.send_file(&file, offset, len)
    });
    match sent {
        Ok(true) => Ok(true),
        Ok(false) => {
            // The head may have gone out; the iteration path sends the body.
            Ok(false)
        }
        Err(e) => exchange.io_result(Err(e)).map(|()| true),
    }
}

/// `wsgi.file_wrapper(filelike, block_size=8192)`: iterates the file in blocks, and lets the
/// server send a regular file without copying it through Python.
#[pyclass(frozen, module = "wsgi_core")]
pub(crate) struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size = 8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> FileWrapper {
        FileWrapper { filelike, block_size: block_size.max(1) }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self.filelike.bind(py).call_method1("read", (self.block_size,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}
