//! [`EventQueue`]: a named OS thread that hands events to a handler one at a time, in order
//! (python-application's `EventQueue`).
//!
//! # Invariants
//!
//! The queue is a thin front-end over `queue_core` (read its module docs for the full protocol
//! and for what lives there). `EventQueue<E>` is its own `Kind`: the items of the core queue are
//! the events themselves, there is no extra state, and the waiting events are the queue. What is
//! left here is the handler shape (`FnMut(E)`, one call per event) and the public methods.
//!
//! - *State under the lock*: the pending events, the pause counter, the accepting flag, the stop
//!   mode (`Running → Draining | Now`), the `finished` flag and the handle count. The handler is
//!   never called with the lock held, so it may call any method of its own queue.
//! - *Pause*: the worker checks the pause counter under the lock immediately before taking each
//!   event, so an event put after `pause()` returns is not handled before the matching
//!   `unpause()` — even if the worker was already blocked waiting for work.
//! - *Stop*: `stop()` refuses new events and lifts any pause; the worker handles what is queued
//!   and exits. `stop_now()` makes the worker exit after the event in hand; the rest stays queued
//!   and `get_unhandled()` returns it once the thread has finished. Dropping the last handle is a
//!   graceful `stop()`.
//! - *Panics*: each handler call is wrapped in `catch_unwind`; a panic is logged once with
//!   `tracing::error!` (naming the queue's thread) and the worker goes on with the next event.
//!
//! # Differences from python-application
//!
//! - The life cycle is one step: the thread starts when the queue is built. Build it
//!   [`paused`](Builder::paused) to load events before any is handled.
//! - A pause takes effect before the next event even when the worker is blocked on an empty
//!   queue (the original handled one more event in that case).
//! - `put`/`load` after a stop fail and hand the events back (the original queued them silently,
//!   never to be handled); `pause()` after a stop is a no-op (the original could hang the stop).
//! - `resume(events)` puts the events at the *front* of the queue (the original appended them):
//!   its purpose is to re-queue events taken out earlier (`get_unhandled`, `clear`), which are older
//!   than anything queued since.
//! - `clear()` returns the discarded events instead of dropping them (the original's `empty()`).
//! - Dropping every handle stops the queue gracefully; the original's daemon thread ran until the
//!   process exited.

use std::fmt;
use std::io;
use std::time::Duration;

use super::queue_core::{Config, Core, JoinError, Kind, PutError, State, StillRunning};

const DEFAULT_NAME: &str = "filature-event-queue";

/// A dedicated, named OS thread that hands each event to a handler, one at a time, in order.
///
/// `EventQueue` is a cheap-to-clone handle; every method may be called from any thread, including
/// from inside the handler (only [`join`](Self::join) refuses to run there).
///
/// - **Life cycle**: the thread starts when the queue is built (build it
///   [`paused`](Builder::paused) to queue events first). [`stop`](Self::stop) drains the queue,
///   [`stop_now`](Self::stop_now) leaves the rest for [`get_unhandled`](Self::get_unhandled), and
///   dropping the last handle is a graceful stop. A handler holding a handle to its own queue
///   keeps it alive until it is stopped explicitly.
/// - **Pause** is a nested counter and takes effect before the next event, even if the worker is
///   idle: nothing put after `pause()` returns is handled before the matching `unpause()`.
/// - **Panics** in the handler are caught and logged once with `tracing::error!`, naming the
///   queue's thread; the queue goes on with the next event.
///
/// Differences from python-application's `EventQueue`: the one-step life cycle above; the pause
/// fix above; `put` after a stop hands the event back instead of queueing it forever; `pause`
/// after a stop is a no-op (it could hang the original's stop); `resume(events)` puts the events
/// at the *front* (they are older than anything queued since); `clear` returns what it removes
/// (the original's `empty` dropped it).
///
/// ```
/// use std::sync::mpsc;
/// use filature::threads::EventQueue;
///
/// let (tx, rx) = mpsc::channel();
/// let queue = EventQueue::builder().name("printer").spawn(move |line: String| {
///     tx.send(line.to_uppercase()).unwrap();
/// })?;
/// queue.put("hello".to_string()).unwrap();
/// queue.put("world".to_string()).unwrap();
/// queue.stop(); // graceful: both lines are handled first
/// queue.join().unwrap();
/// assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["HELLO", "WORLD"]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct EventQueue<E> {
    core: Core<EventQueue<E>>,
}

impl<E> Kind for EventQueue<E> {
    type Event = E;
    type Item = E;
    type Extra = ();

    fn item(event: E) -> E {
        event
    }

