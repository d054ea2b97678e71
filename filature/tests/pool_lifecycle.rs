//! ThreadPool life cycle: start, on-demand threads, stop (drains, joins, idempotent, with a
//! timeout that names stuck jobs), and refusing work after stop.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, thread_name};
use filature::pool::{PoolStats, ThreadPool};

#[test]
fn invalid_sizes_are_rejected() {
    let err = ThreadPool::new(4, 2).unwrap_err();
    assert_eq!((err.min, err.max), (4, 2));
    assert!(err.to_string().contains("min 4, max 2"));
    assert!(ThreadPool::new(0, 0).is_err());
    assert!(ThreadPool::new(0, 1).is_ok());
    assert!(ThreadPool::new(1, 1)
        .unwrap()
        .adjust_pool_size(2, 1)
        .is_err());
}

#[test]
fn start_creates_min_threads_at_once() {
    let pool = ThreadPool::with_name("three", 3, 10).unwrap();
    assert_eq!(pool.stats().workers, 0, "no threads before start");
    pool.start().unwrap();
    assert_eq!(
        pool.stats(),
        PoolStats {
            workers: 3,
            busy: 0,
            idle: 3,
            backlog: 0
        }
    );
    pool.start().unwrap(); // a second start is a no-op
    assert_eq!(pool.stats().workers, 3);

    // All three really exist and are named after the pool: three jobs meeting at a barrier.
    let barrier = Arc::new(Barrier::new(3));
    let names = Arc::new(Mutex::new(HashSet::new()));
    for _ in 0..3 {
        let (barrier, names) = (barrier.clone(), names.clone());
        pool.call_in_thread(move || {
            names.lock().unwrap().insert(thread_name());
            barrier.wait();
        })
        .unwrap();
    }
    pool.stop();
    let names = names.lock().unwrap();
    let expected: HashSet<String> = (1..=3)
        .map(|n| format!("filature-pool-three-{n}"))
        .collect();
    assert_eq!(*names, expected);
    assert_eq!(pool.stats().workers, 0);
}

#[test]
fn min_zero_makes_no_threads_until_work_arrives() {
    let pool = ThreadPool::new(0, 5).unwrap();
    pool.start().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(pool.stats().workers, 0);
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread(move || tx.send(thread_name()).unwrap())
        .unwrap();
    assert!(pool.stats().workers >= 1, "the job started a worker");
    assert!(rx.recv().unwrap().starts_with("filature-pool-"));
    pool.stop();
}

