//! Thread exit with green threads still parked: nothing they borrow (thread-locals, lent to a
//! pool job or to scoped OS threads) is freed while it can still be used, on every kind of
//! thread: a plain `std::thread`, one inside `hub::scope`, a named thread, the reactor thread.
//! Each scenario runs in a child process (the reactor one needs a fresh reactor; the others keep
//! a failure in one from tearing down the rest). `.ci/asan` runs this file under
//! AddressSanitizer, which turns any use-after-free into a failure.

mod common;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::in_child;
use filature::sync::{Event, Queue, Semaphore};
use filature::threads::ThreadManager;
use filature::{green, hub, net, reactor, tpool};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const N: u64 = 4096;
const EXPECTED: u64 = N * (N - 1) / 2;

thread_local! {
    static DATA: Vec<u64> = (0..N).collect();
}

/// The sum a job or scoped thread computed from `DATA` (0 = not yet).
static SUM: AtomicU64 = AtomicU64::new(0);

/// How many lends (pool jobs, scoped threads) have started: a scenario ends its thread only
/// once its lend runs, however loaded the machine.
static LENDS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Drives the calling context's hub until `n` lends have started (bounded).
fn drive_until_lent(n: usize) {
    let start = Instant::now();
    while LENDS_STARTED.load(SeqCst) < n && start.elapsed() < ms(20_000) {
        green::sleep(ms(5));
    }
}

/// Program A's green thread: parked in `tpool::execute`, lending a borrow of `DATA`.
fn lend_data_to_tpool() {
    DATA.with(|d| {
        tpool::execute(|| {
            LENDS_STARTED.fetch_add(1, SeqCst);
            std::thread::sleep(ms(300)); // the thread ends meanwhile
            SUM.store(d.iter().sum::<u64>(), SeqCst);
        })
    });
}

/// Program B's green thread: parked inside `std::thread::scope`, whose thread borrows `DATA`.
fn lend_data_to_scoped_thread() {
    DATA.with(|d| {
        std::thread::scope(|s| {
            s.spawn(|| {
                LENDS_STARTED.fetch_add(1, SeqCst);
                std::thread::sleep(ms(300));
                SUM.store(d.iter().sum::<u64>(), SeqCst);
            });
            green::sleep(ms(10_000));
        })
    });
}

#[test]
fn a_plain_thread_ends_while_a_green_thread_lends_a_thread_local_to_tpool() {
    in_child(
        "a_plain_thread_ends_while_a_green_thread_lends_a_thread_local_to_tpool",
        || {
            std::thread::spawn(|| {
                let _h = green::spawn(lend_data_to_tpool);
                drive_until_lent(1); // it parks in execute; then return
            })
            .join()
            .unwrap();
            // The thread's exit waited for the job, which read live data.
            assert_eq!(SUM.load(SeqCst), EXPECTED);
        },
    );
}

#[test]
fn a_plain_thread_ends_while_a_green_thread_is_inside_a_std_thread_scope() {
    in_child(
        "a_plain_thread_ends_while_a_green_thread_is_inside_a_std_thread_scope",
        || {
            std::thread::spawn(|| {
                let _h = green::spawn(lend_data_to_scoped_thread);
                drive_until_lent(1);
            })
            .join()
            .unwrap();
            assert_eq!(SUM.load(SeqCst), EXPECTED);
        },
    );
}

/// Program C: a thread-local borrow held across parks, and a thread-local destructor that drives
/// the hub after the borrowed key would have been destroyed.
mod program_c {
    use super::*;

    pub(super) static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    pub(super) static WRONG: AtomicUsize = AtomicUsize::new(0);

    pub(super) struct Driver;
    impl Drop for Driver {
        fn drop(&mut self) {
            green::sleep(ms(60));
        }
    }
    thread_local! {
        pub(super) static DRIVER: Driver = const { Driver };
        pub(super) static DATA2: Vec<u64> = (0..N).collect();
    }

    /// The hub's thread-local first (destroyed last), then the driver, then a green thread
    /// that borrows `DATA2` (first used inside it, so destroyed first) across its parks.
    pub(super) fn set_up() {
        let _ = hub::current();
        DRIVER.with(|_| ());
        green::spawn(|| {
            DATA2.with(|d| loop {
                green::sleep(ms(10));
                ITERATIONS.fetch_add(1, SeqCst);
                if d.iter().sum::<u64>() != EXPECTED {
                    WRONG.fetch_add(1, SeqCst);
                }
            })
        });
    }

