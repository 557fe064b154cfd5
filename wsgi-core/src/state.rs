//! The connection's state, and the one `match` that changes it.
//!
//! A connection serves one request at a time. Each cycle has a read side (the request) and a
//! write side (the response); the cycle ends when both are done, and then the connection either
//! starts a new cycle (keep-alive) or closes.
//!
//! ```text
//!                 Head ──RequestHead──▶ Body ──BodyEnd──▶ Done ─┐
//!   read side:     ▲                      │ (response ended      │
//!                  │                      │  first: Drain, or    │
//!                  │                      │  Done if no body     │ both Done:
//!                  │                      │  is left)            │
//!   write side:   Idle ─(RequestHead)─▶ Pending ─Head─▶ Body ─End─▶ Done ─┤ keep-alive → Head/Idle
//!                  └──────────────────────────────────────────────────────┘ otherwise → Closed
//! ```
//!
//! `Eof`, `Error`, `Abort`, `Timeout` and `Shutdown` can arrive in any state; [`State::apply`]
//! says what each does where.

use std::time::Instant;

use crate::decode::BodyDecoder;
use crate::encode::BodyEncoder;
use crate::error::ProtocolError;
use crate::head::Version;

/// Body bytes the connection will read and discard after the response ended without the
/// application reading the whole request body, to keep the connection reusable. Bodies with more
/// left than this close the connection instead.
pub(crate) const DRAIN_LIMIT: u64 = 64 * 1024;

/// The request side of a cycle.
#[derive(Debug)]
pub(crate) enum Read {
    /// Waiting for (or receiving) a request head.
    Head,
    /// Decoding the request body; `drain` once the response has ended and the rest is discarded.
    Body { decoder: BodyDecoder, drain: bool },
    /// The request is complete; waiting for the response to end.
    Done,
}

/// The response side of a cycle.
#[derive(Debug)]
pub(crate) enum Write {
    /// No request to answer.
    Idle,
    /// A request was surfaced; its response head has not been sent.
    Pending { continue_sent: bool },
    /// The response head was sent; the body is being written.
    Body(BodyEncoder),
    /// The response is complete.
    Done,
}

/// What the current request asked for, kept for writing its response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestInfo {
    pub(crate) version: Version,
    pub(crate) head_method: bool,
    pub(crate) expect_continue: bool,
}

/// The inputs that change state.
#[derive(Debug)]
pub(crate) enum Input {
    /// A request head was parsed.
    RequestHead { info: RequestInfo, decoder: BodyDecoder, keep_alive: bool },
    /// The request body ended.
    BodyEnd,
    /// `100 Continue` was written.
    ContinueSent,
    /// The response head was written with this encoder; `buffered` if input not yet reported
    /// is buffered (after the peer's EOF, only that can hold another request).
    ResponseHead { encoder: BodyEncoder, buffered: bool },
    /// The response ended; `complete` is false if the message could not be completed.
    ResponseEnd { complete: bool, now: Instant },
    /// This many bytes of an unread request body were discarded after the response ended.
    Drained(u64),
    /// The peer will send no more bytes; `buffered` if input not yet reported is buffered.
    Eof { buffered: bool },
    /// The peer's EOF was reached between requests, with nothing buffered.
    PeerDone,
    /// The peer broke the protocol.
    Error(ProtocolError),
    /// The application failed after the head, or the driver gave up on the connection.
    Abort,
    /// The idle or head deadline passed with nothing (or only part of a head) received.
    Timeout { head_started: bool },
    /// The server is shutting down: finish the current exchange, then close.
    Shutdown { idle: bool },
}

/// Everything about a connection that changes over its life, except the read buffer.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) read: Read,
    pub(crate) write: Write,
    pub(crate) request: Option<RequestInfo>,
    /// Whether the connection may carry another request after this one.
    pub(crate) keep_alive: bool,
    /// The peer sent EOF; once the buffered bytes are used up the connection ends.
    pub(crate) eof: bool,
    /// The sticky protocol error, if any.
    pub(crate) error: Option<ProtocolError>,
    /// The connection is finished.
    pub(crate) closed: bool,
    /// `Event::Closed` is due (a close between requests the driver has not been told about).
    pub(crate) closed_event_due: bool,
    /// When the current cycle started (connection opened or previous response ended).
    pub(crate) cycle_start: Instant,
    /// When the first byte of the current head arrived, on a kept-alive connection.
    pub(crate) head_start: Option<Instant>,
    /// `true` until the first cycle ends: the head deadline then runs from `cycle_start`.
    pub(crate) first_cycle: bool,
    /// The latest time the driver passed in.
    pub(crate) last_now: Instant,
    /// How many more body bytes a drain may discard.
    pub(crate) drain_left: u64,
}

