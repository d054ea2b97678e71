//! Deep chaining runs iteratively: 100 000 nested Deferreds on the default 2 MiB test-thread stack.

use std::sync::{Arc, Mutex};

use filature::deferred::{succeed, Deferred, Outcome};

const N: usize = 100_000;

/// One Deferred whose N callbacks each return a fresh Deferred, fired later one by one.
#[test]
fn many_callbacks_each_waiting_on_a_fresh_deferred_fired_later() {
    let pending: Arc<Mutex<Vec<Deferred<usize>>>> = Arc::new(Mutex::new(Vec::new()));
    let d = Deferred::<usize>::new();
    for _ in 0..N {
        let pending = pending.clone();
        d.add_callback(move |v| {
            let inner = Deferred::new();
            pending.lock().unwrap().push(inner.clone());
            let _ = v;
            Outcome::Wait(inner)
        });
    }
    d.callback(0).unwrap();
    for i in 0..N {
        let inner = pending.lock().unwrap()[i].clone();
        inner.callback(i + 1).unwrap();
    }
    assert_eq!(d.result_now().unwrap().unwrap(), N);
}

/// d[0] waits on d[1], which waits on d[2], … ; firing the innermost unwinds N levels of waiting.
#[test]
fn deeply_nested_deferreds_resume_outward_without_recursion() {
    let chain: Vec<Deferred<usize>> = (0..=N).map(|_| Deferred::new()).collect();
    for i in 0..N {
        let next = chain[i + 1].clone();
        chain[i].add_callback(move |_| Outcome::Wait(next));
        chain[i].add_callback(|v| Outcome::Value(v + 1));
    }
    for d in &chain[..N] {
        d.callback(0).unwrap();
        assert!(d.result_now().is_none(), "paused on the next one");
    }
    chain[N].callback(0).unwrap();
    assert_eq!(chain[0].result_now().unwrap().unwrap(), N);
}

/// Each callback returns an inner Deferred that has already fired: consumed in place.
#[test]
fn many_callbacks_each_returning_an_already_fired_deferred() {
    let d = Deferred::<usize>::new();
    for _ in 0..N {
        d.add_callback(|v| Outcome::Wait(succeed(v + 1)));
    }
    d.callback(0).unwrap();
    assert_eq!(d.result_now().unwrap().unwrap(), N);
}

/// A nest built from the inside out, where each inner Deferred has already fired through its own
/// chain of waiting: the whole tower collapses without recursion.
#[test]
fn nested_chain_of_already_fired_deferreds() {
    let mut inner = succeed(0usize);
    for _ in 0..N {
        let outer = succeed(0usize);
        let waited = inner;
        outer.add_callback(move |_| Outcome::Wait(waited));
        outer.add_callback(|v| Outcome::Value(v + 1));
        inner = outer;
    }
    assert_eq!(inner.result_now().unwrap().unwrap(), N);
}

/// A long chain of type-changing links (`map`) feeds through the trampoline.
#[test]
fn long_chain_of_maps() {
    let first = Deferred::<usize>::new();
    let mut last = first.map(|v| v + 1);
    for _ in 1..N {
        last = last.map(|v| v + 1);
    }
    first.callback(0).unwrap();
    assert_eq!(last.result_now().unwrap().unwrap(), N);
}

/// Dropping a long unfired chain (each link's pending step holds the next link) does not recurse.
#[test]
fn dropping_a_long_unfired_chain() {
    let first = Deferred::<usize>::new();
    let mut last = first.map(|v| v + 1);
    for _ in 1..N {
        last = last.map(|v| v + 1);
    }
    drop(last);
    drop(first);
}

/// Dropping a long unfired tower of waiting Deferreds does not recurse either.
#[test]
fn dropping_a_deep_unfired_tower() {
    let chain: Vec<Deferred<usize>> = (0..=N).map(|_| Deferred::new()).collect();
    for i in 0..N {
        let next = chain[i + 1].clone();
        chain[i].add_callback(move |_| Outcome::Wait(next));
    }
    for d in &chain[..N] {
        d.callback(0).unwrap();
    }
    let innermost = chain[N].clone();
    drop(chain);
    drop(innermost);
}
