//! Panics at every boundary: a green thread (re-raised by join, or logged once), a hub callback,
//! a link listener, a timer. The hub survives each. Blocking inside a hub callback panics with
//! the documented message.

mod common;

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{drive_until, panic_text, LogCapture, Watchdog, LONG};
use filature::green::{self, JoinError};
use filature::hub;
use filature::sync::{Event, Queue, Semaphore};

const UNJOINED: &str = "green thread panicked and nobody joined it";
const BLOCKING: &str = "cannot block inside a hub callback";

#[test]
fn join_re_raises_the_panic_with_its_message() {
    let _w = Watchdog::new("join re-raises", LONG);
    let logs = LogCapture::start();
    let h = green::spawn(|| -> u32 { panic!("green boom {}", 7) });
    let p = catch_unwind(AssertUnwindSafe(|| h.join())).unwrap_err();
    assert_eq!(panic_text(&*p), "green boom 7");
    let h = green::spawn(|| -> u32 { panic!("static boom") });
    let p = catch_unwind(AssertUnwindSafe(|| h.join())).unwrap_err();
    assert_eq!(panic_text(&*p), "static boom");
    // Joined failures are not logged as unhandled.
    assert_eq!(logs.count(&[UNJOINED]), 0);
    // The hub survives.
    assert_eq!(green::spawn(|| 1).join_timeout(LONG).unwrap(), 1);
}

#[test]
fn join_result_carries_the_failure() {
    let _w = Watchdog::new("join_result", LONG);
    let h = green::spawn(|| -> () { panic!("carried") });
    match h.join_result() {
        Err(JoinError::Panicked(f)) => {
            assert!(f.is_panic());
            assert_eq!(f.panic_message(), Some("carried"));
        }
        other => panic!("unexpected {:?}", other.is_ok()),
    }
}

