//! `pool`: many tiny jobs submitted from one thread through a thread pool of
//! 2 workers; metric `jobs_per_sec`, from the first submission until the last
//! job has run. The floor is two plain threads draining a crossbeam channel.

use std::sync::Arc;
use std::time::Instant;

use crate::harness::{median_of, ops_per_sec, spawn_named, Config, Countdown, Job, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_pool,
        },
        System {
            name: "crossbeam",
            run: crossbeam_pool,
        },
        System {
            name: "tokio",
            run: tokio_pool,
        },
    ]
}

const WORKERS: usize = 2;

/// Submits `jobs(cfg)` jobs through `submit` and returns the median jobs/s.
fn measure(cfg: &Config, mut submit: impl FnMut(Job)) -> Vec<Metric> {
    let n = cfg.pick(50_000, 1_000_000);
    let rate = median_of(cfg, || {
        let countdown = Countdown::new(n);
        let start = Instant::now();
        for _ in 0..n {
            let countdown = Arc::clone(&countdown);
            submit(Box::new(move || countdown.tick()));
        }
        countdown.wait();
        ops_per_sec(start.elapsed(), n)
    });
    vec![Metric::new("jobs_per_sec", rate)]
}

/// `ThreadPool::call_in_thread` on a pool fixed at 2 workers.
fn filature_pool(cfg: &Config) -> Vec<Metric> {
    let pool = filature::pool::ThreadPool::new(WORKERS, WORKERS).expect("pool size");
    pool.start().expect("start the pool");
    let metrics = measure(cfg, |job| pool.call_in_thread(job).expect("pool stopped"));
    pool.stop();
    metrics
}

/// The floor: two threads taking boxed jobs from one unbounded crossbeam channel.
fn crossbeam_pool(cfg: &Config) -> Vec<Metric> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let rx = rx.clone();
            spawn_named(format!("bench-pool-crossbeam-{i}"), move || {
                for job in rx {
                    job();
                }
            })
        })
        .collect();
    let metrics = measure(cfg, |job| tx.send(job).unwrap());
    drop(tx);
    workers.into_iter().for_each(|w| w.join().unwrap());
    metrics
}

/// `Handle::spawn_blocking` on a runtime capped at 2 blocking threads.
fn tokio_pool(cfg: &Config) -> Vec<Metric> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .thread_name("bench-pool-tokio")
        .max_blocking_threads(WORKERS)
        .build()
        .expect("build a tokio runtime");
    let handle = rt.handle().clone();
    measure(cfg, |job| {
        handle.spawn_blocking(job);
    })
}
