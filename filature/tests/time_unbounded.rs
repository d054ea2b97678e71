//! A duration too large to add to the clock (`Duration::MAX`, `Duration::from_secs(u64::MAX)`)
//! means "no limit" everywhere a duration is taken, as it does for std's `thread::sleep` and
//! `recv_timeout`: no panic, a wait whose result is there (or arrives) returns it, and nothing
//! times out or fires because of it.
//!
//! One table lists every such API; each case runs with both durations, in a thread's main
//! context and in a green thread, and the test reports every case that fails, not just the
//! first. The reactor's APIs run in child processes (it runs once per process).

mod common;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{drive_until, in_child, in_child_with_env, panic_text, Watchdog};
use filature::deferred::Deferred;
use filature::green::{self, Command, JoinError, Timeout};
use filature::hub;
use filature::pool::ThreadPool;
use filature::reactor::{self, Phase, SystemEvent};
use filature::sync::{BoundedSemaphore, CountdownEvent, Event, Queue, Semaphore};
use filature::threads::{CumulativeEventQueue, EventQueue, ThreadManager};
use filature::tpool::{self, Tpool};
use filature::TimedOut;

/// The durations that cannot be added to `Instant::now()`.
const HUGE: [Duration; 2] = [Duration::MAX, Duration::from_secs(u64::MAX)];

/// How long "a while" is: long enough for a wrong zero timeout or an early timer to show.
const A_WHILE: Duration = Duration::from_millis(20);

const LIMIT: Duration = Duration::from_secs(120);

