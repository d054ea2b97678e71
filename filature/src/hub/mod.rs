//! Hubs: one event loop per OS thread (timers, I/O readiness through mio, a cross-thread inbox).
//!
//! # Vocabulary
//!
//! * The **core** (`Core`, private, `!Send`) is the loop's state, owned by its thread through a
//!   thread-local, created lazily the first time the thread needs it: ready queue of green threads,
//!   timers, the mio `Poll`, the local callback queue.
//! * The **handle** ([`HubHandle`], `Send + Sync + Clone`) is the part other threads may touch:
//!   the inbox and the mio `Waker` (`HubShared`).
//! * A **pass** (`Core::turn`) drains the inbox once, fires due timers, resumes ready green threads
//!   in FIFO order (a yielding one goes to the back) until none is ready or a budget of resumes is
//!   spent, then polls I/O (blocking only when nothing is ready). Before it blocks it watches the
//!   inbox for a few microseconds (spinning, then yielding, as crossbeam's receivers do), so a
//!   steady stream of posts costs neither side a syscall.
//!
//! * The **activity** (`detector::Activity`, in the handle's shared part) says whether the loop is
//!   inside a resume or a callback, and of which green thread, for the blocking detector
//!   ([`set_blocking_threshold`]); the loop writes it with plain stores on every resume.
//! * A **snapshot** ([`snapshot`]) asks every hub, through its inbox, to describe itself; see
//!   `snapshot.rs`.
//!
//! # Three contexts
//!
//! Code on a thread runs in one of three contexts, told apart by two fields of the core:
//! `current` is set while a green thread runs (**green context**); `callback_depth > 0` while the
//! loop runs a callback — a timer, an inbox item, a link listener (**callback context**); otherwise
//! the thread is in its **main context**. A green-blocking call parks a green thread, drives the
//! loop from a main context until its condition holds, and panics in a callback (blocking there
//! would deadlock the loop). See [`crate::green`] for the park protocol.
//!
//! # Invariants
//!
//! * Only the owning thread touches the core. The loop is never re-entered: it is driven only from
//!   the main context, and code it runs (callbacks, green threads) cannot drive it.
//! * A green thread is resumed only by the loop, only when not finished, and is in the ready queue
//!   at most once per reason (see `green::park`).
//! * `current` points at a green thread only while `Core::resume` runs it, holding its `Rc`. A green
//!   thread that has started and not finished stays in the slot table, which it leaves only when
//!   it finishes or is abandoned (its stack leaked, never run again): so a green thread's own
//!   frames may keep a `&Green` to it across switches (`Core::with_current`).
//! * Every call the inbox accepted runs exactly once: by a pass, or by `shut_down`, which closes
//!   the inbox (later posts fail with `Stopped`) and runs what it held before the thread exits.
//! * Every hub ends through one mechanism, `Core::shut_down` (see "Thread exit" below): close
//!   the inbox and run what it accepted, settle, kill every green thread and drive the loop until
//!   they have unwound (a green thread whose stack is lent to a pool job is waited out, however
//!   long), abandon what still has not unwound after a grace period, fail pending futures, drop
//!   timers. Named threads, the reactor, pool workers, event queues, [`scope`] and the thread-exit
//!   hook all use it; only the grace period and how loudly it reports differ.
//!
//! # Thread exit
//!
//! A parked green thread's frames may borrow the thread's thread-locals
//! (`KEY.with(|d| { ..park.. })`), and may have lent such borrows to a pool job or a scoped OS
//! thread. So **no green thread may be left parked, or be resumed, once a thread-local it may
//! borrow has been destroyed**, and a lend must end before the key it borrows dies. std destroys
//! thread-locals at thread exit in the reverse order of their first use (each registers its
//! destructor with glibc's `__cxa_thread_atexit_impl` on first use; glibc runs them newest
//! first), after the thread's body has returned. The argument:
//!
//! 1. A green thread's frames can only borrow keys it used while it ran, and green threads run
//!    only while the thread's main context drives the loop (`park_main`, [`run`], a main-context
//!    [`yield_now`](crate::green::yield_now)). Every such drive ends through `Core::after_drive`,
//!    also when it unwinds.
//! 2. **Scoped threads** (every thread filature starts, and a user's thread inside [`scope`]):
//!    the body's end runs `shut_down` while every thread-local is still alive. Nothing is left
//!    for thread exit.
//! 3. **Other threads** (a user's plain `std::thread`, and `main`): when a drive that resumed a
//!    green thread returns with green threads still alive, `after_drive` registers a thread-exit
//!    hook (`exit.rs`) with the same glibc mechanism. It is newer than every key used before
//!    it, so by (1) newer than every key a parked green thread can borrow, and glibc runs it
//!    before all of them: the hook runs `shut_down` (unwinding every green thread, waiting out
//!    lends) while they are alive. A thread-local destructor that spawns and drives green threads
//!    during exit registers a new hook, which glibc runs right after that destructor.
//! 4. The core's own thread-local is created before any green thread (it is what they run on), so
//!    it is destroyed after every hook. Its destructor (`Core::teardown`) cannot drive the loop
//!    (the key is being destroyed); it only abandons what is left (frames frozen, stacks leaked,
//!    never resumed again, joiners told "killed") and says so, except on the main thread at
//!    process exit, which stays quiet. A green thread abandoned while its stack is lent to a pool
//!    job would let the job outlive what it borrows: that aborts the process with a message.
//!    With hooks available (glibc) neither happens unless a green thread refused to unwind within
//!    the grace period.
//!
//! Cost: nothing per park or lend; one hook registration (a small allocation glibc keeps until the
//! thread exits) per main-context drive that resumed green threads on an unscoped thread. A
//! long-lived unscoped thread that waits in a loop from its main context should use [`scope`].
//!
//! * The loop blocks in `poll` only after `Inbox::prepare_sleep` marked it asleep and the waiting
//!   main context (if any) was re-checked afterwards, so a cross-thread post or unpark always
//!   either is seen before blocking or wakes the poll.

mod detector;
mod exit;
pub(crate) mod inbox;
pub(crate) mod io;
pub(crate) mod mpsc;
mod snapshot;
mod task;
pub(crate) mod timer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::deadline::deadline_after;
use crate::failure::panic_message;
use crate::green::park::{ParkCell, Unparker};
use crate::green::thread::Green;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::loom::sync::Arc;
use crate::Stopped;

pub use detector::{blocking_threshold, set_blocking_threshold, BLOCKING_THRESHOLD_ENV};
pub use snapshot::{
    snapshot, GreenSnapshot, GreenState, HubDetail, HubSnapshot, PoolSnapshot, Snapshot,
};
pub use task::{spawn_future, FutureHandle};
pub use timer::{DelayedCall, DelayedCallError};

use inbox::{Inbox, Wake};
use timer::{Action, Timers};

