//! [`ThreadManager`]: serial worker threads created on demand by name (the SIP SIMPLE SDK's
//! `ThreadManager`), each hosting a hub.
//!
//! # Pieces
//!
//! * A **named thread** is an OS thread named after its id whose body runs [`hub::run`] on its own
//!   hub, inside [`hub::scope`]. Jobs are posted to the hub's inbox as main-context jobs, so they
//!   run one at a time, in the inbox's order, in the thread's **main context**, as the SIP SIMPLE
//!   SDK's plain threads ran them: a job may block, and a filature wait inside it
//!   (`blocking_call_from_thread`, `tpool::execute`, `Event::wait`, `join`) drives the thread's
//!   hub meanwhile, so green threads, timers and cross-thread posts keep working there; later
//!   jobs wait their turn. Its handle, [`NamedThread`], is a `HubHandle` plus a shared `Control` (the
//!   stop request, the "exited" flag and the OS `JoinHandle`).
//! * The **manager** keeps `State` behind one `RwLock`: the live threads by id, the *retiring*
//!   ones (asked to stop, not yet joined) and the `stopped` flag.
//! * **`thread-ops`** is a named thread of the manager's own, created by the first `stop_thread`:
//!   a stopping thread's last act is to post "join me" to it, so `stop_thread` never blocks.
//!
//! # Invariants
//!
//! * **One OS thread per live id.** A thread is created only under the write lock, after
//!   re-checking the map, and inserted before the lock is released.
//! * **Exactly once, FIFO per producer.** A thread leaves the map only under the write lock (by
//!   `stop_thread` or `stop`), and only after that is it asked to stop. Its body then leaves
//!   `hub::run`, and the end of its `hub::scope` closes the inbox and runs everything it accepted. A post is
//!   a push into that inbox, which either accepts the job (it will run, once) or hands it back
//!   because the inbox is closed. Through a `NamedThread` handle a handed-back job becomes
//!   `Err(Stopped)`. Through the manager it is posted again by the slow path, under the read lock,
//!   to the thread now in the map, whose inbox is open; nothing is dropped.
//! * **The post fast path.** Each OS thread remembers the thread it last posted to through a
//!   manager, with the manager's `epoch`, which is bumped under the write lock whenever a thread
//!   leaves the map. While the epoch is unchanged the memo is used without taking the lock (this
//!   keeps `call_in_thread` close to the cost of a raw hub post). A stale memo can only point at a thread
//!   that is stopping, so the previous point applies. The memo keeps the last target's handle
//!   alive in the producer thread until it posts elsewhere or exits.
//! * **Inline means on that thread.** `call_in_thread(id, f)` runs `f` inline exactly when the
//!   calling OS thread is this manager's thread `id` (a thread-local set by its body, so also
//!   while it drains after a stop).
//! * **Incarnations do not overlap.** After `stop_thread(id)`, a later post to `id` creates a new
//!   thread; it accepts posts at once but starts running them only after the retiring thread of
//!   the same id has exited. So a producer's posts to `id` run in order across the stop too. (A
//!   job of the stopping thread that posts to its own id through the manager therefore starts
//!   the next incarnation, as in the original.)
//! * **After `stop`, nothing is created.** `stopped` only goes from false to true, under the write
//!   lock; every path that creates a thread checks it there, and every post through the manager
//!   checks it (its memo is stale, and the map is empty). Posts then fail with `Stopped`.
//! * **Nothing waits forever on its own.** `stop_thread` never blocks. `stop` moves every thread
//!   to retiring, waits for each to exit and joins it; a thread leaves retiring only once joined,
//!   so concurrent `stop`s all wait for all of them. `stop_timeout` stops waiting at its deadline
//!   and names the threads still running, which stay retiring so a later `stop` waits for them
//!   again. A thread never waits for itself: `stop` called from a named thread's job skips that
//!   thread, which exits once the job returns, and skips any thread whose job is in `stop` too
//!   (two such jobs would otherwise wait for each other).
//! * The user's code never runs under the manager's lock: inline calls run after the guard is
//!   released, posted jobs run on their own thread, and a refused job is dropped (its destructor
//!   run) after the guard is released.
//!
//! # Green threads at stop
//!
//! When a named thread stops, its jobs are drained first; green threads they spawned get a few
//! non-blocking passes to run, then every green thread still alive is killed (it unwinds from its
//! park point, destructors run, its joiners see it killed). Timers not yet due are dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::deadline::deadline_after;
use crate::hub::{self, HubHandle};

