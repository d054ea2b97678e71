//! The reactor: the process-wide hub, with Twisted's life cycle and entry points.
//!
//! The reactor is an ordinary hub on one OS thread. [`run`] makes the calling thread that thread
//! (Twisted's `reactor.run()`, eventlib's `join_reactor`) until [`stop`]; otherwise the first
//! entry point that needs it ([`call_from_thread`], [`call_in_reactor`], [`call_later`],
//! [`call_in_green_thread`], [`defer_to_green_thread`], the blocking calls, and the thread-pool
//! entry points [`call_in_thread`], [`defer_to_thread`], [`call_multiple_in_thread`],
//! [`defer_to_thread_pool`]) starts it on a
//! dedicated thread named `filature-reactor`. Registering for its life cycle
//! ([`call_when_running`], [`add_system_event_trigger`]) does not start it, and after
//! [`prepare_run`] nothing does: work queues until the prepared thread calls [`run`]. It runs once
//! per process: it cannot be restarted.
//!
//! ```
//! use filature::reactor;
//!
//! // From any thread: run a closure on the reactor and get its value back.
//! let name = reactor::blocking_call_from_thread(|| {
//!     std::thread::current().name().map(str::to_owned)
//! })
//! .unwrap();
//! assert_eq!(name.as_deref(), Some("filature-reactor"));
//! ```
//!
//! # The life cycle (`Life::state`, under one mutex)
//!
//! ```text
//!   Idle --run() / first use--> Running --stop()--> Stopping --shutdown done--> Stopped
//! ```
//!
//! * **Idle**: the first work entry point moves it to Running and spawns the reactor thread
//!   (unless `Life::prepared` names a thread that will call `run`); calls posted before the hub
//!   exists wait in `Life::pending`; triggers and `call_when_running` callables are kept.
//! * **Running**: the reactor thread has claimed the state. At start it creates its hub, posts the
//!   pending calls into the hub's inbox *in order* and publishes the hub handle (`HUB`), all under
//!   the lock, so a call made by any thread lands either in `pending` (before) or in the inbox
//!   (after) and per-producer order holds. Then it fires the startup event (see below) and runs
//!   the loop. After publication, [`call_from_thread`] is one lock-free `OnceLock` read plus the
//!   inbox push.
//! * **Stopping**: [`stop`] moved it here and stopped the loop. Calls are still accepted (the
//!   inbox is open) and run; new blocking calls fail at once. The reactor thread fires the
//!   shutdown event: `before` triggers run and the Deferreds they return are waited for — with a
//!   timeout ([`set_shutdown_timeout`]), while the loop keeps running — then `during` (among
//!   them the stop of the [reactor thread pool](thread_pool), bounded by the same timeout), then
//!   `after`. Then the hub shuts down: the inbox closes (later posts get [`Stopped`]) and every
//!   call it had accepted runs; green threads still alive are killed and unwound (their joiners
//!   see `Killed`); pending futures fail with `Stopped`; timers not yet due are cancelled (a
//!   reactor [`DelayedCall`] then reports `active() == false`).
//! * **Stopped**: every thread blocked in a blocking call that has not been answered (it waited on
//!   a Deferred or future that can no longer fire) is woken with a `Stopped` failure. New calls
//!   fail with `Stopped`; `run` fails with [`ReactorError::NotRestartable`].
//!
//! So nothing accepted is lost: each call either runs or its caller gets an error, and no caller
//! of a blocking entry point waits on a reactor that is gone.
//!
//! # Triggers
//!
//! A trigger is registered for a [`Phase`] of a [`SystemEvent`] and runs on the reactor thread,
//! once, when that event fires; triggers of a phase run in registration order. A panicking trigger
//! is logged and the others still run. Only `before` triggers may make the event wait, by
//! returning a `Deferred<()>` (see [`TriggerResult`]); a trigger registered after its event has
//! fired never runs.

mod calls;
mod delayed;
mod net;
mod pool;

/// Registers the reactor's thread-locals before the thread-exit hook (see
/// `Core::arm_exit_hook`), so they outlive it.
pub(crate) fn touch_thread_locals() {
    delayed::touch_thread_local();
}

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use thiserror::Error;

use crate::deferred::Deferred;
use crate::hub::{self, HubHandle};
use crate::sync::CountdownEvent;
use crate::{Failure, Stopped};

