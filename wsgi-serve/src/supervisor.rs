//! The pre-fork supervisor: binds the listeners once, runs `--workers` worker processes that
//! share them, and keeps that many running.
//!
//! Workers are this same binary, re-executed with [`WORKER_ENV`] set and the listening sockets
//! mapped to descriptors 3, 4, … (the systemd `LISTEN_FDS` protocol). Each worker embeds its own
//! interpreter. Signals:
//! - a worker that exits unexpectedly is replaced; one that cannot load the application exits
//!   with [`BOOT_ERROR`], and then the supervisor stops everything instead of looping;
//! - SIGTERM/SIGINT: the listening sockets close (a new connection is refused) and every worker
//!   finishes its requests in flight within `--graceful-timeout` (then it is killed); the
//!   supervisor exits when they are gone;
//! - SIGHUP: a new set of workers starts, and the old ones stop gracefully. The listening
//!   sockets stay open throughout, so no connection is refused;
//! - with `--timeout`, a worker whose application is stuck in one request for longer (its
//!   heartbeat, see [`crate::watchdog`], went quiet) is killed (SIGKILL) and
//!   replaced, with a CRITICAL line naming the request.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use rustix::process::{Pid, Signal, kill_process};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::logs::LineLog;
use crate::watchdog::{self, Heartbeat};

/// Set in a worker's environment.
pub(crate) const WORKER_ENV: &str = "WSGI_SERVE_WORKER";

/// A worker's exit code when the application cannot be loaded (as gunicorn's).
pub(crate) const BOOT_ERROR: i32 = 3;

struct Worker {
    child: Child,
    /// Stopping on purpose (SIGHUP replacement or shutdown): its exit is not a failure.
    retiring: bool,
    /// Its heartbeat, with `--timeout`.
    heartbeat: Option<Heartbeat>,
    /// Killed for its timeout already.
    timed_out: bool,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: Signal) {
        let _ = kill_process(Pid::from_child(&self.child), signal);
    }
}

/// How long the supervisor sleeps when no signal is pending: the latency of its answer to a
/// signal, and how often it looks at the workers' heartbeats.
const POLL: Duration = Duration::from_millis(50);

/// Runs `count` workers on `sockets` until SIGTERM or SIGINT. With a `timeout`, a worker
/// whose application is stuck in one request for longer is killed and replaced.
pub(crate) fn supervise(
    count: usize,
    sockets: Vec<OwnedFd>,
    graceful: Duration,
    timeout: Option<Duration>,
    log: &LineLog,
) -> Result<(), String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let spawn = |log: &LineLog| -> Result<Worker, String> {
        let heartbeat = match timeout {
            Some(_) => Some(
                Heartbeat::create()
                    .map_err(|e| format!("cannot create a worker's heartbeat file: {e}"))?,
            ),
            None => None,
        };
        let child = spawn_worker(&args, &sockets, heartbeat.as_ref())
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        log.info(&format!("booting worker with pid {}", child.id()));
        Ok(Worker { child, retiring: false, heartbeat, timed_out: false })
    };
    // Starts `n` more workers; stops at the first that fails.
    let spawn_more = |workers: &mut Vec<Worker>, n: usize| -> Result<(), String> {
        for _ in 0..n {
            workers.push(spawn(log)?);
        }
        Ok(())
    };
    let mut workers = Vec::with_capacity(count);
    if let Err(e) = spawn_more(&mut workers, count) {
        // The workers already started must not outlive their supervisor.
        stop(workers, graceful, log);
        return Err(e);
    }
    let mut failure = None;
    let mut last_check = Instant::now();
    'signals: loop {
        // Without --timeout there is nothing to check between signals: block until one comes.
        let pending: Vec<i32> = match timeout {
            Some(_) => signals.pending().collect(),
            None => signals.wait().collect(),
        };
        if pending.is_empty() {
            std::thread::sleep(POLL);
        }
        for signal in pending {
            match signal {
                SIGCHLD => {
                    let mut replace = 0;
                    workers.retain_mut(|w| match w.child.try_wait() {
                        Ok(None) => true,
                        Ok(Some(status)) => {
                            clean_up_after(w.pid());
                            if !w.retiring {
                                if status.code() == Some(BOOT_ERROR) {
                                    failure =
                                        Some("a worker could not load the application".to_owned());
                                } else {
                                    log.info(&format!(
                                        "worker {} exited ({}); starting a replacement",
                                        w.pid(),
                                        describe(status)
                                    ));
                                    replace += 1;
                                }
                            }
                            false
                        }
                        Err(_) => false,
                    });
                    if failure.is_some() {
                        break 'signals;
                    }
                    if let Err(e) = spawn_more(&mut workers, replace) {
                        failure = Some(e);
                        break 'signals;
                    }
                }
                SIGHUP => {
                    log.info("SIGHUP: starting new workers, stopping the old ones gracefully");
                    for w in &mut workers {
                        w.retiring = true;
                        w.signal(Signal::TERM);
                    }
                    if let Err(e) = spawn_more(&mut workers, count) {
                        failure = Some(e);
                        break 'signals;
                    }
                }
                _ => {
                    let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                    log.info(&format!(
                        "{name}: stopping; requests in flight have {}s to finish",
                        graceful.as_secs()
                    ));
                    break 'signals;
                }
            }
        }
        if let Some(timeout) = timeout {
            if last_check.elapsed() >= watchdog::tick(timeout) {
                last_check = Instant::now();
                kill_overdue(&mut workers, timeout, log);
            }
        }
    }
    // No worker is started from here on: the supervisor's copies of the listening sockets go,
    // so once the workers have closed theirs a new connection is refused at once instead of
    // queuing in the kernel's backlog until the last process exits and being reset.
    drop(sockets);
    stop(workers, graceful, log);
    match failure {
        Some(reason) => Err(reason),
        None => {
            log.info("stopped");
            Ok(())
        }
    }
}

