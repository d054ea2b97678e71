//! `ThreadPool`: native worker threads fed from one queue (Twisted's `ThreadPool`, its traps fixed).
//!
//! # State under the lock
//!
//! Everything a decision depends on lives in one [`State`] behind one mutex (`Shared::state`):
//! the job queue, the counters `workers`/`busy`/`idle`, the stack of sleeping workers, the number
//! of workers that have been told to come and look at the queue (`waking`), `min`/`max`, the
//! life-cycle phase and the workers' join handles. The only atomic is a copy of the queue length
//! that spinning workers poll (step 5); it decides nothing. So every snapshot taken under the lock
//! is consistent: `workers == busy + idle` at every moment, and
//! [`ThreadPool::stats`] reads all four numbers under that one lock.
//!
//! # Worker life cycle
//!
//! A worker is created (under the lock) already counted: `workers += 1`, `idle += 1`, and it is
//! *waking* (`waking += 1`, its slot's `woken` flag set): it promises to look at the queue before it
//! ever sleeps. Its loop, always holding the lock between steps:
//!
//! 1. if it was woken, it clears its flag and `waking -= 1`;
//! 2. if `workers > max`, it retires (the shrink rule, below);
//! 3. if the queue has a job, it takes it (`busy += 1`, `idle -= 1`, its slot records the job's id
//!    and name), drops the lock, runs it under `catch_unwind`, re-takes the lock, undoes the
//!    counters and goes to 2;
//! 4. if the pool is stopping, it retires (the queue is empty: the stop protocol has drained it);
//! 5. otherwise, the first time in this idle spell, it marks itself waking (`waking += 1`, `woken`
//!    set), drops the lock, spins a few microseconds watching a lock-free copy of the queue length
//!    ([`QueueHint`], only a hint), re-takes the lock and goes to 1. This keeps a busy pool off
//!    the futex: a submitter counts the spinner as on its way and neither wakes nor starts anyone;
//! 6. the second time, it pushes itself on the `sleepers` stack and waits on its *own* condvar
//!    until a submitter pops it and sets its `woken` flag (spurious wake-ups go back to sleep);
//!    then 1. While `workers > min` the wait has the idle timeout; a worker that times out
//!    un-woken removes itself from `sleepers` and retires.
//!
//! Retiring is `workers -= 1`, `idle -= 1`, freeing the slot, and two hand-offs: if work is still
//! queued that no waking worker will take, wake a sleeper (so a retirement never strands a job),
//! and if the pool is stopping, notify the stopper.
//!
//! # The wake rule (no lost wake-ups, no thundering herd)
//!
//! A submitter pushes the job and, only if `queue.len() > waking`, wakes the most recently slept
//! worker (LIFO: the hot one; the cold ones at the bottom retire on the idle timeout) or, when no
//! one sleeps and `workers < max`, starts a new worker. The invariant, true whenever the lock is
//! free: *if some worker sleeps, then `queue.len() <= waking`*, i.e. every queued job has a worker
//! on its way. Each step keeps it: a push that breaks it wakes someone; a woken worker arriving
//! decrements `waking` and pops one job; a retiring worker re-establishes it by the hand-off. So no
//! worker sleeps while work is queued that it is allowed to run (`tests/loom_pool.rs` checks this).
//!
//! # The shrink rule
//!
//! Twisted shrinks by queueing "quit" markers *behind* the backlog, so after `10 → 2` under load
//! all ten threads keep running until the backlog drains. Here `max` is read at step 2 each time a
//! worker finishes a job or wakes: as soon as `workers > max`, the worker retires instead of taking
//! the next job, and [`ThreadPool::adjust_pool_size`] wakes surplus sleepers so that they retire at
//! once. Concurrency therefore falls to the new `max` as the running jobs end.
//!
//! # Stop protocol
//!
//! `stop` moves the phase `Running → Stopping` (from then on submissions fail with [`Stopped`]),
//! starts the workers the backlog needs if the pool never started, and wakes every sleeper. Workers
//! keep taking jobs until the queue is empty, then retire. The stopper waits on `Shared::done`
//! until `workers == 0` (or the deadline of [`ThreadPool::stop_timeout`]: then it reports the
//! still-running jobs and leaves the phase at `Stopping`, so a later stop can finish the job). The
//! first stopper to see `workers == 0` takes the join handles, joins them without the lock, and
//! sets the phase to `Stopped`; every other stop waits for that, and a stop after it is a no-op.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering as StdOrdering};
use std::time::{Duration, Instant};

use super::lock::{Condvar, Mutex, MutexGuard, QueueHint};
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
            id,
            name: self.name,
            idle_timeout: self.idle_timeout,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: 0,
                busy: 0,
                idle: 0,
                waking: 0,
                sleepers: Vec::new(),
                slots: Vec::new(),
                free_slots: Vec::new(),
                min: self.min,
                max: self.max,
                started: false,
                phase: Phase::Running,
                joining: false,
                handles: Vec::new(),
                next_job_id: 1,
                next_serial: 1,
            }),
            done: Condvar::new(),
            queued: QueueHint::new(),
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
    id: u64,
}

