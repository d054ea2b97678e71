//! Edge cases of a green thread's life: cancelled delayed spawns, hubs that go away.

mod common;

use std::time::Duration;

use common::{Watchdog, LONG};
use filature::green::{self, JoinTimeoutError};
use filature::hub;

#[test]
fn killing_a_delayed_spawn_settles_its_handle_at_once() {
    let _w = Watchdog::new("spawn_after kill", LONG);
    let h = green::spawn_after(Duration::from_secs(3600), || "ran");
    h.kill();
    match h.join_timeout(Duration::from_secs(10)) {
        Err(JoinTimeoutError::Failed(e)) => assert!(e.is_killed()),
        Err(JoinTimeoutError::TimedOut(_)) => {
            panic!("a delayed spawn killed before it started kept its joiner waiting")
        }
        Ok(v) => panic!("the killed delayed spawn ran: {v}"),
    }
}

#[test]
fn a_spawn_on_a_hub_whose_thread_exits_before_running_it_is_reported_killed() {
    let _w = Watchdog::new("spawn_on dead hub", LONG);
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        tx.send(hub::current()).unwrap();
        // Exit without ever running the hub.
        let _ = go_rx.recv();
    });
    let remote = rx.recv_timeout(LONG).unwrap();
    let h = remote.spawn(|| 1).unwrap();
    go_tx.send(()).unwrap();
    t.join().unwrap();
    match h.join_timeout(Duration::from_secs(10)) {
        Err(JoinTimeoutError::Failed(e)) => assert!(e.is_killed()),
        Err(JoinTimeoutError::TimedOut(_)) => {
            panic!("the joiner of a green thread that can never start waited forever")
        }
        Ok(v) => panic!("ran on a dead hub: {v}"),
    }
}

#[test]
fn a_killed_delayed_spawn_drops_its_closure_and_timer_promptly() {
    let _w = Watchdog::new("spawn_after drop", LONG);
    let drops = std::rc::Rc::new(std::cell::Cell::new(0));
    let d = common::DropCount(drops.clone());
    let h = green::spawn_after(Duration::from_secs(3600), move || {
        let _d = d;
    });
    assert_eq!(hub::stats().timers, 1);
    h.kill();
    assert!(h.join_result().unwrap_err().is_killed());
    assert_eq!(
        drops.get(),
        1,
        "the closure that will never run was dropped"
    );
    assert_eq!(hub::stats().timers, 0, "no timer lingers for an hour");
}

#[test]
fn a_delayed_spawn_killed_from_another_thread_settles_promptly() {
    let _w = Watchdog::new("spawn_after cross kill", LONG);
    let h = green::spawn_after(Duration::from_secs(3600), || 1);
    let done = filature::sync::Event::new();
    let d = done.clone();
    let t = std::thread::spawn(move || {
        h.kill();
        let r = match h.join_timeout(Duration::from_secs(10)) {
            Err(JoinTimeoutError::Failed(e)) => e.is_killed(),
            _ => false,
        };
        d.send(r).unwrap();
    });
    assert!(done.wait_timeout(LONG).unwrap().unwrap());
    t.join().unwrap();
}

#[test]
fn a_delayed_spawn_on_a_hub_whose_thread_exits_is_reported_killed() {
    let _w = Watchdog::new("spawn_after dead hub", LONG);
    let h = std::thread::spawn(|| green::spawn_after(Duration::from_secs(3600), || 1))
        .join()
        .unwrap();
    match h.join_timeout(Duration::from_secs(10)) {
        Err(JoinTimeoutError::Failed(e)) => assert!(e.is_killed()),
        Err(JoinTimeoutError::TimedOut(_)) => panic!("waited for a hub that is gone"),
        Ok(v) => panic!("ran: {v}"),
    }
}

#[test]
fn green_threads_left_parked_when_their_hub_thread_exits_are_reported_killed() {
    let _w = Watchdog::new("abandoned", LONG);
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(hub::current()).unwrap();
        hub::run();
    });
    let remote = rx.recv_timeout(LONG).unwrap();
    let parked = remote
        .spawn(|| green::sleep(Duration::from_secs(3600)))
        .unwrap();
    let started = filature::sync::Event::new();
    let s = started.clone();
    remote.call(move || s.send(()).unwrap()).unwrap();
    started.wait_timeout(LONG).unwrap().unwrap();
    remote.stop();
    t.join().unwrap();
    assert!(
        remote.call(|| ()).is_err(),
        "a hub whose thread exited refuses calls"
    );
    match parked.join_timeout(Duration::from_secs(10)) {
        Err(JoinTimeoutError::Failed(e)) => assert!(e.is_killed()),
        Err(JoinTimeoutError::TimedOut(_)) => panic!("waited for a green thread whose hub is gone"),
        Ok(()) => panic!("slept an hour"),
    }
}
