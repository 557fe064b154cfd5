//! The app thread's side of a request: an [`AppIo`] that holds the connection, does the socket
//! I/O itself while the socket is ready, and otherwise hands it to the connection's task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use wsgi_core::{AppIo, AppIoError, Connection, Event, ResponseHead};

use super::conn::{recv, send, would_block};
use super::{Shared, Socket};
use crate::{AccessEntry, with_read_buf};

/// Messages queued for the task while the app thread owns the connection; at most this many
/// (each one response piece) wait at once before the application blocks.
const UP_CAPACITY: usize = 4;

/// From the app thread to the connection's task.
pub(super) enum Up {
    /// Write these bytes (the socket would not take them right away).
    Write(Vec<u8>),
    /// Send `len` bytes of `file` from `offset`.
    File { file: std::fs::File, offset: u64, len: u64 },
    /// Wait until the socket is readable and read what it has.
    Read,
    /// The exchange is over; the connection is in [`LinkState::conn`].
    Done,
}

/// From the connection's task to the app thread: the answer to [`Up::Read`].
pub(super) enum Down {
    Data(Vec<u8>),
    Eof,
    Failed,
}

/// What the task and the app thread share about the exchange in progress.
pub(super) struct LinkState {
    /// The connection on its way back to the task.
    conn: Mutex<Option<Connection>>,
    /// Writes queued for the task and not yet done: while any is, the app thread must queue
    /// too (bytes go out in order).
    pub(super) queued: AtomicUsize,
    /// The client is gone (a write failed or timed out): the response cannot be completed.
    failed: AtomicBool,
}

impl LinkState {
    pub(super) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(super) fn take_conn(&self) -> Option<Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A connection's channels to its app threads, made at its first request and reused.
pub(super) struct Link {
    pub(super) up: Receiver<Up>,
    up_tx: Sender<Up>,
    pub(super) down_tx: Sender<Down>,
    down_rx: Receiver<Down>,
    pub(super) state: Arc<LinkState>,
}

impl Link {
    pub(super) fn new() -> Link {
        let (up_tx, up) = async_channel::bounded(UP_CAPACITY);
        let (down_tx, down_rx) = async_channel::bounded(1);
        let state = Arc::new(LinkState {
            conn: Mutex::new(None),
            queued: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        });
        Link { up, up_tx, down_tx, down_rx, state }
    }
}

/// The connection, lent to an application for one request.
pub(super) struct ChannelIo<S: Socket> {
    conn: Option<Connection>,
    socket: Arc<S>,
    up: Sender<Up>,
    down: Receiver<Down>,
    state: Arc<LinkState>,
    shared: Arc<Shared>,
    out: Vec<u8>,
    /// `send_end` was called: the exchange is over, whatever became of it.
    ended: bool,
    log: Option<Box<AccessEntry>>,
    peer: Option<SocketAddr>,
}

impl<S: Socket> ChannelIo<S> {
    pub(super) fn new(
        conn: Connection,
        socket: Arc<S>,
        link: &Link,
        shared: Arc<Shared>,
        log: Option<Box<AccessEntry>>,
        peer: Option<SocketAddr>,
    ) -> ChannelIo<S> {
        ChannelIo {
            conn: Some(conn),
            socket,
            up: link.up_tx.clone(),
            down: link.down_rx.clone(),
            state: link.state.clone(),
            shared,
            out: Vec::new(),
            ended: false,
            log,
            peer,
        }
    }

    fn conn(&mut self) -> Result<&mut Connection, AppIoError> {
        self.conn.as_mut().ok_or(AppIoError::Disconnected)
    }

    /// The client is gone: the response cannot be completed.
    fn lost(&mut self) -> AppIoError {
        self.state.fail();
        self.out.clear();
        if let Some(c) = self.conn.as_mut() {
            c.abort();
        }
        AppIoError::Disconnected
    }

    /// Queues a message for the task; blocks while the queue is full (backpressure).
    fn queue(&mut self, message: Up) -> Result<(), AppIoError> {
        self.state.queued.fetch_add(1, Ordering::AcqRel);
        if self.up.send_blocking(message).is_err() {
            return Err(self.lost());
        }
        Ok(())
    }

    /// Writes what the connection produced: straight to the socket while it takes bytes and
    /// nothing is queued ahead, the rest through the task.
    fn flush(&mut self) -> Result<(), AppIoError> {
        if self.out.is_empty() {
            return Ok(());
        }
        if self.state.is_failed() {
            return Err(self.lost());
        }
        let mut written = 0;
        if self.state.queued.load(Ordering::Acquire) == 0 {
            while written < self.out.len() {
                match send(&*self.socket, &self.out[written..]) {
                    Ok(n) => written += n,
                    Err(e) if would_block(&e) => break,
                    Err(_) => return Err(self.lost()),
                }
            }
        }
        if written == self.out.len() {
            self.out.clear();
            return Ok(());
        }
        let rest = if written == 0 {
            std::mem::take(&mut self.out)
        } else {
            let rest = self.out[written..].to_vec();
            self.out.clear();
            rest
        };
        self.queue(Up::Write(rest))
    }

