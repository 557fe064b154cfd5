//! The Python objects of one request (`wsgi.input`, `wsgi.errors`, `start_response` and its
//! `write()`), kept by each app thread for its next request when the application let go of
//! them.
//!
//! Making and freeing these four objects and their [`Exchange`] was a fifth of the bridge's
//! work for a small response. Most applications drop them when the request ends, so the thread
//! keeps the last set and, if nothing but the set refers to any of them (every reference count
//! is 1), resets the exchange for the next request instead. An application that kept one (a
//! `wsgi.input` stored away, an environ in a reference cycle until the next collection) keeps
//! that set to itself: the thread makes a new one.
//!
//! Only where the GIL serializes threads: reference counts are then exact while it is held.

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::prelude::*;

use super::exchange::{Exchange, StartResponseFn};
use super::input::{WsgiErrors, WsgiInput};
use super::{PyApplication, input, put_local, take_local};
use crate::app::AppIo;
use crate::environ::Environ;

/// One request's Python objects and the exchange they share.
pub(crate) struct RequestObjects {
    pub(crate) exchange: Arc<Exchange>,
    pub(crate) input: Py<WsgiInput>,
    pub(crate) errors: Py<WsgiErrors>,
    pub(crate) start_response: Py<StartResponseFn>,
}

thread_local! {
    static KEPT: RefCell<Option<RequestObjects>> = const { RefCell::new(None) };
}

impl RequestObjects {
    fn new(py: Python<'_>, exchange: Arc<Exchange>) -> PyResult<RequestObjects> {
        Ok(RequestObjects {
            input: input::WsgiInput::new(py, &exchange)?.unbind(),
            errors: input::WsgiErrors::new(py, &exchange)?.unbind(),
            start_response: StartResponseFn::new(py, &exchange)?.unbind(),
            exchange,
        })
    }

    /// Whether nothing but this set refers to its objects and its exchange: the application
    /// cannot reach them any more.
    fn idle(&self, py: Python<'_>) -> bool {
        let objects_idle = refcnt(py, &self.input) == 1
            && refcnt(py, &self.errors) == 1
            && refcnt(py, &self.start_response) == 1
            && self.start_response.get().write_idle(py);
        // The set and each of the four objects hold the exchange.
        objects_idle && Arc::strong_count(&self.exchange) == 5
    }
}

impl PyApplication {
    /// The objects for a request on `io`: the thread's kept set, reset, or a new one. If they
    /// cannot be made, the error comes back with the request's exchange, so that the client can
    /// still be answered.
    pub(super) fn request_objects(
        &self,
        py: Python<'_>,
        io: Box<dyn AppIo>,
        environ: Environ,
    ) -> Result<RequestObjects, (Arc<Exchange>, PyErr)> {
        let kept = if self.gil { take_local(&KEPT) } else { None };
        let kept = kept.filter(|objects| objects.exchange.serves(&self.name));
        if let Some(objects) = kept {
            objects.exchange.begin(io, environ);
            return Ok(objects);
        }
        let exchange = Arc::new(Exchange::new(io, environ, &self.name, self.options.log.clone()));
        RequestObjects::new(py, exchange.clone()).map_err(|e| (exchange, e))
    }

    /// Ends a request's use of its objects: releases the connection and keeps the set for the
    /// thread's next request if the application let go of every object.
    pub(super) fn finish_objects(
        &self,
        py: Python<'_>,
        objects: RequestObjects,
    ) -> Option<Box<dyn AppIo>> {
        if !(self.gil && objects.idle(py)) {
            let exchange = objects.exchange.clone();
            drop(objects);
            // Objects the application kept hold the exchange: their late log lines need the
            // request's label.
            let lingering = Arc::strong_count(&exchange) > 1;
            return exchange.release(lingering, false);
        }
        let io = objects.exchange.release(false, true);
        put_local(&KEPT, Some(objects));
        io
    }
}

/// The reference count of `object`.
pub(crate) fn refcnt<T>(py: Python<'_>, object: &Py<T>) -> isize {
    // Deprecated for `ffi::Py_REFCNT`, an unsafe fn (this crate has no unsafe code).
    #[allow(deprecated)]
    object.get_refcnt(py)
}
