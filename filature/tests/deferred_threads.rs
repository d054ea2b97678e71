//! Deferreds shared between threads: callbacks added from several threads while another fires run
//! exactly once, each thread's callbacks in the order it added them.

use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use filature::deferred::{Deferred, Outcome};
use filature::AlreadyCalled;

#[test]
fn callbacks_added_from_many_threads_around_the_firing_each_run_once_in_order() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2_000;
    let d = Deferred::<u64>::new();
    let seen: Arc<Mutex<Vec<(usize, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let adders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (d, seen, start) = (d.clone(), seen.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    let seen = seen.clone();
                    d.add_callback(move |v| {
                        seen.lock().unwrap().push((t, i));
                        Outcome::Value(v + 1)
                    });
                }
            })
        })
        .collect();
    start.wait();
    d.callback(0).unwrap();
    for a in adders {
        a.join().unwrap();
    }
    assert_eq!(
        d.result_now().unwrap().unwrap(),
        (THREADS * PER_THREAD) as u64
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), THREADS * PER_THREAD);
    for t in 0..THREADS {
        let order: Vec<usize> = seen
            .iter()
            .filter(|(tt, _)| *tt == t)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(
            order,
            (0..PER_THREAD).collect::<Vec<_>>(),
            "thread {t} in order"
        );
    }
}

#[test]
fn racing_callers_fire_exactly_once() {
    for _ in 0..100 {
        let d = Deferred::<usize>::new();
        let start = Arc::new(Barrier::new(4));
        let racers: Vec<_> = (0..4)
            .map(|i| {
                let (d, start) = (d.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    d.callback(i)
                })
            })
            .collect();
        let outcomes: Vec<Result<(), AlreadyCalled>> =
            racers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == Err(AlreadyCalled))
                .count(),
            3
        );
    }
}
