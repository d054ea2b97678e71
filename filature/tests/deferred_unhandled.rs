//! "Unhandled error in Deferred": logged once, when the last holder drops a failed Deferred whose
//! failure nobody observed — captured here from `tracing`.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::LogCapture;
use filature::deferred::{fail, gather_results, Deferred, DeferredList, Outcome};
use filature::{Failure, TimedOut};

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Runs `f` with bare-message log capture on this thread; returns the lines logged by the time
/// `f` (and everything it owns) is done.
fn capture(f: impl FnOnce(&LogCapture)) -> Vec<String> {
    let logs = LogCapture::start_bare();
    f(&logs);
    logs.lines()
}

fn unhandled(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with("Unhandled error in Deferred"))
        .count()
}

#[test]
fn dropped_failure_is_logged_once_when_the_last_holder_drops_it() {
    let lines = capture(|logs| {
        let d = fail::<u32>(Failure::from_error(TimedOut));
        let clones = vec![d.clone(), d.clone(), d.clone()];
        drop(d);
        drop(clones[0].clone());
        assert!(logs.lines().is_empty(), "not while a holder remains");
        let mut clones = clones;
        clones.truncate(1);
        assert!(logs.lines().is_empty(), "not while a holder remains");
        drop(clones);
        assert_eq!(
            unhandled(&logs.lines()),
            1,
            "logged at once when the last holder drops it"
        );
    });
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("Unhandled error in Deferred: timed out"),
        "{lines:?}"
    );
}

#[test]
fn panic_in_callback_left_unhandled_is_logged_with_its_message() {
    let lines = capture(|_| {
        let d = Deferred::<u32>::new();
        d.add_callback(|_| panic!("kaboom"));
        d.callback(1).unwrap();
    });
    assert_eq!(unhandled(&lines), 1);
    assert!(lines[0].contains("kaboom"), "{lines:?}");
}

#[test]
fn errback_that_recovers_handles_the_failure() {
    let lines = capture(|_| {
        let d = fail::<u32>(Failure::from_error(TimedOut));
        d.add_errback(|_| Outcome::Value(0));
    });
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn errback_that_passes_the_failure_on_leaves_it_unhandled() {
    let lines = capture(|_| {
        let d = fail::<u32>(Failure::from_error(TimedOut));
        d.add_errback(Outcome::Failure);
    });
    assert_eq!(unhandled(&lines), 1);
}

#[test]
fn success_and_unfired_deferreds_log_nothing() {
    let lines = capture(|_| {
        let ok = Deferred::new();
        ok.callback(1).unwrap();
        drop(ok);
        drop(Deferred::<u32>::new());
    });
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn observe_and_result_now_count_as_handling() {
    let lines = capture(|_| {
        let observed = fail::<u32>(Failure::from_error(TimedOut));
        observed.observe(|_| {});
        let peeked = fail::<u32>(Failure::from_error(TimedOut));
        assert!(peeked.result_now().unwrap().is_err());
    });
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn a_new_failure_after_an_observer_is_unhandled_again() {
    let lines = capture(|_| {
        let d = fail::<u32>(Failure::from_error(TimedOut));
        d.observe(|_| {});
        d.add_errback(|_| Outcome::error(TimedOut));
    });
    assert_eq!(unhandled(&lines), 1);
}

#[test]
fn awaiting_observes_the_failure() {
    let lines = capture(|_| {
        let d = fail::<u32>(Failure::from_error(TimedOut));
        let mut fut = std::pin::pin!(d);
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
    });
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn failure_moved_to_an_outer_deferred_is_logged_once_by_the_outer() {
    let lines = capture(|_| {
        let inner = Deferred::<u32>::new();
        let outer = Deferred::<u32>::new();
        let waited = inner.clone();
        outer.add_callback(move |_| Outcome::Wait(waited));
        outer.callback(0).unwrap();
        inner.errback(Failure::from_error(TimedOut)).unwrap();
        drop(inner);
        drop(outer);
    });
    assert_eq!(unhandled(&lines), 1, "{lines:?}");
}

#[test]
fn deferred_list_without_consume_errors_leaves_input_failures_unhandled() {
    let lines = capture(|_| {
        let input = fail::<u32>(Failure::from_error(TimedOut));
        let list = DeferredList::new(vec![input]).into_deferred();
        assert!(list.take_result().unwrap().is_ok());
    });
    assert_eq!(unhandled(&lines), 1, "{lines:?}");
}

#[test]
fn deferred_list_with_consume_errors_logs_nothing() {
    let lines = capture(|_| {
        let input = fail::<u32>(Failure::from_error(TimedOut));
        let list = DeferredList::new(vec![input])
            .consume_errors(true)
            .into_deferred();
        assert!(list.take_result().unwrap().is_ok());
    });
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn unhandled_gather_results_failure_is_logged_once() {
    let lines = capture(|_| {
        let inputs = vec![Deferred::<u32>::new(), fail(Failure::from_error(TimedOut))];
        drop(gather_results(inputs));
    });
    assert_eq!(unhandled(&lines), 1, "{lines:?}");
    assert!(
        lines[0].contains("Deferred #1 failed: timed out"),
        "{lines:?}"
    );
}
