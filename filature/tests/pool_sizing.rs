//! ThreadPool sizing: shrinking under a backlog, growing, idle retirement, consistent stats.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use common::eventually;
use filature::pool::ThreadPool;

/// Twisted's trap: after shrinking 10 → 2 under a backlog, all ten threads kept running until
/// the backlog drained. Here concurrency drops to 2 as soon as the running jobs end.
#[test]
fn shrinking_under_a_backlog_caps_concurrency_at_once() {
    let pool = ThreadPool::new(10, 10).unwrap();
    pool.start().unwrap();

    // Ten blockers occupy every worker.
    let (release, gate) = crossbeam_channel::unbounded::<()>();
    let entered = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let (gate, entered) = (gate.clone(), entered.clone());
        pool.call_in_thread(move || {
            entered.fetch_add(1, Ordering::SeqCst);
            let _ = gate.recv();
        })
        .unwrap();
    }
    assert!(eventually(|| entered.load(Ordering::SeqCst) == 10));

    // A backlog of measured jobs.
    const MEASURED: usize = 40;
    let current = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..MEASURED {
        let (current, max_seen, done) = (current.clone(), max_seen.clone(), done.clone());
        pool.call_in_thread(move || {
            let now = current.fetch_add(1, Ordering::SeqCst) + 1;
            max_seen.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            current.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    assert_eq!(pool.stats().backlog, MEASURED);

    pool.adjust_pool_size(2, 2).unwrap();
    drop(release); // the blockers end
    assert!(eventually(|| done.load(Ordering::SeqCst) == MEASURED));
    assert_eq!(
        max_seen.load(Ordering::SeqCst),
        2,
        "concurrency after the shrink"
    );
    assert_eq!(pool.stats().workers, 2);
    pool.stop();
}

#[test]
fn shrinking_retires_idle_workers_at_once() {
    let pool = ThreadPool::new(6, 6).unwrap();
    pool.start().unwrap();
    assert_eq!(pool.stats().workers, 6);
    pool.adjust_pool_size(1, 3).unwrap();
    assert!(
        eventually(|| pool.stats().workers == 3),
        "{:?}",
        pool.stats()
    );
    pool.stop();
}

#[test]
fn growing_adds_threads_at_once() {
    let pool = ThreadPool::new(1, 1).unwrap();
    pool.start().unwrap();
    // One blocker plus a backlog of four blockers: after growing to max 5 all five run together.
    let barrier = Arc::new(Barrier::new(5));
    let (tx, rx) = mpsc::channel();
    for _ in 0..5 {
        let (barrier, tx) = (barrier.clone(), tx.clone());
        pool.call_in_thread(move || {
            barrier.wait();
            tx.send(()).unwrap();
        })
        .unwrap();
    }
    assert_eq!(pool.stats().workers, 1);
    pool.adjust_pool_size(2, 5).unwrap();
    assert_eq!(pool.stats().workers, 5, "backlog served up to max at once");
    for _ in 0..5 {
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }
    // Growing min with no backlog still brings the pool up to min.
    pool.adjust_pool_size(7, 8).unwrap();
    assert_eq!(pool.stats().workers, 7);
    pool.stop();
}

#[test]
fn idle_workers_above_min_retire_after_the_idle_timeout() {
    let pool = ThreadPool::builder()
        .min(1)
        .max(4)
        .idle_timeout(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    pool.start().unwrap();
    let barrier = Arc::new(Barrier::new(4));
    for _ in 0..4 {
        let barrier = barrier.clone();
        pool.call_in_thread(move || {
            barrier.wait();
        })
        .unwrap();
    }
    assert_eq!(pool.stats().workers, 4);
    assert!(eventually(|| pool.stats().busy == 0));
    let idle_since = Instant::now();
    assert!(
        eventually(|| pool.stats().workers == 1),
        "{:?}",
        pool.stats()
    );
    assert!(
        idle_since.elapsed() >= Duration::from_millis(80),
        "retired before the timeout"
    );
    // The min worker stays.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pool.stats().workers, 1);
    // And the pool still grows again on demand.
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread(move || tx.send(()).unwrap()).unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    pool.stop();
}

#[test]
fn lowering_min_lets_surplus_idle_workers_retire() {
    let pool = ThreadPool::builder()
        .min(4)
        .max(4)
        .idle_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    pool.start().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pool.stats().workers, 4, "workers at min never retire");
    pool.adjust_pool_size(1, 4).unwrap();
    assert!(
        eventually(|| pool.stats().workers == 1),
        "{:?}",
        pool.stats()
    );
    pool.stop();
}

#[test]
fn stats_are_consistent_under_load() {
    let pool = Arc::new(ThreadPool::new(2, 8).unwrap());
    pool.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut samples = 0usize;
            let mut saw_busy = false;
            while !stop.load(Ordering::SeqCst) || samples < 10_000 {
                let s = pool.stats();
                assert_eq!(s.workers, s.busy + s.idle, "inconsistent snapshot {s:?}");
                assert!(s.workers <= 8, "{s:?}");
                saw_busy |= s.busy > 0;
                samples += 1;
            }
            (samples, saw_busy)
        })
    };
    let ran = Arc::new(AtomicUsize::new(0));
    for i in 0..20_000 {
        let ran = ran.clone();
        pool.call_in_thread(move || {
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            ran.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    assert!(eventually(|| ran.load(Ordering::Relaxed) == 20_000));
    stop.store(true, Ordering::SeqCst);
    let (samples, saw_busy) = sampler.join().unwrap();
    assert!(samples >= 10_000);
    assert!(saw_busy, "the sampler saw the pool at work");
    pool.stop();
}
