//! The cross-thread inbox: every posted call runs exactly once, FIFO per producer, and calls
//! posted during a drain run in a later pass.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Watchdog, LONG};
use filature::hub;
use filature::sync::{CountdownEvent, Event};

#[test]
fn eight_threads_post_ten_thousand_calls_each_exactly_once_in_order() {
    let _w = Watchdog::new("inbox flood", Duration::from_secs(120));
    const THREADS: usize = 8;
    const CALLS: u32 = 10_000;
    let here = hub::current();
    let seen: Arc<Mutex<Vec<Vec<u32>>>> = Arc::new(Mutex::new(vec![Vec::new(); THREADS]));
    let done = CountdownEvent::new(THREADS * CALLS as usize);
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (here, seen, done) = (here.clone(), seen.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..CALLS {
                    let (seen, done) = (seen.clone(), done.clone());
                    here.call(move || {
                        seen.lock().unwrap()[t].push(i);
                        done.count_down();
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    done.wait_timeout(Duration::from_secs(90))
        .expect("all calls ran");
    for p in producers {
        p.join().unwrap();
    }
    // Drive a little longer: nothing may run twice.
    filature::green::sleep(Duration::from_millis(20));
    let seen = seen.lock().unwrap();
    for (t, calls) in seen.iter().enumerate() {
        assert_eq!(calls.len(), CALLS as usize, "thread {t}");
        assert!(
            calls.iter().copied().eq(0..CALLS),
            "thread {t}: calls out of order or duplicated"
        );
    }
    assert_eq!(hub::stats().inbox, 0);
}

#[test]
fn a_call_posted_from_inside_a_call_runs_in_a_later_pass() {
    let _w = Watchdog::new("post from call", LONG);
    let here = hub::current();
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let done = Event::new();
    let (h, l, d) = (here.clone(), log.clone(), done.clone());
    here.call(move || {
        l.lock().unwrap().push("first");
        let (l2, d2) = (l.clone(), d.clone());
        h.call(move || {
            l2.lock().unwrap().push("posted from the call");
            d2.send(()).unwrap();
        })
        .unwrap();
        // Local callbacks run after the drain, in the same pass.
        let l3 = l.clone();
        hub::call_soon(move || l3.lock().unwrap().push("same pass, after the drain"));
    })
    .unwrap();
    done.wait_timeout(LONG).expect("ran").unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "first",
            "same pass, after the drain",
            "posted from the call"
        ]
    );
}

#[test]
fn calls_from_this_thread_and_call_soon_run_in_order() {
    let _w = Watchdog::new("local order", LONG);
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..5 {
        let l = log.clone();
        hub::call_soon(move || l.borrow_mut().push(i));
    }
    let done = Event::new();
    let d = done.clone();
    hub::call_soon(move || d.send(()).unwrap());
    done.wait_timeout(LONG).unwrap().unwrap();
    assert_eq!(*log.borrow(), [0, 1, 2, 3, 4]);
}

#[test]
fn a_hub_run_on_another_thread_serves_calls_and_stops() {
    let _w = Watchdog::new("hub::run", LONG);
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name("served-hub".into())
        .spawn(move || {
            tx.send(hub::current()).unwrap();
            hub::run();
            "stopped"
        })
        .unwrap();
    let remote = rx.recv_timeout(LONG).unwrap();
    assert!(!remote.is_current());
    assert!(hub::current().is_current());
    let got = Event::new();
    let g = got.clone();
    remote
        .call(move || {
            g.send(std::thread::current().name().map(str::to_owned))
                .unwrap()
        })
        .unwrap();
    assert_eq!(
        got.wait_timeout(LONG).unwrap().unwrap().as_deref(),
        Some("served-hub")
    );
    remote.stop();
    assert_eq!(t.join().unwrap(), "stopped");
}

fn repost(here: hub::HubHandle, stop: Arc<std::sync::atomic::AtomicBool>, count: Arc<Mutex<u64>>) {
    if stop.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    *count.lock().unwrap() += 1;
    let h = here.clone();
    here.call(move || repost(h, stop, count)).unwrap();
}

#[test]
fn a_call_that_keeps_reposting_itself_does_not_starve_timers_or_green_threads() {
    let _w = Watchdog::new("no starvation", LONG);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = Arc::new(Mutex::new(0));
    repost(hub::current(), stop.clone(), count.clone());
    let fired = Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    let _t = hub::call_later(Duration::from_millis(10), move || f.set(true));
    let green_ran = filature::green::spawn(|| {
        for _ in 0..10 {
            filature::green::yield_now();
        }
        "green ran"
    });
    common::drive_until(LONG, || fired.get() && green_ran.is_finished());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(green_ran.join(), "green ran");
    assert!(*count.lock().unwrap() > 1);
    // call_soon reposting itself is batched per pass too.
    let stop2 = Rc::new(std::cell::Cell::new(false));
    fn soon(stop: Rc<std::cell::Cell<bool>>) {
        if !stop.get() {
            hub::call_soon(move || soon(stop));
        }
    }
    soon(stop2.clone());
    let fired = Rc::new(std::cell::Cell::new(false));
    let f = fired.clone();
    let _t = hub::call_later(Duration::from_millis(5), move || f.set(true));
    common::drive_until(LONG, || fired.get());
    stop2.set(true);
}