const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);
/// While green threads are ready, poll I/O without blocking once every this many passes.
const BUSY_POLL_EVERY: u32 = 61;
/// The most I/O events one poll takes.
const EVENTS_PER_POLL: usize = 256;
/// Resumes per pass before the loop looks at its inbox, timers and I/O again.
const RUN_BUDGET: u32 = 256;
/// The longest a hub whose inbox is closed (shutting down) blocks in one poll: nothing can wake
/// it from another thread any more (see `Core::turn_limited`).
const CLOSED_POLL: Duration = Duration::from_millis(5);
/// Non-blocking passes `shut_down` grants ready work before it kills what is left.
const SETTLE_PASSES: u32 = 64;
/// How long a thread's end waits for its killed green threads to unwind before it abandons them
/// (a green thread whose stack is lent to a pool job is waited out however long it takes).
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(5);
/// While a shutdown waits for pool jobs that borrow from green threads' stacks, it says so this
/// often.
const LEND_REPORT_EVERY: Duration = Duration::from_secs(10);

pub(crate) enum Msg {
    Call(Box<dyn FnOnce() + Send>),
    /// A job for the thread's main context (a named thread's job): queued by the pass that
    /// drains it, run by [`run`] between passes, where it may block (see `Core::main_jobs`).
    Job(Box<dyn FnOnce() + Send>),
    Unpark(Unparker),
    /// A delayed spawn was killed from another thread: fire its timer now.
    Expedite(Unparker),
}

/// The part of a hub that other threads share.
pub(crate) struct HubShared {
    inbox: Inbox<Msg>,
    waker: mio::Waker,
    /// A clone of the loop's mio registry, for registering sockets from any thread that holds
    /// this handle; it keeps the epoll instance alive as long as the shared half lives (see
    /// `io.rs`).
    registry: mio::Registry,
    stop: AtomicBool,
    name: String,
    /// What the loop runs now, for the blocking detector (written by the hub's thread only).
    pub(crate) activity: detector::Activity,
}

impl HubShared {
    /// The hub's name (its thread's name).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn post(&self, msg: Msg) -> Result<(), Msg> {
        match self.inbox.push(msg) {
            Ok(Wake::Yes) => {
                self.wake();
                Ok(())
            }
            Ok(Wake::No) => Ok(()),
            Err(m) => Err(m),
        }
    }

    fn nudge(&self) {
        if self.inbox.nudge() == Wake::Yes {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!(hub = %self.name, "failed to wake hub: {e}");
        }
    }
}

/// A `Send + Sync` handle to a hub, for other threads: post calls, spawn green threads, stop it.
///
/// ```
/// use filature::{hub, sync::Event};
///
/// let here = hub::current();
/// let done = Event::new();
/// let d = done.clone();
/// std::thread::spawn(move || here.call(move || d.send(42).unwrap()).unwrap());
/// assert_eq!(done.wait().unwrap(), 42); // drives this thread's hub until the call ran
/// ```
#[derive(Clone)]
pub struct HubHandle {
    pub(crate) shared: Arc<HubShared>,
}

impl HubHandle {
    /// Runs `f` on the hub's thread, as a hub callback, on its next pass.
    ///
    /// Calls from one thread run in the order they were made; every accepted call runs exactly
    /// once. A panic in `f` is logged and the hub goes on. Fails only once the hub is closed.
    pub fn call(&self, f: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
        self.try_call(box_call(f)).map_err(|_| Stopped {
            what: self.describe(),
        })
    }

    /// [`call`](Self::call) for a boxed call, mapping a refusal to [`Stopped`].
    pub(crate) fn call_boxed(&self, f: Box<dyn FnOnce() + Send>) -> Result<(), Stopped> {
        self.call(f)
    }

    /// [`call`](Self::call) for a boxed call, handing it back (not run, not dropped) when the hub
    /// is closed, so the caller can post it elsewhere.
    pub(crate) fn try_call(
        &self,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Box<dyn FnOnce() + Send>> {
        match self.shared.post(Msg::Call(f)) {
            Ok(()) => Ok(()),
            Err(Msg::Call(f)) => Err(f),
            Err(_) => unreachable!("the inbox hands back what was pushed"),
        }
    }

    /// Posts a job to run in the hub thread's main context, from [`run`] (or the hub's
    /// shutdown), in posting order with other jobs, one at a time: a job may block, driving the
    /// hub meanwhile, and later jobs wait for it. Hands the job back when the hub is closed.
    /// Named threads use this; a hub whose thread never calls [`run`] runs jobs only when it
    /// shuts down.
    pub(crate) fn try_post_job(
        &self,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Box<dyn FnOnce() + Send>> {
        match self.shared.post(Msg::Job(f)) {
            Ok(()) => Ok(()),
            Err(Msg::Job(f)) => Err(f),
            Err(_) => unreachable!("the inbox hands back what was pushed"),
        }
    }

    /// Spawns a green thread on the hub. See [`crate::green::spawn`].
    pub fn spawn<F, T>(&self, f: F) -> Result<crate::green::JoinHandle<T>, Stopped>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::green::Builder::new().spawn_on(self, f)
    }

    /// Asks [`run`] on the hub's thread to return at its next pass.
    pub fn stop(&self) {
        // ORDERING: Release pairs with the Acquire in `run`'s check.
        self.shared.stop.store(true, Ordering::Release);
        self.shared.nudge();
    }

    /// True when called on the hub's own thread.
    pub fn is_current(&self) -> bool {
        is_current_shared(&self.shared)
    }

    /// True once the hub has shut down for good (its inbox refuses posts).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.inbox.is_closed()
    }

    /// The hub's name (its thread's name).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many posted items wait for the hub's next pass.
    pub fn inbox_len(&self) -> usize {
        self.shared.inbox.len()
    }

    fn describe(&self) -> String {
        format!("hub '{}'", self.shared.name)
    }
}

impl fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubHandle")
            .field("name", &self.shared.name)
            .finish()
    }
}

/// Boxes a posted call, unless it is a `Box<dyn FnOnce() + Send>` already (callers that queue
/// boxed jobs then pay for one allocation, not two).
pub(crate) fn box_call<F: FnOnce() + Send + 'static>(f: F) -> Box<dyn FnOnce() + Send> {
    let mut slot = Some(f);
    let any: &mut dyn std::any::Any = &mut slot;
    if let Some(boxed) = any.downcast_mut::<Option<Box<dyn FnOnce() + Send>>>() {
        return boxed.take().expect("just set");
    }
    Box::new(slot.take().expect("just set"))
}

/// How many times an idle hub yields its CPU, looking at its inbox after each, before it sleeps
/// (as many as crossbeam's `Backoff` does after its spinning).
const SLEEP_YIELDS: u32 = 4;

