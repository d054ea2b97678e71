//! The machinery shared by [`EventQueue`](super::EventQueue) and
//! [`CumulativeEventQueue`](super::CumulativeEventQueue): one dedicated OS thread (the *worker*)
//! that takes *items* from a FIFO queue and hands them to a handler, plus the pause, ignore and
//! stop protocols every handle may drive from any thread.
//!
//! # What is here, and what the front-ends keep
//!
//! Everything the two queue types share lives here: the builder settings ([`Config`]), starting
//! the worker thread and marking it finished ([`Core::spawn`]), put, load and resume, pause,
//! ignore, stop, `clear`, `len`, `get_unhandled`, `join` and the `Debug` output ([`Core`]), and
//! the worker's side ([`Worker`]: wait for the next item; call the handler, catching and logging
//! a panic).
//!
//! A front-end says what it stores by implementing [`Kind`] for its queue type: the event and
//! item types, what it keeps beside the queue (`extra`), how an event becomes an item, and how
//! the events that still wait are counted and taken out (for `len`, `clear` and `get_unhandled`).
//! Beyond that it keeps only what differs: the handler's shape and the worker loop it runs on a
//! [`Worker`] (one event per call; or batching and priority), and its public methods, which
//! delegate here and carry the user-facing docs.
//!
//! # State under the lock
//!
//! Everything mutable lives in one [`State`] behind one `parking_lot::Mutex`:
//!
//! - `queue`: the items not yet taken by the worker, in the order they were put (except that
//!   `resume` puts its items at the front).
//! - `extra`: whatever the front-end keeps beside the queue ([`Kind::Extra`]: the cumulative
//!   queue's pending batch; `()` for the plain queue).
//! - `pause`: the nested pause counter. The worker takes an item only while it is 0.
//! - `accepting`: false while events are ignored; `put`/`load` then drop events silently.
//! - `stop`: `Running`, then `Draining` (graceful stop) or `Now` (forced stop). It only moves
//!   forward: `Running → Draining → Now`, or `Running → Now`.
//! - `finished`: set once, by the worker thread, as its very last act (after the handler has been
//!   dropped). `get_unhandled` and `join` key off it.
//! - `handles`: how many user handles (`Core` values) exist. The worker does not hold one.
//!
//! Two condition variables hang off the mutex: `work` (only the worker waits on it: "an item, an
//! unpause or a stop may have arrived") and `done` (joiners wait on it: "`finished` became true").
//! Keeping them apart means a `notify_one` for new work can never be swallowed by a joiner.
//!
//! The lock is never held while user code runs: the handler is called with the lock released, and
//! events that are dropped (ignored, or handed back in an error) are dropped after the guard is
//! released, so an event's `Drop` or the handler may freely call back into the queue. The
//! [`Kind`] functions do run under the lock, so they only count, move and convert items (the
//! only items they drop are the cumulative queue's `process()` requests, which own nothing).
//!
//! # The pause protocol
//!
//! `pause()` increments `pause` under the lock; `unpause()` decrements it (never below 0) and wakes
//! the worker when it reaches 0. The worker decides whether to take an item *under the same lock*,
//! checking `pause == 0` right before `pop_front`. So once `pause()` has returned, the worker cannot
//! take another item until the matching `unpause()` — whether it was waiting on an empty queue, or
//! busy in the handler. (The item it is handling at the time of the pause, if any, completes.) This
//! is the fix over python-application, whose worker checked the pause flag *before* blocking on the
//! queue and so handled one more event that arrived after the pause.
//!
//! # The stop protocol
//!
//! - `stop()` (graceful): `stop = Draining`, `pause = 0`. From then on `put`, `load` and `resume`
//!   fail and hand the events back, and `pause()` is a no-op (a paused draining queue could never
//!   finish). The worker handles every item still queued, then exits.
//! - `stop_now()` (forced): `stop = Now`. The worker finishes the item in hand and exits without
//!   taking another; the remaining items stay in `queue` for `get_unhandled`.
//! - When the last handle is dropped while `Running`, the queue stops gracefully: nobody can put,
//!   unpause or stop it any more, so draining and exiting is the only useful thing left. A handler
//!   that holds a handle to its own queue keeps it alive until it is stopped explicitly.
//! - The worker's exit path runs under a drop guard that sets `finished` and notifies `done`, so a
//!   joiner is released even if something unexpected unwinds the worker.
//!
//! Stop, pause and put only take the lock briefly and never wait, so they are safe from inside the
//! handler. `join` from the worker thread itself is detected (by thread id) and refused.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::deadline::deadline_after;
use crate::Failure;

