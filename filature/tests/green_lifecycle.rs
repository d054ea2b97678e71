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