pub use calls::{
    blocking_call_from_thread, blocking_call_from_thread_deferred,
    blocking_call_from_thread_deferred_timeout, blocking_call_from_thread_future,
    blocking_call_from_thread_future_timeout, blocking_call_from_thread_timeout, call_from_thread,
    call_in_green_thread, call_in_reactor, defer_to_green_thread, spawn,
};
pub use delayed::{call_later, DelayedCall};
pub use net::{connect_tcp, listen_tcp};
pub use pool::{
    call_in_thread, call_multiple_in_thread, defer_to_thread, defer_to_thread_pool,
    suggest_thread_pool_size, thread_pool, DEFAULT_MAX_THREADS, THREAD_POOL_NAME,
};

/// The name of the thread the reactor starts on when nobody calls [`run`].
pub const THREAD_NAME: &str = "filature-reactor";

const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The reactor's hub, once it is running (set once, never cleared).
static HUB: OnceLock<HubHandle> = OnceLock::new();

/// Everything else, under one lock. A process-wide `static`: the std primitives are used
/// directly (loom cannot model statics); every transition is a few lines under this lock.
static LIFE: Mutex<Life> = Mutex::new(Life {
    state: State::Idle,
    thread: None,
    prepared: None,
    prepared_hub: None,
    pending: Vec::new(),
    triggers: Vec::new(),
    next_id: 1,
    fired: [false, false],
    shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
    blocked: None,
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Running,
    Stopping,
    Stopped,
}

struct Life {
    state: State,
    /// The name of the thread running the reactor.
    thread: Option<String>,
    /// Set by `prepare_run`: the thread that will call `run`; entry points do not auto-start.
    prepared: Option<std::thread::ThreadId>,
    /// That thread's hub, which becomes the reactor's if it is the one that calls `run`.
    prepared_hub: Option<HubHandle>,
    /// Calls posted before the hub was published.
    pending: Vec<Box<dyn FnOnce() + Send>>,
    triggers: Vec<Trigger>,
    next_id: u64,
    /// Whether startup / shutdown have fired (indexed by `SystemEvent as usize`).
    fired: [bool; 2],
    shutdown_timeout: Duration,
    /// Callers blocked in a blocking call, to be failed if the reactor stops under them.
    blocked: Option<HashMap<u64, Arc<dyn Abort>>>,
}

fn life() -> MutexGuard<'static, Life> {
    // No user code runs under this lock; poisoning can only come from an abort in progress.
    LIFE.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn stopped_error() -> Stopped {
    Stopped {
        what: "the reactor".into(),
    }
}

/// Something a blocked caller waits on, failed with `Stopped` if the reactor stops first.
pub(crate) trait Abort: Send + Sync {
    fn abort(&self);
}

/// Why a life-cycle call was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReactorError {
    /// `stop` while the reactor is not running (never started, already stopping or stopped).
    #[error("the reactor is not running")]
    NotRunning,
    /// `run` while the reactor already runs, on the named thread (perhaps started by first use:
    /// call `run` before any entry point, and register setup with `call_when_running`).
    #[error("the reactor is already running on thread '{0}'")]
    AlreadyRunning(String),
    /// `run` after the reactor has run and stopped: it cannot be restarted.
    #[error("the reactor has stopped and cannot be restarted")]
    NotRestartable,
    /// `run` on a thread other than the one that called [`prepare_run`]: the work queued for the
    /// prepared thread's hub could not run here. Call `run` on that thread.
    #[error(
        "reactor::run called on a thread other than the one that called reactor::prepare_run; \
         call run on that thread"
    )]
    NotPreparedThread,
    /// A blocking call made on the reactor thread, where it would wait for itself.
    #[error(
        "blocking_call_from_thread called on the reactor thread: it would wait for itself; \
         call the function directly"
    )]
    OnReactorThread,
}

/// A phase of a system event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Runs first; a trigger may return a `Deferred<()>` that the event waits for.
    Before,
    /// Runs once every `before` Deferred has fired (or the wait timed out).
    During,
    /// Runs last.
    After,
}

/// A reactor event that triggers can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemEvent {
    /// The reactor has started: fired on the reactor thread before the loop serves calls.
    Startup,
    /// The reactor is stopping.
    Shutdown,
}

/// Identifies a trigger, for [`remove_system_event_trigger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TriggerId(u64);

/// What a trigger may return: nothing (`()`), or a `Deferred<()>` (optionally) for the event to
/// wait for. Only `before` triggers are waited for.
pub trait TriggerResult {
    /// The Deferred to wait for, if any.
    fn into_wait(self) -> Option<Deferred<()>>;
}

impl TriggerResult for () {
    fn into_wait(self) -> Option<Deferred<()>> {
        None
    }
}

