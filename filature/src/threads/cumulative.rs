//! [`CumulativeEventQueue`]: a named OS thread that collects events into a batch and hands the
//! whole batch to a handler when [`process`](CumulativeEventQueue::process) is called
//! (python-application's `CumulativeEventQueue`).
//!
//! # Invariants
//!
//! The queue is a front-end over `queue_core` (read its module docs for the pause and stop
//! protocols, which are the same as [`EventQueue`](super::EventQueue)'s). The core queue holds
//! *items*, in the order they were put:
//!
//! - `Event(e)`: the worker moves `e` to the end of the *batch*;
//! - `Process`: the worker takes the whole batch (if not empty) and calls the handler with it;
//! - `HighPriority(e)`: the worker calls the handler with `vec![e]` at once, leaving the batch as
//!   it is.
//!
//! `CumulativeEventQueue<E>` is the core's `Kind` with these items and the batch as `extra`; the
//! waiting events (`len`, `clear`, `get_unhandled`) are the batch, then the queued events, in that
//! order (`process()` requests are not events: they are not counted and are dropped when taken
//! out). What is left here is the handler shape (`FnMut(Vec<E>) -> Vec<E>`), the worker loop that
//! batches and gives priority, `put_high_priority`, `process` and the public methods.
//!
//! *State under the lock*: the core state plus the batch (`extra`). The worker takes the batch out
//! of the lock before calling the handler, and appends the events the handler hands back to the
//! batch afterwards. The worker is the only one that adds to the batch, and it does not while the
//! handler runs, so handed-back events end up ahead of every event accumulated later.
//!
//! Because `process()` is an item in the same FIFO, a batch contains exactly the events put
//! before the `process()` call (plus events handed back earlier), and a high-priority event put
//! before `process()` is handled before that batch.
//!
//! # Stop semantics
//!
//! - `stop()` (graceful): the worker goes through every queued item — accumulating events,
//!   handling queued `process()` requests and high-priority events — and exits. Events still in
//!   the batch at that point are *not* handled (as in the original); call `process()` before
//!   `stop()` to flush them. [`get_unhandled`](CumulativeEventQueue::get_unhandled) returns them.
//! - `stop_now()`: the worker exits after the handler call in hand; `get_unhandled` returns the
//!   batch, then the queued events (pending `process()` requests are dropped).
//! - A panicking handler is logged with the queue's name; the batch it was given is lost (it was
//!   moved into the handler, as in the original, which discarded it), and the queue goes on.
//!
//! # Differences from python-application
//!
//! Besides those of `EventQueue`: high-priority events are put with
//! [`put_high_priority`](CumulativeEventQueue::put_high_priority) instead of being marked by a
//! `high_priority` attribute, and events the handler hands back from a high-priority call are kept
//! in the batch (the original dropped them). The handler's return type is checked by the compiler
//! (the original raised `ValueError` at run time).

use std::fmt;
use std::io;
use std::time::Duration;

use super::queue_core::{Config, Core, JoinError, Kind, PutError, State, StillRunning};
use crate::Stopped;

const DEFAULT_NAME: &str = "filature-cumulative-event-queue";

/// An entry of the core queue (the items listed in the module docs).
pub(crate) enum Item<E> {
    Event(E),
    HighPriority(E),
    Process,
}

impl<E> Item<E> {
    fn into_event(self) -> Option<E> {
        match self {
            Item::Event(e) | Item::HighPriority(e) => Some(e),
            Item::Process => None,
        }
    }
}

/// A named OS thread that accumulates events and hands them to a handler as one batch whenever
/// [`process`](Self::process) is called.
///
/// The handler returns the events it wants to keep; they stay in the batch, ahead of the events
/// that arrive later. Events put with [`put_high_priority`](Self::put_high_priority) skip the
/// batch and are handled on their own as soon as the worker reaches them.
///
/// Pause, ignore, resume, `stop`/`stop_now`, `get_unhandled` and `join` behave as for
/// [`EventQueue`](super::EventQueue), with two points specific to batches: a graceful
/// [`stop`](Self::stop) does not process the events still waiting in the batch (call
/// [`process`](Self::process) first to flush them; otherwise `get_unhandled` returns them), and a
/// handler that panics loses the batch it was given (logged, as in the original).
///
/// ```
/// use std::sync::mpsc;
/// use filature::threads::CumulativeEventQueue;
///
/// let (tx, rx) = mpsc::channel();
/// let queue = CumulativeEventQueue::new(move |batch: Vec<u32>| {
///     tx.send(batch).unwrap();
///     Vec::new() // keep nothing
/// });
/// queue.put(1).unwrap();
/// queue.put(2).unwrap();
/// queue.process().unwrap();
/// queue.put(3).unwrap();
/// queue.process().unwrap();
/// queue.stop();
/// queue.join().unwrap();
/// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [vec![1, 2], vec![3]]);
/// ```
pub struct CumulativeEventQueue<E> {
    core: Core<CumulativeEventQueue<E>>,
}

