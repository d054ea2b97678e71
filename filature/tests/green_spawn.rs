//! Spawning green threads: order, no switch on spawn, `!Send` captures, yield, sleep, `current`,
//! `spawn_after`, `Builder`, `spawn_on` another hub.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{drive_until, hub_thread, Watchdog, LONG};
use filature::green::{self, Builder, JoinTimeoutError};
use filature::hub;

#[test]
fn green_threads_start_in_spawn_order_and_spawn_does_not_switch() {
    let _w = Watchdog::new("start order", LONG);
    let log = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let l = log.clone();
            green::spawn(move || l.borrow_mut().push(i))
        })
        .collect();
    assert!(
        log.borrow().is_empty(),
        "spawn must not run the green thread"
    );
    let outer = log.clone();
    let h = green::spawn(move || {
        let l = outer.clone();
        let inner = green::spawn(move || l.borrow_mut().push(100));
        outer.borrow_mut().push(99); // still running: spawning did not switch
        inner.join();
    });
    for h in handles {
        h.join_timeout(LONG).unwrap();
    }
    h.join_timeout(LONG).unwrap();
    assert_eq!(*log.borrow(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99, 100]);
}

#[test]
fn not_send_closures_and_values_are_allowed_on_the_current_hub() {
    let _w = Watchdog::new("!Send", LONG);
    let shared = Rc::new(Cell::new(1));
    let s = shared.clone();
    let h = green::spawn(move || {
        s.set(s.get() + 41);
        Rc::new(s.get())
    });
    assert_eq!(*h.join_timeout(LONG).unwrap(), 42);
    assert_eq!(shared.get(), 42);
}

#[test]
fn yield_now_lets_every_other_ready_green_thread_run_once() {
    let _w = Watchdog::new("yield", LONG);
    let log = Rc::new(RefCell::new(Vec::new()));
    let mk = |name: &'static str, yields: usize| {
        let l = log.clone();
        green::spawn(move || {
            for i in 0..=yields {
                l.borrow_mut().push(format!("{name}{i}"));
                if i < yields {
                    green::yield_now();
                }
            }
        })
    };
    let hs = vec![mk("a", 2), mk("b", 1), mk("c", 0)];
    for h in hs {
        h.join_timeout(LONG).unwrap();
    }
    assert_eq!(*log.borrow(), ["a0", "b0", "c0", "a1", "b1", "a2"]);
    // Alone on the hub, yield_now returns at once.
    green::spawn(green::yield_now).join_timeout(LONG).unwrap();
}

#[test]
fn sleep_waits_at_least_its_duration_and_others_run_meanwhile() {
    let _w = Watchdog::new("sleep", LONG);
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let start = Instant::now();
    let slow = green::spawn(move || {
        green::sleep(Duration::from_millis(30));
        l.borrow_mut().push("slow");
        Instant::now()
    });
    let l = log.clone();
    let fast = green::spawn(move || l.borrow_mut().push("fast"));
    fast.join_timeout(LONG).unwrap();
    let woke = slow.join_timeout(LONG).unwrap();
    assert!(woke - start >= Duration::from_millis(30));
    assert_eq!(*log.borrow(), ["fast", "slow"]);
    // Main context: sleep drives the hub.
    let t = Instant::now();
    green::sleep(Duration::from_millis(10));
    assert!(t.elapsed() >= Duration::from_millis(10));
}

#[test]
fn current_reports_id_and_name() {
    let _w = Watchdog::new("current", LONG);
    assert!(green::current().is_none());
    assert!(!green::in_green_thread());
    let h = Builder::new().name("worker-7").spawn(|| {
        let c = green::current().unwrap();
        (
            c.id(),
            c.name().map(str::to_owned),
            green::in_green_thread(),
        )
    });
    let id = h.id();
    assert_eq!(h.name(), Some("worker-7"));
    let (seen_id, name, inside) = h.join_timeout(LONG).unwrap();
    assert_eq!(seen_id, id);
    assert_eq!(name.as_deref(), Some("worker-7"));
    assert!(inside);
    let unnamed = green::spawn(|| green::current().unwrap().name().map(str::to_owned));
    assert_ne!(unnamed.id(), id);
    assert_eq!(unnamed.join_timeout(LONG).unwrap(), None);
    // A hub callback is not a green thread.
    let seen = Rc::new(Cell::new(Some(true)));
    let s = seen.clone();
    hub::call_soon(move || s.set(Some(green::current().is_some())));
    drive_until(LONG, || seen.get() == Some(false));
}

#[test]
fn spawn_after_starts_later_and_a_kill_before_then_cancels_it() {
    let _w = Watchdog::new("spawn_after", LONG);
    let start = Instant::now();
    let h = green::spawn_after(Duration::from_millis(20), Instant::now);
    let ran_at = h.join_timeout(LONG).unwrap();
    assert!(ran_at - start >= Duration::from_millis(20));

    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = green::spawn_after(Duration::from_millis(10), move || r.set(true));
    h.kill();
    let err = match h.join_timeout(LONG) {
        Err(JoinTimeoutError::Failed(e)) => e,
        other => panic!("expected a kill, got {other:?}"),
    };
    assert!(err.is_killed());
    green::sleep(Duration::from_millis(30));
    assert!(
        !ran.get(),
        "a green thread killed before it started never runs"
    );
}

