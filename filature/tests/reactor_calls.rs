//! The reactor's entry points, against the reactor started on first use (one per test process;
//! it is never stopped here — life-cycle tests live in `reactor_lifecycle.rs`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use filature::deferred::{fail, Deferred};
use filature::green::{self, JoinError};
use filature::hub::{self, DelayedCallError};
use filature::reactor::{self, ReactorError};
use filature::sync::Event;
use filature::{Failure, TimedOut};

use common::eventually;

const LONG: Duration = Duration::from_secs(20);

fn wait<T: Clone>(ev: &Event<T>) -> T {
    ev.wait_timeout(LONG).expect("timed out").unwrap()
}

#[test]
fn the_reactor_starts_on_first_use_on_its_own_thread() {
    let name = reactor::blocking_call_from_thread_timeout(LONG, || {
        std::thread::current().name().map(str::to_owned)
    })
    .unwrap();
    assert_eq!(name.as_deref(), Some(reactor::THREAD_NAME));
    assert!(reactor::is_running());
    assert!(!reactor::is_reactor_thread());
    assert!(reactor::hub().is_some());
}

#[test]
fn run_fails_once_the_reactor_was_started_by_first_use() {
    reactor::call_from_thread(|| {}).unwrap();
    assert_eq!(
        reactor::run(),
        Err(ReactorError::AlreadyRunning(reactor::THREAD_NAME.into()))
    );
    assert!(reactor::prepare_run().is_err());
}

