//! Green threads: stackful coroutines pinned to the hub of the thread that spawned them.
//!
//! Code in a green thread reads as blocking (`sleep`, `event.wait()`, `handle.join()`) without
//! `async`: a blocking call parks the green thread and the hub runs others. Green threads never
//! move to another OS thread, so `Rc`, thread-locals and `!Send` captures are sound, and a green
//! thread may lend data on its stack while parked.
//!
//! The same blocking calls work in a thread's **main context** (outside any green thread): there
//! they drive the thread's hub until the condition holds, so `main()` or any OS thread can wait on
//! an `Event` or a `JoinHandle`. Inside a **hub callback** (a timer, a posted call, a link
//! listener) they panic at once: blocking there would stall the loop; spawn a green thread.
//!
//! ```
//! use std::time::Duration;
//! use filature::green;
//!
//! let a = green::spawn(|| { green::sleep(Duration::from_millis(5)); "a" });
//! let b = green::spawn(|| "b");
//! assert_eq!((a.join(), b.join()), ("a", "b"));
//! ```

mod block_on;
mod command;
pub(crate) mod join;
pub(crate) mod park;
mod pool;
pub(crate) mod stack;
pub(crate) mod thread;
mod timeout;

use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::deadline::deadline_after;
use crate::hub::{self, Core, HubHandle};
use crate::loom::sync::Arc;
use crate::Stopped;
use park::{ParkCell, Unparker};
use thread::Green;

pub use block_on::{block_on, BlockOn};
pub use command::{Command, CommandReply};
pub use join::{JoinError, JoinHandle, JoinTimeoutError, LinkId};
pub use pool::GreenPool;
pub use stack::{force_mprotect_guards, StackError, StackErrorKind};
pub use timeout::{with_timeout, Timeout};

const BLOCKING_IN_CALLBACK: &str =
    "cannot block inside a hub callback (a timer, a posted call or a link listener): it would stall the \
     loop; spawn a green thread (green::spawn) and block there";

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
const ID_BLOCK: u64 = 1024;

thread_local! {
    /// This thread's block of green thread ids: (next, end). Taking ids in blocks keeps spawning
    /// free of a shared counter.
    static IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

fn next_id() -> u64 {
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// A green thread could not be spawned.
#[derive(Debug, Error)]
#[error("cannot spawn a green thread: {0}")]
pub struct SpawnError(#[from] StackError);

impl SpawnError {
    /// The underlying stack error.
    pub fn stack_error(&self) -> &StackError {
        &self.0
    }
}

/// Who is calling: a green thread, or the thread's main context. (A hub callback is refused.)
pub(crate) struct Parker {
    core: Rc<Core>,
    green: Option<Rc<Green>>,
    /// Where the caller waits ("green::sleep", "Event::wait"): kept by a parked green thread for
    /// `hub::snapshot`.
    op: &'static str,
}

impl park::Park for Parker {
    fn unparker(&self) -> &Unparker {
        Parker::unparker(self)
    }
    fn park(&self, deadline: Option<Instant>) {
        Parker::park(self, deadline)
    }
}

impl Parker {
    /// The calling context's parker. Panics, naming `op`, inside a hub callback.
    pub(crate) fn current(op: &'static str) -> Parker {
        hub::with_core(|core| {
            let green = core.current_green();
            if green.is_none() && core.in_callback() {
                panic!("{op}: {BLOCKING_IN_CALLBACK}");
            }
            Parker {
                core: core.clone(),
                green,
                op,
            }
        })
    }

    /// The core of the caller's hub.
    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.core
    }

    pub(crate) fn unparker(&self) -> &Unparker {
        match &self.green {
            Some(g) => &g.cell,
            None => &self.core.main_cell,
        }
    }

    /// Waits until unparked, until `deadline`, or spuriously; callers re-check their condition.
    /// In a green thread a pending kill or timeout unwinds from here.
    pub(crate) fn park(&self, deadline: Option<Instant>) {
        match &self.green {
            Some(g) => park_green(&self.core, g, self.op, deadline),
            None => park_main(&self.core, deadline),
        }
    }

    pub(crate) fn check_interrupts(&self) {
        match &self.green {
            Some(g) => g.check_interrupts(),
            None => {
                // Not while unwinding (see `Green::check_interrupts`): the timeout stays pending.
                // Nor while the main stack is lent to a pool job (`lend_stack`).
                if std::thread::panicking() || self.core.main_lent.get() > 0 {
                    return;
                }
                if let Some(id) = self.core.main_timeout.take() {
                    std::panic::resume_unwind(Box::new(thread::TimeoutUnwind(id)));
                }
            }
        }
    }
}

impl Parker {
    /// Lends this context's stack to a pool job until the guard drops: meanwhile a kill or an
    /// expired timeout is held back (it stays pending, and the first park point or
    /// [`check_interrupts`](Parker::check_interrupts) after the guard is gone raises it), so no
    /// park point can unwind the frames the job borrows from. The guard must be dropped on the
    /// context that took it.
    pub(crate) fn lend_stack(&self) -> LentStack<'_> {
        let count = match &self.green {
            Some(g) => &g.lent,
            None => &self.core.main_lent,
        };
        count.set(count.get() + 1);
        LentStack(count)
    }
}

/// See [`Parker::lend_stack`].
pub(crate) struct LentStack<'a>(&'a std::cell::Cell<u32>);

