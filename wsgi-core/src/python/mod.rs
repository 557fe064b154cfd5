//! The pyo3 bridge: calls any PEP 3333 application from an app thread (feature `python`).
//!
//! The rules live in plain Rust ([`Environ`](crate::Environ),
//! [`ResponseHead::from_wsgi`](crate::ResponseHead::from_wsgi),
//! [`StartResponse`](crate::StartResponse)); this module copies the environ into a dict, wraps
//! the core types in small Python objects and walks the result iterable.
//!
//! Threads: [`PyApplication::serve`] attaches its thread to the interpreter once and detaches
//! around every blocking wait: the next job, reading `wsgi.input`, sending to a slow client.

mod dict;
mod exchange;
mod input;
mod load;
mod objects;
mod result;
mod strings;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::LocalKey;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use crate::app::{Application, Job, JobSource};
use crate::environ::CgiKey;

pub use load::{AppSpec, LoadError};

/// How serious a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// A failed request or a broken application.
    Error,
    /// Something the application should fix that did not fail the request.
    Warning,
    /// Routine events (a client that went away).
    Info,
}

/// Where the bridge writes its log lines and what applications write to `wsgi.errors`.
pub trait ErrorLog: Send + Sync + 'static {
    /// Records one line (no trailing newline).
    fn log(&self, level: Level, message: &str);
}

/// An [`ErrorLog`] that writes to standard error.
#[derive(Clone, Copy, Debug, Default)]
pub struct StderrLog;

impl ErrorLog for StderrLog {
    fn log(&self, level: Level, message: &str) {
        let tag = match level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        };
        eprintln!("[{tag}] {message}");
    }
}

/// What the environ tells the application about the server, and where logs go.
#[derive(Clone)]
pub struct PyOptions {
    /// `wsgi.multithread`: more than one app thread per process.
    pub multithread: bool,
    /// `wsgi.multiprocess`: more than one worker process.
    pub multiprocess: bool,
    /// `SERVER_SOFTWARE`.
    pub server_software: String,
    /// Where log lines go.
    pub log: Arc<dyn ErrorLog>,
}

impl Default for PyOptions {
    fn default() -> Self {
        PyOptions {
            multithread: true,
            multiprocess: false,
            server_software: concat!("wsgi-core/", env!("CARGO_PKG_VERSION")).to_owned(),
            log: Arc::new(StderrLog),
        }
    }
}

impl fmt::Debug for PyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyOptions")
            .field("multithread", &self.multithread)
            .field("multiprocess", &self.multiprocess)
            .field("server_software", &self.server_software)
            .finish_non_exhaustive()
    }
}

/// Python objects built once and reused for every request.
struct Consts {
    /// The constant part of every environ; each environ shape (see `dict`) starts from a copy.
    template: Py<PyDict>,
    /// One interned key per [`CgiKey`], by [`CgiKey::index`].
    cgi_keys: Vec<Py<PyString>>,
    /// The interned `HTTP_*` keys of the common request headers.
    /// The environ keys of the header names `names` knows, by id.
    header_keys: Vec<Py<PyString>>,
    http: Py<PyString>,
    https: Py<PyString>,
    /// Tells this application's per-thread environ shapes from another's.
    id: u64,
}

/// A Python WSGI application, callable from any app thread.
///
/// ```no_run
/// use wsgi_core::python::{AppSpec, PyApplication, PyOptions};
/// let app = PyApplication::load(&AppSpec::new("myproject.wsgi:application"), PyOptions::default())?;
/// // hand `app` to an adapter, which calls `Application::serve` on each app thread
/// # Ok::<(), wsgi_core::python::LoadError>(())
/// ```
pub struct PyApplication {
    app: Py<PyAny>,
    name: Arc<str>,
    options: PyOptions,
    consts: Consts,
    /// The interpreter runs one thread at a time (it has a GIL: every build but a
    /// free-threaded one with the GIL off).
    gil: bool,
}