impl JobHandle {
    /// Removes the job from the queue if no worker has taken it yet; true if it was removed (it
    /// will never run, and its closure is dropped here), false if it already started, finished or
    /// was cancelled. Costs a scan of the queue.
    pub fn cancel(&self) -> bool {
        let mut st = self.shared.lock();
        let Some(at) = st.queue.iter().position(|job| job.id == self.id) else {
            return false;
        };
        let job = st.queue.remove(at);
        self.shared.queued.set(st.queue.len());
        drop(st);
        // The closure's captures are dropped without the lock: their destructors may use the pool.
        drop(job);
        true
    }

    /// The job's id, unique within its pool (used in [`StuckJob`] reports).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle").field("id", &self.id).finish()
    }
}

struct Shared {
    id: u64,
    name: Option<String>,
    idle_timeout: Option<Duration>,
    state: Mutex<State>,
    /// Notified when a worker retires while the pool is stopping, and when the phase becomes
    /// `Stopped`.
    done: Condvar,
    /// `queue.len()`, published under the lock for workers spinning before they sleep.
    queued: QueueHint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping,
    Stopped,
}

struct Job {
    id: u64,
    name: Option<Box<str>>,
    run: Box<dyn FnOnce() + Send>,
}

/// What a worker is doing, kept for `stop_timeout` reports.
struct Slot {
    thread_name: String,
    /// This worker's own condvar (waited on with `Shared::state`).
    cv: Arc<Condvar>,
    /// Set by whoever pops this worker from `sleepers` (counted in `waking`); cleared by the worker.
    woken: bool,
    /// The job being run: its id and name.
    running: Option<(u64, Option<Box<str>>)>,
}

struct State {
    queue: VecDeque<Job>,
    workers: usize,
    busy: usize,
    idle: usize,
    /// Workers woken or just started that have not yet come back to look at the queue.
    waking: usize,
    /// Sleeping, un-woken workers (slot indices), most recent last.
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
    next_job_id: u64,
    next_serial: u64,
}

impl State {
    fn slot(&mut self, index: usize) -> &mut Slot {
        self.slots[index].as_mut().expect("a live worker's slot")
    }

    /// Wakes sleepers until every queued job has a worker on its way (or no one sleeps).
    fn wake_for_backlog(&mut self) {
        while self.queue.len() > self.waking {
            if !self.wake_one() {
                break;
            }
        }
    }

    /// Pops the most recent sleeper and wakes it; false if no one sleeps.
    fn wake_one(&mut self) -> bool {
        match self.sleepers.pop() {
            Some(index) => {
                self.waking += 1;
                let slot = self.slot(index);
                slot.woken = true;
                slot.cv.notify_one();
                true
            }
            None => false,
        }
    }
}

