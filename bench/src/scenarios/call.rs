//! `call`: throughput of posting a call from other OS threads into one event
//! loop that runs them, from 1 and from 4 producers; metrics
//! `calls_per_sec_1p`, `calls_per_sec_4p`. The loop is kept busy by the posts
//! themselves. The floor is a crossbeam channel drained by a plain thread.

use std::sync::Arc;

use crate::harness::{median_of, producer_throughput, spawn_named, Config, Job, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_call,
        },
        System {
            name: "tokio",
            run: tokio_call,
        },
        System {
            name: "crossbeam",
            run: crossbeam_call,
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

/// `reactor::call_from_thread` into the process reactor (started on first use).
fn filature_call(cfg: &Config) -> Vec<Metric> {
    measure(
        cfg,
        "call-filature",
        Arc::new(|job| filature::reactor::call_from_thread(job).expect("reactor stopped")),
    )
}

/// `Handle::spawn` into a current-thread runtime running on its own thread.
fn tokio_call(cfg: &Config) -> Vec<Metric> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let runtime = spawn_named("bench-call-tokio", move || {
        let rt = super::tokio_current_thread("bench-call-tokio");
        handle_tx.send(rt.handle().clone()).unwrap();
        rt.block_on(stop_rx).unwrap();
    });
    let handle = handle_rx.recv().unwrap();
    let metrics = measure(
        cfg,
        "call-tokio",
        Arc::new(move |job: Job| {
            handle.spawn(async move { job() });
        }),
    );
    stop_tx.send(()).unwrap();
    runtime.join().unwrap();
    metrics
}

/// The floor: boxed calls through an unbounded crossbeam channel, run by a plain thread.
fn crossbeam_call(cfg: &Config) -> Vec<Metric> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let consumer = spawn_named("bench-call-crossbeam", move || {
        for job in rx {
            job();
        }
    });
    let metrics = measure(
        cfg,
        "call-crossbeam",
        Arc::new(move |job| tx.send(job).unwrap()),
    );
    consumer.join().unwrap();
    metrics
}
