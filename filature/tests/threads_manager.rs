//! `threads::ThreadManager`: on-demand named threads, ordering and exactly-once delivery, inline
//! versus scheduled calls, stopping one thread or all, and green threads on a named thread.
//! Ported in spirit from the SIP SIMPLE SDK's `ThreadManager` behaviour.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use filature::threads::{ThreadErrorKind, ThreadManager, THREAD_OPS};
use filature::{green, hub};

/// Every blocking wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(TIMEOUT).expect("nothing arrived in time")
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stops `manager` from a helper thread, failing the test if that takes longer than `TIMEOUT`.
fn stop(manager: &Arc<ThreadManager>) {
    let m = manager.clone();
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        m.stop();
        tx.send(()).unwrap();
    });
    recv(&rx);
}

/// Blocks thread `id` until the returned sender is dropped or sent to.
fn gate(manager: &ThreadManager, id: &str) -> Sender<()> {
    let (open, gate) = bounded::<()>(0);
    let (started_tx, started) = bounded(1);
    manager
        .call_in_thread(id, move || {
            started_tx.send(()).unwrap();
            let _ = gate.recv_timeout(TIMEOUT);
        })
        .unwrap();
    recv(&started);
    open
}

/// How many OS threads of this process are named `comm` (Linux: the first 15 bytes of the name).
fn os_threads_named(comm: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == comm)
        .count()
}

#[test]
fn eight_producers_each_call_runs_once_in_producer_order() {
    const PRODUCERS: usize = 8;
    const CALLS: usize = 10_000;
    let manager = Arc::new(ThreadManager::new());
    let next = Arc::new(Mutex::new(vec![0usize; PRODUCERS]));
    let out_of_order = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (manager, next, out_of_order) = (&manager, &next, &out_of_order);
            s.spawn(move || {
                for i in 0..CALLS {
                    let next = next.clone();
                    let out_of_order = out_of_order.clone();
                    manager
                        .call_in_thread("tm-producers", move || {
                            let mut next = next.lock().unwrap();
                            if next[p] != i {
                                out_of_order.fetch_add(1, Ordering::Relaxed);
                            }
                            next[p] = i + 1;
                        })
                        .unwrap();
                }
            });
        }
    });
    stop(&manager);
    assert_eq!(out_of_order.load(Ordering::Relaxed), 0);
    assert_eq!(*next.lock().unwrap(), vec![CALLS; PRODUCERS]);
}

#[test]
fn a_same_thread_call_runs_inline_and_a_schedule_runs_after_the_queue() {
    let manager = Arc::new(ThreadManager::new());
    let (tx, rx) = unbounded();
    let open = gate(&manager, "tm-inline");
    {
        let (m, tx) = (manager.clone(), tx.clone());
        manager
            .call_in_thread("tm-inline", move || {
                tx.send("job: start").unwrap();
                let t = tx.clone();
                m.schedule_in_thread("tm-inline", move || t.send("scheduled").unwrap())
                    .unwrap();
                let t = tx.clone();
                m.call_in_thread("tm-inline", move || t.send("called inline").unwrap())
                    .unwrap();
                tx.send("job: end").unwrap();
            })
            .unwrap();
    }
    for q in ["queued 1", "queued 2"] {
        let tx = tx.clone();
        manager
            .call_in_thread("tm-inline", move || tx.send(q).unwrap())
            .unwrap();
    }
    drop(open);
    let got: Vec<&str> = (0..6).map(|_| recv(&rx)).collect();
    assert_eq!(
        got,
        [
            "job: start",
            "called inline",
            "job: end",
            "queued 1",
            "queued 2",
            "scheduled"
        ]
    );
    stop(&manager);
}

#[test]
fn sixteen_threads_racing_on_a_new_id_start_one_os_thread() {
    const NAME: &str = "tm-race-9c1e"; // within Linux's 15-byte thread name limit
    let manager = Arc::new(ThreadManager::new());
    let barrier = Barrier::new(16);
    let ids: Vec<ThreadId> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let t = manager.get_thread(NAME).unwrap();
                    let (tx, rx) = bounded(1);
                    t.call(move || tx.send(std::thread::current().id()).unwrap())
                        .unwrap();
                    recv(&rx)
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1);
    assert_eq!(os_threads_named(NAME), 1);
    stop(&manager);
    assert_eq!(os_threads_named(NAME), 0);
}

