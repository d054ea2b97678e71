//! The reactor's entry points for work: posting calls, green threads, and blocking calls.
//!
//! # Invariants
//!
//! * Every entry point here starts the reactor if nobody has (see the module docs of
//!   [`reactor`](super)), and either accepts the work — it will run, exactly once — or returns
//!   [`Stopped`] (for Deferred-returning ones, a Deferred failed with it).
//! * A blocking call is registered with the reactor (`register_blocked`) *before* its work is
//!   posted and unregistered when its caller is done with it: after the wait, or when the caller
//!   unwinds out of it (a killed green thread, an expired `with_timeout`), by a drop guard. The
//!   registration holds the call's answer slot, so without the guard an abandoned call's value
//!   would live until the reactor stops. The reactor fails every still-registered call with
//!   `Stopped` as the last step of its shutdown, after the calls it accepted have run, so a
//!   blocking caller gets a value, a failure, a timeout or `Stopped` — never an endless wait.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{
    post_slow, register_blocked, stopped_error, unregister_blocked, Abort, ReactorError, HUB,
};
use crate::deadline::deadline_after;
use crate::deferred::Deferred;
use crate::green::{self, JoinError};
use crate::hub;
use crate::sync::oneshot::Oneshot;
use crate::{Failure, Stopped, TimedOut};

/// Runs `f` on the reactor thread, as a hub callback, at its next pass (Twisted's
/// `callFromThread`). From any thread, including the reactor's own (the call then runs in a later
/// pass, never inline).
///
/// Calls from one thread run in the order they were made; every accepted call runs exactly once,
/// even if the reactor is asked to stop meanwhile. A panic in `f` is logged and the reactor goes
/// on. Calls made before the reactor runs wait for it; after its inbox has closed (shutdown) they
/// fail with [`Stopped`]. Starts the reactor if nobody has. Costs one allocation (none more if
/// `f` is already a `Box<dyn FnOnce() + Send>`) and, while the reactor is busy, no syscall.
///
/// ```
/// use filature::{reactor, sync::Event};
///
/// let done = Event::new();
/// let d = done.clone();
/// reactor::call_from_thread(move || d.send(reactor::is_reactor_thread()).unwrap()).unwrap();
/// assert!(done.wait().unwrap());
/// ```
pub fn call_from_thread(f: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
    let call = hub::box_call(f);
    match HUB.get() {
        Some(h) => h.call_boxed(call).map_err(|_| stopped_error()),
        None => post_slow(call),
    }
}

/// Runs `f` on the reactor: inline, now, when called on the reactor thread; otherwise as
/// [`call_from_thread`] (SIP SIMPLE's `call_in_twisted_thread`). Once the reactor has shut down
/// it fails with [`Stopped`], on its thread too.
///
/// ```
/// use filature::{reactor, sync::Event};
///
/// let order = Event::new();
/// let o = order.clone();
/// reactor::call_from_thread(move || {
///     let mut seen = vec![];
///     reactor::call_in_reactor(|| {}).unwrap(); // inline here
///     seen.push("after inline call");
///     o.send(seen).unwrap();
/// })
/// .unwrap();
/// assert_eq!(order.wait().unwrap(), vec!["after inline call"]);
/// ```
pub fn call_in_reactor(f: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
    if let Some(h) = HUB.get().filter(|h| h.is_current()) {
        if h.is_closed() {
            return Err(stopped_error());
        }
        f();
        Ok(())
    } else {
        call_from_thread(f)
    }
}

/// Runs `f` in a new green thread on the reactor (SIP SIMPLE's `call_in_green_thread`); returns
/// at once. A panic in `f` is logged ("green thread panicked and nobody joined it"). Before the
/// reactor runs the green thread waits for it; once it has stopped, [`Stopped`].
///
/// ```
/// use filature::{green, reactor, sync::Event};
///
/// let done = Event::new();
/// let d = done.clone();
/// reactor::call_in_green_thread(move || {
///     green::sleep(std::time::Duration::from_millis(1)); // green threads may block
///     d.send(()).unwrap();
/// })
/// .unwrap();
/// done.wait().unwrap();
/// ```
pub fn call_in_green_thread(f: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
    call_in_reactor(move || drop(green::spawn(f)))
}

