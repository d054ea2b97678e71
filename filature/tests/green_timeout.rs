//! `with_timeout` and `Timeout`: expiry, nesting, a returned `TimedOut`, main context.

mod common;

use std::time::Duration;

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