use super::manager_errors::{StopTimeout, ThreadError, ThreadErrorKind};

type Job = Box<dyn FnOnce() + Send>;

static NEXT_MANAGER_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// What this OS thread knows about named threads (one thread-local: the hot path reads both).
    static LOCAL: RefCell<Local> = const { RefCell::new(Local { me: None, last: None }) };
}

struct Local {
    /// On a named thread: its manager's id and its own id.
    me: Option<(u64, String)>,
    /// The thread this OS thread last posted to through a manager (see `Shared::post_fast`).
    last: Option<Cached>,
}

/// What the hot path decided for a job.
enum Fast<F> {
    /// We are on the target thread: run it inline.
    Inline(F),
    Posted,
    /// Take the slow path with the (wrapped) job.
    Slow(Job),
}

/// A producer's memo of one lookup, valid while the manager's `epoch` has not moved.
struct Cached {
    manager: u64,
    epoch: u64,
    thread: NamedThread,
}

/// The id of the manager's own thread, which joins the threads `stop_thread` stops. It is an
/// ordinary named thread otherwise, started by the first `stop_thread`.
///
/// ```
/// use filature::threads::{ThreadManager, THREAD_OPS};
///
/// let manager = ThreadManager::new();
/// assert!(manager.stop_thread(THREAD_OPS).is_err());
/// ```
pub const THREAD_OPS: &str = "thread-ops";

/// Runs jobs on named, serial threads created on demand.
///
/// Every named thread hosts a [hub](crate::hub): jobs run on it one at a time, in the order each
/// producer posted them, and may spawn green threads or set timers there.
///
/// ```
/// use filature::threads::ThreadManager;
/// use std::sync::mpsc;
///
/// let manager = ThreadManager::new();
/// let (tx, rx) = mpsc::channel();
/// manager
///     .call_in_thread("file-io", move || {
///         tx.send(std::thread::current().name().map(str::to_owned)).unwrap();
///     })
///     .unwrap();
/// assert_eq!(rx.recv().unwrap().as_deref(), Some("file-io"));
/// manager.stop();
/// ```
pub struct ThreadManager {
    shared: Arc<Shared>,
}

struct Shared {
    /// Tells managers apart in thread-locals.
    id: u64,
    /// Bumped under the write lock whenever a thread leaves `threads`; see `Shared::post_fast`.
    epoch: AtomicU64,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    threads: HashMap<String, NamedThread>,
    /// Asked to stop, not yet joined; in the order they were stopped.
    retiring: Vec<NamedThread>,
    stopped: bool,
}

/// A handle to one named thread: post jobs to it, reach its hub.
///
/// Cheap to clone. Posting through a handle after its thread was stopped fails with
/// [`ThreadErrorKind::Stopped`]; it never starts a new thread (the manager's
/// [`call_in_thread`](ThreadManager::call_in_thread) does).
///
/// ```
/// use filature::threads::ThreadManager;
/// use std::sync::mpsc;
///
/// let manager = ThreadManager::new();
/// let config = manager.get_thread("config").unwrap();
/// assert_eq!(config.name(), "config");
/// let (tx, rx) = mpsc::channel();
/// let me = config.clone();
/// config.call(move || tx.send(me.is_current()).unwrap()).unwrap();
/// assert!(rx.recv().unwrap());
/// manager.stop();
/// ```
#[derive(Clone)]
pub struct NamedThread {
    hub: HubHandle,
    control: Arc<Control>,
}

/// What the manager and the thread's own body share about one thread.
struct Control {
    name: String,
    /// Set (once) by the manager before it stops the hub; the body exits only when it is set.
    stop_requested: AtomicBool,
    /// True while a job of this thread is inside `Shared::stop`.
    in_stop: AtomicBool,
    /// Set by the body as its last act (after the hub shut down).
    exited: Mutex<bool>,
    exited_cv: Condvar,
    /// The OS thread, taken by whoever joins it.
    os: Mutex<Option<JoinHandle<()>>>,
}

