//! `switch`: two tasks on one thread take turns with a yield. One round trip
//! is A→B→A (two yields); metric `round_trip_ns`. The floor is one raw
//! corosensei resume+suspend pair, the least a stackful switch can cost.

use std::sync::mpsc;
use std::time::Instant;

use corosensei::Coroutine;

use crate::harness::{median_of, ns_per_op, spawn_named, Config, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_switch,
        },
        System {
            name: "corosensei",
            run: corosensei_switch,
        },
        System {
            name: "tokio",
            run: tokio_switch,
        },
        System {
            name: "may",
            run: may_switch,
        },
        System {
            name: "std",
            run: std_switch,
        },
    ]
}

fn rounds(cfg: &Config) -> usize {
    cfg.pick(20_000, 200_000)
}

fn metric(value: f64) -> Vec<Metric> {
    vec![Metric::new("round_trip_ns", value)]
}

/// Two green threads on this thread's hub, each yielding `rounds` times.
fn filature_switch(cfg: &Config) -> Vec<Metric> {
    use filature::green;
    let n = rounds(cfg);
    metric(median_of(cfg, || {
        let start = Instant::now();
        let a = green::spawn(move || (0..n).for_each(|_| green::yield_now()));
        let b = green::spawn(move || (0..n).for_each(|_| green::yield_now()));
        a.join();
        b.join();
        ns_per_op(start.elapsed(), n)
    }))
}

/// The floor: one resume of a coroutine that suspends straight back.
fn corosensei_switch(cfg: &Config) -> Vec<Metric> {
    let n = rounds(cfg);
    let mut co: Coroutine<(), (), ()> = Coroutine::new(|yielder, ()| loop {
        yielder.suspend(());
    });
    metric(median_of(cfg, || {
        let start = Instant::now();
        for _ in 0..n {
            co.resume(());
        }
        ns_per_op(start.elapsed(), n)
    }))
}

/// Two `spawn_local` tasks in a current-thread `LocalSet`, each `yield_now`ing.
fn tokio_switch(cfg: &Config) -> Vec<Metric> {
    let n = rounds(cfg);
    let rt = super::tokio_current_thread("bench-switch-tokio");
    metric(median_of(cfg, || {
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let start = Instant::now();
            let task = || async move {
                for _ in 0..n {
                    tokio::task::yield_now().await;
                }
            };
            let a = tokio::task::spawn_local(task());
            let b = tokio::task::spawn_local(task());
            a.await.unwrap();
            b.await.unwrap();
            ns_per_op(start.elapsed(), n)
        })
    }))
}

/// Two may coroutines on its single worker, each `yield_now`ing.
fn may_switch(cfg: &Config) -> Vec<Metric> {
    super::may_single_worker();
    let n = rounds(cfg);
    metric(median_of(cfg, || {
        let start = Instant::now();
        let a = may::go!(move || (0..n).for_each(|_| may::coroutine::yield_now()));
        let b = may::go!(move || (0..n).for_each(|_| may::coroutine::yield_now()));
        a.join().unwrap();
        b.join().unwrap();
        ns_per_op(start.elapsed(), n)
    }))
}

/// Two OS threads ping-ponging one message through a pair of channels.
fn std_switch(cfg: &Config) -> Vec<Metric> {
    let n = rounds(cfg) / 10;
    metric(median_of(cfg, || {
        let (to_b, from_a) = mpsc::channel::<()>();
        let (to_a, from_b) = mpsc::channel::<()>();
        let b = spawn_named("bench-switch-std-b", move || {
            for () in from_a {
                to_a.send(()).unwrap();
            }
        });
        let start = Instant::now();
        for _ in 0..n {
            to_b.send(()).unwrap();
            from_b.recv().unwrap();
        }
        let elapsed = start.elapsed();
        drop(to_b);
        b.join().unwrap();
        ns_per_op(elapsed, n)
    }))
}
