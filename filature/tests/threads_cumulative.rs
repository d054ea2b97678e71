//! `threads::CumulativeEventQueue`: batches, kept events, high priority, stop and pause.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use filature::threads::CumulativeEventQueue;

/// Every blocking wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long to watch for something that must *not* happen.
const QUIET: Duration = Duration::from_millis(100);

/// A queue that forwards every batch to the returned receiver and keeps nothing.
fn recording(name: &str) -> (CumulativeEventQueue<u32>, Receiver<Vec<u32>>) {
    let (tx, rx) = unbounded();
    let queue = CumulativeEventQueue::builder()
        .name(name)
        .spawn(move |batch: Vec<u32>| {
            tx.send(batch).unwrap();
            Vec::new()
        })
        .unwrap();
    (queue, rx)
}

fn recv(rx: &Receiver<Vec<u32>>) -> Vec<u32> {
    rx.recv_timeout(TIMEOUT)
        .expect("the handler did not run in time")
}

fn stop_and_join(queue: &CumulativeEventQueue<u32>) {
    queue.stop();
    queue
        .join_timeout(TIMEOUT)
        .expect("the queue did not stop in time");
}

#[test]
fn events_accumulate_until_process() {
    let (queue, rx) = recording("cq-accumulate");
    queue.put(1).unwrap();
    queue.load([2, 3]).unwrap();
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    queue.process().unwrap();
    assert_eq!(recv(&rx), [1, 2, 3]);
    queue.put(4).unwrap();
    queue.process().unwrap();
    assert_eq!(recv(&rx), [4]);
    stop_and_join(&queue);
}

#[test]
fn a_batch_holds_exactly_the_events_put_before_process() {
    let (queue, rx) = recording("cq-cut");
    queue.pause(); // queue everything before the worker looks at any of it
    queue.load([1, 2]).unwrap();
    queue.process().unwrap();
    queue.load([3, 4]).unwrap();
    queue.process().unwrap();
    queue.process().unwrap(); // empty batch: no handler call
    queue.put(5).unwrap();
    queue.unpause();
    assert_eq!(recv(&rx), [1, 2]);
    assert_eq!(recv(&rx), [3, 4]);
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    queue.stop_now();
    queue.join_timeout(TIMEOUT).unwrap();
    assert_eq!(queue.get_unhandled().unwrap(), [5]);
}

#[test]
fn events_the_handler_hands_back_are_kept_for_the_next_batch() {
    let (tx, rx) = unbounded();
    let queue = CumulativeEventQueue::builder()
        .name("cq-kept")
        .spawn(move |batch: Vec<u32>| {
            tx.send(batch.clone()).unwrap();
            // Keep the odd ones.
            batch.into_iter().filter(|n| n % 2 == 1).collect()
        })
        .unwrap();
    queue.load([1, 2, 3]).unwrap();
    queue.process().unwrap();
    assert_eq!(recv(&rx), [1, 2, 3]);
    queue.put(4).unwrap();
    queue.process().unwrap();
    assert_eq!(recv(&rx), [1, 3, 4]);
    queue.process().unwrap();
    assert_eq!(recv(&rx), [1, 3]);
    stop_and_join(&queue);
    assert_eq!(queue.get_unhandled().unwrap(), [1, 3]);
}

#[test]
fn high_priority_events_bypass_the_batch() {
    let (queue, rx) = recording("cq-high-priority");
    queue.load([1, 2]).unwrap();
    queue.put_high_priority(100).unwrap();
    // Handled on its own, without a process() call, and the batch is untouched.
    assert_eq!(recv(&rx), [100]);
    assert_eq!(queue.len(), 2);
    queue.put(3).unwrap();
    queue.put_high_priority(101).unwrap();
    queue.process().unwrap();
    assert_eq!(recv(&rx), [101]);
    assert_eq!(recv(&rx), [1, 2, 3]);
    stop_and_join(&queue);
}

#[test]
fn stop_handles_queued_process_requests_and_leaves_the_batch() {
    let (queue, rx) = recording("cq-stop");
    queue.pause();
    queue.load([1, 2]).unwrap();
    queue.process().unwrap();
    queue.load([3, 4]).unwrap();
    queue.put_high_priority(100).unwrap();
    queue.stop(); // lifts the pause
    queue.join_timeout(TIMEOUT).unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [vec![1, 2], vec![100]]);
    // Accumulated but never processed.
    assert_eq!(queue.get_unhandled().unwrap(), [3, 4]);
}

#[test]
fn process_then_stop_flushes_everything() {
    let (queue, rx) = recording("cq-flush");
    queue.load([1, 2, 3]).unwrap();
    queue.process().unwrap();
    stop_and_join(&queue);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [vec![1, 2, 3]]);
    assert_eq!(queue.get_unhandled().unwrap(), Vec::<u32>::new());
}

#[test]
fn stop_now_leaves_batch_and_queue_for_get_unhandled() {
    let (queue, rx) = recording("cq-stop-now");
    queue.load([1, 2]).unwrap();
    queue.process().unwrap();
    assert_eq!(recv(&rx), [1, 2]);
    queue.load([3, 4]).unwrap();
    queue.pause();
    queue.put(5).unwrap();
    queue.put_high_priority(6).unwrap();
    queue.process().unwrap();
    assert!(queue.get_unhandled().is_err());
    queue.stop_now();
    queue.join_timeout(TIMEOUT).unwrap();
    assert_eq!(rx.try_iter().count(), 0);
    assert_eq!(queue.get_unhandled().unwrap(), [3, 4, 5, 6]);
}

