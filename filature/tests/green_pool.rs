//! GreenPool: bounded concurrency, imap in input order, members spawning into their own pool.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::{Watchdog, LONG};
use filature::green::{self, GreenPool};

#[test]
fn at_most_size_members_run_at_once() {
    let _w = Watchdog::new("pool bound", LONG);
    let pool = GreenPool::new(3);
    let running = Rc::new(Cell::new(0));
    let max = Rc::new(Cell::new(0));
    let done = Rc::new(Cell::new(0));
    let hs: Vec<_> = (0..12)
        .map(|_| {
            let (r, m, d) = (running.clone(), max.clone(), done.clone());
            pool.spawn(move || {
                r.set(r.get() + 1);
                m.set(m.get().max(r.get()));
                green::sleep(Duration::from_millis(3));
                r.set(r.get() - 1);
                d.set(d.get() + 1);
            })
        })
        .collect();
    pool.wait_all();
    assert_eq!(done.get(), 12);
    assert_eq!(max.get(), 3, "the pool was used to its size and not beyond");
    assert_eq!(pool.running(), 0);
    assert_eq!(pool.free(), 3);
    for h in hs {
        h.join_timeout(LONG).unwrap();
    }
}

#[test]
fn try_spawn_gives_the_function_back_when_full() {
    let _w = Watchdog::new("pool try_spawn", LONG);
    let pool = GreenPool::new(1);
    let h = pool
        .try_spawn(|| green::sleep(Duration::from_millis(5)))
        .ok()
        .unwrap();
    let back = pool.try_spawn(|| 42).expect_err("full");
    assert_eq!(back(), 42);
    h.join_timeout(LONG).unwrap();
    assert!(pool.try_spawn(|| ()).is_ok());
    pool.wait_all();
}

#[test]
fn imap_yields_results_in_input_order_with_bounded_concurrency() {
    let _w = Watchdog::new("imap", LONG);
    let pool = GreenPool::new(4);
    let running = Rc::new(Cell::new(0));
    let max = Rc::new(Cell::new(0));
    let (r, m) = (running.clone(), max.clone());
    let out: Vec<u64> = pool
        .imap(0..20u64, move |i| {
            r.set(r.get() + 1);
            m.set(m.get().max(r.get()));
            // Later items finish first.
            green::sleep(Duration::from_millis(20 - i));
            r.set(r.get() - 1);
            i * 10
        })
        .collect();
    assert_eq!(out, (0..20).map(|i| i * 10).collect::<Vec<_>>());
    assert!(max.get() <= 4, "max {}", max.get());
    assert!(max.get() >= 2, "imap ran items concurrently");
}

#[test]
fn a_member_spawning_into_its_own_full_pool_does_not_deadlock() {
    let _w = Watchdog::new("pool self-spawn", LONG);
    let pool = Rc::new(GreenPool::new(1));
    let log = Rc::new(RefCell::new(Vec::new()));
    let (p, l) = (pool.clone(), log.clone());
    let outer = pool.spawn(move || {
        l.borrow_mut().push("outer");
        let l2 = l.clone();
        let inner = p.spawn(move || {
            l2.borrow_mut().push("inner");
            5
        });
        inner.join() + 1
    });
    assert_eq!(outer.join_timeout(LONG).unwrap(), 6);
    assert_eq!(*log.borrow(), ["outer", "inner"]);
    pool.wait_all();
}

#[test]
fn a_killed_or_panicking_member_frees_its_place() {
    let _w = Watchdog::new("pool release", LONG);
    let pool = GreenPool::new(1);
    let h = pool.spawn(|| green::sleep(Duration::from_secs(3600)));
    green::sleep(Duration::from_millis(2));
    assert_eq!(pool.free(), 0);
    h.kill();
    assert!(h.wait_timeout(LONG));
    assert_eq!(pool.free(), 1);
    let h = pool.spawn(|| -> () { panic!("member boom") });
    assert!(h.join_result().is_err());
    assert_eq!(pool.free(), 1);
    assert_eq!(pool.running(), 0);
}