/// The loop state of the current thread's hub.
pub(crate) struct Core {
    pub(crate) shared: Arc<HubShared>,
    poll: RefCell<mio::Poll>,
    events: RefCell<mio::Events>,
    /// Registered sockets by token (see `io.rs`).
    io: RefCell<io::IoTable>,
    pub(crate) ready: RefCell<VecDeque<Rc<Green>>>,
    /// Green threads by slot, for wake-ups that arrive as a slot number.
    greens: RefCell<Slots>,
    timers: RefCell<Timers>,
    /// The last poll filled its event buffer (more events are probably waiting).
    io_backlog: Cell<bool>,
    /// The green thread running now, or null. Set by `resume` to the `Green` whose `Rc` it holds
    /// for the whole resume, and cleared before that `Rc` goes; read through `with_current`.
    current: Cell<*const Green>,
    callback_depth: Cell<u32>,
    /// Callbacks for the next pass, posted from this thread (need not be `Send`).
    local: RefCell<VecDeque<Box<dyn FnOnce()>>>,
    drain_buf: RefCell<Vec<Msg>>,
    busy_passes: Cell<u32>,
    /// Set by a yielding green thread: requeue it when it suspends.
    requeue: Cell<bool>,
    /// Whether the thread was already panicking when the loop resumed the current green thread
    /// (some other green thread is suspended half-way through unwinding). See
    /// `Green::check_interrupts`.
    pub(crate) panicking_at_resume: Cell<bool>,
    /// The main context's park cell.
    pub(crate) main_cell: Unparker,
    /// A `Timeout` that expired while the main context ran, to raise at its next park point.
    pub(crate) main_timeout: Cell<Option<u64>>,
    /// While > 0 the main context's stack is lent to a pool job: its timeouts are held back
    /// (the main-context twin of `Green::lent`).
    pub(crate) main_lent: Cell<u32>,
    /// Timers of delayed spawns not yet started, by green thread id (so a kill can fire them now).
    pub(crate) delayed_spawns: RefCell<std::collections::HashMap<u64, Rc<timer::TimerCell>>>,
    /// Set by a pass that resumed a green thread; cleared by `after_drive` (see "Thread exit").
    resumed_since_hook: Cell<bool>,
    /// Whether `arm_exit_hook` has made sure filature's own thread-locals are registered.
    own_keys_touched: Cell<bool>,
    /// Jobs for the main context (`Msg::Job`), drained from the inbox in order, run one at a
    /// time by [`run`] between passes (never by a pass, so a job that blocks drives the loop
    /// without re-entering it, and never by another job's wait: jobs stay serial).
    main_jobs: RefCell<VecDeque<Box<dyn FnOnce() + Send>>>,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Option<Rc<Green>>>,
    free: Vec<usize>,
}

thread_local! {
    /// The core whose `resume` is running a green thread now, or null (see `with_running`).
    static RUNNING: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
    static CORE: CoreSlot = const {
        CoreSlot {
            core: RefCell::new(None),
            scoped: Cell::new(0),
        }
    };
}

impl HubShared {
    /// A hub's shared half with no loop behind it, for the loom models of the park protocol.
    #[cfg(loom)]
    pub(crate) fn detached() -> Arc<HubShared> {
        let poll = mio::Poll::new().expect("epoll");
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN).expect("eventfd");
        let registry = poll.registry().try_clone().expect("epoll dup");
        Arc::new(HubShared {
            inbox: Inbox::new(),
            waker,
            registry,
            stop: AtomicBool::new(false),
            name: "model".into(),
            activity: detector::Activity::default(),
        })
    }
}

