//! The main context: a plain thread (the test's own) waits on events and joins handles by driving
//! its hub; handles and events cross OS threads.

mod common;

use std::time::Duration;

use common::{Watchdog, LONG};
use filature::green;
use filature::hub;
use filature::sync::Event;

#[test]
fn main_context_waits_on_an_event_sent_by_a_green_thread() {
    let _w = Watchdog::new("main waits green", LONG);
    let ev = Event::new();
    let e = ev.clone();
    let _h = green::spawn(move || {
        green::sleep(Duration::from_millis(5));
        e.send("from green").unwrap();
    });
    assert_eq!(ev.wait_timeout(LONG).unwrap().unwrap(), "from green");
}

#[test]
fn main_context_waits_on_an_event_sent_by_another_os_thread() {
    let _w = Watchdog::new("main waits thread", LONG);
    let ev = Event::new();
    let e = ev.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        e.send(5).unwrap();
    });
    // Wait without a timeout too (the watchdog guards it): the hub must sleep and be woken.
    assert_eq!(ev.wait().unwrap(), 5);
    t.join().unwrap();
}

#[test]
fn a_plain_os_thread_waits_on_an_event_sent_by_a_green_thread_elsewhere() {
    let _w = Watchdog::new("thread waits green", LONG);
    let ev = Event::new();
    let e = ev.clone();
    let waiter = std::thread::spawn(move || e.wait_timeout(LONG).map(|r| r.unwrap()));
    let e = ev.clone();
    let h = green::spawn(move || {
        green::sleep(Duration::from_millis(10));
        e.send(11).unwrap();
    });
    h.join_timeout(LONG).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(11));
}

#[test]
fn a_join_handle_is_joined_from_another_os_thread() {
    let _w = Watchdog::new("cross-thread join", LONG);
    let h = green::spawn(|| {
        green::sleep(Duration::from_millis(10));
        String::from("joined elsewhere")
    });
    let done = Event::new();
    let d = done.clone();
    let t = std::thread::spawn(move || d.send(h.join()).unwrap());
    // This thread's hub runs the green thread while the other thread waits for it.
    assert_eq!(
        done.wait_timeout(LONG).unwrap().unwrap(),
        "joined elsewhere"
    );
    t.join().unwrap();
}

#[test]
fn main_context_joins_green_threads_of_its_own_hub() {
    let _w = Watchdog::new("main joins", LONG);
    let h = green::spawn(|| {
        green::sleep(Duration::from_millis(5));
        1
    });
    assert_eq!(h.join(), 1);
    let h = green::spawn(|| green::sleep(Duration::from_secs(3600)));
    let h = match h.join_timeout(Duration::from_millis(10)) {
        Err(green::JoinTimeoutError::TimedOut(h)) => h,
        other => panic!("expected a timeout, got {other:?}"),
    };
    assert!(!h.is_finished());
    h.kill();
    assert!(h.wait_timeout(LONG));
}

#[test]
fn hub_run_refuses_a_green_thread() {
    let _w = Watchdog::new("run in green", LONG);
    let h = green::spawn(hub::run);
    let e = h.join_result().unwrap_err();
    assert!(e
        .failure()
        .and_then(|f| f.panic_message())
        .unwrap()
        .contains("main context"));
}