    pub(super) fn body() {
        set_up();
        // Drive until the green thread has been around its loop (however loaded the machine).
        while ITERATIONS.load(SeqCst) < 2 {
            green::sleep(ms(5));
        }
    }

    /// From another thread: waits (bounded) until the green thread has been around its loop.
    pub(super) fn wait_for_iterations() {
        let start = Instant::now();
        while ITERATIONS.load(SeqCst) < 2 && start.elapsed() < ms(20_000) {
            std::thread::sleep(ms(5));
        }
    }
}

#[test]
fn a_thread_local_destructor_that_drives_the_hub_never_resumes_a_green_thread_over_freed_data() {
    in_child(
        "a_thread_local_destructor_that_drives_the_hub_never_resumes_a_green_thread_over_freed_data",
        || {
            std::thread::spawn(program_c::body).join().unwrap();
            assert!(program_c::ITERATIONS.load(SeqCst) >= 1);
            assert_eq!(program_c::WRONG.load(SeqCst), 0);
        },
    );
}

#[test]
fn program_c_inside_hub_scope() {
    in_child("program_c_inside_hub_scope", || {
        std::thread::spawn(|| hub::scope(program_c::body))
            .join()
            .unwrap();
        assert_eq!(program_c::WRONG.load(SeqCst), 0);
    });
}

#[test]
fn programs_a_and_b_inside_hub_scope() {
    in_child("programs_a_and_b_inside_hub_scope", || {
        for program in [lend_data_to_tpool as fn(), lend_data_to_scoped_thread] {
            SUM.store(0, SeqCst);
            LENDS_STARTED.store(0, SeqCst);
            std::thread::spawn(move || {
                hub::scope(|| {
                    let _h = green::spawn(program);
                    drive_until_lent(1);
                });
                // The scope waited for the lend before returning.
                assert_eq!(SUM.load(SeqCst), EXPECTED);
            })
            .join()
            .unwrap();
        }
    });
}

#[test]
fn programs_a_and_b_on_a_named_thread() {
    in_child("programs_a_and_b_on_a_named_thread", || {
        for program in [lend_data_to_tpool as fn(), lend_data_to_scoped_thread] {
            SUM.store(0, SeqCst);
            LENDS_STARTED.store(0, SeqCst);
            let manager = ThreadManager::new();
            let started = Event::new();
            let s = started.clone();
            manager
                .call_in_thread("lender", move || {
                    let _h = green::spawn(program);
                    let _ = s.send(());
                })
                .unwrap();
            started.wait().unwrap();
            drive_until_lent(1); // the green thread parks with its lend
            manager.stop(); // returns once the thread exited
            assert_eq!(SUM.load(SeqCst), EXPECTED);
        }
    });
}

#[test]
fn program_c_on_a_named_thread() {
    in_child("program_c_on_a_named_thread", || {
        let manager = ThreadManager::new();
        let (tx, rx) = std::sync::mpsc::channel();
        manager
            .call_in_thread("driver", move || {
                program_c::set_up();
                tx.send(()).unwrap();
            })
            .unwrap();
        rx.recv().unwrap();
        program_c::wait_for_iterations();
        manager.stop();
        assert!(program_c::ITERATIONS.load(SeqCst) >= 1);
        assert_eq!(program_c::WRONG.load(SeqCst), 0);
    });
}

#[test]
fn program_c_on_the_reactor_thread() {
    in_child("program_c_on_the_reactor_thread", || {
        reactor::call_in_reactor(program_c::set_up).unwrap();
        program_c::wait_for_iterations();
        reactor::stop().unwrap();
        // The reactor thread ends: its shutdown unwinds the green thread, then its
        // thread-locals go (the driver's destructor drives a fresh hub with nothing on it).
        std::thread::sleep(ms(300));
        assert!(program_c::ITERATIONS.load(SeqCst) >= 1);
        assert_eq!(program_c::WRONG.load(SeqCst), 0);
    });
}

