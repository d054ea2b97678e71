//! Named-thread jobs run in the thread's main context, as the SIP SIMPLE SDK's plain threads ran
//! them: a job may block on filature's waits (the reactor, tpool, events, joins), the thread's hub
//! keeps running meanwhile, and jobs stay serial. Where blocking stays forbidden (hub callbacks),
//! the refusal does not depend on whether the answer happened to be ready.
//!
//! Every answer below comes late (after the job has started waiting), so no test passes by luck.
//! The reactor is process-wide, so each test runs in a child process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{in_child, panic_text};
use filature::deferred::Deferred;
use filature::sync::Event;
use filature::threads::ThreadManager;
use filature::{green, hub, reactor, run_in_thread, tpool};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const LATE: u64 = 50;

/// Each of filature's blocking calls, with an answer that arrives `LATE` ms after it started
/// waiting; returns what each got.
fn block_on_everything() -> Vec<u64> {
    let mut got = Vec::new();
    // The reactor answers late: its call sleeps first.
    got.push(
        reactor::blocking_call_from_thread(|| {
            std::thread::sleep(ms(LATE));
            1
        })
        .unwrap(),
    );
    // A Deferred the reactor fires later.
    got.push(
        reactor::blocking_call_from_thread_deferred(|| {
            let d = Deferred::new();
            let d2 = d.clone();
            reactor::call_later(ms(LATE), move || d2.callback(2).unwrap()).unwrap();
            d
        })
        .unwrap(),
    );
    got.push(tpool::execute(|| {
        std::thread::sleep(ms(LATE));
        3
    }));
    let event = Event::new();
    let e = event.clone();
    std::thread::spawn(move || {
        std::thread::sleep(ms(LATE));
        e.send(4).unwrap();
    });
    got.push(event.wait().unwrap());
    let h = reactor::spawn(|| {
        green::sleep(ms(LATE));
        5
    });
    got.push(h.join());
    got
}

#[test]
fn a_named_thread_job_may_block_on_every_filature_wait() {
    in_child(
        "a_named_thread_job_may_block_on_every_filature_wait",
        || {
            let manager = ThreadManager::new();
            let (tx, rx) = mpsc::channel();
            manager
                .call_in_thread("blocker", move || tx.send(block_on_everything()).unwrap())
                .unwrap();
            assert_eq!(rx.recv_timeout(ms(20_000)).unwrap(), vec![1, 2, 3, 4, 5]);
            manager.stop();
        },
    );
}

#[run_in_thread("macro-blocker")]
fn blocking_in_a_macro_function(tx: mpsc::Sender<Vec<u64>>) {
    tx.send(block_on_everything()).unwrap();
}

#[test]
fn a_run_in_thread_function_may_block_on_every_filature_wait() {
    in_child(
        "a_run_in_thread_function_may_block_on_every_filature_wait",
        || {
            let (tx, rx) = mpsc::channel();
            blocking_in_a_macro_function(tx);
            assert_eq!(rx.recv_timeout(ms(20_000)).unwrap(), vec![1, 2, 3, 4, 5]);
            ThreadManager::global().stop();
        },
    );
}

#[test]
fn jobs_stay_serial_while_one_blocks_and_the_hub_keeps_running() {
    let manager = ThreadManager::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let ticks = Arc::new(AtomicUsize::new(0));
    let (l, t) = (log.clone(), ticks.clone());
    manager
        .call_in_thread("serial", move || {
            // A green thread on the named thread that ticks while the job below blocks.
            let t2 = t.clone();
            green::spawn(move || loop {
                green::sleep(ms(2));
                t2.fetch_add(1, SeqCst);
            });
            l.lock().unwrap().push("first: start");
            // Main-context waits: they drive the hub, so the green thread ticks meanwhile.
            while t.load(SeqCst) < 3 {
                green::sleep(ms(2));
            }
            l.lock().unwrap().push("first: end");
        })
        .unwrap();
    let l = log.clone();
    manager
        .call_in_thread("serial", move || l.lock().unwrap().push("second"))
        .unwrap();
    let done = Event::new();
    let d = done.clone();
    manager
        .call_in_thread("serial", move || d.send(()).unwrap())
        .unwrap();
    done.wait_timeout(ms(20_000)).unwrap().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec!["first: start", "first: end", "second"]
    );
    assert!(ticks.load(SeqCst) >= 3);
    manager.stop();
}

