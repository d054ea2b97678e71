//! Futures on hubs: `hub::spawn_future`, `HubHandle::spawn_future`, `FutureHandle`.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::hub_thread;
use filature::deferred::Deferred;
use filature::hub;
use filature::{green, Cancelled, Stopped};

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_local_future_may_be_not_send_and_is_first_polled_on_the_next_pass() {
    let polled = Rc::new(Cell::new(false));
    let p = polled.clone();
    let h = hub::spawn_future(async move {
        p.set(true);
        7
    });
    assert!(!polled.get(), "spawning must not poll");
    assert_eq!(h.join(), 7);
    assert!(polled.get());
}

#[test]
fn a_future_woken_from_another_thread_runs_on_its_hub() {
    let d = Deferred::<u32>::new();
    let d2 = d.clone();
    let me = std::thread::current().id();
    let h = hub::spawn_future(async move {
        let v = d2.await.unwrap();
        (v, std::thread::current().id())
    });
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        d.callback(3).unwrap();
    });
    assert_eq!(h.join(), (3, me));
}

#[test]
fn a_wake_during_poll_schedules_another_poll() {
    struct YieldTwice(u8);
    impl Future for YieldTwice {
        type Output = u8;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
            if self.0 == 2 {
                return Poll::Ready(2);
            }
            self.0 += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    assert_eq!(hub::spawn_future(YieldTwice(0)).join(), 2);
}

#[test]
fn a_panic_in_poll_becomes_the_handles_failure() {
    let h = hub::spawn_future(async { panic!("poll boom") });
    let f = h.join_result().unwrap_err();
    assert_eq!(f.panic_message(), Some("poll boom"));
    // The hub goes on.
    assert_eq!(hub::spawn_future(async { 1 }).join(), 1);
}

#[test]
fn blocking_inside_poll_panics_with_a_clear_message() {
    let h = hub::spawn_future(async { green::sleep(Duration::from_millis(1)) });
    let f = h.join_result().unwrap_err();
    assert!(
        f.panic_message()
            .unwrap()
            .contains("cannot block inside a hub callback"),
        "{f}"
    );
}

#[test]
fn cancel_drops_the_future_and_fails_the_handle() {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = Dropped(drops.clone());
    let h = hub::spawn_future(async move {
        let _g = guard;
        std::future::pending::<()>().await
    });
    green::sleep(Duration::from_millis(2)); // let it be polled once
    h.cancel();
    assert!(h.wait_timeout(LONG));
    assert!(h.join_result().unwrap_err().is::<Cancelled>());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn hub_handle_spawn_future_runs_on_that_hub_and_joins_from_here() {
    let (other, t) = hub_thread("future-hub");
    let h = other
        .spawn_future(async { std::thread::current().name().map(str::to_owned) })
        .unwrap();
    assert_eq!(h.join().as_deref(), Some("future-hub"));
    other.stop();
    t.join().unwrap();
}

#[test]
fn a_future_handle_is_itself_a_future() {
    let inner = hub::spawn_future(async { 20 });
    let outer = hub::spawn_future(async move { inner.await.unwrap() + 22 });
    assert_eq!(outer.join(), 42);
}

#[test]
fn a_future_handle_can_be_joined_from_a_green_thread() {
    let d = Deferred::<u8>::new();
    let h = hub::spawn_future(d.clone());
    let joiner = green::spawn(move || h.join().unwrap());
    d.callback(9).unwrap();
    assert_eq!(joiner.join(), 9);
}

#[test]
fn a_pending_future_fails_with_stopped_when_its_hubs_thread_exits() {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let h = hub::spawn_future(std::future::pending::<()>());
        hub::spawn_future(async {}).join(); // one pass: the pending one is polled
        tx.send(h).unwrap();
    });
    let h = rx.recv().unwrap();
    t.join().unwrap();
    assert!(h.join_result().unwrap_err().is::<Stopped>());
}

#[test]
fn spawn_future_on_a_stopped_hub_is_refused() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(hub::current()).unwrap())
        .join()
        .unwrap();
    let gone = rx.recv().unwrap();
    assert!(gone.spawn_future(async {}).is_err());
}

#[test]
fn many_wakes_from_many_threads_poll_to_completion() {
    let count = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..50 {
        let d = Deferred::<()>::new();
        let c = count.clone();
        let dd = d.clone();
        handles.push(hub::spawn_future(async move {
            dd.await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
        }));
        std::thread::spawn(move || d.callback(()).unwrap());
    }
    for h in handles {
        assert!(h.wait_timeout(LONG));
        h.join();
    }
    assert_eq!(count.load(Ordering::SeqCst), 50);
}
