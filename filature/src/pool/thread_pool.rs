//! `ThreadPool`: native worker threads fed from one queue (Twisted's `ThreadPool`, its traps fixed).
//!
//! # Pieces
//!
//! * **The job queue** (`state::JobQueue`): lock-free, unbounded, MPMC, FIFO. Anyone may push
//!   (a submitter, inside its *enter*/*leave* pair below); only workers pop, and `stop` never
//!   touches it (`JobHandle::cancel` does not remove a job: it empties the job's cell, counted in
//!   `Shared::cancelled` until the worker that pops the empty cell skips it).
//! * **The state word** (`state::StateWord`, one `AtomicU64`, RMWs only, so its changes are
//!   totally ordered and each RMW acquires what the earlier ones released): `STOPPING`,
//!   `CAN_GROW`, `in_flight` (submitters between enter and leave), `waking` (workers that promise
//!   to look at the queue before they sleep or retire: just started, just woken, or spinning) and
//!   `sleepers` (workers announced as asleep).
//! * **The lock** (`Shared::state`), for the rare paths only: starting and retiring workers, the
//!   sleepers stack and each worker's condvar, `min`/`max`/`started`/phase, `stop`, stats. Only
//!   lock holders change `sleepers`, `STOPPING` and `CAN_GROW`, and they keep `sleepers` equal to
//!   the stack's length and `CAN_GROW` equal to `started && running && workers < max`. Lock
//!   order: the pool's lock, then a worker's `Running` name lock (a `stop_timeout` report); never
//!   the reverse. A job's cell lock (`Tagged::run`) is never held with another lock.
//! * **Jobs** are two words in the queue: a plain job is its box; a job with a [`JobHandle`] is an
//!   `Arc` of its `Tagged` cell (id, name, the closure behind a small lock that a worker or a
//!   cancel empties, first come first served). Ids are unique per pool: a tagged job draws one at
//!   submission, a worker draws blocks of them for the plain jobs it runs.
//!
//! # Submitting (the hot path: no lock)
//!
//! 1. *Enter*: `in_flight += 1`, reading `STOPPING`; if set, undo and refuse ([`Stopped`]; the job
//!    is dropped on the caller's thread, never queued).
//! 2. Push the job.
//! 3. *Leave*: `in_flight -= 1`, reading the word. If some worker sleeps or the pool may grow
//!    (`Seen::may_hand_off`) and the queue holds more jobs than there are workers waking, take
//!    the lock and *hand off*: re-read the word; if the queue still outruns `waking`, wake the
//!    most recent sleeper (LIFO: the hot one; cold ones retire on the idle timeout), or else start
//!    a worker if the pool may grow. A woken or new worker is counted in `waking` in the same
//!    step. (The queue's length is only read when a hand-off is possible at all.)
//!
//! So while workers are busy or spinning a plain submission is two RMWs on the word and the
//! queue's push: nothing is shared with a worker except the queue's cache lines and, when
//! a worker goes idle or comes back, the word.
//!
//! # Worker life cycle
//!
//! A worker is created under the lock already counted: `workers += 1` and `waking += 1`. Its loop:
//!
//! 1. if the (rarely written) `surplus` flag says `workers > max`, it takes the lock and retires if
//!    that is still so (the shrink rule, below);
//! 2. it pops a job. If it was counted waking it *arrives*: `waking -= 1`; if the word then says
//!    someone could be woken or started and the queue still outruns `waking`, it hands off (as a
//!    submitter does: jobs pushed while it was on its way are passed on). It runs the job
//!    under `catch_unwind` (its `Running` record says which job, for stats and `stop_timeout`),
//!    then goes to 1. A worker that pops jobs back to back makes no RMW on the word at all;
//! 3. on an empty queue, the first time in this idle spell, it becomes waking (`waking += 1`) and
//!    spins a few microseconds watching the queue, then goes to 1. A submitter meanwhile sees
//!    someone waking and neither wakes nor starts anyone;
//! 4. the second time, it takes the lock and *announces sleep*: one RMW turns its `waking` into a
//!    `sleepers` count, reading `STOPPING`; then it re-checks the queue. If the pool is stopping
//!    it undoes the announcement and retires once the queue is empty and `in_flight == 0` (or
//!    yields and goes to 1 while a submitter is still pushing); if the queue is not empty it undoes
//!    the announcement and goes to 1; otherwise it pushes itself on the `sleepers` stack and waits
//!    on its *own* condvar until a hand-off pops it and sets its `woken` flag (spurious wake-ups
//!    wait again); then 1. While `workers > min` the wait has the idle timeout; a worker that
//!    times out un-woken leaves the stack (`sleepers -= 1`) and retires.
//!
//! Retiring (under the lock) is `waking -= 1` if the worker was counted there, `workers -= 1`,
//! freeing the slot, updating `CAN_GROW`/`surplus`, a hand-off (so a retirement never strands a
//! job) and, if the pool is stopping, notifying the stopper.
//!
//! # No lost wake-up, no stranded job
//!
//! Invariant: *a queued job always has a worker that will look at the queue*: a busy worker (it
//! pops again when its job ends), or one counted waking (it pops, or re-checks the queue after an
//! RMW on the word, before it sleeps or retires). The Dekker pair that keeps it: a submitter
//! pushes, then leaves (RMW); a worker announces sleep (RMW), then re-checks the queue. If the
//! leave comes first in the word's order, the announcement acquires the push and the worker sees
//! the job (or it was taken). If the announcement comes first, the leave reads `sleepers > 0`, and
//! unless the waking workers outnumber the queued jobs it hands off under the lock (where the
//! announcing worker is either asleep on the stack already, or still holds the lock and has not
//! decided); if they do outnumber them, each of those workers' next RMW comes after the leave, so
//! it sees the job when it arrives (and hands on what it cannot take) or re-checks before it
//! sleeps. A retiring worker hands off too. The same comparison (`queue > waking`) is what makes
//! a backlog wake or start one worker per job, as the lock-based pool did.
//! (`tests/loom_pool.rs` checks these races on the real code.)
//!
//! # Growing
//!
//! A pool grows when a job is submitted and no worker is on its way: none waking, none asleep, and
//! `workers < max` (Twisted grows when every thread is busy). A backlog that arrives while one
//! worker is on its way is served one hand-off at a time (each arriving worker starts or wakes the
//! next); [`ThreadPool::start`] and [`ThreadPool::adjust_pool_size`] size the pool for the whole
//! backlog at once.
//!
//! # The shrink rule
//!
//! Twisted shrinks by queueing "quit" markers *behind* the backlog, so after `10 → 2` under load
//! all ten threads keep running until the backlog drains. Here `surplus` (`workers > max`, set
//! under the lock) is read each time a worker finishes a job or wakes: a surplus worker retires
//! instead of taking the next job, and [`ThreadPool::adjust_pool_size`] wakes surplus sleepers so
//! that they retire at once. Concurrency therefore falls to the new `max` as the running jobs end.
//!
//! # Stop protocol
//!
//! `stop` (under the lock) moves the phase `Running → Stopping` and sets `STOPPING` (from then on
//! submissions are refused), waits out the submitters still between enter and leave (they run no
//! user code there; after that the queue holds every job that will ever be accepted), starts the
//! workers the backlog needs if the pool never started, and wakes every sleeper. Workers keep
//! taking jobs until the queue is empty, then retire (step 4). The stopper waits on
//! `Shared::done` until `workers == 0` (or the deadline of [`ThreadPool::stop_timeout`]: then it
//! reports the still-running jobs and leaves the phase at `Stopping`, so a later stop can finish
//! the job). The first stopper to see `workers == 0` takes the join handles, joins them without the
//! lock, and sets the phase to `Stopped`; every other stop waits for that, and a stop after it is a
//! no-op.
//!
//! # Stats
//!
//! `workers` is exact under the lock; `busy` counts the live workers whose `Running` record names
//! a job, so `workers == busy + idle` in every snapshot; `backlog` is the queue's length less the
//! cancelled jobs still in it (a snapshot, like any length of a lock-free queue).

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as StdOrdering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::lock::{Condvar, Mutex, MutexGuard};
use super::state::{
    JobQueue, StateWord, CAN_GROW, IN_FLIGHT_ONE, SLEEPERS_ONE, STOPPING, WAKING_ONE,
};
use crate::deadline::deadline_after;
use crate::failure::{panic_message, Failure};
use crate::loom::sync::Arc;
use crate::loom::thread;
use crate::Stopped;

