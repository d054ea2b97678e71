//! A profiling aid for the `pool` scenario: the same loop (one submitter, 2 workers, tiny jobs
//! that tick a shared counter) on one system at a time, so `perf stat`/`perf record` see only it.
//! `pool_loop filature|crossbeam [N]` (N default 1,000,000), repeated 7 times:
//!
//! ```text
//! cargo build --release -p filature-bench --example pool_loop
//! perf stat -e task-clock,context-switches,cpu-migrations target/release/examples/pool_loop filature
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

type Job = Box<dyn FnOnce() + Send>;

fn run(n: usize, mut submit: impl FnMut(Job)) -> f64 {
    let left = Arc::new(AtomicUsize::new(n));
    let start = Instant::now();
    for _ in 0..n {
        let left = left.clone();
        submit(Box::new(move || {
            left.fetch_sub(1, Ordering::AcqRel);
        }));
    }
    while left.load(Ordering::Acquire) != 0 {
        std::thread::yield_now();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let system = std::env::args().nth(1).unwrap_or_else(|| "filature".into());
    let n: usize = std::env::args()
        .nth(2)
        .map_or(1_000_000, |s| s.parse().expect("N"));
    let rates: Vec<f64> = match system.as_str() {
        "filature" => {
            let pool = filature::pool::ThreadPool::new(2, 2).expect("pool size");
            pool.start().expect("start");
            let rates = (0..7)
                .map(|_| run(n, |job| pool.call_in_thread(job).expect("stopped")))
                .collect();
            pool.stop();
            rates
        }
        "crossbeam" => {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    std::thread::spawn(move || rx.into_iter().for_each(|job| job()))
                })
                .collect();
            let rates = (0..7)
                .map(|_| run(n, |job| tx.send(job).unwrap()))
                .collect();
            drop(tx);
            workers.into_iter().for_each(|w| w.join().unwrap());
            rates
        }
        other => panic!("unknown system {other}"),
    };
    let m: Vec<String> = rates.iter().map(|r| format!("{:.2}M", r / 1e6)).collect();
    println!("{system}: {}", m.join(" "));
}