    fn waiting(state: &State<Self>) -> usize {
        state.queue.len()
    }

    fn take_waiting(state: &mut State<Self>) -> Vec<E> {
        std::mem::take(&mut state.queue).into()
    }
}

/// Configures and starts an [`EventQueue`].
///
/// ```
/// use std::sync::mpsc;
/// use filature::threads::EventQueue;
///
/// let (tx, rx) = mpsc::channel();
/// let queue = EventQueue::builder()
///     .name("audit")
///     .paused()
///     .preload([1, 2])
///     .spawn(move |n: u32| tx.send(n).unwrap())?;
/// queue.put(3).unwrap();
/// assert!(rx.try_recv().is_err()); // paused: nothing handled yet
/// queue.unpause();
/// queue.stop();
/// queue.join().unwrap();
/// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Builder<E> {
    config: Config<E>,
}

impl<E> Default for Builder<E> {
    fn default() -> Self {
        Builder {
            config: Config::default(),
        }
    }
}

impl<E> fmt::Debug for Builder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt_as("Builder", f)
    }
}

impl<E: Send + 'static> Builder<E> {
    /// A builder with the defaults: thread name `filature-event-queue`, not paused, empty.
    pub fn new() -> Builder<E> {
        Builder::default()
    }

    /// The OS thread's name (also used in log messages and errors).
    pub fn name(mut self, name: impl Into<String>) -> Builder<E> {
        self.config.name = Some(name.into());
        self
    }

    /// Starts the queue paused once (one [`unpause`](EventQueue::unpause) starts handling).
    pub fn paused(mut self) -> Builder<E> {
        self.config.paused = true;
        self
    }

    /// Events queued before the thread starts, in order.
    pub fn preload(mut self, events: impl IntoIterator<Item = E>) -> Builder<E> {
        self.config.preload.extend(events);
        self
    }

    /// Starts the thread. Fails only if the OS refuses a new thread.
    pub fn spawn<H>(self, mut handler: H) -> io::Result<EventQueue<E>>
    where
        H: FnMut(E) + Send + 'static,
    {
        let core = Core::<EventQueue<E>>::spawn(self.config, DEFAULT_NAME, move |worker| {
            while let Some(event) = worker.next() {
                // A panic is logged by `call`; the event was moved into the handler and is gone.
                let _ = worker.call(|| handler(event));
            }
        })?;
        Ok(EventQueue { core })
    }
}

impl<E: Send + 'static> EventQueue<E> {
    /// Starts a queue with the default name (`filature-event-queue`) that calls `handler` for
    /// every event.
    ///
    /// # Panics
    ///
    /// If the OS refuses a new thread (as [`std::thread::spawn`] does); use
    /// [`Builder::spawn`] to get the error instead.
    ///
    /// ```
    /// use filature::threads::EventQueue;
    ///
    /// let queue = EventQueue::new(|n: u32| assert!(n < 10));
    /// queue.put(3).unwrap();
    /// queue.stop();
    /// queue.join().unwrap();
    /// ```
    pub fn new<H>(handler: H) -> EventQueue<E>
    where
        H: FnMut(E) + Send + 'static,
    {
        Builder::new()
            .spawn(handler)
            .expect("failed to spawn an event queue thread")
    }

    /// A [`Builder`] to set the thread name, a paused start or preloaded events.
    pub fn builder() -> Builder<E> {
        Builder::new()
    }
}

impl<E> EventQueue<E> {
    /// The queue's OS thread name.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// Queues an event.
    ///
    /// While events are [ignored](Self::ignore_events) the event is dropped and `Ok` returned.
    /// After [`stop`](Self::stop) / [`stop_now`](Self::stop_now) the event comes back in the error.
    pub fn put(&self, event: E) -> Result<(), PutError<E>> {
        self.core.put(event)
    }

    /// Queues several events, in order, all or none (same rules as [`put`](Self::put)).
    pub fn load(&self, events: impl IntoIterator<Item = E>) -> Result<(), PutError<Vec<E>>> {
        self.core.load(events)
    }

    /// Graceful stop: refuses new events, lifts any pause, handles every event already queued,
    /// then the thread exits. Does not wait; see [`join`](Self::join).
    pub fn stop(&self) {
        self.core.stop()
    }

