//! Two hubs on two OS threads trading items, permits and events between their green threads:
//! no wake-up is lost (every wait has a timeout, so a lost one fails instead of hanging).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{hub_thread, Watchdog, LONG};
use filature::green;
use filature::sync::{Event, Queue, Semaphore};

#[test]
fn ping_pong_between_green_threads_on_two_hubs() {
    let _w = Watchdog::new("cross-hub ping-pong", Duration::from_secs(120));
    let (remote, t) = hub_thread("pong-hub");
    const PAIRS: usize = 20;
    const ROUNDS: u32 = 200;
    let mut pings = Vec::new();
    for _ in 0..PAIRS {
        let to: Queue<u32> = Queue::bounded(1);
        let back: Queue<u32> = Queue::bounded(0);
        let (to2, back2) = (to.clone(), back.clone());
        remote
            .spawn(move || {
                for _ in 0..ROUNDS {
                    let v = to2.get_timeout(LONG).expect("ping arrives");
                    back2.put_timeout(v + 1, LONG).expect("pong taken");
                }
            })
            .unwrap();
        pings.push(green::spawn(move || {
            let mut sum = 0u64;
            for i in 0..ROUNDS {
                to.put_timeout(i, LONG).expect("room for ping");
                let v = back.get_timeout(LONG).expect("pong arrives");
                assert_eq!(v, i + 1);
                sum += v as u64;
            }
            sum
        }));
    }
    let expected: u64 = (1..=ROUNDS as u64).sum();
    for s in green::join_all(pings) {
        assert_eq!(s, expected);
    }
    remote.stop();
    t.join().unwrap();
}

#[test]
fn a_semaphore_shared_by_two_hubs_never_exceeds_its_count() {
    let _w = Watchdog::new("cross-hub semaphore", Duration::from_secs(120));
    let (remote, t) = hub_thread("sem-hub");
    let sem = Semaphore::new(3);
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let worker = |sem: Semaphore,
                  inside: Arc<AtomicUsize>,
                  max: Arc<AtomicUsize>,
                  done: Arc<AtomicUsize>| {
        move || {
            for i in 0..50 {
                assert!(sem.acquire_timeout(LONG), "a permit arrives");
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                if i % 3 == 0 {
                    green::sleep(Duration::from_micros(200));
                } else {
                    green::yield_now();
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                sem.release();
            }
            done.fetch_add(1, Ordering::SeqCst);
        }
    };
    let mut remote_handles = Vec::new();
    let mut local = Vec::new();
    for _ in 0..8 {
        remote_handles.push(
            remote
                .spawn(worker(
                    sem.clone(),
                    inside.clone(),
                    max.clone(),
                    done.clone(),
                ))
                .unwrap(),
        );
        local.push(green::spawn(worker(
            sem.clone(),
            inside.clone(),
            max.clone(),
            done.clone(),
        )));
    }
    for h in local.into_iter().chain(remote_handles) {
        h.join_timeout(Duration::from_secs(60)).unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 16);
    assert!(max.load(Ordering::SeqCst) <= 3);
    assert_eq!(sem.available(), 3);
    remote.stop();
    t.join().unwrap();
}

#[test]
fn a_green_thread_joins_a_green_thread_on_another_hub() {
    let _w = Watchdog::new("cross-hub join", LONG);
    let (remote, t) = hub_thread("join-hub");
    let gate: Event<()> = Event::new();
    let g = gate.clone();
    let far = remote
        .spawn(move || {
            g.wait().unwrap();
            "far"
        })
        .unwrap();
    let near = green::spawn(move || far.join());
    green::sleep(Duration::from_millis(5));
    assert!(!near.is_finished());
    gate.send(()).unwrap();
    assert_eq!(near.join_timeout(LONG).unwrap(), "far");
    remote.stop();
    t.join().unwrap();
}
