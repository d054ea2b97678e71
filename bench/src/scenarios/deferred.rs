//! `deferred`: build a chain of 1,000 callbacks on a `Deferred` and fire it
//! (metric `ns_per_callback`), and fire a 100,000-deep nested chain — a
//! callback that returns the next `Deferred`, 100,000 times over — which must
//! complete without overflowing the stack (metric `nested_depth_ok`). filature
//! only: no peer has Twisted's Deferred.

#[cfg(filature_api)]
use crate::harness::{median_of, ns_per_op, Config, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![
        #[cfg(filature_api)]
        System {
            name: "filature",
            run: filature_deferred,
        },
    ]
}

/// Callbacks per chain.
#[cfg(filature_api)]
const CHAIN: usize = 1_000;

/// Depth of the nested chain that must complete.
#[cfg(filature_api)]
const NESTED_DEPTH: usize = 100_000;

#[cfg(filature_api)]
fn filature_deferred(cfg: &Config) -> Vec<Metric> {
    use std::time::Instant;

    use filature::deferred::Deferred;

    let chains = cfg.pick(100, 1_000);
    let ns = median_of(cfg, || {
        let start = Instant::now();
        for _ in 0..chains {
            let d = Deferred::<u64>::new();
            for _ in 0..CHAIN {
                d.add_callback(|v| v + 1);
            }
            d.callback(0);
        }
        ns_per_op(start.elapsed(), chains * CHAIN)
    });
    vec![
        Metric::new("ns_per_callback", ns),
        Metric::new("nested_depth_ok", nested_chain(NESTED_DEPTH) as f64),
    ]
}

/// Builds `depth` Deferreds, each fired by the previous one's callback, fires
/// the first and returns how many callbacks ran (equal to `depth` on success).
#[cfg(filature_api)]
fn nested_chain(depth: usize) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use filature::deferred::Deferred;

    // Arc, not Rc: Deferred callbacks must be Send.
    let ran = Arc::new(AtomicUsize::new(0));
    let mut next: Option<Deferred<usize>> = None;
    // Build from the innermost outwards so each callback owns the next link.
    for _ in 0..depth {
        let d = Deferred::<usize>::new();
        let ran = Arc::clone(&ran);
        let inner = next.take();
        d.add_callback(move |v| {
            ran.fetch_add(1, Ordering::Relaxed);
            if let Some(inner) = inner {
                inner.callback(v + 1);
            }
            v
        });
        next = Some(d);
    }
    if let Some(first) = next {
        first.callback(0);
    }
    ran.load(Ordering::Relaxed)
}
