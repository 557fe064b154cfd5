//! Which app threads take requests, for an application that runs one thread at a time.
//!
//! Python runs one thread at a time (the GIL), and every app thread detaches from it around
//! socket I/O. With several threads taking requests, each detach hands the GIL to another
//! thread that was waiting for it, and the next attach waits for it back: a futex wake and a
//! context switch per request, which on a 2-core machine cost more than the hello app itself
//! (measured with 4 app threads: 80,000 requests/s; with one: 137,000).
//!
//! So for such an application ([`Application::serializes_threads`]) the threads take turns
//! deliberately. One thread, the *holder*, takes requests while they finish promptly, and the
//! others wait here. The app threads exist for requests that block (a database query, a slow
//! client, `time.sleep`), so when every holder has been inside one request for longer than
//! [`STALL`] with no request finished meanwhile, one waiting thread becomes a holder too. A
//! holder that finishes a prompt request while others hold goes back to waiting, so the count
//! follows the load.
//!
//! While requests are short, two threads hold: one runs Python while the other does its
//! request's work outside the GIL (reading and parsing the next request, building its environ,
//! writing the response), instead of one thread doing both in turn. Measured with the hello app
//! and 32 connections: adapter-std 114k → 129k requests/s, smol 109k → 133k; with Flask (some
//! 60 µs of Python a request) a second holder only passes the GIL back and forth (−20 %), so the
//! pair forms only while the recent requests averaged under [`SHORT`]. What counts is a
//! request's time less the time it spent in the driver's socket I/O ([`in_io`]), during which
//! the GIL is free: a 64 KiB upload spends most of its time reading the body, and a second
//! holder runs Python meanwhile (adapter-std, c=8, the pair forced against one holder: 34–37k
//! → 41–45k requests/s); by wall time alone it counted as long, or swung between the two.
//!
//! One waiting thread, the *watcher*, checks every [`STALL`] while requests run; the others
//! sleep until the watcher becomes a holder and hands its role on. With no request running,
//! the watcher sleeps too, until one starts: an idle server wakes no thread.
//!
//! [`Application::serializes_threads`]: wsgi_core::Application::serializes_threads

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long the holders may all be inside requests, none finishing, before another thread
/// starts taking requests.
pub const STALL: Duration = Duration::from_millis(1);

/// Requests that average less than this are short: a gate pairing short requests then keeps
/// two holders. The pair parts when the average passes twice this.
pub const SHORT: Duration = Duration::from_micros(20);

/// How often the watcher looks while a holder is free to take requests (it then only needs to
/// notice that this changed).
const RELAXED: Duration = Duration::from_millis(16);

thread_local! {
    /// The time the request this thread serves has spent in [`in_io`] so far.
    static IO_TIME: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Runs `f`, socket I/O of the request this thread serves (a body read, a response write),
/// and counts its time as I/O: time in which the thread does not run the application, so
/// that an application that serializes its threads can run another's meanwhile. A [`Seat`]
/// judges a request by its time less this (see the module docs). Call it around the driver's
/// I/O only, never around the application's own code.
pub fn in_io<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = f();
    let took = start.elapsed();
    IO_TIME.with(|io| io.set(io.get().saturating_add(took)));
    result
}

/// Admits an application's threads to take requests (see the module docs).
#[derive(Debug)]
pub struct Gate {
    /// At most this many holders (the app threads).
    threads: usize,
    /// `false`: every thread takes requests whenever it is free (the gate does nothing).
    serialized: bool,
    state: Mutex<State>,
    /// The recent requests are prompt but not short (see [`solo`](Gate::solo)), readable
    /// without the lock.
    prompt_not_short: AtomicBool,
    /// The watcher waits here.
    watch: Condvar,
    /// The other waiting threads wait here.
    wait: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Threads that take requests.
    holders: usize,
    /// Requests finished.
    finished: u64,
    /// When each seat's request started, for the seats inside one.
    started: Vec<Option<Instant>>,
    /// A waiting thread is the watcher.
    watcher: bool,
    /// The watcher sleeps until a request starts (none was running).
    watcher_asleep: bool,
    /// The job source ended (shutdown): every thread leaves.
    closed: bool,
    /// The recent requests' average duration, in ns (each new one weighs 1/8; 0: none yet).
    recent_ns: u64,
    /// The recent requests are short (below [`SHORT`] on average, until above twice that).
    short: bool,
}