impl Core {
    fn new() -> Rc<Core> {
        let poll = mio::Poll::new().expect("filature: cannot create an epoll instance");
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)
            .expect("filature: cannot create an eventfd waker");
        let registry = poll
            .registry()
            .try_clone()
            .expect("filature: cannot duplicate the epoll instance");
        let name = std::thread::current()
            .name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:?}", std::thread::current().id()));
        let shared = Arc::new(HubShared {
            inbox: Inbox::new(),
            waker,
            registry,
            stop: AtomicBool::new(false),
            name,
            activity: detector::Activity::default(),
        });
        // The loom models build hubs from loom's `Arc`; the registry holds std `Weak`s.
        #[cfg(not(loom))]
        detector::register(&shared);
        let main_cell = Arc::new(ParkCell::new(shared.clone(), 0));
        Rc::new(Core {
            shared,
            poll: RefCell::new(poll),
            events: RefCell::new(mio::Events::with_capacity(EVENTS_PER_POLL)),
            io_backlog: Cell::new(false),
            io: RefCell::default(),
            ready: RefCell::new(VecDeque::new()),
            greens: RefCell::new(Slots::default()),
            timers: RefCell::new(Timers::default()),
            current: Cell::new(std::ptr::null()),
            callback_depth: Cell::new(0),
            local: RefCell::new(VecDeque::new()),
            drain_buf: RefCell::new(Vec::new()),
            busy_passes: Cell::new(0),
            requeue: Cell::new(false),
            panicking_at_resume: Cell::new(false),
            main_cell,
            main_timeout: Cell::new(None),
            main_lent: Cell::new(0),
            delayed_spawns: RefCell::default(),
            resumed_since_hook: Cell::new(false),
            own_keys_touched: Cell::new(false),
            main_jobs: RefCell::default(),
        })
    }

    pub(crate) fn in_callback(&self) -> bool {
        self.callback_depth.get() > 0
    }

    /// True while a green thread runs (the green context).
    #[inline]
    pub(crate) fn in_green(&self) -> bool {
        !self.current.get().is_null()
    }

    /// Calls `f` with the running green thread, or `None` in a main context or a hub callback.
    #[inline]
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(Option<&Green>) -> R) -> R {
        let p = self.current.get();
        // SAFETY: `current` is non-null only while `resume` runs that green thread, and `resume`
        // holds the thread's `Rc<Green>` until after it has cleared `current`. Nothing else runs
        // on this thread meanwhile (the loop is suspended inside `resume`), so `f` runs on that
        // green thread, with the `Green` alive. Should `f` itself switch away, the reference
        // lives on in that green thread's frames, which run again only under a later `resume`
        // (holding a fresh `Rc`): the slot table keeps an unfinished green thread alive until it
        // finishes (impossible while `f`'s frame is on its stack) or is abandoned (its stack is
        // leaked, so those frames never run again).
        f(unsafe { p.as_ref() })
    }

    /// The running green thread's `Rc`, from the slot table (cold paths: parkers, timeouts).
    pub(crate) fn current_green(&self) -> Option<Rc<Green>> {
        self.with_current(|g| {
            g.map(|g| {
                self.greens.borrow().slots[g.slot()]
                    .clone()
                    .expect("a running green thread has a slot")
            })
        })
    }

    pub(crate) fn insert_green(&self, g: &Rc<Green>) -> usize {
        let mut s = self.greens.borrow_mut();
        match s.free.pop() {
            Some(i) => {
                s.slots[i] = Some(g.clone());
                i
            }
            None => {
                s.slots.push(Some(g.clone()));
                s.slots.len() - 1
            }
        }
    }

    pub(crate) fn remove_green(&self, slot: usize) {
        let mut s = self.greens.borrow_mut();
        if let Some(g) = s.slots.get_mut(slot).and_then(Option::take) {
            s.free.push(slot);
            if g.name.is_some() {
                self.shared.activity.named_finished(g.id());
            }
        }
    }

    pub(crate) fn green_count(&self) -> usize {
        let s = self.greens.borrow();
        s.slots.len() - s.free.len()
    }

    /// Schedules the green thread behind an unparked cell (on this thread).
    fn schedule_cell(&self, cell: &ParkCell) {
        let Some(slot) = cell.slot() else { return };
        let g = self.greens.borrow().slots.get(slot).and_then(|g| g.clone());
        if let Some(g) = g {
            if g.id() == cell.id {
                self.ready.borrow_mut().push_back(g);
            }
        }
    }

    /// With the inbox closed: schedules every started green thread whose wake-up was refused
    /// (its cell says notified, but it is not queued). True if it scheduled any. A green thread
    /// notified while running is scheduled too; a spurious resume only makes it re-check what
    /// it waits for.
    #[cold]
    fn rewake_refused(&self) -> bool {
        let queued: std::collections::HashSet<u64> =
            self.ready.borrow().iter().map(|g| g.id()).collect();
        let notified: Vec<Rc<Green>> = self
            .greens
            .borrow()
            .slots
            .iter()
            .flatten()
            .filter(|g| {
                !g.is_finished()
                    && g.has_started()
                    && g.cell.peek_notified()
                    && !queued.contains(&g.id())
            })
            .cloned()
            .collect();
        let any = !notified.is_empty();
        self.ready.borrow_mut().extend(notified);
        any
    }

    /// Moves a not-yet-started delayed spawn's timer to now (it then sees the kill and ends).
    fn expedite(&self, cell: &ParkCell) {
        let timer = self.delayed_spawns.borrow_mut().remove(&cell.id);
        if let Some(cell) = timer {
            let _ = DelayedCall { cell }.reset(Duration::ZERO);
        }
    }

    /// Queues a callback for the next pass (this thread only; need not be `Send`).
    pub(crate) fn defer(&self, f: Box<dyn FnOnce()>) {
        self.local.borrow_mut().push_back(f);
    }

    /// Adds a timer due at `at` (`None`: never due; see [`crate::deadline`]).
    pub(crate) fn add_timer(&self, at: Option<Instant>, action: Action) -> Rc<timer::TimerCell> {
        self.timers.borrow_mut().add(at, action)
    }

    /// Moves a pending timer of this hub to `at`.
    pub(crate) fn reschedule_timer(&self, cell: &Rc<timer::TimerCell>, at: Option<Instant>) {
        self.timers.borrow_mut().reschedule(cell, at);
    }

    /// Runs `f` as a hub callback: blocking inside panics; a panic is caught and logged.
    pub(crate) fn run_callback(&self, what: &str, f: impl FnOnce()) {
        self.callback_depth.set(self.callback_depth.get() + 1);
        let token = self.shared.activity.enter(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        self.shared.activity.exit(token);
        self.callback_depth.set(self.callback_depth.get() - 1);
        if let Err(p) = r {
            tracing::error!(hub = %self.shared.name, "a {what} panicked: {}", panic_message(&*p));
        }
    }

    /// Runs the queued main-context jobs, in order, from the main context (`run`, `shut_down`).
    /// A job may block (a filature wait drives the loop); a panic is caught and logged as a
    /// posted call's would be.
    fn run_main_jobs(&self) {
        loop {
            let job = self.main_jobs.borrow_mut().pop_front();
            let Some(job) = job else { return };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            if let Err(p) = r {
                tracing::error!(
                    hub = %self.shared.name,
                    "a call posted to the hub panicked: {}",
                    panic_message(&*p)
                );
            }
        }
    }

    /// One pass of the loop. `main` is the waiting main context's cell (the pass returns as soon
    /// as it is notified and never blocks after that); `deadline` bounds how long it may block.
    ///
    /// A pass drains the inbox and local callbacks once, fires due timers, then resumes ready
    /// green threads in FIFO order (a green thread that yields goes to the back) until none is
    /// ready or `RUN_BUDGET` resumes have run, so timers, posted calls and I/O wait at most one
    /// budget. Then it polls I/O, blocking only when nothing is ready.
    pub(crate) fn turn(&self, main: Option<&ParkCell>, deadline: Option<Instant>, in_run: bool) {
        self.turn_limited(main, deadline, in_run, RUN_BUDGET);
    }

    /// A pass that resumes at most `budget` green threads.
    pub(crate) fn turn_limited(
        &self,
        main: Option<&ParkCell>,
        deadline: Option<Instant>,
        in_run: bool,
        budget: u32,
    ) {
        // 1. Posted items and local callbacks.
        if self.shared.inbox.has_pending() {
            self.drain_inbox();
        }
        if !self.local.borrow().is_empty() {
            let batch: Vec<_> = self.local.borrow_mut().drain(..).collect();
            for f in batch {
                self.run_callback("hub callback", f);
            }
        }
        // 2. Due timers.
        if !self.timers.borrow().is_empty() {
            self.fire_timers();
        }
        // 3. Ready green threads.
        let mut budget = budget;
        loop {
            if budget == 0 {
                break;
            }
            let g = self.ready.borrow_mut().pop_front();
            let Some(g) = g else { break };
            self.resume(g);
            if main.is_some_and(|m| m.peek_notified()) {
                return;
            }
            budget -= 1;
            if self.shared.inbox.maybe_pending() || !self.local.borrow().is_empty() {
                break;
            }
        }
        // 4. I/O, blocking only when there is nothing else to do.
        let busy = !self.ready.borrow().is_empty()
            || !self.local.borrow().is_empty()
            || (in_run && !self.main_jobs.borrow().is_empty());
        if busy || main.is_some_and(|m| m.peek_notified()) {
            let k = self.busy_passes.get() + 1;
            if k >= BUSY_POLL_EVERY {
                self.busy_passes.set(0);
                self.poll_io(Some(Duration::ZERO));
            } else {
                self.busy_passes.set(k);
            }
            return;
        }
        let next_timer = self.timers.borrow_mut().next_deadline();
        let wake_at = match (next_timer, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut timeout = wake_at.map(|t| t.saturating_duration_since(Instant::now()));
        if self.shared.inbox.is_closed() {
            // Shutting down (`shut_down`: a call it runs may still wait, from the main context
            // or in a green thread). Cross-thread wake-ups are refused now, so nothing would
            // wake this poll and a green thread woken from another thread would stay parked:
            // pick those up, and poll for at most `CLOSED_POLL`.
            if self.rewake_refused() {
                return;
            }
            timeout = Some(timeout.map_or(CLOSED_POLL, |t| t.min(CLOSED_POLL)));
        }
        if timeout == Some(Duration::ZERO) {
            self.poll_io(Some(Duration::ZERO));
            return;
        }
        // The last poll filled the event buffer: more events are most likely waiting. Take them
        // now rather than spin or yield the CPU before a poll that would not block anyway.
        if self.io_backlog.get() {
            self.poll_io(Some(Duration::ZERO));
            return;
        }
        if self.spin_before_sleep(main) {
            return;
        }
        if !self.shared.inbox.prepare_sleep() {
            return;
        }
        // Re-check after announcing sleep: an unpark of the main context or a stop request that
        // raced with us either saw `sleeping` (and wakes the poll) or is visible now.
        // ORDERING: Acquire pairs with `HubHandle::stop`.
        let stop = in_run && self.shared.stop.load(Ordering::Acquire);
        if main.is_some_and(|m| m.peek_notified()) || stop {
            self.shared.inbox.end_sleep();
            return;
        }
        crate::green::stack::trim_thread_cache();
        self.poll_io(timeout);
        self.shared.inbox.end_sleep();
    }

    /// Before blocking, watches the inbox (and the waiting main context) for a microsecond or
    /// two by yielding the CPU a few times. A producer that posts meanwhile then needs no wake-up
    /// syscall and the hub none to sleep and wake; and when the thread that will post shares
    /// this CPU, the yield is what lets it run. True if something arrived (the caller returns and
    /// the next pass handles it).
    ///
    /// No spinning before the yields (crossbeam's `Backoff::snooze` spins 127 `pause`s first,
    /// 1.25 µs here, which this loop used until 2026-12-03): when the other side of a ping-pong
    /// runs on the same CPU, every hand-off paid the whole spin, and the `wake` scenario's round
    /// trip took 4.7 µs instead of 1.6 (see `bench/README.md`, "wake").
    fn spin_before_sleep(&self, main: Option<&ParkCell>) -> bool {
        // The pass has just looked: wait a little before looking again (a producer that is
        // writing the queue's tail loses the cache line to every look).
        std::hint::spin_loop();
        if self.shared.inbox.has_pending() || main.is_some_and(|m| m.peek_notified()) {
            return true;
        }
        for _ in 0..SLEEP_YIELDS {
            std::thread::yield_now();
            if self.shared.inbox.has_pending() || main.is_some_and(|m| m.peek_notified()) {
                return true;
            }
        }
        false
    }

    fn drain_inbox(&self) {
        let mut buf = std::mem::take(&mut *self.drain_buf.borrow_mut());
        self.shared.inbox.drain(&mut buf);
        self.run_msgs(&mut buf);
        *self.drain_buf.borrow_mut() = buf;
    }

    /// Runs (calls) or schedules (unparks) drained messages, in order, leaving `buf` empty.
    fn run_msgs(&self, buf: &mut Vec<Msg>) {
        for msg in buf.drain(..) {
            match msg {
                Msg::Call(f) => self.run_callback("call posted to the hub", f),
                Msg::Job(f) => self.main_jobs.borrow_mut().push_back(f),
                Msg::Unpark(cell) => {
                    if !cell.is_main() {
                        self.schedule_cell(&cell);
                    }
                }
                Msg::Expedite(cell) => self.expedite(&cell),
            }
        }
    }

    /// Runs passes that never block while callbacks or green threads are ready, at most
    /// `SETTLE_PASSES` of them.
    fn settle(&self) {
        for _ in 0..SETTLE_PASSES {
            if self.ready.borrow().is_empty() && self.local.borrow().is_empty() {
                return;
            }
            // A deadline of now: the pass polls I/O with a zero timeout instead of blocking.
            self.turn(None, Some(Instant::now()), false);
        }
    }

    fn fire_timers(&self) {
        let now = Instant::now();
        loop {
            let due = self.timers.borrow_mut().pop_due(now);
            let Some((cell, action)) = due else { break };
            match action {
                Action::Call(f) => self.run_callback("timer callback", f),
                Action::Unpark(c) => crate::green::park::unpark(&c),
            }
            cell.finish();
        }
    }

    fn poll_io(&self, timeout: Option<Duration>) {
        let mut events = self.events.borrow_mut();
        let r = self.poll.borrow_mut().poll(&mut events, timeout);
        if let Err(e) = r {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(hub = %self.shared.name, "poll failed: {e}");
            }
        }
        // The waker's events need no handling (edge-triggered); sockets' go to their waiters.
        let mut taken = 0;
        for event in events.iter() {
            taken += 1;
            if event.token() != WAKER_TOKEN {
                self.dispatch_io(event);
            }
        }
        self.io_backlog.set(taken == EVENTS_PER_POLL);
    }

    /// Resumes a ready green thread (the loop's side of a switch), pointing `current` at it for
    /// the duration; a green thread that yielded asked to be requeued.
    fn resume(&self, g: Rc<Green>) {
        if g.is_finished() {
            return;
        }
        let panicking = std::thread::panicking();
        self.panicking_at_resume.set(panicking);
        self.resumed_since_hook.set(true);
        self.current.set(Rc::as_ptr(&g));
        RUNNING.set(self);
        let token = self.shared.activity.enter(g.id());
        let finished = g.resume();
        self.shared.activity.exit(token);
        RUNNING.set(std::ptr::null());
        self.current.set(std::ptr::null());
        if finished {
            self.remove_green(g.slot());
            return;
        }
        g.suspended(panicking);
        if self.requeue.replace(false) {
            self.ready.borrow_mut().push_back(g);
        }
    }

    /// Called by a running green thread that yields: the loop puts it back on the ready queue.
    pub(crate) fn request_requeue(&self) {
        self.requeue.set(true);
    }
}

