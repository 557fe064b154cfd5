//! The task that drives one connection from accept to close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::future;
use wsgi_core::{Connection, Environ, Event};

use super::io::{Down, Line, Link, Up, Work, job, link};
use super::{Accepted, Active, Direction, FRESH_GRACE, Runtime, Socket, server_info};
use crate::read::recv_spare;
use crate::{detach, http_date, recv_into, with_read_vec};

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
    let mut info = server_info(&shared.config, &accepted);
    let socket = Arc::new(accepted.socket);
    let mut conn = Connection::new(shared.config.core.clone(), Instant::now());
    let mut on_shutdown = shared.shutdown.listen();
    // A connection whose task starts after the shutdown notice was given: treated as notified.
    let mut fresh_until = shared.is_shutting_down().then(|| Instant::now() + FRESH_GRACE);
    // The app threads' ends of the connection, made at its first request.
    let mut ends: Option<(Link, Arc<Line<S>>)> = None;
    let mut timer: Option<(Instant, Sleep)> = None;
    // The client ended its side: nothing more can arrive, so waiting for bytes is pointless.
    let mut eof = false;
    // The last time the client sent something, for the `io_timeout` of a connection that has
    // no protocol deadline (draining the unread rest of a request body).
    let mut last_input = Instant::now();
    // The shutdown notice came (it is awaited once).
    let mut shutdown_seen = false;
    loop {
        conn.set_date(http_date());
        match conn.poll_event() {
            Ok(Some(Event::Request(head))) => {
                if ends.is_none() {
                    if let Some(header) = conn.proxy_header() {
                        info = info.with_proxy_header(header);
                    }
                }
                let environ = Environ::new(head, &info);
                let (link, line) =
                    ends.get_or_insert_with(|| link(socket.clone(), shared.clone(), info.clone()));
                let job = job(conn, line.clone(), environ);
                match exchange(&runtime, &active, &socket, link, job).await {
                    Some(back) => conn = back,
                    None => break,
                }
                last_input = Instant::now();
                continue;
            }
            // A body nobody read is drained by the connection, not reported; nothing to do.
            Ok(Some(Event::Body(_) | Event::EndOfBody)) => continue,
            Ok(Some(Event::Closed)) => break,
            Ok(None) if conn.is_closed() || eof => break,
            Ok(None) => {}
            Err(e) => {
                let mut out = Vec::new();
                conn.send_error(&e, &mut out);
                let _ = write_all(&runtime, &*socket, &out, shared.config.io_timeout).await;
                break;
            }
        }
        // Nothing to serve: wait for bytes, a deadline, or the shutdown.
        let io_limit = match conn.poll_timeout() {
            Some(_) => None,
            None => last_input.checked_add(shared.config.io_timeout),
        };
        let deadline = [conn.poll_timeout(), fresh_until, io_limit].into_iter().flatten().min();
        // Timers are lazy: one armed for an earlier deadline is kept (when it fires, the
        // deadlines are checked and it is re-armed), so a busy kept-alive connection re-arms
        // about once per keep-alive period rather than once per request.
        match (&timer, deadline) {
            (Some((armed, _)), Some(d)) if *armed <= d => {}
            (_, Some(d)) => timer = Some((d, Box::pin(runtime.sleep_until(d)))),
            (_, None) => timer = None,
        }
        let watch_shutdown = fresh_until.is_none() && !shutdown_seen;
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
            Wake::Readable(Ok(())) => match read_into(&*socket, &mut conn, &mut eof) {
                // Whatever arrives during a shutdown is answered with `Connection: close`.
                // Only after bytes came: on a spurious wake-up the connection would look
                // idle and close, under a request that is on its way.
                Ok(_) if shared.is_shutting_down() => {
                    last_input = Instant::now();
                    conn.shutdown();
                }
                Ok(_) => last_input = Instant::now(),
                Err(e) if would_block(&e) => {}
                Err(_) => break,
            },
            Wake::Deadline => {
                timer = None;
                let now = Instant::now();
                if fresh_until.is_some_and(|f| f <= now) || io_limit.is_some_and(|l| l <= now) {
                    break;
                }
                conn.handle_timeout(now);
            }
            Wake::Shutdown => {
                shutdown_seen = true;
                // A request may sit unread in the socket: nothing watches it while the
                // connection waits in the app threads' queue, and a readiness wait may lose
                // the race with the notice. It is answered, with `Connection: close`.
                match read_into(&*socket, &mut conn, &mut eof) {
                    Ok(n) if n > 0 => conn.shutdown(),
                    // The end of the stream: the loop ends.
                    Ok(_) => {}
                    // Kept-alive connections close now. One that has not sent a byte yet may
                    // have its first request on the way: it gets a moment.
                    Err(e) if would_block(&e) && ends.is_none() => {
                        fresh_until = Some(Instant::now() + FRESH_GRACE);
                    }
                    Err(_) => break,
                }
            }
        }
    }
    let _ = rustix::net::shutdown(&*socket, rustix::net::Shutdown::Both);
}

