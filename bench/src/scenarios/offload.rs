//! `offload`: tasks on one thread run a no-op on a blocking thread pool and
//! wait for it. Metrics `p50_us` (one caller, round trip) and `calls_per_sec`
//! (20 concurrent callers on the same thread).
//!
//! Every pool is sized 20 threads where it can be (filature's tpool default;
//! tokio via `max_blocking_threads(20)`); `blocking` sizes itself
//! (`BLOCKING_MAX_THREADS`, default 500).

use std::future::Future;
use std::time::Instant;

use crate::harness::{ops_per_sec, percentile, Config, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: filature_offload,
        },
        System {
            name: "tokio",
            run: tokio_offload,
        },
        System {
            name: "blocking",
            run: blocking_offload,
        },
    ]
}

/// Concurrent callers in the throughput half.
const CALLERS: usize = 20;

fn rounds(cfg: &Config) -> usize {
    cfg.pick(2_000, 20_000)
}

fn calls_per_caller(cfg: &Config) -> usize {
    cfg.pick(500, 5_000)
}

fn metrics(mut lat: Vec<f64>, calls_per_sec: f64) -> Vec<Metric> {
    vec![
        Metric::new("p50_us", percentile(&mut lat, 50.0)),
        Metric::new("calls_per_sec", calls_per_sec),
    ]
}

/// Green threads on this thread's hub calling `tpool::execute`.
fn filature_offload(cfg: &Config) -> Vec<Metric> {
    use filature::green;
    use filature::tpool;

    let n = rounds(cfg);
    let lat =
        green::spawn(move || crate::harness::latencies_us(n, || tpool::execute(|| ()))).join();
    let per = calls_per_caller(cfg);
    let start = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| green::spawn(move || (0..per).for_each(|_| tpool::execute(|| ()))))
        .collect();
    callers.into_iter().for_each(|c| c.join());
    metrics(lat, ops_per_sec(start.elapsed(), CALLERS * per))
}

/// `spawn_blocking(..).await` from tasks on a current-thread runtime.
fn tokio_offload(cfg: &Config) -> Vec<Metric> {
    run_offload(cfg, "bench-offload-tokio", || async {
        tokio::task::spawn_blocking(|| ()).await.unwrap()
    })
}

/// `blocking::unblock(..).await` from tasks on a current-thread tokio runtime.
fn blocking_offload(cfg: &Config) -> Vec<Metric> {
    run_offload(cfg, "bench-offload-blocking", || blocking::unblock(|| ()))
}

/// The async side shared by tokio and blocking: one caller timing each call,
/// then `CALLERS` tasks calling concurrently.
fn run_offload<F, Fut>(cfg: &Config, thread_name: &str, call: F) -> Vec<Metric>
where
    F: Fn() -> Fut + Copy + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .thread_name(thread_name)
        .max_blocking_threads(CALLERS)
        .enable_all()
        .build()
        .expect("build a tokio current-thread runtime");
    let n = rounds(cfg);
    let per = calls_per_caller(cfg);
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        for _ in 0..n / 10 {
            call().await;
        }
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            call().await;
            lat.push(start.elapsed().as_nanos() as f64 / 1000.0);
        }
        let start = Instant::now();
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                tokio::task::spawn_local(async move {
                    for _ in 0..per {
                        call().await;
                    }
                })
            })
            .collect();
        for c in callers {
            c.await.unwrap();
        }
        metrics(lat, ops_per_sec(start.elapsed(), CALLERS * per))
    })
}
