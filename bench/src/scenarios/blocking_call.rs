//! `blocking_call`: a plain thread runs a call on another thread's event loop
//! and blocks until the value comes back; metric `p50_us` (and `p99_us`).

use crate::harness::{latencies_us, percentile, spawn_named, Config, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_blocking_call,
        },
        System {
            name: "tokio",
            run: tokio_blocking_call,
        },
    ]
}

fn rounds(cfg: &Config) -> usize {
    cfg.pick(2_000, 20_000)
}

fn metrics(mut lat: Vec<f64>) -> Vec<Metric> {
    vec![
        Metric::new("p50_us", percentile(&mut lat, 50.0)),
        Metric::new("p99_us", percentile(&mut lat, 99.0)),
    ]
}

/// `reactor::blocking_call_from_thread` into the process reactor.
fn filature_blocking_call(cfg: &Config) -> Vec<Metric> {
    let mut i = 0usize;
    metrics(latencies_us(rounds(cfg), || {
        let got = filature::reactor::blocking_call_from_thread(move || i + 1)
            .expect("blocking_call_from_thread failed");
        i = got;
    }))
}

/// `Handle::block_on` of the `JoinHandle` of a task spawned into a
/// current-thread runtime running on another thread.
fn tokio_blocking_call(cfg: &Config) -> Vec<Metric> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let runtime = spawn_named("bench-blocking-call-tokio", move || {
        let rt = super::tokio_current_thread("bench-blocking-call-tokio");
        handle_tx.send(rt.handle().clone()).unwrap();
        rt.block_on(stop_rx).unwrap();
    });
    let handle = handle_rx.recv().unwrap();
    let mut i = 0usize;
    let lat = latencies_us(rounds(cfg), || {
        let task = handle.spawn(async move { i + 1 });
        i = handle.block_on(task).unwrap();
    });
    stop_tx.send(()).unwrap();
    runtime.join().unwrap();
    metrics(lat)
}
