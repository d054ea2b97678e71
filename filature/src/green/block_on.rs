//! `block_on`: wait for a `Future` or a `Deferred` from a green thread or a main context.
//!
//! # Invariants
//!
//! * The awaited thing is polled (or, for `&Deferred`, looked at) on the caller's own stack, by
//!   the caller, before anything else: if it is ready the call returns without parking, so it
//!   never yields to other green threads.
//! * Otherwise the caller parks (a green thread) or drives its hub (a main context) through its
//!   `Parker`; the waker — or, for `&Deferred`, an observer — unparks exactly that context, from
//!   any thread. Wake-ups may be spurious: the loop polls / re-checks after each.
//! * `&Deferred<T>` is waited on without consuming: an observer wakes the caller and
//!   `result_now` copies the result, so later callbacks still see it (a failure included, which
//!   also counts as handled).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::park::{unpark, Unparker};
use super::Parker;
use crate::deferred::Deferred;
use crate::Failure;

/// Something [`block_on`] can wait for: any [`Future`] (by value), or a [`Deferred`] by reference.
pub trait BlockOn {
    /// What waiting gives.
    type Output;

    #[doc(hidden)]
    fn block(self) -> Self::Output;
}

impl<F: Future> BlockOn for F {
    type Output = F::Output;

    fn block(self) -> F::Output {
        let mut fut = pin!(self);
        let parker = Parker::current("green::block_on");
        let waker = Waker::from(Arc::new(ParkWaker(parker.unparker().clone())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            parker.park(None);
        }
    }
}

/// Waits for the Deferred to settle and returns a copy of its result, leaving it in place.
impl<T: Clone + Send + 'static> BlockOn for &Deferred<T> {
    type Output = Result<T, Failure>;

    fn block(self) -> Result<T, Failure> {
        super::refuse_in_callback("green::block_on");
        if let Some(r) = self.result_now() {
            return r;
        }
        let parker = Parker::current("green::block_on");
        // True while our observer is registered and has not run yet.
        let armed = Arc::new(AtomicBool::new(false));
        loop {
            if let Some(r) = self.result_now() {
                return r;
            }
            // ORDERING: Acquire pairs with the observer's Release: once it ran, re-arm.
            if !armed.swap(true, Ordering::AcqRel) {
                let (a, u) = (armed.clone(), parker.unparker().clone());
                self.observe(move |_| {
                    // ORDERING: Release, see above.
                    a.store(false, Ordering::Release);
                    unpark(&u);
                });
                continue; // it may have run already
            }
            parker.park(None);
        }
    }
}

struct ParkWaker(Unparker);

impl Wake for ParkWaker {
    fn wake(self: Arc<Self>) {
        unpark(&self.0);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        unpark(&self.0);
    }
}

/// Waits for a [`Future`] or a [`Deferred`] (eventlib's `block_on`), from a green thread (parks
/// it; the hub runs others) or a thread's main context (drives the hub). Panics inside a hub
/// callback, where waiting would stall the loop.
///
/// * A future is polled on the caller's stack; `block_on(fut)` returns its output.
/// * `block_on(&d)` returns a copy of a Deferred's result, `Err(failure)` with the failure's
///   original error type (check it with `failure.is::<E>()`), and leaves the result in place:
///   callbacks added later still see it. Passing a Deferred *by value* awaits it as a future,
///   which moves the result out (like `.await`).
///
/// Either way, if the result is there already it returns without yielding.
///
/// ```
/// use filature::{deferred::Deferred, green, Failure, TimedOut};
///
/// // A future.
/// assert_eq!(green::block_on(async { 6 * 7 }), 42);
///
/// // A Deferred that fails later, from another green thread: the failure keeps its type and
/// // stays visible to callbacks added afterwards.
/// let d = Deferred::<u32>::new();
/// let e = d.clone();
/// green::spawn(move || e.errback(Failure::from_error(TimedOut)).unwrap());
/// let failure = green::block_on(&d).unwrap_err();
/// assert!(failure.is::<TimedOut>());
/// assert!(d.result_now().unwrap().unwrap_err().is::<TimedOut>());
/// ```
pub fn block_on<W: BlockOn>(waitable: W) -> W::Output {
    waitable.block()
}