impl<E> Kind for CumulativeEventQueue<E> {
    type Event = E;
    type Item = Item<E>;
    type Extra = Vec<E>;

    fn item(event: E) -> Item<E> {
        Item::Event(event)
    }

    /// The batch plus the queued events (not counting `process()` requests).
    fn waiting(state: &State<Self>) -> usize {
        let queued = state
            .queue
            .iter()
            .filter(|item| !matches!(item, Item::Process))
            .count();
        state.extra.len() + queued
    }

    /// The batch, then the queued events; pending `process()` requests are dropped.
    fn take_waiting(state: &mut State<Self>) -> Vec<E> {
        let mut events = std::mem::take(&mut state.extra);
        let queue = std::mem::take(&mut state.queue);
        events.extend(queue.into_iter().filter_map(Item::into_event));
        events
    }
}

/// Configures and starts a [`CumulativeEventQueue`].
///
/// ```
/// use filature::threads::CumulativeEventQueue;
///
/// let queue = CumulativeEventQueue::builder()
///     .name("presence-batcher")
///     .preload(["a", "b"])
///     .spawn(|batch: Vec<&str>| batch)?; // keeps everything
/// queue.stop_now();
/// queue.join().unwrap();
/// assert_eq!(queue.get_unhandled().unwrap(), ["a", "b"]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct CumulativeBuilder<E> {
    config: Config<E>,
}

impl<E> Default for CumulativeBuilder<E> {
    fn default() -> Self {
        CumulativeBuilder {
            config: Config::default(),
        }
    }
}

impl<E> fmt::Debug for CumulativeBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt_as("CumulativeBuilder", f)
    }
}

impl<E: Send + 'static> CumulativeBuilder<E> {
    /// A builder with the defaults: thread name `filature-cumulative-event-queue`, not paused,
    /// empty.
    pub fn new() -> CumulativeBuilder<E> {
        CumulativeBuilder::default()
    }

    /// The OS thread's name (also used in log messages and errors).
    pub fn name(mut self, name: impl Into<String>) -> CumulativeBuilder<E> {
        self.config.name = Some(name.into());
        self
    }

    /// Starts the queue paused once (one [`unpause`](CumulativeEventQueue::unpause) starts it).
    pub fn paused(mut self) -> CumulativeBuilder<E> {
        self.config.paused = true;
        self
    }

    /// Events queued (for the first batch) before the thread starts, in order.
    pub fn preload(mut self, events: impl IntoIterator<Item = E>) -> CumulativeBuilder<E> {
        self.config.preload.extend(events);
        self
    }

    /// Starts the thread. Fails only if the OS refuses a new thread.
    pub fn spawn<H>(self, mut handler: H) -> io::Result<CumulativeEventQueue<E>>
    where
        H: FnMut(Vec<E>) -> Vec<E> + Send + 'static,
    {
        let core =
            Core::<CumulativeEventQueue<E>>::spawn(self.config, DEFAULT_NAME, move |worker| {
                while let Some(item) = worker.next() {
                    let batch = match item {
                        Item::Event(event) => {
                            worker.lock().extra.push(event);
                            continue;
                        }
                        Item::HighPriority(event) => vec![event],
                        Item::Process => {
                            let batch = std::mem::take(&mut worker.lock().extra);
                            if batch.is_empty() {
                                continue;
                            }
                            batch
                        }
                    };
                    // On a panic (logged by `call`) the batch is lost: it was moved into the handler.
                    if let Some(kept) = worker.call(|| handler(batch)) {
                        if !kept.is_empty() {
                            worker.lock().extra.extend(kept);
                        }
                    }
                }
            })?;
        Ok(CumulativeEventQueue { core })
    }
}

impl<E: Send + 'static> CumulativeEventQueue<E> {
    /// Starts a queue with the default name (`filature-cumulative-event-queue`).
    ///
    /// `handler` gets each batch and returns the events to keep for the next one.
    ///
    /// # Panics
    ///
    /// If the OS refuses a new thread; use [`CumulativeBuilder::spawn`] to get the error instead.
    pub fn new<H>(handler: H) -> CumulativeEventQueue<E>
    where
        H: FnMut(Vec<E>) -> Vec<E> + Send + 'static,
    {
        CumulativeBuilder::new()
            .spawn(handler)
            .expect("failed to spawn an event queue thread")
    }

    /// A [`CumulativeBuilder`] to set the thread name, a paused start or preloaded events.
    pub fn builder() -> CumulativeBuilder<E> {
        CumulativeBuilder::new()
    }
}