#[test]
fn programs_a_and_b_on_the_reactor_thread() {
    in_child("programs_a_and_b_on_the_reactor_thread", || {
        // Both green threads on the reactor at once; the reactor stops while both are parked.
        static SUMS: AtomicUsize = AtomicUsize::new(0);
        static SUM_A: AtomicU64 = AtomicU64::new(0);
        static SUM_B: AtomicU64 = AtomicU64::new(0);
        reactor::call_in_green_thread(|| {
            DATA.with(|d| {
                tpool::execute(|| {
                    LENDS_STARTED.fetch_add(1, SeqCst);
                    std::thread::sleep(ms(300));
                    SUM_A.store(d.iter().sum::<u64>(), SeqCst);
                    SUMS.fetch_add(1, SeqCst);
                })
            });
        })
        .unwrap();
        reactor::call_in_green_thread(|| {
            DATA.with(|d| {
                std::thread::scope(|s| {
                    s.spawn(|| {
                        LENDS_STARTED.fetch_add(1, SeqCst);
                        std::thread::sleep(ms(300));
                        SUM_B.store(d.iter().sum::<u64>(), SeqCst);
                        SUMS.fetch_add(1, SeqCst);
                    });
                    green::sleep(ms(10_000));
                })
            });
        })
        .unwrap();
        drive_until_lent(2);
        reactor::stop().unwrap();
        let start = Instant::now();
        while SUMS.load(SeqCst) < 2 && start.elapsed() < ms(10_000) {
            std::thread::sleep(ms(5));
        }
        assert_eq!(SUM_A.load(SeqCst), EXPECTED);
        assert_eq!(SUM_B.load(SeqCst), EXPECTED);
        // The reactor thread is gone or going; give it time to end before the process does.
        std::thread::sleep(ms(100));
    });
}

// ---- Destructors run before any thread-local is destroyed, at every kind of park point ----

/// What was dropped, in order, across threads.
static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(what: impl Into<String>) {
    ORDER.lock().unwrap().push(what.into());
}

