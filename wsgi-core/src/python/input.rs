//! `wsgi.input` and `wsgi.errors`.

use std::sync::{Arc, MutexGuard};

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::Level;
use super::exchange::{Exchange, State, type_name};
use crate::app::AppIoError;

/// `wsgi.input`: the request body as a binary stream, read from the connection as the
/// application asks (one body piece at a time: a slow application slows the client, never the
/// server's memory).
#[pyclass(frozen, module = "wsgi_core")]
pub(crate) struct WsgiInput {
    exchange: Arc<Exchange>,
}

impl WsgiInput {
    pub(crate) fn new<'py>(
        py: Python<'py>,
        exchange: &Arc<Exchange>,
    ) -> PyResult<Bound<'py, WsgiInput>> {
        Bound::new(py, WsgiInput { exchange: exchange.clone() })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.exchange.state()
    }

    /// Makes sure some unread body is buffered; returns `false` at the end of the body.
    fn fill(&self, py: Python<'_>) -> PyResult<bool> {
        loop {
            {
                let state = self.state();
                if !state.input.0.is_empty() {
                    return Ok(true);
                }
                if state.input.1 {
                    return Ok(false);
                }
            }
            let piece = self.exchange.with_io(py, |io| io.read_body());
            let mut state = self.state();
            match piece {
                Ok(Some(bytes)) => state.input.0 = bytes,
                Ok(None) => state.input.1 = true,
                Err(e) => {
                    state.input.1 = true;
                    let message = match e {
                        AppIoError::Disconnected => BODY_CUT_SHORT.to_owned(),
                        e => format!("cannot read the request body: {e}"),
                    };
                    if !matches!(e, AppIoError::Usage(_)) {
                        state.client_fault = Some(message.clone());
                    }
                    return Err(PyOSError::new_err(message));
                }
            }
        }
    }

    /// Takes up to `limit` buffered bytes, up to and including the first `\n` if `line`.
    fn take(&self, limit: usize, line: bool) -> Bytes {
        let mut state = self.state();
        let buf = &mut state.input.0;
        let mut n = buf.len().min(limit);
        if line {
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                n = i + 1;
            }
        }
        let piece = buf.split_to(n);
        if let Some(left) = &mut state.input_left {
            *left = left.saturating_sub(piece.len() as u64);
        }
        piece
    }

    /// Reads exactly `n` bytes of a body that has at least that many left into a `bytes` made
    /// at that size, piece by piece: no gathering buffer, one copy per byte.
    fn read_exact<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        PyBytes::new_with(py, n, |out| {
            let mut at = 0;
            while at < n {
                // The bytes object is not reachable from Python until it is returned, so the
                // GIL may be released while it is filled.
                if !self.fill(py)? {
                    // The connection reports a body cut short as an error, so a body with this
                    // many bytes left does not end here; if it did, this is what it would be.
                    return Err(PyOSError::new_err(BODY_CUT_SHORT));
                }
                let piece = self.take(n - at, false);
                out[at..at + piece.len()].copy_from_slice(&piece);
                at += piece.len();
            }
            Ok(())
        })
    }

    /// Reads up to `size` bytes (all, if `size` is `None`), stopping after a newline if `line`.
    fn read_impl(&self, py: Python<'_>, size: Option<usize>, line: bool) -> PyResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let want = size.map_or(usize::MAX, |s| s - out.len());
            if want == 0 || !self.fill(py)? {
                return Ok(out);
            }
            let piece = self.take(want, line);
            out.extend_from_slice(&piece);
            if line && out.last() == Some(&b'\n') {
                return Ok(out);
            }
        }
    }
}

/// The error a read gets when the client went away before its body ended.
const BODY_CUT_SHORT: &str = "client disconnected before the request body ended";

/// The largest read made at its final size before its bytes arrive (see `read`): larger ones
/// grow with what arrives.
const READ_EXACT_MAX: usize = 1 << 20;

/// `size` as io does: negative or `None` means "no limit".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        if size == Some(0) {
            return Ok(PyBytes::new(py, b""));
        }
        if let Some(s) = size {
            if self.fill(py)? {
                let (buffered, left) = {
                    let state = self.state();
                    (state.input.0.len(), state.input_left)
                };
                // One buffered piece that satisfies the read is handed out as it is.
                if buffered >= s {
                    let piece = self.take(s, false);
                    return Ok(PyBytes::new(py, &piece));
                }
                // Otherwise, with the body's length known, so is the size of what this read
                // returns.
                // Up to READ_EXACT_MAX: the bytes object is made before the body arrives, and
                // a client must not make the server hold a large one for bytes it never sends.
                if let Some(left) = left.and_then(|l| usize::try_from(l).ok()) {
                    let n = left.min(s);
                    if left >= buffered && n <= READ_EXACT_MAX {
                        return self.read_exact(py, n);
                    }
                }
            }
        }
        let data = self.read_impl(py, size, false)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.read_impl(py, limit(size), true)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let line = self.read_impl(py, None, true)?;
            if line.is_empty() {
                return Ok(lines);
            }
            total += line.len();
            lines.push(PyBytes::new(py, &line));
            if hint.is_some_and(|h| total >= h) {
                return Ok(lines);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_impl(py, None, true)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

/// `wsgi.errors`: a text stream into the server's log, one log line per line written, each
/// tagged with the request it came from.
#[pyclass(frozen, module = "wsgi_core")]
pub(crate) struct WsgiErrors {
    exchange: Arc<Exchange>,
}

impl WsgiErrors {
    pub(crate) fn new<'py>(
        py: Python<'py>,
        exchange: &Arc<Exchange>,
    ) -> PyResult<Bound<'py, WsgiErrors>> {
        Bound::new(py, WsgiErrors { exchange: exchange.clone() })
    }

    fn emit_lines(&self, flush: bool) {
        let mut lines = Vec::new();
        let label = {
            let mut state = self.exchange.state();
            let pending = &mut state.errors;
            while let Some(i) = pending.find('\n') {
                lines.push(pending[..i].to_owned());
                pending.drain(..=i);
            }
            if flush && !pending.is_empty() {
                lines.push(std::mem::take(pending));
            }
            if lines.is_empty() {
                return;
            }
            state.label()
        };
        for line in lines {
            self.exchange.log_as(&label, Level::Error, &line);
        }
    }
}

#[pymethods]
impl WsgiErrors {
    fn write(&self, s: &Bound<'_, PyAny>) -> PyResult<usize> {
        let s = s.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!("wsgi.errors.write() takes str, not {}", type_name(s)))
        })?;
        let text = s.to_cow()?;
        self.exchange.state().errors.push_str(&text);
        self.emit_lines(false);
        Ok(text.chars().count())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    fn flush(&self) {
        self.emit_lines(true);
    }
}

impl Drop for WsgiErrors {
    fn drop(&mut self) {
        self.emit_lines(true);
    }
}