/// Spawns `f` as a green thread on the reactor and returns its
/// [`JoinHandle`](green::JoinHandle) at once (SIP SIMPLE's `run_in_waitable_green_thread`). The
/// handle can be joined from any context: a green thread on any hub, a thread's main context,
/// another OS thread. `join` gives the value or
/// re-raises the panic; `join_result`/`join_timeout` give them as values.
///
/// Starts the reactor if nobody has (waiting the moment its thread needs to publish its hub).
/// Before [`run`](super::run) on a thread that called [`prepare_run`](super::prepare_run), the
/// green thread is queued and starts when the reactor runs. Once the reactor has stopped, or if
/// its shutdown kills the green thread, the handle reports [`JoinError::Killed`].
///
/// ```
/// use filature::{green, reactor};
///
/// let h = reactor::spawn(|| {
///     green::sleep(std::time::Duration::from_millis(1));
///     reactor::is_reactor_thread()
/// });
/// assert!(h.join());
/// ```
pub fn spawn<F, T>(f: F) -> green::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let builder = green::Builder::new();
    let hub = match HUB.get() {
        Some(h) => h.clone(),
        None => {
            let mut l = super::life();
            match (HUB.get(), l.state, l.prepared_hub.clone()) {
                (Some(h), ..) => h.clone(),
                (None, super::State::Stopping | super::State::Stopped, _) => {
                    drop(l);
                    return never_started(&hub::current(), f);
                }
                (None, _, Some(prepared)) => {
                    // `serve` moves `pending` into the hub's inbox when `run` starts.
                    return builder
                        .spawn_posted(
                            &prepared,
                            |job| {
                                l.pending.push(job);
                                Ok(())
                            },
                            f,
                        )
                        .expect("queueing cannot fail");
                }
                (None, _, None) => {
                    super::ensure_started(&mut l);
                    drop(l);
                    match wait_for_hub() {
                        Some(h) => h,
                        None => return never_started(&hub::current(), f),
                    }
                }
            }
        }
    };
    if hub.is_current() && !hub.is_closed() {
        return builder.spawn(f);
    }
    // A refused post drops the start job, which reports `Killed` to the handle.
    builder
        .spawn_posted(
            &hub,
            |job| {
                let _ = hub.call_boxed(job);
                Ok(())
            },
            f,
        )
        .expect("the post closure never fails")
}

/// A handle for a green thread that will never start: it reports [`JoinError::Killed`].
fn never_started<F, T>(hub: &hub::HubHandle, f: F) -> green::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    green::Builder::new()
        .spawn_posted(
            hub,
            |job| {
                drop(job);
                Ok(())
            },
            f,
        )
        .expect("the post closure never fails")
}

/// Waits for the reactor thread that `ensure_started` just started to publish its hub (it does
/// so before running anything). Bounded, so a reactor thread that cannot start is not a hang.
fn wait_for_hub() -> Option<hub::HubHandle> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_micros(20);
    loop {
        if let Some(h) = HUB.get() {
            return Some(h.clone());
        }
        if Instant::now() >= deadline {
            tracing::error!("the reactor thread did not start within 10 s");
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Runs `f` in a new green thread on the reactor and returns a Deferred of its value (eventlib's
/// `deferToGreenThread`). The Deferred fires on the reactor thread: with the value, with the panic
/// as a failure, with a [`JoinError`] failure if the green thread is killed (a reactor shutdown
/// kills the green threads still running), or with [`Stopped`] if the reactor has stopped.
///
/// ```
/// use filature::{green, reactor};
///
/// let d = reactor::defer_to_green_thread(|| {
///     green::sleep(std::time::Duration::from_millis(1));
///     6 * 7
/// });
/// assert_eq!(green::block_on(&d).unwrap(), 42);
/// ```
pub fn defer_to_green_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Deferred<T> {
    let d = Deferred::new();
    let fire = FireOnDrop(Some(d.clone()));
    // If the reactor refuses the call, dropping it drops `fire`, which fails `d` with `Stopped`.
    let _ = call_in_reactor(move || {
        drop(green::spawn(move || {
            let mut fire = fire;
            let r = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(v) => Ok(v),
                Err(p) if p.is::<green::thread::KillUnwind>() => {
                    // A kill keeps unwinding to the green thread's boundary; `fire` fails the
                    // Deferred on the way.
                    std::panic::resume_unwind(p)
                }
                Err(p) => Err(match green::thread::classify(p) {
                    JoinError::Panicked(f) => f,
                    JoinError::Killed => unreachable!("kills are resumed above"),
                }),
            };
            if let Some(d) = fire.0.take() {
                let _ = d.fire(r);
            }
        }))
    });
    d
}

/// Fails the Deferred if the work that should fire it is dropped without running (a reactor that
/// stopped, a green thread killed before or while running).
struct FireOnDrop<T: Send + 'static>(Option<Deferred<T>>);

impl<T: Send + 'static> Drop for FireOnDrop<T> {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let failure = if std::thread::panicking() {
                Failure::from_error(JoinError::Killed)
            } else {
                Failure::from_error(stopped_error())
            };
            let _ = d.errback(failure);
        }
    }
}