#[test]
fn a_panicking_job_is_logged_and_the_next_job_runs() {
    let manager = ThreadManager::new();
    manager
        .call_in_thread("panicky", || panic!("job failed"))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    manager
        .call_in_thread("panicky", move || tx.send("next ran").unwrap())
        .unwrap();
    assert_eq!(rx.recv_timeout(ms(10_000)).unwrap(), "next ran");
    manager.stop();
}

/// Runs `f` in a hub callback on a fresh thread and returns its panic message, if it panicked.
fn in_callback(f: impl FnOnce() + Send + 'static) -> Option<String> {
    std::thread::spawn(move || {
        let out = std::rc::Rc::new(std::cell::RefCell::new(None));
        let o = out.clone();
        hub::call_soon(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            *o.borrow_mut() = Some(r.err().map(|p| panic_text(&*p)));
        });
        while out.borrow().is_none() {
            green::yield_now();
        }
        let got = out.borrow_mut().take().unwrap();
        got
    })
    .join()
    .unwrap()
}

#[test]
fn blocking_in_a_hub_callback_is_refused_even_when_the_answer_is_ready() {
    in_child(
        "blocking_in_a_hub_callback_is_refused_even_when_the_answer_is_ready",
        || {
            // The reactor is up and answers in microseconds.
            assert_eq!(reactor::blocking_call_from_thread(|| 1).unwrap(), 1);
            let ran = Arc::new(AtomicUsize::new(0));
            let r = ran.clone();
            let refused = in_callback(move || {
                let _ = reactor::blocking_call_from_thread(move || r.fetch_add(1, SeqCst));
            });
            assert!(
                refused
                    .as_deref()
                    .is_some_and(|m| m.contains("hub callback")),
                "{refused:?}"
            );
            std::thread::sleep(ms(50));
            assert_eq!(ran.load(SeqCst), 0, "refused before anything was posted");

            let sent = Event::new();
            sent.send(7).unwrap();
            let refused = in_callback(move || drop(sent.wait()));
            assert!(refused.is_some_and(|m| m.contains("hub callback")));

            let done = tpool::spawn(|| 8);
            std::thread::sleep(ms(50)); // surely done by now
            let refused = in_callback(move || {
                done.wait();
            });
            assert!(refused.is_some_and(|m| m.contains("hub callback")));

            let fired: Deferred<u8> = Deferred::new();
            fired.callback(9).unwrap();
            let refused = in_callback(move || drop(green::block_on(fired)));
            assert!(refused.is_some_and(|m| m.contains("hub callback")));
        },
    );
}

/// Found by the soak: jobs still queued when a named thread is stopped run during its hub's
/// shutdown, after the inbox has closed, so wake-ups from other threads are refused. A job that
/// then waited for one (here: a green thread it spawned, waiting on an Event another OS thread
/// sets late) hung for ever, and with it every later thread of that name.
#[test]
fn a_job_queued_behind_a_stop_may_still_wait_for_another_thread() {
    let _w = common::Watchdog::new("job after stop", Duration::from_secs(30));
    let manager = Arc::new(ThreadManager::new());
    let (tx, rx) = mpsc::channel();
    let m = Arc::clone(&manager);
    manager
        .call_in_thread("late", move || {
            // Queued behind this job, then the stop: the hub's loop sees the stop before it
            // drains the job, so the job runs in the shutdown, with the inbox closed.
            m.schedule_in_thread("late", move || {
                // A green thread of this hub waits for another OS thread, which answers late...
                let ev = Event::<u64>::new();
                let e = ev.clone();
                let waiter = green::spawn(move || ev.wait().unwrap());
                std::thread::spawn(move || {
                    std::thread::sleep(ms(LATE));
                    let _ = e.send(7);
                });
                // ...and this main context waits for the green thread.
                tx.send(waiter.join()).unwrap();
            })
            .unwrap();
            m.stop_thread("late").unwrap();
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
    manager.stop();
}