/// The idle timeout used unless [`ThreadPoolBuilder::idle_timeout`] says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pool ids, so that a worker knows which pool it belongs to (`0` means "not a worker").
/// Plain std atomic: a counter outside the modelled protocol.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

#[cfg(not(loom))]
std::thread_local! {
    /// The id of the pool whose worker this thread is, or 0.
    static CURRENT_POOL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// Loom runs its threads on one OS thread, so the flag must be one of loom's thread-locals.
#[cfg(loom)]
loom::thread_local! {
    static CURRENT_POOL: std::cell::Cell<u64> = std::cell::Cell::new(0);
}

/// True if the calling thread is a worker of any filature thread pool.
///
/// `tpool` uses this to run a nested call inline instead of queueing it behind the caller (which
/// could deadlock a full pool).
///
/// ```
/// use filature::pool::{is_current_thread_worker, ThreadPool};
///
/// assert!(!is_current_thread_worker());
/// let pool = ThreadPool::new(1, 1).unwrap();
/// pool.start().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// pool.call_in_thread(move || tx.send(is_current_thread_worker()).unwrap()).unwrap();
/// assert!(rx.recv().unwrap());
/// pool.stop();
/// ```
pub fn is_current_thread_worker() -> bool {
    CURRENT_POOL.with(|c| c.get() != 0)
}

/// `min`/`max` were not a valid pool size (`min <= max` and `max >= 1` are required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid thread pool size: min {min}, max {max} (need min <= max and max >= 1)")]
pub struct PoolSizeError {
    /// The requested minimum.
    pub min: usize,
    /// The requested maximum.
    pub max: usize,
}

fn check_size(min: usize, max: usize) -> Result<(), PoolSizeError> {
    if max >= 1 && min <= max {
        Ok(())
    } else {
        Err(PoolSizeError { min, max })
    }
}

/// A snapshot of a pool's counters, all read under one lock (`workers == busy + idle`).
///
/// ```
/// use filature::pool::{PoolStats, ThreadPool};
///
/// let pool = ThreadPool::new(2, 4).unwrap();
/// pool.start().unwrap();
/// let s = pool.stats();
/// assert_eq!(s, PoolStats { workers: 2, busy: 0, idle: 2, backlog: 0 });
/// pool.stop();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Live worker threads.
    pub workers: usize,
    /// Workers running a job.
    pub busy: usize,
    /// Workers not running a job (waiting, starting, or about to retire).
    pub idle: usize,
    /// Jobs queued and not yet started.
    pub backlog: usize,
}

/// A job that was still running when [`ThreadPool::stop_timeout`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckJob {
    thread_name: String,
    job_name: Option<String>,
    job_id: u64,
}

impl StuckJob {
    /// The name of the worker thread running the job (`filature-pool-<name>-<n>`).
    pub fn thread_name(&self) -> &str {
        &self.thread_name
    }

    /// The job's name, if it was submitted with one ([`ThreadPool::call_in_thread_named`]).
    pub fn job_name(&self) -> Option<&str> {
        self.job_name.as_deref()
    }

    /// The job's id (the same as its [`JobHandle::id`]).
    pub fn job_id(&self) -> u64 {
        self.job_id
    }
}

impl fmt::Display for StuckJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.job_name {
            Some(name) => write!(f, "job '{name}' (#{}) on {}", self.job_id, self.thread_name),
            None => write!(f, "job #{} on {}", self.job_id, self.thread_name),
        }
    }
}

/// [`ThreadPool::stop_timeout`] ran out of time; says which jobs were still running.
///
/// The pool stays stopping (new work is refused, the remaining backlog still runs); a later
/// [`ThreadPool::stop`] waits for the rest and joins the threads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StopTimedOut {
    pool: String,
    stuck: Vec<StuckJob>,
    backlog: usize,
}