impl Drop for LentStack<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn park_green(core: &Rc<Core>, g: &Rc<Green>, op: &'static str, deadline: Option<Instant>) {
    g.check_interrupts();
    if g.cell.try_consume() {
        return;
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return;
    }
    if !g.cell.begin_park() {
        g.cell.try_consume();
        return;
    }
    if let Some(d) = deadline {
        g.arm_park_timer(core, d);
    }
    // The one store the snapshot costs the park path (none on the yield or switch paths).
    g.parked_at.set(op);
    g.suspend();
    g.cell.end_park();
    g.check_interrupts();
}

fn park_main(core: &Rc<Core>, deadline: Option<Instant>) {
    let cell: &ParkCell = &core.main_cell;
    let raise = |core: &Core| {
        if std::thread::panicking() || core.main_lent.get() > 0 {
            return; // see `Green::check_interrupts` and `Parker::lend_stack`
        }
        if let Some(id) = core.main_timeout.take() {
            std::panic::resume_unwind(Box::new(thread::TimeoutUnwind(id)));
        }
    };
    raise(core);
    if cell.try_consume() {
        return;
    }
    if !cell.begin_park() {
        cell.try_consume();
        return;
    }
    {
        // Registers the thread-exit hook if the drive resumed green threads (also on unwind).
        let _after = hub::AfterDrive(core);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            core.turn(Some(cell), deadline, false);
            if cell.peek_notified() || core.main_timeout_pending() {
                break;
            }
        }
    }
    cell.end_park();
    raise(core);
}

impl Core {
    fn main_timeout_pending(&self) -> bool {
        let t = self.main_timeout.take();
        self.main_timeout.set(t);
        t.is_some()
    }
}

/// Panics, naming `op`, when called in a hub callback, where blocking is refused: for the fast
/// paths of blocking calls (the answer is already there), so the refusal does not depend on
/// whether the answer happened to be ready. Creates no hub.
#[inline]
pub(crate) fn refuse_in_callback(op: &'static str) {
    hub::with_existing_core(|core| refuse_in_callback_on(core, op));
}

/// [`refuse_in_callback`] for a caller that holds the thread's core already.
#[inline]
pub(crate) fn refuse_in_callback_on(core: &Core, op: &'static str) {
    if !core.in_green() && core.in_callback() {
        panic!("{op}: {BLOCKING_IN_CALLBACK}");
    }
}

/// Panics unless called from the thread's main context (for loop-driving entry points).
pub(crate) fn assert_main_context(core: &Core, op: &str) {
    if core.in_green() {
        panic!("{op} must be called from a thread's main context, not from a green thread");
    }
    if core.in_callback() {
        panic!("{op}: {BLOCKING_IN_CALLBACK}");
    }
}

