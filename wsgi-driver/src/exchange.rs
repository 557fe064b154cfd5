//! The rules every driver's [`AppIo`](wsgi_core::AppIo) applies the same way, apart from the
//! socket: which bytes a call produces, when the response counts as ended, what the access log
//! records.

use std::time::Instant;

use bytes::Bytes;
use wsgi_core::{
    Connection, Environ, Event, ExternalBody, ProtocolError, ResponseHead, UsageError,
};

use crate::{AccessEntry, AccessLog};

/// One request's response side, kept by a driver beside the [`Connection`] it lent to an
/// application. Each method takes the connection, appends wire bytes to [`out`](Self::out)
/// and leaves writing them to the driver.
#[derive(Debug)]
pub struct Exchange {
    /// Wire bytes produced and not yet written.
    pub out: Vec<u8>,
    /// The response ended (or fell short of its Content-Length, which closes the connection
    /// by itself): nothing is left to abort.
    ended: bool,
    log: Option<Box<AccessEntry>>,
}

/// What [`Exchange::next_body`] found.
#[derive(Debug)]
pub enum BodyStep {
    /// A piece of the request body, or `None` at its end.
    Ready(Option<Bytes>),
    /// The connection needs more input first.
    NeedInput,
}

impl Exchange {
    /// Starts the exchange of the request `environ` describes; with an `access_log` it keeps
    /// what the log needs (its clock starts now).
    pub fn new(environ: &Environ, access_log: Option<&AccessLog>) -> Exchange {
        Exchange {
            out: Vec::new(),
            ended: false,
            log: access_log.map(|log| Box::new(AccessEntry::new(environ, log))),
        }
    }

    /// Before the first body read: `100 Continue` if the client asked for it.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_continue`].
    pub fn before_body(&mut self, conn: &mut Connection) -> Result<(), UsageError> {
        conn.send_continue(&mut self.out)
    }

    /// The next body event.
    ///
    /// # Errors
    ///
    /// The body broke the protocol. The answer (400, 413, ...) is then in `out` if no head was
    /// sent, and the access log records its status.
    pub fn next_body(&mut self, conn: &mut Connection) -> Result<BodyStep, ProtocolError> {
        match conn.poll_event() {
            Ok(Some(Event::Body(bytes))) => Ok(BodyStep::Ready(Some(bytes))),
            Ok(Some(Event::EndOfBody | Event::Request(_) | Event::Closed)) => {
                Ok(BodyStep::Ready(None))
            }
            Ok(None) => Ok(BodyStep::NeedInput),
            Err(e) => {
                // The client's fault: the application's own response can no longer go.
                let before = self.out.len();
                conn.send_error(&e, &mut self.out);
                if let (Some(log), true) = (self.log.as_mut(), self.out.len() > before) {
                    log.set_status(e.status());
                }
                Err(e)
            }
        }
    }

    /// The response head; during a shutdown it says `Connection: close`. It waits in `out`
    /// for the first body bytes or the end: one write instead of two.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_head`].
    pub fn head(
        &mut self,
        conn: &mut Connection,
        head: &ResponseHead,
        shutting_down: bool,
    ) -> Result<(), UsageError> {
        if shutting_down {
            conn.shutdown();
        }
        conn.send_head(head, &mut self.out)?;
        if let Some(log) = self.log.as_mut() {
            log.set_head(head);
        }
        Ok(())
    }

    /// A piece of the response body.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_body`].
    pub fn body(&mut self, conn: &mut Connection, chunk: &[u8]) -> Result<(), UsageError> {
        self.count_body(chunk.len() as u64);
        conn.send_body(chunk, &mut self.out)
    }

    /// [`body`](Self::body) for a chunk the driver writes from where it lies instead of copying
    /// it into `out`: frames it, leaving what goes before it in `out`, and says how many of its
    /// bytes to write after `out` (all but any past the Content-Length). Call
    /// [`in_place_sent`](Self::in_place_sent) once they are out.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_body_external`].
    pub fn body_in_place(
        &mut self,
        conn: &mut Connection,
        chunk: &[u8],
    ) -> Result<ExternalBody, UsageError> {
        self.count_body(chunk.len() as u64);
        conn.send_body_external(chunk.len() as u64, &mut self.out)
    }

    /// After the bytes [`body_in_place`](Self::body_in_place) framed are out: queues what must
    /// follow them.
    ///
    /// # Errors
    ///
    /// [`UsageError::BodyTooLong`] if the chunk passed the Content-Length, as
    /// [`body`](Self::body) returns it.
    pub fn in_place_sent(&mut self, framed: &ExternalBody) -> Result<(), UsageError> {
        self.out.extend_from_slice(framed.suffix);
        framed.error.map_or(Ok(()), Err)
    }

    /// Frames `len` bytes the driver sends itself (sendfile); call
    /// [`external_sent`](Self::external_sent) once they are out.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_body_external`].
    pub fn external(
        &mut self,
        conn: &mut Connection,
        len: u64,
    ) -> Result<ExternalBody, UsageError> {
        conn.send_body_external(len, &mut self.out)
    }

    /// Records the bytes of `external` as sent and queues what must follow them.
    ///
    /// # Errors
    ///
    /// [`UsageError::BodyTooLong`] if the `len` given to [`external`](Self::external) passed
    /// the Content-Length (only `send` bytes were to go).
    pub fn external_sent(&mut self, external: &ExternalBody) -> Result<(), UsageError> {
        self.count_body(external.send);
        self.in_place_sent(external)
    }

    /// Counts `n` body bytes for the access log, if there is one.
    fn count_body(&mut self, n: u64) {
        if let Some(log) = self.log.as_mut() {
            log.add_body(n);
        }
    }

    /// Ends the response.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_end`].
    pub fn end(&mut self, conn: &mut Connection) -> Result<(), UsageError> {
        let ended = conn.send_end(Instant::now(), &mut self.out);
        // Short of its Content-Length, the connection closes by itself; any other refusal
        // (no head sent) leaves the response to be aborted.
        self.ended = matches!(ended, Ok(()) | Err(UsageError::BodyTooShort { .. }));
        ended
    }

    /// When the application is done with the connection: a response it did not end cannot
    /// be completed, so the connection is aborted.
    pub fn finish(&self, conn: &mut Connection) {
        if !self.ended {
            conn.abort();
        }
    }

    /// Hands the request's record to the access log, for a client at `peer` (once: later
    /// calls do nothing).
    pub fn log(&mut self, access_log: Option<&AccessLog>, peer: Option<std::net::SocketAddr>) {
        if let (Some(entry), Some(access_log)) = (self.log.take(), access_log) {
            access_log.write(entry.into_record(peer));
        }
    }
}