impl ThreadManager {
    /// The process-wide manager, created on first use. It is never dropped; call
    /// [`stop`](Self::stop) at shutdown to drain and join its threads.
    ///
    /// ```
    /// use filature::threads::ThreadManager;
    ///
    /// assert!(std::ptr::eq(ThreadManager::global(), ThreadManager::global()));
    /// ```
    pub fn global() -> &'static ThreadManager {
        static GLOBAL: OnceLock<ThreadManager> = OnceLock::new();
        GLOBAL.get_or_init(ThreadManager::new)
    }

    /// A manager of its own (for tests, or for a subsystem that stops its threads separately).
    ///
    /// Dropping it without [`stop`](Self::stop) asks every thread to drain and exit, without
    /// waiting or joining.
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// manager.start(); // does nothing
    /// manager.stop();
    /// ```
    pub fn new() -> ThreadManager {
        ThreadManager {
            shared: Arc::new(Shared {
                id: NEXT_MANAGER_ID.fetch_add(1, Ordering::Relaxed),
                epoch: AtomicU64::new(0),
                state: RwLock::new(State::default()),
            }),
        }
    }

    /// Does nothing: threads start on demand. Kept for symmetry with the original API.
    ///
    /// ```
    /// filature::threads::ThreadManager::new().start();
    /// ```
    pub fn start(&self) {}

    /// The thread named `id`, started now if it does not exist yet.
    ///
    /// Concurrent callers asking for the same new id get the same thread: exactly one OS thread
    /// is started, named `id` (Linux shows at most its first 15 bytes; Rust's
    /// `std::thread::current().name()` shows all of it). Fails after [`stop`](Self::stop), for an
    /// id with a NUL byte, or when the OS refuses a thread.
    ///
    /// ```
    /// use filature::threads::ThreadManager;
    ///
    /// let manager = ThreadManager::new();
    /// let a = manager.get_thread("worker").unwrap();
    /// let b = manager.get_thread("worker").unwrap();
    /// assert_eq!(a.name(), b.name());
    /// manager.stop();
    /// assert!(manager.get_thread("worker").unwrap_err().is_stopped());
    /// ```
    pub fn get_thread(&self, id: &str) -> Result<NamedThread, ThreadError> {
        self.shared.with_thread(id, NamedThread::clone)
    }

    /// Runs `f` on thread `id`: at once, inline, when called on that thread; otherwise queued
    /// behind what is already there (the thread is started if needed).
    ///
    /// Calls from one producer run in the order they were made, each exactly once. A queued job
    /// runs in the named thread's main context, one job at a time: it may block the thread the
    /// ordinary way (file I/O, locks), and filature's blocking calls inside it
    /// (`reactor::blocking_call_from_thread`, `tpool::execute`, `Event::wait`, `join`, …) wait
    /// while the thread's hub keeps running its green threads, timers and posted calls; the next
    /// job starts when this one returns. A panic in a queued job is logged with the thread's name
    /// and the thread goes on; a panic in an inline call unwinds to the caller, as any function
    /// call would.
    ///
    /// ```
    /// use filature::threads::ThreadManager;
    /// use std::sync::{mpsc, Arc};
    ///
    /// let manager = Arc::new(ThreadManager::new());
    /// let (tx, rx) = mpsc::channel();
    /// let m = manager.clone();
    /// manager
    ///     .call_in_thread("config", move || {
    ///         let tx2 = tx.clone();
    ///         m.schedule_in_thread("config", move || tx2.send("scheduled").unwrap()).unwrap();
    ///         m.call_in_thread("config", move || tx.send("inline").unwrap()).unwrap();
    ///     })
    ///     .unwrap();
    /// assert_eq!(rx.recv().unwrap(), "inline");
    /// assert_eq!(rx.recv().unwrap(), "scheduled");
    /// manager.stop();
    /// ```
    pub fn call_in_thread(
        &self,
        id: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), ThreadError> {
        match self.shared.post_fast(id, f, true) {
            Fast::Inline(f) => {
                f();
                Ok(())
            }
            Fast::Posted => Ok(()),
            Fast::Slow(job) => self.shared.post_slow(id, job),
        }
    }

    /// Queues `f` on thread `id`, behind what is already there, even when called on that thread
    /// (the thread is started if needed). Otherwise as [`call_in_thread`](Self::call_in_thread).
    ///
    /// ```
    /// use filature::threads::ThreadManager;
    /// use std::sync::mpsc;
    ///
    /// let manager = ThreadManager::new();
    /// let (tx, rx) = mpsc::channel();
    /// manager.schedule_in_thread("log", move || tx.send(1).unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 1);
    /// manager.stop();
    /// ```
    pub fn schedule_in_thread(
        &self,
        id: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), ThreadError> {
        match self.shared.post_fast(id, f, false) {
            Fast::Inline(_) => unreachable!("inline was not allowed"),
            Fast::Posted => Ok(()),
            Fast::Slow(job) => self.shared.post_slow(id, job),
        }
    }

    /// Stops thread `id` without waiting: it runs every job already queued, then exits, and
    /// [`THREAD_OPS`] joins it. A later post to `id` starts a new thread, which runs its jobs only
    /// after this one has exited.
    ///
    /// Errors: [`ThreadErrorKind::Unknown`] for an id with no running thread,
    /// [`ThreadErrorKind::Reserved`] for `thread-ops` (it stops with [`stop`](Self::stop)),
    /// [`ThreadErrorKind::Stopped`] after `stop`.
    ///
    /// ```
    /// use filature::threads::{ThreadErrorKind, ThreadManager};
    /// use std::sync::mpsc;
    ///
    /// let manager = ThreadManager::new();
    /// let (tx, rx) = mpsc::channel();
    /// let io = manager.get_thread("io").unwrap();
    /// io.schedule(move || tx.send("drained").unwrap()).unwrap();
    /// manager.stop_thread("io").unwrap();
    /// assert_eq!(rx.recv().unwrap(), "drained");
    /// assert_eq!(manager.stop_thread("io").unwrap_err().kind(), ThreadErrorKind::Unknown);
    /// assert_eq!(manager.stop_thread("thread-ops").unwrap_err().kind(), ThreadErrorKind::Reserved);
    /// manager.stop();
    /// ```
    pub fn stop_thread(&self, id: &str) -> Result<(), ThreadError> {
        if id == THREAD_OPS {
            return Err(ThreadError::new(ThreadErrorKind::Reserved, id));
        }
        let t = {
            let mut st = self.shared.state.write();
            if st.stopped {
                return Err(ThreadError::new(ThreadErrorKind::Stopped, id));
            }
            let t = st
                .threads
                .remove(id)
                .ok_or_else(|| ThreadError::new(ThreadErrorKind::Unknown, id))?;
            st.retiring.push(t.clone());
            self.shared.bump_epoch();
            // The joiner must exist before the thread asks it to join. Should it fail to start,
            // the retiring thread is joined by `stop` instead.
            if let Err(e) = self.shared.create_locked(&mut st, THREAD_OPS) {
                tracing::error!("cannot start '{THREAD_OPS}': {e}");
            }
            t
        };
        t.request_stop();
        Ok(())
    }

    /// Stops every thread: each runs the jobs queued before this call, then exits, and is joined.
    /// Afterwards every post and `get_thread` fails with [`ThreadErrorKind::Stopped`]. Calls made
    /// at the same time (from several threads) all wait: each returns only once that holds. A
    /// later call waits only for threads not joined yet (left running by a timed-out
    /// [`stop_timeout`](Self::stop_timeout), or not waited for by a stop called from a job).
    ///
    /// Waits as long as the jobs take; see `stop_timeout` for a bound. Called from a named
    /// thread's job, it does not wait for that thread, which exits once the job returns, nor for
    /// another named thread whose job is in a `stop` at the same time (that one waits for this
    /// one's thread).
    ///
    /// ```
    /// use filature::threads::ThreadManager;
    /// use std::sync::{atomic::{AtomicUsize, Ordering}, Arc};
    ///
    /// let manager = ThreadManager::new();
    /// let done = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..100 {
    ///     let done = done.clone();
    ///     manager.call_in_thread("w", move || { done.fetch_add(1, Ordering::Relaxed); }).unwrap();
    /// }
    /// manager.stop();
    /// assert_eq!(done.load(Ordering::Relaxed), 100);
    /// assert!(manager.call_in_thread("w", || ()).unwrap_err().is_stopped());
    /// ```
    pub fn stop(&self) {
        let r = self.shared.stop(None);
        debug_assert!(r.is_ok(), "a stop without a deadline cannot time out");
    }

    /// [`stop`](Self::stop), but returns after `timeout` at the latest, naming the threads that
    /// have not exited by then (they are left running, and a later `stop` waits for them again).
    /// A `timeout` too large to add to the clock (`Duration::MAX`) is no limit.
    ///
    /// ```
    /// use filature::threads::ThreadManager;
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    ///
    /// let manager = ThreadManager::new();
    /// let (release, blocked) = mpsc::channel::<()>();
    /// manager.call_in_thread("stuck", move || { let _ = blocked.recv(); }).unwrap();
    /// let err = manager.stop_timeout(Duration::from_millis(50)).unwrap_err();
    /// assert_eq!(err.stuck(), ["stuck"]);
    /// drop(release); // the job returns; the thread exits
    /// manager.stop();
    /// ```
    pub fn stop_timeout(&self, timeout: Duration) -> Result<(), StopTimeout> {
        self.shared.stop(deadline_after(timeout))
    }
}