/// The thread-local home of a thread's core, and whether the thread runs inside [`scope`].
///
/// The core is created on first use and taken out at the end of the outermost scope (the next
/// use makes a fresh one). Its destructor tears the hub down when the thread exits, whatever else
/// still holds the `Rc<Core>`: a parked green thread keeps one on its stack (a `Parker`), so
/// waiting for the last reference would never tear anything down.
struct CoreSlot {
    core: RefCell<Option<Rc<Core>>>,
    /// Depth of nested [`scope`]s on this thread.
    scoped: Cell<u32>,
}

impl CoreSlot {
    #[cold]
    fn create(&self) -> Rc<Core> {
        let core = Core::new();
        *self.core.borrow_mut() = Some(core.clone());
        core
    }

    /// The core, if the thread has one.
    fn existing(&self) -> Option<Rc<Core>> {
        self.core.try_borrow().ok().and_then(|c| c.clone())
    }
}

impl Drop for CoreSlot {
    fn drop(&mut self) {
        if let Some(core) = self.core.get_mut().take() {
            core.teardown();
        }
    }
}

impl Core {
    /// The thread is exiting and its core's thread-local is being destroyed (see "Thread exit"
    /// in the module docs): the loop can no longer be driven. Green threads still parked or not
    /// yet started are abandoned with their joiners told they were killed: their frames are
    /// frozen and their stacks leaked, never resumed. The inbox is closed so later posts are
    /// refused; what is left unrun (timers, delayed spawns, posted calls) is dropped, which
    /// settles the handles of spawns that will never start as killed; callbacks already queued
    /// for the next pass (link listeners) run.
    ///
    /// Parked green threads here mean no hook or scope could unwind them in time: said loudly,
    /// except on the main thread at process exit. A lent stack aborts (its job could outlive the
    /// thread-locals it borrows).
    fn teardown(&self) {
        let greens: Vec<Rc<Green>> = self.greens.borrow_mut().slots.drain(..).flatten().collect();
        let parked: Vec<&Rc<Green>> = greens.iter().filter(|g| g.has_started()).collect();
        let lent: Vec<&Rc<Green>> = parked
            .iter()
            .copied()
            .filter(|g| g.lent.get() > 0)
            .collect();
        if !lent.is_empty() {
            exit::abort_lent(&self.shared.name, &describe_greens(&lent));
        }
        if !parked.is_empty() && !exit::is_main_thread() {
            tracing::error!(
                hub = %self.shared.name,
                "thread '{}' exited with {} green thread(s) still parked ({}); they were \
                 abandoned (never resumed, stacks leaked). Run the thread's body in hub::scope, \
                 or join or kill them before it ends",
                self.shared.name,
                parked.len(),
                describe_greens(&parked)
            );
        }
        for g in &greens {
            g.abandon();
        }
        self.greens.borrow_mut().free.clear();
        self.shared.activity.clear_names();
        self.ready.borrow_mut().clear();
        let unrun = self.shared.inbox.close();
        self.delayed_spawns.borrow_mut().clear();
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        let registrations = self.io.borrow_mut().clear();
        drop((unrun, timers, registrations));
        // Callbacks already queued were promised a run (link listeners of a green thread that
        // ended in the thread's last pass, or that was linked after it ended): they run here, as
        // `shut_down` runs them, instead of being dropped with the queue.
        let local: Vec<_> = self.local.borrow_mut().drain(..).collect();
        for f in local {
            self.run_callback("hub callback", f);
        }
    }

