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
//! * Every call the inbox accepted runs exactly once: by a pass, or by `shutdown`, which closes
//!   the inbox (later posts fail with `Stopped`) and runs what it held before the thread exits.
//! * When the thread exits, the thread-local's destructor tears the hub down (`Core::teardown`)
//!   even if parked green threads still hold the core: their joiners hear they were killed, the
//!   inbox refuses further posts, and what a hub that was not `shutdown` still held (unrun timers
//!   and calls) is dropped.
//! * The loop blocks in `poll` only after `Inbox::prepare_sleep` marked it asleep and the waiting
//!   main context (if any) was re-checked afterwards, so a cross-thread post or unpark always
//!   either is seen before blocking or wakes the poll.

mod detector;
pub(crate) mod inbox;
mod snapshot;
mod task;
pub(crate) mod timer;

use std::cell::{Cell, OnceCell, RefCell};
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
/// Resumes per pass before the loop looks at its inbox, timers and I/O again.
const RUN_BUDGET: u32 = 256;
/// Non-blocking passes `shutdown` grants ready work, before and after killing what is left.
const SETTLE_PASSES: u32 = 64;

pub(crate) enum Msg {
    Call(Box<dyn FnOnce() + Send>),
    Unpark(Unparker),
    /// A delayed spawn was killed from another thread: fire its timer now.
    Expedite(Unparker),
}

