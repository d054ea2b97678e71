//! Kill: unwinding from every kind of park point with destructors run; before start; after
//! finish; from another OS thread.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::{drive_until, DropCount, Watchdog, LONG};
use filature::green::{self, JoinError, JoinTimeoutError};
use filature::sync::{Event, Queue, Semaphore};

fn expect_killed<T>(r: Result<T, JoinTimeoutError<T>>) {
    match r {
        Err(JoinTimeoutError::Failed(JoinError::Killed)) => {}
        Err(JoinTimeoutError::Failed(e)) => panic!("expected a kill, got {e}"),
        Err(JoinTimeoutError::TimedOut(_)) => panic!("the killed green thread did not finish"),
        Ok(_) => panic!("the killed green thread returned normally"),
    }
}

/// Spawns a green thread that holds a drop counter and parks in `park`; kills it once parked.
fn kill_while_parked(what: &'static str, park: impl FnOnce() + 'static) {
    let _w = Watchdog::new(what, LONG);
    let drops = Rc::new(Cell::new(0));
    let reached = Rc::new(Cell::new(false));
    let returned = Rc::new(Cell::new(false));
    let (d, r, ret) = (drops.clone(), reached.clone(), returned.clone());
    let h = green::spawn(move || {
        let _guard = DropCount(d);
        r.set(true);
        park();
        ret.set(true);
    });
    drive_until(LONG, || reached.get());
    // Let it really park.
    green::sleep(Duration::from_millis(5));
    assert!(!h.is_finished(), "{what}: the green thread did not park");
    assert_eq!(drops.get(), 0);
    h.kill();
    expect_killed(h.join_timeout(LONG));
    assert_eq!(
        drops.get(),
        1,
        "{what}: destructors on the killed stack ran once"
    );
    assert!(
        !returned.get(),
        "{what}: the park point did not return normally"
    );
}

#[test]
fn kill_while_sleeping() {
    kill_while_parked("sleep", || green::sleep(Duration::from_secs(3600)));
}

#[test]
fn kill_while_waiting_on_an_event() {
    let ev: Event<()> = Event::new();
    let e = ev.clone();
    kill_while_parked("event wait", move || {
        let _ = e.wait();
    });
    // No stale waiter left behind: a later send and wait work.
    ev.send(()).unwrap();
    ev.wait_timeout(LONG).unwrap().unwrap();
}

#[test]
fn kill_while_getting_from_an_empty_queue() {
    let q: Queue<u32> = Queue::unbounded();
    let q2 = q.clone();
    kill_while_parked("queue get", move || {
        q2.get();
    });
    assert_eq!(q.getting(), 0, "the killed getter is unlisted");
    q.put(1);
    assert_eq!(
        q.try_get().unwrap(),
        1,
        "the item is not lost to the killed getter"
    );
}

#[test]
fn kill_while_putting_into_a_full_queue() {
    let q: Queue<u32> = Queue::bounded(1);
    q.put(1);
    let q2 = q.clone();
    kill_while_parked("queue put", move || q2.put(2));
    assert_eq!(q.putting(), 0, "the killed putter is unlisted");
    assert_eq!(q.try_get().unwrap(), 1);
    assert!(
        q.try_get().is_err(),
        "the killed putter's item went with it"
    );
}

#[test]
fn kill_while_acquiring_a_semaphore() {
    let sem = Semaphore::new(0);
    let s = sem.clone();
    kill_while_parked("semaphore acquire", move || s.acquire());
    assert_eq!(sem.balance(), 0, "the killed waiter is unlisted");
    sem.release();
    assert_eq!(sem.available(), 1);
}

#[test]
fn kill_while_joining_another_green_thread() {
    let gate: Event<()> = Event::new();
    let g = gate.clone();
    let target = green::spawn(move || {
        let _ = g.wait();
        "target done"
    });
    let target_slot = Rc::new(Cell::new(None));
    let ts = target_slot.clone();
    let t_drops = Rc::new(Cell::new(0));
    let td = t_drops.clone();
    // The joiner owns the target's handle; the handle is dropped when the joiner unwinds.
    kill_while_parked("join", move || {
        let _d = DropCount(td);
        ts.set(Some(target.id()));
        target.join();
    });
    assert_eq!(t_drops.get(), 1);
    // The target is unaffected and finishes once released.
    gate.send(()).unwrap();
    green::sleep(Duration::from_millis(10));
    assert!(target_slot.take().is_some());
}

#[test]
fn kill_inside_with_timeout_is_a_kill_not_a_timeout() {
    let outcome = Rc::new(Cell::new(None));
    let o = outcome.clone();
    kill_while_parked("with_timeout", move || {
        let r = green::with_timeout(Duration::from_secs(3600), || {
            green::sleep(Duration::from_secs(7200))
        });
        o.set(Some(r.is_ok()));
    });
    assert_eq!(
        outcome.get(),
        None,
        "with_timeout must not swallow the kill"
    );
    assert_eq!(
        filature::hub::stats().timers,
        0,
        "the timeout's timer was disarmed"
    );
}