impl State {
    /// The counters `ThreadPool::stats` and the snapshot report.
    fn stats(&self) -> PoolStats {
        PoolStats {
            workers: self.workers,
            busy: self.busy,
            idle: self.idle,
            backlog: self.queue.len(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
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

    /// Starts one worker, counted as idle and waking (see the module docs). Called with the lock.
    fn spawn_worker(this: &Arc<Self>, st: &mut State) -> bool {
        let serial = st.next_serial;
        let thread_name = match &this.name {
            Some(name) => format!("filature-pool-{name}-{serial}"),
            None => format!("filature-pool-{serial}"),
        };
        let cv = Arc::new(Condvar::new());
        let slot = Slot {
            thread_name: thread_name.clone(),
            cv: cv.clone(),
            woken: true,
            running: None,
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
        let shared = this.clone();
        let spawned = thread::Builder::new()
            .name(thread_name)
            // A job may use filature waits (creating a hub on the worker) or leave green threads
            // behind: the scope unwinds them before the worker's thread-locals go.
            .spawn(move || crate::hub::scope(|| worker_main(shared, index, cv)));
        match spawned {
            Ok(handle) => {
                st.next_serial += 1;
                st.workers += 1;
                st.idle += 1;
                st.waking += 1;
                // Forget handles of workers that already retired, so churn does not accumulate.
                st.handles.retain(|h| !thread::is_finished(h));
                st.handles.push(handle);
                true
            }
            Err(error) => {
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
    fn backlog_target(st: &State) -> usize {
        let unserved = st.queue.len().saturating_sub(st.waking + st.sleepers.len());
        (st.workers + unserved).max(st.min)
    }

    fn submit(
        this: &Arc<Self>,
        name: Option<Box<str>>,
        run: Box<dyn FnOnce() + Send>,
    ) -> Result<u64, Stopped> {
        let mut st = this.lock();
        if st.phase != Phase::Running {
            return Err(this.stopped());
        }
        let id = st.next_job_id;
        st.next_job_id += 1;
        st.queue.push_back(Job { id, name, run });
        this.queued.set(st.queue.len());
        if st.queue.len() > st.waking && !st.wake_one() && st.started && st.workers < st.max {
            Shared::spawn_worker(this, &mut st);
        }
        Ok(id)
    }

    fn run_job(&self, job: Job) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(job.run)) {
            tracing::error!(
                pool = %self.describe(),
                job = job.id,
                name = job.name.as_deref().unwrap_or(""),
                panic = panic_message(&*payload),
                "thread pool job panicked; the worker carries on"
            );
        }
    }
}

fn worker_main(shared: Arc<Shared>, index: usize, cv: Arc<Condvar>) {
    CURRENT_POOL.with(|c| c.set(shared.id));
    let mut st = shared.lock();
    let mut spun = false;
    loop {
        // Step 1: a woken (or newly started) worker has now arrived.
        if std::mem::replace(&mut st.slot(index).woken, false) {
            st.waking -= 1;
        }
        // Step 2: the shrink rule.
        if st.workers > st.max {
            break;
        }
        // Step 3: run queued work.
        if let Some(job) = st.queue.pop_front() {
            shared.queued.set(st.queue.len());
            spun = false;
            st.busy += 1;
            st.idle -= 1;
            // Named jobs pay for a copy of the name; unnamed ones for nothing.
            st.slot(index).running = Some((job.id, job.name.clone()));
            drop(st);
            shared.run_job(job);
            st = shared.lock();
            st.busy -= 1;
            st.idle += 1;
            st.slot(index).running = None;
            continue;
        }
        // Step 4: stopping and drained.
        if st.phase != Phase::Running {
            break;
        }
        // Step 5: before sleeping, spin a few microseconds unlocked, counted as waking (so that a
        // submitter neither wakes nor starts another worker for the job this one will take).
        if !spun {
            spun = true;
            st.slot(index).woken = true;
            st.waking += 1;
            drop(st);
            shared.queued.spin_until_work();
            st = shared.lock();
            continue;
        }
        // Step 6: sleep until woken; above `min`, retire after the idle timeout.
        st.sleepers.push(index);
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
            break;
        }
    }
    // Retire.
    st.workers -= 1;
    st.idle -= 1;
    st.slots[index] = None;
    st.free_slots.push(index);
    st.wake_for_backlog();
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
            let target = Shared::backlog_target(&st);
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
        Shared::submit(&self.shared, None, crate::hub::box_call(f)).map(drop)
    }

    /// [`call_in_thread`](ThreadPool::call_in_thread) for an already boxed job (no second box).
    /// On `Err` the job has been dropped, on this thread, before this returns.
    pub(crate) fn submit_boxed(&self, job: Box<dyn FnOnce() + Send>) -> Result<(), Stopped> {
        Shared::submit(&self.shared, None, job).map(drop)
    }

    /// [`call_in_thread_cancellable`](ThreadPool::call_in_thread_cancellable) for a boxed job.
    pub(crate) fn submit_boxed_cancellable(
        &self,
        job: Box<dyn FnOnce() + Send>,
    ) -> Result<JobHandle, Stopped> {
        let id = Shared::submit(&self.shared, None, job)?;
        Ok(JobHandle {
            shared: self.shared.clone(),
            id,
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
        let id = Shared::submit(&self.shared, None, crate::hub::box_call(f))?;
        Ok(JobHandle {
            shared: self.shared.clone(),
            id,
        })
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
        let id = Shared::submit(&self.shared, Some(name), crate::hub::box_call(f))?;
        Ok(JobHandle {
            shared: self.shared.clone(),
            id,
        })
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
        let id = Shared::submit(&self.shared, None, Box::new(job))?;
        Ok(JobHandle {
            shared: self.shared.clone(),
            id,
        })
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
        st.min = min;
        st.max = max;
        if st.phase != Phase::Running || !st.started {
            return Ok(());
        }
        // Shrink: wake surplus sleepers; they see `workers > max` and retire.
        let surplus = st.workers.saturating_sub(max);
        for _ in 0..surplus {
            if !st.wake_one() {
                break;
            }
        }
        // Grow: serve the backlog, then bring the pool up to `min`.
        st.wake_for_backlog();
        let target = Shared::backlog_target(&st);
        Shared::grow_to(&self.shared, &mut st, target);
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
        self.shared.lock().stats()
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
        if st.phase == Phase::Running {
            st.phase = Phase::Stopping;
            if !st.started {
                st.started = true;
                let target = if st.queue.is_empty() {
                    0
                } else {
                    Shared::backlog_target(&st)
                };
                Shared::grow_to(shared, &mut st, target);
            }
            while st.wake_one() {}
        }
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
                                slot.running.as_ref().map(|(id, name)| StuckJob {
                                    thread_name: slot.thread_name.clone(),
                                    job_name: name.as_deref().map(str::to_owned),
                                    job_id: *id,
                                })
                            })
                            .collect();
                        let error = StopTimedOut {
                            pool: shared.describe(),
                            stuck,
                            backlog: st.queue.len(),
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
                let stats = st.stats();
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
        if st.phase == Phase::Running {
            st.phase = Phase::Stopping;
            if !st.started && !st.queue.is_empty() {
                st.started = true;
                let target = Shared::backlog_target(&st);
                Shared::grow_to(shared, &mut st, target);
            }
            while st.wake_one() {}
        }
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