#[test]
fn a_named_thread_carries_its_full_name() {
    let manager = Arc::new(ThreadManager::new());
    let long = "tm-a-rather-long-thread-name";
    let (tx, rx) = bounded(1);
    manager
        .call_in_thread(long, move || {
            tx.send(std::thread::current().name().map(str::to_owned))
                .unwrap()
        })
        .unwrap();
    assert_eq!(recv(&rx).as_deref(), Some(long));
    assert_eq!(manager.get_thread(long).unwrap().hub().name(), long);
    stop(&manager);
}

#[test]
fn stop_runs_everything_queued_before_it_and_joins() {
    let manager = Arc::new(ThreadManager::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for id in ["tm-drain-a", "tm-drain-b", "tm-drain-c"] {
        handles.push(manager.get_thread(id).unwrap());
        // The first job holds the thread, so the rest are still queued when `stop` starts.
        manager
            .call_in_thread(id, || std::thread::sleep(Duration::from_millis(50)))
            .unwrap();
        for _ in 0..1000 {
            let ran = ran.clone();
            manager
                .call_in_thread(id, move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
        }
    }
    assert!(ran.load(Ordering::Relaxed) < 3000);
    stop(&manager);
    assert_eq!(ran.load(Ordering::Relaxed), 3000);
    assert!(handles.iter().all(|t| t.is_finished()));
}

#[test]
fn stop_timeout_returns_after_the_timeout_and_names_the_stuck_thread() {
    let manager = Arc::new(ThreadManager::new());
    let (release, stuck) = bounded::<()>(0);
    manager
        .call_in_thread("tm-stuck", move || {
            let _ = stuck.recv_timeout(TIMEOUT * 2);
        })
        .unwrap();
    let fine_ran = Arc::new(AtomicBool::new(false));
    let f = fine_ran.clone();
    manager
        .call_in_thread("tm-fine", move || f.store(true, Ordering::Relaxed))
        .unwrap();

    let started = Instant::now();
    let err = manager
        .stop_timeout(Duration::from_millis(200))
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "returned early: {took:?}"
    );
    assert!(took < TIMEOUT, "took {took:?}");
    assert_eq!(err.stuck(), ["tm-stuck"]);
    assert!(err.to_string().contains("tm-stuck"));
    assert!(fine_ran.load(Ordering::Relaxed));
    assert!(manager
        .call_in_thread("tm-fine", || ())
        .unwrap_err()
        .is_stopped());

    // Released, the thread exits, and a second stop waits for it.
    drop(release);
    stop(&manager);
    assert_eq!(os_threads_named("tm-stuck"), 0);
}

#[test]
fn posting_after_stop_is_an_error_not_a_new_thread() {
    let manager = Arc::new(ThreadManager::new());
    let t = manager.get_thread("tm-after").unwrap();
    stop(&manager);
    for err in [
        manager.call_in_thread("tm-after", || ()).unwrap_err(),
        manager.schedule_in_thread("tm-after", || ()).unwrap_err(),
        manager.call_in_thread("tm-never", || ()).unwrap_err(),
        manager.get_thread("tm-never").err().unwrap(),
        manager.stop_thread("tm-after").unwrap_err(),
        t.call(|| ()).unwrap_err(),
        t.schedule(|| ()).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ThreadErrorKind::Stopped, "{err}");
        assert!(err.to_string().contains(err.thread()));
    }
    assert_eq!(os_threads_named("tm-never"), 0);
    stop(&manager); // a second stop is a no-op
}

#[test]
fn stop_thread_of_an_unknown_id_or_of_thread_ops_is_an_error() {
    let manager = Arc::new(ThreadManager::new());
    let err = manager.stop_thread("tm-nobody").unwrap_err();
    assert_eq!(err.kind(), ThreadErrorKind::Unknown);
    assert_eq!(err.thread(), "tm-nobody");
    let err = manager.stop_thread(THREAD_OPS).unwrap_err();
    assert_eq!(err.kind(), ThreadErrorKind::Reserved);
    assert!(err.to_string().contains("thread-ops"));
    stop(&manager);
}