#[test]
fn builder_stack_size_is_usable() {
    let _w = Watchdog::new("stack size", LONG);
    fn use_stack(depth: usize) -> u64 {
        let buf = std::hint::black_box([depth as u8; 1024]);
        if depth == 0 {
            buf[0] as u64
        } else {
            use_stack(depth - 1) + buf[1] as u64
        }
    }
    // ~1.5 MiB of frames: needs a big stack.
    let h = Builder::new()
        .stack_size(4 * 1024 * 1024)
        .spawn(|| use_stack(1500));
    assert!(h.join_timeout(LONG).unwrap() > 0);
    let small = Builder::new().stack_size(16 * 1024).spawn(|| 5);
    assert_eq!(small.join_timeout(LONG).unwrap(), 5);
}

#[test]
fn spawn_on_runs_on_another_hubs_thread() {
    let _w = Watchdog::new("spawn_on", LONG);
    let (remote, t) = hub_thread("other-hub");
    let h = Builder::new()
        .name("visitor")
        .spawn_on(&remote, || {
            green::sleep(Duration::from_millis(5));
            (
                std::thread::current().name().map(str::to_owned),
                green::current().unwrap().name().map(str::to_owned),
            )
        })
        .unwrap();
    let (thread, name) = h.join_timeout(LONG).unwrap();
    assert_eq!(thread.as_deref(), Some("other-hub"));
    assert_eq!(name.as_deref(), Some("visitor"));
    let h2 = remote.spawn(|| 7).unwrap();
    assert_eq!(h2.join_timeout(LONG).unwrap(), 7);
    remote.stop();
    t.join().unwrap();
}

#[test]
fn join_all_and_join_all_results_keep_input_order() {
    let _w = Watchdog::new("join_all", LONG);
    let hs: Vec<_> = (0..5u64)
        .map(|i| {
            green::spawn(move || {
                green::sleep(Duration::from_millis(10 * (5 - i)));
                i
            })
        })
        .collect();
    assert_eq!(green::join_all(hs), [0, 1, 2, 3, 4]);
    let hs = vec![
        green::spawn(|| 1),
        green::spawn(|| panic!("nope")),
        green::spawn(|| 3),
    ];
    let rs = green::join_all_results(hs);
    assert_eq!(*rs[0].as_ref().unwrap(), 1);
    assert_eq!(
        rs[1]
            .as_ref()
            .unwrap_err()
            .failure()
            .unwrap()
            .panic_message(),
        Some("nope")
    );
    assert_eq!(*rs[2].as_ref().unwrap(), 3);
}

#[test]
fn a_join_handle_is_a_future() {
    let _w = Watchdog::new("future", LONG);
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let flag = Arc::new(Flag(false.into()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut h = pin!(green::spawn(|| 9));
    assert!(h.as_mut().poll(&mut cx).is_pending());
    drive_until(LONG, || flag.0.load(std::sync::atomic::Ordering::SeqCst));
    match h.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(9)) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn finished_and_killed_green_threads_leave_nothing_behind_on_the_hub() {
    let _w = Watchdog::new("stats", LONG);
    let before = hub::stats();
    let hs: Vec<_> = (0..10)
        .map(|i| green::spawn(move || green::sleep(Duration::from_millis(i))))
        .collect();
    assert_eq!(hub::stats().green_threads, before.green_threads + 10);
    let unstarted = green::spawn(|| ());
    unstarted.kill();
    let parked = green::spawn(|| green::sleep(Duration::from_secs(3600)));
    green::join_all(hs);
    parked.kill();
    assert!(parked.join_result().unwrap_err().is_killed());
    assert!(unstarted.join_result().unwrap_err().is_killed());
    let after = hub::stats();
    assert_eq!(after.green_threads, before.green_threads);
    assert_eq!(after.ready, 0);
    assert_eq!(after.timers, before.timers, "sleep timers were disarmed");
}

#[test]
fn yield_now_in_a_main_context_runs_one_pass() {
    let _w = Watchdog::new("main yield", LONG);
    let log = Rc::new(RefCell::new(Vec::new()));
    let hs: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|n| {
            let l = log.clone();
            green::spawn(move || {
                l.borrow_mut().push(format!("{n}0"));
                green::yield_now();
                l.borrow_mut().push(format!("{n}1"));
            })
        })
        .collect();
    green::yield_now();
    assert_eq!(*log.borrow(), ["a0", "b0"]);
    green::yield_now();
    assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1"]);
    assert!(hs.iter().all(|h| h.is_finished()));
}

/// `yield_now` in a green thread that is alone goes back to the loop, which runs timers, posted
/// calls and I/O (eventlet's `sleep(0)`): a green thread that polls a flag set by a timer or by
/// another thread's post must see it. (It used to return at once when no other green thread was
/// ready, which starved the loop.)
#[test]
fn a_lone_green_thread_yielding_in_a_loop_lets_timers_and_posts_run() {
    let _w = Watchdog::new("lone yield_now", Duration::from_secs(30));
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    hub::call_later(Duration::from_millis(5), move || f.set(true));
    let posted = Arc::new(AtomicBool::new(false));
    let p = posted.clone();
    let me = hub::current();
    std::thread::spawn(move || {
        me.call(move || p.store(true, Ordering::SeqCst)).unwrap();
    });
    let h = green::spawn(move || {
        let mut spins = 0u64;
        while !fired.get() || !posted.load(Ordering::SeqCst) {
            green::yield_now();
            spins += 1;
        }
        spins
    });
    assert!(h.join() > 0);
}

/// `sleep(Duration::ZERO)` is a yield through the loop too (eventlet's `sleep(0)`), not a no-op.
#[test]
fn a_lone_green_thread_sleeping_zero_in_a_loop_lets_timers_run() {
    let _w = Watchdog::new("lone sleep(0)", Duration::from_secs(30));
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    hub::call_later(Duration::from_millis(5), move || f.set(true));
    let h = green::spawn(move || {
        while !fired.get() {
            green::sleep(Duration::ZERO);
        }
    });
    h.join();
}