impl fmt::Debug for PyApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyApplication").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PyApplication {
    /// Initializes the embedded interpreter if needed and loads the application `spec` names.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] that names what was not found or failed (with the Python traceback).
    pub fn load(spec: &AppSpec, options: PyOptions) -> Result<PyApplication, LoadError> {
        Python::initialize();
        Python::attach(|py| {
            let app = load::load(py, spec)?;
            PyApplication::new(py, app, spec.target(), options)
                .map_err(|e| LoadError::python(py, e))
        })
    }

    /// Wraps an already loaded callable; `name` identifies it in log lines.
    ///
    /// # Errors
    ///
    /// A Python error if the constant objects cannot be built (out of memory).
    pub fn new(
        py: Python<'_>,
        app: Bound<'_, PyAny>,
        name: &str,
        options: PyOptions,
    ) -> PyResult<PyApplication> {
        let template = PyDict::new(py);
        template.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        template.set_item("wsgi.multithread", PyBool::new(py, options.multithread))?;
        template.set_item("wsgi.multiprocess", PyBool::new(py, options.multiprocess))?;
        template.set_item("wsgi.run_once", false)?;
        template.set_item("wsgi.input_terminated", true)?;
        template.set_item("wsgi.file_wrapper", py.get_type::<result::FileWrapper>())?;
        template.set_item("SERVER_SOFTWARE", options.server_software.as_str())?;
        let cgi_keys =
            CgiKey::ALL.iter().map(|k| PyString::intern(py, k.as_str()).unbind()).collect();
        static IDS: AtomicU64 = AtomicU64::new(0);
        // `sys._is_gil_enabled()` exists from 3.13; before, there is always a GIL.
        let gil = match py.import("sys")?.getattr_opt("_is_gil_enabled")? {
            Some(enabled) => enabled.call0()?.is_truthy()?,
            None => true,
        };
        Ok(PyApplication {
            app: app.unbind(),
            name: Arc::from(name),
            options,
            consts: Consts {
                template: template.unbind(),
                cgi_keys,
                header_keys: crate::names::NAMES
                    .iter()
                    .map(|(_, key)| PyString::intern(py, key).unbind())
                    .collect(),
                http: PyString::intern(py, "http").unbind(),
                https: PyString::intern(py, "https").unbind(),
                id: IDS.fetch_add(1, Ordering::Relaxed),
            },
            gil,
        })
    }

    /// Serves one job on this thread, which must be attached to the interpreter.
    pub fn call(&self, py: Python<'_>, job: Job) {
        let Job { environ, io } = job;
        // The dict borrows the environ; the exchange then keeps it, for the log label (formatted
        // only when a line is logged).
        let dict = self.environ_dict(py, &environ);
        let io = match self.request_objects(py, io, environ) {
            Ok(objects) => {
                let exchange = &objects.exchange;
                match dict.and_then(|dict| self.add_streams(py, &dict, &objects).map(|()| dict)) {
                    Ok(dict) => {
                        let start_response = objects.start_response.bind(py);
                        result::run(py, self.app.bind(py), dict, start_response, exchange);
                    }
                    Err(e) => exchange.fail(py, "building the environ failed", Some(e)),
                }
                // After the dict is gone (unless the application kept it or its streams, whose
                // late log lines then need the label).
                self.finish_objects(py, objects)
            }
            Err((exchange, e)) => {
                exchange.fail(py, "building the environ failed", Some(e));
                exchange.release(false, false)
            }
        };
        // The connection is handed back without the GIL: a driver may flush or log as it lets
        // go of it.
        py.detach(move || drop(io));
    }
}

impl Application for PyApplication {
    fn serve(&self, next_job: &mut JobSource<'_>) {
        Python::attach(|py| {
            while let Some(job) = py.detach(&mut *next_job) {
                self.call(py, job);
            }
        });
    }

    fn serializes_threads(&self) -> bool {
        self.gil
    }
}

/// Takes what an app thread keeps in `slot` (its default while the thread exits or the slot is
/// in use), to be put back with [`put_local`] when done.
fn take_local<T: Default>(slot: &'static LocalKey<RefCell<T>>) -> T {
    slot.try_with(|s| s.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default())
        .unwrap_or_default()
}

/// Puts `value` in `slot` for the thread's next request (dropped if the thread exits).
fn put_local<T>(slot: &'static LocalKey<RefCell<T>>, value: T) {
    let _ = slot.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            *s = value;
        }
    });
}
