//! Loom models of the cross-thread handshakes. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p filature --release --lib loom_models`.
//!
//! * The hub inbox: producers post while the hub drains and goes to sleep; the model checks
//!   every interleaving for a lost wake-up (the hub would sleep forever: loom reports a deadlock),
//!   for items run twice or never, and for per-producer order; a close racing a push either takes
//!   the item or refuses it (never both, never neither); a stop request stored before a `nudge`
//!   always wakes a hub that is going to sleep. The inbox's queue is a loom `Mutex<VecDeque>`
//!   there (see `hub::inbox`); the protocol around it is the real code. The real queue
//!   (`hub::mpsc`, two items per block under loom) has a model of its own: pushes from two
//!   threads across three blocks while the consumer empties and reuses them; per-producer order,
//!   nothing taken twice, what is left dropped with the queue.
//! * A cross-thread `Event` send/wait: the real `Event::wait_with` loop and the real `ParkCell`
//!   state machine, with "suspend until scheduled" played by a loom `Notify` (what the hub inbox,
//!   modelled above, does in the real thing).
//! * The `Oneshot` behind `FutureHandle`, the reactor's blocking calls and `Command`: a fill from
//!   another thread always wakes the waiter, and of two racing fills exactly one wins.
//! * The `JoinHandle` hand-off: a join from another thread while the green thread's hub completes
//!   it and then (its next pass) runs the link listeners: the joiner gets the value and every
//!   listener linked before the join runs exactly once (issue 12, races A and B); a listener
//!   linked from a third thread meanwhile runs at most once and never breaks the join.
//! * `Queue::put` with a deadline racing a getter on another thread: the put either delivered
//!   (`Ok`) or did not (`Err` with the item back), never both (issue 12, race D).

use loom::sync::Notify;

/// Explores interleavings with at most 3 preemptions per execution (as `tests/loom_pool.rs`
/// does): bugs in handshakes like these show up within a few preemptions, and the unbounded
/// search takes far longer than CI can give.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}
use loom::thread;

use crate::green::join::{JoinError, JoinHandle, JoinShared};
use crate::green::park::{Park, ParkCell, Unparker};
use crate::hub::inbox::{Inbox, Wake};
use crate::hub::HubShared;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::Arc;
use crate::sync::oneshot::Oneshot;
use crate::sync::{Event, Queue};

#[test]
fn inbox_never_loses_a_wakeup_and_keeps_per_producer_order() {
    model(|| {
        let inbox: Arc<Inbox<(u8, u8)>> = Arc::new(Inbox::new());
        let waker = Arc::new(Notify::new());
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let (inbox, waker) = (inbox.clone(), waker.clone());
                thread::spawn(move || {
                    for i in 0..2u8 {
                        if let Ok(Wake::Yes) = inbox.push((p, i)) {
                            waker.notify();
                        }
                    }
                })
            })
            .collect();
        // The hub: drain, and sleep when there is nothing (the real loop's protocol).
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        while seen.len() < 4 {
            if inbox.has_pending() {
                inbox.drain(&mut buf);
                if buf.is_empty() {
                    // Let in, not yet in the queue: the real loop goes round (and spins in
                    // `spin_before_sleep`) until it lands.
                    thread::yield_now();
                }
                seen.append(&mut buf);
                continue;
            }
            if inbox.prepare_sleep() {
                waker.wait();
                inbox.end_sleep();
            } else {
                inbox.drain(&mut buf);
                if buf.is_empty() {
                    // A push is on its way (entered, not yet queued): the real loop spins and
                    // yields in `spin_before_sleep` before it tries to sleep again.
                    thread::yield_now();
                }
                seen.append(&mut buf);
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(seen.len(), 4);
        for p in 0..2u8 {
            let mine: Vec<u8> = seen
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(
                mine,
                [0, 1],
                "producer {p} out of order or duplicated: {seen:?}"
            );
        }
    });
}

