//! A quick throughput check: 1,000,000 tiny jobs through `ThreadPool::call_in_thread` with two
//! workers, against a pair of threads draining a crossbeam-channel of boxed jobs.
//!
//! Ignored by default; run it in release mode:
//! `cargo test -p filature --release --test pool_perf -- --ignored --nocapture`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use filature::pool::ThreadPool;

const JOBS: usize = 1_000_000;

type Job = Box<dyn FnOnce() + Send>;

fn run_pool() -> Duration {
    let pool = ThreadPool::new(2, 2).unwrap();
    pool.start().unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    for _ in 0..JOBS {
        let c = counter.clone();
        pool.call_in_thread(move || {
            c.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    pool.stop();
    let elapsed = t0.elapsed();
    assert_eq!(counter.load(Ordering::Relaxed), JOBS);
    elapsed
}

fn run_crossbeam_pair() -> Duration {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                for job in rx {
                    job();
                }
            })
        })
        .collect();
    let counter = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    for _ in 0..JOBS {
        let c = counter.clone();
        tx.send(Box::new(move || {
            c.fetch_add(1, Ordering::Relaxed);
        }))
        .unwrap();
    }
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = t0.elapsed();
    assert_eq!(counter.load(Ordering::Relaxed), JOBS);
    elapsed
}

#[test]
#[ignore = "throughput measurement; run in release with --ignored"]
fn million_tiny_jobs_against_a_crossbeam_pair() {
    let mut pool_best = Duration::MAX;
    let mut pair_best = Duration::MAX;
    for _ in 0..5 {
        pool_best = pool_best.min(run_pool());
        pair_best = pair_best.min(run_crossbeam_pair());
    }
    let ratio = pair_best.as_secs_f64() / pool_best.as_secs_f64();
    println!(
        "pool: {pool_best:?}  crossbeam pair: {pair_best:?}  pool speed = {ratio:.2}x the pair"
    );
}
