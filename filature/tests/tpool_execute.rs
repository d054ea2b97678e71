//! `tpool::execute`: bounded concurrency, borrowing, panics, nesting, and every calling context.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{panic_text, Watchdog, LONG};
use filature::green;
use filature::tpool::Tpool;

fn worker_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

#[test]
fn at_most_n_jobs_run_at_once_and_the_hub_keeps_running() {
    let _w = Watchdog::new("at_most_n", LONG);
    const N: usize = 3;
    let pool = Tpool::new("cap", N);
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..N + 5)
        .map(|i| {
            let (pool, active, peak) = (pool.clone(), active.clone(), peak.clone());
            green::spawn(move || {
                pool.execute(|| {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    active.fetch_sub(1, Ordering::SeqCst);
                    i * 10
                })
            })
        })
        .collect();
    // A green thread on the same hub that must keep ticking while the callers wait.
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    let d = done.clone();
    let ticker = green::spawn(move || {
        let mut ticks = 0;
        while !d.get() {
            green::sleep(Duration::from_millis(2));
            ticks += 1;
        }
        ticks
    });
    let results: Vec<_> = callers.into_iter().map(|c| c.join()).collect();
    done.set(true);
    let ticks = ticker.join();
    assert_eq!(results, (0..N + 5).map(|i| i * 10).collect::<Vec<_>>());
    assert_eq!(peak.load(Ordering::SeqCst), N, "exactly N jobs ran at once");
    // 8 jobs of 30 ms on 3 threads take >= 90 ms; a 2 ms ticker gets many turns meanwhile.
    assert!(
        ticks >= 10,
        "the hub stalled while callers waited: {ticks} ticks"
    );
    assert_eq!(pool.stats().workers, N);
}

#[test]
fn nested_execute_in_a_full_pool_runs_inline() {
    let _w = Watchdog::new("nested", LONG);
    let pool = Tpool::new("nested", 2);
    let all_busy = Arc::new(Barrier::new(2));
    let callers: Vec<_> = (0..2)
        .map(|i| {
            let (pool, all_busy) = (pool.clone(), all_busy.clone());
            green::spawn(move || {
                let inner_pool = pool.clone();
                pool.execute(move || {
                    all_busy.wait(); // both workers are now busy
                    let outer = worker_name();
                    let (inner, v) = inner_pool.execute(|| (worker_name(), i + 100));
                    assert_eq!(inner, outer, "the nested call ran inline");
                    v
                })
            })
        })
        .collect();
    let got: Vec<_> = callers.into_iter().map(|c| c.join()).collect();
    assert_eq!(got, [100, 101]);
}

#[test]
fn the_job_may_borrow_from_the_green_threads_stack() {
    let _w = Watchdog::new("borrow", LONG);
    let pool = Tpool::new("borrow", 2);
    let g = green::spawn(move || {
        let mut buf = [0u8; 64];
        pool.execute(|| buf.fill(7));
        let text = String::from("borrowed text");
        // A borrowed value comes back as itself.
        let word: &str = pool.execute(|| text.split(' ').next().unwrap());
        (buf, word.to_owned())
    });
    let (buf, word) = g.join();
    assert_eq!(buf, [7u8; 64]);
    assert_eq!(word, "borrowed");
}

#[test]
fn a_value_of_any_type_comes_back_as_itself() {
    let _w = Watchdog::new("any type", LONG);
    #[derive(Debug, PartialEq)]
    struct NotClone(Vec<String>);
    let pool = Tpool::new("types", 1);
    let v = pool.execute(|| NotClone(vec!["a".into(), "b".into()]));
    assert_eq!(v, NotClone(vec!["a".into(), "b".into()]));
    let r: Result<u8, std::num::ParseIntError> = pool.execute(|| "300".parse());
    assert!(r.is_err());
    pool.execute(|| ()); // unit
}

#[test]
fn a_panic_comes_back_to_the_caller_and_the_workers_survive() {
    let _w = Watchdog::new("panic", LONG);
    const N: usize = 2;
    let pool = Tpool::new("panic", N);
    let p = pool.clone();
    let caught = green::spawn(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.execute(|| -> u32 { panic!("boom {}", 42) })
        }))
        .map_err(|payload| panic_text(&*payload))
    })
    .join();
    assert_eq!(caught, Err("boom 42".to_owned()));
    // N jobs that can only finish together: all N workers are alive.
    let together = Arc::new(Barrier::new(N));
    let callers: Vec<_> = (0..N)
        .map(|_| {
            let (pool, together) = (pool.clone(), together.clone());
            green::spawn(move || {
                pool.execute(move || {
                    together.wait();
                    worker_name()
                })
            })
        })
        .collect();
    let mut names: Vec<_> = callers.into_iter().map(|c| c.join()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), N, "N distinct workers ran: {names:?}");
    assert_eq!(pool.stats().workers, N);
}

#[test]
fn execute_from_the_main_context_drives_the_hub() {
    let _w = Watchdog::new("main context", LONG);
    let pool = Tpool::new("main", 1);
    let ticked = std::rc::Rc::new(std::cell::Cell::new(0));
    let t = ticked.clone();
    let ticker = green::spawn(move || {
        for _ in 0..5 {
            green::sleep(Duration::from_millis(2));
            t.set(t.get() + 1);
        }
    });
    let mut buf = vec![0u8; 8];
    let name = pool.execute(|| {
        std::thread::sleep(Duration::from_millis(50));
        buf.fill(1);
        worker_name()
    });
    assert_eq!(buf, [1; 8]);
    assert_eq!(name, "filature-pool-tpool-main-1");
    assert_eq!(
        ticked.get(),
        5,
        "green threads ran while the main context waited"
    );
    ticker.join();
}

#[test]
fn execute_from_a_plain_os_thread() {
    let _w = Watchdog::new("os thread", LONG);
    let pool = Tpool::new("os", 2);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut local = [0u32; 4];
                let name = pool.execute(|| {
                    local.iter_mut().for_each(|x| *x = i);
                    worker_name()
                });
                (local, name)
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (local, name) = t.join().unwrap();
        assert_eq!(local, [i as u32; 4]);
        assert!(name.starts_with("filature-pool-tpool-os-"), "{name}");
    }
}

#[test]
fn execute_in_a_hub_callback_fails_loudly() {
    let _w = Watchdog::new("callback", LONG);
    let pool = Tpool::new("callback", 1);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let message = std::rc::Rc::new(std::cell::RefCell::new(None));
    let m = message.clone();
    filature::hub::call_soon(move || {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.execute(|| r.store(true, Ordering::SeqCst))
        }));
        *m.borrow_mut() = caught.err().map(|p| panic_text(&*p));
    });
    common::drive_until(LONG, || message.borrow().is_some());
    let message = message.borrow().clone().unwrap();
    assert!(message.contains("tpool::execute"), "{message}");
    assert!(message.contains("hub callback"), "{message}");
    assert!(!ran.load(Ordering::SeqCst));
}