impl StopTimedOut {
    /// The jobs still running, one per busy worker.
    pub fn stuck(&self) -> &[StuckJob] {
        &self.stuck
    }

    /// Jobs still queued behind them.
    pub fn backlog(&self) -> usize {
        self.backlog
    }
}

impl fmt::Display for StopTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} did not stop in time: ", self.pool)?;
        for (i, job) in self.stuck.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{job}")?;
        }
        if self.stuck.is_empty() {
            f.write_str("no job running")?;
        }
        write!(f, " still running; {} queued", self.backlog)
    }
}

/// Configures a [`ThreadPool`].
///
/// ```
/// use std::time::Duration;
/// use filature::pool::ThreadPool;
///
/// let pool = ThreadPool::builder()
///     .min(1)
///     .max(8)
///     .name("db")
///     .idle_timeout(Some(Duration::from_secs(5)))
///     .build()
///     .unwrap();
/// assert_eq!(pool.name(), "db");
/// ```
#[derive(Debug, Clone)]
pub struct ThreadPoolBuilder {
    min: usize,
    max: usize,
    name: Option<String>,
    idle_timeout: Option<Duration>,
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        ThreadPoolBuilder {
            min: 5,
            max: 20,
            name: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }
}

impl ThreadPoolBuilder {
    /// Workers kept even when idle (default 5, as in Twisted).
    pub fn min(mut self, min: usize) -> Self {
        self.min = min;
        self
    }

    /// Most workers at once (default 20, as in Twisted).
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Names the pool: its threads are called `filature-pool-<name>-<n>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How long a worker above `min` may sit idle before it retires; `None`: never.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Builds the (not yet started) pool.
    pub fn build(self) -> Result<ThreadPool, PoolSizeError> {
        check_size(self.min, self.max)?;
        let id = NEXT_POOL_ID.fetch_add(1, StdOrdering::Relaxed);
        let shared = Shared {
            word: CachePadded::new(StateWord::new()),
            next_job_id: CachePadded::new(AtomicU64::new(1)),
            queue: JobQueue::new(),
            surplus: CachePadded::new(AtomicBool::new(false)),
            cancelled: AtomicUsize::new(0),
            id,
            name: self.name,
            idle_timeout: self.idle_timeout,
            state: Mutex::new(State {
                workers: 0,
                sleepers: Vec::new(),
                slots: Vec::new(),
                free_slots: Vec::new(),
                min: self.min,
                max: self.max,
                started: false,
                phase: Phase::Running,
                joining: false,
                handles: Vec::new(),
                next_serial: 1,
            }),
            done: Condvar::new(),
        };
        let shared = Arc::new(shared);
        #[cfg(not(loom))]
        registry::register(&shared);
        Ok(ThreadPool { shared })
    }
}

/// A pool of native worker threads fed from one queue.
///
/// Threads are created on demand up to `max`; before [`start`](ThreadPool::start) work waits in
/// the queue. A panicking job is caught and logged, never killing its worker. Dropping the pool
/// without [`stop`](ThreadPool::stop) begins a stop without waiting: queued work still runs.
///
/// ```
/// use filature::pool::ThreadPool;
/// use std::sync::mpsc;
///
/// let pool = ThreadPool::with_name("example", 0, 4).unwrap();
/// pool.start().unwrap();
/// let (tx, rx) = mpsc::channel();
/// pool.call_in_thread_with_callback(
///     move |result: Result<u32, filature::Failure>| tx.send(result.unwrap()).unwrap(),
///     || 6 * 7,
/// )
/// .unwrap();
/// assert_eq!(rx.recv().unwrap(), 42);
/// pool.stop();
/// assert!(pool.call_in_thread(|| ()).is_err());
/// ```
pub struct ThreadPool {
    shared: Arc<Shared>,
}

/// A queued job that can still be cancelled before a worker takes it.
///
/// Dropping the handle does not cancel the job.
///
/// ```
/// use filature::pool::ThreadPool;
///
/// let pool = ThreadPool::new(0, 1).unwrap(); // not started: jobs wait
/// let job = pool.call_in_thread_cancellable(|| unreachable!()).unwrap();
/// assert!(job.cancel());
/// assert!(!job.cancel());
/// pool.stop();
/// ```
pub struct JobHandle {
    shared: Arc<Shared>,
    job: std::sync::Arc<Tagged>,
}

impl JobHandle {
    /// Removes the job from the queue if no worker has taken it yet; true if it was removed (it
    /// will never run, and its closure is dropped here), false if it already started, finished or
    /// was cancelled.
    pub fn cancel(&self) -> bool {
        let mut run = self.job.run.lock();
        let Some(job) = run.take() else {
            return false;
        };
        // Counted while the cell is locked, so the worker that pops the empty cell (and
        // uncounts it) counts after this.
        self.shared.cancelled.fetch_add(1, StdOrdering::Relaxed);
        drop(run);
        // The closure's captures are dropped without any lock: their destructors may use the pool.
        drop(job);
        true
    }

    /// The job's id, unique within its pool (used in [`StuckJob`] reports).
    pub fn id(&self) -> u64 {
        self.job.id
    }
}

impl fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("id", &self.job.id)
            .finish()
    }
}

struct Shared {
    /// Hot: every submission makes two RMWs on it (see the module docs).
    word: CachePadded<StateWord>,
    /// Job ids: a tagged job draws one when it is submitted, a worker draws blocks of
    /// `ID_BLOCK` for the plain jobs it runs (so plain submissions never touch it).
    next_job_id: CachePadded<AtomicU64>,
    queue: JobQueue<Job>,
    /// `workers > max`, set under the lock; read by every worker after every job, so kept apart
    /// from the hot word.
    surplus: CachePadded<AtomicBool>,
    /// Cancelled jobs still in the queue (for `backlog`).
    cancelled: AtomicUsize,
    id: u64,
    name: Option<String>,
    idle_timeout: Option<Duration>,
    state: Mutex<State>,
    /// Notified when a worker retires while the pool is stopping, and when the phase becomes
    /// `Stopped`.
    done: Condvar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
    Stopped,
}

