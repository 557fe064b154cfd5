//! The seam between drivers and applications: [`Application`] runs on blocking app threads and
//! talks to its connection through [`AppIo`].
//!
//! A driver owns the sockets and a pool of app threads. On each app thread it calls
//! [`Application::serve`] once, handing it a source of [`Job`]s; the application serves jobs
//! until the source runs dry. Owning the thread's loop lets an application keep per-thread state
//! for the thread's whole life: the Python bridge attaches the thread to the interpreter once
//! and detaches only around the blocking waits (the next job, request body reads, writes to a
//! slow client).

use std::fmt;

use bytes::Bytes;

use crate::environ::Environ;
use crate::error::{ProtocolError, UsageError};
use crate::response::ResponseHead;

/// One request for an application: its environ and the way to its connection.
pub struct Job {
    /// The CGI part of the WSGI environ.
    pub environ: Environ,
    /// The request body and the response's way out.
    pub io: Box<dyn AppIo>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").field("environ", &self.environ).finish_non_exhaustive()
    }
}

/// Where an app thread gets its jobs: `next_job` blocks until one is ready and returns `None`
/// when the thread should end (shutdown).
pub type JobSource<'a> = dyn FnMut() -> Option<Job> + Send + 'a;

/// An application that serves requests on blocking threads.
///
/// Any `Fn(Job) + Send + Sync + 'static` closure is an application, which is how adapters test
/// without Python:
///
/// ```
/// use wsgi_core::{AppIo, Application, Job, ResponseHead};
/// fn hello(mut job: Job) {
///     let head = ResponseHead::from_wsgi("200 OK", [("Content-Length", "5")]).unwrap();
///     let _ = job.io.send_head(&head).and_then(|()| job.io.send_body(b"hello"));
///     let _ = job.io.send_end();
/// }
/// fn assert_app<A: Application>(_: &A) {}
/// assert_app(&hello);
/// ```
pub trait Application: Send + Sync + 'static {
    /// Runs one app thread: serves each job `next_job` yields until it returns `None`.
    ///
    /// `next_job` blocks while no request is ready; an implementation holding a lock (the GIL)
    /// must release it around the call.
    fn serve(&self, next_job: &mut JobSource<'_>);

    /// Whether only one of the application's threads runs at a time, whatever the others do
    /// (a global lock: Python's GIL). A driver then keeps requests on as few threads as keep
    /// up, rather than handing the lock from thread to thread on every request; the other
    /// threads serve when requests block. `false` (the default): the threads run in parallel.
    fn serializes_threads(&self) -> bool {
        false
    }
}

impl<F> Application for F
where
    F: Fn(Job) + Send + Sync + 'static,
{
    fn serve(&self, next_job: &mut JobSource<'_>) {
        while let Some(job) = next_job() {
            self(job);
        }
    }
}

/// Why an [`AppIo`] call failed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppIoError {
    /// The client went away (reset, closed, or the server is shutting the connection).
    Disconnected,
    /// The request body broke the protocol; the connection answers or closes.
    BadRequest(ProtocolError),
    /// The call broke the response's rules (e.g. a body longer than its Content-Length).
    Usage(UsageError),
}

impl fmt::Display for AppIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppIoError::Disconnected => f.write_str("client disconnected"),
            AppIoError::BadRequest(e) => write!(f, "bad request body: {e}"),
            AppIoError::Usage(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AppIoError {}

impl From<UsageError> for AppIoError {
    fn from(e: UsageError) -> AppIoError {
        AppIoError::Usage(e)
    }
}

/// The connection as seen from an app thread: blocking calls, each of which may wait on the
/// client (a slow upload, a slow reader). Implemented by each driver.
pub trait AppIo: Send {
    /// Returns the next piece of the request body, `Ok(None)` at its end. The first call sends
    /// `100 Continue` if the client asked for it. Blocks until bytes arrive.
    ///
    /// # Errors
    ///
    /// [`AppIoError::Disconnected`] if the client went away, [`AppIoError::BadRequest`] if the
    /// body is malformed.
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError>;

    /// Sends the response head.
    ///
    /// # Errors
    ///
    /// [`AppIoError::Disconnected`], or [`AppIoError::Usage`] if a head was already sent.
    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError>;

    /// Sends a piece of the response body. Blocks while the client is slow to read.
    ///
    /// # Errors
    ///
    /// [`AppIoError::Disconnected`], or [`AppIoError::Usage`] (e.g. past the Content-Length).
    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError>;

    /// Sends `len` bytes of `file` from `offset` as response body, zero-copy where the driver
    /// can (sendfile). Returns `Ok(false)` if this driver cannot, and the caller then sends the
    /// file's contents through [`send_body`](Self::send_body).
    ///
    /// # Errors
    ///
    /// As [`send_body`](Self::send_body).
    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<bool, AppIoError> {
        let _ = (file, offset, len);
        Ok(false)
    }

    /// Ends the response.
    ///
    /// # Errors
    ///
    /// [`AppIoError::Disconnected`], or [`AppIoError::Usage`] if the body fell short of its
    /// Content-Length (the connection is then closed).
    fn send_end(&mut self) -> Result<(), AppIoError>;

    /// Ends the exchange without completing the response: the application failed after the
    /// head was sent, so the client must see the connection close rather than a clean end.
    fn abort(&mut self);
}
