//! Event: send/send_err/wait/poll/ready/reset/wait_timeout, FIFO wake order, no stale waiters,
//! cross-thread wake-ups; CountdownEvent.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{drive_until, Watchdog, LONG};
use filature::green;
use filature::sync::{CountdownEvent, Event};
use filature::{Failure, TimedOut};

#[test]
fn send_poll_ready_reset_and_already_sent() {
    let ev: Event<u32> = Event::new();
    assert!(!ev.ready());
    assert!(ev.poll().is_none());
    ev.send(1).unwrap();
    assert!(ev.ready());
    assert_eq!(ev.poll().unwrap().unwrap(), 1);
    assert!(ev.send(2).is_err(), "a second send is AlreadySent");
    assert_eq!(ev.wait().unwrap(), 1, "the first value stays");
    ev.reset();
    assert!(!ev.ready());
    ev.send(3).unwrap();
    assert_eq!(ev.wait().unwrap(), 3);
}

#[test]
fn send_err_reaches_every_waiter() {
    let _w = Watchdog::new("send_err", LONG);
    let ev: Event<u32> = Event::new();
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let e = ev.clone();
            green::spawn(move || e.wait().map_err(|f| f.to_string()))
        })
        .collect();
    green::sleep(Duration::from_millis(2));
    ev.send_err(Failure::from_error(std::io::Error::other("disk on fire")))
        .unwrap();
    for h in hs {
        assert_eq!(
            h.join_timeout(LONG).unwrap(),
            Err("disk on fire".to_owned())
        );
    }
    assert!(ev.poll().unwrap().unwrap_err().is::<std::io::Error>());
}

#[test]
fn wait_timeout_times_out_and_leaves_no_waiter() {
    let _w = Watchdog::new("event wait_timeout", LONG);
    let ev: Event<u32> = Event::new();
    let e = ev.clone();
    let h = green::spawn(move || e.wait_timeout(Duration::from_millis(5)).map(|r| r.unwrap()));
    assert_eq!(h.join_timeout(LONG).unwrap(), Err(TimedOut));
    assert_eq!(
        ev.wait_timeout(Duration::from_millis(5)).map(|_| ()),
        Err(TimedOut)
    );
    assert!(format!("{ev:?}").contains("waiters: 0"), "{ev:?}");
    ev.send(4).unwrap();
    assert_eq!(ev.wait_timeout(LONG).unwrap().unwrap(), 4);
}

#[test]
fn waiters_wake_in_fifo_order() {
    let _w = Watchdog::new("event fifo", LONG);
    let ev: Event<()> = Event::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let hs: Vec<_> = (0..8)
        .map(|i| {
            let (e, l) = (ev.clone(), log.clone());
            green::spawn(move || {
                e.wait().unwrap();
                l.borrow_mut().push(i);
            })
        })
        .collect();
    green::sleep(Duration::from_millis(2));
    ev.send(()).unwrap();
    for h in hs {
        h.join_timeout(LONG).unwrap();
    }
    assert_eq!(*log.borrow(), (0..8).collect::<Vec<_>>());
}

#[test]
fn a_killed_waiter_leaves_no_stale_entry_and_others_still_wake() {
    let _w = Watchdog::new("event kill", LONG);
    let ev: Event<u32> = Event::new();
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let e = ev.clone();
            green::spawn(move || e.wait().unwrap())
        })
        .collect();
    green::sleep(Duration::from_millis(2));
    hs[1].kill();
    assert!(hs[1].wait_timeout(LONG));
    assert!(format!("{ev:?}").contains("waiters: 2"), "{ev:?}");
    ev.send(9).unwrap();
    let rs = green::join_all_results(hs);
    assert_eq!(*rs[0].as_ref().unwrap(), 9);
    assert!(rs[1].as_ref().unwrap_err().is_killed());
    assert_eq!(*rs[2].as_ref().unwrap(), 9);
}

#[test]
fn a_send_from_another_os_thread_wakes_a_green_waiter() {
    let _w = Watchdog::new("event cross-thread", LONG);
    let ev: Event<&'static str> = Event::new();
    let e = ev.clone();
    let h = green::spawn(move || e.wait().unwrap());
    green::sleep(Duration::from_millis(2));
    let e = ev.clone();
    let t = std::thread::spawn(move || e.send("over the wall").unwrap());
    assert_eq!(h.join_timeout(LONG).unwrap(), "over the wall");
    t.join().unwrap();
}

