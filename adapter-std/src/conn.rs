//! A connection as it moves between the poller (idle) and the app threads (busy), and the
//! blocking [`AppIo`] an application uses while it owns one.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wsgi_core::{
    AppIo, AppIoError, BodyEncoder, Connection, Environ, Event, Job, ResponseHead, ServerInfo,
    UsageError,
};

use rustix::net::RecvFlags;
use wsgi_driver::{BodyStep, Exchange, in_io, read_available, read_rest, recv_into};

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
    /// The end of its last response, held back to be written with others' (see
    /// [`Shared::hold`]). It is written before anything else is done with the connection,
    /// without waiting: what the socket cannot take at once the poller writes as room appears,
    /// so a connection goes to the app threads only with nothing unsent.
    pub(crate) unsent: Vec<u8>,
    /// While `unsent` waits in the poller for room: when the client, which reads nothing, is
    /// given up on (the I/O timeout, as for any write).
    pub(crate) write_deadline: Option<Instant>,
}

/// What [`Conn::send_unsent`] did.
pub(crate) enum Sent {
    /// Every held byte is out.
    All,
    /// The socket's buffer filled first: the rest must be written by a thread that may wait.
    Partly,
    /// The write failed: the client is gone.
    Failed,
}

/// What an app thread found on a connection from the ready queue (readable, or with bytes
/// buffered).
pub(crate) enum Step {
    /// A request: the job to run.
    Job(Job),
    /// No complete request yet: back to the poller.
    Idle(Box<Conn>),
    /// The connection is finished.
    Closed,
}

impl Conn {
    /// A connection just accepted.
    pub(crate) fn new(stream: Stream, conn: Connection, info: ServerInfo) -> Conn {
        Conn { stream, conn, info, requests: 0, unsent: Vec::new(), write_deadline: None }
    }

    /// Writes the held end of the last response without waiting.
    pub(crate) fn send_unsent(&mut self) -> Sent {
        let mut at = 0;
        let sent = loop {
            match self.unsent.get(at..).filter(|rest| !rest.is_empty()) {
                None => break Sent::All,
                Some(rest) => match self.stream.send_nonblocking(rest) {
                    Ok(0) => break Sent::Failed,
                    Ok(n) => at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Sent::Partly,
                    Err(_) => break Sent::Failed,
                },
            }
        };
        match sent {
            // Not kept: an idle connection holds no buffer.
            Sent::All => {
                self.unsent = Vec::new();
                self.write_deadline = None;
            }
            Sent::Partly => drop(self.unsent.drain(..at)),
            Sent::Failed => {}
        }
        sent
    }

    /// Returns the next request, if any: from what is buffered (a pipelined request, or bytes
    /// the poller read), else from what the socket has, read without blocking.
    pub(crate) fn advance(mut self, shared: &Arc<Shared>) -> Step {
        // MSG_DONTWAIT: these reads alone do not block; the socket stays blocking for the body
        // reads and writes of the request (no mode switches per request). A socket error reads
        // as the end of the stream: what arrived before it is still answered. With bytes
        // buffered already, the read waits until they turn out not to hold a whole head.
        let mut read = self.conn.is_idle();
        let received = !read || read_available(&self.stream, &mut self.conn);
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
                    if self.requests == 0 {
                        if let Some(header) = self.conn.proxy_header() {
                            self.info = self.info.clone().with_proxy_header(header);
                        }
                    }
                    self.requests += 1;
                    let environ = Environ::new(head, &self.info);
                    let ex = Exchange::new(&environ, shared.config.access_log.as_ref());
                    let io =
                        StdIo { conn: Some(self), shared: shared.clone(), ex, ended_early: None };
                    return Step::Job(Job { environ, io: Box::new(io) });
                }
                // Body events before a request cannot happen: a drained body is not reported.
                Ok(Some(Event::Body(_) | Event::EndOfBody)) => {}
                Ok(Some(Event::Closed)) => return Step::Closed,
                Ok(None) if self.conn.is_closed() => return Step::Closed,
                Ok(None) if !read => {
                    read = true;
                    read_available(&self.stream, &mut self.conn);
                }
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
    /// `None` once handed back (see [`release`](Self::release)).
    conn: Option<Conn>,
    shared: Arc<Shared>,
    ex: Exchange,
    /// The body's encoder, when the response was ended as soon as it was complete (see
    /// [`end_early`](Self::end_early)): the application's later body calls get its answers.
    ended_early: Option<BodyEncoder>,
}

