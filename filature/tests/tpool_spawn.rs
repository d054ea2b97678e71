//! `tpool::spawn`: detached `'static` work, waits with timeouts, cancellation, futures.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{Watchdog, LONG};
use filature::green;
use filature::tpool::{JobError, Tpool, WaitTimeoutError};

/// A value that counts its drops (it crosses threads, so the counter is atomic).
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < end, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_timed_out_wait_leaves_the_job_to_finish_and_drops_its_result() {
    let _w = Watchdog::new("timed out spawn", LONG);
    let pool = Tpool::new("spawn-timeout", 1);
    let drops = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (d, f) = (drops.clone(), finished.clone());
    let h = pool.spawn(move || {
        std::thread::sleep(Duration::from_millis(80));
        f.store(true, Ordering::SeqCst);
        Tracked(d)
    });
    let h = green::spawn(move || match h.wait_timeout(Duration::from_millis(5)) {
        Err(WaitTimeoutError::TimedOut(h)) => h,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the job cannot be done yet"),
    })
    .join();
    assert!(!finished.load(Ordering::SeqCst));
    drop(h); // give up on it
    wait_for("the job finishing", || finished.load(Ordering::SeqCst));
    wait_for("its result being dropped", || {
        drops.load(Ordering::SeqCst) == 1
    });
    pool.killall();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once");
}

#[test]
fn a_timed_out_handle_can_still_be_waited_for() {
    let _w = Watchdog::new("wait again", LONG);
    let pool = Tpool::new("spawn-again", 1);
    let h = pool.spawn(|| {
        std::thread::sleep(Duration::from_millis(40));
        "late"
    });
    let h = match h.wait_timeout(Duration::from_millis(1)) {
        Err(WaitTimeoutError::TimedOut(h)) => h,
        other => panic!("{other:?}"),
    };
    assert!(!h.is_finished());
    assert_eq!(h.wait(), "late");
}

#[test]
fn a_cancelled_queued_job_never_runs() {
    let _w = Watchdog::new("cancel", LONG);
    let pool = Tpool::new("spawn-cancel", 1);
    let (release, gate) = mpsc::channel::<()>();
    let busy = pool.spawn(move || {
        let _ = gate.recv();
    });
    wait_for("the worker to be busy", || pool.stats().busy == 1);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let queued = pool.spawn(move || r.store(true, Ordering::SeqCst));
    assert!(queued.cancel());
    assert!(!queued.cancel(), "a second cancel finds nothing");
    assert!(queued.is_finished());
    assert!(matches!(queued.wait_result(), Err(JobError::Cancelled)));
    drop(release);
    busy.wait();
    // A started job cannot be cancelled.
    let (began, has_begun) = mpsc::channel();
    let started = pool.spawn(move || {
        began.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    });
    has_begun.recv_timeout(LONG).expect("the job starts");
    assert!(!started.cancel());
    started.wait();
    pool.killall(); // runs and joins everything still queued
    assert!(!ran.load(Ordering::SeqCst), "the cancelled job ran");
}

#[test]
fn a_panicking_job_reports_its_failure() {
    let _w = Watchdog::new("spawn panic", LONG);
    let pool = Tpool::new("spawn-panic", 1);
    let h = pool.spawn(|| -> u8 { panic!("spawned boom") });
    match h.wait_result() {
        Err(JobError::Panicked(f)) => assert_eq!(f.panic_message(), Some("spawned boom")),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.spawn(|| 1).wait(), 1, "the worker survived");
}

#[test]
fn waiting_parks_only_the_green_thread() {
    let _w = Watchdog::new("spawn wait green", LONG);
    let pool = Tpool::new("spawn-green", 1);
    // The job runs until the ticker has ticked (no race with a fixed sleep on a loaded machine).
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let h = pool.spawn(move || {
        wait.recv().unwrap();
        7
    });
    let waiter = green::spawn(move || h.wait());
    let ticker = green::spawn(|| {
        (0..5)
            .map(|_| green::sleep(Duration::from_millis(2)))
            .count()
    });
    assert_eq!(ticker.join(), 5);
    assert!(!waiter.is_finished(), "the waiter finished before its job");
    go.send(()).unwrap();
    assert_eq!(waiter.join(), 7);
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn the_handle_is_a_future() {
    let _w = Watchdog::new("spawn future", LONG);
    let pool = Tpool::new("spawn-future", 1);
    let mut fut = pin!(pool.spawn(|| {
        std::thread::sleep(Duration::from_millis(20));
        "awaited"
    }));
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let out = loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => break v,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(100)),
        }
    };
    assert_eq!(out.unwrap(), "awaited");
}