#[test]
fn a_send_from_another_hubs_green_thread_wakes_a_waiter_here() {
    let _w = Watchdog::new("event cross-hub", LONG);
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(filature::hub::current()).unwrap();
        filature::hub::run();
    });
    let remote = rx.recv_timeout(LONG).unwrap();
    let ev: Event<u8> = Event::new();
    let e = ev.clone();
    let waiter = green::spawn(move || e.wait().unwrap());
    let e = ev.clone();
    remote
        .spawn(move || {
            green::sleep(Duration::from_millis(5));
            e.send(8).unwrap();
        })
        .unwrap();
    assert_eq!(waiter.join_timeout(LONG).unwrap(), 8);
    remote.stop();
    t.join().unwrap();
}

#[test]
fn countdown_event_releases_waiters_at_zero() {
    let _w = Watchdog::new("countdown", LONG);
    let cd = CountdownEvent::new(0);
    cd.wait_timeout(LONG).unwrap();
    cd.add(2);
    assert_eq!(cd.count(), 2);
    assert_eq!(cd.wait_timeout(Duration::from_millis(5)), Err(TimedOut));
    let c = cd.clone();
    let waiter = green::spawn(move || c.wait());
    cd.count_down();
    green::sleep(Duration::from_millis(2));
    assert!(!waiter.is_finished());
    let c = cd.clone();
    let t = std::thread::spawn(move || c.count_down());
    waiter.join_timeout(LONG).unwrap();
    t.join().unwrap();
    assert_eq!(cd.count(), 0);
    cd.count_down();
    assert_eq!(cd.count(), 0, "counting down at zero stays at zero");
    cd.add(1);
    let c = cd.clone();
    let h = green::spawn(move || c.wait_timeout(Duration::from_millis(5)));
    assert_eq!(h.join_timeout(LONG).unwrap(), Err(TimedOut));
    cd.count_down();
    drive_until(LONG, || cd.wait_timeout(Duration::ZERO).is_ok());
}

#[test]
fn a_waiter_released_by_a_send_still_gets_it_after_a_reset_before_it_ran() {
    let _w = Watchdog::new("send then reset", LONG);
    let ev: Event<u32> = Event::new();
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let e = ev.clone();
            green::spawn(move || e.wait_timeout(Duration::from_secs(10)).map(|r| r.unwrap()))
        })
        .collect();
    green::sleep(Duration::from_millis(2));
    ev.send(5).unwrap();
    ev.reset(); // before any waiter ran
    for h in hs {
        assert_eq!(h.join_timeout(LONG).unwrap(), Ok(5), "the send released it");
    }
    // A waiter arriving after the reset waits for the next send.
    assert_eq!(
        ev.wait_timeout(Duration::from_millis(5)).map(|_| ()),
        Err(TimedOut)
    );
    ev.send(6).unwrap();
    assert_eq!(ev.wait().unwrap(), 6);
}

#[test]
fn countdown_waiters_are_released_even_if_the_count_goes_up_again_at_once() {
    let _w = Watchdog::new("countdown pulse", LONG);
    let cd = CountdownEvent::new(1);
    let c = cd.clone();
    let waiter = green::spawn(move || c.wait_timeout(Duration::from_secs(10)));
    green::sleep(Duration::from_millis(2));
    cd.count_down(); // zero: releases the waiter
    cd.add(1); // and up again before it ran
    assert_eq!(waiter.join_timeout(LONG).unwrap(), Ok(()));
    assert_eq!(cd.count(), 1);
}

/// Issue 12, trap 7: eventlet's `reset` asserts that the event was sent; ours documents a no-op.
/// Resetting a fresh event (twice) changes nothing: a waiter keeps waiting and gets the next send.
#[test]
fn reset_of_an_event_that_was_never_sent_does_nothing() {
    let _w = Watchdog::new("reset of a fresh event", LONG);
    let ev: Event<u32> = Event::new();
    let e = ev.clone();
    let waiter = green::spawn(move || e.wait().unwrap());
    green::sleep(Duration::from_millis(2)); // the waiter is waiting
    ev.reset();
    ev.reset();
    assert!(!ev.ready());
    assert!(ev.poll().is_none());
    green::sleep(Duration::from_millis(2));
    assert!(!waiter.is_finished(), "a reset does not release a waiter");
    ev.send(5).unwrap();
    assert_eq!(waiter.join_timeout(LONG).unwrap(), 5);
    assert_eq!(ev.send(6), Err(filature::sync::AlreadySent));
}
