//! ThreadPool jobs: results and callbacks on the worker, panics contained, cancellation.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{thread_name, LogCapture};
use filature::pool::{is_current_thread_worker, ThreadPool};
use filature::Failure;

#[test]
fn on_result_runs_on_the_worker_thread() {
    let pool = ThreadPool::with_name("cb", 1, 1).unwrap();
    pool.start().unwrap();
    let (tx, rx) = mpsc::channel();
    let job_thread = Arc::new(Mutex::new(None));
    let seen = job_thread.clone();
    pool.call_in_thread_with_callback(
        move |result: Result<(String, std::thread::ThreadId), Failure>| {
            let (name, id) = result.unwrap();
            tx.send((name, id, thread_name(), std::thread::current().id()))
                .unwrap();
        },
        move || {
            *seen.lock().unwrap() = Some(std::thread::current().id());
            (thread_name(), std::thread::current().id())
        },
    )
    .unwrap();
    let (job_name, job_id, cb_name, cb_id) = rx.recv().unwrap();
    assert_eq!(job_name, "filature-pool-cb-1");
    assert_eq!(cb_name, job_name);
    assert_eq!(cb_id, job_id);
    assert_ne!(cb_id, std::thread::current().id());
    assert_eq!(*job_thread.lock().unwrap(), Some(job_id));
    pool.stop();
}

#[test]
fn on_result_gets_the_failure_of_a_panicking_job() {
    let pool = ThreadPool::new(1, 1).unwrap();
    pool.start().unwrap();
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread_with_callback(
        move |result: Result<u32, Failure>| tx.send(result).unwrap(),
        || -> u32 { panic!("job exploded") },
    )
    .unwrap();
    let failure = rx.recv().unwrap().unwrap_err();
    assert!(failure.is_panic());
    assert_eq!(failure.panic_message(), Some("job exploded"));
    pool.stop();
}

#[test]
fn a_panicking_job_does_not_kill_its_worker() {
    let logs = LogCapture::global();
    let pool = ThreadPool::with_name("panics", 1, 1).unwrap();
    pool.start().unwrap();
    pool.call_in_thread_named("exploding-job", || panic!("job panic for the log"))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread(move || tx.send(thread_name()).unwrap())
        .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "filature-pool-panics-1"
    );
    assert_eq!(pool.stats().workers, 1, "still the same single worker");
    assert!(
        logs.contains("job panic for the log"),
        "the panic was logged"
    );
    assert!(logs.contains("exploding-job"), "the log names the job");
    pool.stop();
}

#[test]
fn a_panicking_on_result_is_logged_and_the_worker_survives() {
    let logs = LogCapture::global();
    let pool = ThreadPool::with_name("cbpanic", 1, 1).unwrap();
    pool.start().unwrap();
    pool.call_in_thread_with_callback(
        |_result: Result<(), Failure>| panic!("on_result panic for the log"),
        || (),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread(move || tx.send(thread_name()).unwrap())
        .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "filature-pool-cbpanic-1"
    );
    assert_eq!(pool.stats().workers, 1);
    assert!(logs.contains("on_result panic for the log"));
    pool.stop();
}

#[test]
fn a_cancelled_job_never_runs() {
    let pool = ThreadPool::new(1, 1).unwrap();
    pool.start().unwrap();
    // Occupy the only worker so the next jobs stay queued.
    let (release, gate) = mpsc::channel::<()>();
    pool.call_in_thread(move || {
        let _ = gate.recv();
    })
    .unwrap();
    while pool.stats().busy == 0 {
        std::thread::yield_now();
    }
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let doomed = pool
        .call_in_thread_cancellable(move || flag.store(true, Ordering::SeqCst))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let kept = pool
        .call_in_thread_named("kept", move || tx.send(()).unwrap())
        .unwrap();
    assert_eq!(pool.stats().backlog, 2);

    assert!(doomed.cancel());
    assert!(!doomed.cancel(), "a second cancel finds nothing");
    assert_eq!(pool.stats().backlog, 1);
    drop(release);
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!kept.cancel(), "too late: it already ran");
    pool.stop();
    assert!(!ran.load(Ordering::SeqCst), "the cancelled job ran");
}

#[test]
fn workers_know_they_are_workers() {
    assert!(!is_current_thread_worker());
    let pool = ThreadPool::new(1, 1).unwrap();
    pool.start().unwrap();
    let (tx, rx) = mpsc::channel();
    pool.call_in_thread(move || tx.send(is_current_thread_worker()).unwrap())
        .unwrap();
    assert!(rx.recv().unwrap());
    pool.stop();
}

#[test]
fn a_cancelled_callback_job_runs_neither_f_nor_on_result() {
    let pool = ThreadPool::new(0, 1).unwrap(); // not started: everything stays queued
    let ran = Arc::new(AtomicBool::new(false));
    let (f_flag, cb_flag) = (ran.clone(), ran.clone());
    let job = pool
        .call_in_thread_with_callback(
            move |_r: Result<(), Failure>| cb_flag.store(true, Ordering::SeqCst),
            move || f_flag.store(true, Ordering::SeqCst),
        )
        .unwrap();
    assert!(job.cancel());
    pool.start().unwrap();
    pool.stop();
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(
        Arc::strong_count(&ran),
        1,
        "the cancelled closures were dropped"
    );
}

#[test]
fn a_worker_knows_its_own_pool() {
    let a = Arc::new(ThreadPool::new(1, 1).unwrap());
    let b = Arc::new(ThreadPool::new(1, 1).unwrap());
    a.start().unwrap();
    let (tx, rx) = mpsc::channel();
    let (a2, b2) = (a.clone(), b.clone());
    a.call_in_thread(move || {
        tx.send((
            a2.is_current_thread_in_pool(),
            b2.is_current_thread_in_pool(),
        ))
        .unwrap()
    })
    .unwrap();
    assert_eq!(rx.recv().unwrap(), (true, false));
    assert!(!a.is_current_thread_in_pool());
    a.stop();
    b.stop();
}
