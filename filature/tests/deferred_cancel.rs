//! Cancellation: with and without a canceller, of a paused Deferred, of derived Deferreds.

use std::sync::{Arc, Mutex};

use filature::deferred::{succeed, Deferred, Outcome};
use filature::{AlreadyCalled, Cancelled, Failure, TimedOut};

#[test]
fn cancel_without_canceller_fails_with_cancelled() {
    let d = Deferred::<u32>::new();
    d.cancel();
    assert!(d.is_called());
    assert!(d.result_now().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn late_result_after_cancel_is_ignored_once() {
    let d = Deferred::<u32>::new();
    d.cancel();
    assert_eq!(
        d.callback(1),
        Ok(()),
        "the real result arriving late is ignored"
    );
    assert_eq!(d.callback(2), Err(AlreadyCalled), "only once");
    assert!(d.result_now().unwrap().unwrap_err().is::<Cancelled>());

    let d = Deferred::<u32>::new();
    d.cancel();
    assert_eq!(d.errback(Failure::from_error(TimedOut)), Ok(()));
    assert!(d.result_now().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn canceller_runs_once_and_may_fire_the_deferred_itself() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let d = Deferred::<u32>::with_canceller(move |d| {
        *c.lock().unwrap() += 1;
        d.errback(Failure::from_error(TimedOut)).unwrap();
    });
    d.cancel();
    d.cancel();
    assert_eq!(*calls.lock().unwrap(), 1);
    assert!(d.result_now().unwrap().unwrap_err().is::<TimedOut>());
}

#[test]
fn canceller_that_does_not_fire_leads_to_cancelled_and_later_calls_are_already_called() {
    let d = Deferred::<u32>::with_canceller(|_| {});
    d.cancel();
    assert!(d.result_now().unwrap().unwrap_err().is::<Cancelled>());
    // As in Twisted, only a Deferred without canceller suppresses the late result.
    assert_eq!(d.callback(1), Err(AlreadyCalled));
}

#[test]
fn cancel_after_firing_does_nothing() {
    let ran = Arc::new(Mutex::new(false));
    let r = ran.clone();
    let d = Deferred::<u32>::with_canceller(move |_| *r.lock().unwrap() = true);
    d.callback(3).unwrap();
    d.cancel();
    assert!(!*ran.lock().unwrap());
    assert_eq!(d.result_now().unwrap().unwrap(), 3);
}

#[test]
fn cancelling_a_deferred_waiting_on_an_inner_one_cancels_the_inner() {
    let inner_cancelled = Arc::new(Mutex::new(false));
    let flag = inner_cancelled.clone();
    let inner = Deferred::<u32>::with_canceller(move |_| *flag.lock().unwrap() = true);
    let outer = Deferred::<u32>::new();
    let waited = inner.clone();
    outer.add_callback(move |_| Outcome::Wait(waited));
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    outer.add_errback(move |f| {
        *s.lock().unwrap() = Some(f.is::<Cancelled>());
        Outcome::Value(0)
    });
    outer.callback(1).unwrap();
    outer.cancel();
    assert!(*inner_cancelled.lock().unwrap());
    assert_eq!(
        *seen.lock().unwrap(),
        Some(true),
        "the outer chain resumed with Cancelled"
    );
    assert_eq!(outer.result_now().unwrap().unwrap(), 0);
}

#[test]
fn cancel_reaches_the_innermost_of_nested_waits() {
    let innermost = Deferred::<u32>::new();
    let middle = Deferred::<u32>::new();
    let outer = Deferred::<u32>::new();
    let (i, m) = (innermost.clone(), middle.clone());
    middle.add_callback(move |_| Outcome::Wait(i));
    outer.add_callback(move |_| Outcome::Wait(m));
    middle.callback(0).unwrap();
    outer.callback(0).unwrap();
    outer.cancel();
    assert!(innermost.is_called());
    assert!(outer.result_now().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn cancelling_a_then_deferred_cancels_its_source() {
    let source = Deferred::<u32>::new();
    let mapped = source.map(|v| v.to_string());
    mapped.cancel();
    assert!(source.is_called());
    assert!(mapped.result_now().unwrap().unwrap_err().is::<Cancelled>());
}

#[test]
fn panicking_canceller_fails_the_deferred_with_the_panic() {
    let d = Deferred::<u32>::with_canceller(|_| panic!("canceller broke"));
    d.cancel();
    let failure = d.result_now().unwrap().unwrap_err();
    assert_eq!(failure.panic_message(), Some("canceller broke"));
}

#[test]
fn cancelling_a_settled_chain_is_a_no_op() {
    let d = succeed(1u32);
    d.cancel();
    assert_eq!(d.result_now().unwrap().unwrap(), 1);
}

#[test]
fn cancelling_a_then_deferred_cancels_the_deferred_its_function_returned() {
    let inner = Deferred::<String>::new();
    let waited = inner.clone();
    let source = succeed(1u32);
    let next = source.then(move |_| Outcome::Wait(waited));
    assert!(!next.is_called());
    next.cancel();
    assert!(inner.is_called(), "the inner Deferred was cancelled");
    assert!(next.result_now().unwrap().unwrap_err().is::<Cancelled>());
}

/// Issue 12, trap 5: each `then` link's canceller cancels the link before it, and used to do it
/// by a nested call, so cancelling the end of a long chain overflowed a 2 MiB stack between 1,000
/// and 3,000 links. The cancellation is handed on iteratively now, like nested firing.
#[test]
fn cancelling_the_end_of_a_100_000_link_chain_does_not_recurse() {
    const N: usize = 100_000;
    let outcome = std::thread::Builder::new()
        .name("deep-cancel".into())
        .stack_size(2 << 20)
        .spawn(|| {
            let first = Deferred::<usize>::new();
            let mut last = first.map(|v| v + 1);
            for i in 1..N {
                last = if i % 2 == 0 {
                    last.map(|v| v + 1)
                } else {
                    last.then(|v| Outcome::Value(v + 1))
                };
            }
            last.cancel();
            // The cancellation reached the start (its result moved on down the chain, so look
            // at `is_called` there: the real result arriving late is ignored once).
            let last_cancelled = last.result_now().unwrap().unwrap_err().is::<Cancelled>();
            (first.is_called(), last_cancelled, first.callback(1))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome, (true, true, Ok(())));
}

/// Handing the cancellation on keeps the order nested calls had: the first link's canceller
/// runs (and may fire it with a value) before the later links decide to fail with `Cancelled`.
#[test]
fn a_cancelled_chain_carries_the_value_its_first_canceller_fired() {
    let first = Deferred::<u32>::with_canceller(|d| d.callback(20).unwrap());
    let last = first.map(|v| v + 1).then(|v| Outcome::Value(v * 2));
    last.cancel();
    assert_eq!(last.result_now().unwrap().unwrap(), 42);
}