impl State {
    /// Counts a request that took `took` into the recent average.
    fn record(&mut self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // The first request is the average so far.
        self.recent_ns =
            if self.recent_ns == 0 { ns } else { self.recent_ns - self.recent_ns / 8 + ns / 8 };
        let short = u64::try_from(SHORT.as_nanos()).unwrap_or(u64::MAX);
        self.short = if self.short { self.recent_ns < 2 * short } else { self.recent_ns < short };
    }

    /// Holders inside a request.
    fn busy(&self) -> usize {
        self.started.iter().flatten().count()
    }

    /// Whether a holder other than the one in `seat` can take the next request: one is free, or
    /// every other request in progress is younger than [`STALL`].
    fn others_serve(&self, seat: usize, now: Instant) -> bool {
        self.holders > self.busy() + 1
            || self.started.iter().enumerate().all(|(i, started)| {
                i == seat || started.is_none_or(|t| now.saturating_duration_since(t) < STALL)
            })
    }
}

/// One app thread's place at a [`Gate`]: it takes the thread's jobs through [`Seat::next`].
/// Dropped (the thread ends, or unwinds out of a request), it gives its place back.
#[derive(Debug)]
pub struct Seat<'g> {
    gate: &'g Gate,
    index: usize,
    holder: bool,
}

impl Gate {
    /// A gate for `threads` app threads; `serialized` is the application's
    /// [`serializes_threads`](wsgi_core::Application::serializes_threads).
    #[must_use]
    pub fn new(threads: usize, serialized: bool) -> Gate {
        Gate {
            threads: threads.max(1),
            serialized: serialized && threads > 1,
            state: Mutex::new(State::default()),
            prompt_not_short: AtomicBool::new(false),
            watch: Condvar::new(),
            wait: Condvar::new(),
        }
    }

    /// The least number of holders now: two while requests are short (see the module docs).
    fn least_holders(&self, st: &State) -> usize {
        if st.short { 2.min(self.threads) } else { 1 }
    }

    /// Whether one holder takes the requests, which are prompt but not short: the application
    /// serializes its threads and its recent requests, each less its time in [`in_io`],
    /// averaged between [`SHORT`] and [`STALL`]. The holder's own socket writes then delay the
    /// next request: every write that wakes a sleeping client costs the writer a wake-up (some
    /// 15 µs on a small VM), during which the application waits. A driver can hold a finished
    /// response while more requests are waiting, to write several at once, as adapter-std
    /// does. Longer requests gain nothing from that (the wake-up is a small part of them), while
    /// a held response waits and is lost with the process if it dies.
    #[must_use]
    pub fn solo(&self) -> bool {
        self.serialized && self.prompt_not_short.load(Ordering::Relaxed)
    }

    /// A place for one app thread.
    pub fn seat(&self) -> Seat<'_> {
        let mut st = self.lock();
        st.started.push(None);
        Seat { gate: self, index: st.started.len() - 1, holder: false }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the thread in `seat` becomes a holder; `None` once the gate is closed.
    fn admit<'a>(&self, mut st: MutexGuard<'a, State>) -> Option<MutexGuard<'a, State>> {
        loop {
            if st.closed {
                return None;
            }
            if st.holders < self.least_holders(&st) {
                break;
            }
            if st.watcher {
                st = self.wait.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.watcher = true;
            let stalled;
            (st, stalled) = self.watch_holders(st);
            st.watcher = false;
            st.watcher_asleep = false;
            self.wait.notify_one(); // the next watcher
            if stalled {
                break;
            }
        }
        st.holders += 1;
        Some(st)
    }

    /// The watcher's loop: `true` when every holder has been inside a request for [`STALL`]
    /// with none finished (a thread must join them), `false` when the gate closed.
    fn watch_holders<'a>(&self, mut st: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, bool) {
        let wait = |g, timeout: Option<Duration>| match timeout {
            None => self.watch.wait(g).unwrap_or_else(PoisonError::into_inner),
            Some(t) => self.watch.wait_timeout(g, t).unwrap_or_else(PoisonError::into_inner).0,
        };
        loop {
            if st.closed {
                return (st, false);
            }
            if st.holders < self.least_holders(&st) {
                return (st, true);
            }
            if st.busy() == 0 {
                st.watcher_asleep = true;
                st = wait(st, None);
                continue;
            }
            if st.busy() < st.holders {
                // A holder is free: it takes what comes. Look again later.
                st = wait(st, Some(RELAXED));
                continue;
            }
            // Every holder is inside a request: does one finish within STALL?
            let (seen, since) = (st.finished, Instant::now());
            loop {
                let left = STALL.saturating_sub(since.elapsed());
                if st.closed || st.finished != seen || st.busy() < st.holders || left.is_zero() {
                    break;
                }
                st = wait(st, Some(left));
            }
            if !st.closed
                && st.finished == seen
                && st.busy() >= st.holders
                && st.holders < self.threads
            {
                return (st, true);
            }
        }
    }
}