/// The part of a hub that other threads share.
pub(crate) struct HubShared {
    inbox: Inbox<Msg>,
    waker: mio::Waker,
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
            Err(Msg::Unpark(_) | Msg::Expedite(_)) => {
                unreachable!("the inbox hands back what was pushed")
            }
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

/// The loop state of the current thread's hub.
pub(crate) struct Core {
    pub(crate) shared: Arc<HubShared>,
    poll: RefCell<mio::Poll>,
    events: RefCell<mio::Events>,
    pub(crate) ready: RefCell<VecDeque<Rc<Green>>>,
    /// Green threads by slot, for wake-ups that arrive as a slot number.
    greens: RefCell<Slots>,
    timers: RefCell<Timers>,
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
}

#[derive(Default)]
struct Slots {
    slots: Vec<Option<Rc<Green>>>,
    free: Vec<usize>,
}

thread_local! {
    static CORE: CoreSlot = const { CoreSlot(OnceCell::new()) };
}

impl HubShared {
    /// A hub's shared half with no loop behind it, for the loom models of the park protocol.
    #[cfg(loom)]
    pub(crate) fn detached() -> Arc<HubShared> {
        let poll = mio::Poll::new().expect("epoll");
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN).expect("eventfd");
        Arc::new(HubShared {
            inbox: Inbox::new(),
            waker,
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
        let name = std::thread::current()
            .name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:?}", std::thread::current().id()));
        let shared = Arc::new(HubShared {
            inbox: Inbox::new(),
            waker,
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
            events: RefCell::new(mio::Events::with_capacity(256)),
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
        let busy = !self.ready.borrow().is_empty() || !self.local.borrow().is_empty();
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
        let timeout = wake_at.map(|t| t.saturating_duration_since(Instant::now()));
        if timeout == Some(Duration::ZERO) {
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

    /// Before blocking, watches the inbox (and the waiting main context) for a few microseconds:
    /// spinning, then yielding the CPU, as crossbeam's receivers do (`Backoff::snooze`). A
    /// producer that posts meanwhile then needs no wake-up syscall and the hub none to sleep and
    /// wake. True if something arrived (the caller returns and the next pass handles it).
    fn spin_before_sleep(&self, main: Option<&ParkCell>) -> bool {
        let backoff = crossbeam_utils::Backoff::new();
        // The pass has just looked: wait a little before looking again (a producer that is
        // writing the queue's tail loses the cache line to every look).
        while !backoff.is_completed() {
            backoff.snooze();
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
        // Only the waker is registered so far; its events need no handling (edge-triggered).
    }

    /// Resumes a ready green thread (the loop's side of a switch), pointing `current` at it for
    /// the duration; a green thread that yielded asked to be requeued.
    fn resume(&self, g: Rc<Green>) {
        if g.is_finished() {
            return;
        }
        let panicking = std::thread::panicking();
        self.panicking_at_resume.set(panicking);
        self.current.set(Rc::as_ptr(&g));
        let token = self.shared.activity.enter(g.id());
        let finished = g.resume();
        self.shared.activity.exit(token);
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

/// The thread-local home of a thread's core. Its destructor tears the hub down when the thread
/// exits, whatever else still holds the `Rc<Core>`: a parked green thread keeps one on its stack
/// (a `Parker`), so waiting for the last reference would never tear anything down.
struct CoreSlot(OnceCell<Rc<Core>>);

impl Drop for CoreSlot {
    fn drop(&mut self) {
        if let Some(core) = self.0.get() {
            core.teardown();
        }
    }
}

impl Core {
    /// The thread is exiting. Green threads still parked or not yet started are abandoned with
    /// their joiners told they were killed (their stacks are leaked, not unwound: the code they
    /// would run could no longer reach the hub); the inbox is closed so later posts are refused;
    /// what is left unrun (timers, delayed spawns, queued calls) is dropped, which settles the
    /// handles of spawns that will never start as killed.
    fn teardown(&self) {
        let greens: Vec<Rc<Green>> = self.greens.borrow_mut().slots.drain(..).flatten().collect();
        for g in &greens {
            g.abandon();
        }
        self.greens.borrow_mut().free.clear();
        self.shared.activity.clear_names();
        self.ready.borrow_mut().clear();
        let unrun = self.shared.inbox.close();
        self.delayed_spawns.borrow_mut().clear();
        let timers = std::mem::take(&mut *self.timers.borrow_mut());
        let local = std::mem::take(&mut *self.local.borrow_mut());
        drop((unrun, timers, local));
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs `f` with the current thread's hub core, creating it on first use.
#[inline]
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    CORE.with(|c| f(c.0.get_or_init(Core::new)))
}

pub(crate) fn with_timers<R>(f: impl FnOnce(&mut Timers) -> R) -> R {
    with_core(|c| f(&mut c.timers.borrow_mut()))
}

/// Like [`with_timers`], but does nothing once the thread's hub is being torn down (a `Timeout`
/// or parked wait dropped while the thread exits).
pub(crate) fn try_with_timers(f: impl FnOnce(&mut Timers)) {
    let _ = CORE.try_with(|c| {
        if let Some(core) = c.0.get() {
            if let Ok(mut t) = core.timers.try_borrow_mut() {
                f(&mut t);
            }
        }
    });
}

pub(crate) fn is_current_shared(shared: &HubShared) -> bool {
    CORE.try_with(|c| {
        c.0.get()
            .is_some_and(|core| std::ptr::eq(&*core.shared, shared))
    })
    .unwrap_or(false)
}

/// Called by `park::unpark` when it must schedule a context that was parked.
pub(crate) fn schedule_unparked(cell: &Unparker) {
    let local = CORE
        .try_with(|c| match c.0.get() {
            Some(core) if Arc::ptr_eq(&core.shared, &cell.hub) => {
                if !cell.is_main() {
                    core.schedule_cell(cell);
                }
                true
            }
            _ => false,
        })
        .unwrap_or(false);
    if local {
        return;
    }
    if cell.is_main() {
        cell.hub.nudge();
    } else if cell.hub.post(Msg::Unpark(cell.clone())).is_err() {
        // The hub is gone: its green threads were abandoned with it; nothing to wake.
    }
}

/// A kill of a green thread that has no slot yet: fire its delayed-spawn timer now, on its hub.
pub(crate) fn expedite_delayed_spawn(cell: &Unparker) {
    let local = CORE
        .try_with(|c| match c.0.get() {
            Some(core) if Arc::ptr_eq(&core.shared, &cell.hub) => {
                core.expedite(cell);
                true
            }
            _ => false,
        })
        .unwrap_or(false);
    if !local {
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
/// Must be called from the thread's main context (not from a green thread or a callback).
pub fn run() {
    with_core(|core| {
        crate::green::assert_main_context(core, "hub::run");
        loop {
            // A load first: a swap each pass would take the flag's cache line from the producers.
            // ORDERING: Acquire pairs with the Release in `HubHandle::stop`.
            if core.shared.stop.load(Ordering::Acquire)
                && core.shared.stop.swap(false, Ordering::AcqRel)
            {
                return;
            }
            core.turn(None, None, true);
        }
    })
}

/// Shuts the current thread's hub down before the thread exits (named threads do this).
///
/// 1. Closes the inbox: from now on [`HubHandle::call`] and [`HubHandle::spawn`] fail with
///    [`Stopped`], and cross-thread wake-ups are no longer delivered.
/// 2. Runs every call that was accepted before the close, in order (the exactly-once promise of
///    `call`).
/// 3. Lets ready callbacks and green threads run, without blocking, for at most `SETTLE_PASSES`
///    passes, so green threads spawned by those calls get to start. Due timers fire; timers not
///    yet due are dropped with the core.
/// 4. Kills every green thread still alive and gives them `SETTLE_PASSES` more passes to unwind
///    from their park points (destructors run; joiners see them killed). One that still has not
///    finished (its stack is lent to a pool job) is abandoned when the core is dropped.
///
/// Must be called from the thread's main context, after [`run`] returned. Never blocks on
/// anything but the code it runs.
pub(crate) fn shutdown() {
    with_core(|core| {
        crate::green::assert_main_context(core, "hub::shutdown");
        let mut accepted = core.shared.inbox.close();
        core.run_msgs(&mut accepted);
        core.settle();
        let alive: Vec<Rc<Green>> = core
            .greens
            .borrow()
            .slots
            .iter()
            .flatten()
            .cloned()
            .collect();
        for g in &alive {
            if g.cell.request_kill() {
                crate::green::park::unpark(&g.cell);
            }
        }
        drop(alive);
        core.settle();
    })
}

/// [`shutdown`], for a hub whose thread lives on afterwards (the reactor, when [`run`] on `main`
/// returns): nothing is left for a thread-exit teardown to settle, so this also
///
/// 5. keeps driving the loop (blocking at most 10 ms per pass) until every killed green thread
///    has unwound, for at most `grace`, then abandons the rest (joiners hear they were killed;
///    their stacks are leaked, as at thread exit);
/// 6. fails futures still pending with `Stopped`;
/// 7. cancels the timers that have not fired (a [`DelayedCall`] then reports `AlreadyCancelled`)
///    and drops delayed spawns that never started, then runs any callbacks still queued.
pub(crate) fn shutdown_current(grace: Duration) {
    shutdown();
    with_core(|core| {
        let deadline = Instant::now() + grace;
        loop {
            let alive: Vec<Rc<Green>> = core
                .greens
                .borrow()
                .slots
                .iter()
                .flatten()
                .cloned()
                .collect();
            if alive.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    hub = %core.shared.name,
                    "{} green thread(s) did not unwind within {grace:?} of shutdown; abandoned",
                    alive.len()
                );
                for g in &alive {
                    g.abandon();
                    core.remove_green(g.slot());
                }
                break;
            }
            for g in &alive {
                if g.cell.request_kill() {
                    crate::green::park::unpark(&g.cell);
                }
            }
            drop(alive);
            core.turn(
                None,
                Some(Instant::now() + Duration::from_millis(10)),
                false,
            );
        }
        task::fail_all_pending();
        let actions = core.timers.borrow_mut().clear();
        let spawns = std::mem::take(&mut *core.delayed_spawns.borrow_mut());
        drop((actions, spawns)); // outside the borrows: dropping a callback may run user code
        let rest: Vec<_> = core.local.borrow_mut().drain(..).collect();
        for f in rest {
            core.run_callback("hub callback", f);
        }
    })
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
}

/// Counts of the current hub's green threads, timers and inbox.
pub fn stats() -> HubStats {
    with_core(|c| HubStats {
        green_threads: c.green_count(),
        ready: c.ready.borrow().len(),
        timers: c.timers.borrow().len(),
        inbox: c.shared.inbox.len(),
    })
}