    /// Reads what the socket has into the connection: directly if it has bytes now, otherwise
    /// through the task, which waits for them.
    fn fill(&mut self) -> Result<(), AppIoError> {
        if self.state.is_failed() {
            return Err(self.lost());
        }
        let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
        let socket = &*self.socket;
        let direct = with_read_buf(|buf| match recv(socket, buf) {
            Ok(0) => {
                conn.handle_eof(Instant::now());
                Ok(true)
            }
            Ok(n) => {
                conn.handle_input(&buf[..n], Instant::now());
                Ok(true)
            }
            Err(e) if would_block(&e) => Ok(false),
            Err(_) => Err(()),
        });
        match direct {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(()) => return Err(self.lost()),
        }
        if self.up.send_blocking(Up::Read).is_err() {
            return Err(self.lost());
        }
        let answer = self.down.recv_blocking();
        let conn = self.conn()?;
        match answer {
            Ok(Down::Data(bytes)) => conn.handle_input(&bytes, Instant::now()),
            Ok(Down::Eof) => conn.handle_eof(Instant::now()),
            Ok(Down::Failed) | Err(_) => return Err(self.lost()),
        }
        Ok(())
    }
}

impl<S: Socket> AppIo for ChannelIo<S> {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        let mut out = std::mem::take(&mut self.out);
        let continued = self.conn()?.send_continue(&mut out);
        self.out = out;
        continued?;
        self.flush()?;
        loop {
            let Some(conn) = self.conn.as_mut() else { return Err(AppIoError::Disconnected) };
            match conn.poll_event() {
                Ok(Some(Event::Body(bytes))) => return Ok(Some(bytes)),
                Ok(Some(Event::EndOfBody | Event::Request(_) | Event::Closed)) => return Ok(None),
                Err(e) => {
                    // The client's fault: answer with the error's status (400, 413, ...) while
                    // no head is out; the application's own response can then no longer go.
                    conn.send_error(&e, &mut self.out);
                    if let (Some(log), false) = (self.log.as_mut(), self.out.is_empty()) {
                        log.set_status(e.status());
                    }
                    let _ = self.flush();
                    return Err(AppIoError::BadRequest(e));
                }
                Ok(None) => self.fill()?,
            }
        }
    }

    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        let shutting_down = self.shared.is_shutting_down();
        let mut out = std::mem::take(&mut self.out);
        let conn = self.conn()?;
        if shutting_down {
            // A request in flight when the shutdown began: its response says Connection: close.
            conn.shutdown();
        }
        let sent = conn.send_head(head, &mut out);
        self.out = out;
        if let (Some(log), Ok(())) = (self.log.as_mut(), &sent) {
            log.set_status(head.status());
        }
        // The head waits for the first body bytes or the end: one write instead of two.
        Ok(sent?)
    }

    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        let mut out = std::mem::take(&mut self.out);
        let sent = self.conn()?.send_body(chunk, &mut out);
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
        let framed = self.conn()?.send_body_external(len, &mut out);
        self.out = out;
        let external = framed?;
        // The head and any chunk prefix go first.
        self.flush()?;
        let mut at = offset;
        let end = offset.saturating_add(external.send);
        if self.state.queued.load(Ordering::Acquire) == 0 {
            while at < end {
                let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(1 << 30);
                match rustix::fs::sendfile(&*self.socket, file, Some(&mut at), want) {
                    // The file is shorter than it was: the body cannot be completed.
                    Ok(0) => return Err(self.lost()),
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => return Err(self.lost()),
                }
            }
        }
        if at < end {
            // The socket is full: the task sends the rest when it can take it.
            let Ok(file) = file.try_clone() else { return Err(self.lost()) };
            self.queue(Up::File { file, offset: at, len: end - at })?;
        }
        if let Some(log) = self.log.as_mut() {
            log.add_body(external.send);
        }
        // Written with the next flush (the end, or the next piece of body).
        self.out.extend_from_slice(external.suffix);
        Ok(true)
    }

    fn send_end(&mut self) -> Result<(), AppIoError> {
        self.ended = true;
        let mut out = std::mem::take(&mut self.out);
        let ended = self.conn()?.send_end(Instant::now(), &mut out);
        self.out = out;
        let flushed = self.flush();
        ended?;
        flushed
    }

    fn abort(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            c.abort();
        }
    }
}

impl<S: Socket> Drop for ChannelIo<S> {
    fn drop(&mut self) {
        let _ = self.flush();
        let Some(mut conn) = self.conn.take() else { return };
        if let (Some(log), Some(access_log)) = (&self.log, &self.shared.config.access_log) {
            access_log(&log.record(self.peer));
        }
        if !self.ended {
            // The application returned without ending its response: it cannot be completed.
            conn.abort();
        }
        *self.state.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
        // The task may be gone (the connection was cut): then there is nobody to tell.
        let _ = self.up.send_blocking(Up::Done);
    }
}