/// Configures a green thread before spawning it.
///
/// ```
/// use filature::green;
///
/// let h = green::Builder::new()
///     .name("worker")
///     .stack_size(64 * 1024)
///     .spawn(|| green::current().unwrap().name().map(str::to_owned));
/// assert_eq!(h.join().as_deref(), Some("worker"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    name: Option<StdArc<str>>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with the default stack size and no name.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the green thread (shown in logs, overflow messages and [`current`]).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(StdArc::from(name.into()));
        self
    }

    /// Usable stack size in bytes (rounded up to whole pages).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    fn size(&self) -> usize {
        self.stack_size.unwrap_or(stack::DEFAULT_STACK_SIZE)
    }

    /// Spawns on the current thread's hub. Panics if no stack can be had; see
    /// [`try_spawn`](Self::try_spawn).
    pub fn spawn<F, T>(self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        match self.try_spawn(f) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// Spawns on the current thread's hub, or says why no stack could be had.
    pub fn try_spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        hub::with_core(|core| {
            let cell = Arc::new(ParkCell::new(core.shared.clone(), next_id()));
            let shared = join::JoinShared::new(cell, self.name.clone());
            Green::start(core, shared.clone(), self.size(), f)?;
            Ok(JoinHandle::new(shared))
        })
    }

    /// Spawns on another hub (or this one). `f` must be `Send`: it crosses threads once, then
    /// stays on that hub. If no stack can be had there, the handle reports it as a failure.
    pub fn spawn_on<F, T>(self, hub: &HubHandle, f: F) -> Result<JoinHandle<T>, Stopped>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if hub.is_current() {
            return Ok(self.spawn(f));
        }
        self.spawn_posted(hub, |job| hub.call_boxed(job), f)
    }

    /// Spawns on `hub`, handing the job that starts the green thread to `post`, which must run
    /// it on `hub`'s thread or drop it (the handle then reports `Killed`). Returns at once.
    pub(crate) fn spawn_posted<F, T>(
        self,
        hub: &HubHandle,
        post: impl FnOnce(Box<dyn FnOnce() + Send>) -> Result<(), Stopped>,
        f: F,
    ) -> Result<JoinHandle<T>, Stopped>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let cell = Arc::new(ParkCell::new(hub.shared.clone(), next_id()));
        let shared = join::JoinShared::new(cell, self.name.clone());
        let size = self.size();
        let mut pending = NotStarted(Some(shared.clone()));
        post(hub::box_call(move || {
            let sh = pending.0.take().expect("runs once");
            hub::with_core(|core| {
                if !Arc::ptr_eq(&core.shared, &sh.cell.hub) {
                    // Only `reactor::spawn` before `run` could get here, were `run` called on
                    // another thread than `prepare_run`, which `run` refuses
                    // (`ReactorError::NotPreparedThread`). Kept as a guard.
                    tracing::error!(
                        "green thread spawned for hub '{}' reached hub '{}'; not started",
                        sh.cell.hub.name(),
                        core.shared.name()
                    );
                    join::Complete::complete_killed(&*sh);
                } else if let Err(e) = Green::start(core, sh.clone(), size, f) {
                    sh.complete(Err(JoinError::Panicked(crate::Failure::from_error(e))));
                }
            })
        }))?;
        Ok(JoinHandle::new(shared))
    }

    /// Spawns on the current hub after `delay`. Killing the handle before then means the green
    /// thread never starts (and no stack is taken for it meanwhile). A `delay` too large to add
    /// to the clock (`Duration::MAX`) means it starts only if killed (then it ends at once).
    pub fn spawn_after<F, T>(self, delay: Duration, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        hub::with_core(|core| {
            let cell = Arc::new(ParkCell::new(core.shared.clone(), next_id()));
            let shared = join::JoinShared::new(cell, self.name.clone());
            let mut pending = NotStarted(Some(shared.clone()));
            let size = self.size();
            let id = shared.id();
            let timer = hub::call_later(delay, move || {
                let sh = pending.0.take().expect("runs once");
                hub::with_core(|core| core.delayed_spawns.borrow_mut().remove(&id));
                if sh.cell.is_killed() {
                    sh.complete(Err(JoinError::Killed));
                    return;
                }
                hub::with_core(|core| {
                    if let Err(e) = Green::start(core, sh.clone(), size, f) {
                        sh.complete(Err(JoinError::Panicked(crate::Failure::from_error(e))));
                    }
                })
            });
            core.delayed_spawns.borrow_mut().insert(id, timer.cell);
            JoinHandle::new(shared)
        })
    }
}