impl TriggerResult for Deferred<()> {
    fn into_wait(self) -> Option<Deferred<()>> {
        Some(self)
    }
}

impl TriggerResult for Option<Deferred<()>> {
    fn into_wait(self) -> Option<Deferred<()>> {
        self
    }
}

type TriggerFn = Box<dyn FnOnce() -> Option<Deferred<()>> + Send>;

struct Trigger {
    id: u64,
    phase: Phase,
    event: SystemEvent,
    f: TriggerFn,
}

/// Runs the reactor on the calling thread until [`stop`] (Twisted's `reactor.run()`).
///
/// Calls queued before it starts run once it does; the startup triggers (and
/// [`call_when_running`] callables) run first. Returns once the shutdown has completed (see the
/// [module docs](self)). Fails if the reactor already runs (perhaps started on its own thread by
/// an earlier entry point) or has run before, and, after [`prepare_run`], on any other thread
/// than the one that called it ([`ReactorError::NotPreparedThread`]; the reactor is left
/// untouched for that thread to run). Panics if called from a green thread or a hub callback.
///
/// ```no_run
/// use filature::reactor;
///
/// fn main() {
///     reactor::call_when_running(|| {
///         println!("running");
///         reactor::stop().unwrap();
///     })
///     .unwrap();
///     reactor::run().unwrap();
/// }
/// ```
pub fn run() -> Result<(), ReactorError> {
    hub::with_core(|core| crate::green::assert_main_context(core, "reactor::run"));
    {
        let mut l = life();
        match l.state {
            State::Idle => {}
            State::Running | State::Stopping => {
                return Err(ReactorError::AlreadyRunning(
                    l.thread.clone().unwrap_or_default(),
                ))
            }
            State::Stopped => return Err(ReactorError::NotRestartable),
        }
        if l.prepared.is_some_and(|t| t != std::thread::current().id()) {
            // Green threads queued by `reactor::spawn` belong to the prepared thread's hub.
            return Err(ReactorError::NotPreparedThread);
        }
        claim(&mut l);
    }
    serve();
    Ok(())
}

fn claim(l: &mut Life) {
    l.state = State::Running;
    l.blocked.get_or_insert_with(HashMap::new);
}

/// Declares that the calling thread will call [`run`] (eventlib's `join_reactor` import): until
/// it does, entry points queue their work instead of starting the reactor on its own thread.
/// Call it first thing in `main` when other threads may use the reactor before `run`; `run` on
/// any other thread then fails with [`ReactorError::NotPreparedThread`]. Fails if the reactor
/// has been started (or has run) already.
///
/// ```no_run
/// use filature::reactor;
///
/// fn main() {
///     reactor::prepare_run().unwrap();
///     std::thread::spawn(|| reactor::call_from_thread(|| println!("queued")).unwrap());
///     reactor::call_later(std::time::Duration::from_millis(10), || reactor::stop().unwrap())
///         .unwrap();
///     reactor::run().unwrap(); // runs the queued call, then stops
/// }
/// ```
pub fn prepare_run() -> Result<(), ReactorError> {
    let mut l = life();
    match l.state {
        State::Idle => {
            l.prepared = Some(std::thread::current().id());
            l.prepared_hub = Some(hub::current());
            Ok(())
        }
        State::Running | State::Stopping => Err(ReactorError::AlreadyRunning(
            l.thread.clone().unwrap_or_default(),
        )),
        State::Stopped => Err(ReactorError::NotRestartable),
    }
}

/// Starts the reactor on its own thread if nobody has claimed it yet (nor will: `prepare_run`).
/// Called under the lock.
fn ensure_started(l: &mut Life) {
    if l.state != State::Idle || l.prepared.is_some() {
        return;
    }
    claim(l);
    l.thread = Some(THREAD_NAME.to_owned());
    std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        // The scope is the thread's ending: `serve` shuts the hub down itself, and the scope
        // makes sure nothing of it outlives the thread's thread-locals.
        .spawn(|| hub::scope(serve))
        .expect("filature: cannot start the reactor thread");
}

/// The reactor thread's life, from its main context.
fn serve() {
    let me = hub::current();
    {
        let mut l = life();
        l.thread = Some(me.name().to_owned());
        for call in std::mem::take(&mut l.pending) {
            me.call_boxed(call).expect("a fresh hub's inbox is open");
        }
        let _ = HUB.set(me.clone());
        if l.state == State::Stopping {
            me.stop(); // `stop` came before the hub existed
        }
    }
    fire(SystemEvent::Startup);
    hub::run();
    let timeout = {
        let mut l = life();
        // The hub may also have been stopped through its handle: that is a stop too.
        if l.state == State::Running {
            l.state = State::Stopping;
        }
        l.shutdown_timeout
    };
    fire(SystemEvent::Shutdown);
    hub::shutdown_current(timeout);
    delayed::forget_all();
    let blocked = {
        let mut l = life();
        l.state = State::Stopped;
        l.blocked.take()
    };
    for (_, b) in blocked.into_iter().flatten() {
        b.abort();
    }
    tracing::debug!("the reactor has stopped");
}