impl Default for ThreadManager {
    fn default() -> Self {
        ThreadManager::new()
    }
}

impl Drop for ThreadManager {
    fn drop(&mut self) {
        let threads: Vec<NamedThread> = {
            let mut st = self.shared.state.write();
            if st.stopped {
                return;
            }
            st.stopped = true;
            self.shared.bump_epoch();
            st.threads.drain().map(|(_, t)| t).collect()
        };
        for t in &threads {
            t.request_stop();
        }
    }
}

impl fmt::Debug for ThreadManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.state.read();
        let mut names: Vec<&str> = st.threads.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("ThreadManager")
            .field("threads", &names)
            .field("retiring", &st.retiring.len())
            .field("stopped", &st.stopped)
            .finish()
    }
}

impl Shared {
    /// Must be called under the write lock, after removing a thread from `threads`.
    fn bump_epoch(&self) {
        // ORDERING: Release pairs with the Acquire in `post_fast`: a producer that still sees
        // the old epoch may post to the removed thread, which is fine (it runs or is refused).
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// The hot path of a post to thread `id`: decides whether `f` runs inline (only if `inline`
    /// and this OS thread is this manager's thread `id`, even while it drains after a stop), and
    /// otherwise posts it to the thread this OS thread posted to last, if that lookup is still
    /// valid (same manager, same id, the epoch has not moved). No lock is taken.
    ///
    /// Should the remembered thread have been stopped meanwhile, its hub either accepts the job
    /// (it runs in the drain) or hands it back because the inbox is closed; the slow path then
    /// posts it to the next incarnation, which runs only after this one exited, so the producer's
    /// order holds.
    fn post_fast<F: FnOnce() + Send + 'static>(&self, id: &str, f: F, inline: bool) -> Fast<F> {
        let mut f = Some(f);
        // `try_with`: a post from a thread-local destructor at thread exit, after `LOCAL` is gone,
        // takes the slow path instead of aborting the process.
        let fast = LOCAL.try_with(|l| {
            let Ok(l) = l.try_borrow() else {
                return Fast::Slow(hub::box_call(f.take().expect("taken once")));
            };
            if inline
                && l.me
                    .as_ref()
                    .is_some_and(|(m, name)| *m == self.id && name == id)
            {
                return Fast::Inline(f.take().expect("taken once"));
            }
            // One allocation, and no panic wrapper: the hub runs every posted job in its main
            // context, catching a panic, logging it with the hub's (the thread's) name.
            let job = hub::box_call(f.take().expect("taken once"));
            match &l.last {
                // ORDERING: Acquire pairs with the Release in `bump_epoch`.
                Some(c)
                    if c.manager == self.id
                        && c.thread.name() == id
                        && c.epoch == self.epoch.load(Ordering::Acquire) =>
                {
                    match c.thread.hub.try_post_job(job) {
                        Ok(()) => Fast::Posted,
                        Err(job) => Fast::Slow(job),
                    }
                }
                _ => Fast::Slow(job),
            }
        });
        match fast {
            Ok(fast) => fast,
            Err(_) => Fast::Slow(hub::box_call(
                f.take().expect("not taken when LOCAL is gone"),
            )),
        }
    }