impl Seat<'_> {
    /// The thread's next job, from `take` once the thread may take requests. Call it from an
    /// app thread's job source: each call also ends the thread's previous request. `None`
    /// (from `take`, or because `take` returned `None` on another thread) ends the thread.
    pub fn next<T>(&mut self, take: &mut dyn FnMut() -> Option<T>) -> Option<T> {
        let gate = self.gate;
        if !gate.serialized {
            return take();
        }
        let mut st = gate.lock();
        self.finish(&mut st);
        if !self.holder {
            st = gate.admit(st)?;
            self.holder = true;
        }
        drop(st);
        let job = take();
        let mut st = gate.lock();
        let Some(job) = job else {
            st.closed = true;
            st.holders -= 1;
            self.holder = false;
            gate.watch.notify_all();
            gate.wait.notify_all();
            return None;
        };
        st.started[self.index] = Some(Instant::now());
        IO_TIME.with(|io| io.set(Duration::ZERO));
        // A request runs: a watcher asleep (none did) starts watching.
        if std::mem::take(&mut st.watcher_asleep) {
            gate.watch.notify_one();
        }
        Some(job)
    }

    /// Ends the thread's request, if it is in one; a prompt one while another holder can serve
    /// makes the thread wait again.
    fn finish(&mut self, st: &mut State) {
        let Some(started) = st.started[self.index].take() else { return };
        let now = Instant::now();
        st.finished += 1;
        let took = now.saturating_duration_since(started);
        let prompt = took < STALL;
        let gate = self.gate;
        st.record(took.saturating_sub(IO_TIME.with(Cell::take)));
        let stall = u64::try_from(STALL.as_nanos()).unwrap_or(u64::MAX);
        gate.prompt_not_short.store(!st.short && st.recent_ns < stall, Ordering::Relaxed);
        let least = gate.least_holders(st);
        if self.holder && st.holders > least && prompt && st.others_serve(self.index, now) {
            st.holders -= 1;
            self.holder = false;
        }
        if st.holders < least {
            // Requests turned short: the watcher brings in the second holder.
            gate.watch.notify_one();
        }
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if !self.gate.serialized {
            return;
        }
        let mut st = self.gate.lock();
        st.started[self.index] = None;
        if std::mem::take(&mut self.holder) {
            st.holders -= 1;
            // The watcher may now find the holders left all stalled.
            self.gate.watch.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;

    use super::*;

    /// What [`run`] saw.
    struct Ran {
        /// The most threads inside a job at once.
        most: usize,
        /// Jobs served by each thread.
        per_thread: Vec<usize>,
        /// When each job finished, by its place in the queue.
        finished: Vec<Duration>,
    }

    /// The timed runs below, one at a time. Side by side on a 2-core machine they preempt each
    /// other's threads for longer than [`STALL`], which brings in holders the assertions count
    /// (a fresh-clone CI run saw 842 and 1,155 of 2,000 prompt requests on two threads).
    static TIMED: Mutex<()> = Mutex::new(());

    fn timed() -> MutexGuard<'static, ()> {
        TIMED.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `threads` app threads through a gate over a queue of `jobs` jobs, job `i` taking
    /// `work(i)`.
    fn run(threads: usize, serialized: bool, jobs: usize, work: fn(usize) -> Duration) -> Ran {
        let _timed = timed();
        let gate = Arc::new(Gate::new(threads, serialized));
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..jobs {
            tx.send(i).unwrap();
        }
        drop(tx);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(Mutex::new(vec![Duration::ZERO; jobs]));
        let started = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (gate, rx) = (gate.clone(), rx.clone());
                let (inside, most, finished) = (inside.clone(), most.clone(), finished.clone());
                thread::spawn(move || {
                    let mut seat = gate.seat();
                    let mut take = || rx.recv().ok();
                    let mut served = 0;
                    while let Some(i) = seat.next(&mut take) {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(work(i));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        finished.lock().unwrap()[i] = started.elapsed();
                        served += 1;
                    }
                    served
                })
            })
            .collect();
        let per_thread: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(per_thread.iter().sum::<usize>(), jobs, "every job was served");
        let finished = finished.lock().unwrap().clone();
        Ran { most: most.load(Ordering::SeqCst), per_thread, finished }
    }

    #[test]
    fn prompt_requests_are_served_by_one_thread_at_a_time() {
        // Prompt (under STALL) but not short (over twice SHORT): one holder.
        let ran = run(4, true, 2000, |_| 3 * SHORT);
        // A thread preempted inside a job for over STALL brings in a second one for a while.
        assert!(ran.most <= 2, "{}", ran.most);
        let top = ran.per_thread.iter().max().copied().unwrap_or(0);
        assert!(top >= 1500, "{:?}", ran.per_thread);
        // Short ones: a pair at most (and another only for a preempted one).
        let ran = run(4, true, 2000, |_| Duration::ZERO);
        assert!(ran.most <= 3, "{}", ran.most);
    }

    #[test]
    fn the_recent_average_decides_whether_requests_are_short() {
        let mut st = State::default();
        let us = Duration::from_micros;
        st.record(us(100));
        assert!(!st.short, "one long request");
        for _ in 0..40 {
            st.record(us(5));
        }
        assert!(st.short, "{} ns", st.recent_ns);
        // Between SHORT and twice it: still short (no flapping at the line).
        for _ in 0..40 {
            st.record(us(30));
        }
        assert!(st.short, "{} ns", st.recent_ns);
        for _ in 0..40 {
            st.record(us(60));
        }
        assert!(!st.short, "{} ns", st.recent_ns);
        for _ in 0..40 {
            st.record(us(30));
        }
        assert!(!st.short, "{} ns: the pair forms again only under SHORT", st.recent_ns);
    }

    /// Two threads; the first serves requests that each take `took` (in [`in_io`] if `io`) and
    /// then waits for more. Whether the second becomes a holder with no request running: the
    /// pair forms after short requests, never after longer ones (there the second waits until
    /// a request stalls). Also returns what [`Gate::solo`] said then.
    fn second_holder_after(took: Duration, io: bool) -> (usize, bool) {
        let _timed = timed();
        let gate = Arc::new(Gate::new(2, true));
        let (tx, rx) = crossbeam_channel::unbounded();
        // Enough that a request preempted on a busy machine leaves the average short again.
        const JOBS: u64 = 64;
        for _ in 0..JOBS {
            tx.send(()).unwrap();
        }
        // An app thread: serves until the queue closes; returns how many it served.
        let serve = || {
            let mut seat = gate.seat();
            let mut served = 0;
            while seat.next(&mut || rx.recv().ok()).is_some() {
                let spin = || {
                    let start = Instant::now();
                    while start.elapsed() < took {
                        std::hint::spin_loop();
                    }
                };
                if io {
                    in_io(spin)
                } else {
                    spin()
                }
                served += 1;
            }
            served
        };
        thread::scope(|scope| {
            let first = scope.spawn(serve);
            // The first thread has served them all and waits in `take` (the queue is empty).
            while !rx.is_empty() || gate.lock().busy() > 0 || gate.lock().finished < JOBS {
                thread::sleep(Duration::from_millis(1));
            }
            let second = scope.spawn(serve);
            let deadline = Instant::now() + Duration::from_millis(300);
            while gate.lock().holders < 2 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            let (holders, solo) = (gate.lock().holders, gate.solo());
            drop(tx); // both leave
            assert_eq!(first.join().unwrap() + second.join().unwrap(), JOBS);
            (holders, solo)
        })
    }

    #[test]
    fn short_requests_bring_in_a_second_holder_and_longer_prompt_ones_do_not() {
        assert_eq!(second_holder_after(Duration::ZERO, false), (2, false));
        // Prompt (under STALL) but not short: one holder serves them all.
        assert_eq!(second_holder_after(4 * SHORT, false), (1, true));
    }

    #[test]
    fn time_in_io_does_not_make_a_request_long() {
        // The same requests, their time spent in the driver's I/O: short, so a pair.
        assert_eq!(second_holder_after(4 * SHORT, true), (2, false));
        // The count is per request: the next one starts from nothing.
        in_io(|| thread::sleep(4 * SHORT));
        assert!(IO_TIME.with(Cell::get) >= 4 * SHORT);
        let gate = Gate::new(2, true);
        let mut seat = gate.seat();
        assert_eq!(seat.next(&mut || Some(())), Some(()));
        assert_eq!(IO_TIME.with(Cell::get), Duration::ZERO);
    }

    #[test]
    fn only_a_serializing_gate_with_threads_to_spare_is_ever_solo() {
        // Before any request: not yet known to be prompt.
        assert!(!Gate::new(4, true).solo());
        // Every thread takes requests, or there is only one: nothing to hold a response for.
        assert!(!Gate::new(4, false).solo());
        assert!(!Gate::new(1, true).solo());
    }

    #[test]
    fn requests_longer_than_a_stall_are_not_solo() {
        let gate = Gate::new(4, true);
        let mut jobs = 3;
        let mut seat = gate.seat();
        while seat.next(&mut || (jobs > 0).then(|| jobs -= 1)).is_some() {
            thread::sleep(2 * STALL);
        }
        drop(seat);
        let st = gate.lock();
        assert!(st.recent_ns >= 2 * u64::try_from(STALL.as_nanos()).unwrap(), "{}", st.recent_ns);
        drop(st);
        assert!(!gate.solo());
    }

    #[test]
    fn requests_that_block_bring_in_the_other_threads() {
        // 40 requests of 30 ms each: one thread alone would take 1.2 s.
        let ran = run(4, true, 40, |_| Duration::from_millis(30));
        assert_eq!(ran.most, 4);
        let last = ran.finished.iter().max().copied().unwrap_or_default();
        assert!(last < Duration::from_millis(900), "{last:?}");
    }

    #[test]
    fn one_long_request_does_not_slow_the_prompt_ones() {
        // The first request takes 400 ms; the 300 after it none. A thread that joins for them
        // stays until the long one ends: the prompt ones do not wait a STALL each.
        let ran =
            run(4, true, 301, |i| if i == 0 { Duration::from_millis(400) } else { Duration::ZERO });
        let prompt_done = ran.finished[1..].iter().max().copied().unwrap_or_default();
        assert!(prompt_done < Duration::from_millis(200), "{prompt_done:?}");
        assert!(ran.finished[0] >= Duration::from_millis(400));
    }

    #[test]
    fn without_serialization_every_thread_takes_requests() {
        assert_eq!(run(4, false, 40, |_| Duration::from_millis(30)).most, 4);
    }

    #[test]
    fn the_end_of_the_job_source_ends_every_thread() {
        // No jobs at all: one holder sees the end, the waiting threads leave with it.
        assert_eq!(run(4, true, 0, |_| Duration::ZERO).most, 0);
    }

    #[test]
    fn a_thread_that_unwinds_out_of_a_request_gives_its_place_back() {
        let gate = Gate::new(2, true);
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..3 {
            tx.send(()).unwrap();
        }
        drop(tx);
        thread::scope(|scope| {
            // A thread that panics inside its first request.
            let crashed = scope.spawn(|| {
                let mut seat = gate.seat();
                let _job = seat.next(&mut || rx.recv().ok());
                panic!("a bug inside a request");
            });
            assert!(crashed.join().is_err());
            let st = gate.lock();
            assert_eq!((st.busy(), st.holders), (0, 0));
        });
        // The other thread serves the rest.
        let mut seat = gate.seat();
        let mut served = 0;
        while seat.next(&mut || rx.recv().ok()).is_some() {
            served += 1;
        }
        assert_eq!(served, 2);
    }
}