/// Asks the reactor to stop, from any thread (Twisted's `reactor.stop()`); does not wait. The
/// shutdown runs on the reactor thread as the [module docs](self) describe. Fails if the reactor
/// is not running: never started, or already stopping or stopped.
///
/// ```
/// // The reactor in this doctest was never started.
/// assert_eq!(filature::reactor::stop(), Err(filature::reactor::ReactorError::NotRunning));
/// ```
pub fn stop() -> Result<(), ReactorError> {
    let mut l = life();
    if l.state != State::Running {
        return Err(ReactorError::NotRunning);
    }
    l.state = State::Stopping;
    if let Some(h) = HUB.get() {
        h.stop();
    }
    Ok(())
}

/// True while the reactor runs and has not been asked to stop (Twisted's `reactor.running`).
pub fn is_running() -> bool {
    life().state == State::Running
}

/// True when called on the reactor's thread (while it runs, or after, on that thread).
pub fn is_reactor_thread() -> bool {
    HUB.get().is_some_and(HubHandle::is_current)
}

/// The reactor's hub, if it has started (for [`HubHandle::spawn`], [`HubHandle::spawn_future`]
/// and the like). Does not start it.
pub fn hub() -> Option<HubHandle> {
    HUB.get().cloned()
}

/// How long the shutdown waits for the Deferreds of `before` triggers (and then for green
/// threads to unwind) before going on regardless. Default: 30 s. A timeout too large to add to
/// the clock (`Duration::MAX`) is no limit: the shutdown waits as long as they take.
pub fn set_shutdown_timeout(timeout: Duration) {
    life().shutdown_timeout = timeout;
}

/// Runs `f` on the reactor once it is running (Twisted's `callWhenRunning`): as an `after
/// startup` trigger if it has not started yet, else as soon as possible (as
/// [`call_in_reactor`]). Does not start the reactor. Fails once it is stopping.
///
/// ```
/// use filature::{reactor, sync::Event};
///
/// let ran = Event::new();
/// let r = ran.clone();
/// reactor::call_when_running(move || r.send(()).unwrap()).unwrap();
/// reactor::call_from_thread(|| {}).unwrap(); // first use starts it, if nothing did yet
/// ran.wait().unwrap();
/// ```
pub fn call_when_running(f: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
    {
        let mut l = life();
        match l.state {
            State::Stopping | State::Stopped => return Err(stopped_error()),
            State::Idle | State::Running if !l.fired[SystemEvent::Startup as usize] => {
                add_trigger(
                    &mut l,
                    Phase::After,
                    SystemEvent::Startup,
                    Box::new(move || {
                        f();
                        None
                    }),
                );
                return Ok(());
            }
            _ => {}
        }
    }
    call_in_reactor(f)
}

/// Registers `f` to run on the reactor thread when `event` reaches `phase` (Twisted's
/// `addSystemEventTrigger`). `f` returns `()`, or — useful in a `before` trigger — a
/// `Deferred<()>` (or `Option<Deferred<()>>`) that the event waits for, up to the
/// [shutdown timeout](set_shutdown_timeout). A panicking trigger is logged and the others still
/// run. A trigger added after its event fired never runs. Does not start the reactor.
///
/// ```
/// use filature::deferred::Deferred;
/// use filature::reactor::{self, Phase, SystemEvent};
///
/// // Flush something before the reactor stops, finishing asynchronously.
/// let id = reactor::add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, || {
///     let done = Deferred::new();
///     let d = done.clone();
///     reactor::call_later(std::time::Duration::from_millis(1), move || d.callback(()).unwrap())
///         .unwrap();
///     done
/// });
/// assert!(reactor::remove_system_event_trigger(id));
/// ```
pub fn add_system_event_trigger<F, R>(phase: Phase, event: SystemEvent, f: F) -> TriggerId
where
    F: FnOnce() -> R + Send + 'static,
    R: TriggerResult,
{
    add_trigger(&mut life(), phase, event, Box::new(move || f().into_wait()))
}