/// Runs `f` on the reactor and waits for its value (Twisted's `blockingCallFromThread`), from any
/// thread but the reactor's: a plain thread blocks (driving its own hub), a green thread on
/// another hub parks.
///
/// A panic in `f` comes back as a panic [`Failure`]. Fails at once — never hangs — when called on
/// the reactor thread ([`ReactorError::OnReactorThread`]) or when the reactor is stopping or
/// stopped ([`Stopped`]); a call it accepted still gets its answer, or `Stopped` if the reactor
/// stops first. Starts the reactor if nobody has. Check the failure's kind with
/// `failure.is::<E>()`.
///
/// For a function that returns a [`Deferred`] or a [`Future`] to wait for, see
/// [`blocking_call_from_thread_deferred`] and [`blocking_call_from_thread_future`].
///
/// ```
/// use filature::{reactor, Failure};
///
/// assert_eq!(reactor::blocking_call_from_thread(|| 6 * 7).unwrap(), 42);
///
/// let f: Failure = reactor::blocking_call_from_thread(|| -> u32 { panic!("nope") }).unwrap_err();
/// assert_eq!(f.panic_message(), Some("nope"));
/// ```
pub fn blocking_call_from_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    blocking(None, move |slot| {
        let _ = slot.fill(Failure::catch(f));
    })
}

/// [`blocking_call_from_thread`] that gives up after `timeout` with a [`TimedOut`] failure. The
/// call may still run later; its value is then dropped. A `timeout` too large to add to the
/// clock (`Duration::MAX`) is no limit (the `_timeout` variants below all treat it so).
///
/// ```
/// use std::time::Duration;
/// use filature::{reactor, TimedOut};
///
/// let r = reactor::blocking_call_from_thread_timeout(Duration::from_secs(5), || "quick");
/// assert_eq!(r.unwrap(), "quick");
/// ```
pub fn blocking_call_from_thread_timeout<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    blocking(Some(timeout), move |slot| {
        let _ = slot.fill(Failure::catch(f));
    })
}

/// Like [`blocking_call_from_thread`] for a function that returns a [`Deferred`]: waits for the
/// Deferred to fire and returns its value, or its failure (with the failure's own error type).
///
/// ```
/// use std::time::Duration;
/// use filature::{deferred::Deferred, reactor, TimedOut, Failure};
///
/// let v = reactor::blocking_call_from_thread_deferred(|| {
///     let d = Deferred::new();
///     let d2 = d.clone();
///     reactor::call_later(Duration::from_millis(1), move || d2.callback(7).unwrap()).unwrap();
///     d
/// });
/// assert_eq!(v.unwrap(), 7);
///
/// let e = reactor::blocking_call_from_thread_deferred(|| {
///     filature::deferred::fail::<()>(Failure::from_error(TimedOut))
/// });
/// assert!(e.unwrap_err().is::<TimedOut>());
/// ```
pub fn blocking_call_from_thread_deferred<T: Send + 'static>(
    f: impl FnOnce() -> Deferred<T> + Send + 'static,
) -> Result<T, Failure> {
    blocking(None, move |slot| start_deferred(f, slot))
}