    /// The slow path: look `id` up (or start it) and post under the read lock, then remember it
    /// for the fast path.
    fn post_slow(self: &Arc<Self>, id: &str, job: Job) -> Result<(), ThreadError> {
        let posted = self.with_thread(id, move |t| {
            // ORDERING: read under the read lock, so it matches the entry (bumps happen under
            // the write lock).
            let epoch = self.epoch.load(Ordering::Acquire);
            t.hub.try_post_job(job).map(|()| (epoch, t.clone()))
        })?;
        // A refused job is dropped here, after the lock: its destructor may call the manager.
        let Ok((epoch, thread)) = posted else {
            return Err(ThreadError::new(ThreadErrorKind::Stopped, id));
        };
        // Never borrowed here in practice (no user code runs while it is); if it were, or if
        // `LOCAL` is gone (a post from a thread-local destructor), the memo is not updated.
        let _ = LOCAL.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut() {
                l.last = Some(Cached {
                    manager: self.id,
                    epoch,
                    thread,
                });
            }
        });
        Ok(())
    }

    /// Runs `op` on thread `id` under the read lock, starting the thread first if needed.
    fn with_thread<R>(
        self: &Arc<Self>,
        id: &str,
        op: impl FnOnce(&NamedThread) -> R,
    ) -> Result<R, ThreadError> {
        loop {
            {
                let st = self.state.read();
                if let Some(t) = st.threads.get(id) {
                    return Ok(op(t));
                }
                if st.stopped {
                    return Err(ThreadError::new(ThreadErrorKind::Stopped, id));
                }
            }
            // Not there: start it, then post under the read lock like everyone else (a
            // `stop_thread` may remove it in between; the loop then starts the next one).
            self.create(id)?;
        }
    }

    /// Starts thread `id` unless it exists. Holds the write lock while the thread starts.
    fn create(self: &Arc<Self>, id: &str) -> Result<(), ThreadError> {
        self.create_locked(&mut self.state.write(), id)
    }

    fn create_locked(self: &Arc<Self>, st: &mut State, id: &str) -> Result<(), ThreadError> {
        if st.stopped {
            return Err(ThreadError::new(ThreadErrorKind::Stopped, id));
        }
        if st.threads.contains_key(id) {
            return Ok(());
        }
        if id.contains('\0') {
            return Err(ThreadError::new(ThreadErrorKind::InvalidName, id));
        }
        let predecessor = st
            .retiring
            .iter()
            .rev()
            .find(|t| t.name() == id)
            .map(|t| t.control.clone());
        let t = NamedThread::start(id, predecessor, self.id, Arc::downgrade(self))?;
        st.threads.insert(id.to_owned(), t);
        Ok(())
    }

    /// The end of a named thread's body: ask `thread-ops` to join it. If there is no `thread-ops`
    /// (the manager is stopping, or this is `thread-ops`), `stop` joins it, or nobody does.
    fn join_later(self: &Arc<Self>, control: &Arc<Control>) {
        let st = self.state.read();
        let Some(ops) = st.threads.get(THREAD_OPS) else {
            return;
        };
        if Arc::ptr_eq(&ops.control, control) {
            return;
        }
        let control = control.clone();
        let manager = Arc::downgrade(self);
        let _ = ops.post(move || {
            control.join_os();
            if let Some(m) = manager.upgrade() {
                m.state
                    .write()
                    .retiring
                    .retain(|t| !Arc::ptr_eq(&t.control, &control));
            }
        });
    }

    /// Stops every thread and waits (until `deadline`) for each to exit, then joins it.
    ///
    /// The threads move from `threads` to `retiring` and leave it only once joined, so a `stop`
    /// racing with another one finds the threads the other is stopping, and waits for them
    /// too: every caller returns only once every thread it saw has run its queued jobs, exited
    /// and been joined (or its deadline passed).
    ///
    /// Called from a job of named thread X, it does not wait for X, nor for a thread Y whose job
    /// is in a `stop` too: Y's stop waits for X, so each waiting for the other would never end.
    /// Each announces itself (`in_stop`) before looking at the others, so of two such calls at
    /// least one sees the other and skips it; the one it skips exits once its own stop returns.
    fn stop(&self, deadline: Option<Instant>) -> Result<(), StopTimeout> {
        let (workers, ops): (Vec<NamedThread>, Vec<NamedThread>) = {
            let mut st = self.state.write();
            st.stopped = true;
            self.bump_epoch();
            let live: Vec<NamedThread> = st.threads.drain().map(|(_, t)| t).collect();
            st.retiring.extend(live);
            st.retiring
                .iter()
                .cloned()
                .partition(|t| t.name() != THREAD_OPS)
        };
        let me = workers.iter().chain(&ops).find(|t| t.is_current());
        let _announced = me.map(|me| InStop::announce(&me.control));
        let wait = |t: &NamedThread| {
            if me.is_some() && t.control.in_stop() {
                Waited::Itself // stopping us: see above
            } else {
                t.wait_and_join(deadline)
            }
        };
        for t in &workers {
            t.request_stop();
        }
        let mut outcomes: Vec<(&NamedThread, Waited)> =
            workers.iter().map(|t| (t, wait(t))).collect();
        // `thread-ops` last, so it can still join the threads that exit meanwhile.
        for t in &ops {
            t.request_stop();
            outcomes.push((t, wait(t)));
        }
        let joined = |t: &NamedThread| {
            outcomes
                .iter()
                .any(|(j, w)| *w == Waited::Joined && Arc::ptr_eq(&j.control, &t.control))
        };
        self.state.write().retiring.retain(|t| !joined(t));
        let stuck: Vec<String> = outcomes
            .iter()
            .filter(|(_, w)| *w == Waited::TimedOut)
            .map(|(t, _)| t.name().to_owned())
            .collect();
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(StopTimeout { stuck })
        }
    }
}