/// One request, and those the app threads find after it ([`Work::Resume`]): hands the
/// connection to an app thread and serves its I/O requests until it comes back. Returns `None`
/// if the connection must close.
async fn exchange<R: Runtime, S: Socket>(
    runtime: &R,
    active: &Active,
    socket: &Arc<S>,
    link: &mut Link,
    job: wsgi_core::Job,
) -> Option<Connection> {
    let shared = &active.0;
    let timeout = shared.config.io_timeout;
    // The queue is unbounded (one item per connection at most): this never waits.
    if shared.jobs.send(Work::Job(job)).await.is_err() {
        return None;
    }
    let Link { up, down_tx, state, on_cut } = link;
    let mut failed = false;
    loop {
        if shared.cutting.load(Ordering::Acquire) {
            state.fail();
            return None;
        }
        // Each message is handled in a race with the cut at the graceful timeout, so that a
        // client trickling bytes cannot outlive the server's shutdown.
        let step = future::or(
            async {
                // Cannot fail: the connection's `Line`, which this task keeps, holds a sender.
                let message = up.recv().await.ok()?;
                Some(match message {
                    Up::Write(bytes) => {
                        if !failed && write_all(runtime, &**socket, &bytes, timeout).await.is_err()
                        {
                            failed = true;
                            state.fail();
                        }
                        state.written();
                        None
                    }
                    Up::WaitWritable => {
                        let reply = if !failed && writable(runtime, &**socket, timeout).await {
                            Down::Writable
                        } else {
                            Down::Failed
                        };
                        if down_tx.send(reply).await.is_err() {
                            failed = true;
                        }
                        None
                    }
                    Up::Read => {
                        let reply = if failed {
                            Down::Failed
                        } else {
                            read_some(runtime, &**socket, timeout).await
                        };
                        if down_tx.send(reply).await.is_err() {
                            failed = true;
                        }
                        None
                    }
                    Up::Done => Some(state.take_conn()),
                })
            },
            async {
                (&mut *on_cut).await;
                None
            },
        )
        .await;
        match step {
            // Cut at the graceful timeout.
            None => {
                state.fail();
                return None;
            }
            Some(None) => {}
            Some(Some(conn)) => return conn.filter(|c| !failed && !c.is_closed()),
        }
    }
}

/// Reads once from the socket into `conn` without waiting; returns the bytes read (0 at the end
/// of the stream, which also sets `eof`).
fn read_into<S: Socket>(socket: &S, conn: &mut Connection, eof: &mut bool) -> io::Result<usize> {
    let flags = rustix::net::RecvFlags::DONTWAIT;
    let n = socket.try_io(Direction::Read, || Ok(recv_into(socket, conn, flags)?))?;
    *eof |= n == 0;
    Ok(n)
}

/// Reads what the socket has, waiting for readiness at most `timeout` at a time.
async fn read_some<R: Runtime, S: Socket>(runtime: &R, socket: &S, timeout: Duration) -> Down {
    loop {
        let read = with_read_vec(|buf| {
            let flags = rustix::net::RecvFlags::DONTWAIT;
            socket.try_io(Direction::Read, || Ok(recv_spare(socket, buf, flags)?))?;
            Ok::<_, io::Error>(detach(buf))
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

/// Waits, at most `timeout`, until the socket can take bytes. The check goes through
/// [`Socket::try_io`], so a stale readiness a runtime keeps is cleared rather than trusted.
async fn writable<R: Runtime, S: Socket>(runtime: &R, socket: &S, timeout: Duration) -> bool {
    loop {
        let checked = socket.try_io(Direction::Write, || {
            let mut fds = [rustix::event::PollFd::new(socket, rustix::event::PollFlags::OUT)];
            match rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())) {
                Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                Ok(_) => Ok(fds[0].revents()),
                Err(e) => Err(e.into()),
            }
        });
        match checked {
            Ok(revents) => return !revents.intersects(rustix::event::PollFlags::ERR),
            Err(e) if would_block(&e) => {
                if !ready(runtime, socket, Direction::Write, timeout).await {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// Waits until `socket` may be ready for `direction`; `false` on a timeout or an error.
async fn ready<R: Runtime, S: Socket>(
    runtime: &R,
    socket: &S,
    direction: Direction,
    timeout: Duration,
) -> bool {
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        return socket.ready(direction).await.is_ok();
    };
    future::or(async { socket.ready(direction).await.is_ok() }, async {
        runtime.sleep_until(deadline).await;
        false
    })
    .await
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