/// What a front-end stores in the core. See the module docs.
pub(crate) trait Kind: Sized {
    /// What the user puts.
    type Event;
    /// What the core queue holds.
    type Item;
    /// What the front-end keeps beside the queue, under the same lock.
    type Extra: Default;

    /// The item for an event that is put, loaded, resumed or preloaded.
    fn item(event: Self::Event) -> Self::Item;

    /// How many events wait (queued or in `extra`; not counting one the handler has).
    fn waiting(state: &State<Self>) -> usize;

    /// Takes every waiting event out, in the order they would have been handled.
    fn take_waiting(state: &mut State<Self>) -> Vec<Self::Event>;
}

/// Where a queue is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopMode {
    Running,
    Draining,
    Now,
}

/// Everything mutable, behind `Shared::state`. See the module docs.
pub(crate) struct State<K: Kind> {
    pub(crate) queue: VecDeque<K::Item>,
    pub(crate) extra: K::Extra,
    pause: usize,
    accepting: bool,
    stop: StopMode,
    finished: bool,
    handles: usize,
}

struct Shared<K: Kind> {
    name: String,
    state: Mutex<State<K>>,
    work: Condvar,
    done: Condvar,
    worker_id: OnceLock<ThreadId>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<K: Kind> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock()
    }
}

/// The settings both builders collect.
pub(crate) struct Config<E> {
    pub(crate) name: Option<String>,
    pub(crate) paused: bool,
    pub(crate) preload: Vec<E>,
}

impl<E> Default for Config<E> {
    fn default() -> Self {
        Config {
            name: None,
            paused: false,
            preload: Vec::new(),
        }
    }
}

impl<E> Config<E> {
    /// `Debug` for the builder type called `builder`: its settings, the preload as a count.
    pub(crate) fn fmt_as(&self, builder: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(builder)
            .field("name", &self.name)
            .field("paused", &self.paused)
            .field("preload", &self.preload.len())
            .finish()
    }
}

/// A user handle. Cloning it counts a handle; dropping the last one stops the queue gracefully.
pub(crate) struct Core<K: Kind> {
    shared: Arc<Shared<K>>,
}

