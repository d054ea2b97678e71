//! `named`: calls posted from 1 and from 4 producer threads into one serial
//! worker thread; metrics `calls_per_sec_1p`, `calls_per_sec_4p`, measured from
//! the producers' start until the worker has run the last call.

use std::sync::Arc;

use crate::harness::{median_of, producer_throughput, spawn_named, Config, Job, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_named,
        },
        System {
            name: "std",
            run: std_named,
        },
        System {
            name: "crossbeam",
            run: crossbeam_named,
        },
    ]
}

/// Measures 1 and 4 producers posting through `post`.
fn measure(cfg: &Config, label: &str, post: Arc<dyn Fn(Job) + Send + Sync>) -> Vec<Metric> {
    let total = cfg.pick(100_000, 1_000_000);
    [(1, "calls_per_sec_1p"), (4, "calls_per_sec_4p")]
        .into_iter()
        .map(|(producers, name)| {
            let rate = median_of(cfg, || {
                producer_throughput(label, producers, total, Arc::clone(&post))
            });
            Metric::new(name, rate)
        })
        .collect()
}

/// `ThreadManager::call_in_thread` into one named thread.
fn filature_named(cfg: &Config) -> Vec<Metric> {
    use filature::threads::ThreadManager;
    measure(
        cfg,
        "named-filature",
        Arc::new(|job| {
            ThreadManager::global()
                .call_in_thread("bench-named", job)
                .expect("named thread stopped");
        }),
    )
}

/// A `std::sync::mpsc` channel feeding one worker thread.
fn std_named(cfg: &Config) -> Vec<Metric> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let worker = spawn_named("bench-named-std", move || {
        for job in rx {
            job();
        }
    });
    let metrics = measure(cfg, "named-std", Arc::new(move |job| tx.send(job).unwrap()));
    worker.join().unwrap();
    metrics
}

/// An unbounded crossbeam channel feeding one worker thread.
fn crossbeam_named(cfg: &Config) -> Vec<Metric> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let worker = spawn_named("bench-named-crossbeam", move || {
        for job in rx {
            job();
        }
    });
    let metrics = measure(
        cfg,
        "named-crossbeam",
        Arc::new(move |job| tx.send(job).unwrap()),
    );
    worker.join().unwrap();
    metrics
}
