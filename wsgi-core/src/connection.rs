//! [`Connection`]: the one type a driver pushes bytes into and pulls events and bytes out of.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Config;
use crate::date::HttpDate;
use crate::decode::{BodyDecoder, Decoded};
use crate::encode::BodyEncoder;
use crate::error::{ProtocolError, UsageError};
use crate::framing::response_framing;
use crate::head::{HeadScanner, RequestHead};
use crate::proxy_protocol::{ProxyHeader, parse_proxy_header};
use crate::response::ResponseHead;
use crate::state::{Input, Read, RequestInfo, State, Write};

/// What a [`Connection`] reports to its driver.
#[derive(Clone, Debug)]
pub enum Event {
    /// A request head. The body follows as zero or more [`Event::Body`] and one
    /// [`Event::EndOfBody`]; the next request is not reported before this one's response ends.
    Request(RequestHead),
    /// A piece of the request body (never empty).
    Body(Bytes),
    /// The request body is complete.
    EndOfBody,
    /// The peer ended the connection between requests (EOF, idle timeout or shutdown while
    /// idle). [`Connection::is_closed`] is now `true`.
    Closed,
}

/// The driver stops reading when this much input is buffered and not yet turned into events.
const READ_HIGH_WATER: usize = 64 * 1024;

/// The input buffer a connection starts with, and returns to when idle after growing.
const INITIAL_BUFFER: usize = 4096;

/// The server side of one HTTP/1.1 connection, without I/O.
///
/// Inputs: [`handle_input`](Self::handle_input), [`handle_eof`](Self::handle_eof),
/// [`handle_timeout`](Self::handle_timeout). Outputs: [`poll_event`](Self::poll_event) and
/// [`poll_timeout`](Self::poll_timeout). Commands append wire bytes to a caller-owned buffer:
/// [`send_continue`](Self::send_continue), [`send_head`](Self::send_head),
/// [`send_body`](Self::send_body), [`send_end`](Self::send_end),
/// [`send_error`](Self::send_error). See the [crate docs](crate) for a whole exchange.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    buf: BytesMut,
    /// `buf` outgrew [`INITIAL_BUFFER`] since the connection was last idle.
    grown: bool,
    scanner: HeadScanner,
    date: Option<HttpDate>,
    /// A PROXY protocol header is due before the first request ([`Config::proxy_protocol`]).
    expect_proxy: bool,
    proxy_header: Option<ProxyHeader>,
}

impl Connection {
    /// Creates a connection that opened at `now`; its first head must arrive within
    /// [`Config::head_timeout`].
    pub fn new(config: Config, now: Instant) -> Connection {
        Connection {
            expect_proxy: config.proxy_protocol,
            proxy_header: None,
            config,
            state: State::new(now),
            buf: BytesMut::with_capacity(INITIAL_BUFFER),
            grown: false,
            scanner: HeadScanner::default(),
            date: None,
        }
    }

    /// Returns the configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Returns the PROXY protocol header the connection started with, once it was received
    /// (only with [`Config::proxy_protocol`] on). A driver takes the client's address from it
    /// before it builds the first request's environ.
    pub fn proxy_header(&self) -> Option<&ProxyHeader> {
        self.proxy_header.as_ref()
    }