/// The handle's side of a green thread that is not created yet (a delayed spawn's timer, a
/// `spawn_on` call in another hub's inbox). If that is dropped without running (its hub went
/// away), the joiners are told the green thread was killed instead of waiting forever.
struct NotStarted<T>(Option<StdArc<join::JoinShared<T>>>);

impl<T> Drop for NotStarted<T> {
    fn drop(&mut self) {
        if let Some(sh) = self.0.take() {
            join::Complete::complete_killed(&*sh);
        }
    }
}

/// Spawns a green thread on the current thread's hub. It starts on the hub's next pass (spawning
/// never switches), after the green threads spawned before it. `f` need not be `Send`.
///
/// Panics if no stack can be had; [`try_spawn`] returns the error instead.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn(f)
}

/// Like [`spawn`], but returns an error instead of panicking when no stack can be had.
pub fn try_spawn<F, T>(f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().try_spawn(f)
}

/// Spawns a green thread that starts after `delay`; kill the handle to cancel it before then.
pub fn spawn_after<F, T>(delay: Duration, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn_after(delay, f)
}

/// Runs `f` in a new green thread on the reactor (SIP SIMPLE's `call_in_green_thread`); returns
/// at once. A panic in `f` is logged. Same as [`reactor::call_in_green_thread`](crate::reactor::call_in_green_thread),
/// which says what happens before the reactor runs and after it stopped.
///
/// ```
/// use filature::{green, sync::Event};
///
/// let ran_on = Event::new();
/// let r = ran_on.clone();
/// green::call_in_green_thread(move || {
///     r.send(std::thread::current().name().map(str::to_owned)).unwrap();
/// })
/// .unwrap();
/// assert_eq!(ran_on.wait().unwrap().as_deref(), Some("filature-reactor"));
/// ```
pub fn call_in_green_thread(f: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
    crate::reactor::call_in_green_thread(f)
}

/// Parks the caller for `d` (green thread), or drives the hub for `d` (main context). A zero
/// duration is [`yield_now`]: one trip through the loop. A duration too large to add to the clock
/// (`Duration::MAX`) sleeps until the green thread is killed or its timeout expires.
pub fn sleep(d: Duration) {
    let p = Parker::current("green::sleep");
    if d.is_zero() {
        // eventlet's `sleep(0)`: a trip through the loop, not a no-op.
        drop(p);
        yield_now();
        return;
    }
    // A duration too large to add to the clock sleeps for ever (until killed), as std's does.
    let deadline = deadline_after(d);
    loop {
        if deadline.is_some_and(|t| Instant::now() >= t) {
            p.check_interrupts();
            return;
        }
        p.park(deadline);
    }
}

/// Lets every other ready green thread run once, then continues; always through the hub's loop,
/// so due timers, posted calls and I/O also get their turn (eventlet's `sleep(0)`). In a main
/// context, runs one pass of the hub. A kill or timeout pending for the caller is raised here.
#[inline]
pub fn yield_now() {
    // The green thread's hot path is inlined into the caller, switch included: every call level
    // between the caller and the switch costs a mispredicted return after each resume (the
    // CPU's return-address stack holds the hub's addresses then). A main context or a thread
    // without a running green thread takes the out-of-line path.
    if hub::with_running(yield_green) != Some(true) {
        yield_main();
    }
}

/// The running green thread's yield; false if none is running (a main context or a callback).
#[inline(always)]
fn yield_green(core: &Core) -> bool {
    let Some(yielder) = core.with_current(|g| {
        g.map(|g| {
            g.check_interrupts();
            g.yielder()
        })
    }) else {
        return false;
    };
    // Even with no other green thread ready, go back to the loop: it runs due timers, posted
    // calls and I/O on the way (eventlet's `sleep(0)`), which a green thread polling a flag in a
    // loop may be waiting for.
    core.request_requeue();
    thread::suspend_current(yielder);
    core.with_current(|g| g.map(Green::check_interrupts));
    true
}

