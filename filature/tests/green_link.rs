//! Links: listeners run on the green thread's hub at a later pass, from whatever thread they
//! were added; join_all raises the first failure.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{drive_until, hub_thread, panic_text, Watchdog, LONG};
use filature::green;
use filature::hub;
use filature::sync::Event;

#[test]
fn a_listener_runs_after_the_green_thread_ends_not_inside_it() {
    let _w = Watchdog::new("link order", LONG);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let h = green::spawn(move || {
        l.lock().unwrap().push("body");
        3
    });
    let l = log.clone();
    h.link(move |r| {
        let inside = green::current().is_some();
        l.lock()
            .unwrap()
            .push(if inside { "in green" } else { "listener" });
        assert_eq!(*r.as_ref().unwrap(), 3);
    });
    drive_until(LONG, || log.lock().unwrap().len() == 2);
    assert_eq!(*log.lock().unwrap(), ["body", "listener"]);
    // A listener added after the end runs too (at a later pass, not inside `link`).
    let l = log.clone();
    h.link_value(move |v| l.lock().unwrap().push(if *v == 3 { "late" } else { "bad" }));
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "link does not run the listener inline"
    );
    drive_until(LONG, || log.lock().unwrap().len() == 3);
    assert_eq!(h.join(), 3);
}

#[test]
fn a_listener_added_from_another_thread_after_the_end_is_not_lost() {
    let _w = Watchdog::new("cross-thread late link", LONG);
    let (remote, t) = hub_thread("link-hub");
    let h = remote.spawn(|| 5).unwrap();
    assert!(h.wait_timeout(LONG));
    // A plain OS thread that never drives its own hub links after the end: the listener must
    // still run (it used to be queued on the linking thread's hub and never ran).
    let ran = Event::new();
    let r = ran.clone();
    let linker = std::thread::spawn(move || {
        h.link(move |res| r.send(*res.as_ref().unwrap()).unwrap());
        h
    });
    let h = linker.join().unwrap();
    assert_eq!(
        ran.poll().map(|v| v.unwrap()),
        Some(5),
        "ran before link returned"
    );
    assert_eq!(h.join_timeout(LONG).unwrap(), 5);
    remote.stop();
    t.join().unwrap();
}

#[test]
fn a_listener_added_on_the_hub_thread_while_listeners_run_is_not_lost() {
    let _w = Watchdog::new("link during links", LONG);
    let slot: Arc<Mutex<Option<green::JoinHandle<u8>>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let h = green::spawn(|| 1u8);
    let (s, sn) = (slot.clone(), seen.clone());
    h.link(move |_| {
        sn.lock().unwrap().push("first");
        let sn2 = sn.clone();
        s.lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .link(move |_| sn2.lock().unwrap().push("added while running"));
    });
    *slot.lock().unwrap() = Some(h);
    drive_until(LONG, || seen.lock().unwrap().len() == 2);
    let h = slot.lock().unwrap().take().unwrap();
    assert_eq!(h.join_timeout(LONG).unwrap(), 1);
}

#[test]
fn join_all_raises_the_first_failure_without_waiting_for_the_rest() {
    let _w = Watchdog::new("join_all failure", LONG);
    let slow = green::spawn(|| green::sleep(Duration::from_secs(3600)));
    let bad = green::spawn(|| -> () {
        green::sleep(Duration::from_millis(2));
        panic!("first failure")
    });
    let later = green::spawn(|| -> () {
        green::sleep(Duration::from_millis(20));
        panic!("second failure")
    });
    let start = Instant::now();
    let handles = std::panic::AssertUnwindSafe(vec![slow, later, bad]);
    let p = std::panic::catch_unwind(move || green::join_all({ handles }.0)).unwrap_err();
    assert_eq!(panic_text(&*p), "first failure");
    assert!(start.elapsed() < Duration::from_secs(600));
}

#[test]
fn calls_to_a_hub_whose_thread_has_exited_are_rejected() {
    let _w = Watchdog::new("dead hub", LONG);
    let remote = std::thread::spawn(hub::current).join().unwrap();
    assert!(remote.call(|| ()).is_err());
    assert!(remote.spawn(|| ()).is_err());
}

