//! The public face of [`Deferred`]: firing, adding callbacks, type-changing links, cancellation,
//! peeking, and `Future`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::chain::{Phase, Shared, Step};
use super::errors::ResultTaken;
use super::trampoline;
use crate::{AlreadyCalled, Failure};

/// A result that will arrive later, with a chain of callbacks to process it (Twisted's
/// `Deferred`, typed).
///
/// A `Deferred<T>` is a cheap handle (`Clone` shares the same Deferred); it is `Send + Sync` when
/// `T: Send`. Its result is `Result<T, Failure>`. See the [module documentation](super) for the
/// state machine and the mapping from Twisted.
///
/// ```
/// use filature::deferred::{Deferred, Outcome};
///
/// let d = Deferred::<u32>::new();
/// d.add_callback(|v| Outcome::Value(v + 1))
///     .add_callback(|v| Outcome::Value(v * 10));
/// d.callback(4).unwrap();
/// assert_eq!(d.result_now().unwrap().unwrap(), 50);
/// ```
pub struct Deferred<T: 'static> {
    pub(super) shared: Arc<Shared<T>>,
}

/// What a callback hands to the next link of the chain: a value, a failure, or another Deferred
/// whose result the chain waits for (Twisted lets a callback return any of the three).
///
/// ```
/// use filature::deferred::{Deferred, Outcome};
/// use filature::{Cancelled, Failure};
///
/// let inner = Deferred::<u32>::new();
/// let outer = Deferred::<u32>::new();
/// let waited = inner.clone();
/// outer.add_callback(move |_| Outcome::Wait(waited));
/// outer.add_errback(|f| Outcome::Value(if f.is::<Cancelled>() { 7 } else { 0 }));
/// outer.callback(1).unwrap();
/// assert!(outer.result_now().is_none()); // paused, waiting on `inner`
/// inner.errback(Failure::from_error(Cancelled)).unwrap();
/// assert_eq!(outer.result_now().unwrap().unwrap(), 7);
/// ```
pub enum Outcome<T: 'static> {
    /// Continue with this value (Twisted: return a plain value).
    Value(T),
    /// Continue with this failure (Twisted: raise, or return a `Failure`).
    Failure(Failure),
    /// Pause until this Deferred fires, then continue with its result (Twisted: return a
    /// Deferred). Its result is moved into this chain.
    Wait(Deferred<T>),
}

impl<T: 'static> Outcome<T> {
    /// A failure made from an error value.
    ///
    /// ```
    /// use filature::deferred::{Deferred, Outcome};
    ///
    /// let d = Deferred::<u32>::new();
    /// d.add_callback(|_| Outcome::error(std::io::Error::other("no")));
    /// d.callback(1).unwrap();
    /// assert!(d.result_now().unwrap().unwrap_err().is::<std::io::Error>());
    /// ```
    pub fn error<E>(error: E) -> Outcome<T>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Outcome::Failure(Failure::from_error(error))
    }
}

impl<T: 'static> From<Result<T, Failure>> for Outcome<T> {
    fn from(result: Result<T, Failure>) -> Outcome<T> {
        match result {
            Ok(v) => Outcome::Value(v),
            Err(e) => Outcome::Failure(e),
        }
    }
}

impl<T: 'static> From<Failure> for Outcome<T> {
    fn from(failure: Failure) -> Outcome<T> {
        Outcome::Failure(failure)
    }
}

impl<T: 'static> From<Deferred<T>> for Outcome<T> {
    fn from(deferred: Deferred<T>) -> Outcome<T> {
        Outcome::Wait(deferred)
    }
}

impl<T: 'static> fmt::Debug for Outcome<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Value(_) => f.write_str("Outcome::Value(..)"),
            Outcome::Failure(e) => f.debug_tuple("Outcome::Failure").field(e).finish(),
            Outcome::Wait(d) => f.debug_tuple("Outcome::Wait").field(d).finish(),
        }
    }
}

