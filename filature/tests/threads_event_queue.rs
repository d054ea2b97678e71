//! `threads::EventQueue`: ordering, graceful and forced stop, pause, ignore, resume, panics,
//! and calls from inside the handler. Ported in spirit from python-application's `EventQueue`.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::LogCapture;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError};
use filature::threads::EventQueue;

/// Every blocking wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long to watch for something that must *not* happen.
const QUIET: Duration = Duration::from_millis(100);

/// A queue named `name` that forwards every event to the returned receiver.
fn recording(name: &str) -> (EventQueue<u32>, Receiver<u32>) {
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name(name)
        .spawn(move |n| tx.send(n).unwrap())
        .unwrap();
    (queue, rx)
}

fn recv(rx: &Receiver<u32>) -> u32 {
    rx.recv_timeout(TIMEOUT)
        .expect("the handler did not run in time")
}

fn stop_and_join(queue: &EventQueue<u32>) {
    queue.stop();
    queue
        .join_timeout(TIMEOUT)
        .expect("the queue did not stop in time");
}

#[test]
fn events_are_handled_in_order() {
    let (queue, rx) = recording("eq-order");
    for n in 0..1000 {
        queue.put(n).unwrap();
    }
    let got: Vec<u32> = (0..1000).map(|_| recv(&rx)).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    stop_and_join(&queue);
}

#[test]
fn events_from_many_producers_keep_each_producers_order() {
    let (queue, rx) = recording("eq-producers");
    std::thread::scope(|s| {
        for p in 0..4u32 {
            let queue = queue.clone();
            s.spawn(move || {
                for i in 0..100 {
                    queue.put(p * 1000 + i).unwrap();
                }
            });
        }
    });
    stop_and_join(&queue);
    let got: Vec<u32> = rx.try_iter().collect();
    assert_eq!(got.len(), 400);
    for p in 0..4 {
        let mine: Vec<u32> = got.iter().copied().filter(|n| n / 1000 == p).collect();
        assert_eq!(mine, (0..100).map(|i| p * 1000 + i).collect::<Vec<_>>());
    }
}

#[test]
fn load_and_preload_queue_events_in_order() {
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-load")
        .preload([1, 2])
        .spawn(move |n: u32| tx.send(n).unwrap())
        .unwrap();
    queue.load([3, 4, 5]).unwrap();
    stop_and_join(&queue);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
}

#[test]
fn stop_is_graceful() {
    // A slow handler guarantees that most events are still queued when stop() is called.
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-graceful")
        .spawn(move |n: u32| {
            std::thread::sleep(Duration::from_millis(1));
            tx.send(n).unwrap();
        })
        .unwrap();
    for n in 0..50 {
        queue.put(n).unwrap();
    }
    queue.stop();
    assert!(queue.is_stopping());
    queue.join_timeout(TIMEOUT).unwrap();
    assert!(queue.is_finished());
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
    assert_eq!(queue.get_unhandled().unwrap(), Vec::<u32>::new());
}

