//! The reactor's thread pool (Twisted's `reactor.getThreadPool()`, `callInThread`,
//! `suggestThreadPoolSize`, and `twisted.internet.threads`).
//!
//! # The pool's life
//!
//! One [`ThreadPool`] named `reactor` (threads `filature-pool-reactor-<n>`), `min` 0 and `max`
//! [`DEFAULT_MAX_THREADS`], created on first use of any function here. Creating it hooks it to
//! the reactor's life cycle under the reactor's life-cycle lock, so it cannot miss an event:
//!
//! * it is **started** by an `after startup` trigger (or at once if the reactor has already
//!   started). Work submitted before that waits in the pool's queue;
//! * it is **stopped** by a `during shutdown` trigger: a helper thread runs
//!   [`ThreadPool::stop_timeout`] with the reactor's
//!   [shutdown timeout](super::set_shutdown_timeout) (queued jobs still run), while the reactor
//!   thread waits for it from its main context, so the loop keeps serving calls meanwhile (jobs
//!   that post back to the reactor, `defer_to_thread` deliveries, are not stuck behind the wait).
//!   After the timeout the shutdown goes on with a warning naming the stuck jobs; it never hangs;
//! * created after the reactor has shut down, it is stopped at once: submissions fail with
//!   [`Stopped`].
//!
//! The work entry points ([`call_in_thread`], [`defer_to_thread`], [`call_multiple_in_thread`],
//! [`defer_to_thread_pool`]) start the reactor if nobody has, like the reactor's other entry
//! points; [`thread_pool`] and [`suggest_thread_pool_size`] do not.
//!
//! # `defer_to_thread` and cancellation
//!
//! The job runs `f` under `catch_unwind` on a worker and posts the result to the reactor with
//! [`call_from_thread`](super::call_from_thread), where the Deferred fires. The Deferred has a
//! canceller sharing a small token with the job: `cancel()` marks the token cancelled and removes
//! the job from the pool's queue if no worker has taken it ([`JobHandle::cancel`]); the Deferred
//! then fails with [`Cancelled`](crate::Cancelled) at once, on the cancelling thread. A job that
//! had already started runs to the end, and its result is dropped on the reactor without firing
//! (so no `AlreadyCalled`). A job dropped unrun for any other reason (the pool or the reactor
//! stopped) fails the Deferred with [`Stopped`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::Duration;

use super::{add_trigger, call_from_thread, ensure_started, life, Phase, State, SystemEvent};
use crate::deferred::Deferred;
use crate::failure::panic_message;
use crate::pool::{JobHandle, PoolSizeError, ThreadPool};
use crate::sync::Event;
use crate::{Failure, Stopped};

/// The reactor pool's name: its threads are `filature-pool-reactor-<n>`.
pub const THREAD_POOL_NAME: &str = "reactor";

/// The reactor pool's default maximum number of threads (its minimum is 0).
pub const DEFAULT_MAX_THREADS: usize = 10;

static POOL: OnceLock<ThreadPool> = OnceLock::new();
static HOOKED: Once = Once::new();

/// The reactor's thread pool (Twisted's `reactor.getThreadPool()`): named `reactor` (threads
/// `filature-pool-reactor-<n>`), min 0, max [`DEFAULT_MAX_THREADS`], created on first use. Does
/// not start the reactor.
///
/// It starts when the reactor starts (work submitted earlier waits in its queue) and stops in
/// the reactor's `during shutdown` phase: queued jobs still run, and the reactor waits for the
/// stop at most its [shutdown timeout](super::set_shutdown_timeout) while its loop keeps serving
/// calls, then shuts down regardless (a warning names the stuck jobs). Afterwards it refuses
/// work with [`Stopped`].
///
/// ```
/// use filature::reactor;
///
/// let pool = reactor::thread_pool();
/// assert_eq!(pool.name(), "reactor");
/// assert_eq!(pool.limits().0, 0);
/// ```
pub fn thread_pool() -> &'static ThreadPool {
    let pool = POOL.get_or_init(|| {
        ThreadPool::with_name(THREAD_POOL_NAME, 0, DEFAULT_MAX_THREADS)
            .expect("0..=10 is a valid pool size")
    });
    HOOKED.call_once(|| hook(pool));
    pool
}

/// Registers the pool's start and stop with the reactor, under the life-cycle lock so that an
/// event either has not fired yet (the trigger will run) or has (we act now).
fn hook(pool: &'static ThreadPool) {
    let (started, shut_down) = {
        let mut l = life();
        let started = l.fired[SystemEvent::Startup as usize];
        let shut_down = l.fired[SystemEvent::Shutdown as usize] || l.state == State::Stopped;
        if !started && !shut_down {
            add_trigger(
                &mut l,
                Phase::After,
                SystemEvent::Startup,
                Box::new(move || {
                    start_pool(pool);
                    None
                }),
            );
        }
        if !shut_down {
            add_trigger(
                &mut l,
                Phase::During,
                SystemEvent::Shutdown,
                Box::new(move || {
                    stop_pool(pool);
                    None
                }),
            );
        }
        (started, shut_down)
    };
    if shut_down {
        pool.stop(); // empty and never started: returns at once
    } else if started {
        start_pool(pool);
    }
}