impl<T: Send + 'static> Deferred<T> {
    /// A Deferred that has not fired yet, without a canceller.
    ///
    /// ```
    /// let d = filature::deferred::Deferred::<String>::new();
    /// assert!(!d.is_called());
    /// ```
    pub fn new() -> Deferred<T> {
        Deferred {
            shared: Arc::new(Shared::new(None)),
        }
    }

    /// A Deferred whose [`cancel`](Deferred::cancel) first calls `canceller` (Twisted's
    /// `Deferred(canceller)`). The canceller may fire the Deferred itself (for example with its own
    /// error); if it does not, the Deferred fails with [`Cancelled`](crate::Cancelled). The
    /// canceller runs at most once, and is dropped when the Deferred fires.
    ///
    /// ```
    /// use filature::deferred::Deferred;
    /// use filature::{Failure, TimedOut};
    ///
    /// let d = Deferred::<u32>::with_canceller(|d| {
    ///     d.errback(Failure::from_error(TimedOut)).unwrap();
    /// });
    /// d.cancel();
    /// assert!(d.result_now().unwrap().unwrap_err().is::<TimedOut>());
    /// ```
    pub fn with_canceller(canceller: impl FnOnce(&Deferred<T>) + Send + 'static) -> Deferred<T> {
        Deferred {
            shared: Arc::new(Shared::new(Some(Box::new(canceller)))),
        }
    }

    /// Fires the Deferred with a value and runs its callbacks on this thread before returning.
    ///
    /// A second firing returns [`AlreadyCalled`] (and drops `value`) — except the first firing
    /// after a [`cancel`](Deferred::cancel) without canceller, which is silently ignored.
    ///
    /// ```
    /// use filature::deferred::Deferred;
    /// use filature::AlreadyCalled;
    ///
    /// let d = Deferred::new();
    /// assert_eq!(d.callback(1), Ok(()));
    /// assert_eq!(d.callback(2), Err(AlreadyCalled));
    /// assert_eq!(d.result_now().unwrap().unwrap(), 1);
    /// ```
    pub fn callback(&self, value: T) -> Result<(), AlreadyCalled> {
        self.fire(Ok(value))
    }

    /// Fires the Deferred with a failure; otherwise like [`callback`](Deferred::callback).
    ///
    /// ```
    /// use filature::deferred::Deferred;
    /// use filature::{Cancelled, Failure};
    ///
    /// let d = Deferred::<u32>::new();
    /// d.errback(Failure::from_error(Cancelled)).unwrap();
    /// assert!(d.result_now().unwrap().unwrap_err().is::<Cancelled>());
    /// ```
    pub fn errback(&self, failure: Failure) -> Result<(), AlreadyCalled> {
        self.fire(Err(failure))
    }

    /// Fires the Deferred with a value or a failure; otherwise like
    /// [`callback`](Deferred::callback). Handy for bridges that already hold a `Result`.
    ///
    /// ```
    /// let d = filature::deferred::Deferred::new();
    /// d.fire(Ok("done")).unwrap();
    /// assert_eq!(d.result_now().unwrap().unwrap(), "done");
    /// ```
    pub fn fire(&self, result: Result<T, Failure>) -> Result<(), AlreadyCalled> {
        trampoline::in_scope(|| self.fire_raw(result))
    }

    /// Adds a callback for the success path; a failure skips it and passes on unchanged. Runs at
    /// once if the Deferred has fired (and is not paused).
    ///
    /// ```
    /// use filature::deferred::{succeed, Outcome};
    ///
    /// let d = succeed(2);
    /// d.add_callback(|v| Outcome::Value(v * 21));
    /// assert_eq!(d.result_now().unwrap().unwrap(), 42);
    /// ```
    pub fn add_callback(&self, f: impl FnOnce(T) -> Outcome<T> + Send + 'static) -> &Self {
        self.push_step(Step::Callbacks {
            on_value: Some(Box::new(f)),
            on_failure: None,
        });
        self
    }

    /// Adds an errback for the failure path; a value skips it and passes on unchanged. Return
    /// `Outcome::Value` to recover, `Outcome::Failure` to pass a failure on.
    ///
    /// ```
    /// use filature::deferred::{fail, Outcome};
    /// use filature::{Cancelled, Failure};
    ///
    /// let d = fail::<u32>(Failure::from_error(Cancelled));
    /// d.add_errback(|f| match f.is::<Cancelled>() {
    ///     true => Outcome::Value(0),
    ///     false => Outcome::Failure(f),
    /// });
    /// assert_eq!(d.result_now().unwrap().unwrap(), 0);
    /// ```
    pub fn add_errback(&self, f: impl FnOnce(Failure) -> Outcome<T> + Send + 'static) -> &Self {
        self.push_step(Step::Callbacks {
            on_value: None,
            on_failure: Some(Box::new(f)),
        });
        self
    }

    /// Adds one link with a callback and an errback: exactly one of them runs (Twisted's
    /// `addCallbacks`; unlike `add_callback(..).add_errback(..)`, the errback does not see a
    /// failure raised by the callback).
    ///
    /// ```
    /// use filature::deferred::{Deferred, Outcome};
    /// use filature::Failure;
    ///
    /// let d = Deferred::<i32>::new();
    /// d.add_callbacks(
    ///     |v| Outcome::error(std::io::Error::other(v.to_string())),
    ///     |_| Outcome::Value(-1),
    /// );
    /// d.callback(3).unwrap();
    /// assert_eq!(d.result_now().unwrap().unwrap_err().to_string(), "3");
    /// ```
    pub fn add_callbacks(
        &self,
        on_value: impl FnOnce(T) -> Outcome<T> + Send + 'static,
        on_failure: impl FnOnce(Failure) -> Outcome<T> + Send + 'static,
    ) -> &Self {
        self.push_step(Step::Callbacks {
            on_value: Some(Box::new(on_value)),
            on_failure: Some(Box::new(on_failure)),
        });
        self
    }

    /// Adds a link that runs on either path and gets the whole `Result` (Twisted's `addBoth`).
    ///
    /// ```
    /// use filature::deferred::{succeed, Outcome};
    ///
    /// let d = succeed(5);
    /// d.add_both(|r| Outcome::Value(r.map_or(0, |v| v + 1)));
    /// assert_eq!(d.result_now().unwrap().unwrap(), 6);
    /// ```
    pub fn add_both(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Outcome<T> + Send + 'static,
    ) -> &Self {
        self.push_step(Step::Both(Box::new(f)));
        self
    }

    /// Cancels the Deferred (Twisted's `cancel`).
    ///
    /// - Not fired yet: runs the canceller, if any; if the Deferred is still not fired, fails it
    ///   with [`Cancelled`](crate::Cancelled). Without a canceller, the next `callback`/`errback`
    ///   (the real result arriving late) is then ignored once instead of being `AlreadyCalled`.
    /// - Paused waiting on an inner Deferred: cancels the inner one (and so on, inward).
    /// - Otherwise: does nothing.
    ///
    /// ```
    /// use filature::deferred::Deferred;
    /// use filature::Cancelled;
    ///
    /// let d = Deferred::<u32>::new();
    /// d.cancel();
    /// assert!(d.result_now().unwrap().unwrap_err().is::<Cancelled>());
    /// assert_eq!(d.callback(1), Ok(())); // the late result is ignored
    /// ```
    pub fn cancel(&self) {
        let me = self.clone();
        trampoline::run_cancel(Box::new(move || me.cancel_step()));
    }

    /// True once `callback`/`errback` (or a cancellation) has fired the Deferred, even if its
    /// chain is paused on an inner Deferred (Twisted's `called`).
    ///
    /// ```
    /// let d = filature::deferred::Deferred::new();
    /// assert!(!d.is_called());
    /// d.callback(()).unwrap();
    /// assert!(d.is_called());
    /// ```
    pub fn is_called(&self) -> bool {
        self.shared.state.lock().phase != Phase::Pending
    }

    /// Calls `f` with the result once the chain has run up to this point, and passes the result on
    /// unchanged. A failure seen by an observer counts as handled: it will not be logged as
    /// "Unhandled error in Deferred". Runs at once if the Deferred has settled. Made for bridges
    /// (waking a waiter, recording an outcome) that must not consume the result. If the result was
    /// taken by an earlier consumer, `f` sees a [`ResultTaken`] failure. A panic in `f` is logged.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use filature::deferred::Deferred;
    ///
    /// let d = Deferred::<u32>::new();
    /// let (tx, rx) = mpsc::channel();
    /// d.observe(move |r| tx.send(r.as_ref().ok().copied()).unwrap());
    /// d.callback(9).unwrap();
    /// assert_eq!(rx.recv().unwrap(), Some(9));
    /// assert_eq!(d.result_now().unwrap().unwrap(), 9); // still there
    /// ```
    pub fn observe(&self, f: impl FnOnce(&Result<T, Failure>) + Send + 'static) -> &Self {
        self.push_step(Step::Observe(Box::new(f)));
        self
    }

    /// A copy of the result if the Deferred has settled (fired and not paused on an inner
    /// Deferred); `None` otherwise. A failure returned here counts as handled. If a consumer took
    /// the result, returns a [`ResultTaken`] failure.
    ///
    /// ```
    /// let d = filature::deferred::Deferred::new();
    /// assert_eq!(d.result_now().map(|r| r.ok()), None);
    /// d.callback(3).unwrap();
    /// assert_eq!(d.result_now().unwrap().unwrap(), 3);
    /// ```
    pub fn result_now(&self) -> Option<Result<T, Failure>>
    where
        T: Clone,
    {
        let mut state = self.shared.state.lock();
        if state.phase != Phase::Settled {
            return None;
        }
        let result = match &state.result {
            Some(r) => r.clone(),
            None => Err(Failure::from_error(ResultTaken)),
        };
        state.handled |= result.is_err();
        Some(result)
    }

    /// Moves the result out if the Deferred has settled (like `await`, without a waker): later
    /// steps see [`ResultTaken`]. `None` if it has not settled.
    ///
    /// ```
    /// let d = filature::deferred::succeed(vec![1, 2]);
    /// assert_eq!(d.take_result().unwrap().unwrap(), vec![1, 2]);
    /// assert!(d.take_result().unwrap().is_err());
    /// ```
    pub fn take_result(&self) -> Option<Result<T, Failure>> {
        self.try_take_settled()
    }
}