#[test]
fn stop_lifts_a_pause_and_drains() {
    let (queue, rx) = recording("eq-stop-paused");
    queue.pause();
    queue.pause();
    queue.load([1, 2, 3]).unwrap();
    stop_and_join(&queue);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn stop_now_leaves_the_rest_for_get_unhandled() {
    // The handler blocks on event 0 until released, so stop_now() lands while 0 is in hand.
    let (started_tx, started_rx) = bounded(1);
    let (release_tx, release_rx) = bounded::<()>(1);
    let (done_tx, done_rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-stop-now")
        .spawn(move |n: u32| {
            if n == 0 {
                started_tx.send(()).unwrap();
                release_rx.recv_timeout(TIMEOUT).unwrap();
            }
            done_tx.send(n).unwrap();
        })
        .unwrap();
    queue.load(0..10).unwrap();
    started_rx.recv_timeout(TIMEOUT).unwrap();
    queue.stop_now();
    release_tx.send(()).unwrap();
    queue.join_timeout(TIMEOUT).unwrap();
    // The event in hand finished; nothing else was handled.
    assert_eq!(done_rx.try_iter().collect::<Vec<_>>(), [0]);
    assert_eq!(queue.get_unhandled().unwrap(), (1..10).collect::<Vec<_>>());
    // The events were taken out.
    assert_eq!(queue.get_unhandled().unwrap(), Vec::<u32>::new());
}

#[test]
fn get_unhandled_while_running_is_an_error() {
    let (queue, _rx) = recording("eq-still-running");
    let err = queue.get_unhandled().unwrap_err();
    assert_eq!(err.name(), "eq-still-running");
    assert!(err.to_string().contains("still running"));
    stop_and_join(&queue);
    assert!(queue.get_unhandled().is_ok());
}

#[test]
fn put_after_stop_gives_the_event_back() {
    let (tx, _rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-put-after-stop")
        .spawn(move |s: String| tx.send(s).unwrap())
        .unwrap();
    queue.stop();
    let err = queue.put("late".to_owned()).unwrap_err();
    assert_eq!(err.into_inner(), "late");
    let err = queue.load(["a".to_owned(), "b".to_owned()]).unwrap_err();
    assert_eq!(err.0, ["a", "b"]);
    let err = queue.resume(["c".to_owned()]).unwrap_err();
    assert_eq!(err.0, ["c"]);
    queue.join_timeout(TIMEOUT).unwrap();
    assert!(queue.put("later".to_owned()).is_err());
}

#[test]
fn pause_is_a_nested_counter() {
    let (queue, rx) = recording("eq-nested-pause");
    queue.pause();
    queue.pause();
    queue.put(1).unwrap();
    queue.unpause();
    assert!(queue.is_paused());
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    queue.unpause();
    assert!(!queue.is_paused());
    assert_eq!(recv(&rx), 1);
    // An extra unpause does not go negative: the next pause still pauses.
    queue.unpause();
    queue.pause();
    queue.put(2).unwrap();
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    queue.unpause();
    assert_eq!(recv(&rx), 2);
    stop_and_join(&queue);
}

#[test]
fn pause_takes_effect_while_the_worker_waits_on_an_empty_queue() {
    let (queue, rx) = recording("eq-pause-idle");
    // Make sure the worker is idle, blocked waiting for work.
    queue.put(0).unwrap();
    assert_eq!(recv(&rx), 0);
    queue.pause();
    queue.put(1).unwrap();
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    assert_eq!(queue.len(), 1);
    queue.unpause();
    assert_eq!(recv(&rx), 1);
    stop_and_join(&queue);
}

#[test]
fn pause_from_inside_the_handler_stops_before_the_next_event() {
    let slot: Arc<OnceLock<EventQueue<u32>>> = Arc::new(OnceLock::new());
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-pause-self")
        .paused()
        .spawn({
            let slot = Arc::clone(&slot);
            move |n: u32| {
                if n == 1 {
                    slot.get().unwrap().pause();
                }
                tx.send(n).unwrap();
            }
        })
        .unwrap();
    slot.set(queue.clone()).unwrap();
    queue.load([1, 2]).unwrap();
    queue.unpause();
    assert_eq!(recv(&rx), 1);
    assert_eq!(rx.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
    queue.unpause();
    assert_eq!(recv(&rx), 2);
    stop_and_join(&queue);
}

#[test]
fn ignored_events_are_dropped_silently() {
    let (queue, rx) = recording("eq-ignore");
    queue.ignore_events();
    assert!(!queue.is_accepting_events());
    queue.put(1).unwrap();
    queue.load([2, 3]).unwrap();
    queue.accept_events();
    assert!(queue.is_accepting_events());
    queue.put(4).unwrap();
    stop_and_join(&queue);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [4]);
}

#[test]
fn resume_puts_events_first_unpauses_and_accepts() {
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-resume")
        .paused()
        .spawn(move |n: u32| tx.send(n).unwrap())
        .unwrap();
    queue.load([3, 4]).unwrap();
    queue.ignore_events();
    queue.resume([1, 2]).unwrap();
    assert!(!queue.is_paused());
    assert!(queue.is_accepting_events());
    queue.put(5).unwrap();
    stop_and_join(&queue);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
}

#[test]
fn unhandled_events_can_be_resumed_on_a_new_queue() {
    let old = EventQueue::builder()
        .name("eq-old")
        .paused()
        .preload([1, 2, 3])
        .spawn(|_: u32| panic!("never handled"))
        .unwrap();
    old.stop_now();
    old.join_timeout(TIMEOUT).unwrap();
    let (new, rx) = recording("eq-new");
    new.pause();
    new.put(4).unwrap();
    new.resume(old.get_unhandled().unwrap()).unwrap();
    stop_and_join(&new);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn clear_takes_queued_events_out() {
    let (queue, rx) = recording("eq-clear");
    queue.pause();
    queue.load([1, 2, 3]).unwrap();
    assert_eq!(queue.clear(), [1, 2, 3]);
    assert!(queue.is_empty());
    queue.put(4).unwrap();
    queue.unpause();
    stop_and_join(&queue);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [4]);
}

#[test]
fn a_panicking_handler_is_logged_once_with_the_thread_name_and_the_queue_goes_on() {
    let logs = LogCapture::global();
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-panicky-7f3a")
        .spawn(move |n: u32| {
            if n == 2 {
                panic!("bad event {n}");
            }
            tx.send(n).unwrap();
        })
        .unwrap();
    queue.load([1, 2, 3]).unwrap();
    assert_eq!(recv(&rx), 1);
    assert_eq!(recv(&rx), 3);
    stop_and_join(&queue);

    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("eq-panicky-7f3a"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one log line for the panic, got: {lines:#?}"
    );
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    assert!(
        lines[0].contains("handler panicked: bad event 2"),
        "{}",
        lines[0]
    );
}

#[test]
fn the_thread_has_the_given_name() {
    let (tx, rx) = bounded(1);
    let queue = EventQueue::builder()
        .name("eq-named-thread")
        .spawn(move |()| {
            tx.send(std::thread::current().name().map(str::to_owned))
                .unwrap()
        })
        .unwrap();
    assert_eq!(queue.name(), "eq-named-thread");
    queue.put(()).unwrap();
    let name = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(name.as_deref(), Some("eq-named-thread"));
    queue.stop();
    queue.join_timeout(TIMEOUT).unwrap();
}

#[test]
fn the_default_thread_name() {
    let (tx, rx) = bounded(1);
    let queue = EventQueue::new(move |()| {
        tx.send(std::thread::current().name().map(str::to_owned))
            .unwrap()
    });
    queue.put(()).unwrap();
    let name = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(name.as_deref(), Some("filature-event-queue"));
    queue.stop();
    queue.join_timeout(TIMEOUT).unwrap();
}

#[test]
fn the_handler_can_stop_its_own_queue_and_join_is_refused_inside() {
    let slot: Arc<OnceLock<EventQueue<u32>>> = Arc::new(OnceLock::new());
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-stop-self")
        .paused()
        .spawn({
            let slot = Arc::clone(&slot);
            move |n: u32| {
                let me = slot.get().unwrap();
                if n == 1 {
                    me.stop();
                    let err = me.join().unwrap_err();
                    assert!(err.is_own_thread());
                    // Putting from inside the handler after the stop is refused, not a deadlock.
                    assert_eq!(me.put(99).unwrap_err().into_inner(), 99);
                }
                tx.send(n).unwrap();
            }
        })
        .unwrap();
    slot.set(queue.clone()).unwrap();
    queue.load([1, 2, 3]).unwrap();
    queue.unpause();
    // The handler's own stop is graceful: 2 and 3 were queued before it and are handled.
    queue.join_timeout(TIMEOUT).unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn the_handler_can_stop_now_its_own_queue() {
    let slot: Arc<OnceLock<EventQueue<u32>>> = Arc::new(OnceLock::new());
    let (tx, rx) = unbounded();
    let queue = EventQueue::builder()
        .name("eq-stop-now-self")
        .paused()
        .spawn({
            let slot = Arc::clone(&slot);
            move |n: u32| {
                if n == 1 {
                    slot.get().unwrap().stop_now();
                }
                tx.send(n).unwrap();
            }
        })
        .unwrap();
    slot.set(queue.clone()).unwrap();
    queue.load([1, 2, 3]).unwrap();
    queue.unpause();
    queue.join_timeout(TIMEOUT).unwrap();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1]);
    assert_eq!(queue.get_unhandled().unwrap(), [2, 3]);
}

#[test]
fn join_timeout_times_out_while_running() {
    let (queue, _rx) = recording("eq-join-timeout");
    let err = queue.join_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(err.is_timed_out());
    assert!(!err.is_own_thread());
    assert_eq!(err.name(), "eq-join-timeout");
    stop_and_join(&queue);
    // Joining again (from any clone) returns at once.
    queue.clone().join_timeout(TIMEOUT).unwrap();
}

#[test]
fn dropping_the_last_handle_stops_the_queue_gracefully() {
    let (tx, rx) = unbounded();
    let (dropped_tx, dropped_rx) = bounded::<()>(1);
    struct OnDrop(crossbeam_channel::Sender<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let guard = OnDrop(dropped_tx);
    let queue = EventQueue::builder()
        .name("eq-drop")
        .spawn(move |n: u32| {
            let _keep = &guard;
            tx.send(n).unwrap();
        })
        .unwrap();
    let clone = queue.clone();
    queue.load([1, 2]).unwrap();
    drop(queue);
    clone.put(3).unwrap(); // one handle left: still running
    drop(clone);
    // The handler (and its guard) is dropped when the thread exits.
    dropped_rx
        .recv_timeout(TIMEOUT)
        .expect("the queue thread did not exit");
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn handles_and_errors_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EventQueue<String>>();
    send_sync::<filature::threads::CumulativeEventQueue<String>>();
    send_sync::<filature::threads::PutError<String>>();
    send_sync::<filature::threads::JoinError>();
    send_sync::<filature::threads::StillRunning>();
}
