//! The reactor's life cycle: run/stop, queued calls, triggers, shutdown. The reactor runs once per
//! process, so every test re-runs this binary as a child process that executes only that test
//! (selected by name through an environment variable), with a time limit.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{in_child, log, push, LogCapture};
use filature::deferred::Deferred;
use filature::green::{self, JoinError};
use filature::hub::DelayedCallError;
use filature::reactor::{self, Phase, ReactorError, SystemEvent};
use filature::sync::Event;
use filature::Stopped;

const LONG: Duration = Duration::from_secs(20);

/// Waits until the reactor refuses calls (its inbox closed), at most `LONG`.
fn wait_until_closed() {
    let deadline = Instant::now() + LONG;
    while reactor::call_from_thread(|| {}).is_ok() {
        assert!(Instant::now() < deadline, "the reactor never closed");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn stop_before_the_reactor_ever_ran_is_an_error() {
    in_child("stop_before_the_reactor_ever_ran_is_an_error", || {
        assert_eq!(reactor::stop(), Err(ReactorError::NotRunning));
        assert!(!reactor::is_running());
    });
}

#[test]
fn run_serves_on_the_calling_thread_until_stop_and_cannot_be_restarted() {
    in_child(
        "run_serves_on_the_calling_thread_until_stop_and_cannot_be_restarted",
        || {
            let ran_on = Arc::new(Mutex::new(None));
            let r = ran_on.clone();
            reactor::call_when_running(move || {
                *r.lock().unwrap() = std::thread::current().name().map(str::to_owned);
                assert!(reactor::is_reactor_thread());
                reactor::stop().unwrap();
            })
            .unwrap();
            reactor::run().unwrap();
            assert_eq!(
                ran_on.lock().unwrap().as_deref(),
                std::thread::current().name()
            );
            assert!(!reactor::is_running());
            assert_eq!(reactor::run(), Err(ReactorError::NotRestartable));
            assert_eq!(reactor::stop(), Err(ReactorError::NotRunning));
        },
    );
}

#[test]
fn after_stop_every_entry_point_fails_at_once() {
    in_child("after_stop_every_entry_point_fails_at_once", || {
        reactor::call_when_running(|| reactor::stop().unwrap()).unwrap();
        reactor::run().unwrap();
        let start = Instant::now();
        assert!(reactor::call_from_thread(|| {}).is_err());
        assert!(reactor::call_in_reactor(|| {}).is_err());
        assert!(reactor::call_later(Duration::ZERO, || {}).is_err());
        assert!(reactor::call_in_green_thread(|| {}).is_err());
        assert!(reactor::call_when_running(|| {}).is_err());
        let d = reactor::defer_to_green_thread(|| 1);
        assert!(d.result_now().unwrap().unwrap_err().is::<Stopped>());
        // From another thread (this one ran the reactor, so it also counts as its thread).
        let f = std::thread::spawn(|| reactor::blocking_call_from_thread(|| 1).unwrap_err())
            .join()
            .unwrap();
        assert!(f.is::<Stopped>(), "{f}");
        assert!(start.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn calls_queued_before_run_run_once_it_starts_after_the_startup_triggers() {
    in_child(
        "calls_queued_before_run_run_once_it_starts_after_the_startup_triggers",
        || {
            reactor::prepare_run().unwrap();
            let log = log();
            let producers: Vec<_> = (0..4)
                .map(|t| {
                    let log = log.clone();
                    std::thread::spawn(move || {
                        for i in 0..100 {
                            let log = log.clone();
                            reactor::call_from_thread(move || push(&log, format!("{t}:{i}")))
                                .unwrap();
                        }
                    })
                })
                .collect();
            for p in producers {
                p.join().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
            assert!(log.lock().unwrap().is_empty(), "ran before the reactor did");
            assert!(!reactor::is_running());
            for (phase, name) in [
                (Phase::After, "after startup"),
                (Phase::During, "during startup"),
                (Phase::Before, "before startup"),
            ] {
                let l = log.clone();
                reactor::add_system_event_trigger(phase, SystemEvent::Startup, move || {
                    push(&l, name)
                });
            }
            let l = log.clone();
            reactor::call_when_running(move || push(&l, "when running")).unwrap();
            reactor::call_from_thread(|| reactor::stop().unwrap()).unwrap();
            reactor::run().unwrap();

            let log = log.lock().unwrap();
            assert_eq!(
                log[..4],
                [
                    "before startup",
                    "during startup",
                    "after startup",
                    "when running"
                ]
            );
            assert_eq!(log.len(), 4 + 400);
            for t in 0..4 {
                let mine: Vec<_> = log
                    .iter()
                    .filter(|s| s.starts_with(&format!("{t}:")))
                    .cloned()
                    .collect();
                let want: Vec<_> = (0..100).map(|i| format!("{t}:{i}")).collect();
                assert_eq!(mine, want);
            }
        },
    );
}

#[test]
fn shutdown_waits_for_before_deferreds_then_runs_during_then_after() {
    in_child(
        "shutdown_waits_for_before_deferreds_then_runs_during_then_after",
        || {
            let log = log();
            let l = log.clone();
            reactor::add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
                push(&l, "before (deferred)");
                let d = Deferred::new();
                let (d2, l2) = (d.clone(), l.clone());
                reactor::call_later(Duration::from_millis(50), move || {
                    push(&l2, "before's deferred fired");
                    d2.callback(()).unwrap();
                })
                .unwrap();
                d
            });
            let l = log.clone();
            reactor::add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
                push(&l, "before (plain)")
            });
            let l = log.clone();
            reactor::add_system_event_trigger(Phase::After, SystemEvent::Shutdown, move || {
                push(&l, "after")
            });
            let l = log.clone();
            let stopped_at = Arc::new(Mutex::new(None::<Instant>));
            let s = stopped_at.clone();
            reactor::add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
                let waited = Instant::now() - s.lock().unwrap().unwrap();
                push(&l, "during");
                assert!(
                    waited >= Duration::from_millis(50),
                    "during ran after {waited:?}"
                );
            });
            reactor::blocking_call_from_thread(|| ()).unwrap(); // start it
            *stopped_at.lock().unwrap() = Some(Instant::now());
            reactor::stop().unwrap();
            assert!(!reactor::is_running());
            // Still accepted while the shutdown waits, and run.
            let l = log.clone();
            let accepted = reactor::call_from_thread(move || push(&l, "call while stopping"));
            wait_until_closed();
            let log = log.lock().unwrap();
            let want_order = [
                "before (deferred)",
                "before (plain)",
                "before's deferred fired",
                "during",
                "after",
            ];
            let got: Vec<&str> = log
                .iter()
                .map(String::as_str)
                .filter(|s| want_order.contains(s))
                .collect();
            assert_eq!(got, want_order);
            if accepted.is_ok() {
                assert!(log.iter().any(|s| s == "call while stopping"));
            }
        },
    );
}

#[test]
fn a_before_trigger_that_never_fires_is_cut_off_by_the_shutdown_timeout() {
    in_child(
        "a_before_trigger_that_never_fires_is_cut_off_by_the_shutdown_timeout",
        || {
            reactor::set_shutdown_timeout(Duration::from_millis(200));
            let never = Deferred::<()>::new();
            let n = never.clone();
            reactor::add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || n);
            let during = Event::new();
            let d = during.clone();
            reactor::add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
                d.send(Instant::now()).unwrap()
            });
            reactor::blocking_call_from_thread(|| ()).unwrap();
            let t0 = Instant::now();
            reactor::stop().unwrap();
            let at = during.wait_timeout(LONG).unwrap().unwrap();
            assert!(at - t0 >= Duration::from_millis(200), "{:?}", at - t0);
            assert!(at - t0 < Duration::from_secs(5), "{:?}", at - t0);
            wait_until_closed();
        },
    );
}