/// A queued job. Kept small (two words, like a bare `Box<dyn FnOnce>`): the queue's blocks of 31
/// slots then stay within the allocator's per-thread cache sizes.
enum Job {
    /// [`ThreadPool::call_in_thread`]: just the closure. Its id is drawn when a worker starts it.
    Plain(Box<dyn FnOnce() + Send>),
    /// A job with a [`JobHandle`] (and perhaps a name).
    Tagged(std::sync::Arc<Tagged>),
}

/// A job a [`JobHandle`] may cancel: whoever empties `run` first runs it (a worker) or drops it
/// (a cancel).
struct Tagged {
    id: u64,
    name: Option<Box<str>>,
    run: parking_lot::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Ids a worker may give to plain jobs: `next..end`, drawn from `Shared::next_job_id`.
#[derive(Default)]
struct IdBlock {
    next: u64,
    end: u64,
}

const ID_BLOCK: u64 = 1024;

/// The job a worker is running, readable by stats and `stop_timeout` reports without the pool's
/// lock. `id` is 0 while the worker is idle. A named job's name is set before its id, and both
/// are cleared together, under `name`'s lock.
#[derive(Default)]
struct Running {
    id: AtomicU64,
    name: parking_lot::Mutex<Option<Box<str>>>,
}

/// A live worker, as the lock holders see it.
struct Slot {
    thread_name: String,
    /// This worker's own condvar (waited on with `Shared::state`).
    cv: Arc<Condvar>,
    /// Set by the hand-off that pops this worker from `sleepers` (and counts it in `waking`);
    /// cleared by the worker.
    woken: bool,
    running: std::sync::Arc<Running>,
}

struct State {
    /// Live workers (those counted here have a slot and a thread).
    workers: usize,
    /// Sleeping, un-woken workers (slot indices), most recent last; its length is the word's
    /// `sleepers`.
    sleepers: Vec<usize>,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    min: usize,
    max: usize,
    started: bool,
    phase: Phase,
    /// A stopper has taken the handles and is joining them.
    joining: bool,
    handles: Vec<thread::JoinHandle<()>>,
    next_serial: u64,
}

impl State {
    fn slot(&mut self, index: usize) -> &mut Slot {
        self.slots[index].as_mut().expect("a live worker's slot")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn word(&self) -> &StateWord {
        &self.word
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("thread pool '{name}'"),
            None => format!("thread pool #{}", self.id),
        }
    }

    fn stopped(&self) -> Stopped {
        Stopped {
            what: self.describe(),
        }
    }

    /// The counters `ThreadPool::stats` and the snapshot report. Called with the lock.
    fn stats(&self, st: &State) -> PoolStats {
        let busy = st
            .slots
            .iter()
            .flatten()
            .filter(|slot| slot.running.id.load(StdOrdering::Relaxed) != 0)
            .count();
        let cancelled = self.cancelled.load(StdOrdering::Relaxed);
        PoolStats {
            workers: st.workers,
            busy,
            idle: st.workers - busy,
            backlog: self.queue.len().saturating_sub(cancelled),
        }
    }

    /// Brings `CAN_GROW` and `surplus` in line with `workers`, `min`/`max`, `started` and the
    /// phase. Called with the lock after any of them changes.
    fn sync_flags(&self, st: &State) {
        let can_grow = st.started && st.phase == Phase::Running && st.workers < st.max;
        if self.word().load().can_grow() != can_grow {
            self.word().set_flag(CAN_GROW, can_grow);
        }
        // Relaxed: a worker that sees it re-checks under the lock.
        self.surplus
            .store(st.workers > st.max, StdOrdering::Relaxed);
    }

    /// Pops the most recent sleeper and wakes it, counted as waking; false if no one sleeps.
    fn wake_one(&self, st: &mut State) -> bool {
        match st.sleepers.pop() {
            Some(index) => {
                self.word().add(WAKING_ONE.wrapping_sub(SLEEPERS_ONE));
                let slot = st.slot(index);
                slot.woken = true;
                slot.cv.notify_one();
                true
            }
            None => false,
        }
    }

    /// The hand-off (module docs): if work is queued and no worker is on its way, wake a sleeper
    /// or, failing that, start a worker if the pool may grow. Called with the lock.
    fn hand_off(this: &Arc<Self>, st: &mut State) {
        if !this.queue.outruns(this.word().load().waking()) {
            return;
        }
        if !this.wake_one(st) && st.started && st.phase == Phase::Running && st.workers < st.max {
            Shared::spawn_worker(this, st);
        }
    }

    /// Waits (with the lock: submitters never take it between enter and leave) until no submitter
    /// is between its enter and its leave. Called after `STOPPING` is set: from then on the queue
    /// holds every job that will ever be accepted.
    fn wait_for_submitters(&self) {
        while self.word().load().in_flight() > 0 {
            thread::yield_now();
        }
    }

    /// Starts one worker, counted as waking (see the module docs). Called with the lock.
    fn spawn_worker(this: &Arc<Self>, st: &mut State) -> bool {
        let serial = st.next_serial;
        let thread_name = match &this.name {
            Some(name) => format!("filature-pool-{name}-{serial}"),
            None => format!("filature-pool-{serial}"),
        };
        let cv = Arc::new(Condvar::new());
        let running = std::sync::Arc::new(Running::default());
        let slot = Slot {
            thread_name: thread_name.clone(),
            cv: cv.clone(),
            woken: false,
            running: running.clone(),
        };
        let index = match st.free_slots.pop() {
            Some(index) => {
                st.slots[index] = Some(slot);
                index
            }
            None => {
                st.slots.push(Some(slot));
                st.slots.len() - 1
            }
        };
        // Counted before the thread can run: it arrives with `waking -= 1`.
        this.word().add(WAKING_ONE);
        let shared = this.clone();
        let spawned = thread::Builder::new()
            .name(thread_name)
            // A job may use filature waits (creating a hub on the worker) or leave green threads
            // behind: the scope unwinds them before the worker's thread-locals go.
            .spawn(move || crate::hub::scope(|| worker_main(shared, index, cv, running)));
        match spawned {
            Ok(handle) => {
                st.next_serial += 1;
                st.workers += 1;
                this.sync_flags(st);
                // Forget handles of workers that already retired, so churn does not accumulate.
                st.handles.retain(|h| !thread::is_finished(h));
                st.handles.push(handle);
                true
            }
            Err(error) => {
                this.word().sub(WAKING_ONE);
                st.slots[index] = None;
                st.free_slots.push(index);
                tracing::error!(pool = %this.describe(), %error, "could not start a worker thread");
                false
            }
        }
    }