/// `yield_now` outside a running green thread: one pass of the hub in a main context; a panic in
/// a hub callback.
#[cold]
#[inline(never)]
fn yield_main() {
    hub::with_core(|core| {
        if yield_green(core) {
            return;
        }
        if core.in_callback() {
            panic!("green::yield_now: {BLOCKING_IN_CALLBACK}");
        }
        // Every green thread ready now runs once (those it readies wait for the next pass).
        let ready = core.ready.borrow().len() as u32;
        let _after = hub::AfterDrive(core);
        core.turn_limited(None, Some(Instant::now()), false, ready);
    });
}

/// Facts about the running green thread.
#[derive(Clone)]
pub struct Current {
    id: u64,
    name: Option<StdArc<str>>,
}

impl Current {
    /// The green thread's id (unique in the process).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Its name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Debug for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Current")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

/// The running green thread, or `None` in a main context or hub callback.
pub fn current() -> Option<Current> {
    hub::with_core(|core| {
        core.with_current(|g| {
            g.map(|g| Current {
                id: g.id(),
                name: g.name.clone(),
            })
        })
    })
}

/// True when called from inside a green thread.
pub fn in_green_thread() -> bool {
    hub::with_core(|core| core.in_green())
}

/// Waits for every handle and returns the values in input order. If one fails, the failure that
/// happened first (in time) is raised at once, like `join` would, without waiting for the rest.
pub fn join_all<T: 'static>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    wait_all(&handles, true);
    let mut first: Option<(u64, usize)> = None;
    for (i, h) in handles.iter().enumerate() {
        if let Some(seq) = h.finish_seq() {
            if first.map_or(true, |(s, _)| seq < s) {
                first = Some((seq, i));
            }
        }
    }
    if let Some((_, i)) = first {
        let mut handles = handles;
        let h = handles.swap_remove(i);
        drop(handles);
        h.join();
        unreachable!("a failed green thread's join re-raises");
    }
    handles.into_iter().map(JoinHandle::join).collect()
}

/// Waits for every handle and returns every outcome in input order (failures trapped).
pub fn join_all_results<T: 'static>(handles: Vec<JoinHandle<T>>) -> Vec<Result<T, JoinError>> {
    wait_all(&handles, false);
    handles.into_iter().map(JoinHandle::join_result).collect()
}

/// Kills every green thread and waits until all have finished unwinding.
pub fn kill_all<T: 'static>(handles: &[JoinHandle<T>]) {
    for h in handles {
        h.kill();
    }
    wait_all(handles, false);
}

fn wait_all<T: 'static>(handles: &[JoinHandle<T>], stop_on_failure: bool) {
    let p = Parker::current("green::join_all");
    let me = crate::sync::waiter::Waiter::Park(p.unparker().clone());
    struct Unregister<'a, T: 'static>(&'a [JoinHandle<T>], &'a crate::sync::waiter::Waiter);
    impl<T: 'static> Drop for Unregister<'_, T> {
        fn drop(&mut self) {
            for h in self.0 {
                h.remove_waiter(self.1);
            }
        }
    }
    let _unregister = Unregister(handles, &me);
    // Register once on every handle (a completion takes the waiter list, waking us); then each
    // wake-up only advances a cursor over settled handles, and looks for failures only when the
    // process-wide failure counter moved. A join of n handles costs O(n), not O(n²).
    let mut failures_seen = join::failure_epoch();
    if stop_on_failure && handles.iter().any(|h| h.finish_seq().is_some()) {
        return;
    }
    for h in handles {
        h.add_waiter(me.clone());
    }
    let mut next = 0;
    loop {
        while next < handles.len() && handles[next].is_settled() {
            next += 1;
        }
        if next == handles.len() {
            return;
        }
        if stop_on_failure {
            let epoch = join::failure_epoch();
            if epoch != failures_seen {
                failures_seen = epoch;
                if handles
                    .iter()
                    .any(|h| h.finish_seq().is_some() && h.is_settled())
                {
                    return;
                }
            }
        }
        // The handle we wait on may have been lent to its link listeners after it took our
        // registration: make sure we are registered on it.
        let h = &handles[next];
        h.remove_waiter(&me);
        if !h.add_waiter(me.clone()) {
            continue;
        }
        p.park(None);
    }
}