fn start_pool(pool: &ThreadPool) {
    if let Err(e) = pool.start() {
        tracing::debug!("the reactor's thread pool was not started: {e}");
    }
}

/// The `during shutdown` trigger: stop the pool on a helper thread and wait for it, bounded by
/// the shutdown timeout, from the reactor's main context (the loop keeps running).
fn stop_pool(pool: &'static ThreadPool) {
    let timeout = life().shutdown_timeout;
    let done: Event<()> = Event::new();
    let signal = done.clone();
    let helper = std::thread::Builder::new()
        .name("filature-reactor-pool-stop".into())
        .spawn(move || {
            // On a timeout `stop_timeout` logs the stuck jobs itself.
            let _ = pool.stop_timeout(timeout);
            let _ = signal.send(());
        });
    if let Err(e) = helper {
        tracing::warn!("cannot start a thread to stop the reactor's thread pool ({e}); stopping it on the reactor thread");
        let _ = pool.stop_timeout(timeout);
        return;
    }
    // A little slack so the helper's own timeout report comes first.
    if done
        .wait_timeout(timeout.saturating_add(Duration::from_millis(100)))
        .is_err()
    {
        tracing::warn!(
            "the reactor's thread pool did not stop within {timeout:?}; the reactor shuts down without it"
        );
    }
}

/// The pool, with the reactor started if nobody has (for the entry points that submit work).
fn pool_for_work() -> &'static ThreadPool {
    let pool = thread_pool();
    ensure_started(&mut life());
    pool
}

/// Runs `f` on the reactor's thread pool (Twisted's `reactor.callInThread`). A panic in `f` is
/// logged and the worker survives. Work submitted before the reactor runs waits for it; once the
/// reactor has shut down (its pool stopped), [`Stopped`]. Starts the reactor if nobody has.
///
/// ```
/// use filature::{reactor, sync::Event};
///
/// let done = Event::new();
/// let d = done.clone();
/// reactor::call_in_thread(move || {
///     let name = std::thread::current().name().unwrap().to_owned();
///     d.send(name).unwrap();
/// })
/// .unwrap();
/// assert!(done.wait().unwrap().starts_with("filature-pool-reactor-"));
/// ```
pub fn call_in_thread(f: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
    pool_for_work().call_in_thread(f)
}

/// Sets the maximum number of threads of the reactor's pool (Twisted's
/// `reactor.suggestThreadPoolSize`); the minimum is kept. Shrinking takes effect as running jobs
/// end. Errors if `n` is below the pool's minimum or is 0. Does not start the reactor.
///
/// ```
/// use filature::reactor;
///
/// reactor::suggest_thread_pool_size(4).unwrap();
/// assert_eq!(reactor::thread_pool().limits(), (0, 4));
/// assert!(reactor::suggest_thread_pool_size(0).is_err());
/// reactor::suggest_thread_pool_size(reactor::DEFAULT_MAX_THREADS).unwrap();
/// ```
pub fn suggest_thread_pool_size(n: usize) -> Result<(), PoolSizeError> {
    let pool = thread_pool();
    // Read and set are two steps; a concurrent `adjust_pool_size` of the minimum may interleave
    // (the reactor pool's minimum is 0 unless changed through `thread_pool()`).
    let (min, _) = pool.limits();
    pool.adjust_pool_size(min, n)
}

/// Runs `f` on the reactor's thread pool and returns a Deferred of its value (Twisted's
/// `threads.deferToThread`). See [`defer_to_thread_pool`] for the contract.
///
/// ```
/// use filature::{green, reactor};
///
/// let d = reactor::defer_to_thread(|| 6 * 7);
/// assert_eq!(green::block_on(&d).unwrap(), 42);
/// ```
pub fn defer_to_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Deferred<T> {
    defer_to_thread_pool(pool_for_work(), f)
}

