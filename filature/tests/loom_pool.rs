//! Loom models of the thread pool's queue / wake / shrink / stop handshake, driving the real
//! `ThreadPool` (under `--cfg loom` its lock, condvars and worker threads are loom's).
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p filature --release --test loom_pool`
//!
//! The jobs report to a latch and the test waits on it *without* calling `stop`: if a worker could
//! sleep while a job it may run is queued, nothing would ever wake it and loom reports the
//! deadlock. Only then does the test stop the pool and check that every job ran exactly once.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use filature::pool::ThreadPool;

/// Counts finished jobs; `wait_for(n)` blocks (as a loom thread) until `n` have finished.
#[derive(Default)]
struct Latch {
    done: Mutex<usize>,
    cv: Condvar,
}

impl Latch {
    fn count(&self) {
        *self.done.lock().unwrap() += 1;
        self.cv.notify_all();
    }

    fn wait_for(&self, n: usize) {
        let mut done = self.done.lock().unwrap();
        while *done < n {
            done = self.cv.wait(done).unwrap();
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    // Enough to interleave every submit with every worker step; small enough to finish fast.
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn pool(min: usize, max: usize) -> ThreadPool {
    ThreadPool::builder()
        .min(min)
        .max(max)
        .idle_timeout(None)
        .build()
        .unwrap()
}

/// Submits a job that bumps `runs[i]` and counts down the latch.
fn submit(pool: &ThreadPool, runs: &Arc<[AtomicUsize; 2]>, latch: &Arc<Latch>, i: usize) -> bool {
    let (runs, latch) = (runs.clone(), latch.clone());
    pool.call_in_thread(move || {
        runs[i].fetch_add(1, Ordering::SeqCst);
        latch.count();
    })
    .is_ok()
}

/// Two submitters race one started worker (which may have to wake, or spawn a second worker up to
/// max 2) while the main thread shrinks the pool to max 1.
#[test]
fn two_submitters_one_worker_and_a_shrink() {
    model(|| {
        let pool = Arc::new(pool(1, 2));
        pool.start().unwrap();
        let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let latch = Arc::new(Latch::default());
        let submitters: Vec<_> = (0..2)
            .map(|i| {
                let (pool, runs, latch) = (pool.clone(), runs.clone(), latch.clone());
                thread::spawn(move || assert!(submit(&pool, &runs, &latch, i)))
            })
            .collect();
        pool.adjust_pool_size(0, 1).unwrap();
        for s in submitters {
            s.join().unwrap();
        }
        // No stop yet: the jobs must complete on their own (no lost wake-up).
        latch.wait_for(2);
        let stats = pool.stats();
        assert_eq!(stats.workers, stats.busy + stats.idle);
        assert_eq!(stats.backlog, 0);
        pool.stop();
        assert_eq!(runs[0].load(Ordering::SeqCst), 1);
        assert_eq!(runs[1].load(Ordering::SeqCst), 1);
        assert_eq!(pool.stats().workers, 0);
    });
}

/// A worker that has gone to sleep is woken by a later submit (the sleeper stack and the `woken`
/// flag), even when a shrink of `min` races with it.
#[test]
fn sleeping_worker_is_woken_by_a_later_submit() {
    model(|| {
        let pool = Arc::new(pool(1, 1));
        pool.start().unwrap();
        let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let latch = Arc::new(Latch::default());
        assert!(submit(&pool, &runs, &latch, 0));
        let shrinker = {
            let pool = pool.clone();
            thread::spawn(move || pool.adjust_pool_size(0, 1).unwrap())
        };
        latch.wait_for(1);
        assert!(submit(&pool, &runs, &latch, 1));
        latch.wait_for(2);
        shrinker.join().unwrap();
        pool.stop();
        assert_eq!(runs[0].load(Ordering::SeqCst), 1);
        assert_eq!(runs[1].load(Ordering::SeqCst), 1);
    });
}

/// Submits racing `stop`: each job is either refused (`Err(Stopped)`) or runs exactly once, and
/// `stop` returns only after every accepted job ran.
#[test]
fn submits_racing_stop_run_once_or_are_refused() {
    model(|| {
        let pool = Arc::new(pool(0, 1));
        pool.start().unwrap();
        let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let latch = Arc::new(Latch::default());
        let submitters: Vec<_> = (0..2)
            .map(|i| {
                let (pool, runs, latch) = (pool.clone(), runs.clone(), latch.clone());
                thread::spawn(move || submit(&pool, &runs, &latch, i))
            })
            .collect();
        pool.stop();
        let after_stop = [
            runs[0].load(Ordering::SeqCst),
            runs[1].load(Ordering::SeqCst),
        ];
        for (i, s) in submitters.into_iter().enumerate() {
            let accepted = s.join().unwrap();
            let ran = runs[i].load(Ordering::SeqCst);
            assert_eq!(
                ran,
                usize::from(accepted),
                "job {i}: accepted {accepted}, ran {ran}"
            );
            if accepted {
                // Accepted before stop began, so stop waited for it.
                assert_eq!(after_stop[i], 1, "job {i} ran after stop returned");
            }
        }
        assert_eq!(pool.stats().workers, 0);
    });
}

/// A shrink wakes a sleeper so that it retires; a job submitted meanwhile must not be stranded
/// behind it (the retiring worker hands the job to the next sleeper).
#[test]
fn a_worker_retiring_on_shrink_hands_queued_work_on() {
    model(|| {
        let pool = Arc::new(pool(2, 2));
        pool.start().unwrap();
        let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let latch = Arc::new(Latch::default());
        let submitter = {
            let (pool, runs, latch) = (pool.clone(), runs.clone(), latch.clone());
            thread::spawn(move || assert!(submit(&pool, &runs, &latch, 0)))
        };
        pool.adjust_pool_size(0, 1).unwrap();
        submitter.join().unwrap();
        latch.wait_for(1);
        pool.stop();
        assert_eq!(runs[0].load(Ordering::SeqCst), 1);
    });
}

/// Two started workers (each spins, then announces sleep and re-checks the queue) and two
/// submitters (a thread and the main thread): the lock-free submit path's leave against the
/// workers' sleep announcements and arrivals. Every job must run without a stop (no lost wake-up,
/// no job stranded behind a worker that went to sleep counting on another).
#[test]
fn two_workers_two_submitters_no_lost_wakeup() {
    model(|| {
        let pool = Arc::new(pool(2, 2));
        pool.start().unwrap();
        let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let latch = Arc::new(Latch::default());
        let submitter = {
            let (pool, runs, latch) = (pool.clone(), runs.clone(), latch.clone());
            thread::spawn(move || assert!(submit(&pool, &runs, &latch, 0)))
        };
        assert!(submit(&pool, &runs, &latch, 1));
        submitter.join().unwrap();
        latch.wait_for(2);
        let stats = pool.stats();
        assert_eq!((stats.workers, stats.backlog), (2, 0));
        pool.stop();
        assert_eq!(runs[0].load(Ordering::SeqCst), 1);
        assert_eq!(runs[1].load(Ordering::SeqCst), 1);
    });
}

/// A pool that never started, a submit racing `stop`: stop must wait out the submitter between
/// its enter and its leave, then start a worker for the job it pushed. The job runs once, before
/// stop returns, or is refused.
#[test]
fn stop_of_an_unstarted_pool_waits_for_a_submitter_in_flight() {
    model(|| {
        let pool = Arc::new(pool(0, 1));
        let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let latch = Arc::new(Latch::default());
        let submitter = {
            let (pool, runs, latch) = (pool.clone(), runs.clone(), latch.clone());
            thread::spawn(move || submit(&pool, &runs, &latch, 0))
        };
        pool.stop();
        let after_stop = runs[0].load(Ordering::SeqCst);
        let accepted = submitter.join().unwrap();
        assert_eq!(after_stop, usize::from(accepted), "accepted {accepted}");
        assert_eq!(pool.stats().workers, 0);
    });
}

/// A cancel racing the worker that pops the job: exactly one of them wins, and the backlog
/// count ends at zero either way.
#[test]
fn cancel_racing_a_worker_has_one_winner() {
    model(|| {
        let pool = Arc::new(pool(1, 1));
        pool.start().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let job = {
            let ran = ran.clone();
            pool.call_in_thread_cancellable(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        };
        let cancelled = job.cancel();
        pool.stop();
        assert_eq!(ran.load(Ordering::SeqCst), usize::from(!cancelled));
        assert_eq!(pool.stats().backlog, 0);
    });
}