#[test]
fn stop_thread_does_not_block_drains_then_the_thread_exits() {
    let manager = Arc::new(ThreadManager::new());
    let t = manager.get_thread("tm-one").unwrap();
    let first_id = {
        let (tx, rx) = bounded(1);
        t.call(move || tx.send(std::thread::current().id()).unwrap())
            .unwrap();
        recv(&rx)
    };
    let ran = Arc::new(AtomicUsize::new(0));
    t.call(|| std::thread::sleep(Duration::from_millis(100)))
        .unwrap();
    for _ in 0..100 {
        let ran = ran.clone();
        t.call(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    let started = Instant::now();
    manager.stop_thread("tm-one").unwrap();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(
        manager.stop_thread("tm-one").unwrap_err().kind(),
        ThreadErrorKind::Unknown
    );

    wait_until("the stopped thread exits", || t.is_finished());
    assert_eq!(ran.load(Ordering::Relaxed), 100);
    assert!(t.call(|| ()).unwrap_err().is_stopped());
    // thread-ops joins it.
    wait_until("thread-ops joins it", || os_threads_named("tm-one") == 0);

    // The id can be used again: a new thread.
    let (tx, rx) = bounded(1);
    manager
        .call_in_thread("tm-one", move || {
            tx.send(std::thread::current().id()).unwrap()
        })
        .unwrap();
    assert_ne!(recv(&rx), first_id);
    stop(&manager);
}

#[test]
fn a_producers_calls_keep_their_order_across_stop_thread() {
    const CALLS: usize = 20_000;
    let manager = Arc::new(ThreadManager::new());
    let seen = Arc::new(Mutex::new(Vec::with_capacity(CALLS)));
    let done = AtomicBool::new(false);
    let stops = AtomicUsize::new(0);
    let posted = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if manager.stop_thread("tm-churn").is_ok() {
                    stops.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        // Post at least CALLS, and go on until several stops have raced with the posts.
        let deadline = Instant::now() + TIMEOUT;
        let mut posted = 0;
        while posted < CALLS || stops.load(Ordering::Relaxed) < 5 {
            assert!(Instant::now() < deadline, "the stopper never ran");
            let seen = seen.clone();
            let i = posted;
            manager
                .call_in_thread("tm-churn", move || seen.lock().unwrap().push(i))
                .unwrap();
            posted += 1;
        }
        done.store(true, Ordering::Relaxed);
        posted
    });
    stop(&manager);
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, (0..posted).collect::<Vec<_>>());
}

#[test]
fn a_post_racing_with_stop_either_runs_or_errors() {
    for round in 0..20 {
        let manager = Arc::new(ThreadManager::new());
        let t = manager.get_thread("tm-race-stop").unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let accepted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for by_handle in [false, true] {
                let (manager, t, ran, accepted) = (&manager, &t, &ran, &accepted);
                s.spawn(move || loop {
                    let ran = ran.clone();
                    let job = move || {
                        ran.fetch_add(1, Ordering::Relaxed);
                    };
                    let r = if by_handle {
                        t.call(job)
                    } else {
                        manager.call_in_thread("tm-race-stop", job)
                    };
                    match r {
                        Ok(()) => accepted.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.is_stopped() => break,
                        Err(e) => panic!("{e}"),
                    };
                });
            }
            std::thread::sleep(Duration::from_millis(round % 5));
            stop(&manager);
        });
        assert_eq!(
            ran.load(Ordering::Relaxed),
            accepted.load(Ordering::Relaxed),
            "round {round}"
        );
    }
}

#[test]
fn green_threads_and_timers_run_on_a_named_thread() {
    let manager = Arc::new(ThreadManager::new());
    let (tx, rx) = unbounded();
    manager
        .call_in_thread("tm-greens", move || {
            for n in 0..10u64 {
                let tx = tx.clone();
                green::spawn(move || {
                    green::sleep(Duration::from_millis(10 * (10 - n)));
                    green::yield_now();
                    let name = std::thread::current().name().map(str::to_owned);
                    tx.send((n, name)).unwrap();
                });
            }
            let tx = tx.clone();
            hub::call_later(Duration::from_millis(5), move || {
                tx.send((99, Some("timer".to_owned()))).unwrap()
            });
        })
        .unwrap();
    let got: Vec<_> = (0..11).map(|_| recv(&rx)).collect();
    // The timer first, then the green threads in order of their wake-up times.
    assert_eq!(got[0], (99, Some("timer".to_owned())));
    let order: Vec<u64> = got[1..].iter().map(|(n, _)| *n).collect();
    assert_eq!(order, (0..10).rev().collect::<Vec<_>>());
    assert!(got[1..]
        .iter()
        .all(|(_, name)| name.as_deref() == Some("tm-greens")));

    // And from outside, through the thread's hub.
    let h = manager
        .get_thread("tm-greens")
        .unwrap()
        .hub()
        .spawn(|| {
            green::sleep(Duration::from_millis(5));
            std::thread::current().name().map(str::to_owned)
        })
        .unwrap();
    assert_eq!(h.join().as_deref(), Some("tm-greens"));
    stop(&manager);
}

