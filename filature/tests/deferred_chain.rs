//! The callback chain: firing once, the four ways to add a link, ordering, waiting on an inner
//! Deferred, type-changing links, panics, and the helpers `succeed`/`fail`/`maybe_deferred`.

mod common;

use std::sync::{Arc, Mutex};

use common::{log, Log};
use filature::deferred::{
    fail, maybe_deferred, succeed, ChainedToItself, Deferred, Outcome, ResultTaken,
};
use filature::{AlreadyCalled, Cancelled, Failure, TimedOut};

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[test]
fn callback_fires_once_and_second_call_is_already_called() {
    let d = Deferred::new();
    assert_eq!(d.callback(1), Ok(()));
    assert_eq!(d.callback(2), Err(AlreadyCalled));
    assert_eq!(d.errback(Failure::from_error(TimedOut)), Err(AlreadyCalled));
    assert_eq!(d.result_now().unwrap().unwrap(), 1);
}

#[test]
fn errback_fires_once_and_second_call_is_already_called() {
    let d = Deferred::<u32>::new();
    assert_eq!(d.errback(Failure::from_error(TimedOut)), Ok(()));
    assert_eq!(d.callback(2), Err(AlreadyCalled));
    assert!(d.result_now().unwrap().unwrap_err().is::<TimedOut>());
}

#[test]
fn callbacks_run_in_order_and_pass_values_along() {
    let seen = log();
    let d = Deferred::<i32>::new();
    for step in 0..3 {
        let seen = seen.clone();
        d.add_callback(move |v| {
            seen.lock().unwrap().push(format!("cb{step}:{v}"));
            Outcome::Value(v * 10)
        });
    }
    assert!(
        entries(&seen).is_empty(),
        "nothing runs before the Deferred fires"
    );
    d.callback(1).unwrap();
    assert_eq!(entries(&seen), ["cb0:1", "cb1:10", "cb2:100"]);
    assert_eq!(d.result_now().unwrap().unwrap(), 1000);
}

#[test]
fn failure_skips_callbacks_until_an_errback_recovers() {
    let seen = log();
    let d = Deferred::<i32>::new();
    let s = seen.clone();
    d.add_callback(move |v| {
        s.lock().unwrap().push("callback".into());
        Outcome::Value(v)
    });
    let s = seen.clone();
    d.add_errback(move |f| {
        s.lock().unwrap().push(format!("errback:{f}"));
        Outcome::Value(-1)
    });
    let s = seen.clone();
    d.add_errback(move |_| {
        s.lock().unwrap().push("second errback".into());
        Outcome::Value(-2)
    });
    let s = seen.clone();
    d.add_callback(move |v| {
        s.lock().unwrap().push(format!("after:{v}"));
        Outcome::Value(v)
    });
    d.errback(Failure::from_error(TimedOut)).unwrap();
    assert_eq!(entries(&seen), ["errback:timed out", "after:-1"]);
    assert_eq!(d.result_now().unwrap().unwrap(), -1);
}

#[test]
fn add_both_sees_values_and_failures() {
    let ok = succeed(2);
    ok.add_both(|r| Outcome::Value(r.unwrap() + 1));
    assert_eq!(ok.result_now().unwrap().unwrap(), 3);

    let failed = fail::<i32>(Failure::from_error(Cancelled));
    failed.add_both(|r| {
        Outcome::Value(if r.unwrap_err().is::<Cancelled>() {
            7
        } else {
            0
        })
    });
    assert_eq!(failed.result_now().unwrap().unwrap(), 7);
}

#[test]
fn add_callbacks_runs_exactly_one_side_and_errback_does_not_see_callback_failure() {
    let seen = log();
    let d = Deferred::<i32>::new();
    let (s1, s2) = (seen.clone(), seen.clone());
    d.add_callbacks(
        move |v| {
            s1.lock().unwrap().push(format!("value:{v}"));
            Outcome::error(TimedOut)
        },
        move |_| {
            s2.lock().unwrap().push("failure".into());
            Outcome::Value(0)
        },
    );
    d.callback(5).unwrap();
    assert_eq!(entries(&seen), ["value:5"]);
    assert!(d.result_now().unwrap().unwrap_err().is::<TimedOut>());

    let d = Deferred::<i32>::new();
    d.add_callbacks(
        |_| Outcome::Value(1),
        |f| Outcome::Value(if f.is::<Cancelled>() { 2 } else { 3 }),
    );
    d.errback(Failure::from_error(Cancelled)).unwrap();
    assert_eq!(d.result_now().unwrap().unwrap(), 2);
}

