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
//! One waiting thread, the *watcher*, checks every [`STALL`] while requests run; the others
//! sleep until the watcher becomes a holder and hands its role on. With no request running,
//! the watcher sleeps too, until one starts: an idle server wakes no thread.
//!
//! [`Application::serializes_threads`]: wsgi_core::Application::serializes_threads

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wsgi_core::Job;

/// How long the holders may all be inside requests, none finishing, before another thread
/// starts taking requests.
pub const STALL: Duration = Duration::from_millis(1);

/// Admits an application's threads to take requests (see the module docs).
#[derive(Debug)]
pub struct Gate {
    /// At most this many holders (the app threads).
    threads: usize,
    /// `false`: every thread takes requests whenever it is free (the gate does nothing).
    serialized: bool,
    state: Mutex<State>,
    /// The watcher waits here.
    watch: Condvar,
    /// The other waiting threads wait here.
    wait: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Threads that take requests.
    holders: usize,
    /// Holders inside a request.
    busy: usize,
    /// Requests finished.
    finished: u64,
    /// A waiting thread is the watcher.
    watcher: bool,
    /// The watcher sleeps until a request starts (none was running).
    watcher_asleep: bool,
    /// The job source ended (shutdown): every thread leaves.
    closed: bool,
}

/// One app thread's place at the [`Gate`].
#[derive(Debug, Default)]
pub struct Seat {
    holder: bool,
    /// When the thread's current request started.
    started: Option<Instant>,
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
            watch: Condvar::new(),
            wait: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next job for the thread in `seat`, from `take` once the thread may take requests.
    /// Call it from an app thread's job source: each call also ends the thread's previous
    /// request. `None` (from `take`, or because `take` returned `None` on another thread) ends
    /// the thread.
    pub fn next(&self, seat: &mut Seat, take: &mut dyn FnMut() -> Option<Job>) -> Option<Job> {
        if !self.serialized {
            return take();
        }
        let mut st = self.lock();
        if let Some(started) = seat.started.take() {
            st.busy -= 1;
            st.finished += 1;
            if st.holders > 1 && started.elapsed() < STALL {
                st.holders -= 1;
                seat.holder = false;
            }
        }
        if !seat.holder {
            st = self.admit(st, seat)?;
        }
        drop(st);
        let job = take();
        let mut st = self.lock();
        if job.is_none() {
            st.closed = true;
            st.holders -= 1;
            seat.holder = false;
            self.watch.notify_all();
            self.wait.notify_all();
            return None;
        }
        st.busy += 1;
        if st.watcher_asleep {
            st.watcher_asleep = false;
            self.watch.notify_one();
        }
        seat.started = Some(Instant::now());
        job
    }

    /// Waits until the thread in `seat` becomes a holder; `None` once the gate is closed.
    fn admit<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        seat: &mut Seat,
    ) -> Option<MutexGuard<'a, State>> {
        loop {
            if st.closed {
                return None;
            }
            if st.holders == 0 {
                break;
            }
            if st.watcher {
                st = self.wait.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // The watcher: while requests run, checks every STALL whether they all stalled.
            st.watcher = true;
            let stalled = loop {
                if st.closed {
                    break false;
                }
                if st.busy == 0 {
                    st.watcher_asleep = true;
                    st = self.watch.wait(st).unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                // Requests run: has one finished within STALL?
                let (seen, since) = (st.finished, Instant::now());
                loop {
                    let left = STALL.saturating_sub(since.elapsed());
                    if st.closed || st.finished != seen || st.busy == 0 || left.is_zero() {
                        break;
                    }
                    st =
                        self.watch.wait_timeout(st, left).unwrap_or_else(PoisonError::into_inner).0;
                }
                if !st.closed
                    && st.finished == seen
                    && st.busy >= st.holders
                    && st.holders < self.threads
                {
                    break true;
                }
            };
            st.watcher = false;
            st.watcher_asleep = false;
            self.wait.notify_one(); // the next watcher
            if stalled {
                break;
            }
        }
        st.holders += 1;
        seat.holder = true;
        Some(st)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use wsgi_core::{AppIo, AppIoError, Config, Connection, Environ, Event, ResponseHead};

    use super::*;

    struct NoIo;

    impl AppIo for NoIo {
        fn read_body(&mut self) -> Result<Option<bytes::Bytes>, AppIoError> {
            Ok(None)
        }
        fn send_head(&mut self, _: &ResponseHead) -> Result<(), AppIoError> {
            Ok(())
        }
        fn send_body(&mut self, _: &[u8]) -> Result<(), AppIoError> {
            Ok(())
        }
        fn send_end(&mut self) -> Result<(), AppIoError> {
            Ok(())
        }
        fn abort(&mut self) {}
    }

    fn job() -> Job {
        let now = Instant::now();
        let mut conn = Connection::new(Config::default(), now);
        conn.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        let Ok(Some(Event::Request(head))) = conn.poll_event() else { panic!("no request") };
        Job { environ: Environ::new(&head, &Default::default()), io: Box::new(NoIo) }
    }

    /// Runs `threads` app threads through a gate over a queue of `jobs` jobs, each running
    /// `work`; returns the most threads that were inside a job at once.
    fn run(threads: usize, serialized: bool, jobs: usize, work: Duration) -> usize {
        let gate = Arc::new(Gate::new(threads, serialized));
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..jobs {
            tx.send(job()).unwrap();
        }
        drop(tx);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (gate, rx) = (gate.clone(), rx.clone());
                let (inside, most, done) = (inside.clone(), most.clone(), done.clone());
                thread::spawn(move || {
                    let mut seat = Seat::default();
                    let mut take = || rx.recv().ok();
                    while let Some(_job) = gate.next(&mut seat, &mut take) {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(work);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), jobs, "every job was served");
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn prompt_requests_are_served_by_one_thread_at_a_time() {
        assert_eq!(run(4, true, 2000, Duration::ZERO), 1);
    }

    #[test]
    fn requests_that_block_bring_in_the_other_threads() {
        // 40 requests of 30 ms each: one thread alone would take 1.2 s.
        let started = Instant::now();
        assert_eq!(run(4, true, 40, Duration::from_millis(30)), 4);
        assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    }

    #[test]
    fn without_serialization_every_thread_takes_requests() {
        assert_eq!(run(4, false, 40, Duration::from_millis(30)), 4);
    }

    #[test]
    fn the_end_of_the_job_source_ends_every_thread() {
        // No jobs at all: one holder sees the end, the waiting threads leave with it.
        assert_eq!(run(4, true, 0, Duration::ZERO), 0);
    }
}