    /// Starts workers until `workers >= target` (capped at `max`).
    fn grow_to(this: &Arc<Self>, st: &mut State, target: usize) {
        let target = target.min(st.max);
        while st.workers < target {
            if !Shared::spawn_worker(this, st) {
                break;
            }
        }
    }

    /// The number of workers the queue needs right now, on top of those already on their way.
    fn backlog_target(&self, st: &State) -> usize {
        let on_their_way = self.word().load().waking() as usize + st.sleepers.len();
        let unserved = self.queue.len().saturating_sub(on_their_way);
        (st.workers + unserved).max(st.min)
    }

    /// Begins a stop (under the lock): refuse new work, make sure the backlog has workers, wake
    /// every sleeper. No-op unless the pool is running.
    fn begin_stop(this: &Arc<Self>, st: &mut State) {
        if st.phase != Phase::Running {
            return;
        }
        st.phase = Phase::Stopping;
        this.word().set_flag(STOPPING, true);
        this.sync_flags(st);
        this.wait_for_submitters();
        // The queue now holds every job that will ever run. A pool that never started gets the
        // workers its backlog needs; so does a started one left without workers (a submitter's
        // hand-off may have lost the race for the lock to this stop, and cannot start one now).
        if !st.started || st.workers == 0 {
            st.started = true;
            let target = if this.queue.is_empty() {
                0
            } else {
                this.backlog_target(st)
            };
            Shared::grow_to(this, st, target);
        }
        while this.wake_one(st) {}
    }

    fn submit(this: &Arc<Self>, job: Job) -> Result<(), Stopped> {
        // Enter.
        if this.word().add(IN_FLIGHT_ONE).stopping() {
            this.word().sub(IN_FLIGHT_ONE);
            return Err(this.stopped());
        }
        this.queue.push(job);
        // Leave.
        let seen = this.word().sub(IN_FLIGHT_ONE);
        if seen.may_hand_off() && this.queue.outruns(seen.waking()) {
            let mut st = this.lock();
            Shared::hand_off(this, &mut st);
        }
        Ok(())
    }

    /// Runs a popped job (unless it was cancelled), recording it in `running`.
    fn run_job(&self, job: Job, running: &Running, ids: &mut IdBlock) {
        let (id, run, tagged) = match job {
            Job::Plain(run) => {
                if ids.next == ids.end {
                    // Relaxed: only uniqueness matters.
                    ids.next = self.next_job_id.fetch_add(ID_BLOCK, StdOrdering::Relaxed);
                    ids.end = ids.next + ID_BLOCK;
                }
                ids.next += 1;
                (ids.next - 1, run, None)
            }
            Job::Tagged(tagged) => {
                let run = tagged.run.lock().take();
                match run {
                    Some(run) => (tagged.id, run, Some(tagged)),
                    None => {
                        self.cancelled.fetch_sub(1, StdOrdering::Relaxed);
                        return;
                    }
                }
            }
        };
        let name = tagged.as_ref().and_then(|t| t.name.as_deref());
        // Relaxed: read by stats and reports, which are snapshots.
        match name {
            None => running.id.store(id, StdOrdering::Relaxed),
            Some(name) => {
                let mut slot = running.name.lock();
                *slot = Some(name.into());
                running.id.store(id, StdOrdering::Relaxed);
            }
        }
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(run)) {
            tracing::error!(
                pool = %self.describe(),
                job = id,
                name = name.unwrap_or(""),
                panic = panic_message(&*payload),
                "thread pool job panicked; the worker carries on"
            );
        }
        match name {
            None => running.id.store(0, StdOrdering::Relaxed),
            Some(_) => {
                let mut slot = running.name.lock();
                *slot = None;
                running.id.store(0, StdOrdering::Relaxed);
            }
        }
    }
}

