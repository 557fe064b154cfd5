//! `--timeout`: a worker whose application is stuck in one request for longer is killed and
//! replaced by the supervisor (gunicorn's worker timeout).
//!
//! What counts is the time the request spends *inside the application*: time blocked on the
//! client (reading a slow upload, writing to a slow reader) is bounded by the I/O timeout
//! instead, so a long download to a slow but reading client never kills a worker.
//!
//! The two sides share one heartbeat file per worker, created by the supervisor and mapped
//! into the worker:
//! - in the worker, [`Watched`] wraps the application and its [`AppIo`] to keep, per app
//!   thread, the request in flight and its time in the application so far; a thread of its own
//!   ([`start_heartbeat`]) sets the file's modification time every tick to *now minus the
//!   longest such time* (on the monotonic clock), and writes the longest-running request's
//!   method and path into the file;
//! - the supervisor ([`Heartbeat::check`]) reads the modification time: older than
//!   `--timeout` means a request has been in the application that long, or that the worker is
//!   wedged entirely (its heartbeat thread cannot run); either way it logs the request and
//!   kills the worker.
//!
//! The worker side needs neither the GIL nor the app threads, so it keeps beating while an app
//! thread holds the GIL; and the verdict is the supervisor's, so a worker wedged as a whole is
//! caught too.