impl<T: Send + 'static> Default for Deferred<T> {
    fn default() -> Deferred<T> {
        Deferred::new()
    }
}

impl<T: 'static> Clone for Deferred<T> {
    /// Another handle to the same Deferred.
    fn clone(&self) -> Deferred<T> {
        Deferred {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: 'static> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.lock();
        let phase = match (state.phase, &state.result) {
            (Phase::Pending, _) => "pending",
            (Phase::Running, _) => "running",
            (Phase::Waiting, _) => "waiting",
            (Phase::Settled, Some(Ok(_))) => "succeeded",
            (Phase::Settled, Some(Err(_))) => "failed",
            (Phase::Settled, None) => "taken",
        };
        f.debug_struct("Deferred").field("state", &phase).finish()
    }
}

/// Awaiting a Deferred waits until it settles and moves its result out (so a failure is observed,
/// not logged as unhandled). It may fire on any thread: the stored waker is woken.
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::sync::Arc;
/// use std::task::{Context, Poll, Wake, Waker};
/// use filature::deferred::Deferred;
///
/// struct Noop;
/// impl Wake for Noop {
///     fn wake(self: Arc<Self>) {}
/// }
///
/// let d = Deferred::<u32>::new();
/// let mut fut = pin!(d.clone());
/// let waker = Waker::from(Arc::new(Noop));
/// let mut cx = Context::from_waker(&waker);
/// assert!(fut.as_mut().poll(&mut cx).is_pending());
/// std::thread::spawn(move || d.callback(5).unwrap()).join().unwrap();
/// assert!(matches!(fut.poll(&mut cx), Poll::Ready(Ok(5))));
/// ```
impl<T: Send + 'static> Future for Deferred<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.state.lock();
        if state.phase == Phase::Settled {
            let result = state
                .result
                .take()
                .unwrap_or_else(|| Err(Failure::from_error(ResultTaken)));
            return Poll::Ready(result);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A Deferred that has already succeeded with `value` (Twisted's `succeed`).
///
/// ```
/// let d = filature::deferred::succeed("ok");
/// assert!(d.is_called());
/// assert_eq!(d.result_now().unwrap().unwrap(), "ok");
/// ```
pub fn succeed<T: Send + 'static>(value: T) -> Deferred<T> {
    let d = Deferred::new();
    let _ = d.fire_raw(Ok(value));
    d
}

/// A Deferred that has already failed with `failure` (Twisted's `fail`). Like any failed
/// Deferred, it logs "Unhandled error in Deferred" if dropped without anyone handling the failure.
///
/// ```
/// use filature::{Failure, TimedOut};
///
/// let d = filature::deferred::fail::<()>(Failure::from_error(TimedOut));
/// assert!(d.result_now().unwrap().unwrap_err().is::<TimedOut>());
/// ```
pub fn fail<T: Send + 'static>(failure: Failure) -> Deferred<T> {
    let d = Deferred::new();
    let _ = d.fire_raw(Err(failure));
    d
}

/// Runs `f` now and wraps what it gives in a Deferred (Twisted's `maybeDeferred`): a value → a
/// succeeded Deferred, a failure → a failed one, a Deferred → that Deferred, a panic → a failed
/// Deferred carrying the panic.
///
/// ```
/// use filature::deferred::{maybe_deferred, Outcome};
///
/// let d = maybe_deferred(|| -> Outcome<u32> { panic!("bad input") });
/// let failure = d.result_now().unwrap().unwrap_err();
/// assert_eq!(failure.panic_message(), Some("bad input"));
/// ```
pub fn maybe_deferred<T: Send + 'static>(f: impl FnOnce() -> Outcome<T>) -> Deferred<T> {
    match Failure::catch(f) {
        Ok(Outcome::Value(v)) => succeed(v),
        Ok(Outcome::Failure(e)) | Err(e) => fail(e),
        Ok(Outcome::Wait(d)) => d,
    }
}
