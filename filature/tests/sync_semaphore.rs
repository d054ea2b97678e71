//! Semaphore and BoundedSemaphore: FIFO hand-off, killed/timed-out waiters lose or duplicate no
//! permit, over-release, cross-thread release.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{Watchdog, LONG};
use filature::green;
use filature::sync::{BoundedSemaphore, Semaphore};

const MS: Duration = Duration::from_millis(1);

#[test]
fn acquire_release_and_counts() {
    let sem = Semaphore::new(2);
    assert!(sem.try_acquire());
    assert!(sem.try_acquire());
    assert!(!sem.try_acquire());
    assert!(sem.locked());
    sem.release();
    assert_eq!(sem.available(), 1);
    {
        let _g = sem.access();
        assert_eq!(sem.available(), 0);
    }
    assert_eq!(sem.available(), 1);
    sem.release();
    sem.release();
    assert_eq!(sem.available(), 3, "a plain semaphore may grow");
}

#[test]
fn bounded_semaphore_refuses_over_release() {
    let sem = BoundedSemaphore::new(2);
    assert!(sem.release().is_err());
    sem.acquire();
    assert!(sem.release().is_ok());
    assert!(sem.release().is_err());
    assert_eq!(sem.available(), 2);
}

#[test]
fn acquire_timeout_gives_up_and_leaves_no_waiter() {
    let _w = Watchdog::new("acquire_timeout", LONG);
    let sem = Semaphore::new(0);
    assert!(!sem.acquire_timeout(5 * MS));
    assert_eq!(sem.balance(), 0);
    let s = sem.clone();
    let h = green::spawn(move || s.acquire_timeout(5 * MS));
    assert!(!h.join_timeout(LONG).unwrap());
    assert_eq!(sem.balance(), 0);
    sem.release();
    assert_eq!(sem.available(), 1, "no stale waiter took the permit");
}

#[test]
fn waiters_get_permits_in_fifo_order() {
    let _w = Watchdog::new("sem fifo", LONG);
    let sem = Semaphore::new(0);
    let log = Rc::new(RefCell::new(Vec::new()));
    let hs: Vec<_> = (0..6)
        .map(|i| {
            let (s, l) = (sem.clone(), log.clone());
            green::spawn(move || {
                s.acquire();
                l.borrow_mut().push(i);
            })
        })
        .collect();
    green::sleep(2 * MS);
    assert_eq!(sem.balance(), -6);
    for _ in 0..6 {
        sem.release();
    }
    green::join_all(hs);
    assert_eq!(*log.borrow(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(sem.available(), 0);
    // A newcomer does not overtake a waiter.
    let s = sem.clone();
    let waiter = green::spawn(move || s.acquire());
    green::sleep(2 * MS);
    sem.release();
    assert!(
        !sem.try_acquire(),
        "the released permit belongs to the waiter"
    );
    waiter.join_timeout(LONG).unwrap();
}

#[test]
fn a_killed_waiter_in_the_middle_loses_and_duplicates_nothing() {
    let _w = Watchdog::new("sem kill middle", LONG);
    let sem = Semaphore::new(0);
    let log = Rc::new(RefCell::new(Vec::new()));
    let hs: Vec<_> = ["A", "B", "C"]
        .into_iter()
        .map(|n| {
            let (s, l) = (sem.clone(), log.clone());
            green::spawn(move || {
                s.acquire();
                l.borrow_mut().push(n);
            })
        })
        .collect();
    green::sleep(2 * MS);
    assert_eq!(sem.balance(), -3);
    hs[1].kill();
    assert!(hs[1].wait_timeout(LONG));
    assert_eq!(sem.balance(), -2);
    sem.release();
    sem.release();
    let rs = green::join_all_results(hs);
    assert!(rs[0].is_ok() && rs[1].as_ref().unwrap_err().is_killed() && rs[2].is_ok());
    assert_eq!(*log.borrow(), ["A", "C"]);
    assert_eq!(sem.available(), 0);
    assert_eq!(sem.balance(), 0);
    sem.release();
    assert_eq!(sem.available(), 1);
}

#[test]
fn a_waiter_killed_after_being_granted_passes_the_permit_on() {
    let _w = Watchdog::new("sem granted kill", LONG);
    let sem = Semaphore::new(0);
    let (sa, sb) = (sem.clone(), sem.clone());
    let a = green::spawn(move || sa.acquire());
    let b = green::spawn(move || sb.acquire());
    green::sleep(2 * MS);
    sem.release(); // granted to A, which has not run yet
    a.kill();
    assert!(a.join_result().unwrap_err().is_killed());
    b.join_timeout(LONG).unwrap();
    assert_eq!(
        sem.available(),
        0,
        "exactly one permit existed and B holds it"
    );
    assert_eq!(sem.balance(), 0);

    // With nobody else waiting the permit goes back to the count.
    let sa = sem.clone();
    let a = green::spawn(move || sa.acquire());
    green::sleep(2 * MS);
    sem.release();
    a.kill();
    assert!(a.join_result().unwrap_err().is_killed());
    assert_eq!(sem.available(), 1);
}

#[test]
fn a_release_from_another_os_thread_wakes_a_green_waiter() {
    let _w = Watchdog::new("sem cross-thread", LONG);
    let sem = Semaphore::new(0);
    let s = sem.clone();
    let h = green::spawn(move || {
        s.acquire();
        "got it"
    });
    green::sleep(2 * MS);
    let s = sem.clone();
    let t = std::thread::spawn(move || s.release());
    assert_eq!(h.join_timeout(LONG).unwrap(), "got it");
    t.join().unwrap();
}

#[test]
fn an_os_thread_acquires_a_permit_released_by_a_green_thread() {
    let _w = Watchdog::new("sem OS waiter", LONG);
    let sem = BoundedSemaphore::new(1);
    sem.acquire();
    let s = sem.clone();
    let t = std::thread::spawn(move || s.acquire_timeout(LONG));
    std::thread::sleep(5 * MS);
    let s = sem.clone();
    green::spawn(move || s.release().unwrap())
        .join_timeout(LONG)
        .unwrap();
    assert!(t.join().unwrap());
    assert_eq!(sem.available(), 0);
}

#[test]
fn a_waiter_whose_timeout_fires_after_it_was_granted_passes_the_permit_on() {
    let _w = Watchdog::new("sem granted timeout", LONG);
    let sem = Semaphore::new(0);
    let (sa, sb) = (sem.clone(), sem.clone());
    let a = green::spawn(move || green::with_timeout(20 * MS, || sa.acquire()));
    let b = green::spawn(move || sb.acquire());
    green::sleep(2 * MS);
    assert_eq!(sem.balance(), -2);
    // Without driving the hub: A's timeout becomes due, then A is granted the permit. At the
    // next pass the timeout fires before A runs, so A unwinds holding a grant.
    std::thread::sleep(40 * MS);
    sem.release();
    assert_eq!(a.join_timeout(LONG).unwrap(), Err(filature::TimedOut));
    b.join_timeout(LONG).unwrap();
    assert_eq!(sem.available(), 0, "B holds the only permit");
    assert_eq!(sem.balance(), 0);
}