/// Records its own drop: a green thread's frame holds one.
struct Guard(&'static str);
impl Drop for Guard {
    fn drop(&mut self) {
        record(format!("green:{}", self.0));
    }
}

/// A thread-local whose destructor records the order.
struct TlsRecorder;
impl Drop for TlsRecorder {
    fn drop(&mut self) {
        record("tls");
    }
}
thread_local! {
    static RECORDER: TlsRecorder = const { TlsRecorder };
    static LATE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Spawns green threads parked at every kind of park point, each holding a guard and a borrow of
/// `LATE` (first used inside them, so registered after the hub).
/// How many of `park_everywhere`'s green threads have reached their park point.
static ABOUT_TO_PARK: AtomicUsize = AtomicUsize::new(0);

/// Drives the calling context's hub until `park_everywhere`'s green threads are all about to
/// park (bounded).
fn drive_until_parked(n: usize) {
    let start = Instant::now();
    while ABOUT_TO_PARK.load(SeqCst) < n && start.elapsed() < ms(20_000) {
        green::sleep(ms(5));
    }
    green::sleep(ms(5)); // and then parked
}

fn park_everywhere() -> usize {
    fn holding(name: &'static str, park: impl FnOnce() + 'static) {
        green::spawn(move || {
            let _g = Guard(name);
            LATE.with(|l| {
                l.borrow_mut().push(1);
                ABOUT_TO_PARK.fetch_add(1, SeqCst);
                park();
                l.borrow_mut().push(2);
            });
        });
    }
    let event: Event<()> = Event::new();
    let empty: Queue<u8> = Queue::unbounded();
    let queue: Queue<u8> = Queue::bounded(0);
    let sem = Semaphore::new(0);
    let forever = green::spawn(|| green::sleep(ms(60_000)));
    let (e, q, s) = (event.clone(), empty.clone(), sem.clone());
    holding("sleep", || green::sleep(ms(60_000)));
    holding("event", move || drop(e.wait()));
    holding("queue_get", move || {
        q.get();
    });
    let q2 = queue.clone();
    holding("queue_put", move || q2.put(7));
    holding("semaphore", move || s.acquire());
    holding("join", move || drop(forever.join_result()));
    holding("tpool", || {
        tpool::execute(|| std::thread::sleep(ms(200)));
    });
    holding("with_timeout", || {
        let _ = green::with_timeout(ms(60_000), || green::sleep(ms(60_000)));
    });
    holding("yield", || loop {
        green::yield_now();
    });
    holding("block_on", || {
        green::block_on(std::future::pending::<()>());
    });
    // Keep the primitives alive in the green threads' captures only (a drop would not wake them).
    std::mem::forget((event, empty, queue, sem));
    10
}

fn check_order(expected_greens: usize) {
    let order = ORDER.lock().unwrap().clone();
    let greens = order.iter().filter(|s| s.starts_with("green:")).count();
    assert_eq!(
        greens, expected_greens,
        "every guard dropped once: {order:?}"
    );
    let tls_at = order
        .iter()
        .position(|s| s == "tls")
        .expect("the recorder dropped");
    assert!(
        order[..tls_at]
            .iter()
            .filter(|s| s.starts_with("green:"))
            .count()
            == expected_greens,
        "every green thread unwound before the thread's thread-locals were destroyed: {order:?}"
    );
}

#[test]
fn destructors_of_parked_green_threads_run_before_thread_locals_die_on_a_plain_thread() {
    in_child(
        "destructors_of_parked_green_threads_run_before_thread_locals_die_on_a_plain_thread",
        || {
            std::thread::spawn(|| {
                RECORDER.with(|_| ());
                let n = park_everywhere();
                drive_until_parked(n);
                n
            })
            .join()
            .map(check_order)
            .unwrap();
        },
    );
}

#[test]
fn destructors_of_parked_green_threads_run_before_thread_locals_die_in_hub_scope() {
    in_child(
        "destructors_of_parked_green_threads_run_before_thread_locals_die_in_hub_scope",
        || {
            std::thread::spawn(|| {
                hub::scope(|| {
                    let n = park_everywhere();
                    drive_until_parked(n);
                    RECORDER.with(|_| ()); // even first used after the last wait
                    n
                })
            })
            .join()
            .map(check_order)
            .unwrap();
        },
    );
}

#[test]
fn destructors_of_parked_green_threads_run_before_thread_locals_die_on_a_named_thread() {
    in_child(
        "destructors_of_parked_green_threads_run_before_thread_locals_die_on_a_named_thread",
        || {
            let manager = ThreadManager::new();
            let (tx, rx) = std::sync::mpsc::channel();
            manager
                .call_in_thread("parker", move || {
                    RECORDER.with(|_| ());
                    tx.send(park_everywhere()).unwrap();
                })
                .unwrap();
            let n = rx.recv().unwrap();
            let start = Instant::now();
            while ABOUT_TO_PARK.load(SeqCst) < n && start.elapsed() < ms(20_000) {
                std::thread::sleep(ms(5));
            }
            std::thread::sleep(ms(20));
            manager.stop();
            check_order(n);
        },
    );
}

#[test]
fn a_green_thread_that_never_ran_is_settled_as_killed_at_thread_exit() {
    let h = std::thread::spawn(|| green::spawn(|| 5)).join().unwrap();
    assert!(h.join_result().unwrap_err().is_killed());
}

#[test]
fn hub_scope_can_be_used_twice_on_one_thread_and_old_handles_are_refused() {
    std::thread::spawn(|| {
        let first = hub::scope(|| {
            let h = green::spawn(|| 1);
            assert_eq!(h.join(), 1);
            hub::current()
        });
        assert!(
            first.call(|| {}).is_err(),
            "the first scope's hub is closed"
        );
        let second = hub::scope(|| {
            let h = green::spawn(|| 2);
            assert_eq!(h.join(), 2);
            hub::current()
        });
        assert!(second.call(|| {}).is_err());
        assert_ne!(format!("{first:?}"), "", "handles still print");
    })
    .join()
    .unwrap();
}

#[test]
fn hub_scope_runs_calls_it_accepted_before_returning() {
    std::thread::spawn(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        hub::scope(move || {
            let here = hub::current();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let r = r.clone();
                    if here
                        .call(move || {
                            r.fetch_add(1, SeqCst);
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .join()
            .unwrap();
        });
        assert_eq!(ran.load(SeqCst), 100);
    })
    .join()
    .unwrap();
}

#[test]
fn hub_scope_shuts_down_even_when_its_body_panics() {
    let killed = std::thread::spawn(|| {
        let handle: RefCell<Option<green::JoinHandle<()>>> = RefCell::new(None);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hub::scope(|| {
                *handle.borrow_mut() = Some(green::spawn(|| green::sleep(ms(60_000))));
                green::sleep(ms(10));
                panic!("body failed");
            })
        }));
        assert!(r.is_err());
        let h = handle.borrow_mut().take().unwrap();
        h.join_result().unwrap_err().is_killed()
    })
    .join()
    .unwrap();
    assert!(killed);
}