fn worker_main(
    shared: Arc<Shared>,
    index: usize,
    cv: Arc<Condvar>,
    running: std::sync::Arc<Running>,
) {
    CURRENT_POOL.with(|c| c.set(shared.id));
    // Started counted as waking (see `spawn_worker`).
    let mut waking = true;
    let mut spun = false;
    let mut ids = IdBlock::default();
    let mut st = loop {
        // Step 1: the shrink rule.
        if shared.surplus.load(StdOrdering::Relaxed) {
            let st = shared.lock();
            if st.workers > st.max {
                break st;
            }
        }
        // Step 2: run queued work.
        if let Some(job) = shared.queue.pop() {
            if waking {
                waking = false;
                // Arrive. The last one on its way passes the baton if work is left behind.
                let now = shared.word().sub(WAKING_ONE).minus(WAKING_ONE);
                if now.may_hand_off() && shared.queue.outruns(now.waking()) {
                    let mut st = shared.lock();
                    Shared::hand_off(&shared, &mut st);
                }
            }
            spun = false;
            shared.run_job(job, &running, &mut ids);
            continue;
        }
        // Step 3: spin a few microseconds, counted as waking.
        if !spun {
            spun = true;
            if !waking {
                waking = true;
                shared.word().add(WAKING_ONE);
            }
            shared.queue.spin_until_work();
            continue;
        }
        // Step 4: announce sleep, re-check, sleep.
        let mut st = shared.lock();
        if st.workers > st.max {
            break st;
        }
        debug_assert!(waking);
        let seen = shared.word().add(SLEEPERS_ONE.wrapping_sub(WAKING_ONE));
        if seen.stopping() || !shared.queue.is_empty() {
            // Undo: still waking.
            shared.word().add(WAKING_ONE.wrapping_sub(SLEEPERS_ONE));
            if seen.stopping() {
                // In this order: once no submitter let in before `STOPPING` is still pushing,
                // an empty queue stays empty.
                if shared.word().load().in_flight() == 0 && shared.queue.is_empty() {
                    break st;
                }
                // A submitter let in before the stop is still pushing (or a job appeared).
                drop(st);
                thread::yield_now();
            }
            continue;
        }
        st.sleepers.push(index);
        waking = false;
        let mut retire = false;
        loop {
            let timeout = if st.workers > st.min {
                shared.idle_timeout
            } else {
                None
            };
            match timeout {
                Some(timeout) => {
                    let (guard, timed_out) = cv.wait_timeout(st, timeout);
                    st = guard;
                    if st.slot(index).woken {
                        break;
                    }
                    if timed_out && st.workers > st.min {
                        st.sleepers.retain(|&i| i != index);
                        shared.word().sub(SLEEPERS_ONE);
                        retire = true;
                        break;
                    }
                }
                None => {
                    st = cv.wait(st);
                    if st.slot(index).woken {
                        break;
                    }
                }
            }
        }
        if retire {
            break st;
        }
        // Woken: the hand-off counted this worker as waking.
        st.slot(index).woken = false;
        waking = true;
        spun = false;
    };
    // Retire.
    if waking {
        shared.word().sub(WAKING_ONE);
    }
    st.workers -= 1;
    st.slots[index] = None;
    st.free_slots.push(index);
    shared.sync_flags(&st);
    Shared::hand_off(&shared, &mut st);
    if st.phase != Phase::Running {
        shared.done.notify_all();
    }
    drop(st);
    CURRENT_POOL.with(|c| c.set(0));
}
impl ThreadPool {
    /// A pool with `min..=max` workers (not started). Errors unless `min <= max` and `max >= 1`.
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    ///
    /// assert!(ThreadPool::new(3, 10).is_ok());
    /// assert!(ThreadPool::new(4, 2).is_err());
    /// assert!(ThreadPool::new(0, 0).is_err());
    /// ```
    pub fn new(min: usize, max: usize) -> Result<ThreadPool, PoolSizeError> {
        ThreadPool::builder().min(min).max(max).build()
    }

    /// A named pool: its threads are called `filature-pool-<name>-<n>`.
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::with_name("db", 1, 1).unwrap();
    /// pool.start().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.call_in_thread(move || {
    ///     tx.send(std::thread::current().name().unwrap().to_owned()).unwrap()
    /// })
    /// .unwrap();
    /// assert_eq!(rx.recv().unwrap(), "filature-pool-db-1");
    /// pool.stop();
    /// ```
    pub fn with_name(
        name: impl Into<String>,
        min: usize,
        max: usize,
    ) -> Result<ThreadPool, PoolSizeError> {
        ThreadPool::builder().min(min).max(max).name(name).build()
    }

    /// A builder (defaults: min 5, max 20, unnamed, idle timeout [`DEFAULT_IDLE_TIMEOUT`]).
    ///
    /// ```
    /// let pool = filature::pool::ThreadPool::builder().max(2).min(0).build().unwrap();
    /// assert_eq!(pool.stats().workers, 0);
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// The pool's name, or `""` if it has none.
    ///
    /// ```
    /// assert_eq!(filature::pool::ThreadPool::new(1, 2).unwrap().name(), "");
    /// ```
    pub fn name(&self) -> &str {
        self.shared.name.as_deref().unwrap_or("")
    }

    /// Starts `min` workers at once (more, up to `max`, if work is already queued). A second start
    /// is a no-op; starting a stopped pool is an error.
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(3, 10).unwrap();
    /// assert_eq!(pool.stats().workers, 0);
    /// pool.start().unwrap();
    /// assert_eq!(pool.stats().workers, 3);
    /// pool.stop();
    /// assert!(pool.start().is_err());
    /// ```
    pub fn start(&self) -> Result<(), Stopped> {
        let mut st = self.shared.lock();
        if st.phase != Phase::Running {
            return Err(self.shared.stopped());
        }
        if !st.started {
            st.started = true;
            self.shared.sync_flags(&st);
            let target = self.shared.backlog_target(&st);
            Shared::grow_to(&self.shared, &mut st, target);
        }
        Ok(())
    }

