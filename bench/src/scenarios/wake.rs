//! `wake`: an OS thread wakes a task that waits on an event in another
//! thread's loop, and the task answers back. Metrics `p50_us`, `p99_us` of the
//! round trip as the OS thread sees it.

use std::sync::Arc;

use crate::harness::{latencies_us, percentile, spawn_named, Config, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_wake,
        },
        System {
            name: "tokio",
            run: tokio_wake,
        },
    ]
}

fn rounds(cfg: &Config) -> usize {
    cfg.pick(2_000, 20_000)
}

/// Warm-up rounds (as `latencies_us` runs them) plus timed rounds.
fn total_rounds(cfg: &Config) -> usize {
    rounds(cfg) + rounds(cfg) / 10
}

fn metrics(mut lat: Vec<f64>) -> Vec<Metric> {
    vec![
        Metric::new("p50_us", percentile(&mut lat, 50.0)),
        Metric::new("p99_us", percentile(&mut lat, 99.0)),
    ]
}

/// A green thread on another thread's hub waits on `request` and sends on
/// `reply`, which this (plain) thread waits on.
fn filature_wake(cfg: &Config) -> Vec<Metric> {
    use filature::green;
    use filature::sync::Event;

    let total = total_rounds(cfg);
    let request = Event::<usize>::new();
    let reply = Event::<usize>::new();
    let hub = {
        let (request, reply) = (request.clone(), reply.clone());
        spawn_named("bench-wake-filature", move || {
            green::spawn(move || {
                for _ in 0..total {
                    let i = request.wait().expect("request");
                    request.reset();
                    reply.send(i).expect("reply");
                }
            })
            .join();
        })
    };
    let mut i = 0;
    let lat = latencies_us(rounds(cfg), || {
        request.send(i).expect("request");
        let got = reply.wait().expect("reply");
        reply.reset();
        debug_assert_eq!(got, i);
        i += 1;
    });
    hub.join().unwrap();
    metrics(lat)
}

/// A spawned task on a current-thread runtime (its own thread) waits on a `Notify`
/// and answers through a std channel this thread blocks on.
fn tokio_wake(cfg: &Config) -> Vec<Metric> {
    let total = total_rounds(cfg);
    let request = Arc::new(tokio::sync::Notify::new());
    let (reply_tx, reply_rx) = std::sync::mpsc::channel::<()>();
    let runtime = {
        let request = Arc::clone(&request);
        spawn_named("bench-wake-tokio", move || {
            let rt = super::tokio_current_thread("bench-wake-tokio");
            rt.block_on(async move {
                tokio::spawn(async move {
                    for _ in 0..total {
                        request.notified().await;
                        reply_tx.send(()).unwrap();
                    }
                })
                .await
                .unwrap();
            });
        })
    };
    let lat = latencies_us(rounds(cfg), || {
        request.notify_one();
        reply_rx.recv().unwrap();
    });
    runtime.join().unwrap();
    metrics(lat)
}