#[test]
fn kill_before_start_means_it_never_runs() {
    let _w = Watchdog::new("kill before start", LONG);
    let ran = Rc::new(Cell::new(false));
    let drops = Rc::new(Cell::new(0));
    let (r, d) = (ran.clone(), DropCount(drops.clone()));
    let h = green::spawn(move || {
        let _d = d;
        r.set(true);
    });
    h.kill();
    match h.join_result() {
        Err(JoinError::Killed) => {}
        other => panic!("expected Killed, got {:?}", other.map(|_| ())),
    }
    assert!(!ran.get());
    assert_eq!(drops.get(), 1, "the unstarted closure was dropped");
}

#[test]
fn kill_after_finish_is_a_no_op() {
    let _w = Watchdog::new("kill after finish", LONG);
    let h = green::spawn(|| 5);
    assert!(h.wait_timeout(LONG));
    assert!(h.is_finished());
    h.kill();
    h.kill();
    assert_eq!(h.join_timeout(LONG).unwrap(), 5);
}

#[test]
fn kill_twice_and_kill_all() {
    let _w = Watchdog::new("kill_all", LONG);
    let drops = Rc::new(Cell::new(0));
    let hs: Vec<_> = (0..5)
        .map(|_| {
            let d = drops.clone();
            green::spawn(move || {
                let _d = DropCount(d);
                green::sleep(Duration::from_secs(3600));
            })
        })
        .collect();
    green::sleep(Duration::from_millis(5));
    hs[0].kill();
    hs[0].kill();
    green::kill_all(&hs);
    assert!(hs.iter().all(|h| h.is_finished()));
    assert_eq!(drops.get(), 5);
    for h in hs {
        assert!(h.join_result().unwrap_err().is_killed());
    }
}

#[test]
fn kill_from_another_os_thread() {
    let _w = Watchdog::new("cross-thread kill", LONG);
    let parked: Event<()> = Event::new();
    let p = parked.clone();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dr = dropped.clone();
    let h = green::spawn(move || {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _f = Flag(dr);
        p.send(()).unwrap();
        green::sleep(Duration::from_secs(3600));
    });
    parked.wait_timeout(LONG).unwrap().unwrap();
    let done: Event<bool> = Event::new();
    let d = done.clone();
    // The handle (JoinHandle<()> is Send) moves to another OS thread, which kills and joins it
    // while this thread drives its hub.
    let killer = std::thread::spawn(move || {
        h.kill();
        let killed = match h.join_timeout(LONG) {
            Err(JoinTimeoutError::Failed(e)) => e.is_killed(),
            _ => false,
        };
        d.send(killed).unwrap();
    });
    assert!(done.wait_timeout(LONG).unwrap().unwrap());
    killer.join().unwrap();
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn a_destructor_that_blocks_while_a_kill_unwinds_does_not_abort() {
    let _w = Watchdog::new("blocking destructor", LONG);
    struct SlowDrop(Rc<Cell<u32>>);
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            // E.g. flushing through a bounded queue or waiting for a permit on the way out.
            green::sleep(Duration::from_millis(2));
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let h = green::spawn(move || {
        let _slow = SlowDrop(d);
        green::sleep(Duration::from_secs(3600));
    });
    green::sleep(Duration::from_millis(2));
    h.kill();
    expect_killed(h.join_timeout(LONG));
    assert_eq!(drops.get(), 1, "the blocking destructor finished");
}

#[test]
fn others_are_still_killable_while_one_is_suspended_half_way_through_unwinding() {
    let _w = Watchdog::new("kill during another's unwind", LONG);
    /// Blocks in its destructor until released (no race with a fixed sleep on a loaded
    /// machine), saying when it got there.
    struct SlowDrop(Rc<Cell<u32>>, Rc<Cell<bool>>, Rc<Event<()>>);
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            self.1.set(true);
            let _ = self.2.wait();
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(Cell::new(0));
    let inside = Rc::new(Cell::new(false));
    let release: Rc<Event<()>> = Rc::new(Event::new());
    let (d, i, r) = (drops.clone(), inside.clone(), release.clone());
    // A panics and blocks in a destructor on the way out; a kill meanwhile must not abort.
    let a = green::spawn(move || -> () {
        let _slow = SlowDrop(d, i, r);
        green::sleep(Duration::from_millis(1));
        panic!("a panics");
    });
    let d = drops.clone();
    let b = green::spawn(move || {
        let _d = DropCount(d);
        green::sleep(Duration::from_secs(3600));
    });
    drive_until(LONG, || inside.get()); // A is now inside SlowDrop
    assert!(!a.is_finished());
    a.kill();
    b.kill();
    expect_killed(b.join_timeout(LONG));
    assert!(!a.is_finished(), "A's destructor is still blocked");
    release.send(()).unwrap();
    let r = a.join_result();
    assert_eq!(
        r.unwrap_err().failure().and_then(|f| f.panic_message()),
        Some("a panics"),
        "the panic in progress is the outcome"
    );
    assert_eq!(drops.get(), 2);
}