/// Runs `f` on `pool` and returns a Deferred of its value (Twisted's
/// `threads.deferToThreadPool(reactor, pool, f)`; filature has one reactor per process, so it is
/// implicit). Starts the reactor if nobody has.
///
/// * The Deferred fires **on the reactor thread**, with the value or the failure — a panic in `f`
///   included (`failure.is_panic()`).
/// * `cancel()` fails it with [`Cancelled`](crate::Cancelled) at once. A job not yet started is
///   removed from the pool's queue and never runs; a job already running finishes, and its result
///   is dropped (the Deferred is not fired again, so there is no `AlreadyCalled`).
/// * If the pool refuses the job (stopped), or the reactor has shut down when the result is
///   ready, the Deferred fails with [`Stopped`] (then not on the reactor thread, which is gone).
///
/// ```
/// use filature::{green, pool::ThreadPool, reactor};
///
/// let pool = ThreadPool::with_name("doc", 0, 1).unwrap(); // not started yet: the job waits
/// let d = reactor::defer_to_thread_pool(&pool, || std::thread::current().name().map(str::to_owned));
/// let seen = d.map(|ran_on| (ran_on, reactor::is_reactor_thread()));
/// pool.start().unwrap();
/// let (ran_on, fired_on_reactor) = green::block_on(&seen).unwrap();
/// assert_eq!(ran_on.as_deref(), Some("filature-pool-doc-1"));
/// assert!(fired_on_reactor);
/// pool.stop();
/// ```
pub fn defer_to_thread_pool<T: Send + 'static>(
    pool: &ThreadPool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Deferred<T> {
    ensure_started(&mut life());
    let token = Arc::new(Mutex::new(Token::default()));
    let t = token.clone();
    let d = Deferred::with_canceller(move |_| {
        let job = {
            let mut g = lock(&t);
            g.cancelled = true;
            g.job.take()
        };
        // Removing the job drops its closure here; its `Delivery` sees `cancelled` and stays
        // silent, so the Deferred fails with `Cancelled` when this returns.
        if let Some(job) = job {
            job.cancel();
        }
    });
    let delivery = Delivery {
        d: Some(d.clone()),
        token: token.clone(),
    };
    let job = move || {
        let delivery = delivery;
        if delivery.cancelled() {
            return; // cancelled between submission and `token.job` being set
        }
        let result = Failure::catch(f);
        // If the reactor refuses the call, dropping it drops `delivery`: `Stopped`.
        let _ = call_from_thread(move || delivery.deliver(result));
    };
    // On `Err` the job (and its `Delivery`) was dropped: the Deferred has failed with `Stopped`.
    if let Ok(handle) = pool.call_in_thread_cancellable(job) {
        let mut g = lock(&token);
        if g.cancelled {
            drop(g);
            handle.cancel();
        } else {
            g.job = Some(handle);
        }
    }
    d
}

/// Shared by a `defer_to_thread` Deferred's canceller and its job.
#[derive(Default)]
struct Token {
    cancelled: bool,
    /// The queued job, until the Deferred fires (the canceller is then dropped with it).
    job: Option<JobHandle>,
}

fn lock(t: &Mutex<Token>) -> MutexGuard<'_, Token> {
    // No user code runs under this lock.
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fires the Deferred on the reactor with the job's result, or, dropped unrun, with `Stopped` —
/// unless the Deferred was cancelled.
struct Delivery<T: Send + 'static> {
    d: Option<Deferred<T>>,
    token: Arc<Mutex<Token>>,
}

impl<T: Send + 'static> Delivery<T> {
    fn cancelled(&self) -> bool {
        lock(&self.token).cancelled
    }

    fn deliver(mut self, result: Result<T, Failure>) {
        let Some(d) = self.d.take() else { return };
        lock(&self.token).job = None;
        if !self.cancelled() {
            // A `cancel` racing with this may still win; its `AlreadyCalled` is ignored, as the
            // late result of a cancelled Deferred is.
            let _ = d.fire(result);
        }
    }
}

impl<T: Send + 'static> Drop for Delivery<T> {
    fn drop(&mut self) {
        if let Some(d) = self.d.take() {
            if !self.cancelled() {
                let _ = d.errback(Failure::from_error(Stopped {
                    what: "the thread pool or the reactor (the job was dropped unrun)".into(),
                }));
            }
        }
    }
}

/// Runs `jobs` one after the other in a single job of the reactor's pool (Twisted's
/// `threads.callMultipleInThread`). A panic is logged and stops the rest (they are dropped
/// unrun). Errors like [`call_in_thread`]; starts the reactor if nobody has.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use filature::{reactor, sync::Event};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let done = Event::new();
/// let (s1, s2, d) = (seen.clone(), seen.clone(), done.clone());
/// reactor::call_multiple_in_thread(vec![
///     Box::new(move || s1.lock().unwrap().push(1)),
///     Box::new(move || s2.lock().unwrap().push(2)),
///     Box::new(move || d.send(()).unwrap()),
/// ])
/// .unwrap();
/// done.wait().unwrap();
/// assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
/// ```
pub fn call_multiple_in_thread(jobs: Vec<Box<dyn FnOnce() + Send>>) -> Result<(), Stopped> {
    pool_for_work().call_in_thread(move || run_in_order(jobs))
}

fn run_in_order(jobs: Vec<Box<dyn FnOnce() + Send>>) {
    let total = jobs.len();
    let mut jobs = jobs.into_iter().enumerate();
    for (i, job) in jobs.by_ref() {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(job)) {
            tracing::error!(
                panic = panic_message(&*payload),
                "call_multiple_in_thread: call {} of {total} panicked; the {} after it are not run",
                i + 1,
                total - i - 1
            );
            break;
        }
    }
    drop(jobs);
}