/// Kills each worker whose heartbeat is older than `timeout`; SIGCHLD then brings its
/// replacement.
fn kill_overdue(workers: &mut [Worker], timeout: Duration, log: &LineLog) {
    for w in workers.iter_mut().filter(|w| !w.timed_out) {
        let Some(overdue) = w.heartbeat.as_ref().and_then(|h| h.check(timeout)) else {
            continue;
        };
        log.critical(&overdue.message(w.pid(), timeout));
        w.timed_out = true;
        w.signal(Signal::KILL);
    }
}

/// Asks every worker to stop, waits up to `graceful` (plus a second), then kills the rest.
fn stop(mut workers: Vec<Worker>, graceful: Duration, log: &LineLog) {
    for w in &mut workers {
        w.retiring = true;
        w.signal(Signal::TERM);
    }
    let deadline = Instant::now() + graceful + Duration::from_secs(1);
    while !workers.is_empty() && Instant::now() < deadline {
        workers.retain_mut(|w| {
            let running = matches!(w.child.try_wait(), Ok(None));
            if !running {
                clean_up_after(w.pid());
            }
            running
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut w in workers {
        log.info(&format!("worker {} did not stop in time; killing it", w.pid()));
        let _ = w.child.kill();
        let _ = w.child.wait();
        clean_up_after(w.pid());
    }
}

/// Removes what a worker that is gone may have left in the temporary directory: a worker
/// killed (by --timeout, or the OOM killer) never ran its own cleanup.
fn clean_up_after(pid: u32) {
    #[cfg(feature = "tls")]
    crate::tempname::remove_leftovers(crate::tls::PRIVATE_DIR_STEM, pid);
    #[cfg(not(feature = "tls"))]
    let _ = pid;
}

/// glibc malloc settings for the workers, unless the user chose their own: blocks up to 4 MiB
/// come from the heap rather than their own mmap, and up to 8 MiB free at the top of a heap is
/// kept rather than given back at once.
///
/// Left to itself, glibc starts with a 128 KiB threshold for both and raises them only after a
/// large mmapped block is freed, which depends on what happened to be allocated first. A worker
/// whose thresholds stayed low gave back (`madvise`) and faulted in again the buffers of every
/// 64 KiB upload: measured here, 13,000 uploads/s instead of 30,000–40,000 for the same binary,
/// depending only on the environment it was started in (`PATH` finding a virtualenv's python).
/// Fixed thresholds make a worker's speed the same from one start to the next. The variable is
/// inherited by processes the application starts, where it only sets those two thresholds.
const MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=8388608";

/// The user's own malloc settings, which [`MALLOC_TUNABLES`] must not override.
fn malloc_configured() -> bool {
    ["GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

fn spawn_worker(
    args: &[OsString],
    sockets: &[OwnedFd],
    heartbeat: Option<&Heartbeat>,
) -> std::io::Result<Child> {
    let mut mappings = Vec::with_capacity(sockets.len() + 1);
    for (i, fd) in sockets.iter().enumerate() {
        mappings.push(FdMapping { parent_fd: fd.try_clone()?, child_fd: 3 + i as i32 });
    }
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(heartbeat) = heartbeat {
        // After the sockets: LISTEN_FDS counts only those.
        let child_fd = 3 + sockets.len() as i32;
        mappings.push(FdMapping { parent_fd: heartbeat.file().try_clone()?.into(), child_fd });
        command.env(watchdog::HEARTBEAT_ENV, child_fd.to_string());
    } else {
        command.env_remove(watchdog::HEARTBEAT_ENV);
    }
    if !malloc_configured() {
        command.env("GLIBC_TUNABLES", MALLOC_TUNABLES);
    }
    command
        .args(args)
        .env(WORKER_ENV, "1")
        .env("LISTEN_FDS", sockets.len().to_string())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS_FIRST_FD")
        .env_remove("LISTEN_FDNAMES");
    command.fd_mappings(mappings).map_err(|_| std::io::Error::other("descriptor collision"))?;
    command.spawn()
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}
