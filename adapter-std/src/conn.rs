//! A connection as it moves between the poller (idle) and the app threads (busy), and the
//! blocking [`AppIo`] an application uses while it owns one.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wsgi_core::{
    AppIo, AppIoError, Connection, Environ, Event, Job, ResponseHead, ServerInfo, UsageError,
};

use wsgi_driver::{AccessEntry, read_available, with_read_buf};

use crate::Shared;
use crate::net::Stream;

/// One client connection: its socket, its protocol state and what the environ needs of it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) conn: Connection,
    pub(crate) info: ServerInfo,
    /// Requests this connection has carried. At shutdown an idle connection that carried none
    /// may have its first request on the way and is given a moment; the others close at once.
    pub(crate) requests: u64,
}

/// What an app thread found on a connection the poller said was readable.
pub(crate) enum Step {
    /// A request: the job to run.
    Job(Job),
    /// No complete request yet: back to the poller.
    Idle(Box<Conn>),
    /// The connection is finished.
    Closed,
}

impl Conn {
    /// Reads what the socket has without blocking and returns the next request, if any.
    pub(crate) fn advance(mut self, shared: &Arc<Shared>) -> Step {
        let mut received = false;
        let closed = with_read_buf(|buf| {
            while self.conn.wants_read() {
                // MSG_DONTWAIT: this read alone does not block; the socket stays blocking for
                // the body reads and writes of the request (no mode switches per request).
                match rustix::net::recv(&self.stream, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
                    Ok((0, _)) => {
                        self.conn.handle_eof(Instant::now());
                        return false;
                    }
                    Ok((n, _)) => {
                        received = true;
                        self.conn.handle_input(&buf[..n], Instant::now());
                    }
                    Err(rustix::io::Errno::AGAIN) => return false,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => return true,
                }
            }
            false
        });
        if closed {
            return Step::Closed;
        }
        // During a shutdown what arrives is answered with `Connection: close`; a connection
        // that received nothing (a spurious wake-up) is left to the poller, which gives a fresh
        // one its moment and closes a kept-alive one.
        if shared.is_shutting_down() && (received || self.requests > 0) {
            self.conn.shutdown();
        }
        self.conn.set_date(shared.date());
        loop {
            match self.conn.poll_event() {
                Ok(Some(Event::Request(head))) => {
                    self.requests += 1;
                    let environ = Environ::new(&head, &self.info);
                    let log = shared
                        .config
                        .access_log
                        .is_some()
                        .then(|| Box::new(AccessEntry::new(&environ)));
                    let io = StdIo {
                        conn: Some(self),
                        shared: shared.clone(),
                        out: Vec::new(),
                        ended: false,
                        log,
                    };
                    return Step::Job(Job { environ, io: Box::new(io) });
                }
                // Body events before a request cannot happen: a drained body is not reported.
                Ok(Some(Event::Body(_) | Event::EndOfBody)) => {}
                Ok(Some(Event::Closed)) => return Step::Closed,
                Ok(None) if self.conn.is_closed() => return Step::Closed,
                Ok(None) => return Step::Idle(Box::new(self)),
                Err(e) => {
                    let mut out = Vec::new();
                    self.conn.send_error(&e, &mut out);
                    let _ = self.stream.write_all(&out);
                    self.stream.shutdown();
                    return Step::Closed;
                }
            }
        }
    }
}

/// The connection, lent to an application for one request.
struct StdIo {
    conn: Option<Conn>,
    shared: Arc<Shared>,
    out: Vec<u8>,
    /// `send_end` was called: the exchange is over, whatever became of it.
    ended: bool,
    /// What the access log needs, when there is one.
    log: Option<Box<AccessEntry>>,
}

impl StdIo {
    fn conn(&mut self) -> Result<&mut Conn, AppIoError> {
        self.conn.as_mut().ok_or(AppIoError::Disconnected)
    }

    /// Writes what the connection produced; a failed write loses the client.
    fn flush(&mut self) -> Result<(), AppIoError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Some(c) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        let written = c.stream.write_all(&self.out);
        self.out.clear();
        written.map_err(|_| {
            c.conn.abort();
            AppIoError::Disconnected
        })
    }
}