fn add_trigger(l: &mut Life, phase: Phase, event: SystemEvent, f: TriggerFn) -> TriggerId {
    let id = l.next_id;
    l.next_id += 1;
    l.triggers.push(Trigger {
        id,
        phase,
        event,
        f,
    });
    TriggerId(id)
}

/// Removes a trigger that has not run. Returns whether it was found.
pub fn remove_system_event_trigger(id: TriggerId) -> bool {
    let removed = {
        let mut l = life();
        l.triggers
            .iter()
            .position(|t| t.id == id.0)
            .map(|i| l.triggers.remove(i))
    };
    removed.is_some() // dropped outside the lock
}

/// Fires `event` on the reactor thread (main context): before (and wait), during, after.
fn fire(event: SystemEvent) {
    let (mine, timeout) = {
        let mut l = life();
        l.fired[event as usize] = true;
        let (mine, rest): (Vec<Trigger>, Vec<Trigger>) = std::mem::take(&mut l.triggers)
            .into_iter()
            .partition(|t| t.event == event);
        l.triggers = rest;
        (mine, l.shutdown_timeout)
    };
    let mut phases: [Vec<Trigger>; 3] = Default::default();
    for t in mine {
        let i = match t.phase {
            Phase::Before => 0,
            Phase::During => 1,
            Phase::After => 2,
        };
        phases[i].push(t);
    }
    let [before, during, after] = phases;
    let waits: Vec<Deferred<()>> = before
        .into_iter()
        .filter_map(|t| run_trigger(event, t))
        .collect();
    wait_for(event, waits, timeout);
    for t in during.into_iter().chain(after) {
        if let Some(d) = run_trigger(event, t) {
            // Not waited for; still observed so a failure is reported once, here.
            d.observe(move |r| log_trigger_failure(event, r));
        }
    }
}

fn run_trigger(event: SystemEvent, t: Trigger) -> Option<Deferred<()>> {
    let phase = t.phase;
    match Failure::catch(t.f) {
        Ok(d) => d,
        Err(f) => {
            tracing::error!("a {phase:?} {event:?} trigger panicked: {f}");
            None
        }
    }
}

fn log_trigger_failure(event: SystemEvent, r: &Result<(), Failure>) {
    if let Err(f) = r {
        tracing::error!("a {event:?} trigger's Deferred failed: {f}");
    }
}

/// Waits (driving the reactor's loop) until every Deferred has fired, or `timeout`.
fn wait_for(event: SystemEvent, waits: Vec<Deferred<()>>, timeout: Duration) {
    if waits.is_empty() {
        return;
    }
    let left = CountdownEvent::new(waits.len());
    for d in &waits {
        let l = left.clone();
        d.observe(move |r| {
            log_trigger_failure(event, r);
            l.count_down();
        });
    }
    if left.wait_timeout(timeout).is_err() {
        tracing::warn!(
            "{} 'before {event:?}' trigger(s) did not finish within {timeout:?}; going on without them",
            left.count()
        );
    }
}

impl fmt::Display for SystemEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SystemEvent::Startup => "startup",
            SystemEvent::Shutdown => "shutdown",
        })
    }
}

/// Registers a blocked caller (see `Abort`); `Err` if the reactor is stopping or stopped. Starts
/// the reactor if nobody has.
fn register_blocked(a: Arc<dyn Abort>) -> Result<u64, Failure> {
    let mut l = life();
    ensure_started(&mut l);
    match l.state {
        State::Running => {}
        // Prepared for `run` on another thread: the call waits for it.
        State::Idle if l.prepared != Some(std::thread::current().id()) => {}
        State::Idle => return Err(Failure::from_error(ReactorError::OnReactorThread)),
        State::Stopping | State::Stopped => return Err(Failure::from_error(stopped_error())),
    }
    let id = l.next_id;
    l.next_id += 1;
    l.blocked.get_or_insert_with(HashMap::new).insert(id, a);
    Ok(id)
}

fn unregister_blocked(id: u64) {
    let a = life().blocked.as_mut().and_then(|b| b.remove(&id));
    drop(a);
}

/// The slow path of posting a call: the hub is not published yet (or the reactor is stopped).
fn post_slow(call: Box<dyn FnOnce() + Send>) -> Result<(), Stopped> {
    let mut l = life();
    if let Some(h) = HUB.get() {
        drop(l);
        return h.call_boxed(call).map_err(|_| stopped_error());
    }
    match l.state {
        State::Idle | State::Running => {
            ensure_started(&mut l);
            l.pending.push(call);
            Ok(())
        }
        State::Stopping | State::Stopped => Err(stopped_error()),
    }
}