    /// Runs `f` on a worker. A panic in `f` is caught and logged; the worker survives.
    ///
    /// Errors with [`Stopped`] once [`stop`](ThreadPool::stop) has been called (the job is not run).
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1, 2).unwrap();
    /// pool.start().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.call_in_thread(move || tx.send("hello").unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), "hello");
    /// pool.stop();
    /// ```
    pub fn call_in_thread<F>(&self, f: F) -> Result<(), Stopped>
    where
        F: FnOnce() + Send + 'static,
    {
        Shared::submit(&self.shared, Job::Plain(crate::hub::box_call(f)))
    }

    /// [`call_in_thread`](ThreadPool::call_in_thread) for an already boxed job (no second box).
    /// On `Err` the job has been dropped, on this thread, before this returns.
    pub(crate) fn submit_boxed(&self, job: Box<dyn FnOnce() + Send>) -> Result<(), Stopped> {
        Shared::submit(&self.shared, Job::Plain(job))
    }

    /// [`call_in_thread_cancellable`](ThreadPool::call_in_thread_cancellable) for a boxed job.
    pub(crate) fn submit_boxed_cancellable(
        &self,
        job: Box<dyn FnOnce() + Send>,
    ) -> Result<JobHandle, Stopped> {
        self.submit_cancellable(None, job)
    }

    /// Queues `job` in a cell that the returned handle can empty.
    fn submit_cancellable(
        &self,
        name: Option<Box<str>>,
        job: Box<dyn FnOnce() + Send>,
    ) -> Result<JobHandle, Stopped> {
        let job = std::sync::Arc::new(Tagged {
            // Relaxed: only uniqueness matters.
            id: self.shared.next_job_id.fetch_add(1, StdOrdering::Relaxed),
            name,
            run: parking_lot::Mutex::new(Some(job)),
        });
        Shared::submit(&self.shared, Job::Tagged(job.clone()))?;
        Ok(JobHandle {
            shared: self.shared.clone(),
            job,
        })
    }

    /// Like [`call_in_thread`](ThreadPool::call_in_thread), but returns a [`JobHandle`] that can
    /// cancel the job while it is still queued.
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(0, 1).unwrap();
    /// let job = pool.call_in_thread_cancellable(|| panic!("never runs")).unwrap();
    /// assert!(job.cancel());
    /// pool.start().unwrap();
    /// pool.stop();
    /// ```
    pub fn call_in_thread_cancellable<F>(&self, f: F) -> Result<JobHandle, Stopped>
    where
        F: FnOnce() + Send + 'static,
    {
        self.submit_cancellable(None, crate::hub::box_call(f))
    }

    /// Runs `f` on a worker under a name that [`stop_timeout`](ThreadPool::stop_timeout) reports
    /// if the job is stuck (and that panic logs mention). Returns a cancellable [`JobHandle`].
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1, 1).unwrap();
    /// pool.start().unwrap();
    /// let job = pool.call_in_thread_named("flush cache", || ()).unwrap();
    /// assert!(job.id() > 0);
    /// pool.stop();
    /// ```
    pub fn call_in_thread_named<F>(
        &self,
        name: impl Into<String>,
        f: F,
    ) -> Result<JobHandle, Stopped>
    where
        F: FnOnce() + Send + 'static,
    {
        let name: Box<str> = name.into().into_boxed_str();
        self.submit_cancellable(Some(name), crate::hub::box_call(f))
    }

    /// Runs `f` on a worker, then `on_result` on the same worker with `Ok(value)` or
    /// `Err(failure)` (a panic in `f`). A panic inside `on_result` is logged; the worker survives.
    ///
    /// The returned [`JobHandle`] can cancel the job while it is queued; then neither `f` nor
    /// `on_result` runs (both are dropped), so whoever waits on `on_result` must be told by the
    /// canceller.
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    /// use std::sync::mpsc;
    ///
    /// let pool = ThreadPool::new(1, 1).unwrap();
    /// pool.start().unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// pool.call_in_thread_with_callback(
    ///     move |r: Result<(), filature::Failure>| tx.send(r.unwrap_err().is_panic()).unwrap(),
    ///     || panic!("boom"),
    /// )
    /// .unwrap();
    /// assert!(rx.recv().unwrap());
    /// pool.stop();
    /// ```
    pub fn call_in_thread_with_callback<T, F, C>(
        &self,
        on_result: C,
        f: F,
    ) -> Result<JobHandle, Stopped>
    where
        T: 'static,
        F: FnOnce() -> T + Send + 'static,
        C: FnOnce(Result<T, Failure>) + Send + 'static,
    {
        let job = move || {
            let result = Failure::catch(f);
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || on_result(result))) {
                tracing::error!(
                    worker = std::thread::current().name().unwrap_or(""),
                    panic = panic_message(&*payload),
                    "thread pool on_result callback panicked; the worker carries on"
                );
            }
        };
        self.submit_cancellable(None, Box::new(job))
    }

    /// True if the calling thread is one of this pool's workers (see also
    /// [`is_current_thread_worker`], which asks about any pool).
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    /// use std::sync::Arc;
    ///
    /// let pool = Arc::new(ThreadPool::new(1, 1).unwrap());
    /// let other = ThreadPool::new(1, 1).unwrap();
    /// assert!(!pool.is_current_thread_in_pool());
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let p = pool.clone();
    /// other.call_in_thread(move || tx.send(p.is_current_thread_in_pool()).unwrap()).unwrap();
    /// other.start().unwrap();
    /// assert!(!rx.recv().unwrap()); // a worker, but of `other`
    /// other.stop();
    /// pool.stop();
    /// ```
    pub fn is_current_thread_in_pool(&self) -> bool {
        CURRENT_POOL.with(|c| c.get()) == self.shared.id
    }

    /// Changes the pool's size. Growing starts workers at once (at least `min`, and as many as
    /// the backlog needs up to `max`); shrinking takes effect as workers finish their current job
    /// or wake, without waiting for the backlog to drain.
    ///
    /// ```
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1, 2).unwrap();
    /// pool.start().unwrap();
    /// pool.adjust_pool_size(4, 8).unwrap();
    /// assert_eq!(pool.stats().workers, 4);
    /// assert!(pool.adjust_pool_size(3, 1).is_err());
    /// pool.stop();
    /// ```
    pub fn adjust_pool_size(&self, min: usize, max: usize) -> Result<(), PoolSizeError> {
        check_size(min, max)?;
        let mut st = self.shared.lock();
        let shared = &self.shared;
        st.min = min;
        st.max = max;
        shared.sync_flags(&st);
        if st.phase != Phase::Running || !st.started {
            return Ok(());
        }
        // Shrink: wake surplus sleepers; they see `workers > max` and retire.
        let surplus = st.workers.saturating_sub(max);
        for _ in 0..surplus {
            if !shared.wake_one(&mut st) {
                break;
            }
        }
        // Grow: serve the backlog, then bring the pool up to `min`.
        while shared.queue.outruns(shared.word().load().waking()) {
            if !shared.wake_one(&mut st) {
                break;
            }
        }
        let target = shared.backlog_target(&st);
        Shared::grow_to(shared, &mut st, target);
        // Sleepers that began waiting while `workers <= min` wait without a timeout; nudge them so
        // they re-wait with the idle timeout if they are now above `min`.
        if st.workers > st.min {
            for &index in &st.sleepers {
                if let Some(slot) = &st.slots[index] {
                    slot.cv.notify_one();
                }
            }
        }
        Ok(())
    }

    /// The current `(min, max)` (as last set by [`new`](ThreadPool::new) or
    /// [`adjust_pool_size`](ThreadPool::adjust_pool_size)).
    ///
    /// ```
    /// let pool = filature::pool::ThreadPool::new(1, 4).unwrap();
    /// assert_eq!(pool.limits(), (1, 4));
    /// ```
    pub fn limits(&self) -> (usize, usize) {
        let st = self.shared.lock();
        (st.min, st.max)
    }

    /// Counters read under one lock: `workers == busy + idle` always holds.
    ///
    /// ```
    /// let pool = filature::pool::ThreadPool::new(0, 5).unwrap();
    /// pool.call_in_thread(|| ()).unwrap();
    /// assert_eq!(pool.stats().backlog, 1); // not started: work waits
    /// pool.stop(); // runs it
    /// assert_eq!(pool.stats().backlog, 0);
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.stats(&self.shared.lock())
    }

    /// Stops the pool: refuses new work, runs everything queued (starting workers if the pool
    /// never started), and joins every thread. A second stop is a no-op.
    ///
    /// Called from one of this pool's own workers, it waits for the other workers and cannot
    /// join the calling thread, which exits once its job returns.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(0, 2).unwrap();
    /// let ran = Arc::new(AtomicUsize::new(0));
    /// for _ in 0..10 {
    ///     let ran = ran.clone();
    ///     pool.call_in_thread(move || { ran.fetch_add(1, Ordering::Relaxed); }).unwrap();
    /// }
    /// pool.stop();
    /// assert_eq!(ran.load(Ordering::Relaxed), 10);
    /// pool.stop(); // no-op
    /// ```
    pub fn stop(&self) {
        // Without a deadline the wait only ends once every worker has retired.
        let _ = self.stop_until(None);
    }

    /// Like [`stop`](ThreadPool::stop), but gives up after about `timeout`, naming the jobs still
    /// running. The pool then stays stopping (queued work still runs); call `stop` again to wait
    /// for the rest. A `timeout` too large to add to the clock (`Duration::MAX`) is no limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use filature::pool::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1, 1).unwrap();
    /// pool.start().unwrap();
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// pool.call_in_thread_named("waits for the gate", move || { let _ = gate.recv(); }).unwrap();
    /// # while pool.stats().busy == 0 { std::thread::yield_now(); }
    /// let err = pool.stop_timeout(Duration::from_millis(50)).unwrap_err();
    /// assert_eq!(err.stuck()[0].job_name(), Some("waits for the gate"));
    /// drop(release);
    /// pool.stop();
    /// ```
    pub fn stop_timeout(&self, timeout: Duration) -> Result<(), StopTimedOut> {
        self.stop_until(deadline_after(timeout))
    }

    fn stop_until(&self, deadline: Option<Instant>) -> Result<(), StopTimedOut> {
        let shared = &self.shared;
        let me = thread::current().id();
        let on_own_worker = CURRENT_POOL.with(|c| c.get()) == shared.id;
        let mut st = shared.lock();
        Shared::begin_stop(shared, &mut st);
        let own = usize::from(on_own_worker);
        loop {
            if st.phase == Phase::Stopped {
                return Ok(());
            }
            if st.workers <= own && !st.joining {
                st.joining = true;
                let handles = std::mem::take(&mut st.handles);
                drop(st);
                for handle in handles {
                    if handle.thread().id() != me {
                        let _ = handle.join();
                    }
                }
                st = shared.lock();
                st.phase = Phase::Stopped;
                shared.done.notify_all();
                return Ok(());
            }
            st = match deadline {
                None => shared.done.wait(st),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        let stuck = st
                            .slots
                            .iter()
                            .flatten()
                            .filter_map(|slot| {
                                let name = slot.running.name.lock();
                                match slot.running.id.load(StdOrdering::Relaxed) {
                                    0 => None,
                                    id => Some(StuckJob {
                                        thread_name: slot.thread_name.clone(),
                                        job_name: name.as_deref().map(str::to_owned),
                                        job_id: id,
                                    }),
                                }
                            })
                            .collect();
                        let error = StopTimedOut {
                            pool: shared.describe(),
                            stuck,
                            backlog: shared.stats(&st).backlog,
                        };
                        tracing::warn!(%error, "thread pool stop timed out");
                        return Err(error);
                    }
                    shared.done.wait_timeout(st, deadline - now).0
                }
            };
        }
    }
}