    /// Forced stop: the event being handled (if any) finishes, the rest stay queued and the thread
    /// exits. After [`join`](Self::join), [`get_unhandled`](Self::get_unhandled) returns them.
    ///
    /// ```
    /// use filature::threads::EventQueue;
    ///
    /// let queue = EventQueue::builder().paused().preload([1, 2, 3]).spawn(|_: u32| {})?;
    /// queue.stop_now();
    /// queue.join().unwrap();
    /// assert_eq!(queue.get_unhandled().unwrap(), [1, 2, 3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop_now(&self) {
        self.core.stop_now()
    }

    /// True once `stop` or `stop_now` was called (or every other handle was dropped).
    pub fn is_stopping(&self) -> bool {
        self.core.is_stopping()
    }

    /// Pauses handling (nested: each `pause` needs its own [`unpause`](Self::unpause)).
    ///
    /// Takes effect before the next event: no event is handled after `pause` returns until the
    /// matching `unpause` (the one in the handler at that moment, if any, completes). Events keep
    /// being queued. A no-op once the queue is stopping.
    ///
    /// ```
    /// use filature::threads::EventQueue;
    ///
    /// let queue = EventQueue::new(|_: u32| {});
    /// queue.pause();
    /// queue.pause();
    /// queue.unpause();
    /// assert!(queue.is_paused());
    /// queue.unpause();
    /// assert!(!queue.is_paused());
    /// ```
    pub fn pause(&self) {
        self.core.pause()
    }

    /// Undoes one [`pause`](Self::pause); handling restarts when the count reaches zero. Extra
    /// calls are ignored.
    pub fn unpause(&self) {
        self.core.unpause()
    }

    /// True while the pause count is above zero.
    pub fn is_paused(&self) -> bool {
        self.core.is_paused()
    }

    /// From now on `put` and `load` drop events silently (returning `Ok`), as in the original.
    /// Events already queued are still handled.
    ///
    /// ```
    /// use filature::threads::EventQueue;
    ///
    /// let queue = EventQueue::builder().paused().spawn(|_: u32| {})?;
    /// queue.ignore_events();
    /// queue.put(1).unwrap(); // dropped
    /// queue.accept_events();
    /// queue.put(2).unwrap();
    /// assert_eq!(queue.len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ignore_events(&self) {
        self.core.set_accepting(false)
    }

    /// Undoes [`ignore_events`](Self::ignore_events).
    pub fn accept_events(&self) {
        self.core.set_accepting(true)
    }

    /// False while events are ignored.
    pub fn is_accepting_events(&self) -> bool {
        self.core.is_accepting()
    }

    /// Re-queues `events` at the *front* of the queue (in their order), then undoes one pause and
    /// accepts events again. Meant for events taken out earlier (with [`clear`](Self::clear), or
    /// [`get_unhandled`](Self::get_unhandled) of another queue). The events are queued even if the
    /// queue was ignoring events. After a stop they come back in the error.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use filature::threads::EventQueue;
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let queue = EventQueue::builder().paused().spawn(move |n: u32| tx.send(n).unwrap())?;
    /// queue.put(3).unwrap();
    /// queue.resume([1, 2]).unwrap(); // also undoes the pause
    /// queue.stop();
    /// queue.join().unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn resume(&self, events: impl IntoIterator<Item = E>) -> Result<(), PutError<Vec<E>>> {
        self.core.resume(events)
    }

    /// Takes every queued (not yet handled) event out of the queue and returns them in order
    /// (python-application's `empty()`, which dropped them).
    pub fn clear(&self) -> Vec<E> {
        self.core.clear()
    }

    /// How many events are queued and not yet taken by the handler.
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the queue's thread has finished (the handler has been dropped).
    pub fn is_finished(&self) -> bool {
        self.core.is_finished()
    }

    /// Takes the events that were never handled, in order, once the thread has finished (after a
    /// [`stop_now`](Self::stop_now) and a [`join`](Self::join)). While the thread still runs:
    /// [`StillRunning`]. A second call returns an empty vector.
    pub fn get_unhandled(&self) -> Result<Vec<E>, StillRunning> {
        self.core.get_unhandled()
    }

    /// Waits until the queue's thread has finished. Does not stop it: call
    /// [`stop`](Self::stop) or [`stop_now`](Self::stop_now) first.
    ///
    /// Called from inside the handler (the queue's own thread) it returns an error at once
    /// ([`JoinError::is_own_thread`]) instead of deadlocking.
    pub fn join(&self) -> Result<(), JoinError> {
        self.core.join()
    }

    /// [`join`](Self::join) with a time limit ([`JoinError::is_timed_out`] when it runs out).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.core.join_timeout(timeout)
    }
}

impl<E> Clone for EventQueue<E> {
    fn clone(&self) -> Self {
        EventQueue {
            core: self.core.clone(),
        }
    }
}

impl<E> fmt::Debug for EventQueue<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt_as("EventQueue", f)
    }
}