impl State {
    pub(crate) fn new(now: Instant) -> State {
        State {
            read: Read::Head,
            write: Write::Idle,
            request: None,
            keep_alive: true,
            eof: false,
            error: None,
            closed: false,
            closed_event_due: false,
            cycle_start: now,
            head_start: None,
            first_cycle: true,
            last_now: now,
            drain_left: 0,
        }
    }

    /// Applies one input. This is the only place the read and write states change.
    pub(crate) fn apply(&mut self, input: Input) {
        match input {
            Input::RequestHead { info, decoder, keep_alive } => {
                debug_assert!(matches!((&self.read, &self.write), (Read::Head, Write::Idle)));
                self.read = Read::Body { decoder, drain: false };
                self.write = Write::Pending { continue_sent: false };
                self.request = Some(info);
                self.keep_alive &= keep_alive;
            }
            Input::BodyEnd => {
                self.read = Read::Done;
                self.finish_cycle_if_done();
            }
            Input::ContinueSent => {
                if let Write::Pending { continue_sent } = &mut self.write {
                    *continue_sent = true;
                }
            }
            Input::ResponseHead { encoder, buffered } => {
                // Decide now, so the head can say `Connection: close`.
                let waiting_for_continue = matches!(
                    (&self.write, self.request),
                    (Write::Pending { continue_sent: false }, Some(r)) if r.expect_continue
                );
                if let Read::Body { decoder, .. } = &self.read
                    && !decoder.is_done()
                {
                    // The body is not fully read. A client that waits for `100 Continue` may or
                    // may not send it now, so the next request's start is unknowable; a large
                    // rest is not worth reading just to reuse the connection. (A body already
                    // complete, such as a GET's, is read however the application left it.)
                    if waiting_for_continue || !decoder.drainable(DRAIN_LIMIT) || self.eof {
                        self.keep_alive = false;
                    }
                }
                if self.eof && !buffered {
                    // After EOF with nothing left to read, no request can follow this one.
                    self.keep_alive = false;
                }
                if encoder.is_close_delimited() {
                    self.keep_alive = false;
                }
                self.write = Write::Body(encoder);
            }
            Input::ResponseEnd { complete, now } => {
                self.write = Write::Done;
                if !complete {
                    self.keep_alive = false;
                }
                self.last_now = now;
                if matches!(&self.read, Read::Body { decoder, .. } if decoder.is_done()) {
                    // Nothing of the body is left (there was none, or the application did not
                    // ask for its end): the cycle can end now, so the connection is idle
                    // without another poll.
                    self.read = Read::Done;
                }
                if let Read::Body { drain, .. } = &mut self.read {
                    // The application did not read the whole body: discard the rest (bounded by
                    // DRAIN_LIMIT) to find the next request, or close.
                    if self.keep_alive && !self.eof {
                        *drain = true;
                        self.drain_left = DRAIN_LIMIT;
                    } else {
                        self.keep_alive = false;
                        self.closed = true;
                        return;
                    }
                }
                self.finish_cycle_if_done();
            }
            Input::Drained(n) => {
                self.drain_left = self.drain_left.saturating_sub(n);
                if self.drain_left == 0 {
                    self.keep_alive = false;
                    self.closed = true;
                }
            }
            Input::Eof { buffered } => {
                self.eof = true;
                // Requests already buffered are still served; the last one's head says close.
                if !buffered {
                    self.keep_alive = false;
                }
            }
            Input::Error(e) => {
                self.error.get_or_insert(e);
                self.keep_alive = false;
            }
            Input::Abort => {
                self.keep_alive = false;
                self.read = Read::Done;
                self.write = Write::Done;
                self.closed = true;
            }
            Input::PeerDone | Input::Timeout { head_started: false } => {
                self.close_between_requests();
            }
            Input::Timeout { head_started: true } => {
                self.error.get_or_insert(ProtocolError::HeadTimeout);
                self.keep_alive = false;
            }
            Input::Shutdown { idle } => {
                self.keep_alive = false;
                if idle && matches!((&self.read, &self.write), (Read::Head, Write::Idle)) {
                    self.close_between_requests();
                }
            }
        }
    }

    fn close_between_requests(&mut self) {
        if !self.closed {
            self.closed = true;
            self.closed_event_due = true;
        }
    }

    /// Ends the cycle once both sides are done: a new cycle on a kept-alive connection, or close.
    fn finish_cycle_if_done(&mut self) {
        if !matches!((&self.read, &self.write), (Read::Done, Write::Done)) {
            return;
        }
        self.request = None;
        if self.keep_alive && self.error.is_none() {
            self.read = Read::Head;
            self.write = Write::Idle;
            self.cycle_start = self.last_now;
            self.head_start = None;
            self.first_cycle = false;
        } else {
            self.closed = true;
        }
    }
}