/// Every pool built in this process, for [`crate::hub::snapshot`]: a `Weak` per pool, entered
/// when it is built (cold), pruned of dead entries whenever the list has doubled. A pool is listed
/// while its shared half lives (the `ThreadPool` or one of its workers holds it) and it has not
/// finished stopping. The registry lock is never held while a pool's lock is taken: `all` copies
/// the live pools out first.
#[cfg(not(loom))]
pub(crate) mod registry {
    use std::sync::{Arc, Mutex, Weak};

    use super::{Phase, PoolStats, Shared};

    static POOLS: Mutex<(Vec<Weak<Shared>>, usize)> = Mutex::new((Vec::new(), MIN_PRUNE_AT));
    const MIN_PRUNE_AT: usize = 16;

    fn lock() -> std::sync::MutexGuard<'static, (Vec<Weak<Shared>>, usize)> {
        POOLS.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn register(shared: &Arc<Shared>) {
        let mut g = lock();
        let (pools, prune_at) = &mut *g;
        if pools.len() >= *prune_at {
            pools.retain(|w| w.strong_count() > 0);
            *prune_at = (pools.len() * 2).max(MIN_PRUNE_AT);
        }
        pools.push(Arc::downgrade(shared));
    }

    /// Name, whether it is stopping, and counters of every pool that has not stopped, in the
    /// order they were built.
    pub(crate) fn all() -> Vec<(String, bool, PoolStats)> {
        let live: Vec<Arc<Shared>> = lock().0.iter().filter_map(Weak::upgrade).collect();
        live.iter()
            .filter_map(|p| {
                let st = p.lock();
                let stats = p.stats(&st);
                let stopping = match st.phase {
                    Phase::Running => false,
                    Phase::Stopping => true,
                    Phase::Stopped => return None,
                };
                Some((p.name.clone().unwrap_or_default(), stopping, stats))
            })
            .collect()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // Begin a stop without waiting: refuse new work, let the workers drain the queue and exit.
        let shared = &self.shared;
        let mut st = shared.lock();
        Shared::begin_stop(shared, &mut st);
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// The queue's 31-slot blocks must stay within glibc's per-thread cache (1,032 bytes): a
    /// block is 8 bytes plus 31 slots of the job and an 8-byte state (see bench/README.md).
    #[test]
    fn a_queued_job_is_two_words() {
        assert_eq!(std::mem::size_of::<super::Job>(), 16);
    }
}
