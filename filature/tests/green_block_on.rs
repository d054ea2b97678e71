//! `green::block_on`: futures and Deferreds from green threads and main contexts.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use filature::deferred::{fail, succeed, Deferred, Outcome, ResultTaken};
use filature::{green, hub, Failure, TimedOut};

#[test]
fn a_ready_future_returns_without_yielding() {
    let other_ran = Rc::new(Cell::new(false));
    let o = other_ran.clone();
    let h = green::spawn(move || {
        let o2 = o.clone();
        green::spawn(move || o2.set(true));
        let v = green::block_on(async { 5 });
        (v, o.get())
    });
    assert_eq!(h.join(), (5, false));
}

#[test]
fn a_fired_deferred_returns_without_yielding() {
    let other_ran = Rc::new(Cell::new(false));
    let o = other_ran.clone();
    let h = green::spawn(move || {
        let o2 = o.clone();
        green::spawn(move || o2.set(true));
        let d = succeed(3u8);
        let v = green::block_on(&d).unwrap();
        (v, o.get())
    });
    assert_eq!(h.join(), (3, false));
}

#[test]
fn a_green_thread_parks_until_the_future_is_woken_and_others_run_meanwhile() {
    let d = Deferred::<u32>::new();
    let d2 = d.clone();
    let waiter = green::spawn(move || green::block_on(async move { d2.await.unwrap() + 1 }));
    let firer = green::spawn(move || {
        green::sleep(Duration::from_millis(5));
        d.callback(41).unwrap();
    });
    assert_eq!(waiter.join(), 42);
    firer.join();
}

#[test]
fn the_main_context_waits_for_a_deferred_fired_from_another_os_thread() {
    let d = Deferred::<&'static str>::new();
    let d2 = d.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        d2.callback("across").unwrap();
    });
    assert_eq!(green::block_on(&d).unwrap(), "across");
}

#[test]
fn a_deferred_failure_comes_back_with_its_type_and_stays_for_later_callbacks() {
    let d = Deferred::<u32>::new();
    let d2 = d.clone();
    green::spawn(move || d2.errback(Failure::from_error(TimedOut)).unwrap());
    let f = green::block_on(&d).unwrap_err();
    assert!(f.is::<TimedOut>());
    // A callback added afterwards still sees the same failure.
    let later = green::spawn(move || {
        d.add_errback(move |f| {
            assert!(f.is::<TimedOut>());
            Outcome::Value(0)
        });
        d.result_now().unwrap().unwrap()
    });
    assert_eq!(later.join(), 0);
}

#[test]
fn an_already_failed_deferred_is_re_raised_at_once() {
    let d = fail::<()>(Failure::from_error(std::io::Error::other("gone")));
    let f = green::block_on(&d).unwrap_err();
    assert_eq!(
        f.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "gone"
    );
}

#[test]
fn a_deferred_paused_on_an_inner_one_is_waited_for_to_the_end() {
    let inner = Deferred::<u32>::new();
    let outer = Deferred::<u32>::new();
    let i2 = inner.clone();
    outer.add_callback(move |_| Outcome::Wait(i2));
    outer.callback(0).unwrap();
    let i3 = inner.clone();
    hub::call_later(Duration::from_millis(5), move || i3.callback(8).unwrap());
    assert_eq!(green::block_on(&outer).unwrap(), 8);
}

#[test]
fn a_deferred_by_value_is_awaited_and_its_result_moved_out() {
    let d = succeed(1u8);
    assert_eq!(green::block_on(d.clone()).unwrap(), 1);
    assert!(d.result_now().unwrap().unwrap_err().is::<ResultTaken>());
}

#[test]
fn block_on_inside_a_hub_callback_panics() {
    let r = std::sync::Arc::new(std::sync::Mutex::new(None));
    let r2 = r.clone();
    hub::call_soon(move || {
        let caught = std::panic::catch_unwind(|| green::block_on(std::future::pending::<()>()));
        *r2.lock().unwrap() = Some(caught.is_err());
    });
    green::sleep(Duration::from_millis(5));
    assert_eq!(*r.lock().unwrap(), Some(true));
}