/// [`blocking_call_from_thread_deferred`] with a time limit ([`TimedOut`] failure).
pub fn blocking_call_from_thread_deferred_timeout<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Deferred<T> + Send + 'static,
) -> Result<T, Failure> {
    blocking(Some(timeout), move |slot| start_deferred(f, slot))
}

/// Like [`blocking_call_from_thread`] for a function that returns a [`Future`]: the future runs
/// on the reactor's hub (it need not be `Send`: it is made there) and its output comes back. A
/// panic while polling it comes back as a panic failure.
///
/// ```
/// use std::rc::Rc;
/// use filature::reactor;
///
/// let v = reactor::blocking_call_from_thread_future(|| {
///     let local = Rc::new(20); // made on the reactor, never leaves it
///     async move { *local + 22 }
/// });
/// assert_eq!(v.unwrap(), 42);
/// ```
pub fn blocking_call_from_thread_future<F, Fut>(f: F) -> Result<Fut::Output, Failure>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    blocking(None, move |slot| start_future(f, slot))
}

/// [`blocking_call_from_thread_future`] with a time limit ([`TimedOut`] failure).
pub fn blocking_call_from_thread_future_timeout<F, Fut>(
    timeout: Duration,
    f: F,
) -> Result<Fut::Output, Failure>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    blocking(Some(timeout), move |slot| start_future(f, slot))
}

type Slot<T> = Arc<Oneshot<Result<T, Failure>>>;

impl<T: Send> Abort for Oneshot<Result<T, Failure>> {
    fn abort(&self) {
        let _ = self.fill(Err(Failure::from_error(stopped_error())));
    }
}

fn start_deferred<T: Send + 'static>(f: impl FnOnce() -> Deferred<T>, slot: Slot<T>) {
    match Failure::catch(f) {
        Ok(d) => drop(hub::spawn_future(async move {
            let _ = slot.fill(d.await);
        })),
        Err(e) => {
            let _ = slot.fill(Err(e));
        }
    }
}

fn start_future<Fut>(f: impl FnOnce() -> Fut, slot: Slot<Fut::Output>)
where
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    match Failure::catch(f) {
        Ok(fut) => drop(hub::spawn_future(async move {
            let _ = slot.fill(CatchUnwind(Box::pin(fut)).await);
        })),
        Err(e) => {
            let _ = slot.fill(Err(e));
        }
    }
}

/// Polls the inner future, turning a panic into a failure.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(Failure::from_panic(p))),
        }
    }
}

/// A blocking call's registration with the reactor, ended when its caller is done with the call,
/// however it leaves (returns or unwinds).
struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        unregister_blocked(self.0);
    }
}

/// The shared body of the blocking calls: `start` runs on the reactor and fills the slot (now or
/// later); the caller waits for it.
fn blocking<T: Send + 'static>(
    timeout: Option<Duration>,
    start: impl FnOnce(Slot<T>) + Send + 'static,
) -> Result<T, Failure> {
    if super::is_reactor_thread() {
        return Err(Failure::from_error(ReactorError::OnReactorThread));
    }
    // Before posting anything: in a hub callback the wait would panic, whether or not the
    // answer came first; refuse the whole call there, every time.
    crate::green::refuse_in_callback("reactor::blocking_call_from_thread");
    // A timeout too large to add to the clock is no limit.
    let deadline = timeout.and_then(deadline_after);
    let slot: Slot<T> = Arc::new(Oneshot::new());
    let registered = Registered(register_blocked(slot.clone())?);
    let s = slot.clone();
    if let Err(e) = call_from_thread(move || start(s)) {
        return Err(Failure::from_error(e));
    }
    let filled = slot.wait("reactor::blocking_call_from_thread", deadline);
    drop(registered);
    if !filled {
        return Err(Failure::from_error(TimedOut));
    }
    slot.try_take()
        .expect("a blocking call's answer is taken only by its caller")
}