#[test]
fn work_queued_before_start_waits_then_gets_max_threads() {
    const JOBS: usize = 50;
    let pool = ThreadPool::with_name("fifty", 0, 10).unwrap();
    // Every job meets nine others at a barrier, so the batch can only finish if ten workers are
    // alive at once.
    let barrier = Arc::new(Barrier::new(10));
    let ran = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(Mutex::new(HashSet::new()));
    for _ in 0..JOBS {
        let (barrier, ran, names) = (barrier.clone(), ran.clone(), names.clone());
        pool.call_in_thread(move || {
            names.lock().unwrap().insert(thread_name());
            barrier.wait();
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        pool.stats(),
        PoolStats {
            workers: 0,
            busy: 0,
            idle: 0,
            backlog: JOBS
        }
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0, "nothing runs before start");

    pool.start().unwrap();
    assert_eq!(
        pool.stats().workers,
        10,
        "start serves the backlog up to max"
    );
    assert!(eventually(|| ran.load(Ordering::SeqCst) == JOBS));
    assert_eq!(
        names.lock().unwrap().len(),
        10,
        "exactly ten threads ran the jobs"
    );
    pool.stop();
    assert_eq!(ran.load(Ordering::SeqCst), JOBS);
}

#[test]
fn stop_runs_everything_queued_and_joins() {
    // Started, one worker, a backlog behind a slow first job.
    let pool = ThreadPool::new(1, 1).unwrap();
    pool.start().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    pool.call_in_thread(|| std::thread::sleep(Duration::from_millis(30)))
        .unwrap();
    for _ in 0..100 {
        let ran = ran.clone();
        pool.call_in_thread(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    pool.stop();
    assert_eq!(ran.load(Ordering::SeqCst), 100);
    assert_eq!(pool.stats(), PoolStats::default());

    // Never started: stop still runs the queued work.
    let pool = ThreadPool::new(0, 3).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        let ran = ran.clone();
        pool.call_in_thread(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    pool.stop();
    assert_eq!(ran.load(Ordering::SeqCst), 20);
}

#[test]
fn submitting_after_stop_is_an_error() {
    let pool = ThreadPool::with_name("closed", 1, 2).unwrap();
    pool.start().unwrap();
    pool.stop();
    let err = pool.call_in_thread(|| panic!("must not run")).unwrap_err();
    assert!(err.what.contains("closed"), "{err}");
    assert!(pool
        .call_in_thread_named("late", || panic!("must not run"))
        .is_err());
    assert!(pool
        .call_in_thread_cancellable(|| panic!("must not run"))
        .is_err());
    assert!(pool
        .call_in_thread_with_callback(|_r: Result<(), filature::Failure>| panic!("no"), || ())
        .is_err());
    assert!(pool.start().is_err());
    assert_eq!(pool.stats().backlog, 0);
}

#[test]
fn second_stop_is_a_no_op() {
    let pool = ThreadPool::new(2, 2).unwrap();
    pool.start().unwrap();
    pool.stop();
    let t0 = Instant::now();
    pool.stop();
    pool.stop_timeout(Duration::from_millis(1)).unwrap();
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert_eq!(pool.stats().workers, 0);
}

#[test]
fn stop_timeout_names_the_stuck_job() {
    let pool = ThreadPool::with_name("stuck", 2, 2).unwrap();
    pool.start().unwrap();
    let (release, gate) = mpsc::channel::<()>();
    let job = pool
        .call_in_thread_named("waits-forever", move || {
            let _ = gate.recv();
        })
        .unwrap();
    assert!(eventually(|| pool.stats().busy == 1));

    let t0 = Instant::now();
    let err = pool.stop_timeout(Duration::from_millis(100)).unwrap_err();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(100),
        "returned early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "returned late: {waited:?}");
    assert_eq!(err.stuck().len(), 1);
    let stuck = &err.stuck()[0];
    assert_eq!(stuck.job_name(), Some("waits-forever"));
    assert_eq!(stuck.job_id(), job.id());
    assert!(
        stuck.thread_name().starts_with("filature-pool-stuck-"),
        "{}",
        stuck.thread_name()
    );
    assert!(err.to_string().contains("waits-forever"), "{err}");

    // The pool is stopping: new work is refused, and a later stop finishes once released.
    assert!(pool.call_in_thread(|| ()).is_err());
    drop(release);
    pool.stop();
    assert_eq!(pool.stats().workers, 0);
}

#[test]
fn stop_from_inside_a_worker_does_not_deadlock() {
    let pool = Arc::new(ThreadPool::new(2, 2).unwrap());
    pool.start().unwrap();
    let (tx, rx) = mpsc::channel();
    let inner = pool.clone();
    pool.call_in_thread(move || {
        inner.stop();
        tx.send(inner.call_in_thread(|| ()).is_err()).unwrap();
    })
    .unwrap();
    assert!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "work refused after stop"
    );
    pool.stop();
    assert!(eventually(|| pool.stats().workers == 0));
}

#[test]
fn dropping_the_pool_still_runs_queued_work() {
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let pool = ThreadPool::new(0, 2).unwrap();
        for _ in 0..10 {
            let ran = ran.clone();
            pool.call_in_thread(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
    }
    assert!(eventually(|| ran.load(Ordering::SeqCst) == 10));
}