/// What a call made after the response ended and the connection was handed back finds.
fn handed_back() -> AppIoError {
    AppIoError::Usage(UsageError::ResponseEnded)
}

impl StdIo {
    fn conn(&mut self) -> Result<&mut Conn, AppIoError> {
        self.conn.as_mut().ok_or_else(handed_back)
    }

    /// Whether what is left of the response may be held rather than written now (see
    /// [`Shared::hold`]): there is some, the connection stays open, and requests wait.
    fn may_hold(&self) -> bool {
        !self.ex.out.is_empty()
            && self.conn.as_ref().is_some_and(|c| !c.conn.is_closed())
            && self.shared.may_hold()
    }

    /// Ends the response if it is complete and may be held: its body can take no more bytes
    /// and the request's none can be read, so nothing the application does before its own end
    /// (the next item of its result, `close()`) can change it, and that code need not delay
    /// it. Returns whether it ended.
    fn end_early(&mut self) -> Result<bool, AppIoError> {
        let Some(c) = self.conn.as_mut() else { return Ok(false) };
        let body = c.conn.response_body().filter(BodyEncoder::is_complete);
        let Some(body) = body.filter(|_| c.conn.request_read()) else { return Ok(false) };
        if !self.may_hold() {
            return Ok(false);
        }
        let Some(c) = self.conn.as_mut() else { return Ok(false) };
        self.ex.end(&mut c.conn)?;
        self.ended_early = Some(body);
        self.release();
        Ok(true)
    }

    /// Hands the connection back once the application is done with it: when the exchange is
    /// dropped, or at once when its response ends and may be held (so that the application's
    /// code after the end, such as `close()`, does not delay it). What is left of the
    /// response is written now or held.
    fn release(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        self.ex.finish(&mut c.conn);
        let hold = self.may_hold();
        if !hold {
            let _ = self.flush();
        }
        let Some(mut c) = self.conn.take() else { return };
        self.ex.log(self.shared.config.access_log.as_ref(), c.info.peer());
        if hold {
            c.unsent = std::mem::take(&mut self.ex.out);
            self.shared.hold(c);
        } else if c.conn.is_closed() {
            c.stream.shutdown();
            self.shared.done();
        } else {
            // A pipelined request may already be buffered: let an app thread look right away.
            self.shared.ready(c);
        }
    }

    /// Writes what the connection produced; a failed write loses the client.
    fn flush(&mut self) -> Result<(), AppIoError> {
        self.flush_with(&[])
    }

    /// [`flush`](Self::flush), then `tail` (body bytes the application holds, framed by what
    /// is in `out`) in the same write.
    fn flush_with(&mut self, tail: &[u8]) -> Result<(), AppIoError> {
        if self.ex.out.is_empty() && tail.is_empty() {
            return Ok(());
        }
        let Some(c) = self.conn.as_mut() else { return Err(handed_back()) };
        let written = in_io(|| write_all_vectored(&mut c.stream, &self.ex.out, tail));
        self.ex.out.clear();
        written.map_err(|_| {
            c.conn.abort();
            AppIoError::Disconnected
        })
    }
}