#[test]
fn callback_added_to_fired_deferred_runs_at_once() {
    let d = succeed(10);
    let seen = log();
    let s = seen.clone();
    d.add_callback(move |v| {
        s.lock().unwrap().push(format!("ran:{v}"));
        Outcome::Value(v + 1)
    });
    assert_eq!(
        entries(&seen),
        ["ran:10"],
        "ran before add_callback returned"
    );
    assert_eq!(d.result_now().unwrap().unwrap(), 11);
}

#[test]
fn panic_in_callback_becomes_failure_passed_down_the_chain() {
    let d = Deferred::<u32>::new();
    d.add_callback(|_| panic!("callback exploded"));
    let seen = log();
    let s = seen.clone();
    d.add_errback(move |f| {
        s.lock()
            .unwrap()
            .push(f.panic_message().unwrap().to_string());
        Outcome::Failure(f)
    });
    // Does not unwind out of callback().
    assert_eq!(d.callback(1), Ok(()));
    assert_eq!(entries(&seen), ["callback exploded"]);
    let failure = d.result_now().unwrap().unwrap_err();
    assert!(failure.is_panic());
    assert_eq!(failure.panic_message(), Some("callback exploded"));
}

#[test]
fn failure_carries_error_type_or_panic_message() {
    let from_error = fail::<()>(Failure::from_error(TimedOut))
        .take_result()
        .unwrap()
        .unwrap_err();
    assert!(from_error.is::<TimedOut>());
    assert!(!from_error.is_panic());

    let from_panic = maybe_deferred(|| -> Outcome<()> { panic!("lost {}", 42) })
        .take_result()
        .unwrap()
        .unwrap_err();
    assert!(from_panic.is_panic());
    assert_eq!(from_panic.panic_message(), Some("lost 42"));
}

#[test]
fn callback_returning_unfired_deferred_pauses_the_chain_until_it_fires() {
    let inner = Deferred::<u32>::new();
    let outer = Deferred::<u32>::new();
    let seen = log();
    let waited = inner.clone();
    outer.add_callback(move |_| Outcome::Wait(waited));
    let s = seen.clone();
    outer.add_callback(move |v| {
        s.lock().unwrap().push(format!("after inner:{v}"));
        Outcome::Value(v + 1)
    });
    outer.callback(1).unwrap();
    assert!(outer.is_called());
    assert!(outer.result_now().is_none(), "paused");
    assert!(entries(&seen).is_empty());

    // A link added while paused runs after the inner result, in order.
    let s = seen.clone();
    outer.add_callback(move |v| {
        s.lock().unwrap().push(format!("added while paused:{v}"));
        Outcome::Value(v)
    });
    inner.callback(41).unwrap();
    assert_eq!(entries(&seen), ["after inner:41", "added while paused:42"]);
    assert_eq!(outer.result_now().unwrap().unwrap(), 42);
    // The inner result was moved into the outer chain.
    assert!(inner.result_now().unwrap().unwrap_err().is::<ResultTaken>());
}

#[test]
fn callback_returning_fired_deferred_continues_at_once() {
    let d = succeed(1);
    d.add_callback(|v| Outcome::Wait(succeed(v + 1)));
    let seen = log();
    let s = seen.clone();
    d.add_callback(move |v| {
        s.lock().unwrap().push(format!("got {v}"));
        Outcome::Wait(fail(Failure::from_error(TimedOut)))
    });
    assert_eq!(entries(&seen), ["got 2"]);
    assert!(d.result_now().unwrap().unwrap_err().is::<TimedOut>());
}

#[test]
fn callback_returning_its_own_deferred_fails_with_chained_to_itself() {
    let d = Deferred::<u32>::new();
    let same = d.clone();
    d.add_callback(move |_| Outcome::Wait(same));
    d.callback(1).unwrap();
    assert!(d.result_now().unwrap().unwrap_err().is::<ChainedToItself>());
}

#[test]
fn then_and_map_change_the_type_and_pass_failures_through() {
    let d = Deferred::<&'static str>::new();
    let len = d.map(str::len);
    let doubled = len.then(|n| Outcome::Value(vec![n; 2]));
    d.callback("abc").unwrap();
    assert_eq!(doubled.result_now().unwrap().unwrap(), vec![3, 3]);

    let failed = fail::<u32>(Failure::from_error(TimedOut));
    let ran = Arc::new(Mutex::new(false));
    let r = ran.clone();
    let mapped = failed.map(move |v| {
        *r.lock().unwrap() = true;
        v.to_string()
    });
    assert!(!*ran.lock().unwrap());
    assert!(mapped.result_now().unwrap().unwrap_err().is::<TimedOut>());
}

#[test]
fn then_waits_on_a_returned_deferred_of_the_new_type() {
    let inner = Deferred::<String>::new();
    let waited = inner.clone();
    let d = succeed(1u8).then(move |_| Outcome::Wait(waited));
    assert!(d.result_now().is_none());
    inner.callback("late".into()).unwrap();
    assert_eq!(d.result_now().unwrap().unwrap(), "late");
}