/// One API taking a duration, and how to check that it treats `d` as no limit.
type Case = (&'static str, fn(Duration));

/// Every API that takes a duration, outside the reactor. `hub::snapshot` comes first: with no
/// limit it waits for every hub to answer, so it runs before the other cases leave hubs behind.
const CASES: &[Case] = &[
    ("hub::snapshot", snapshot),
    ("green::sleep", sleep),
    ("green::with_timeout", with_timeout),
    ("green::Timeout::start", timeout_start),
    ("green::spawn_after", spawn_after),
    ("hub::call_later", hub_call_later),
    ("hub::DelayedCall::reset/delay", hub_delayed_call_moves),
    ("Event::wait_timeout", event_wait),
    ("Semaphore::acquire_timeout", semaphore_acquire),
    (
        "BoundedSemaphore::acquire_timeout",
        bounded_semaphore_acquire,
    ),
    ("Queue::get_timeout", queue_get),
    ("Queue::put_timeout", queue_put),
    ("CountdownEvent::wait_timeout", countdown_wait),
    ("JoinHandle::join_timeout", join_timeout),
    ("JoinHandle::wait_timeout", join_wait_timeout),
    ("FutureHandle::wait_timeout", future_wait_timeout),
    ("CommandReply::wait_timeout", command_wait),
    ("TpoolHandle::wait_timeout", tpool_wait),
    ("Tpool::killall_timeout", tpool_killall),
    ("ThreadPool::stop_timeout", pool_stop),
    ("ThreadPoolBuilder::idle_timeout", pool_idle_timeout),
    ("ThreadManager::stop_timeout", manager_stop),
    ("EventQueue::join_timeout", event_queue_join),
    ("CumulativeEventQueue::join_timeout", cumulative_join),
    ("hub::set_blocking_threshold", blocking_threshold),
];

#[test]
fn every_api_taking_a_duration_treats_one_too_large_for_the_clock_as_no_limit() {
    let _w = Watchdog::new("time_unbounded sweep", LIMIT);
    let mut failures = Vec::new();
    for &(api, check) in CASES {
        for d in HUGE {
            let main = catch_unwind(AssertUnwindSafe(|| check(d)));
            if let Err(p) = main {
                failures.push(format!(
                    "{} ({d:?}, main context): {}",
                    api,
                    panic_text(&*p)
                ));
            }
            let green = catch_unwind(AssertUnwindSafe(|| green::spawn(move || check(d)).join()));
            if let Err(p) = green {
                failures.push(format!(
                    "{} ({d:?}, green thread): {}",
                    api,
                    panic_text(&*p)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

/// Runs `f` on a new OS thread after `A_WHILE`.
fn after_a_while(f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(A_WHILE);
        f();
    })
}

fn snapshot(d: Duration) {
    let _ = hub::current(); // so there is a caller's hub to describe
    let snap = hub::snapshot(d);
    assert!(snap.hubs.iter().any(|h| h.is_caller));
    assert!(snap.hubs.iter().all(|h| h.detail.is_some()), "{snap}");
}

fn sleep(d: Duration) {
    // Sleeps until killed.
    let h = green::spawn(move || green::sleep(d));
    green::sleep(A_WHILE);
    assert!(!h.is_finished());
    h.kill();
    assert!(matches!(h.join_result(), Err(JoinError::Killed)));
    // Sleeps until a timeout interrupts it, here.
    assert_eq!(
        green::with_timeout(A_WHILE, || green::sleep(d)),
        Err(TimedOut)
    );
}

fn with_timeout(d: Duration) {
    assert_eq!(green::with_timeout(d, || 7), Ok(7));
    assert_eq!(
        green::with_timeout(d, || {
            green::sleep(A_WHILE);
            8
        }),
        Ok(8)
    );
    let ev = Event::new();
    let tx = ev.clone();
    let t = after_a_while(move || tx.send(9).unwrap());
    assert_eq!(green::with_timeout(d, || ev.wait().unwrap()), Ok(9));
    t.join().unwrap();
}

fn timeout_start(d: Duration) {
    let t = Timeout::start(d);
    green::sleep(A_WHILE);
    assert!(!t.expired());
    assert_eq!(t.run(|| 3), Ok(3));
}

fn spawn_after(d: Duration) {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = green::spawn_after(d, move || r.set(true));
    green::sleep(A_WHILE);
    assert!(!h.is_finished());
    h.kill(); // a kill starts it at once, to end
    assert!(matches!(h.join_result(), Err(JoinError::Killed)));
    assert!(!ran.get());
}

fn hub_call_later(d: Duration) {
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let dc = hub::call_later(d, move || f.set(true));
    green::sleep(A_WHILE);
    assert!(!fired.get());
    assert!(dc.active());
    // It reports the end of the clock, the same every time.
    assert_eq!(dc.time(), dc.time());
    assert!(dc.time() > Instant::now() + Duration::from_secs(1 << 30));
    assert_eq!(dc.time().checked_add(Duration::from_nanos(1)), None);
    // Back within reach, it runs.
    dc.reset(Duration::ZERO).unwrap();
    drive_until(LIMIT, || fired.get());
    assert!(!dc.active());
}

fn hub_delayed_call_moves(d: Duration) {
    let soon = hub::call_later(Duration::from_secs(3600), || unreachable!());
    soon.delay(d).unwrap(); // postponed past the end of the clock: never
    assert!(soon.active());
    assert_eq!(soon.time().checked_add(Duration::from_nanos(1)), None);
    soon.delay(Duration::from_secs(1)).unwrap(); // never stays never
    assert!(soon.active());
    soon.reset(Duration::from_secs(3600)).unwrap();
    assert!(soon.time() < Instant::now() + Duration::from_secs(3601));
    soon.reset(d).unwrap();
    green::sleep(A_WHILE);
    assert!(soon.active());
    soon.cancel().unwrap();
}

fn event_wait(d: Duration) {
    let ready = Event::new();
    ready.send(1).unwrap();
    assert_eq!(ready.wait_timeout(d).unwrap().unwrap(), 1);
    let later = Event::new();
    let tx = later.clone();
    let t = after_a_while(move || tx.send(2).unwrap());
    assert_eq!(later.wait_timeout(d).unwrap().unwrap(), 2);
    t.join().unwrap();
}

fn semaphore_acquire(d: Duration) {
    let sem = Arc::new(Semaphore::new(1));
    assert!(sem.acquire_timeout(d));
    let s = sem.clone();
    let t = after_a_while(move || s.release());
    assert!(sem.acquire_timeout(d));
    t.join().unwrap();
}

fn bounded_semaphore_acquire(d: Duration) {
    let sem = Arc::new(BoundedSemaphore::new(1));
    assert!(sem.acquire_timeout(d));
    let s = sem.clone();
    let t = after_a_while(move || s.release().unwrap());
    assert!(sem.acquire_timeout(d));
    t.join().unwrap();
}

fn queue_get(d: Duration) {
    let q = Queue::unbounded();
    q.put(1);
    assert_eq!(q.get_timeout(d).ok(), Some(1));
    let tx = q.clone();
    let t = after_a_while(move || tx.put(2));
    assert_eq!(q.get_timeout(d).ok(), Some(2));
    t.join().unwrap();
}

fn queue_put(d: Duration) {
    let q = Queue::bounded(1);
    assert!(q.put_timeout(1, d).is_ok());
    let rx = q.clone();
    let t = after_a_while(move || assert_eq!(rx.try_get().ok(), Some(1)));
    assert!(q.put_timeout(2, d).is_ok()); // waits for the room
    t.join().unwrap();
    assert_eq!(q.try_get().ok(), Some(2));
}

fn countdown_wait(d: Duration) {
    assert!(CountdownEvent::new(0).wait_timeout(d).is_ok());
    let left = CountdownEvent::new(1);
    let l = left.clone();
    let t = after_a_while(move || l.count_down());
    assert!(left.wait_timeout(d).is_ok());
    t.join().unwrap();
}

fn join_timeout(d: Duration) {
    let done = green::spawn(|| 1);
    done.wait();
    assert_eq!(done.join_timeout(d).ok(), Some(1));
    let later = green::spawn(|| {
        green::sleep(A_WHILE);
        2
    });
    assert_eq!(later.join_timeout(d).ok(), Some(2));
}

fn join_wait_timeout(d: Duration) {
    let h = green::spawn(|| {
        green::sleep(A_WHILE);
        3
    });
    assert!(h.wait_timeout(d));
    assert!(h.wait_timeout(d)); // finished: at once
    assert_eq!(h.join(), 3);
}

fn future_wait_timeout(d: Duration) {
    let ready = hub::spawn_future(async { 1 });
    assert!(ready.wait_timeout(d));
    let g = green::spawn(|| green::sleep(A_WHILE));
    let later = hub::spawn_future(async move { g.await.is_ok() });
    assert!(later.wait_timeout(d));
    assert!(later.join());
}

fn command_wait(d: Duration) {
    let (cmd, reply) = Command::<u32>::new("signalled");
    cmd.signal(1).unwrap();
    assert_eq!(reply.wait_timeout(d).ok().unwrap().unwrap(), 1);
    let (cmd, reply) = Command::<u32>::new("signalled later");
    let t = after_a_while(move || cmd.signal(2).unwrap());
    assert_eq!(reply.wait_timeout(d).ok().unwrap().unwrap(), 2);
    t.join().unwrap();
}

fn tpool_wait(d: Duration) {
    let quick = tpool::spawn(|| 1);
    assert_eq!(quick.wait_timeout(d).ok(), Some(1));
    let slow = tpool::spawn(|| {
        std::thread::sleep(A_WHILE);
        2
    });
    assert_eq!(slow.wait_timeout(d).ok(), Some(2));
}

fn tpool_killall(d: Duration) {
    let pool = Tpool::new("sweep-killall", 1);
    let h = pool.spawn(|| {
        std::thread::sleep(A_WHILE);
        4
    });
    assert!(pool.killall_timeout(d).is_ok());
    assert_eq!(h.wait(), 4);
}

/// Submits three jobs that each take a while; counts those that have run.
fn three_slow_jobs(submit: impl Fn(Box<dyn FnOnce() + Send>)) -> Arc<AtomicUsize> {
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let r = ran.clone();
        submit(Box::new(move || {
            std::thread::sleep(A_WHILE);
            r.fetch_add(1, Ordering::Relaxed);
        }));
    }
    ran
}

fn pool_stop(d: Duration) {
    let pool = ThreadPool::new(1, 1).unwrap();
    pool.start().unwrap();
    let ran = three_slow_jobs(|job| pool.call_in_thread(job).unwrap());
    assert!(pool.stop_timeout(d).is_ok());
    assert_eq!(ran.load(Ordering::Relaxed), 3);
}

fn pool_idle_timeout(d: Duration) {
    let pool = ThreadPool::builder()
        .min(0)
        .max(1)
        .idle_timeout(Some(d))
        .build()
        .unwrap();
    pool.start().unwrap();
    let done = Event::new();
    let tx = done.clone();
    pool.call_in_thread(move || tx.send(()).unwrap()).unwrap();
    done.wait().unwrap();
    green::sleep(A_WHILE);
    assert_eq!(pool.stats().workers, 1, "an idle worker never times out");
    assert!(pool.stop_timeout(d).is_ok());
}

fn manager_stop(d: Duration) {
    let manager = ThreadManager::new();
    let ran = three_slow_jobs(|job| manager.call_in_thread("slow", job).unwrap());
    assert!(manager.stop_timeout(d).is_ok());
    assert_eq!(ran.load(Ordering::Relaxed), 3);
}

fn event_queue_join(d: Duration) {
    let queue = EventQueue::new(|_: u32| std::thread::sleep(A_WHILE));
    queue.put(1).unwrap();
    queue.stop();
    assert!(queue.join_timeout(d).is_ok());
}

fn cumulative_join(d: Duration) {
    let queue = CumulativeEventQueue::new(|_: Vec<u32>| {
        std::thread::sleep(A_WHILE);
        Vec::new()
    });
    queue.put(1).unwrap();
    queue.stop();
    assert!(queue.join_timeout(d).is_ok());
}

fn blocking_threshold(d: Duration) {
    hub::set_blocking_threshold(Some(d));
    assert_eq!(hub::blocking_threshold(), Some(d));
    green::sleep(A_WHILE);
    hub::set_blocking_threshold(None);
}

// The reactor's APIs, in a child process per duration: run on this thread with a shutdown
// timeout of `d`, driven from another thread, then stopped; `run` must return.

const DURATION_VAR: &str = "FILATURE_TEST_HUGE";

#[test]
fn reactor_apis_treat_duration_max_as_no_limit() {
    let name = "reactor_apis_treat_duration_max_as_no_limit";
    in_child_with_env(name, &[(DURATION_VAR, "max")], || {
        reactor_sweep(Duration::MAX)
    });
}

#[test]
fn reactor_apis_treat_u64_max_seconds_as_no_limit() {
    let name = "reactor_apis_treat_u64_max_seconds_as_no_limit";
    in_child_with_env(name, &[(DURATION_VAR, "secs")], || {
        reactor_sweep(Duration::from_secs(u64::MAX))
    });
}

/// The reactor's cases, run from a thread other than the reactor's.
const REACTOR_CASES: &[Case] = &[
    ("reactor::call_later", reactor_call_later),
    (
        "reactor::DelayedCall::reset/delay",
        reactor_delayed_call_moves,
    ),
    (
        "reactor::blocking_call_from_thread_timeout",
        reactor_blocking_timeout,
    ),
    (
        "reactor::blocking_call_from_thread_deferred_timeout",
        reactor_blocking_deferred_timeout,
    ),
    (
        "reactor::blocking_call_from_thread_future_timeout",
        reactor_blocking_future_timeout,
    ),
];

fn reactor_sweep(d: Duration) {
    let _w = Watchdog::new("reactor sweep", LIMIT);
    reactor::set_shutdown_timeout(d);
    reactor::prepare_run().unwrap();
    // At shutdown: a `before` trigger whose Deferred fires a while later (the wait for it has no
    // limit), the reactor's thread pool with a job queued, and a green thread left to kill.
    reactor::add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, || {
        let d = Deferred::new();
        let fire = d.clone();
        reactor::call_later(A_WHILE, move || fire.callback(()).unwrap()).unwrap();
        d
    });
    let driver = std::thread::spawn(move || {
        let mut failures = Vec::new();
        for &(api, check) in REACTOR_CASES {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| check(d))) {
                failures.push(format!("{}: {}", api, panic_text(&*p)));
            }
        }
        reactor::call_in_thread(|| std::thread::sleep(A_WHILE)).unwrap();
        reactor::call_in_green_thread(move || green::sleep(d)).unwrap();
        reactor::stop().unwrap();
        failures
    });
    reactor::run().unwrap();
    let failures = driver.join().unwrap();
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

fn reactor_call_later(d: Duration) {
    let dc = reactor::call_later(d, || unreachable!()).unwrap();
    std::thread::sleep(A_WHILE);
    assert!(dc.active());
    assert_eq!(dc.time(), dc.time());
    assert_eq!(dc.time().checked_add(Duration::from_nanos(1)), None);
    // Back within reach, it runs.
    let fired = Event::new();
    let f = fired.clone();
    let dc = reactor::call_later(d, move || f.send(()).unwrap()).unwrap();
    dc.reset(Duration::ZERO).unwrap();
    fired.wait().unwrap();
}

fn reactor_delayed_call_moves(d: Duration) {
    let dc = reactor::call_later(Duration::from_secs(3600), || unreachable!()).unwrap();
    dc.delay(d).unwrap();
    assert_eq!(dc.time().checked_add(Duration::from_nanos(1)), None);
    dc.delay(Duration::from_secs(1)).unwrap();
    dc.reset(d).unwrap();
    std::thread::sleep(A_WHILE);
    assert!(dc.active());
    dc.cancel().unwrap();
}

fn reactor_blocking_timeout(d: Duration) {
    assert_eq!(
        reactor::blocking_call_from_thread_timeout(d, || 1).unwrap(),
        1
    );
    let slow = reactor::blocking_call_from_thread_timeout(d, || {
        std::thread::sleep(A_WHILE);
        2
    });
    assert_eq!(slow.unwrap(), 2);
}

fn reactor_blocking_deferred_timeout(d: Duration) {
    let v = reactor::blocking_call_from_thread_deferred_timeout(d, || {
        let def = Deferred::new();
        let fire = def.clone();
        reactor::call_later(A_WHILE, move || fire.callback(3).unwrap()).unwrap();
        def
    });
    assert_eq!(v.unwrap(), 3);
}

fn reactor_blocking_future_timeout(d: Duration) {
    let v = reactor::blocking_call_from_thread_future_timeout(d, || async {
        let _ = green::spawn(|| green::sleep(A_WHILE)).await;
        4
    });
    assert_eq!(v.unwrap(), 4);
}

#[test]
fn set_shutdown_timeout_max_then_run_and_stop_returns() {
    in_child("set_shutdown_timeout_max_then_run_and_stop_returns", || {
        let _w = Watchdog::new("shutdown timeout max", LIMIT);
        reactor::set_shutdown_timeout(Duration::MAX);
        reactor::call_when_running(|| reactor::stop().unwrap()).unwrap();
        reactor::run().unwrap();
        assert!(!reactor::is_running());
    });
}
