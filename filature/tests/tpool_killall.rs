//! `killall`: outstanding work finishes and is delivered, the threads are joined, and the pool
//! comes back on next use. Also the global pool's free functions.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Watchdog, LONG};
use filature::green;
use filature::tpool::{self, Tpool};

#[test]
fn killall_delivers_outstanding_results_and_the_pool_comes_back() {
    let _w = Watchdog::new("killall", LONG);
    let pool = Tpool::new("killall", 2);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            pool.spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                i
            })
        })
        .collect();
    // Green callers waiting in `execute` while another OS thread kills the pool.
    let callers: Vec<_> = (0..3)
        .map(|i| {
            let pool = pool.clone();
            green::spawn(move || {
                pool.execute(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    i * 100
                })
            })
        })
        .collect();
    green::sleep(Duration::from_millis(5)); // let the callers submit
    let killer = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.killall())
    };
    let got: Vec<_> = callers.into_iter().map(|c| c.join()).collect();
    assert_eq!(got, [0, 100, 200]);
    killer.join().unwrap();
    let values: Vec<_> = handles.into_iter().map(|h| h.wait()).collect();
    assert_eq!(values, [0, 1, 2, 3, 4, 5]);
    assert_eq!(pool.stats().workers, 0, "the workers were joined");
    // Usable again: a fresh pool.
    assert_eq!(pool.execute(|| 9), 9);
    assert_eq!(pool.stats().workers, 1);
    pool.killall();
    pool.killall(); // nothing to stop: a no-op
}

#[test]
fn killall_timeout_names_the_stuck_job_and_it_still_delivers() {
    let _w = Watchdog::new("killall timeout", LONG);
    let pool = Tpool::new("killall-timeout", 1);
    let h = pool.spawn(|| {
        std::thread::sleep(Duration::from_millis(150));
        "finished anyway"
    });
    while pool.stats().busy == 0 {
        std::thread::yield_now();
    }
    let err = pool.killall_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.stuck().len(), 1);
    assert!(err.stuck()[0]
        .thread_name()
        .starts_with("filature-pool-tpool-killall-timeout-"));
    assert_eq!(
        pool.stats().workers,
        0,
        "the old pool is gone from the Tpool"
    );
    assert_eq!(h.wait(), "finished anyway");
    assert_eq!(pool.execute(|| 1), 1);
}

#[test]
fn the_global_pool_free_functions() {
    let _w = Watchdog::new("global", LONG);
    tpool::set_num_threads(3);
    assert_eq!(tpool::global().num_threads(), 3);
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (active, peak) = (active.clone(), peak.clone());
            green::spawn(move || {
                tpool::execute(|| {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(15));
                    active.fetch_sub(1, Ordering::SeqCst);
                    std::thread::current().name().unwrap().to_owned()
                })
            })
        })
        .collect();
    for c in callers {
        assert!(c.join().starts_with("filature-pool-tpool-"));
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    let h = tpool::spawn(|| 5);
    tpool::killall();
    assert_eq!(h.wait(), 5);
    assert_eq!(tpool::global().stats().workers, 0);
    assert_eq!(tpool::execute(|| 6), 6);
    tpool::killall_timeout(LONG).unwrap();
}

#[test]
fn killall_from_a_green_thread_keeps_its_hub_running() {
    let _w = Watchdog::new("killall green", LONG);
    let pool = Tpool::new("killall-green", 1);
    let hub = filature::hub::current();
    // A job that can only finish if this thread's hub runs a call for it.
    let h = pool.spawn(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        hub.call(move || tx.send(7).unwrap()).unwrap();
        rx.recv().unwrap()
    });
    let p = pool.clone();
    let killer = green::spawn(move || p.killall());
    killer.join(); // the main context drives the hub; the killer parks
    assert_eq!(h.wait(), 7);
    assert_eq!(pool.stats().workers, 0);
}
