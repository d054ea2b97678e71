//! `with_timeout` and `Timeout`: expiry, nesting, a returned `TimedOut`, main context.

mod common;

use std::time::{Duration, Instant};

use common::{Watchdog, LONG};
use filature::green::{self, Timeout};
use filature::sync::Event;
use filature::{hub, TimedOut};

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_blocked_block_times_out() {
    let _w = Watchdog::new("times out", LONG);
    let h = green::spawn(|| {
        green::with_timeout(10 * MS, || {
            green::sleep(Duration::from_secs(3600));
            "woke"
        })
    });
    assert_eq!(h.join_timeout(LONG).unwrap(), Err(TimedOut));
}

#[test]
fn a_block_that_finishes_in_time_returns_its_value_and_leaves_nothing_armed() {
    let _w = Watchdog::new("in time", LONG);
    let h = green::spawn(|| {
        let r = green::with_timeout(Duration::from_secs(3600), || {
            green::sleep(MS);
            7
        });
        // A later park is not interrupted by the finished block's timeout.
        green::sleep(5 * MS);
        (r, hub::stats().timers)
    });
    assert_eq!(h.join_timeout(LONG).unwrap(), (Ok(7), 0));
}

#[test]
fn nested_timeouts_end_only_their_own_block() {
    let _w = Watchdog::new("nested", LONG);
    // Inner expires first: the outer block goes on.
    let h = green::spawn(|| {
        green::with_timeout(Duration::from_secs(3600), || {
            let inner = green::with_timeout(5 * MS, || green::sleep(Duration::from_secs(3600)));
            green::sleep(MS);
            (inner, "outer went on")
        })
    });
    assert_eq!(
        h.join_timeout(LONG).unwrap(),
        Ok((Err(TimedOut), "outer went on"))
    );
    // Outer expires first: the inner block does not catch it.
    let h = green::spawn(|| {
        green::with_timeout(5 * MS, || {
            let inner = green::with_timeout(Duration::from_secs(3600), || {
                green::sleep(Duration::from_secs(3600))
            });
            panic!("the inner block returned {inner:?}");
        })
    });
    assert_eq!(h.join_timeout(LONG).unwrap(), Err(TimedOut));
}

#[test]
fn a_timed_out_value_returned_by_the_block_is_just_a_value() {
    let _w = Watchdog::new("returned TimedOut", LONG);
    let h = green::spawn(|| {
        green::with_timeout(Duration::from_secs(3600), || {
            let ev: Event<()> = Event::new();
            ev.wait_timeout(MS).map(|_| ())
        })
    });
    let r = h.join_timeout(LONG).unwrap();
    assert_eq!(r, Ok(Err(TimedOut)));
}

#[test]
fn with_timeout_works_in_a_main_context() {
    let _w = Watchdog::new("main timeout", LONG);
    let ev: Event<()> = Event::new();
    assert_eq!(
        green::with_timeout(10 * MS, || ev.wait()).map(|_| ()),
        Err(TimedOut)
    );
    assert_eq!(green::with_timeout(LONG, || 3), Ok(3));
    // And nothing leaks out afterwards.
    green::sleep(5 * MS);
    let t = Timeout::start(5 * MS);
    assert_eq!(
        t.run(|| green::sleep(Duration::from_secs(3600))),
        Err(TimedOut)
    );
}

#[test]
fn a_dropped_timeout_never_fires() {
    let _w = Watchdog::new("dropped timeout", LONG);
    let h = green::spawn(|| {
        let t = Timeout::start(2 * MS);
        assert!(!t.expired());
        t.cancel();
        green::sleep(10 * MS);
        "not interrupted"
    });
    assert_eq!(h.join_timeout(LONG).unwrap(), "not interrupted");
}

// ---- the kept park timer: a timed park leaves its timer armed for the next one ----------------

/// Many timed waits that end early leave one timer on the hub, not one each; a later, shorter
/// deadline still wakes in time; the timer goes when the green thread finishes.
#[test]
fn timed_waits_that_end_early_share_one_timer_and_shorter_deadlines_still_wake_in_time() {
    use filature::sync::Queue;
    let _w = Watchdog::new("kept park timer", LONG);
    let before = hub::stats().timers;
    let q = Queue::<u32>::bounded(1);
    let (q2, q3) = (q.clone(), q.clone());
    let h = green::spawn(move || {
        let mut most = 0;
        for i in 0..1000 {
            assert_eq!(q2.get_timeout(Duration::from_secs(3600)).unwrap(), i);
            most = most.max(hub::stats().timers);
        }
        // An earlier deadline than the armed one: moved, so it times out in time.
        let t = Instant::now();
        assert!(q2.get_timeout(30 * MS).is_err());
        let waited = t.elapsed();
        (most, waited)
    });
    let feeder = green::spawn(move || {
        for i in 0..1000 {
            q3.put(i);
            if i % 7 == 0 {
                green::sleep(Duration::ZERO);
            }
        }
    });
    feeder.join();
    let (most, waited) = h.join_timeout(LONG).unwrap();
    assert!(
        most <= before + 2,
        "{most} timers armed at once (before: {before})"
    );
    assert!(
        waited >= 30 * MS && waited < LONG,
        "timed out after {waited:?}"
    );
    assert_eq!(
        hub::stats().timers,
        before,
        "the finished green thread's timer was cancelled"
    );
}

/// A kept timer that comes due while its green thread waits without a deadline wakes it early
/// once; the wait goes on and returns what it waited for, not before.
#[test]
fn a_kept_timer_coming_due_does_not_end_an_untimed_wait() {
    let _w = Watchdog::new("kept timer fires", LONG);
    let (first, second) = (Event::<u32>::new(), Event::<u32>::new());
    first.send(1).unwrap();
    let (f, s) = (first.clone(), second.clone());
    let h = green::spawn(move || {
        // Ends at once: its 20 ms timer stays armed and comes due during the next wait.
        assert!(matches!(f.wait_timeout(20 * MS), Ok(Ok(1))));
        let t = Instant::now();
        let v = s.wait().unwrap();
        (v, t.elapsed(), hub::stats().timers)
    });
    green::sleep(100 * MS);
    assert!(!h.is_finished(), "the untimed wait ended early");
    second.send(2).unwrap();
    let (v, waited, timers) = h.join_timeout(LONG).unwrap();
    assert_eq!(v, 2);
    assert!(waited >= 90 * MS, "returned after {waited:?}");
    assert_eq!(timers, 0, "the kept timer fired and was not re-armed");
}
