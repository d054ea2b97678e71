//! The reactor pool across the reactor's life cycle: started with the reactor, stopped during
//! its shutdown (queued work runs first), never hanging the shutdown. The reactor runs once per
//! process, so each test re-runs this binary as a child process that executes only that test.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::in_child;
use filature::reactor::{self, Phase, SystemEvent};
use filature::Stopped;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn the_pool_starts_with_the_reactor_and_stops_during_its_shutdown_after_running_queued_work() {
    in_child(
        "the_pool_starts_with_the_reactor_and_stops_during_its_shutdown_after_running_queued_work",
        || {
            reactor::prepare_run().unwrap();
            let ran = Arc::new(AtomicUsize::new(0));
            // Queued before the reactor runs: waits in the (not yet started) pool.
            let r = ran.clone();
            reactor::call_in_thread(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
            assert_eq!(reactor::thread_pool().stats().workers, 0);
            assert_eq!(reactor::thread_pool().stats().backlog, 1);
            let slow = Arc::new(std::sync::Mutex::new(None));
            let s = slow.clone();
            reactor::call_when_running(move || {
                // Still running when the reactor is asked to stop: the shutdown waits for it and
                // its Deferred still fires (the loop keeps serving while the pool stops).
                *s.lock().unwrap() = Some(reactor::defer_to_thread(|| {
                    std::thread::sleep(Duration::from_millis(200));
                    "slow"
                }));
                reactor::stop().unwrap();
            })
            .unwrap();
            let pool_running_during = Arc::new(AtomicUsize::new(0));
            let p = pool_running_during.clone();
            reactor::add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
                // Before shutdown the pool still accepts work.
                if reactor::call_in_thread(|| {}).is_ok() {
                    p.fetch_add(1, Ordering::SeqCst);
                }
            });
            reactor::run().unwrap();
            assert_eq!(ran.load(Ordering::SeqCst), 1);
            assert_eq!(pool_running_during.load(Ordering::SeqCst), 1);
            let d = slow.lock().unwrap().take().unwrap();
            assert_eq!(d.result_now().expect("fired").unwrap(), "slow");
            // After shutdown the pool is stopped: no threads, and work is refused.
            assert_eq!(reactor::thread_pool().stats().workers, 0);
            assert!(reactor::call_in_thread(|| {}).is_err());
            assert!(reactor::call_multiple_in_thread(vec![Box::new(|| {})]).is_err());
            let d = reactor::defer_to_thread(|| 1);
            let f = d.result_now().expect("failed at once").unwrap_err();
            assert!(f.is::<Stopped>(), "{f}");
        },
    );
}

#[test]
fn a_stuck_pool_job_does_not_hang_the_shutdown() {
    in_child("a_stuck_pool_job_does_not_hang_the_shutdown", || {
        reactor::set_shutdown_timeout(Duration::from_millis(300));
        let (release, gate) = mpsc::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        reactor::call_in_thread(move || {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = gate.recv_timeout(LONG);
        })
        .unwrap();
        let deadline = Instant::now() + LONG;
        while started.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the job never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        let t0 = Instant::now();
        reactor::stop().unwrap();
        // The reactor refuses calls once its shutdown has closed the inbox.
        while reactor::call_from_thread(|| {}).is_ok() {
            assert!(Instant::now() < deadline, "the reactor never shut down");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "shutdown took {:?} with a stuck pool job",
            t0.elapsed()
        );
        assert!(reactor::call_in_thread(|| {}).is_err());
        drop(release);
    });
}