use std::fs::{File, FileTimes, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use wsgi_core::{AppIo, AppIoError, Application, Job, JobSource, ResponseHead};

/// Set in a worker's environment: the descriptor of its heartbeat file.
pub(crate) const HEARTBEAT_ENV: &str = "WSGI_SERVE_HEARTBEAT_FD";

/// A system-wide clock (the same in every process), as a duration since its epoch.
fn read_clock(id: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(id);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// The monotonic clock, which the supervisor reads too.
fn monotonic() -> Duration {
    read_clock(rustix::time::ClockId::Monotonic)
}

/// How often the worker beats and the supervisor looks: a tenth of the timeout, within
/// 50 ms ..= 1 s.
pub(crate) fn tick(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// The coarse monotonic clock, in nanoseconds: read on every call a request makes to its
/// connection, so the cheap one (a few milliseconds' resolution; the timeout is in seconds).
fn coarse_nanos() -> u64 {
    u64::try_from(read_clock(rustix::time::ClockId::MonotonicCoarse).as_nanos()).unwrap_or(u64::MAX)
}

/// One app thread's request in flight. Atomics, not a lock: the app thread updates it around
/// every call to the connection, the heartbeat thread reads it once a tick.
#[derive(Debug, Default)]
struct Slot {
    /// `METHOD /path`, kept in the same buffer from request to request.
    request: Mutex<String>,
    busy: AtomicBool,
    /// The request's time in the application, in one word so that a reader never mixes two
    /// updates: while the application runs, [`RUNNING`] with the [`coarse_nanos`] instant it
    /// would have started at had it never waited; while it waits on the client, the
    /// nanoseconds it ran so far.
    clock: AtomicU64,
}

/// Marks [`Slot::clock`] while the application runs.
const RUNNING: u64 = 1 << 63;

impl Slot {
    /// Time in the application so far, if a request is in flight.
    fn app_time(&self, now: u64) -> Option<Duration> {
        self.busy.load(Ordering::Acquire).then(|| {
            let clock = self.clock.load(Ordering::Acquire);
            Duration::from_nanos(if clock & RUNNING == 0 {
                clock
            } else {
                now.saturating_sub(clock & !RUNNING)
            })
        })
    }

    /// A request starts, in the application.
    fn start(&self) {
        self.clock.store(RUNNING | coarse_nanos(), Ordering::Release);
    }

    /// The application waits on the client: the time so far is kept.
    fn pause(&self) {
        let clock = self.clock.load(Ordering::Relaxed);
        if clock & RUNNING != 0 {
            let ran = coarse_nanos().saturating_sub(clock & !RUNNING);
            self.clock.store(ran, Ordering::Release);
        }
    }

    /// The application runs again.
    fn resume(&self) {
        let clock = self.clock.load(Ordering::Relaxed);
        if clock & RUNNING == 0 {
            let start = coarse_nanos().saturating_sub(clock) & !RUNNING;
            self.clock.store(RUNNING | start, Ordering::Release);
        }
    }
}

type SharedSlot = Arc<Slot>;

fn lock(request: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    request.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slots of every app thread of this worker.
#[derive(Debug, Default)]
pub(crate) struct Board {
    slots: Mutex<Vec<SharedSlot>>,
}

impl Board {
    fn register(&self) -> SharedSlot {
        let slot = SharedSlot::default();
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).push(slot.clone());
        slot
    }

    /// The request longest in the application, and its time there.
    fn longest(&self, now: u64) -> Option<(Duration, String)> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut longest: Option<(Duration, String)> = None;
        for slot in slots.iter() {
            if let Some(t) = slot.app_time(now) {
                if longest.as_ref().is_none_or(|(l, _)| t > *l) {
                    longest = Some((t, lock(&slot.request).clone()));
                }
            }
        }
        longest
    }
}

/// An application whose requests are timed for the watchdog (with a board; without one, the
/// application as it is).
pub(crate) struct Watched<A> {
    app: A,
    board: Option<Arc<Board>>,
}

impl<A: Application> Watched<A> {
    pub(crate) fn new(app: A, board: Option<Arc<Board>>) -> Watched<A> {
        Watched { app, board }
    }
}

impl<A: Application> Application for Watched<A> {
    fn serve(&self, next_job: &mut JobSource<'_>) {
        let Some(board) = &self.board else {
            return self.app.serve(next_job);
        };
        let slot = board.register();
        let mut next = || {
            // The previous request is done once its thread asks for the next.
            slot.busy.store(false, Ordering::Release);
            let job = next_job()?;
            {
                let mut request = lock(&slot.request);
                request.clear();
                request.push_str(job.environ.get("REQUEST_METHOD").unwrap_or("-"));
                request.push(' ');
                let target = job.environ.get("RAW_URI").unwrap_or("-");
                request.push_str(target.split_once('?').map_or(target, |(path, _)| path));
            }
            slot.start();
            slot.busy.store(true, Ordering::Release);
            let io = Box::new(WatchedIo { io: job.io, slot: slot.clone() });
            Some(Job { environ: job.environ, io })
        };
        self.app.serve(&mut next);
        slot.busy.store(false, Ordering::Release);
    }

    fn serializes_threads(&self) -> bool {
        self.app.serializes_threads()
    }
}

/// The connection of a watched request: the clock stops while a call waits on the client.
struct WatchedIo {
    io: Box<dyn AppIo>,
    slot: SharedSlot,
}

impl WatchedIo {
    fn waiting<T>(&mut self, call: impl FnOnce(&mut dyn AppIo) -> T) -> T {
        self.slot.pause();
        let result = call(&mut *self.io);
        self.slot.resume();
        result
    }
}

impl AppIo for WatchedIo {
    fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
        self.waiting(|io| io.read_body())
    }

    fn send_head(&mut self, head: &ResponseHead) -> Result<(), AppIoError> {
        self.waiting(|io| io.send_head(head))
    }

    fn send_body(&mut self, chunk: &[u8]) -> Result<(), AppIoError> {
        self.waiting(|io| io.send_body(chunk))
    }

    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> Result<bool, AppIoError> {
        self.waiting(|io| io.send_file(file, offset, len))
    }

    fn send_end(&mut self) -> Result<(), AppIoError> {
        self.waiting(|io| io.send_end())
    }

    fn abort(&mut self) {
        self.io.abort();
    }
}

/// Opens this worker's heartbeat file (the descriptor its supervisor mapped in), if it has one.
pub(crate) fn worker_heartbeat() -> Result<Option<File>, String> {
    let Some(fd) = std::env::var_os(HEARTBEAT_ENV) else { return Ok(None) };
    let fd = fd.to_string_lossy().into_owned();
    // Re-opened through /dev/fd: a new handle to the same file, without unsafe code.
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/fd/{fd}"))
        .map(Some)
        .map_err(|e| format!("cannot open the heartbeat file (descriptor {fd}): {e}"))
}

/// Starts the worker's heartbeat thread: every [`tick`], it records in `file` how long the
/// longest request has been in the application. It runs until the process ends.
pub(crate) fn start_heartbeat(
    board: Arc<Board>,
    mut file: File,
    timeout: Duration,
) -> Result<(), String> {
    let tick = tick(timeout);
    std::thread::Builder::new()
        .name("wsgi-heartbeat".to_owned())
        .spawn(move || {
            let mut written = String::new();
            loop {
                let longest = board.longest(coarse_nanos());
                let (stuck_for, request) = longest.unwrap_or_default();
                if request != written {
                    let _ = write_request(&mut file, &request);
                    written = request;
                }
                let _ = beat(&file, monotonic().saturating_sub(stuck_for));
                std::thread::sleep(tick);
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the heartbeat thread (--timeout): {e}"))
}

fn write_request(file: &mut File, request: &str) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(request.as_bytes())?;
    file.set_len(request.len() as u64)
}

/// Sets the heartbeat to `at` on the monotonic clock (as the file's modification time).
fn beat(file: &File, at: Duration) -> std::io::Result<()> {
    let at = UNIX_EPOCH + at;
    file.set_times(FileTimes::new().set_modified(at).set_accessed(at))
}

/// The supervisor's side of one worker's heartbeat.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    file: File,
}

/// What [`Heartbeat::check`] found: a worker past its timeout.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overdue {
    /// `METHOD /path` of the request in the application, or empty if none was.
    pub(crate) request: String,
    /// How long since the last heartbeat.
    pub(crate) silent_for: Duration,
}

impl Heartbeat {
    /// A fresh heartbeat file, beating now. It has no name: it lives while a descriptor does.
    pub(crate) fn create() -> std::io::Result<Heartbeat> {
        // Unlinked at once: the supervisor and its worker share it through descriptors only.
        let file = crate::tempname::create_unique(".wsgi-serve-heartbeat", |path| {
            let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
            std::fs::remove_file(path)?;
            Ok(file)
        })?;
        beat(&file, monotonic())?;
        Ok(Heartbeat { file })
    }

    /// The descriptor to map into the worker.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Returns what is overdue if the worker's last heartbeat is older than `timeout`.
    pub(crate) fn check(&self, timeout: Duration) -> Option<Overdue> {
        let modified = self.file.metadata().ok()?.modified().ok()?;
        let at = modified.duration_since(UNIX_EPOCH).ok()?;
        let silent_for = monotonic().saturating_sub(at);
        if silent_for <= timeout {
            return None;
        }
        let mut request = String::new();
        let mut file = &self.file;
        let _ = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.take(4096).read_to_string(&mut request));
        Some(Overdue { request, silent_for })
    }
}