    /// Feeds bytes received from the peer. Call [`poll_event`](Self::poll_event) afterwards.
    ///
    /// Bytes that arrive after the connection closed or failed are ignored.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.takes_input(bytes.len(), now) {
            self.append(bytes);
        }
    }

    /// Feeds bytes received from the peer as [`handle_input`](Self::handle_input) does, taking
    /// the buffer they were read into: when nothing is buffered, it becomes the connection's
    /// own without a copy, so a request body read with its head is handed out in place (as
    /// [`Event::Body`] pieces that share it). Otherwise its bytes are appended.
    ///
    /// A driver that reads large pieces gives them this way and small ones (a request head)
    /// through `handle_input`, keeping its buffer for the next read.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use wsgi_core::{Config, Connection, Event};
    /// let now = Instant::now();
    /// let mut conn = Connection::new(Config::default(), now);
    /// let mut read = Vec::with_capacity(1 << 16);
    /// read.extend_from_slice(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    /// let body_at = read.as_ptr() as usize + read.len() - 5;
    /// conn.handle_input_vec(read, now);
    /// assert!(matches!(conn.poll_event(), Ok(Some(Event::Request(_)))));
    /// let Ok(Some(Event::Body(body))) = conn.poll_event() else { panic!() };
    /// assert_eq!((&body[..], body.as_ptr() as usize), (&b"hello"[..], body_at));
    /// ```
    pub fn handle_input_vec(&mut self, bytes: Vec<u8>, now: Instant) {
        if !self.takes_input(bytes.len(), now) {
            return;
        }
        if self.buf.is_empty() {
            self.grown |= bytes.capacity() > INITIAL_BUFFER;
            // Unique, so the conversion keeps the allocation.
            self.buf = BytesMut::from(Bytes::from(bytes));
        } else {
            self.append(&bytes);
        }
    }

    /// Notes the time of `len` bytes of input at `now` and returns whether to buffer them:
    /// not after the connection closed or failed (they are ignored), nor when there are none.
    fn takes_input(&mut self, len: usize, now: Instant) -> bool {
        self.state.last_now = now;
        if self.state.closed || self.state.error.is_some() || len == 0 {
            return false;
        }
        if self.between_requests() && self.state.head_start.is_none() {
            self.state.head_start = Some(now);
        }
        true
    }

    fn append(&mut self, bytes: &[u8]) {
        self.grown |= self.buf.capacity() - self.buf.len() < bytes.len();
        self.buf.extend_from_slice(bytes);
    }

    /// Tells the connection the peer will send nothing more (a read returned 0).
    ///
    /// Requests already buffered are still served; the connection closes after them.
    pub fn handle_eof(&mut self, now: Instant) {
        self.state.last_now = now;
        self.state.apply(Input::Eof { buffered: !self.buf.is_empty() });
    }

    /// Tells the connection the time is `now`; acts if a deadline has passed.
    ///
    /// Past the keep-alive deadline with nothing received, the connection closes quietly
    /// ([`Event::Closed`]); past the head deadline with part of a head received,
    /// [`poll_event`](Self::poll_event) fails with [`ProtocolError::HeadTimeout`] (408).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.state.last_now = now;
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.state.apply(Input::Timeout { head_started: !self.buf.is_empty() });
        }
    }

    /// Returns the next event, `Ok(None)` if more input is needed or the connection is paused
    /// until the current response ends.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`]: answer it with [`send_error`](Self::send_error). Errors are sticky:
    /// every later call returns the same one.
    pub fn poll_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if let Some(e) = self.state.error {
                return Err(e);
            }
            if self.state.closed_event_due {
                self.state.closed_event_due = false;
                return Ok(Some(Event::Closed));
            }
            if self.state.closed {
                return Ok(None);
            }
            match &mut self.state.read {
                Read::Head => return self.poll_head(),
                Read::Body { decoder, drain } => {
                    let drain = *drain;
                    match decoder.decode(&mut self.buf) {
                        Err(e) => return Err(self.fail(e)),
                        Ok(Some(Decoded::Data(bytes))) if drain => {
                            self.state.apply(Input::Drained(bytes.len() as u64));
                        }
                        Ok(Some(Decoded::Data(bytes))) => return Ok(Some(Event::Body(bytes))),
                        Ok(Some(Decoded::End)) => {
                            self.state.apply(Input::BodyEnd);
                            if !drain {
                                return Ok(Some(Event::EndOfBody));
                            }
                        }
                        Ok(None) if self.state.eof && drain => {
                            self.state.apply(Input::Abort);
                        }
                        Ok(None) if self.state.eof => {
                            return Err(self.fail(ProtocolError::IncompleteBody));
                        }
                        Ok(None) => return Ok(None),
                    }
                }
                Read::Done => return Ok(None),
            }
        }
    }

    fn poll_head(&mut self) -> Result<Option<Event>, ProtocolError> {
        if self.expect_proxy && !self.buf.is_empty() {
            match parse_proxy_header(&self.buf) {
                Err(e) => return Err(self.fail(e)),
                Ok(Some((header, n))) => {
                    self.buf.advance(n);
                    self.proxy_header = Some(header);
                    self.expect_proxy = false;
                }
                Ok(None) if self.state.eof => return Err(self.fail(ProtocolError::IncompleteHead)),
                Ok(None) => return Ok(None),
            }
        }
        match self.scanner.parse(&mut self.buf, &self.config) {
            Err(e) => Err(self.fail(e)),
            Ok(Some(head)) => {
                let info = RequestInfo {
                    version: head.version(),
                    head_method: head.is_head(),
                    expect_continue: head.expects_continue(),
                };
                let decoder = BodyDecoder::new(head.body(), &self.config);
                self.state.apply(Input::RequestHead {
                    info,
                    decoder,
                    keep_alive: head.keep_alive(),
                });
                Ok(Some(Event::Request(head)))
            }
            Ok(None) if self.state.eof && self.buf.is_empty() => {
                self.state.apply(Input::PeerDone);
                self.poll_event()
            }
            Ok(None) if self.state.eof => Err(self.fail(ProtocolError::IncompleteHead)),
            Ok(None) => {
                self.let_go_of_a_grown_buffer();
                Ok(None)
            }
        }
    }

    /// With nothing buffered, lets go of a buffer that grew for a body, a large read or a burst
    /// of pipelined requests, so that an idle connection costs its first few KiB again rather
    /// than the most it ever held.
    fn let_go_of_a_grown_buffer(&mut self) {
        if self.grown && self.buf.is_empty() {
            self.buf = BytesMut::with_capacity(INITIAL_BUFFER);
            self.grown = false;
        }
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.state.apply(Input::Error(e));
        e
    }

    /// Returns when [`handle_timeout`](Self::handle_timeout) should next be called, if a
    /// deadline is running (between requests, or while a head arrives).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state.closed || self.state.error.is_some() || !self.between_requests() {
            return None;
        }
        let s = &self.state;
        Some(if s.first_cycle {
            s.cycle_start + self.config.head_timeout
        } else if let Some(started) =
            s.head_start.or_else(|| (!self.buf.is_empty()).then_some(s.cycle_start))
        {
            started + self.config.head_timeout
        } else {
            s.cycle_start + self.config.keep_alive_timeout
        })
    }

    /// Sets the value of the `Date` header for responses from now on (none until set).
    pub fn set_date(&mut self, date: HttpDate) {
        self.date = Some(date);
    }

    /// Writes `100 Continue` if the request asked for it and nothing has been sent yet.
    ///
    /// Does nothing when the request did not ask, when it was already sent, or when the final
    /// response has started (an interim response must never follow it).
    ///
    /// # Errors
    ///
    /// [`UsageError::NoRequest`] between requests, [`UsageError::Closed`] after the close.
    pub fn send_continue(&mut self, out: &mut Vec<u8>) -> Result<(), UsageError> {
        self.check_open()?;
        match self.state.write {
            Write::Idle => Err(UsageError::NoRequest),
            Write::Pending { continue_sent: false }
                if self.state.request.is_some_and(|r| r.expect_continue)
                    && matches!(self.state.read, Read::Body { .. }) =>
            {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                self.state.apply(Input::ContinueSent);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes the response head, choosing the body framing (RFC 9112 §6.3): nothing for HEAD,
    /// 1xx, 204 and 304; the application's Content-Length if it set one; otherwise chunked on
    /// HTTP/1.1 and close-delimited on HTTP/1.0. Adds `Date`, `Server` and `Connection` as due.
    ///
    /// # Errors
    ///
    /// [`UsageError::NoRequest`], [`UsageError::HeadAlreadySent`], [`UsageError::Closed`].
    pub fn send_head(&mut self, head: &ResponseHead, out: &mut Vec<u8>) -> Result<(), UsageError> {
        self.check_open()?;
        let info = match (&self.state.write, self.state.request) {
            (Write::Pending { .. }, Some(info)) => info,
            (Write::Idle, _) | (Write::Pending { .. }, None) => return Err(UsageError::NoRequest),
            (Write::Body(_) | Write::Done, _) => return Err(UsageError::HeadAlreadySent),
        };
        let framing =
            response_framing(info.version, info.head_method, head.status(), head.content_length());
        let encoder = BodyEncoder::new(framing);
        self.state.apply(Input::ResponseHead { encoder, buffered: !self.buf.is_empty() });

        head.write_status_and_fields(out);
        self.write_server_fields(head, out);
        if framing == crate::framing::ResponseBody::Chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if !self.state.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if info.version == crate::head::Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Writes a piece of the response body, framed. Empty chunks write nothing.
    ///
    /// # Errors
    ///
    /// [`UsageError::BodyTooLong`] if the body passes the Content-Length (the excess is
    /// dropped); [`UsageError::HeadNotSent`], [`UsageError::ResponseEnded`],
    /// [`UsageError::NoRequest`], [`UsageError::Closed`].
    pub fn send_body(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), UsageError> {
        self.check_open()?;
        match &mut self.state.write {
            Write::Body(encoder) => encoder.encode(chunk, out),
            other => Err(Self::not_sending(other)),
        }
    }

    /// Frames `len` body bytes the driver writes itself (sendfile): appends their prefix to
    /// `out` and returns how many to send and the suffix to write after them; see
    /// [`BodyEncoder::encode_external`](crate::BodyEncoder::encode_external).
    ///
    /// # Errors
    ///
    /// As [`send_body`](Self::send_body).
    pub fn send_body_external(
        &mut self,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<crate::ExternalBody, UsageError> {
        self.check_open()?;
        match &mut self.state.write {
            Write::Body(encoder) => encoder.encode_external(len, out),
            other => Err(Self::not_sending(other)),
        }
    }

    /// Returns `true` while a request is answered whose body the application can no longer
    /// read anything of: there was none, or all of it was received and reported. With
    /// [`response_body`](Self::response_body) complete as well, ending the response now is what
    /// ending it later would be.
    pub fn request_read(&self) -> bool {
        match &self.state.read {
            Read::Done => true,
            Read::Body { decoder, .. } => decoder.is_done(),
            Read::Head => false,
        }
    }

    /// Returns a copy of the body encoder of the response being sent (after its head, before
    /// its end): the bytes it took, and whether the body is complete
    /// ([`BodyEncoder::is_complete`]: nothing can be added, and [`send_end`](Self::send_end)
    /// writes nothing more). A driver may then end the response before the application
    /// returns, and answer the application's later body calls with this copy, which gives what
    /// the connection would have ([`UsageError::BodyTooLong`] past a Content-Length).
    pub fn response_body(&self) -> Option<BodyEncoder> {
        match &self.state.write {
            Write::Body(encoder) => Some(*encoder),
            _ => None,
        }
    }

    /// Ends the response at `now`, which starts the keep-alive idle deadline. The connection
    /// then serves the next request, or [`is_closed`](Self::is_closed) turns `true`.
    ///
    /// # Errors
    ///
    /// [`UsageError::BodyTooShort`] if the body fell short of its Content-Length: the response
    /// cannot be completed and the connection closes. [`UsageError::HeadNotSent`],
    /// [`UsageError::ResponseEnded`], [`UsageError::NoRequest`], [`UsageError::Closed`].
    pub fn send_end(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), UsageError> {
        self.check_open()?;
        let result = match &mut self.state.write {
            Write::Body(encoder) => encoder.finish(out),
            other => return Err(Self::not_sending(other)),
        };
        self.state.apply(Input::ResponseEnd { complete: result.is_ok(), now });
        // A driver may hand the connection to wait for its next request without polling it.
        self.let_go_of_a_grown_buffer();
        result
    }

    /// Appends `Date` and `Server`, each unless the head has its own.
    fn write_server_fields(&self, head: &ResponseHead, out: &mut Vec<u8>) {
        if let (Some(date), false) = (&self.date, head.has_date()) {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let (Some(server), false) = (self.config.server_header(), head.has_server()) {
            out.extend_from_slice(b"Server: ");
            out.extend_from_slice(server);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn not_sending(write: &Write) -> UsageError {
        match write {
            Write::Idle => UsageError::NoRequest,
            Write::Pending { .. } => UsageError::HeadNotSent,
            Write::Body(_) | Write::Done => UsageError::ResponseEnded,
        }
    }

    fn check_open(&self) -> Result<(), UsageError> {
        if self.state.closed { Err(UsageError::Closed) } else { Ok(()) }
    }

    /// Answers `error` and closes: a short plain-text response with `Connection: close` if no
    /// response head was sent yet, otherwise nothing (the client sees the connection end).
    pub fn send_error(&mut self, error: &ProtocolError, out: &mut Vec<u8>) {
        if self.state.closed {
            return;
        }
        if matches!(self.state.write, Write::Idle | Write::Pending { .. }) {
            let mut body = Vec::with_capacity(64);
            body.extend_from_slice(error.reason().as_bytes());
            body.extend_from_slice(b": ");
            body.extend_from_slice(error.to_string().as_bytes());
            body.push(b'\n');
            let head = ResponseHead::plain_text(error.status(), error.reason(), body.len() as u64);
            head.write_status_and_fields(out);
            self.write_server_fields(&head, out);
            out.extend_from_slice(b"Connection: close\r\n\r\n");
            out.extend_from_slice(&body);
        }
        self.state.apply(Input::Abort);
    }

    /// Closes the connection without completing the response: for an application that failed
    /// after its head was sent. The client sees the connection end before the body's end.
    pub fn abort(&mut self) {
        self.state.apply(Input::Abort);
    }

    /// Starts a graceful shutdown: an idle connection closes now ([`Event::Closed`]); one in the
    /// middle of an exchange finishes it with `Connection: close` (if its head is not yet sent)
    /// and then closes.
    pub fn shutdown(&mut self) {
        self.state.apply(Input::Shutdown { idle: self.buf.is_empty() });
    }

    /// Returns `true` if the connection can use more input now: it is waiting for a head or
    /// reading a body, and it has not buffered 64 KiB it has yet to report.
    ///
    /// A driver that is holding back body events (its application is slow) should stop reading
    /// too, whatever this says.
    pub fn wants_read(&self) -> bool {
        let s = &self.state;
        !s.closed
            && s.error.is_none()
            && !s.eof
            && self.buf.len() < READ_HIGH_WATER
            && match s.read {
                Read::Head => matches!(s.write, Write::Idle),
                Read::Body { .. } => true,
                Read::Done => false,
            }
    }

    /// Returns `true` once the connection is finished: flush what was written to `out`, then
    /// close the socket.
    pub fn is_closed(&self) -> bool {
        self.state.closed
    }

    /// Returns `true` between requests with nothing of the next one received.
    pub fn is_idle(&self) -> bool {
        !self.state.closed && self.between_requests() && self.buf.is_empty()
    }

    fn between_requests(&self) -> bool {
        matches!((&self.state.read, &self.state.write), (Read::Head, Write::Idle))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::response::ResponseHead;

    #[test]
    fn an_idle_connection_lets_go_of_a_buffer_grown_for_a_body() {
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        let body = vec![b'x'; 200_000];
        let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
        conn.handle_input(head.as_bytes(), now);
        conn.handle_input(&body, now);
        assert!(conn.grown);
        let mut got = 0;
        loop {
            match conn.poll_event().unwrap() {
                Some(Event::Request(_)) => {}
                Some(Event::Body(piece)) => got += piece.len(),
                Some(Event::EndOfBody) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, body.len());
        let mut out = Vec::new();
        let response = ResponseHead::from_wsgi("204 No Content", [("X", "y")]).unwrap();
        conn.send_head(&response, &mut out).unwrap();
        conn.send_end(now, &mut out).unwrap();
        // Already at the end, for a driver that hands the connection on without polling it.
        assert_eq!(conn.buf.capacity(), INITIAL_BUFFER);
        assert!(conn.poll_event().unwrap().is_none());
        assert!(conn.is_idle());
        assert_eq!(conn.buf.capacity(), INITIAL_BUFFER);
        assert!(!conn.grown);
    }

    /// `request_read`: nothing of the request is left for the application to read.
    #[test]
    fn request_read_follows_the_body() {
        let now = Instant::now();
        // request, body bytes sent after the head, then whether it is read after the head
        // and after each event
        let rows: &[(&[u8], &[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"", true),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", b"hello", false),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
                false,
            ),
        ];
        for &(head, body, at_head) in rows {
            let mut conn = Connection::new(Config::default(), now);
            assert!(!conn.request_read(), "before the head");
            conn.handle_input(head, now);
            assert!(matches!(conn.poll_event().unwrap(), Some(Event::Request(_))));
            assert_eq!(conn.request_read(), at_head, "{head:?}");
            conn.handle_input(body, now);
            loop {
                match conn.poll_event().unwrap() {
                    Some(Event::Body(_)) => {}
                    Some(Event::EndOfBody) => break,
                    other => panic!("{other:?}"),
                }
            }
            assert!(conn.request_read(), "{head:?}: after its end");
        }
    }

    #[test]
    fn small_requests_keep_their_buffer() {
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        assert!(matches!(conn.poll_event().unwrap(), Some(Event::Request(_))));
        assert!(!conn.grown);
    }
}