impl<E> CumulativeEventQueue<E> {
    /// The queue's OS thread name.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// Adds an event to the next batch.
    ///
    /// While events are [ignored](Self::ignore_events) the event is dropped and `Ok` returned.
    /// After a stop the event comes back in the error.
    pub fn put(&self, event: E) -> Result<(), PutError<E>> {
        self.core.put(event)
    }

    /// Queues an event that skips the batch: when the worker reaches it, the handler is called
    /// with it alone (`vec![event]`), before any batch requested later. Events the handler hands
    /// back from that call join the batch. Same ignore/stop rules as [`put`](Self::put).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use filature::threads::CumulativeEventQueue;
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let queue = CumulativeEventQueue::new(move |batch: Vec<&str>| {
    ///     tx.send(batch).unwrap();
    ///     Vec::new()
    /// });
    /// queue.put("normal").unwrap();
    /// queue.put_high_priority("urgent").unwrap();
    /// queue.process().unwrap();
    /// queue.stop();
    /// queue.join().unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [vec!["urgent"], vec!["normal"]]);
    /// ```
    pub fn put_high_priority(&self, event: E) -> Result<(), PutError<E>> {
        self.core.push(event, Item::HighPriority).map_err(PutError)
    }

    /// Adds several events to the next batch, in order, all or none.
    pub fn load(&self, events: impl IntoIterator<Item = E>) -> Result<(), PutError<Vec<E>>> {
        self.core.load(events)
    }

    /// Asks the worker to hand the batch accumulated so far (every event put before this call,
    /// plus the events kept from earlier batches) to the handler. Nothing happens if the batch
    /// is empty. Ignored while events are ignored (as in the original); after a stop: `Stopped`.
    pub fn process(&self) -> Result<(), Stopped> {
        self.core
            .push((), |()| Item::Process)
            .map_err(|()| Stopped {
                what: format!("event queue '{}'", self.core.name()),
            })
    }

    /// Graceful stop: refuses new events, lifts any pause, goes through every queued item (events
    /// put before a `process()` call are handled), then the thread exits. Events still waiting in
    /// the batch are left for [`get_unhandled`](Self::get_unhandled); call
    /// [`process`](Self::process) first to flush them.
    pub fn stop(&self) {
        self.core.stop()
    }

    /// Forced stop: the handler call in hand (if any) finishes and the thread exits.
    /// [`get_unhandled`](Self::get_unhandled) returns the batch and the queued events.
    pub fn stop_now(&self) {
        self.core.stop_now()
    }

    /// True once `stop` or `stop_now` was called (or every other handle was dropped).
    pub fn is_stopping(&self) -> bool {
        self.core.is_stopping()
    }

    /// Pauses the worker (nested counter), as [`EventQueue::pause`](super::EventQueue::pause):
    /// no handler call starts after `pause` returns until the matching `unpause`.
    pub fn pause(&self) {
        self.core.pause()
    }

    /// Undoes one [`pause`](Self::pause).
    pub fn unpause(&self) {
        self.core.unpause()
    }

    /// True while the pause count is above zero.
    pub fn is_paused(&self) -> bool {
        self.core.is_paused()
    }

    /// From now on `put`, `put_high_priority`, `load` and `process` are dropped silently.
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

    /// Re-queues `events` at the front of the queue (they join the next batch ahead of events put
    /// since), undoes one pause and accepts events again. After a stop they come back in the error.
    pub fn resume(&self, events: impl IntoIterator<Item = E>) -> Result<(), PutError<Vec<E>>> {
        self.core.resume(events)
    }

    /// Takes every event out — the batch, then the queued events — and drops pending `process()`
    /// requests (python-application's `empty()`). A batch being handled right now is not
    /// affected, and events its handler hands back are kept.
    pub fn clear(&self) -> Vec<E> {
        self.core.clear()
    }

    /// How many events wait: in the batch plus queued (not counting `process()` requests).
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the queue's thread has finished (the handler has been dropped).
    pub fn is_finished(&self) -> bool {
        self.core.is_finished()
    }

    /// Once the thread has finished: takes the events never handled — the batch, then the queued
    /// events, in order. While the thread still runs: [`StillRunning`].
    pub fn get_unhandled(&self) -> Result<Vec<E>, StillRunning> {
        self.core.get_unhandled()
    }

    /// Waits until the queue's thread has finished (does not stop it). From the handler: an
    /// error ([`JoinError::is_own_thread`]) instead of a deadlock.
    pub fn join(&self) -> Result<(), JoinError> {
        self.core.join()
    }

    /// [`join`](Self::join) with a time limit.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.core.join_timeout(timeout)
    }
}

impl<E> Clone for CumulativeEventQueue<E> {
    fn clone(&self) -> Self {
        CumulativeEventQueue {
            core: self.core.clone(),
        }
    }
}

impl<E> fmt::Debug for CumulativeEventQueue<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt_as("CumulativeEventQueue", f)
    }
}
