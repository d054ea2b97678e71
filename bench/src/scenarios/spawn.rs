//! `spawn`: spawn an empty task and join it, one after the other, amortised
//! over many iterations; metric `spawn_join_ns`. Every system spawns and joins
//! on one thread (may inside a coroutine on its single worker), except std,
//! whose "task" is an OS thread (fewer iterations, still reported per op).

use std::time::Instant;

use crate::harness::{median_of, ns_per_op, Config, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_spawn,
        },
        System {
            name: "tokio",
            run: tokio_spawn,
        },
        System {
            name: "may",
            run: may_spawn,
        },
        System {
            name: "std",
            run: std_spawn,
        },
    ]
}

fn iterations(cfg: &Config) -> usize {
    cfg.pick(20_000, 100_000)
}

fn metric(value: f64) -> Vec<Metric> {
    vec![Metric::new("spawn_join_ns", value)]
}

/// `green::spawn` + `join` from this thread's main context (join drives the hub).
fn filature_spawn(cfg: &Config) -> Vec<Metric> {
    let n = iterations(cfg);
    metric(median_of(cfg, || {
        let start = Instant::now();
        for _ in 0..n {
            filature::green::spawn(|| ()).join();
        }
        ns_per_op(start.elapsed(), n)
    }))
}

/// `spawn_local` + `.await` of its handle inside a current-thread `LocalSet`.
fn tokio_spawn(cfg: &Config) -> Vec<Metric> {
    let n = iterations(cfg);
    let rt = super::tokio_current_thread("bench-spawn-tokio");
    metric(median_of(cfg, || {
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let start = Instant::now();
            for _ in 0..n {
                tokio::task::spawn_local(async {}).await.unwrap();
            }
            ns_per_op(start.elapsed(), n)
        })
    }))
}

/// `go!` + `join` from a coroutine on may's single worker.
fn may_spawn(cfg: &Config) -> Vec<Metric> {
    super::may_single_worker();
    let n = iterations(cfg);
    metric(median_of(cfg, || {
        may::go!(move || {
            let start = Instant::now();
            for _ in 0..n {
                may::go!(|| ()).join().unwrap();
            }
            ns_per_op(start.elapsed(), n)
        })
        .join()
        .unwrap()
    }))
}

/// `std::thread::spawn` + `join`.
fn std_spawn(cfg: &Config) -> Vec<Metric> {
    let n = cfg.pick(500, 2_000);
    metric(median_of(cfg, || {
        let start = Instant::now();
        for _ in 0..n {
            std::thread::Builder::new()
                .name("bench-spawn-std".to_owned())
                .spawn(|| ())
                .unwrap()
                .join()
                .unwrap();
        }
        ns_per_op(start.elapsed(), n)
    }))
}