impl NamedThread {
    /// Starts the OS thread and waits until its hub exists.
    fn start(
        id: &str,
        predecessor: Option<Arc<Control>>,
        manager_id: u64,
        manager: Weak<Shared>,
    ) -> Result<NamedThread, ThreadError> {
        let control = Arc::new(Control {
            name: id.to_owned(),
            stop_requested: AtomicBool::new(false),
            in_stop: AtomicBool::new(false),
            exited: Mutex::new(false),
            exited_cv: Condvar::new(),
            os: Mutex::new(None),
        });
        let (hub_tx, hub_rx) = crossbeam_channel::bounded(1);
        let body_control = control.clone();
        let os = std::thread::Builder::new()
            .name(id.to_owned())
            .spawn(move || body(body_control, hub_tx, predecessor, manager_id, manager))
            .map_err(|e| ThreadError::spawn(id, e))?;
        match hub_rx.recv() {
            Ok(hub) => {
                *control.os.lock() = Some(os);
                Ok(NamedThread { hub, control })
            }
            Err(_) => {
                let _ = os.join();
                Err(ThreadError::spawn(
                    id,
                    io::Error::other("the thread failed before its hub started"),
                ))
            }
        }
    }

    /// The thread's id, which is also its OS thread name.
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// assert_eq!(manager.get_thread("db").unwrap().name(), "db");
    /// manager.stop();
    /// ```
    pub fn name(&self) -> &str {
        &self.control.name
    }