#[test]
fn call_from_thread_from_8_threads_runs_each_call_once_in_per_thread_order_with_timers_on_time() {
    const THREADS: usize = 8;
    const CALLS: usize = 10_000;
    let seen: Arc<Mutex<Vec<Vec<usize>>>> = Arc::new(Mutex::new(vec![Vec::new(); THREADS]));
    let done = Event::new();
    let left = Arc::new(AtomicUsize::new(THREADS * CALLS));
    // Timers armed on the reactor while the flood runs: each must fire on time (not starved).
    let lateness: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let timers_done = Event::new();
    {
        let (lateness, timers_done) = (lateness.clone(), timers_done.clone());
        let fired = Arc::new(AtomicUsize::new(0));
        for i in 1..=10u64 {
            let due = Instant::now() + Duration::from_millis(5 * i);
            let (lateness, timers_done, fired) =
                (lateness.clone(), timers_done.clone(), fired.clone());
            reactor::call_later(Duration::from_millis(5 * i), move || {
                lateness.lock().unwrap().push(Instant::now() - due);
                if fired.fetch_add(1, Ordering::SeqCst) + 1 == 10 {
                    timers_done.send(()).unwrap();
                }
            })
            .unwrap();
        }
    }
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (seen, done, left) = (seen.clone(), done.clone(), left.clone());
            std::thread::spawn(move || {
                for i in 0..CALLS {
                    let (seen, done, left) = (seen.clone(), done.clone(), left.clone());
                    reactor::call_from_thread(move || {
                        seen.lock().unwrap()[t].push(i);
                        if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                            done.send(()).unwrap();
                        }
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    wait(&done);
    wait(&timers_done);
    let seen = seen.lock().unwrap();
    for per_thread in seen.iter() {
        assert_eq!(*per_thread, (0..CALLS).collect::<Vec<_>>());
    }
    let worst = lateness.lock().unwrap().iter().copied().max().unwrap();
    assert!(
        worst < Duration::from_millis(500),
        "a timer fired {worst:?} late"
    );
}

#[test]
fn a_call_posted_from_a_posted_call_runs_in_a_later_pass() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let done = Event::new();
    let (o, d) = (order.clone(), done.clone());
    reactor::call_from_thread(move || {
        o.lock().unwrap().push("outer");
        let (o2, d2) = (o.clone(), d.clone());
        reactor::call_from_thread(move || {
            o2.lock().unwrap().push("inner");
            d2.send(()).unwrap();
        })
        .unwrap();
        // A timer already due fires in step 2 of this same pass: before a call posted now.
        let o3 = o.clone();
        hub::call_later(Duration::ZERO, move || {
            o3.lock().unwrap().push("timer of this pass")
        });
    })
    .unwrap();
    wait(&done);
    assert_eq!(
        *order.lock().unwrap(),
        vec!["outer", "timer of this pass", "inner"]
    );
}

#[test]
fn a_panicking_call_is_logged_and_later_calls_still_run() {
    reactor::call_from_thread(|| panic!("a bad call")).unwrap();
    let ran = Event::new();
    let r = ran.clone();
    reactor::call_from_thread(move || r.send(()).unwrap()).unwrap();
    wait(&ran);
}

#[test]
fn call_in_reactor_runs_inline_on_the_reactor_thread() {
    let got = reactor::blocking_call_from_thread_timeout(LONG, || {
        let hit = Arc::new(AtomicUsize::new(0));
        let h = hit.clone();
        reactor::call_in_reactor(move || {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        hit.load(Ordering::SeqCst) // already 1: it ran inline
    })
    .unwrap();
    assert_eq!(got, 1);
}

#[test]
fn call_in_reactor_from_another_thread_posts_to_the_reactor() {
    let ev = Event::new();
    let e = ev.clone();
    reactor::call_in_reactor(move || e.send(reactor::is_reactor_thread()).unwrap()).unwrap();
    assert!(wait(&ev));
}

#[test]
fn call_later_from_another_thread_fires_after_its_delay_on_the_reactor() {
    let ev = Event::new();
    let e = ev.clone();
    let start = Instant::now();
    let dc = reactor::call_later(Duration::from_millis(30), move || {
        e.send((Instant::now(), reactor::is_reactor_thread()))
            .unwrap()
    })
    .unwrap();
    let (at, on_reactor) = wait(&ev);
    assert!(at - start >= Duration::from_millis(30));
    assert!(on_reactor);
    assert!(!dc.active());
    assert_eq!(dc.cancel(), Err(DelayedCallError::AlreadyCalled));
}

#[test]
fn call_later_can_be_cancelled_from_any_thread_and_then_never_runs() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let dc = reactor::call_later(Duration::from_millis(30), move || {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    let other = dc.clone();
    std::thread::spawn(move || other.cancel())
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(dc.cancel(), Err(DelayedCallError::AlreadyCancelled));
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn call_later_reset_and_delay_move_the_call() {
    let ev = Event::new();
    let e = ev.clone();
    let start = Instant::now();
    let dc = reactor::call_later(Duration::from_millis(10), move || {
        e.send(Instant::now()).unwrap()
    })
    .unwrap();
    dc.reset(Duration::from_millis(60)).unwrap();
    dc.delay(Duration::from_millis(20)).unwrap();
    assert!(dc.time() >= start + Duration::from_millis(80));
    let at = wait(&ev);
    assert!(
        at - start >= Duration::from_millis(80),
        "fired after {:?}",
        at - start
    );
}

#[test]
fn call_in_green_thread_runs_in_a_green_thread_on_the_reactor() {
    let ev = Event::new();
    let e = ev.clone();
    reactor::call_in_green_thread(move || {
        green::sleep(Duration::from_millis(1));
        e.send((green::in_green_thread(), reactor::is_reactor_thread()))
            .unwrap();
    })
    .unwrap();
    assert_eq!(wait(&ev), (true, true));
}

#[test]
fn green_call_in_green_thread_also_runs_on_the_reactor() {
    let ev = Event::new();
    let e = ev.clone();
    green::call_in_green_thread(move || {
        e.send((green::in_green_thread(), reactor::is_reactor_thread()))
            .unwrap()
    })
    .unwrap();
    assert_eq!(wait(&ev), (true, true));
}

#[test]
fn defer_to_green_thread_fires_on_the_reactor_with_the_value() {
    let d = reactor::defer_to_green_thread(|| {
        green::sleep(Duration::from_millis(1));
        reactor::is_reactor_thread()
    });
    let fired_on = Event::new();
    let f = fired_on.clone();
    d.observe(move |_| f.send(reactor::is_reactor_thread()).unwrap());
    assert!(green::block_on(&d).unwrap());
    assert!(wait(&fired_on));
}

#[test]
fn defer_to_green_thread_fails_with_the_panic() {
    let d = reactor::defer_to_green_thread(|| -> u32 { panic!("green boom") });
    let f = green::block_on(&d).unwrap_err();
    assert_eq!(f.panic_message(), Some("green boom"));
}

#[test]
fn blocking_call_from_thread_returns_the_value() {
    assert_eq!(
        reactor::blocking_call_from_thread(|| String::from("value")).unwrap(),
        "value"
    );
}

#[test]
fn blocking_call_from_thread_waits_on_a_returned_deferred() {
    let v = reactor::blocking_call_from_thread_deferred_timeout(LONG, || {
        let d = Deferred::new();
        let d2 = d.clone();
        hub::call_later(Duration::from_millis(10), move || {
            d2.callback(5u32).unwrap()
        });
        d
    });
    assert_eq!(v.unwrap(), 5);
}

#[test]
fn blocking_call_from_thread_waits_on_a_returned_future() {
    let v = reactor::blocking_call_from_thread_future_timeout(LONG, || {
        let d = Deferred::<u32>::new();
        let d2 = d.clone();
        hub::call_later(Duration::from_millis(10), move || d2.callback(6).unwrap());
        async move { d.await.unwrap() * 7 }
    });
    assert_eq!(v.unwrap(), 42);
}

#[test]
fn blocking_call_from_thread_re_raises_a_failure_with_its_type() {
    let f = reactor::blocking_call_from_thread_deferred_timeout(LONG, || {
        fail::<()>(Failure::from_error(std::io::Error::other("disk full")))
    })
    .unwrap_err();
    assert_eq!(
        f.downcast_ref::<std::io::Error>().unwrap().to_string(),
        "disk full"
    );
}

#[test]
fn blocking_call_from_thread_re_raises_a_panic() {
    let f = reactor::blocking_call_from_thread(|| -> u8 { panic!("on the reactor") }).unwrap_err();
    assert!(f.is_panic());
    assert_eq!(f.panic_message(), Some("on the reactor"));
    // A panic while polling a returned future too.
    let f = reactor::blocking_call_from_thread_future_timeout(LONG, || async {
        panic!("in the future")
    })
    .unwrap_err();
    assert_eq!(f.panic_message(), Some("in the future"));
}

#[test]
fn blocking_call_from_thread_on_the_reactor_thread_fails_at_once() {
    let inner = reactor::blocking_call_from_thread_timeout(LONG, || {
        reactor::blocking_call_from_thread(|| 1).unwrap_err()
    })
    .unwrap();
    assert!(matches!(
        inner.downcast_ref::<ReactorError>(),
        Some(ReactorError::OnReactorThread)
    ));
}

#[test]
fn blocking_call_from_thread_times_out() {
    let start = Instant::now();
    let f = reactor::blocking_call_from_thread_deferred_timeout(Duration::from_millis(30), || {
        Deferred::<()>::new() // never fires
    })
    .unwrap_err();
    assert!(f.is::<TimedOut>());
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn blocking_call_from_a_green_thread_on_another_hub_parks_only_that_green_thread() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = green::spawn(move || {
        for _ in 0..5 {
            green::sleep(Duration::from_millis(2));
            t.fetch_add(1, Ordering::SeqCst);
        }
    });
    let caller = green::spawn(|| {
        reactor::blocking_call_from_thread_deferred_timeout(LONG, || {
            let d = Deferred::new();
            let d2 = d.clone();
            hub::call_later(Duration::from_millis(40), move || d2.callback(1u8).unwrap());
            d
        })
        .unwrap()
    });
    assert_eq!(caller.join(), 1);
    ticker.join();
    assert_eq!(ticks.load(Ordering::SeqCst), 5);
}

#[test]
fn a_green_thread_on_the_reactor_can_be_joined_from_another_os_thread() {
    let h = reactor::blocking_call_from_thread(|| {
        green::spawn(|| {
            green::sleep(Duration::from_millis(5));
            "from the reactor"
        })
    })
    .unwrap();
    let joined = std::thread::spawn(move || h.join_timeout(LONG).ok().unwrap())
        .join()
        .unwrap();
    assert_eq!(joined, "from the reactor");
}

#[test]
fn a_failed_green_thread_on_the_reactor_re_raises_when_joined_from_another_thread() {
    let h = reactor::hub()
        .unwrap_or_else(|| {
            reactor::blocking_call_from_thread(|| ()).unwrap();
            reactor::hub().unwrap()
        })
        .spawn(|| -> u8 { panic!("waitable failure") })
        .unwrap();
    let e = std::thread::spawn(move || h.join_result())
        .join()
        .unwrap()
        .unwrap_err();
    match e {
        JoinError::Panicked(f) => assert_eq!(f.panic_message(), Some("waitable failure")),
        JoinError::Killed => panic!("not killed"),
    }
}

/// Counts its drops.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A blocking call whose answer, a `Tracked`, is made on the reactor once `gate` opens; `started`
/// fires when the reactor has the call.
fn gated_call(
    started: Event<()>,
    gate: Event<()>,
    drops: Arc<AtomicUsize>,
) -> Result<Tracked, Failure> {
    reactor::blocking_call_from_thread_deferred(move || {
        let d = Deferred::new();
        let answer = d.clone();
        green::spawn(move || {
            gate.wait().unwrap();
            let _ = answer.callback(Tracked(drops));
        });
        started.send(()).unwrap();
        d
    })
}

#[test]
fn a_killed_blocking_caller_does_not_leave_its_value_to_the_reactor() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (started, gate) = (Event::new(), Event::new());
    let (s, g, n) = (started.clone(), gate.clone(), drops.clone());
    let caller = green::spawn(move || gated_call(s, g, n));
    wait(&started);
    caller.kill();
    assert!(matches!(caller.join_result(), Err(JoinError::Killed)));
    gate.send(()).unwrap();
    // Nobody wants the value: it goes at once, not when the reactor stops (never, here).
    assert!(eventually(|| drops.load(Ordering::SeqCst) == 1));
}

#[test]
fn a_timed_out_blocking_caller_does_not_leave_its_value_to_the_reactor() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (started, gate) = (Event::new(), Event::new());
    let (s, g, n) = (started.clone(), gate.clone(), drops.clone());
    let r = green::with_timeout(Duration::from_millis(30), move || gated_call(s, g, n));
    assert!(matches!(r, Err(TimedOut)));
    wait(&started);
    gate.send(()).unwrap();
    assert!(eventually(|| drops.load(Ordering::SeqCst) == 1));
}