#[test]
fn an_unjoined_panic_is_logged_once_when_the_handle_is_dropped_first() {
    let _w = Watchdog::new("unjoined, dropped first", LONG);
    let logs = LogCapture::start();
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    drop(green::spawn(move || {
        d.set(true);
        panic!("nobody cares 1")
    }));
    drive_until(LONG, || done.get());
    green::sleep(Duration::from_millis(10));
    assert_eq!(
        logs.count(&[UNJOINED, "nobody cares 1"]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(green::spawn(|| 2).join_timeout(LONG).unwrap(), 2);
}

#[test]
fn an_unjoined_panic_is_logged_once_when_the_handle_is_dropped_after() {
    let _w = Watchdog::new("unjoined, dropped after", LONG);
    let logs = LogCapture::start();
    let h = green::spawn(|| -> () { panic!("nobody cares 2") });
    assert!(h.wait_timeout(LONG));
    green::sleep(Duration::from_millis(5));
    assert_eq!(
        logs.count(&[UNJOINED]),
        0,
        "not logged while the handle lives"
    );
    drop(h);
    green::sleep(Duration::from_millis(5));
    assert_eq!(
        logs.count(&[UNJOINED, "nobody cares 2"]),
        1,
        "{}",
        logs.text()
    );
}

#[test]
fn call_in_green_thread_logs_its_failure_once() {
    let _w = Watchdog::new("call_in_green_thread", LONG);
    // `call_in_green_thread` runs on the reactor, so the capture is installed on the reactor's
    // thread, by a green thread there that stays parked (holding it) while the other one fails.
    let count = filature::reactor::defer_to_green_thread(|| {
        let logs = LogCapture::start();
        green::call_in_green_thread(|| panic!("fire and forget")).unwrap();
        let deadline = std::time::Instant::now() + LONG;
        while logs.count(&["fire and forget"]) == 0 {
            assert!(std::time::Instant::now() < deadline, "never logged");
            green::sleep(Duration::from_millis(1));
        }
        green::sleep(Duration::from_millis(10));
        logs.count(&[UNJOINED, "fire and forget"])
    });
    assert_eq!(green::block_on(&count).unwrap(), 1);
}

#[test]
fn a_link_exception_listener_observes_the_failure_so_it_is_not_logged() {
    let _w = Watchdog::new("link_exception", LONG);
    let logs = LogCapture::start();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let h = green::spawn(|| -> () { panic!("linked boom") });
    h.link_exception(move |e| {
        *s.lock().unwrap() = e
            .failure()
            .and_then(|f| f.panic_message().map(str::to_owned))
    });
    drop(h);
    drive_until(LONG, || seen.lock().unwrap().is_some());
    green::sleep(Duration::from_millis(5));
    assert_eq!(seen.lock().unwrap().as_deref(), Some("linked boom"));
    assert_eq!(logs.count(&[UNJOINED]), 0, "{}", logs.text());
}

#[test]
fn a_panicking_link_listener_is_logged_and_others_still_run() {
    let _w = Watchdog::new("link panic", LONG);
    let logs = LogCapture::start();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let h = green::spawn(|| 10);
    h.link(|_| panic!("listener boom"));
    let r = ran.clone();
    h.link_value(move |v| r.lock().unwrap().push(*v));
    let r = ran.clone();
    let id = h.link(move |_| r.lock().unwrap().push(-1));
    assert!(h.unlink(id));
    assert!(!h.unlink(id));
    drive_until(LONG, || !ran.lock().unwrap().is_empty());
    assert_eq!(*ran.lock().unwrap(), [10]);
    assert_eq!(logs.count(&["link listener panicked", "listener boom"]), 1);
    // The value is still there for the joiner, and the hub goes on.
    assert_eq!(h.join_timeout(LONG).unwrap(), 10);
    assert_eq!(green::spawn(|| 3).join_timeout(LONG).unwrap(), 3);
}

#[test]
fn a_panic_in_a_posted_call_and_in_call_soon_is_logged_and_the_hub_survives() {
    let _w = Watchdog::new("callback panic", LONG);
    let logs = LogCapture::start();
    let here = hub::current();
    here.call(|| panic!("posted boom")).unwrap();
    hub::call_soon(|| panic!("soon boom"));
    let done = Event::new();
    let d = done.clone();
    here.call(move || d.send(()).unwrap()).unwrap();
    done.wait_timeout(LONG).unwrap().unwrap();
    green::sleep(Duration::from_millis(5));
    assert_eq!(
        logs.count(&["panicked", "posted boom"]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(logs.count(&["panicked", "soon boom"]), 1, "{}", logs.text());
}

#[test]
fn a_panic_in_a_timer_is_logged_once_and_the_hub_survives() {
    let _w = Watchdog::new("timer panic", LONG);
    let logs = LogCapture::start();
    let _t = hub::call_later(Duration::from_millis(1), || panic!("timer boom"));
    drive_until(LONG, || logs.count(&["timer boom"]) > 0);
    green::sleep(Duration::from_millis(5));
    assert_eq!(logs.count(&["timer callback panicked", "timer boom"]), 1);
    assert_eq!(green::spawn(|| 4).join_timeout(LONG).unwrap(), 4);
}

/// Runs `block` as a hub callback three ways and checks each panics with the documented message,
/// caught and logged by the hub.
fn blocking_in_callbacks_panics(what: &str, block: impl Fn() + Clone + Send + 'static) {
    let logs = LogCapture::start();
    let reached = Arc::new(Mutex::new(0));
    let passed = Arc::new(Mutex::new(0));
    let mk = || {
        let (r, p, b) = (reached.clone(), passed.clone(), block.clone());
        move || {
            *r.lock().unwrap() += 1;
            b();
            *p.lock().unwrap() += 1;
        }
    };
    hub::call_soon(mk());
    let _t = hub::call_later(Duration::from_millis(1), mk());
    hub::current().call(mk()).unwrap();
    drive_until(LONG, || *reached.lock().unwrap() == 3);
    green::sleep(Duration::from_millis(5));
    assert_eq!(
        *passed.lock().unwrap(),
        0,
        "{what}: blocking call returned in a callback"
    );
    assert_eq!(
        logs.count(&["panicked", what, BLOCKING, "spawn a green thread"]),
        3,
        "{}",
        logs.text()
    );
    // The hub is fine afterwards.
    assert_eq!(green::spawn(|| 1).join_timeout(LONG).unwrap(), 1);
}

#[test]
fn blocking_on_an_event_in_a_hub_callback_panics() {
    let _w = Watchdog::new("block event", LONG);
    let ev: Event<()> = Event::new();
    blocking_in_callbacks_panics("Event::wait", move || {
        let _ = ev.wait();
    });
}

#[test]
fn sleeping_in_a_hub_callback_panics() {
    let _w = Watchdog::new("block sleep", LONG);
    blocking_in_callbacks_panics("green::sleep", || green::sleep(Duration::from_millis(1)));
}

#[test]
fn queue_semaphore_yield_and_join_in_a_hub_callback_panic() {
    let _w = Watchdog::new("block others", LONG);
    let q: Queue<u8> = Queue::unbounded();
    blocking_in_callbacks_panics("Queue::get", move || {
        q.get();
    });
    let s = Semaphore::new(0);
    blocking_in_callbacks_panics("Semaphore::acquire", move || s.acquire());
    blocking_in_callbacks_panics("green::yield_now", green::yield_now);
    let logs = LogCapture::start();
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    let target = green::spawn(|| green::sleep(Duration::from_millis(20)));
    hub::call_soon(move || {
        *d.borrow_mut() = true;
        target.join();
    });
    drive_until(LONG, || *done.borrow());
    green::sleep(Duration::from_millis(40));
    assert_eq!(
        logs.count(&["JoinHandle::join", BLOCKING]),
        1,
        "{}",
        logs.text()
    );
}

#[test]
fn blocking_in_a_link_listener_panics_and_is_logged() {
    let _w = Watchdog::new("block in listener", LONG);
    let logs = LogCapture::start();
    let ev: Event<()> = Event::new();
    let e = ev.clone();
    let h = green::spawn(|| 1);
    h.link(move |_| {
        let _ = e.wait();
    });
    drive_until(LONG, || logs.count(&["link listener panicked"]) > 0);
    assert_eq!(
        logs.count(&["link listener panicked", "Event::wait", BLOCKING]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(h.join_timeout(LONG).unwrap(), 1);
}