    /// Green threads alive on this hub (started or not).
    fn alive_greens(&self) -> Vec<Rc<Green>> {
        self.greens
            .borrow()
            .slots
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The one way a hub ends (see the module docs), from its thread's main context:
    ///
    /// 1. closes the inbox: from now on [`HubHandle::call`] and [`HubHandle::spawn`] fail with
    ///    [`Stopped`], and cross-thread wake-ups are no longer delivered (from now on the loop
    ///    polls for at most `CLOSED_POLL` and re-wakes the green threads whose wake-up was
    ///    refused, so a call below that waits for another thread still gets its answer);
    /// 2. runs every call the inbox accepted before the close, in order (the exactly-once promise
    ///    of `call`);
    /// 3. lets ready callbacks and green threads run, without blocking, for at most
    ///    `SETTLE_PASSES` passes, so green threads spawned by those calls get to start;
    /// 4. kills every green thread and drives the loop (blocking at most 10 ms per pass) until
    ///    all have unwound (destructors run; joiners see them killed). A green thread whose stack
    ///    is lent to a pool job is waited out however long the job takes (said every
    ///    `LEND_REPORT_EVERY`); the others get `grace`, then are abandoned, said at warn level
    ///    unless `quiet`;
    /// 5. fails futures still pending with `Stopped`;
    /// 6. cancels the timers that have not fired (a [`DelayedCall`] then reports
    ///    `AlreadyCancelled`) and drops delayed spawns that never started, then runs any callbacks
    ///    still queued.
    ///
    /// Running it again finds nothing to do.
    pub(crate) fn shut_down(&self, grace: Duration, quiet: bool) {
        crate::green::assert_main_context(self, "hub shutdown");
        let mut accepted = self.shared.inbox.close();
        self.run_msgs(&mut accepted);
        self.run_main_jobs();
        self.settle();
        self.kill_and_unwind(grace, quiet);
        // Protocol connections and listening ports: closed, their users told (callbacks).
        crate::net::driver::shut_down();
        // Every waiter is gone with its green thread; sockets that outlive the hub deregister
        // themselves when next used or dropped (see `io.rs`).
        let registrations = self.io.borrow_mut().clear();
        drop(registrations);
        task::fail_all_pending();
        let actions = self.timers.borrow_mut().clear();
        let spawns = std::mem::take(&mut *self.delayed_spawns.borrow_mut());
        drop((actions, spawns)); // outside the borrows: dropping a callback may run user code
        let rest: Vec<_> = self.local.borrow_mut().drain(..).collect();
        for f in rest {
            self.run_callback("hub callback", f);
        }
    }

    /// Step 4 of `shut_down`.
    fn kill_and_unwind(&self, grace: Duration, quiet: bool) {
        let start = Instant::now();
        // A grace too large for the clock is no limit.
        let deadline = crate::deadline::deadline_after(grace);
        let mut next_report = start + LEND_REPORT_EVERY;
        loop {
            let alive = self.alive_greens();
            if alive.is_empty() {
                return;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                let (lent, free): (Vec<_>, Vec<_>) = alive.iter().partition(|g| g.lent.get() > 0);
                if !free.is_empty() {
                    let names = describe_greens(&free);
                    if quiet {
                        tracing::debug!(hub = %self.shared.name, "{} green thread(s) did not unwind within {grace:?}; abandoned: {names}", free.len());
                    } else {
                        tracing::warn!(hub = %self.shared.name, "{} green thread(s) did not unwind within {grace:?} of the hub's shutdown; abandoned (never resumed, stacks leaked): {names}", free.len());
                    }
                    for g in free {
                        g.abandon();
                        self.remove_green(g.slot());
                    }
                }
                if lent.is_empty() {
                    return;
                }
            }
            if now >= next_report && alive.iter().any(|g| g.lent.get() > 0) {
                next_report = now + LEND_REPORT_EVERY;
                let lent: Vec<&Rc<Green>> = alive.iter().filter(|g| g.lent.get() > 0).collect();
                tracing::warn!(
                    hub = %self.shared.name,
                    "the hub's shutdown is waiting for pool jobs that borrow from the stacks of {} green thread(s) ({}); it cannot end before they return",
                    lent.len(),
                    describe_greens(&lent)
                );
            }
            // Kill each, and schedule it unless it is queued already. Scheduling directly, not
            // through `unpark`: with the inbox closed, a cross-thread unpark (a pool job
            // finishing, an event set elsewhere) may have moved a green thread to NOTIFIED and
            // then failed to post its wake-up, and a later `unpark` would see NOTIFIED and
            // schedule nothing. A spurious resume only makes a green thread re-check what it
            // waits for.
            let queued: std::collections::HashSet<u64> =
                self.ready.borrow().iter().map(|g| g.id()).collect();
            for g in &alive {
                if !g.has_started() {
                    // Killed before it ran: it never runs (no frames to unwind, no switch).
                    g.abandon();
                    self.remove_green(g.slot());
                    continue;
                }
                g.cell.request_kill();
                g.cell.notify();
                if !queued.contains(&g.id()) {
                    self.ready.borrow_mut().push_back(g.clone());
                }
            }
            drop(alive);
            self.turn(
                None,
                Some(Instant::now() + Duration::from_millis(10)),
                false,
            );
        }
    }

    /// A main-context drive of the loop is returning to its caller (also by unwinding): on an
    /// unscoped thread, if it resumed green threads and some are still alive, make sure a
    /// thread-exit hook newer than every thread-local they may have used is registered (see
    /// "Thread exit" in the module docs).
    #[inline]
    pub(crate) fn after_drive(&self) {
        if self.resumed_since_hook.get() {
            self.arm_exit_hook();
        }
    }

    #[cold]
    fn arm_exit_hook(&self) {
        self.resumed_since_hook.set(false);
        if self.green_count() == 0 || is_scoped() {
            return;
        }
        if !self.own_keys_touched.replace(true) {
            // filature's own thread-locals that the hook's shutdown or the green threads it
            // unwinds may use: registered before the first hook, so destroyed after every hook.
            // (A thread-local with a destructor that is missing here is first registered by
            // whatever code touches it, possibly after the last hook, and then destroyed before
            // the hook runs: the soak found the networking table that way.) Thread-locals
            // without a destructor (`Cell`s of plain data) are never destroyed and need no
            // touch.
            task::touch_thread_local();
            crate::deferred::touch_thread_locals();
            crate::net::touch_thread_locals();
            crate::reactor::touch_thread_locals();
        }
        exit::register_hook();
    }
}

/// "name (id 7), id 9" for logs.
fn describe_greens(greens: &[&Rc<Green>]) -> String {
    let mut out = String::new();
    for (i, g) in greens.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match &g.name {
            Some(name) => out.push_str(&format!("'{name}' (id {})", g.id())),
            None => out.push_str(&format!("id {}", g.id())),
        }
    }
    out
}

