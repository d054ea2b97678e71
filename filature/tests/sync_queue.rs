//! Queue: bounded, unbounded, rendezvous; try_put/try_get; timeouts give the item back; FIFO
//! getters; killed or timed-out waiters lose or duplicate nothing; cross-thread wake-ups.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{Watchdog, LONG};
use filature::green;
use filature::sync::{Queue, QueueError};

const MS: Duration = Duration::from_millis(1);

#[test]
fn unbounded_queue_is_fifo_and_never_blocks_a_putter() {
    let q = Queue::unbounded();
    for i in 0..1000 {
        q.put(i);
    }
    assert_eq!(q.len(), 1000);
    assert_eq!(q.capacity(), None);
    for i in 0..1000 {
        assert_eq!(q.try_get().unwrap(), i);
    }
    assert!(q.is_empty());
    assert!(matches!(q.try_get(), Err(QueueError::WouldBlock(None))));
}

#[test]
fn bounded_queue_try_put_gives_the_item_back_when_full() {
    let q = Queue::bounded(2);
    q.try_put(1).unwrap();
    q.try_put(2).unwrap();
    assert_eq!(q.try_put(3).unwrap_err().into_inner(), Some(3));
    assert_eq!(q.try_get().unwrap(), 1);
    q.try_put(3).unwrap();
    assert_eq!((q.try_get().unwrap(), q.try_get().unwrap()), (2, 3));
}

#[test]
fn timeouts_give_the_item_back() {
    let _w = Watchdog::new("queue timeouts", LONG);
    let q = Queue::bounded(1);
    q.put("kept");
    match q.put_timeout("returned", 5 * MS) {
        Err(QueueError::TimedOut(Some(v))) => assert_eq!(v, "returned"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(q.putting(), 0);
    assert_eq!(q.get(), "kept");
    assert!(matches!(
        q.get_timeout(5 * MS),
        Err(QueueError::TimedOut(None))
    ));
    assert_eq!(q.getting(), 0);
    // In a green thread too.
    let q2 = q.clone();
    let h = green::spawn(move || q2.get_timeout(5 * MS).is_err());
    assert!(h.join_timeout(LONG).unwrap());
}

#[test]
fn bounded_put_waits_for_room() {
    let _w = Watchdog::new("bounded put", LONG);
    let q = Queue::bounded(1);
    let q2 = q.clone();
    let producer = green::spawn(move || {
        for i in 0..5 {
            q2.put(i);
        }
    });
    green::sleep(2 * MS);
    assert_eq!(q.len(), 1);
    assert_eq!(q.putting(), 1);
    let got: Vec<_> = (0..5).map(|_| q.get()).collect();
    producer.join_timeout(LONG).unwrap();
    assert_eq!(got, [0, 1, 2, 3, 4]);
}

#[test]
fn capacity_zero_is_a_rendezvous() {
    let _w = Watchdog::new("rendezvous", LONG);
    let q = Queue::bounded(0);
    assert!(q.try_put(1).is_err(), "no getter waiting");
    let q2 = q.clone();
    let putter = green::spawn(move || {
        q2.put(7);
        "handed over"
    });
    green::sleep(2 * MS);
    assert!(!putter.is_finished(), "a rendezvous put waits for a getter");
    assert_eq!(q.len(), 0);
    assert_eq!(q.try_get().unwrap(), 7);
    assert_eq!(putter.join_timeout(LONG).unwrap(), "handed over");
    // A waiting getter takes a try_put directly.
    let q2 = q.clone();
    let getter = green::spawn(move || q2.get());
    green::sleep(2 * MS);
    q.try_put(8).unwrap();
    assert_eq!(getter.join_timeout(LONG).unwrap(), 8);
}

#[test]
fn getters_are_served_in_fifo_order() {
    let _w = Watchdog::new("getter fifo", LONG);
    let q = Queue::unbounded();
    let hs: Vec<_> = (0..6)
        .map(|_| {
            let q = q.clone();
            green::spawn(move || q.get())
        })
        .collect();
    green::sleep(2 * MS);
    assert_eq!(q.getting(), 6);
    for i in 0..6 {
        q.put(i);
    }
    assert_eq!(green::join_all(hs), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_getter_killed_after_being_granted_passes_the_item_to_the_next_getter() {
    let _w = Watchdog::new("granted getter killed", LONG);
    let q = Queue::unbounded();
    let (q1, q2) = (q.clone(), q.clone());
    let g1 = green::spawn(move || q1.get());
    let g2 = green::spawn(move || q2.get());
    green::sleep(2 * MS);
    assert_eq!(q.getting(), 2);
    q.put("first"); // granted to g1, which has not run yet
    g1.kill();
    assert!(g1.join_result().unwrap_err().is_killed());
    assert_eq!(g2.join_timeout(LONG).unwrap(), "first");
    assert!(q.is_empty());
}

#[test]
fn a_getter_killed_after_being_granted_puts_the_item_back_at_the_front() {
    let _w = Watchdog::new("granted getter killed, front", LONG);
    let q = Queue::unbounded();
    let q1 = q.clone();
    let g1 = green::spawn(move || q1.get());
    green::sleep(2 * MS);
    q.put(1); // granted to g1
    q.put(2); // queued
    g1.kill();
    assert!(g1.join_result().unwrap_err().is_killed());
    assert_eq!(
        q.try_get().unwrap(),
        1,
        "the granted item is back at the front"
    );
    assert_eq!(q.try_get().unwrap(), 2);
    assert!(q.is_empty());
}

#[test]
fn a_killed_putter_loses_nothing_else() {
    let _w = Watchdog::new("killed putter", LONG);
    let q = Queue::bounded(1);
    q.put(0);
    let (qa, qb) = (q.clone(), q.clone());
    let a = green::spawn(move || qa.put(1));
    let b = green::spawn(move || qb.put(2));
    green::sleep(2 * MS);
    assert_eq!(q.putting(), 2);
    a.kill();
    assert!(a.wait_timeout(LONG));
    assert_eq!(q.putting(), 1);
    assert_eq!(q.get(), 0);
    assert_eq!(q.get(), 2);
    b.join_timeout(LONG).unwrap();
    assert!(q.is_empty());
}

#[test]
fn puts_from_other_os_threads_wake_a_green_getter() {
    let _w = Watchdog::new("queue cross-thread", LONG);
    let q = Queue::unbounded();
    let q2 = q.clone();
    let consumer = green::spawn(move || (0..400).map(|_| q2.get()).collect::<Vec<u32>>());
    let producers: Vec<_> = (0..4u32)
        .map(|t| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    q.put(t * 1000 + i);
                    if i % 25 == 0 {
                        std::thread::sleep(MS);
                    }
                }
            })
        })
        .collect();
    let got = consumer.join_timeout(LONG).unwrap();
    for p in producers {
        p.join().unwrap();
    }
    for t in 0..4u32 {
        let mine: Vec<_> = got.iter().copied().filter(|v| v / 1000 == t).collect();
        assert_eq!(mine, (0..100).map(|i| t * 1000 + i).collect::<Vec<_>>());
    }
}