impl<K> Core<K>
where
    K: Kind + 'static,
    K::Item: Send,
    K::Extra: Send,
{
    /// Starts the worker thread (named by `config`, else `default_name`), which runs `body` and
    /// then marks the queue finished.
    pub(crate) fn spawn<B>(
        config: Config<K::Event>,
        default_name: &str,
        body: B,
    ) -> io::Result<Core<K>>
    where
        B: FnOnce(&Worker<K>) + Send + 'static,
    {
        let name = config.name.unwrap_or_else(|| default_name.to_owned());
        let shared = Arc::new(Shared {
            name: name.clone(),
            state: Mutex::new(State {
                queue: config.preload.into_iter().map(K::item).collect(),
                extra: K::Extra::default(),
                pause: usize::from(config.paused),
                accepting: true,
                stop: StopMode::Running,
                finished: false,
                handles: 1,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            worker_id: OnceLock::new(),
            thread: Mutex::new(None),
        });
        let worker = Worker {
            shared: Arc::clone(&shared),
        };
        let handle = thread::Builder::new().name(name).spawn(move || {
            let _ = worker.shared.worker_id.set(thread::current().id());
            let _finish = FinishGuard(&worker.shared);
            // The front-end catches the handler's panics itself; this only catches what escapes
            // (a panicking `Drop` of the handler, say), so that the thread ends cleanly.
            // The scope unwinds green threads the handlers left behind before the thread's
            // thread-locals go (handlers run in the thread's main context and may block).
            if let Err(failure) = Failure::catch(|| crate::hub::scope(|| body(&worker))) {
                tracing::error!(
                    queue = %worker.shared.name,
                    "event queue '{}': worker failed: {}",
                    worker.shared.name,
                    failure
                );
            }
        })?;
        *shared.thread.lock() = Some(handle);
        Ok(Core { shared })
    }
}

impl<K: Kind> Core<K> {
    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    /// Queues one value, wrapped into an item by `wrap` once it is accepted. `Err` gives the value
    /// back if the queue is stopping; an ignored value is dropped (after the lock is released).
    pub(crate) fn push<T>(&self, value: T, wrap: impl FnOnce(T) -> K::Item) -> Result<(), T> {
        self.admit(value, |queue, value| queue.push_back(wrap(value)))
    }

    /// Queues one event as [`Kind::item`]. Same rules as [`Core::push`].
    pub(crate) fn put(&self, event: K::Event) -> Result<(), PutError<K::Event>> {
        self.push(event, K::item).map_err(PutError)
    }

    /// Queues several events, in order, all or none. Same rules as [`Core::push`].
    pub(crate) fn load(
        &self,
        events: impl IntoIterator<Item = K::Event>,
    ) -> Result<(), PutError<Vec<K::Event>>> {
        let events: Vec<K::Event> = events.into_iter().collect();
        self.admit(events, |queue, events| {
            queue.extend(events.into_iter().map(K::item));
        })
        .map_err(PutError)
    }

    /// The rules of [`Core::push`]: `Err(value)` while stopping, `value` dropped (lock released)
    /// while ignoring, else `add` queues it and the worker is woken.
    fn admit<T>(&self, value: T, add: impl FnOnce(&mut VecDeque<K::Item>, T)) -> Result<(), T> {
        let mut st = self.shared.lock();
        if st.stop != StopMode::Running {
            drop(st);
            return Err(value);
        }
        if !st.accepting {
            drop(st);
            drop(value);
            return Ok(());
        }
        add(&mut st.queue, value);
        drop(st);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Puts `events` at the front (in their order), undoes one pause and accepts events again.
    pub(crate) fn resume(
        &self,
        events: impl IntoIterator<Item = K::Event>,
    ) -> Result<(), PutError<Vec<K::Event>>> {
        let events: Vec<K::Event> = events.into_iter().collect();
        let mut st = self.shared.lock();
        if st.stop != StopMode::Running {
            drop(st);
            return Err(PutError(events));
        }
        for item in events.into_iter().map(K::item).rev() {
            st.queue.push_front(item);
        }
        st.pause = st.pause.saturating_sub(1);
        st.accepting = true;
        drop(st);
        self.shared.work.notify_one();
        Ok(())
    }

    pub(crate) fn pause(&self) {
        let mut st = self.shared.lock();
        if st.stop == StopMode::Running {
            st.pause += 1;
        }
    }

    pub(crate) fn unpause(&self) {
        let mut st = self.shared.lock();
        if st.pause > 0 {
            st.pause -= 1;
            if st.pause == 0 {
                drop(st);
                self.shared.work.notify_one();
            }
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.shared.lock().pause > 0
    }

    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.shared.lock().accepting = accepting;
    }

    pub(crate) fn is_accepting(&self) -> bool {
        self.shared.lock().accepting
    }

    pub(crate) fn stop(&self) {
        let mut st = self.shared.lock();
        if st.stop == StopMode::Running {
            st.stop = StopMode::Draining;
        }
        st.pause = 0;
        drop(st);
        self.shared.work.notify_one();
    }

    pub(crate) fn stop_now(&self) {
        self.shared.lock().stop = StopMode::Now;
        self.shared.work.notify_one();
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.shared.lock().stop != StopMode::Running
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.shared.lock().finished
    }

    /// Takes every waiting event out ([`Kind::take_waiting`]), whether or not the worker runs.
    pub(crate) fn clear(&self) -> Vec<K::Event> {
        K::take_waiting(&mut self.shared.lock())
    }

    /// How many events wait ([`Kind::waiting`]).
    pub(crate) fn len(&self) -> usize {
        K::waiting(&self.shared.lock())
    }

    /// Once the worker has finished, takes the events it never handled; otherwise `StillRunning`.
    pub(crate) fn get_unhandled(&self) -> Result<Vec<K::Event>, StillRunning> {
        let mut st = self.shared.lock();
        if !st.finished {
            return Err(StillRunning {
                name: self.shared.name.clone(),
            });
        }
        Ok(K::take_waiting(&mut st))
    }

    /// Waits until the worker has finished, then reaps the OS thread.
    pub(crate) fn join(&self) -> Result<(), JoinError> {
        self.join_until(None)
    }

    /// [`Core::join`] that gives up after `timeout`.
    pub(crate) fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.join_until(deadline_after(timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<(), JoinError> {
        if self.shared.worker_id.get() == Some(&thread::current().id()) {
            return Err(JoinError {
                name: self.shared.name.clone(),
                kind: JoinErrorKind::OwnThread,
            });
        }
        let mut st = self.shared.lock();
        while !st.finished {
            match deadline {
                None => self.shared.done.wait(&mut st),
                Some(deadline) => {
                    if self.shared.done.wait_until(&mut st, deadline).timed_out() && !st.finished {
                        return Err(JoinError {
                            name: self.shared.name.clone(),
                            kind: JoinErrorKind::TimedOut,
                        });
                    }
                }
            }
        }
        drop(st);
        // `finished` is the worker's last act, so this join only waits for the thread to unwind
        // its last frames. The worker catches every panic, so a join error cannot carry one.
        if let Some(thread) = self.shared.thread.lock().take() {
            let _ = thread.join();
        }
        Ok(())
    }

    /// `Debug` for the queue type called `queue`: its name.
    pub(crate) fn fmt_as(&self, queue: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(queue)
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl<K: Kind> Clone for Core<K> {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        Core {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Kind> Drop for Core<K> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.handles -= 1;
        if st.handles == 0 && st.stop == StopMode::Running {
            st.stop = StopMode::Draining;
            st.pause = 0;
            drop(st);
            self.shared.work.notify_one();
        }
    }
}

/// The worker thread's view of the queue.
pub(crate) struct Worker<K: Kind> {
    shared: Arc<Shared<K>>,
}

impl<K: Kind> Worker<K> {
    /// Waits for the next item the worker may take; `None` means "exit now".
    pub(crate) fn next(&self) -> Option<K::Item> {
        let mut st = self.shared.lock();
        loop {
            match st.stop {
                StopMode::Now => return None,
                StopMode::Draining => return st.queue.pop_front(),
                StopMode::Running => {
                    if st.pause == 0 {
                        if let Some(item) = st.queue.pop_front() {
                            return Some(item);
                        }
                    }
                }
            }
            self.shared.work.wait(&mut st);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.shared.lock()
    }

    /// Runs one handler call, catching and logging a panic (once, with the queue's name).
    pub(crate) fn call<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        match Failure::catch(f) {
            Ok(r) => Some(r),
            Err(failure) => {
                tracing::error!(
                    queue = %self.shared.name,
                    "event queue '{}': handler panicked: {}",
                    self.shared.name,
                    failure.panic_message().unwrap_or("<non-string payload>")
                );
                None
            }
        }
    }
}

/// Sets `finished` and releases joiners when the worker thread leaves its body, however it leaves.
struct FinishGuard<'a, K: Kind>(&'a Shared<K>);

impl<K: Kind> Drop for FinishGuard<'_, K> {
    fn drop(&mut self) {
        self.0.lock().finished = true;
        self.0.done.notify_all();
    }
}

/// An event was refused because the queue has been stopped; the event comes back inside.
///
/// While a queue ignores events (see `ignore_events`), `put` drops them and returns `Ok`; this
/// error is only for a stopped (or stopping) queue.
///
/// ```
/// use filature::threads::EventQueue;
///
/// let queue = EventQueue::new(|_: String| {});
/// queue.stop();
/// let err = queue.put("late".to_string()).unwrap_err();
/// assert_eq!(err.into_inner(), "late");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PutError<T>(pub T);

impl<T> PutError<T> {
    /// The refused event (or events).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PutError { .. }")
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event queue has stopped")
    }
}

impl<T> StdError for PutError<T> {}

/// `get_unhandled` was called while the queue's thread is still running.
///
/// Stop the queue and [`join`](super::EventQueue::join) it first.
///
/// ```
/// use filature::threads::EventQueue;
///
/// let queue = EventQueue::new(|_: u32| {});
/// let err = queue.get_unhandled().unwrap_err();
/// assert_eq!(err.name(), "filature-event-queue");
/// queue.stop();
/// queue.join().unwrap();
/// assert_eq!(queue.get_unhandled().unwrap(), Vec::<u32>::new());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StillRunning {
    name: String,
}

impl StillRunning {
    /// The queue's thread name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for StillRunning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event queue '{}' is still running", self.name)
    }
}

impl StdError for StillRunning {}

/// Why `join` / `join_timeout` returned without the queue's thread having finished.
///
/// ```
/// use std::time::Duration;
/// use filature::threads::EventQueue;
///
/// let queue = EventQueue::new(|_: u32| {});
/// let err = queue.join_timeout(Duration::from_millis(10)).unwrap_err();
/// assert!(err.is_timed_out());
/// queue.stop();
/// queue.join().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    name: String,
    kind: JoinErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinErrorKind {
    TimedOut,
    OwnThread,
}

impl JoinError {
    /// The wait ran out of time; the queue is still running.
    pub fn is_timed_out(&self) -> bool {
        self.kind == JoinErrorKind::TimedOut
    }

    /// `join` was called from the queue's own thread (from inside the handler), which would wait
    /// forever.
    pub fn is_own_thread(&self) -> bool {
        self.kind == JoinErrorKind::OwnThread
    }

    /// The queue's thread name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            JoinErrorKind::TimedOut => {
                write!(f, "timed out joining event queue '{}'", self.name)
            }
            JoinErrorKind::OwnThread => {
                write!(
                    f,
                    "cannot join event queue '{}' from its own thread",
                    self.name
                )
            }
        }
    }
}

impl StdError for JoinError {}