impl AppIo for StdIo {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        let mut out = std::mem::take(&mut self.out);
        let continued = self.conn()?.conn.send_continue(&mut out);
        self.out = out;
        continued?;
        self.flush()?;
        loop {
            let Some(c) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
            match c.conn.poll_event() {
                Ok(Some(Event::Body(bytes))) => return Ok(Some(bytes)),
                Ok(Some(Event::EndOfBody)) => return Ok(None),
                Ok(Some(Event::Request(_) | Event::Closed)) => return Ok(None),
                Err(e) => {
                    // The client's fault: answer with the error's status (400, 413, ...) while
                    // no head is out; the application's own response can then no longer go.
                    c.conn.send_error(&e, &mut self.out);
                    if let (Some(log), false) = (self.log.as_mut(), self.out.is_empty()) {
                        log.set_status(e.status());
                    }
                    let _ = self.flush();
                    return Err(AppIoError::BadRequest(e));
                }
                Ok(None) => with_read_buf(|buf| {
                    match c.stream.read(buf) {
                        Ok(0) => c.conn.handle_eof(Instant::now()),
                        Ok(n) => {
                            c.conn.handle_input(&buf[..n], Instant::now());
                            // What else has arrived makes the same piece.
                            read_available(&c.stream, &mut c.conn, buf);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(AppIoError::Disconnected),
                    }
                    Ok(())
                })?,
            }
        }
    }

    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        let shutting_down = self.shared.is_shutting_down();
        let mut out = std::mem::take(&mut self.out);
        let c = self.conn()?;
        if shutting_down {
            // A request in flight when the shutdown began: its response says Connection: close.
            c.conn.shutdown();
        }
        let sent = c.conn.send_head(head, &mut out);
        self.out = out;
        if let (Some(log), Ok(())) = (self.log.as_mut(), &sent) {
            log.set_status(head.status());
        }
        // The head waits for the first body bytes or the end: one write instead of two.
        Ok(sent?)
    }

    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        let mut out = std::mem::take(&mut self.out);
        let sent = self.conn()?.conn.send_body(chunk, &mut out);
        self.out = out;
        if let Some(log) = self.log.as_mut() {
            log.add_body(chunk.len() as u64);
        }
        let flushed = self.flush();
        sent?;
        flushed
    }

    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<bool, AppIoError> {
        let mut out = std::mem::take(&mut self.out);
        let framed = self.conn()?.conn.send_body_external(len, &mut out);
        self.out = out;
        let external = framed?;
        // The head and any chunk prefix go first.
        self.flush()?;
        if external.send > 0 {
            let c = self.conn()?;
            let sent = copy_file(file, offset, external.send, &c.stream);
            if sent != Ok(external.send) {
                // A write failed, or the file shrank: the body cannot be completed.
                c.conn.abort();
                return Err(AppIoError::Disconnected);
            }
        }
        if let Some(log) = self.log.as_mut() {
            log.add_body(external.send);
        }
        // Written with the next flush (the end, or the next piece of body).
        self.out.extend_from_slice(external.suffix);
        Ok(true)
    }

    fn send_end(&mut self) -> Result<(), AppIoError> {
        let mut out = std::mem::take(&mut self.out);
        let ended = self.conn()?.conn.send_end(Instant::now(), &mut out);
        self.out = out;
        // Ended, or short of its Content-Length (the connection then closes by itself); any
        // other refusal (no head sent) leaves it to be aborted.
        self.ended = matches!(ended, Ok(()) | Err(UsageError::BodyTooShort { .. }));
        let flushed = self.flush();
        ended?;
        flushed
    }

    fn abort(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.conn.abort();
        }
    }
}

impl Drop for StdIo {
    fn drop(&mut self) {
        let _ = self.flush();
        let Some(mut c) = self.conn.take() else { return };
        if let (Some(log), Some(access_log)) = (&self.log, &self.shared.config.access_log) {
            access_log(&log.record(c.info.peer()));
        }
        if !self.ended {
            // The application returned without ending its response: it cannot be completed.
            c.conn.abort();
        }
        if c.conn.is_closed() {
            c.stream.shutdown();
            self.shared.done();
            return;
        }
        // A pipelined request may already be buffered: let an app thread look right away.
        self.shared.ready(c);
    }
}

/// Sends `len` bytes of `file` from `offset` to the socket with `sendfile`: the bytes go from
/// the page cache to the socket without passing through user space. Blocks like a write (the
/// socket's write timeout applies). Returns the bytes sent: fewer than `len` only if the file
/// ended early.
fn copy_file(file: &std::fs::File, offset: u64, len: u64, stream: &Stream) -> Result<u64, ()> {
    let mut at = offset;
    let end = offset.saturating_add(len);
    while at < end {
        let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(1 << 30);
        match rustix::fs::sendfile(stream, file, Some(&mut at), want) {
            Ok(0) => break, // the file is shorter than it was
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Err(()),
        }
    }
    Ok(at - offset)
}