/// Links a counting listener to `h` (a green thread returning `i`, the round), joins it and checks
/// that the listener ran before the join returned: `ran` counts the listeners of every round.
fn link_then_join(h: green::JoinHandle<u32>, i: u32, ran: &Arc<AtomicU32>) {
    let r = ran.clone();
    h.link(move |res| {
        assert_eq!(*res.as_ref().unwrap(), i);
        r.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(h.join(), i);
    // Whoever ran the listener, the join's lock orders its count before this read.
    assert_eq!(ran.load(Ordering::Relaxed), i + 1, "round {i}");
}

/// Issue 12, race A: a join from another thread trusted a "settled" flag read without the lock;
/// the hub could lend the outcome to the listeners before the join took it, and the join panicked
/// with "join outcome taken twice" (it took about 7,700 rounds). Race B from another thread: a
/// join that came before the hub's pass took the value and the listener never ran.
#[test]
fn a_join_from_another_thread_racing_the_listeners_gets_the_value_and_runs_them_once() {
    const ROUNDS: u32 = 20_000;
    let _w = Watchdog::new("cross-thread join vs links", 4 * LONG);
    let (remote, t) = hub_thread("join-race-hub");
    let ran = Arc::new(AtomicU32::new(0));
    for i in 0..ROUNDS {
        link_then_join(remote.spawn(move || i).unwrap(), i, &ran);
    }
    remote.stop();
    t.join().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), ROUNDS, "none ran twice");
}

/// Issue 12, race B: joined from the main context of the green thread's own thread, the join
/// took the value before the hub's pass that runs the listeners, and they were dropped (0 of
/// 1,000 ran). A join on the hub's thread now waits for that pass.
#[test]
fn every_listener_linked_before_a_join_from_the_main_context_runs_once() {
    const ROUNDS: u32 = 1_000;
    let _w = Watchdog::new("main-context join vs links", LONG);
    let ran = Arc::new(AtomicU32::new(0));
    for i in 0..ROUNDS {
        link_then_join(green::spawn(move || i), i, &ran);
    }
    // Let the hub run a few passes: nothing left to run, nothing runs twice.
    green::sleep(Duration::from_millis(5));
    assert_eq!(ran.load(Ordering::Relaxed), ROUNDS);
}

/// The same from a green thread on the same hub (this worked before; kept as the contrast).
#[test]
fn every_listener_linked_before_a_join_from_a_green_thread_runs_once() {
    const ROUNDS: u32 = 1_000;
    let _w = Watchdog::new("green join vs links", LONG);
    let ran = Arc::new(AtomicU32::new(0));
    let r = ran.clone();
    let joiner = green::spawn(move || {
        for i in 0..ROUNDS {
            link_then_join(green::spawn(move || i), i, &r);
        }
    });
    joiner.join();
    assert_eq!(ran.load(Ordering::Relaxed), ROUNDS);
}

/// Issue 12, trap 4 (eventlib's `proc` semantics): a listener that unlinks another that has not
/// run yet stops it, and `unlink` says so. Listeners used to be taken out all at once before the
/// first ran, so the unlink found nothing and returned false, and the other listener ran anyway.
#[test]
fn a_listener_that_unlinks_a_later_one_stops_it() {
    let _w = Watchdog::new("unlink during notification", LONG);
    type Slot = Arc<Mutex<Option<(green::JoinHandle<u8>, Vec<green::LinkId>)>>>;
    let slot: Slot = Arc::default();
    let log = Arc::new(Mutex::new(Vec::new()));
    let h = green::spawn(|| 1u8);
    let (s, l) = (slot.clone(), log.clone());
    let first = h.link(move |_| {
        let guard = s.lock().unwrap();
        let (h, ids) = guard.as_ref().unwrap();
        let itself = h.unlink(ids[0]);
        let second = h.unlink(ids[1]);
        l.lock()
            .unwrap()
            .push(format!("first: unlink itself {itself}, second {second}"));
    });
    let l = log.clone();
    let second = h.link(move |_| l.lock().unwrap().push("second".to_owned()));
    let l = log.clone();
    h.link(move |_| l.lock().unwrap().push("third".to_owned()));
    *slot.lock().unwrap() = Some((h, vec![first, second]));
    drive_until(LONG, || log.lock().unwrap().len() >= 2);
    green::sleep(Duration::from_millis(5));
    assert_eq!(
        *log.lock().unwrap(),
        ["first: unlink itself false, second true", "third"]
    );
    let (h, _) = slot.lock().unwrap().take().unwrap();
    assert_eq!(h.join_timeout(LONG).unwrap(), 1);
}