#[test]
fn a_get_from_another_os_thread_wakes_a_green_putter() {
    let _w = Watchdog::new("queue cross-thread put", LONG);
    let q = Queue::bounded(1);
    let log = Rc::new(RefCell::new(Vec::new()));
    let (q2, l) = (q.clone(), log.clone());
    let producer = green::spawn(move || {
        for i in 0..3 {
            q2.put(i);
            l.borrow_mut().push(i);
        }
    });
    let q3 = q.clone();
    let t = std::thread::spawn(move || {
        (0..3)
            .map(|_| q3.get_timeout(LONG).unwrap())
            .collect::<Vec<_>>()
    });
    producer.join_timeout(LONG).unwrap();
    assert_eq!(t.join().unwrap(), [0, 1, 2]);
    assert_eq!(*log.borrow(), [0, 1, 2]);
}

#[test]
fn a_getter_whose_timeout_fires_after_it_was_granted_passes_the_item_on() {
    let _w = Watchdog::new("queue granted timeout", LONG);
    let q = Queue::unbounded();
    let (qa, qb) = (q.clone(), q.clone());
    let a = green::spawn(move || green::with_timeout(20 * MS, || qa.get()));
    let b = green::spawn(move || qb.get());
    green::sleep(2 * MS);
    assert_eq!(q.getting(), 2);
    std::thread::sleep(40 * MS);
    q.put("only");
    assert_eq!(a.join_timeout(LONG).unwrap(), Err(filature::TimedOut));
    assert_eq!(b.join_timeout(LONG).unwrap(), "only");
    assert!(q.is_empty());
}

#[test]
fn a_rendezvous_between_two_main_contexts_on_two_os_threads() {
    let _w = Watchdog::new("main-main rendezvous", LONG);
    let q = Queue::bounded(0);
    let q2 = q.clone();
    let getter = std::thread::spawn(move || {
        (0..50)
            .map(|_| q2.get_timeout(LONG).unwrap())
            .collect::<Vec<u32>>()
    });
    for i in 0..50 {
        q.put_timeout(i, LONG).unwrap();
    }
    assert_eq!(getter.join().unwrap(), (0..50).collect::<Vec<_>>());
}

/// Issue 12, race D: a timed put that gave up while a getter on another thread took its item
/// returned `TimedOut` with no item although the item had been delivered; a caller that retried
/// sent it twice. Every timed put must either deliver (`Ok`) or give its item back.
#[test]
fn a_timed_put_racing_a_getter_on_another_thread_delivers_or_gives_back_never_both() {
    const ITEMS: u32 = 3_000;
    const DONE: u32 = u32::MAX;
    let _w = Watchdog::new("timed put vs cross-thread get", 4 * LONG);
    let q = Queue::bounded(0);
    let q2 = q.clone();
    let getter = std::thread::spawn(move || {
        // Polls (`try_get`) so that it takes from a listed putter at any moment, including the
        // moment that putter's deadline passes.
        let mut got = Vec::new();
        loop {
            match q2.try_get() {
                Ok(DONE) => return got,
                Ok(v) => got.push(v),
                Err(_) => std::thread::yield_now(),
            }
        }
    });
    let mut timeouts = 0u32;
    for i in 0..ITEMS {
        let mut item = i;
        loop {
            // Zero or tiny timeouts: the put lists itself and gives up at once or almost.
            let timeout = Duration::from_micros(u64::from(i % 3) * 10);
            match q.put_timeout(item, timeout) {
                Ok(()) => break,
                Err(e) => {
                    timeouts += 1;
                    item = e
                        .into_inner()
                        .unwrap_or_else(|| panic!("put {i} timed out without its item"));
                }
            }
        }
    }
    q.put(DONE);
    let got = getter.join().unwrap();
    assert_eq!(got.len(), ITEMS as usize, "each item delivered once");
    assert!(got.iter().copied().eq(0..ITEMS), "in order, no duplicates");
    // Not an assertion (it depends on the machine's timing): how often the deadline path ran.
    eprintln!("{timeouts} timed-out puts retried");
}