#[test]
fn a_panicking_trigger_is_logged_and_the_others_still_run() {
    in_child(
        "a_panicking_trigger_is_logged_and_the_others_still_run",
        || {
            let logs = LogCapture::global();
            let ran = Arc::new(AtomicUsize::new(0));
            for i in 0..3 {
                let r = ran.clone();
                reactor::add_system_event_trigger(
                    Phase::Before,
                    SystemEvent::Shutdown,
                    move || {
                        if i == 1 {
                            panic!("trigger {i} is broken");
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                    },
                );
            }
            let r = ran.clone();
            reactor::add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            reactor::call_when_running(|| reactor::stop().unwrap()).unwrap();
            reactor::run().unwrap();
            assert_eq!(ran.load(Ordering::SeqCst), 3);
            let text = logs.text();
            assert!(
                text.contains("trigger panicked: panicked: trigger 1 is broken"),
                "log was: {text}"
            );
        },
    );
}

#[test]
fn a_removed_trigger_does_not_run() {
    in_child("a_removed_trigger_does_not_run", || {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let id =
            reactor::add_system_event_trigger(Phase::During, SystemEvent::Shutdown, move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
        assert!(reactor::remove_system_event_trigger(id));
        assert!(!reactor::remove_system_event_trigger(id));
        reactor::call_when_running(|| reactor::stop().unwrap()).unwrap();
        reactor::run().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_blocking_call_made_while_stopping_fails_at_once() {
    in_child("a_blocking_call_made_while_stopping_fails_at_once", || {
        // Keep the shutdown in its `before` phase for a while.
        reactor::add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, || {
            let d = Deferred::new();
            let d2 = d.clone();
            reactor::call_later(Duration::from_millis(300), move || d2.callback(()).unwrap())
                .unwrap();
            d
        });
        reactor::blocking_call_from_thread(|| ()).unwrap();
        reactor::stop().unwrap();
        let t0 = Instant::now();
        let f = reactor::blocking_call_from_thread(|| 1).unwrap_err();
        assert!(f.is::<Stopped>(), "{f}");
        assert!(t0.elapsed() < Duration::from_millis(200));
        wait_until_closed();
    });
}

#[test]
fn a_blocking_call_waiting_when_the_reactor_stops_gets_stopped() {
    in_child(
        "a_blocking_call_waiting_when_the_reactor_stops_gets_stopped",
        || {
            let (tx, rx) = mpsc::channel();
            let waiter = std::thread::spawn(move || {
                reactor::blocking_call_from_thread_deferred(move || {
                    tx.send(()).unwrap();
                    Deferred::<u32>::new() // never fires
                })
            });
            rx.recv_timeout(LONG).unwrap();
            reactor::stop().unwrap();
            let f = waiter.join().unwrap().unwrap_err();
            assert!(f.is::<Stopped>(), "{f}");
        },
    );
}

#[test]
fn stopping_from_another_thread_while_busy_loses_nothing_that_was_accepted() {
    in_child(
        "stopping_from_another_thread_while_busy_loses_nothing_that_was_accepted",
        || {
            reactor::set_shutdown_timeout(Duration::from_secs(5));
            // Green threads parked for long, and busy ones.
            let greens = reactor::blocking_call_from_thread(|| {
                let mut hs = Vec::new();
                for _ in 0..20 {
                    hs.push(green::spawn(|| green::sleep(Duration::from_secs(3600))));
                }
                for _ in 0..20 {
                    hs.push(green::spawn(|| loop {
                        green::sleep(Duration::from_millis(1));
                    }));
                }
                hs
            })
            .unwrap();
            // Timers: one far away, some due during the flood.
            let far = reactor::call_later(Duration::from_secs(3600), || unreachable!()).unwrap();
            let near_ran = Arc::new(AtomicUsize::new(0));
            let near: Vec<_> = (0..20)
                .map(|i| {
                    let n = near_ran.clone();
                    reactor::call_later(Duration::from_millis(i), move || {
                        n.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap()
                })
                .collect();
            // A future that will never finish, and a caller blocked on a Deferred.
            let pending_future = reactor::hub()
                .unwrap()
                .spawn_future(std::future::pending::<()>())
                .unwrap();
            let blocked = std::thread::spawn(|| {
                reactor::blocking_call_from_thread_deferred(Deferred::<()>::new)
            });
            // Producers post until refused.
            let accepted = Arc::new(AtomicUsize::new(0));
            let ran = Arc::new(AtomicUsize::new(0));
            let producers: Vec<_> = (0..4)
                .map(|_| {
                    let (accepted, ran) = (accepted.clone(), ran.clone());
                    std::thread::spawn(move || loop {
                        let r = ran.clone();
                        match reactor::call_from_thread(move || {
                            r.fetch_add(1, Ordering::SeqCst);
                        }) {
                            Ok(()) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => break,
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(30));
            std::thread::spawn(|| reactor::stop().unwrap())
                .join()
                .unwrap();
            for p in producers {
                p.join().unwrap();
            }
            // Green threads: each was killed (their joiners, on this OS thread, are told).
            for h in greens {
                match h.join_timeout(LONG) {
                    Err(green::JoinTimeoutError::Failed(JoinError::Killed)) => {}
                    other => panic!("expected Killed, got {other:?}"),
                }
            }
            // The blocked caller is answered last, after every accepted call ran.
            let f = blocked.join().unwrap().unwrap_err();
            assert!(f.is::<Stopped>(), "{f}");
            assert_eq!(ran.load(Ordering::SeqCst), accepted.load(Ordering::SeqCst));
            assert!(accepted.load(Ordering::SeqCst) > 0);
            // Timers: ran, or report that they never will.
            assert!(!far.active());
            assert_eq!(far.cancel(), Err(DelayedCallError::AlreadyCancelled));
            let fired = near_ran.load(Ordering::SeqCst);
            let inactive = near.iter().filter(|dc| !dc.active()).count();
            assert_eq!(inactive, 20);
            let cancelled = near
                .iter()
                .filter(|dc| dc.cancel() == Err(DelayedCallError::AlreadyCancelled))
                .count();
            assert_eq!(fired + cancelled, 20);
            // The future's handle is told.
            assert!(pending_future.join_result().unwrap_err().is::<Stopped>());
            assert!(reactor::call_from_thread(|| {}).is_err());
        },
    );
}

#[test]
fn run_on_another_thread_than_prepare_run_is_refused_and_the_prepared_thread_still_runs() {
    in_child(
        "run_on_another_thread_than_prepare_run_is_refused_and_the_prepared_thread_still_runs",
        || {
            reactor::prepare_run().unwrap();
            let queued = reactor::spawn(|| std::thread::current().name().map(str::to_owned));
            let elsewhere = std::thread::Builder::new()
                .name("not-prepared".into())
                .spawn(reactor::run)
                .unwrap()
                .join()
                .unwrap();
            let err = elsewhere.unwrap_err();
            assert_eq!(err, ReactorError::NotPreparedThread);
            assert!(err.to_string().contains("prepare_run"), "{err}");
            assert!(!reactor::is_running());
            // Nothing was started or lost: the prepared thread runs the queued work.
            reactor::call_from_thread(|| reactor::stop().unwrap()).unwrap();
            reactor::run().unwrap();
            assert_eq!(
                queued.join(),
                std::thread::current().name().map(str::to_owned)
            );
        },
    );
}