    /// The thread's hub: spawn green threads on it, post calls to it.
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// let hub = manager.get_thread("greens").unwrap().hub();
    /// let h = hub.spawn(|| std::thread::current().name().map(str::to_owned)).unwrap();
    /// assert_eq!(h.join().as_deref(), Some("greens"));
    /// manager.stop();
    /// ```
    pub fn hub(&self) -> HubHandle {
        self.hub.clone()
    }

    /// True when called on this thread (from a job, or a green thread on its hub).
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// assert!(!manager.get_thread("x").unwrap().is_current());
    /// manager.stop();
    /// ```
    pub fn is_current(&self) -> bool {
        self.hub.is_current()
    }

    /// True once the thread has drained its jobs and exited (it may not be joined yet).
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// let t = manager.get_thread("brief").unwrap();
    /// assert!(!t.is_finished());
    /// manager.stop();
    /// assert!(t.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        *self.control.exited.lock()
    }

    /// Runs `f` on this thread: inline when called on it, queued otherwise. See
    /// [`ThreadManager::call_in_thread`]; unlike it, never starts a new thread.
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// let t = manager.get_thread("t").unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// t.call(move || tx.send(7).unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 7);
    /// manager.stop();
    /// assert!(t.call(|| ()).unwrap_err().is_stopped());
    /// ```
    pub fn call(&self, f: impl FnOnce() + Send + 'static) -> Result<(), ThreadError> {
        if self.is_current() {
            f();
            Ok(())
        } else {
            self.post(f)
        }
    }

    /// Queues `f` on this thread, even when called on it. See
    /// [`ThreadManager::schedule_in_thread`]; unlike it, never starts a new thread.
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// let t = manager.get_thread("t").unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// t.schedule(move || tx.send(8).unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 8);
    /// manager.stop();
    /// ```
    pub fn schedule(&self, f: impl FnOnce() + Send + 'static) -> Result<(), ThreadError> {
        self.post(f)
    }

    fn post(&self, f: impl FnOnce() + Send + 'static) -> Result<(), ThreadError> {
        self.hub
            .try_post_job(hub::box_call(f))
            .map_err(|_| ThreadError::new(ThreadErrorKind::Stopped, self.name()))
    }

    fn request_stop(&self) {
        // ORDERING: Release: the body reads it (Acquire) after `hub::run` returns, which happens
        // after the `stop` below.
        self.control.stop_requested.store(true, Ordering::Release);
        self.hub.stop();
    }

    /// Waits (until `deadline`) for the thread to exit, then joins it (or waits for whoever is
    /// joining it). This thread itself cannot wait for itself.
    fn wait_and_join(&self, deadline: Option<Instant>) -> Waited {
        if self.is_current() {
            return Waited::Itself;
        }
        if !self.control.wait_exited(deadline) {
            return Waited::TimedOut;
        }
        self.control.join_os();
        Waited::Joined
    }
}