#[test]
fn inbox_queue_crosses_and_reuses_blocks_in_order_and_drops_what_is_left() {
    use crate::hub::mpsc::Queue;
    // Two items per block under loom: five pushes fill two blocks and install a third, the
    // consumer empties the first while producers work (making it the spare, which the next
    // block install takes), and whatever it has not taken is dropped with the queue.
    model(|| {
        let queue: Arc<Queue<(u8, Arc<()>)>> = Arc::new(Queue::new());
        let token = Arc::new(());
        let producers: Vec<_> = [0u8, 1]
            .into_iter()
            .map(|p| {
                let (queue, token) = (queue.clone(), token.clone());
                thread::spawn(move || {
                    for i in 0..if p == 0 { 3u8 } else { 2 } {
                        queue.push((p * 10 + i, token.clone()));
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        for _ in 0..3 {
            if let Some((v, _)) = queue.consumer().pop() {
                seen.push(v);
            } else {
                thread::yield_now();
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        let mut consumer = queue.consumer();
        for _ in 0..2 {
            if let Some((v, _)) = consumer.pop() {
                seen.push(v);
            }
        }
        drop(consumer);
        for p in [0u8, 1] {
            let mine: Vec<u8> = seen.iter().copied().filter(|v| v / 10 == p).collect();
            let mut sorted = mine.clone();
            sorted.sort_unstable();
            assert_eq!(mine, sorted, "producer {p} out of order: {seen:?}");
        }
        let left = 5 - seen.len();
        assert_eq!(Arc::strong_count(&token), 1 + left);
        drop(queue);
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "values left in the queue are dropped"
        );
    });
}

#[test]
fn inbox_close_takes_or_refuses_every_push_exactly_once() {
    model(|| {
        let inbox: Arc<Inbox<u8>> = Arc::new(Inbox::new());
        let producer = {
            let inbox = inbox.clone();
            thread::spawn(move || {
                (0..2u8)
                    .filter(|&i| inbox.push(i).is_ok())
                    .collect::<Vec<u8>>()
            })
        };
        // The hub: one pass, then shutdown closes the inbox and takes what it still held.
        let mut taken = Vec::new();
        inbox.drain(&mut taken);
        taken.extend(inbox.close());
        let accepted = producer.join().unwrap();
        assert_eq!(taken, accepted, "accepted items must run once, in order");
        assert!(inbox.push(9).is_err(), "a closed inbox refuses posts");
    });
}

#[test]
fn inbox_nudge_wakes_a_hub_going_to_sleep() {
    use crate::loom::sync::atomic::AtomicBool;
    model(|| {
        let inbox: Arc<Inbox<u8>> = Arc::new(Inbox::new());
        let stop = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Notify::new());
        let stopper = {
            let (inbox, stop, waker) = (inbox.clone(), stop.clone(), waker.clone());
            thread::spawn(move || {
                // As `HubHandle::stop`: store the condition, then nudge.
                stop.store(true, Ordering::Release);
                if inbox.nudge() == Wake::Yes {
                    waker.notify();
                }
            })
        };
        // As `hub::run` and the end of `Core::turn`: re-check the condition after announcing
        // sleep, and sleep only if it still does not hold.
        while !stop.load(Ordering::Acquire) {
            if inbox.prepare_sleep() {
                if !stop.load(Ordering::Acquire) {
                    waker.wait();
                }
                inbox.end_sleep();
            }
        }
        stopper.join().unwrap();
    });
}

/// Parks like `green::park_green`, with the switch back to the loop replaced by waiting for the
/// loom notify that `unpark` raises when it has to schedule us.
struct ModelParker {
    cell: Unparker,
}

impl Park for ModelParker {
    fn unparker(&self) -> &Unparker {
        &self.cell
    }

    fn park(&self, _deadline: Option<std::time::Instant>) {
        if self.cell.try_consume() {
            return;
        }
        if !self.cell.begin_park() {
            self.cell.try_consume();
            return;
        }
        self.cell.model_wake.wait();
        self.cell.end_park();
    }
}

#[test]
fn event_send_from_another_thread_wakes_the_waiter() {
    model(|| {
        let event: Event<u32> = Event::new();
        let parker = ModelParker {
            cell: Arc::new(ParkCell::new(HubShared::detached(), 1)),
        };
        let sender = {
            let event = event.clone();
            thread::spawn(move || event.send(7).unwrap())
        };
        let got = event.wait_with(&parker, None).unwrap().unwrap();
        assert_eq!(got, 7);
        sender.join().unwrap();
    });
}

#[test]
fn two_waiters_on_two_threads_both_get_the_value() {
    model(|| {
        let event: Event<u32> = Event::new();
        let other = {
            let event = event.clone();
            thread::spawn(move || {
                let parker = ModelParker {
                    cell: Arc::new(ParkCell::new(HubShared::detached(), 2)),
                };
                event.wait_with(&parker, None).unwrap().unwrap()
            })
        };
        let sender = {
            let event = event.clone();
            thread::spawn(move || event.send(9).unwrap())
        };
        let parker = ModelParker {
            cell: Arc::new(ParkCell::new(HubShared::detached(), 1)),
        };
        assert_eq!(event.wait_with(&parker, None).unwrap().unwrap(), 9);
        assert_eq!(other.join().unwrap(), 9);
        sender.join().unwrap();
    });
}

#[test]
fn oneshot_fill_from_another_thread_wakes_the_waiter() {
    model(|| {
        let shot: Arc<Oneshot<u32>> = Arc::new(Oneshot::new());
        let parker = ModelParker {
            cell: Arc::new(ParkCell::new(HubShared::detached(), 1)),
        };
        let filler = {
            let shot = shot.clone();
            thread::spawn(move || shot.fill(7).unwrap())
        };
        assert!(shot.wait_with(&parker, None));
        assert_eq!(shot.try_take(), Some(7));
        filler.join().unwrap();
    });
}

#[test]
fn oneshot_racing_fills_have_exactly_one_winner() {
    model(|| {
        let shot: Arc<Oneshot<u32>> = Arc::new(Oneshot::new());
        let fillers: Vec<_> = (1..=2u32)
            .map(|v| {
                let shot = shot.clone();
                thread::spawn(move || shot.fill(v).is_ok())
            })
            .collect();
        let wins = fillers
            .into_iter()
            .map(|f| f.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        let v = shot.try_take().unwrap();
        assert!(v == 1 || v == 2);
        assert_eq!(shot.try_take(), None);
    });
}

/// A green thread's join state on a model hub, its handle, and a counter for a listener.
fn green_thread_model() -> (
    std::sync::Arc<JoinShared<u32>>,
    JoinHandle<u32>,
    Arc<AtomicUsize>,
) {
    let shared = JoinShared::<u32>::new(Arc::new(ParkCell::new(HubShared::detached(), 1)), None);
    let handle = JoinHandle::new(shared.clone());
    (shared, handle, Arc::new(AtomicUsize::new(0)))
}

/// A listener that checks the value and counts its runs.
fn counting_listener(count: &Arc<AtomicUsize>) -> impl FnOnce(&Result<u32, JoinError>) -> bool {
    let count = count.clone();
    move |r| {
        assert_eq!(r.as_ref().ok(), Some(&7));
        count.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The green thread's hub on its own model thread: `JoinShared::complete` with 7, then its next
/// pass runs the listeners. The caller joins `handle` from the model's main thread meanwhile.
fn complete_while_joining(shared: std::sync::Arc<JoinShared<u32>>, handle: JoinHandle<u32>) {
    let hub = thread::spawn(move || {
        if shared.complete_inner(Ok(7)) {
            shared.run_links();
        }
    });
    let parker = ModelParker {
        cell: Arc::new(ParkCell::new(HubShared::detached(), 2)),
    };
    assert_eq!(handle.join_result_with(&parker).unwrap(), 7);
    hub.join().unwrap();
}

#[test]
fn join_from_another_thread_gets_the_value_after_every_listener_ran() {
    model(|| {
        let (shared, handle, ran) = green_thread_model();
        let listener = counting_listener(&ran);
        handle.link(move |r| {
            listener(r);
        });
        complete_while_joining(shared, handle);
        assert_eq!(
            ran.load(Ordering::Relaxed),
            1,
            "a listener linked before the join"
        );
    });
}

#[test]
fn a_link_from_a_third_thread_during_the_hand_off_runs_at_most_once() {
    model(|| {
        let (shared, handle, late) = green_thread_model();
        // Links (as `JoinHandle::link` does, through the shared half: the joiner consumes the
        // handle) while the hub completes and the join runs: before the join took the value it
        // runs once (by the hub, the joiner or this thread), after that never.
        let linker = {
            let (shared, listener) = (shared.clone(), counting_listener(&late));
            thread::spawn(move || {
                shared.add_link(Box::new(listener));
            })
        };
        complete_while_joining(shared, handle);
        linker.join().unwrap();
        assert!(late.load(Ordering::Relaxed) <= 1);
    });
}

#[test]
fn timed_put_either_delivers_or_gives_the_item_back() {
    model(|| {
        let q: Queue<u32> = Queue::bounded(0);
        let getter = {
            let q = q.clone();
            thread::spawn(move || q.try_get().ok())
        };
        let parker = ModelParker {
            cell: Arc::new(ParkCell::new(HubShared::detached(), 1)),
        };
        // A deadline already past: the put waits in the putter list until its first check.
        let put = q.put_with(&parker, 7, Some(std::time::Instant::now()));
        let got = getter.join().unwrap();
        match put {
            Ok(()) => assert_eq!(got, Some(7)),
            Err(e) => {
                assert_eq!(
                    got, None,
                    "the put timed out although its item was delivered"
                );
                assert_eq!(
                    e.into_inner(),
                    Some(7),
                    "a put that timed out gives its item back"
                );
            }
        }
    });
}