impl AppIo for StdIo {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        if self.ended_early.is_some() {
            return Ok(None); // it ended early only with the whole body read
        }
        let Some(c) = self.conn.as_mut() else { return Err(handed_back()) };
        self.ex.before_body(&mut c.conn)?;
        self.flush()?;
        loop {
            let Some(c) = self.conn.as_mut() else { return Err(handed_back()) };
            match self.ex.next_body(&mut c.conn) {
                Ok(BodyStep::Ready(piece)) => return Ok(piece),
                Err(e) => {
                    let _ = self.flush();
                    return Err(AppIoError::BadRequest(e));
                }
                // A wait bounded by the socket's read timeout (past it, the client is lost).
                Ok(BodyStep::NeedInput) => {
                    let received = in_io(|| {
                        let n = recv_into(&c.stream, &mut c.conn, RecvFlags::empty())?;
                        // What else has arrived makes the same piece (n = 0: the connection
                        // was told).
                        read_rest(&c.stream, &mut c.conn, n);
                        Ok::<_, rustix::io::Errno>(())
                    });
                    if received.is_err() {
                        return Err(AppIoError::Disconnected);
                    }
                }
            }
        }
    }

    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        let shutting_down = self.shared.is_shutting_down();
        let Some(c) = self.conn.as_mut() else { return Err(handed_back()) };
        Ok(self.ex.head(&mut c.conn, head, shutting_down)?)
    }

    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        if let Some(body) = &mut self.ended_early {
            return Ok(body.encode(chunk, &mut Vec::new())?); // what the connection would say
        }
        let Some(c) = self.conn.as_mut() else { return Err(handed_back()) };
        if chunk.len() < IN_PLACE {
            let sent = self.ex.body(&mut c.conn, chunk);
            if self.end_early()? {
                return Ok(sent?); // written with the end
            }
            let flushed = self.flush();
            sent?;
            return flushed;
        }
        // A large chunk goes from the application's buffer, after what waits in `out` (the
        // head, a chunk-size line) in the same write.
        let framed = self.ex.body_in_place(&mut c.conn, chunk)?;
        self.flush_with(framed.part_to_send(chunk))?;
        Ok(self.ex.in_place_sent(&framed)?)
    }

    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<bool, AppIoError> {
        if let Some(body) = &mut self.ended_early {
            let external = body.encode_external(len, &mut Vec::new())?;
            return external.error.map_or(Ok(true), |e| Err(e.into()));
        }
        let Some(c) = self.conn.as_mut() else { return Err(handed_back()) };
        let external = self.ex.external(&mut c.conn, len)?;
        // The head and any chunk prefix go first.
        self.flush()?;
        if external.send > 0 {
            let c = self.conn()?;
            let sent = in_io(|| copy_file(file, offset, external.send, &c.stream));
            if sent != Ok(external.send) {
                // A write failed, or the file shrank: the body cannot be completed.
                c.conn.abort();
                return Err(AppIoError::Disconnected);
            }
        }
        // Its suffix goes with the next flush (the end, or the next piece of body).
        self.ex.external_sent(&external)?;
        Ok(true)
    }

    fn send_end(&mut self) -> Result<(), AppIoError> {
        if self.ended_early.take().is_some() {
            return Ok(());
        }
        let Some(c) = self.conn.as_mut() else { return Err(handed_back()) };
        let ended = self.ex.end(&mut c.conn);
        if ended.is_ok() && self.may_hold() {
            self.release();
            return Ok(());
        }
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
        self.release();
    }
}

/// Body chunks from this size up are written from the application's buffer rather than copied
/// into the connection's output first: for a 1 MiB response the copy (and the 1 MiB buffer it
/// grows) cost more than the write. Below it, one buffer and one plain write are as cheap.
const IN_PLACE: usize = 16 * 1024;

/// Writes `first` then `second` with vectored writes until both are out (an empty one is left
/// out of them).
fn write_all_vectored(stream: &mut Stream, first: &[u8], second: &[u8]) -> io::Result<()> {
    let mut slices = [IoSlice::new(first), IoSlice::new(second)];
    let mut bufs = &mut slices[..if second.is_empty() { 1 } else { 2 }];
    IoSlice::advance_slices(&mut bufs, 0); // skips an empty `first`
    while !bufs.is_empty() {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