#[test]
fn put_and_process_after_stop_are_errors() {
    let (queue, _rx) = recording("cq-after-stop");
    queue.stop();
    assert_eq!(queue.put(1).unwrap_err().into_inner(), 1);
    assert_eq!(queue.put_high_priority(2).unwrap_err().into_inner(), 2);
    assert_eq!(queue.load([3, 4]).unwrap_err().into_inner(), [3, 4]);
    let err = queue.process().unwrap_err();
    assert!(err.to_string().contains("cq-after-stop"), "{err}");
    queue.join_timeout(TIMEOUT).unwrap();
}

#[test]
fn pause_holds_back_batches_and_high_priority_events() {
    let (queue, rx) = recording("cq-pause");
    queue.put(1).unwrap();
    queue.pause();
    queue.put_high_priority(100).unwrap();
    queue.process().unwrap();
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    queue.unpause();
    assert_eq!(recv(&rx), [100]);
    assert_eq!(recv(&rx), [1]);
    stop_and_join(&queue);
}

#[test]
fn ignored_events_and_process_requests_are_dropped() {
    let (queue, rx) = recording("cq-ignore");
    queue.put(1).unwrap();
    queue.ignore_events();
    queue.put(2).unwrap();
    queue.put_high_priority(3).unwrap();
    queue.process().unwrap(); // dropped too
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    queue.accept_events();
    queue.process().unwrap();
    assert_eq!(recv(&rx), [1]);
    stop_and_join(&queue);
}

#[test]
fn resume_puts_events_at_the_front_of_the_next_batch() {
    let (tx, rx) = unbounded();
    let queue = CumulativeEventQueue::builder()
        .name("cq-resume")
        .paused()
        .spawn(move |batch: Vec<u32>| {
            tx.send(batch).unwrap();
            Vec::new()
        })
        .unwrap();
    queue.load([3, 4]).unwrap();
    queue.process().unwrap();
    queue.resume([1, 2]).unwrap();
    assert_eq!(recv(&rx), [1, 2, 3, 4]);
    stop_and_join(&queue);
}

#[test]
fn clear_takes_batch_and_queue() {
    let (queue, rx) = recording("cq-clear");
    queue.load([1, 2]).unwrap();
    // Wait until 1 and 2 have reached the batch: a high-priority event behind them is handled.
    queue.put_high_priority(100).unwrap();
    assert_eq!(recv(&rx), [100]);
    queue.pause();
    queue.put(3).unwrap();
    queue.process().unwrap();
    assert_eq!(queue.len(), 3);
    assert_eq!(queue.clear(), [1, 2, 3]);
    assert!(queue.is_empty());
    queue.unpause();
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    stop_and_join(&queue);
}

#[test]
fn a_panicking_handler_loses_its_batch_and_the_queue_goes_on() {
    let (tx, rx) = unbounded();
    let queue = CumulativeEventQueue::builder()
        .name("cq-panicky")
        .spawn(move |batch: Vec<u32>| {
            if batch.contains(&13) {
                panic!("unlucky batch");
            }
            tx.send(batch).unwrap();
            Vec::new()
        })
        .unwrap();
    queue.load([12, 13]).unwrap();
    queue.process().unwrap();
    queue.put(14).unwrap();
    queue.process().unwrap();
    assert_eq!(recv(&rx), [14]);
    stop_and_join(&queue);
    assert_eq!(queue.get_unhandled().unwrap(), Vec::<u32>::new());
}

#[test]
fn the_handler_can_stop_its_own_queue() {
    let slot: Arc<OnceLock<CumulativeEventQueue<u32>>> = Arc::new(OnceLock::new());
    let (tx, rx) = unbounded();
    let queue = CumulativeEventQueue::builder()
        .name("cq-stop-self")
        .paused()
        .spawn({
            let slot = Arc::clone(&slot);
            move |batch: Vec<u32>| {
                let me = slot.get().unwrap();
                me.stop();
                assert!(me.join().unwrap_err().is_own_thread());
                tx.send(batch).unwrap();
                Vec::new()
            }
        })
        .unwrap();
    slot.set(queue.clone()).unwrap();
    queue.load([1, 2]).unwrap();
    queue.process().unwrap();
    queue.put(3).unwrap();
    queue.unpause();
    queue.join_timeout(TIMEOUT).unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [vec![1, 2]]);
    assert_eq!(queue.get_unhandled().unwrap(), [3]);
}

#[test]
fn the_thread_has_the_given_name() {
    let (tx, rx) = unbounded();
    let queue = CumulativeEventQueue::builder()
        .name("cq-named")
        .spawn(move |batch: Vec<()>| {
            tx.send(std::thread::current().name().map(str::to_owned))
                .unwrap();
            drop(batch);
            Vec::new()
        })
        .unwrap();
    assert_eq!(queue.name(), "cq-named");
    queue.put_high_priority(()).unwrap();
    let name = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(name.as_deref(), Some("cq-named"));
    queue.stop();
    queue.join_timeout(TIMEOUT).unwrap();
}
