//! Timers: creation order for equal deadlines, cancel/reset/delay, `active`, panics.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{drive_until, LogCapture, Watchdog, LONG};
use filature::green;
use filature::hub::{self, DelayedCall, DelayedCallError};

#[test]
fn equal_deadlines_fire_in_creation_order() {
    let _w = Watchdog::new("equal deadlines", LONG);
    let log = Rc::new(RefCell::new(Vec::new()));
    let timers: Vec<DelayedCall> = (0..20)
        .map(|i| {
            let l = log.clone();
            hub::call_later(Duration::from_millis(5), move || l.borrow_mut().push(i))
        })
        .collect();
    // Move every timer to exactly the last one's deadline, in reverse order, so the only thing
    // left to order them is when they were created.
    let at = timers.last().unwrap().time();
    for t in timers.iter().rev() {
        let by = at - t.time();
        t.delay(by).unwrap();
        assert_eq!(t.time(), at);
    }
    drive_until(LONG, || log.borrow().len() == 20);
    assert_eq!(*log.borrow(), (0..20).collect::<Vec<_>>());
}

#[test]
fn earlier_deadlines_fire_first() {
    let _w = Watchdog::new("deadline order", LONG);
    let log = Rc::new(RefCell::new(Vec::new()));
    let _t: Vec<_> = [30u64, 10, 20]
        .into_iter()
        .map(|ms| {
            let l = log.clone();
            hub::call_later(Duration::from_millis(ms), move || l.borrow_mut().push(ms))
        })
        .collect();
    drive_until(LONG, || log.borrow().len() == 3);
    assert_eq!(*log.borrow(), [10, 20, 30]);
}

#[test]
fn cancel_twice_and_cancel_after_the_call_are_distinct_errors() {
    let _w = Watchdog::new("cancel errors", LONG);
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    let dc = hub::call_later(Duration::from_millis(1), move || r.set(r.get() + 1));
    assert!(dc.active());
    dc.cancel().unwrap();
    assert!(!dc.active());
    assert_eq!(dc.cancel(), Err(DelayedCallError::AlreadyCancelled));
    assert_eq!(
        dc.reset(Duration::ZERO),
        Err(DelayedCallError::AlreadyCancelled)
    );
    green::sleep(Duration::from_millis(20));
    assert_eq!(ran.get(), 0, "a cancelled call never runs");

    let r = ran.clone();
    let dc = hub::call_later(Duration::ZERO, move || r.set(r.get() + 1));
    drive_until(LONG, || ran.get() == 1);
    assert!(!dc.active());
    assert_eq!(dc.cancel(), Err(DelayedCallError::AlreadyCalled));
    assert_eq!(
        dc.delay(Duration::from_secs(1)),
        Err(DelayedCallError::AlreadyCalled)
    );
    green::sleep(Duration::from_millis(5));
    assert_eq!(ran.get(), 1, "a call runs once");
    assert_eq!(hub::stats().timers, 0);
}

#[test]
fn a_running_call_is_not_active_and_cannot_be_cancelled() {
    let _w = Watchdog::new("active while running", LONG);
    let slot: Rc<RefCell<Option<DelayedCall>>> = Rc::default();
    let seen = Rc::new(RefCell::new(None));
    let (s, v) = (slot.clone(), seen.clone());
    let dc = hub::call_later(Duration::ZERO, move || {
        let me = s.borrow();
        let me = me.as_ref().unwrap();
        *v.borrow_mut() = Some((me.active(), me.cancel()));
    });
    *slot.borrow_mut() = Some(dc);
    drive_until(LONG, || seen.borrow().is_some());
    assert_eq!(
        seen.borrow().unwrap(),
        (false, Err(DelayedCallError::AlreadyCalled))
    );
}

#[test]
fn reset_and_delay_move_the_call() {
    let _w = Watchdog::new("reset/delay", LONG);
    let fired = Rc::new(Cell::new(None::<Instant>));
    let f = fired.clone();
    let start = Instant::now();
    let dc = hub::call_later(Duration::from_secs(3600), move || {
        f.set(Some(Instant::now()))
    });
    dc.reset(Duration::from_millis(10)).unwrap();
    assert!(dc.time() < start + Duration::from_secs(60));
    drive_until(LONG, || fired.get().is_some());
    assert!(fired.get().unwrap() >= start + Duration::from_millis(10));

    let fired2 = Rc::new(Cell::new(false));
    let f = fired2.clone();
    let dc = hub::call_later(Duration::from_millis(5), move || f.set(true));
    let before = dc.time();
    dc.delay(Duration::from_secs(3600)).unwrap();
    assert_eq!(dc.time(), before + Duration::from_secs(3600));
    green::sleep(Duration::from_millis(50));
    assert!(
        !fired2.get(),
        "a delayed call does not fire at its old time"
    );
    assert!(dc.active());
    // Moving it back earlier works too.
    dc.reset(Duration::ZERO).unwrap();
    drive_until(LONG, || fired2.get());
    assert!(!dc.active());
}

#[test]
fn a_panicking_timer_is_logged_and_other_timers_still_fire() {
    let _w = Watchdog::new("panicking timer", LONG);
    let logs = LogCapture::start();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let _a = hub::call_later(Duration::from_millis(1), move || {
        l.borrow_mut().push("before")
    });
    let _b = hub::call_later(Duration::from_millis(2), || panic!("timer went boom"));
    let l = log.clone();
    let _c = hub::call_later(Duration::from_millis(3), move || {
        l.borrow_mut().push("after")
    });
    drive_until(LONG, || log.borrow().len() == 2);
    assert_eq!(*log.borrow(), ["before", "after"]);
    assert_eq!(
        logs.count(&["timer callback panicked", "timer went boom"]),
        1
    );
    // The hub still works.
    let l = log.clone();
    let _d = hub::call_later(Duration::ZERO, move || l.borrow_mut().push("later"));
    drive_until(LONG, || log.borrow().len() == 3);
}