#[test]
fn hub_scope_from_a_green_thread_panics() {
    let h = green::spawn(|| hub::scope(|| 1));
    let err = h.join_result().unwrap_err();
    assert!(err.to_string().contains("main context"), "{err}");
}

// ---- Posts from thread-local destructors at thread exit ----

struct PostOnDrop(Arc<Mutex<Vec<&'static str>>>);
impl Drop for PostOnDrop {
    fn drop(&mut self) {
        let out = self.0.clone();
        let o = out.clone();
        let named = ThreadManager::global().call_in_thread("tls-dtor-target", move || {
            o.lock().unwrap().push("named ran")
        });
        out.lock().unwrap().push(if named.is_ok() {
            "named ok"
        } else {
            "named err"
        });
        let o = out.clone();
        let r = reactor::call_from_thread(move || o.lock().unwrap().push("reactor ran"));
        out.lock().unwrap().push(if r.is_ok() {
            "reactor ok"
        } else {
            "reactor err"
        });
        let o = out.clone();
        let p = reactor::call_in_thread(move || o.lock().unwrap().push("pool ran"));
        out.lock()
            .unwrap()
            .push(if p.is_ok() { "pool ok" } else { "pool err" });
    }
}
thread_local! {
    static POSTER: RefCell<Option<PostOnDrop>> = const { RefCell::new(None) };
}

#[test]
fn posting_from_a_thread_local_destructor_runs_or_errors_never_aborts() {
    in_child(
        "posting_from_a_thread_local_destructor_runs_or_errors_never_aborts",
        || {
            let out = Arc::new(Mutex::new(Vec::new()));
            let o = out.clone();
            std::thread::spawn(move || {
                // Posts from this thread first, so the manager's thread-local memo exists and
                // is destroyed before the poster's destructor runs.
                ThreadManager::global()
                    .call_in_thread("tls-dtor-target", || {})
                    .unwrap();
                POSTER.with(|p| *p.borrow_mut() = Some(PostOnDrop(o)));
                ThreadManager::global()
                    .call_in_thread("tls-dtor-target", || {})
                    .unwrap();
            })
            .join()
            .unwrap();
            let start = Instant::now();
            while out.lock().unwrap().len() < 6 && start.elapsed() < ms(10_000) {
                std::thread::sleep(ms(5));
            }
            let got = out.lock().unwrap().clone();
            let has = |s: String| got.iter().any(|g| *g == s);
            for what in ["named", "reactor", "pool"] {
                let ran = has(format!("{what} ok")) && has(format!("{what} ran"));
                assert!(ran || has(format!("{what} err")), "{what}: {got:?}");
            }
            ThreadManager::global().stop();
        },
    );
}

/// Found by the soak: a plain thread armed its exit hook (a drive resumed a green thread)
/// before its first use of a `Protocol` port, and resumed no green thread after it, so the
/// networking thread-locals were newer than every hook and destroyed before them; the hook's
/// shutdown then touched them and the process aborted. Now they are registered before the
/// hook's first arming.
#[test]
fn a_plain_thread_ends_with_a_port_first_opened_after_its_exit_hook_was_armed() {
    in_child(
        "a_plain_thread_ends_with_a_port_first_opened_after_its_exit_hook_was_armed",
        || {
            let addr = std::thread::spawn(|| {
                // A green thread runs and parks: the exit hook is armed by this drive.
                let _parked = green::spawn(|| green::sleep(ms(60_000)));
                green::sleep(ms(5));
                // The thread's first networking use, with no green thread resumed after it.
                let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), |_| None).unwrap();
                port.local_addr()
            })
            .join()
            .unwrap();
            // The thread's shutdown closed the port.
            let e = std::net::TcpStream::connect(addr).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        },
    );
}
