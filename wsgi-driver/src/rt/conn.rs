//! The task that drives one connection from accept to close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::future;
use wsgi_core::{Connection, Environ, Event, Job};

use super::io::{ChannelIo, Down, Link, Up};
use super::{Accepted, Active, Direction, FRESH_GRACE, Runtime, Socket, server_info};
use crate::{AccessEntry, http_date, with_read_buf};

/// An armed timer.
type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What ended an idle wait.
enum Wake {
    Readable(io::Result<()>),
    Deadline,
    Shutdown,
}

pub(super) async fn drive<R: Runtime, S: Socket>(
    runtime: R,
    active: Active,
    accepted: Accepted<S>,
) {
    let shared = active.0.clone();
    let info = server_info(&shared.config, &accepted);
    let socket = Arc::new(accepted.socket);
    let mut conn = Connection::new(shared.config.core.clone(), Instant::now());
    let mut on_shutdown = shared.shutdown.listen();
    let mut fresh_until: Option<Instant> = None;
    let mut requests = 0_u64;
    let mut link: Option<Link> = None;
    let mut timer: Option<(Instant, Sleep)> = None;
    loop {
        conn.set_date(http_date());
        match conn.poll_event() {
            Ok(Some(Event::Request(head))) => {
                requests += 1;
                let environ = Environ::new(&head, &info);
                let link = link.get_or_insert_with(Link::new);
                let peer = info.peer();
                match exchange(&runtime, &active, &socket, link, conn, environ, peer).await {
                    Some(back) => conn = back,
                    None => break,
                }
                continue;
            }
            // A body nobody read is drained by the connection, not reported; nothing to do.
            Ok(Some(Event::Body(_) | Event::EndOfBody)) => continue,
            Ok(Some(Event::Closed)) => break,
            Ok(None) if conn.is_closed() => break,
            Ok(None) => {}
            Err(e) => {
                let mut out = Vec::new();
                conn.send_error(&e, &mut out);
                let _ = write_all(&runtime, &*socket, &out, shared.config.io_timeout).await;
                break;
            }
        }
        // Nothing to serve: wait for bytes, a deadline, or the shutdown.
        let deadline = match (conn.poll_timeout(), fresh_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Timers are lazy: one armed for an earlier deadline is kept (when it fires, the
        // deadlines are checked and it is re-armed), so a busy kept-alive connection re-arms
        // about once per keep-alive period rather than once per request.
        match (&timer, deadline) {
            (Some((armed, _)), Some(d)) if *armed <= d => {}
            (_, Some(d)) => timer = Some((d, Box::pin(runtime.sleep_until(d)))),
            (_, None) => timer = None,
        }
        let watch_shutdown = fresh_until.is_none();
        let wake = future::or(
            async { Wake::Readable(socket.ready(Direction::Read).await) },
            future::or(
                async {
                    match timer.as_mut() {
                        Some((_, sleep)) => sleep.as_mut().await,
                        None => future::pending().await,
                    }
                    Wake::Deadline
                },
                async {
                    if watch_shutdown {
                        (&mut on_shutdown).await;
                        Wake::Shutdown
                    } else {
                        future::pending().await
                    }
                },
            ),
        )
        .await;
        match wake {
            Wake::Readable(Err(_)) => break,
            Wake::Readable(Ok(())) => {
                let read = with_read_buf(|buf| {
                    socket.try_io(Direction::Read, || recv(&*socket, buf)).map(|n| {
                        if n == 0 {
                            conn.handle_eof(Instant::now());
                        } else {
                            conn.handle_input(&buf[..n], Instant::now());
                        }
                    })
                });
                match read {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => {}
                    Err(_) => break,
                }
                if shared.is_shutting_down() {
                    // Whatever arrives now is answered with `Connection: close`.
                    conn.shutdown();
                }
            }
            Wake::Deadline => {
                timer = None;
                let now = Instant::now();
                if fresh_until.is_some_and(|f| f <= now) {
                    break;
                }
                conn.handle_timeout(now);
            }
            Wake::Shutdown => {
                // Kept-alive connections close now. One that has not sent a byte yet may have
                // its first request on the way: it gets a moment.
                if requests > 0 {
                    break;
                }
                fresh_until = Some(Instant::now() + FRESH_GRACE);
            }
        }
    }
    let _ = rustix::net::shutdown(&*socket, rustix::net::Shutdown::Both);
}

/// One request: hands the connection to an app thread and serves its I/O requests until it
/// comes back. Returns `None` if the connection must close.
async fn exchange<R: Runtime, S: Socket>(
    runtime: &R,
    active: &Active,
    socket: &Arc<S>,
    link: &mut Link,
    conn: Connection,
    environ: Environ,
    peer: Option<std::net::SocketAddr>,
) -> Option<Connection> {
    let shared = &active.0;
    let timeout = shared.config.io_timeout;
    let log = shared.config.access_log.is_some().then(|| Box::new(AccessEntry::new(&environ)));
    let io = ChannelIo::new(conn, socket.clone(), link, shared.clone(), log, peer);
    let job = Job { environ, io: Box::new(io) };
    // The queue is unbounded (one job per connection at most): this never waits.
    if shared.jobs.send(job).await.is_err() {
        return None;
    }
    let mut on_cut = shared.cut.listen();
    let state = link.state.clone();
    let mut failed = false;
    loop {
        if shared.cutting.load(Ordering::Acquire) {
            state.fail();
            return None;
        }
        let message = future::or(async { link.up.recv().await.ok() }, async {
            (&mut on_cut).await;
            None
        })
        .await;
        let Some(message) = message else {
            // Cut at the graceful timeout, or the app thread is gone.
            state.fail();
            return None;
        };
        match message {
            Up::Write(bytes) => {
                if !failed && write_all(runtime, &**socket, &bytes, timeout).await.is_err() {
                    failed = true;
                    state.fail();
                }
                state.queued.fetch_sub(1, Ordering::AcqRel);
            }
            Up::File { file, offset, len } => {
                if !failed
                    && send_file(runtime, &**socket, &file, offset, len, timeout).await.is_err()
                {
                    failed = true;
                    state.fail();
                }
                state.queued.fetch_sub(1, Ordering::AcqRel);
            }
            Up::Read => {
                let reply = if failed {
                    Down::Failed
                } else {
                    read_some(runtime, &**socket, timeout).await
                };
                if link.down_tx.send(reply).await.is_err() {
                    failed = true;
                }
            }
            Up::Done => {
                let conn = state.take_conn();
                return conn.filter(|c| !failed && !c.is_closed());
            }
        }
    }
}

/// Reads what the socket has, waiting for readiness at most `timeout` at a time.
async fn read_some<R: Runtime, S: Socket>(runtime: &R, socket: &S, timeout: Duration) -> Down {
    loop {
        let read = with_read_buf(|buf| {
            socket.try_io(Direction::Read, || recv(socket, buf)).map(|n| buf[..n].to_vec())
        });
        match read {
            Ok(bytes) if bytes.is_empty() => return Down::Eof,
            Ok(bytes) => return Down::Data(bytes),
            Err(e) if would_block(&e) => {
                if !ready(runtime, socket, Direction::Read, timeout).await {
                    return Down::Failed;
                }
            }
            Err(_) => return Down::Failed,
        }
    }
}

/// Writes all of `bytes`, waiting for readiness at most `timeout` at a time.
pub(super) async fn write_all<R: Runtime, S: Socket>(
    runtime: &R,
    socket: &S,
    mut bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.try_io(Direction::Write, || send(socket, bytes)) {
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if would_block(&e) => {
                if !ready(runtime, socket, Direction::Write, timeout).await {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `offset` with `sendfile`. A file shorter than promised is
/// an error: the response cannot be completed.
async fn send_file<R: Runtime, S: Socket>(
    runtime: &R,
    socket: &S,
    file: &std::fs::File,
    mut offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    let end = offset.saturating_add(len);
    while offset < end {
        let want = usize::try_from(end - offset).unwrap_or(usize::MAX).min(1 << 30);
        let sent = socket.try_io(Direction::Write, || {
            rustix::fs::sendfile(socket, file, Some(&mut offset), want).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if would_block(&e) => {
                if !ready(runtime, socket, Direction::Write, timeout).await {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `socket` may be ready for `direction`; `false` on a timeout or an error.
async fn ready<R: Runtime, S: Socket>(
    runtime: &R,
    socket: &S,
    direction: Direction,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    future::or(async { socket.ready(direction).await.is_ok() }, async {
        runtime.sleep_until(deadline).await;
        false
    })
    .await
}

/// One non-blocking `recv`; interrupted calls are retried.
pub(super) fn recv(socket: &impl std::os::fd::AsFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(socket, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// One non-blocking `send` (no SIGPIPE); interrupted calls are retried.
pub(super) fn send(socket: &impl std::os::fd::AsFd, bytes: &[u8]) -> io::Result<usize> {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    loop {
        match rustix::net::send(socket, bytes, flags) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

pub(super) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}