/// Whether the calling thread runs inside [`scope`] (filature's own threads always do).
fn is_scoped() -> bool {
    CORE.try_with(|c| c.scoped.get() > 0).unwrap_or(false)
}

/// Called by the thread-exit hook (`exit.rs`): shut the thread's hub down, unless a scope will.
fn end_of_thread() {
    let core = CORE
        .try_with(|c| {
            if c.scoped.get() > 0 {
                None
            } else {
                c.existing()
            }
        })
        .ok()
        .flatten();
    if let Some(core) = core {
        if core.green_count() > 0 || !core.shared.inbox.is_closed() {
            core.shut_down(EXIT_GRACE, exit::is_main_thread());
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs `f` with the current thread's hub core, creating it on first use.
///
/// Holds a shared borrow of the slot while `f` runs (cheaper than cloning the `Rc` on every
/// park and yield), so `detach_core` can tell when some frame still uses the core.
#[inline(always)]
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    CORE.with(|slot| {
        let core = slot.core.borrow();
        match &*core {
            Some(core) => f(core),
            None => {
                drop(core);
                f(&slot.create())
            }
        }
    })
}

/// Calls `f` with the core that is running the calling green thread, or returns `None` outside
/// green threads: the hot path of green-context calls (`yield_now`), without `with_core`'s
/// thread-local slot and borrow.
#[inline(always)]
pub(crate) fn with_running<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    let p = RUNNING.get();
    // SAFETY: `RUNNING` is non-null only while `Core::resume` runs a green thread, and points at
    // the core whose `resume(&self)` that is: borrowed, so alive, for the whole resume, and code
    // on this thread meanwhile is that green thread's (the loop is suspended inside `resume`).
    // Should `f` switch away, the reference lives on in that green thread's frames, which run
    // again only under a later `resume` by the same core (a green thread belongs to one core for
    // ever), which is alive then; if that core goes away instead, the green thread is abandoned
    // and its frames never run again.
    unsafe { p.as_ref() }.map(f)
}

/// Calls `f` with the current thread's core, if it has one and its thread-local is still alive,
/// without cloning the `Rc` (the hot paths: scheduling an unpark, context checks). Holds a shared
/// borrow of the slot while `f` runs, as `with_core` does.
#[inline]
pub(crate) fn with_existing_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    CORE.try_with(|slot| match slot.core.try_borrow() {
        Ok(core) => core.as_ref().map(f),
        Err(_) => None,
    })
    .ok()
    .flatten()
}

/// The current thread's core, if it has one and its thread-local is still alive (an owned `Rc`,
/// for callers that go on to run code which may end the hub).
pub(crate) fn existing_core() -> Option<Rc<Core>> {
    CORE.try_with(CoreSlot::existing).ok().flatten()
}

pub(crate) fn with_timers<R>(f: impl FnOnce(&mut Timers) -> R) -> R {
    with_core(|c| f(&mut c.timers.borrow_mut()))
}

/// Like [`with_timers`], but does nothing once the thread's hub is being torn down (a `Timeout`
/// or parked wait dropped while the thread exits).
pub(crate) fn try_with_timers(f: impl FnOnce(&mut Timers)) {
    with_existing_core(|core| {
        if let Ok(mut t) = core.timers.try_borrow_mut() {
            f(&mut t);
        }
    });
}

pub(crate) fn is_current_shared(shared: &HubShared) -> bool {
    with_existing_core(|core| std::ptr::eq(&*core.shared, shared)).unwrap_or(false)
}

/// Called by `park::unpark` when it must schedule a context that was parked.
pub(crate) fn schedule_unparked(cell: &Unparker) {
    let local = with_existing_core(|core| {
        let here = Arc::ptr_eq(&core.shared, &cell.hub);
        if here && !cell.is_main() {
            core.schedule_cell(cell);
        }
        here
    })
    .unwrap_or(false);
    if local {
        return;
    }
    if cell.is_main() {
        cell.hub.nudge();
    } else if cell.hub.post(Msg::Unpark(cell.clone())).is_err() {
        // The hub is closed: its shutdown re-wakes what it still waits for; nothing to do.
    }
}

/// A kill of a green thread that has no slot yet: fire its delayed-spawn timer now, on its hub.
pub(crate) fn expedite_delayed_spawn(cell: &Unparker) {
    let here = with_existing_core(|core| Arc::ptr_eq(&core.shared, &cell.hub)).unwrap_or(false);
    if here {
        with_core(|core| core.expedite(cell));
    } else {
        let _ = cell.hub.post(Msg::Expedite(cell.clone()));
    }
}