#[test]
fn maybe_deferred_wraps_value_failure_deferred_and_panic() {
    assert_eq!(
        maybe_deferred(|| Outcome::Value(3))
            .result_now()
            .unwrap()
            .unwrap(),
        3
    );
    let f = maybe_deferred::<u32>(|| Outcome::error(TimedOut))
        .result_now()
        .unwrap()
        .unwrap_err();
    assert!(f.is::<TimedOut>());
    let pending = Deferred::<u32>::new();
    let same = maybe_deferred(|| Outcome::Wait(pending.clone()));
    pending.callback(4).unwrap();
    assert_eq!(same.result_now().unwrap().unwrap(), 4);
    let p = maybe_deferred::<u32>(|| panic!("nope"))
        .result_now()
        .unwrap()
        .unwrap_err();
    assert_eq!(p.panic_message(), Some("nope"));
}

#[test]
fn callbacks_may_add_callbacks_and_fire_other_deferreds() {
    let seen = log();
    let d = Deferred::<u32>::new();
    let other = Deferred::<u32>::new();
    let other_mapped = other.map(|v| v * 2);
    let (d2, s, o) = (d.clone(), seen.clone(), other.clone());
    d.add_callback(move |v| {
        let s2 = s.clone();
        d2.add_callback(move |v| {
            s2.lock().unwrap().push(format!("added from inside:{v}"));
            Outcome::Value(v)
        });
        o.callback(v).unwrap();
        // Everything chained behind `other` ran before its callback() returned.
        s.lock().unwrap().push(format!(
            "other fired, mapped is called: {}",
            other_mapped.is_called()
        ));
        Outcome::Value(v + 1)
    });
    d.callback(1).unwrap();
    assert_eq!(
        entries(&seen),
        ["other fired, mapped is called: true", "added from inside:2"]
    );
}

#[test]
fn is_called_result_now_and_take_result() {
    let d = Deferred::<Vec<u8>>::new();
    assert!(!d.is_called());
    assert!(d.result_now().is_none());
    assert!(d.take_result().is_none());
    d.callback(vec![1]).unwrap();
    assert!(d.is_called());
    assert_eq!(d.result_now().unwrap().unwrap(), [1]);
    assert_eq!(d.take_result().unwrap().unwrap(), [1]);
    assert!(d.take_result().unwrap().unwrap_err().is::<ResultTaken>());
}

#[test]
fn observe_sees_the_result_without_consuming_it() {
    let seen = log();
    let d = Deferred::<u32>::new();
    let s = seen.clone();
    d.observe(move |r| s.lock().unwrap().push(format!("{r:?}")));
    d.add_callback(|v| Outcome::Value(v + 1));
    let s = seen.clone();
    d.observe(move |r| s.lock().unwrap().push(format!("{r:?}")));
    d.callback(1).unwrap();
    assert_eq!(entries(&seen), ["Ok(1)", "Ok(2)"]);
    assert_eq!(d.result_now().unwrap().unwrap(), 2);
}

#[test]
fn deferred_is_send_and_sync() {
    fn assert_send_sync<X: Send + Sync>() {}
    assert_send_sync::<Deferred<u32>>();
    assert_send_sync::<Deferred<std::cell::Cell<u32>>>();
}

#[test]
fn firing_from_another_thread_runs_callbacks_there() {
    let d = Deferred::<u32>::new();
    let thread = Arc::new(Mutex::new(None));
    let t = thread.clone();
    d.add_callback(move |v| {
        *t.lock().unwrap() = std::thread::current().name().map(str::to_owned);
        Outcome::Value(v)
    });
    let d2 = d.clone();
    std::thread::Builder::new()
        .name("firer".into())
        .spawn(move || d2.callback(1).unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(thread.lock().unwrap().as_deref(), Some("firer"));
    assert_eq!(d.result_now().unwrap().unwrap(), 1);
}

#[test]
fn chain_deferred_passes_the_result_on() {
    let source = Deferred::<u32>::new();
    let sink = Deferred::<u32>::new();
    source.chain_deferred(&sink);
    source.errback(Failure::from_error(TimedOut)).unwrap();
    assert!(sink.result_now().unwrap().unwrap_err().is::<TimedOut>());
    assert!(source
        .result_now()
        .unwrap()
        .unwrap_err()
        .is::<ResultTaken>());

    let fired = succeed(1u32);
    let source = succeed(2u32);
    source.chain_deferred(&fired);
    assert!(source
        .result_now()
        .unwrap()
        .unwrap_err()
        .is::<AlreadyCalled>());
    assert_eq!(fired.result_now().unwrap().unwrap(), 1);
}
