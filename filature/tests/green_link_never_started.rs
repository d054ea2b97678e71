//! Link listeners of green threads that never start because their hub shuts down first (a
//! delayed spawn still waiting, or killed while waiting) run once, with `Killed`, like every
//! other listener. They used to be dropped without running (found by the soak).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use filature::green::{self, JoinError};
use filature::hub;

/// Runs `body` on a thread of its own and returns what the listener it links saw.
fn listener_outcomes(
    body: impl FnOnce(Box<dyn FnOnce(bool) + Send>) + Send + 'static,
) -> Vec<bool> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || body(Box::new(move |killed| tx.send(killed).unwrap())))
        .join()
        .unwrap();
    rx.try_iter().collect()
}

#[test]
fn delayed_spawn_pending_at_scope_end() {
    let seen = listener_outcomes(|tell| {
        hub::scope(|| {
            let h = green::spawn_after(Duration::from_secs(60), || 1);
            h.link(move |r| tell(matches!(r, Err(JoinError::Killed))));
        })
    });
    assert_eq!(seen, [true]);
}

#[test]
fn delayed_spawn_killed_before_scope_end() {
    let seen = listener_outcomes(|tell| {
        hub::scope(|| {
            let h = green::spawn_after(Duration::from_secs(60), || 1);
            h.link(move |r| tell(matches!(r, Err(JoinError::Killed))));
            h.kill();
        })
    });
    assert_eq!(seen, [true]);
}

#[test]
fn delayed_spawn_pending_when_a_plain_thread_ends() {
    let seen = listener_outcomes(|tell| {
        let h = green::spawn_after(Duration::from_secs(60), || 1);
        h.link(move |r| tell(matches!(r, Err(JoinError::Killed))));
        let parked = green::spawn(|| green::sleep(Duration::from_secs(60)));
        green::sleep(Duration::from_millis(1)); // runs a green thread: the exit hook is armed
        drop(parked);
    });
    assert_eq!(seen, [true]);
}

#[test]
fn delayed_spawn_listener_runs_once_and_join_agrees() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        hub::scope(|| {
            let h = green::spawn_after(Duration::from_secs(60), || 1);
            h.link(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            });
            tx.send(h).unwrap();
        })
    })
    .join()
    .unwrap();
    let h = rx.recv().unwrap();
    assert!(h.join_result().unwrap_err().is_killed());
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

/// A plain thread (no scope, no exit hook: no green thread is alive at its last wait) whose green
/// thread ended in its last pass, or which linked a finished green thread and then ended: the
/// listener was queued for a next pass that never came, and was dropped unrun.
#[test]
fn listener_queued_when_a_plain_thread_ends() {
    let ended_in_last_pass = listener_outcomes(|tell| {
        let h = green::spawn(|| 1);
        h.link(move |r| tell(matches!(r, Ok(1))));
        green::sleep(Duration::ZERO); // the green thread runs and ends; its listener is queued
    });
    assert_eq!(ended_in_last_pass, [true]);
    let linked_after_the_end = listener_outcomes(|tell| {
        let h = green::spawn(|| 1);
        green::sleep(Duration::from_millis(1));
        h.link(move |r| tell(matches!(r, Ok(1)))); // queued for the hub's next pass
    });
    assert_eq!(linked_after_the_end, [true]);
}