/// A handle to the current thread's hub (created on first use).
pub fn current() -> HubHandle {
    with_core(|c| HubHandle {
        shared: c.shared.clone(),
    })
}

/// Runs `f` on the current hub after `delay`, as a hub callback (Twisted's `callLater`).
///
/// Timers with equal deadlines fire in the order they were created. `f` need not be `Send`.
/// A `delay` too large to add to the clock (`Duration::MAX`) means "never": the call stays
/// pending, and never runs unless [`DelayedCall::reset`] brings it back within reach.
///
/// ```
/// use std::time::Duration;
/// use filature::hub;
///
/// let never = hub::call_later(Duration::MAX, || unreachable!());
/// assert!(never.active());
/// never.cancel().unwrap();
/// ```
pub fn call_later(delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
    call_at(deadline_after(delay), f)
}

/// [`call_later`] at `at` (`None`: never).
pub(crate) fn call_at(at: Option<Instant>, f: impl FnOnce() + 'static) -> DelayedCall {
    DelayedCall {
        cell: with_core(|c| c.add_timer(at, Action::Call(Box::new(f)))),
    }
}

/// Runs `f` on the current hub at its next pass, as a hub callback. `f` need not be `Send`.
pub fn call_soon(f: impl FnOnce() + 'static) {
    with_core(|c| c.defer(Box::new(f)));
}

/// Runs the current thread's hub until [`HubHandle::stop`] is called (from any thread).
///
/// Between passes it runs the jobs posted for the thread's main context (a named thread's jobs),
/// one at a time, in order; a job that blocks drives the loop meanwhile.
///
/// Must be called from the thread's main context (not from a green thread or a callback).
pub fn run() {
    with_core(|core| {
        crate::green::assert_main_context(core, "hub::run");
        let _after = AfterDrive(core);
        loop {
            // A load first: a swap each pass would take the flag's cache line from the producers.
            // ORDERING: Acquire pairs with the Release in `HubHandle::stop`.
            if core.shared.stop.load(Ordering::Acquire)
                && core.shared.stop.swap(false, Ordering::AcqRel)
            {
                return;
            }
            core.turn(None, None, true);
            if !core.main_jobs.borrow().is_empty() {
                core.run_main_jobs();
            }
        }
    })
}

/// Calls `Core::after_drive` when a main-context drive ends, also by unwinding.
pub(crate) struct AfterDrive<'a>(pub(crate) &'a Core);

impl Drop for AfterDrive<'_> {
    fn drop(&mut self) {
        self.0.after_drive();
    }
}

/// Runs `f`, then shuts the calling thread's hub down before returning, while the thread's
/// thread-locals are all still alive: every green thread left on it is killed and unwound (its
/// destructors run; a green thread whose stack is lent to a pool job is waited out), calls
/// already accepted by its inbox run, timers are dropped. The thread's next use of filature gets
/// a fresh hub; handles to the old one report [`Stopped`].
///
/// Every thread filature starts (named threads, the reactor, pool workers, event queues) runs
/// its body this way. Use it for a thread of your own whose green threads must be gone before
/// its thread-locals are (`docs/thread-exit.md` in the repository says why); without it,
/// filature registers a
/// thread-exit hook that does the same on glibc targets, at the cost of a small allocation per
/// main-context wait that ran green threads, kept until the thread exits. A green thread that
/// has not unwound 5 s after it was killed is abandoned (never resumed, its stack leaked), with a
/// warning naming it.
///
/// Nested scopes are transparent: only the outermost one shuts the hub down. Also runs the
/// shutdown when `f` panics, then lets the panic go on.
///
/// Panics if called from a green thread or a hub callback.
///
/// ```
/// use std::time::Duration;
/// use filature::{green, hub};
///
/// thread_local! { static CONFIG: Vec<u8> = vec![1, 2, 3]; }
///
/// std::thread::spawn(|| {
///     hub::scope(|| {
///         green::spawn(|| CONFIG.with(|c| loop {
///             green::sleep(Duration::from_millis(5)); // parked over a borrow of CONFIG
///             assert_eq!(c.len(), 3);
///         }));
///         green::sleep(Duration::from_millis(20));
///     }); // the green thread is killed and unwound here, while CONFIG is alive
/// })
/// .join()
/// .unwrap();
/// ```
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    if let Some(core) = existing_core() {
        crate::green::assert_main_context(&core, "hub::scope");
    }
    let outermost = CORE.with(|c| {
        let depth = c.scoped.get();
        c.scoped.set(depth + 1);
        depth == 0
    });
    struct End {
        outermost: bool,
    }
    impl Drop for End {
        fn drop(&mut self) {
            if self.outermost {
                if let Some(core) = existing_core() {
                    core.shut_down(EXIT_GRACE, false);
                    drop(core);
                    detach_core();
                }
            }
            CORE.with(|c| c.scoped.set(c.scoped.get() - 1));
        }
    }
    let _end = End { outermost };
    f()
}

/// Shuts the current thread's hub down (see `Core::shut_down`) and detaches it, for the reactor:
/// when `reactor::run` on `main` returns, the thread goes on with a fresh hub (handles to the
/// reactor's report `Stopped`).
pub(crate) fn shutdown_current(grace: Duration) {
    with_core(|core| core.shut_down(grace, false));
    detach_core();
}

/// Takes the thread's (shut down) core out of its thread-local: the next use creates a fresh
/// one. Not while a `with_core` frame still borrows it (a scope ended inside a named thread's
/// job, or a green thread abandoned inside `yield_now`): the thread then keeps its closed hub.
fn detach_core() {
    let old = CORE
        .try_with(|c| c.core.try_borrow_mut().ok().and_then(|mut c| c.take()))
        .ok()
        .flatten();
    match old {
        Some(old) => drop(old), // outside the borrow: dropping the core may run user code
        None => tracing::debug!("the hub is still in use up the stack; it stays closed"),
    }
}

/// A snapshot of the current hub's state, for introspection and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubStats {
    /// Green threads alive on the hub (ready, running or parked).
    pub green_threads: usize,
    /// Green threads ready to run.
    pub ready: usize,
    /// Pending timers.
    pub timers: usize,
    /// Items posted by other threads, not yet run.
    pub inbox: usize,
    /// Sockets registered with the hub's poller (see [`crate::net`]).
    pub io_registrations: usize,
}

/// Counts of the current hub's green threads, timers and inbox.
pub fn stats() -> HubStats {
    with_core(|c| HubStats {
        green_threads: c.green_count(),
        ready: c.ready.borrow().len(),
        timers: c.timers.borrow().len(),
        inbox: c.shared.inbox.len(),
        io_registrations: c.io.borrow().len(),
    })
}