#[test]
fn green_threads_still_parked_at_stop_are_killed_and_unwind() {
    struct OnDrop(Sender<&'static str>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.send("unwound");
        }
    }
    let manager = Arc::new(ThreadManager::new());
    let (tx, rx) = unbounded();
    let h = manager
        .get_thread("tm-parked")
        .unwrap()
        .hub()
        .spawn(move || {
            let _guard = OnDrop(tx);
            green::sleep(Duration::from_secs(3600));
        })
        .unwrap();
    // A green thread spawned by a job that is still queued at stop gets to start.
    let (started_tx, started) = unbounded();
    manager
        .call_in_thread("tm-parked", move || {
            green::spawn(move || started_tx.send("started").unwrap());
        })
        .unwrap();
    let began = Instant::now();
    stop(&manager);
    assert!(began.elapsed() < Duration::from_secs(5));
    assert_eq!(recv(&rx), "unwound");
    assert_eq!(recv(&started), "started");
    let err = h.join_result().unwrap_err();
    assert!(err.is_killed(), "{err}");
}

#[test]
fn dropping_a_manager_stops_its_threads() {
    let manager = ThreadManager::new();
    let t = manager.get_thread("tm-dropped").unwrap();
    let (tx, rx) = bounded(1);
    t.call(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send(()).unwrap();
    })
    .unwrap();
    drop(manager);
    recv(&rx);
    wait_until("the thread exits", || t.is_finished());
}

#[test]
fn stop_called_from_a_job_stops_the_others_and_then_its_own_thread() {
    let manager = Arc::new(ThreadManager::new());
    let other = manager.get_thread("tm-other").unwrap();
    let me = manager.get_thread("tm-stopper").unwrap();
    let (tx, rx) = bounded(1);
    let m = manager.clone();
    me.call(move || {
        m.stop(); // must not wait for this very thread
        tx.send(m.call_in_thread("tm-other", || ()).unwrap_err().kind())
            .unwrap();
    })
    .unwrap();
    assert_eq!(recv(&rx), ThreadErrorKind::Stopped);
    assert!(other.is_finished());
    wait_until("the stopping thread exits too", || me.is_finished());
}

#[test]
fn concurrent_stops_all_return_only_once_the_queued_jobs_ran_and_the_threads_are_joined() {
    const STOPPERS: usize = 4;
    const IDS: [&str; 2] = ["tm-cstop-a", "tm-cstop-b"];
    let manager = Arc::new(ThreadManager::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let mut gates = Vec::new();
    let mut handles = Vec::new();
    for id in IDS {
        handles.push(manager.get_thread(id).unwrap());
        // The thread is held, so the slow jobs behind it are still queued when the stops begin.
        gates.push(gate(&manager, id));
        for _ in 0..5 {
            let ran = ran.clone();
            manager
                .call_in_thread(id, move || {
                    std::thread::sleep(Duration::from_millis(10));
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
    }
    let barrier = Arc::new(Barrier::new(STOPPERS));
    let (seen_tx, seen) = unbounded();
    for _ in 0..STOPPERS {
        let (m, b, ran, handles, seen_tx) = (
            manager.clone(),
            barrier.clone(),
            ran.clone(),
            handles.clone(),
            seen_tx.clone(),
        );
        std::thread::spawn(move || {
            b.wait();
            m.stop();
            // What this stopper sees the moment it returns.
            // A thread leaves `retiring` once joined.
            let joined = format!("{m:?}").contains("retiring: 0");
            let finished = handles.iter().all(|t| t.is_finished());
            seen_tx
                .send((ran.load(Ordering::SeqCst), finished, joined))
                .unwrap();
        });
    }
    // Let the stops get under way (most will be waiting), then let the jobs run.
    wait_until("a stop has begun", || {
        manager.call_in_thread(IDS[0], || ()).is_err()
    });
    std::thread::sleep(Duration::from_millis(20));
    drop(gates);
    for _ in 0..STOPPERS {
        assert_eq!(recv(&seen), (5 * IDS.len(), true, true));
    }
}

#[test]
fn stops_called_from_jobs_of_two_threads_at_once_do_not_wait_for_each_other() {
    let manager = Arc::new(ThreadManager::new());
    let barrier = Arc::new(Barrier::new(2));
    let (done_tx, done) = unbounded();
    let mut handles = Vec::new();
    for id in ["tm-jstop-a", "tm-jstop-b"] {
        let t = manager.get_thread(id).unwrap();
        let (m, b, done_tx) = (manager.clone(), barrier.clone(), done_tx.clone());
        t.call(move || {
            b.wait();
            m.stop(); // each waits for the other threads, but not for a thread stopping them
            done_tx.send(()).unwrap();
        })
        .unwrap();
        handles.push(t);
    }
    recv(&done);
    recv(&done);
    wait_until("both threads exit", || {
        handles.iter().all(|t| t.is_finished())
    });
    stop(&manager); // joins them
}