impl Overdue {
    /// The error-log line about worker `pid`.
    pub(crate) fn message(&self, pid: u32, timeout: Duration) -> String {
        let secs = self.silent_for.as_secs();
        let limit = timeout.as_secs();
        if self.request.is_empty() {
            format!(
                "WORKER TIMEOUT (pid {pid}): no heartbeat for {secs} s (--timeout {limit}) with no \
                 request in the application: the worker is wedged; replacing the worker"
            )
        } else {
            format!(
                "WORKER TIMEOUT (pid {pid}): {} has run for {secs} s (--timeout {limit}); \
                 replacing the worker",
                self.request
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use wsgi_core::{Config, Connection, Environ, Event, ServerInfo};

    fn environ(raw: &str) -> Environ {
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(raw.as_bytes(), now);
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("{raw}") };
        Environ::new(head, &ServerInfo::default())
    }

    /// A connection whose every call waits `wait` on a (pretend) slow client.
    struct SlowClient {
        wait: Duration,
    }

    impl AppIo for SlowClient {
        fn read_body(&mut self) -> Result<Option<Bytes>, AppIoError> {
            std::thread::sleep(self.wait);
            Ok(None)
        }
        fn send_head(&mut self, _: &ResponseHead) -> Result<(), AppIoError> {
            Ok(())
        }
        fn send_body(&mut self, _: &[u8]) -> Result<(), AppIoError> {
            std::thread::sleep(self.wait);
            Ok(())
        }
        fn send_end(&mut self) -> Result<(), AppIoError> {
            Ok(())
        }
        fn abort(&mut self) {}
    }

    #[test]
    fn counts_time_in_the_application_not_time_waiting_on_the_client() {
        let board = Arc::new(Board::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (app_board, app_seen) = (board.clone(), seen.clone());
        let app = move |mut job: Job| {
            std::thread::sleep(Duration::from_millis(100));
            // Blocked on the client for 400 ms: not counted.
            let _ = job.io.read_body();
            let _ = job.io.send_body(b"x");
            app_seen.lock().unwrap().push(app_board.longest(coarse_nanos()));
        };
        let watched = Watched::new(app, Some(board.clone()));
        let mut jobs = vec![Job {
            environ: environ("POST /up/load?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            io: Box::new(SlowClient { wait: Duration::from_millis(200) }),
        }];
        watched.serve(&mut || jobs.pop());
        let seen = seen.lock().unwrap();
        let (in_app, request) = seen[0].clone().unwrap();
        assert_eq!(request, "POST /up/load");
        // The coarse clock ticks every few milliseconds.
        assert!(in_app >= Duration::from_millis(90), "{in_app:?}");
        assert!(in_app < Duration::from_millis(300), "{in_app:?}");
        // Done: nothing in flight.
        assert_eq!(board.longest(coarse_nanos()), None);
    }

    #[test]
    fn heartbeat_goes_overdue_and_names_the_request() {
        let heartbeat = Heartbeat::create().unwrap();
        assert_eq!(heartbeat.check(Duration::from_secs(5)), None);
        let mut worker = heartbeat.file().try_clone().unwrap();
        write_request(&mut worker, "GET /a-long-path").unwrap();
        write_request(&mut worker, "GET /slow").unwrap();
        // As the worker writes it: the request has been in the application for 7 s.
        beat(&worker, monotonic().saturating_sub(Duration::from_secs(7))).unwrap();
        assert_eq!(heartbeat.check(Duration::from_secs(10)), None);
        let overdue = heartbeat.check(Duration::from_secs(5)).unwrap();
        assert_eq!(overdue.request, "GET /slow");
        assert!((7..9).contains(&overdue.silent_for.as_secs()), "{overdue:?}");
        assert_eq!(
            overdue.message(42, Duration::from_secs(5)),
            format!(
                "WORKER TIMEOUT (pid 42): GET /slow has run for {} s (--timeout 5); replacing \
                 the worker",
                overdue.silent_for.as_secs()
            )
        );
        // Writing sets the modification time: the worker beats after it.
        write_request(&mut worker, "").unwrap();
        beat(&worker, monotonic().saturating_sub(Duration::from_secs(7))).unwrap();
        let wedged = heartbeat.check(Duration::from_secs(5)).unwrap();
        assert!(wedged.message(42, Duration::from_secs(5)).contains("the worker is wedged"));
    }

    #[test]
    fn ticks_stay_within_bounds() {
        assert_eq!(tick(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(tick(Duration::from_secs(2)), Duration::from_millis(200));
        assert_eq!(tick(Duration::from_millis(100)), Duration::from_millis(50));
    }
}
