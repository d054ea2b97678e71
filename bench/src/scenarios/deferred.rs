//! `deferred`: build a chain of 1,000 callbacks on a `Deferred` and fire it
//! (metric `ns_per_callback`), and fire a 100,000-deep nested chain — a
//! callback that returns the next `Deferred`, 100,000 times over — which must
//! complete without overflowing the stack (metric `nested_depth_ok`). filature
//! only: no peer has Twisted's Deferred.

use crate::harness::{median_of, ns_per_op, Config, Metric};
use crate::System;

pub(crate) fn systems() -> Vec<System> {
    vec![System {
        name: "filature",
        run: filature_deferred,
    }]
}

/// Callbacks per chain.
const CHAIN: usize = 1_000;

/// Depth of the nested chain that must complete.
const NESTED_DEPTH: usize = 100_000;

fn filature_deferred(cfg: &Config) -> Vec<Metric> {
    use std::time::Instant;

    use filature::deferred::{Deferred, Outcome};

    let chains = cfg.pick(100, 1_000);
    let ns = median_of(cfg, || {
        let start = Instant::now();
        for _ in 0..chains {
            let d = Deferred::<u64>::new();
            for _ in 0..CHAIN {
                d.add_callback(|v| Outcome::Value(v + 1));
            }
            d.callback(0).expect("fired once");
        }
        ns_per_op(start.elapsed(), chains * CHAIN)
    });
    vec![
        Metric::new("ns_per_callback", ns),
        Metric::new("nested_depth_ok", nested_chain(NESTED_DEPTH) as f64),
    ]
}

/// Twisted-style nesting, `depth` deep: the callback of Deferred `i` returns Deferred `i + 1`, so
/// each waits on the next; all are fired, the innermost last, and the whole tower must unwind
/// (iteratively: a recursive implementation overflows the stack here). Returns the innermost
/// value as seen by the outermost callback, which is `depth` on success.
fn nested_chain(depth: usize) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use filature::deferred::{Deferred, Outcome};

    let tower: Vec<Deferred<usize>> = (0..depth).map(|_| Deferred::new()).collect();
    for i in 0..depth - 1 {
        let inner = tower[i + 1].clone();
        tower[i].add_callback(move |_| Outcome::Wait(inner));
    }
    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    tower[0].add_callback(move |v| {
        s.store(v, Ordering::Relaxed);
        Outcome::Value(v)
    });
    for d in &tower[..depth - 1] {
        d.callback(0).expect("fired once");
    }
    tower[depth - 1].callback(depth).expect("fired once");
    seen.load(Ordering::Relaxed)
}
