//! A Deferred is a `Future`: awaiting it, from the thread that fires it or from another.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use filature::deferred::{fail, succeed, Deferred, Outcome, ResultTaken};
use filature::{Failure, TimedOut};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `fut` on this thread, parking until woken.
fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

#[test]
fn awaiting_a_fired_deferred_gives_its_value() {
    assert_eq!(block_on(succeed(3)).unwrap(), 3);
}

#[test]
fn awaiting_a_failed_deferred_gives_its_failure() {
    let failure = block_on(fail::<u32>(Failure::from_error(TimedOut))).unwrap_err();
    assert!(failure.is::<TimedOut>());
}

#[test]
fn awaiting_sees_the_result_after_the_whole_chain() {
    let d = Deferred::<u32>::new();
    d.add_callback(|v| Outcome::Value(v + 1));
    let fired = d.clone();
    let waiter = thread::spawn(move || block_on(d));
    thread::sleep(Duration::from_millis(20));
    fired.callback(1).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), 2);
}

#[test]
fn fired_from_another_thread_wakes_the_waiting_task() {
    let d = Deferred::<String>::new();
    let firer = d.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        firer.callback("from afar".into()).unwrap();
    });
    assert_eq!(block_on(d).unwrap(), "from afar");
    t.join().unwrap();
}

#[test]
fn awaiting_a_deferred_paused_on_an_inner_one_waits_for_the_inner() {
    let inner = Deferred::<u32>::new();
    let outer = Deferred::<u32>::new();
    let waited = inner.clone();
    outer.add_callback(move |_| Outcome::Wait(waited));
    outer.callback(0).unwrap();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        inner.callback(9).unwrap();
    });
    assert_eq!(block_on(outer).unwrap(), 9);
    t.join().unwrap();
}

#[test]
fn awaiting_a_deferred_whose_result_was_taken_fails_instead_of_hanging() {
    let d = succeed(1u32);
    let _mapped = d.map(|v| v + 1);
    assert!(block_on(d).unwrap_err().is::<ResultTaken>());
}