impl fmt::Debug for NamedThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedThread")
            .field("name", &self.control.name)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Control {
    fn stop_requested(&self) -> bool {
        // ORDERING: Acquire pairs with the Release in `request_stop`.
        self.stop_requested.load(Ordering::Acquire)
    }

    fn in_stop(&self) -> bool {
        // ORDERING: SeqCst, with the SeqCst store in `InStop::announce`: of two threads that each
        // announce, then read the other's flag, at least one reads `true` (a store-load pair
        // that Acquire/Release would not order).
        self.in_stop.load(Ordering::SeqCst)
    }

    fn mark_exited(&self) {
        *self.exited.lock() = true;
        self.exited_cv.notify_all();
    }

    fn wait_exited(&self, deadline: Option<Instant>) -> bool {
        let mut exited = self.exited.lock();
        while !*exited {
            match deadline {
                None => self.exited_cv.wait(&mut exited),
                Some(d) => {
                    if self.exited_cv.wait_until(&mut exited, d).timed_out() {
                        return *exited;
                    }
                }
            }
        }
        true
    }

    /// Joins the OS thread unless it is the calling thread. The lock is held while joining, so
    /// a concurrent caller returns only once the thread has been joined (by either of them).
    /// The thread being joined never takes this lock.
    fn join_os(&self) {
        let mut os = self.os.lock();
        if os
            .as_ref()
            .is_some_and(|os| os.thread().id() == std::thread::current().id())
        {
            return;
        }
        if let Some(os) = os.take() {
            if os.join().is_err() {
                tracing::error!(thread = %self.name, "named thread '{}' panicked", self.name);
            }
        }
    }
}

/// A named thread's job is inside `Shared::stop` while this lives.
struct InStop<'a>(&'a Control);

impl<'a> InStop<'a> {
    fn announce(control: &'a Control) -> InStop<'a> {
        // ORDERING: SeqCst; see `Control::in_stop`.
        control.in_stop.store(true, Ordering::SeqCst);
        InStop(control)
    }
}

impl Drop for InStop<'_> {
    fn drop(&mut self) {
        self.0.in_stop.store(false, Ordering::Relaxed);
    }
}

/// How [`NamedThread::wait_and_join`] ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Waited {
    /// The thread exited and has been joined.
    Joined,
    /// Not waited for: the caller is that thread, or that thread's job is stopping the
    /// caller's thread. It exits once its job returns, and stays retiring (unjoined).
    Itself,
    /// The deadline passed first.
    TimedOut,
}

/// Marks the thread exited however its body ends, so `stop` never waits for a dead thread.
struct ExitGuard(Arc<Control>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.mark_exited();
    }
}

/// The body of every named thread.
fn body(
    control: Arc<Control>,
    hub_tx: crossbeam_channel::Sender<HubHandle>,
    predecessor: Option<Arc<Control>>,
    manager_id: u64,
    manager: Weak<Shared>,
) {
    let guard = ExitGuard(control.clone());
    // The scope's end is the hub's shutdown: the inbox closes, every job it accepted runs, and
    // green threads left on the thread are killed and unwound while its thread-locals live.
    hub::scope(|| {
        LOCAL.with(|l| l.borrow_mut().me = Some((manager_id, control.name.clone())));
        if hub_tx.send(hub::current()).is_err() {
            return;
        }
        drop(hub_tx);
        if let Some(p) = predecessor {
            // Jobs posted meanwhile wait in the inbox; they run after the previous incarnation's.
            p.wait_exited(None);
        }
        // A stray `HubHandle::stop` from user code only makes `run` return; the thread stops
        // when the manager asks it to.
        while !control.stop_requested() {
            hub::run();
        }
    });
    drop(guard);
    if let Some(m) = manager.upgrade() {
        m.join_later(&control);
    }
}
