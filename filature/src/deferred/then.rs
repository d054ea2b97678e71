//! Links that change the type of the result (`then`, `map`, `then_both`) or hand it to another
//! Deferred (`chain_deferred`). Each moves the result out of this Deferred with a `Take` step and
//! feeds the other Deferred through the trampoline, so long chains of them stay iterative.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::chain::{Shared, Step};
use super::trampoline;
use super::{Deferred, Outcome};
use crate::{AlreadyCalled, Failure};

impl<T: Send + 'static> Deferred<T> {
    /// A new Deferred that fires with `f`'s outcome once this one has a value; a failure skips `f`
    /// and passes to the new Deferred. The result is moved out of this Deferred (a step added here
    /// afterwards sees [`ResultTaken`](super::ResultTaken)). Cancelling the new Deferred cancels
    /// this one — or, once `f` has returned a Deferred to wait on, that one.
    ///
    /// ```
    /// use filature::deferred::{Deferred, Outcome};
    ///
    /// let d = Deferred::<&str>::new();
    /// let len = d.then(|s| Outcome::Value(s.len()));
    /// d.callback("four").unwrap();
    /// assert_eq!(len.result_now().unwrap().unwrap(), 4);
    /// ```
    pub fn then<U: Send + 'static>(
        &self,
        f: impl FnOnce(T) -> Outcome<U> + Send + 'static,
    ) -> Deferred<U> {
        self.then_both(move |r| match r {
            Ok(v) => f(v),
            Err(e) => Outcome::Failure(e),
        })
    }

    /// Like [`then`](Deferred::then) for a plain conversion of the value.
    ///
    /// ```
    /// let d = filature::deferred::succeed(21).map(|v| v * 2).map(|v| format!("{v}"));
    /// assert_eq!(d.result_now().unwrap().unwrap(), "42");
    /// ```
    pub fn map<U: Send + 'static>(&self, f: impl FnOnce(T) -> U + Send + 'static) -> Deferred<U> {
        self.then(move |v| Outcome::Value(f(v)))
    }

    /// Like [`then`](Deferred::then), with `f` running on both paths.
    ///
    /// ```
    /// use filature::deferred::{fail, Outcome};
    /// use filature::{Cancelled, Failure};
    ///
    /// let d = fail::<u32>(Failure::from_error(Cancelled));
    /// let text = d.then_both(|r| Outcome::Value(format!("{r:?}").starts_with("Err")));
    /// assert!(text.result_now().unwrap().unwrap());
    /// ```
    pub fn then_both<U: Send + 'static>(
        &self,
        f: impl FnOnce(Result<T, Failure>) -> Outcome<U> + Send + 'static,
    ) -> Deferred<U> {
        let upstream = Arc::downgrade(&self.shared);
        // Once `f` has returned a Deferred to wait on, cancelling `next` cancels that one.
        let waiting: Arc<Mutex<Option<Weak<Shared<U>>>>> = Arc::new(Mutex::new(None));
        let waiting_for_cancel = Arc::clone(&waiting);
        let next = Deferred::<U>::with_canceller(move |_| {
            let inner = waiting_for_cancel.lock().take();
            if let Some(shared) = inner.and_then(|inner| inner.upgrade()) {
                Deferred { shared }.hand_on_cancel();
            } else if let Some(shared) = upstream.upgrade() {
                Deferred { shared }.hand_on_cancel();
            }
        });
        let tx = next.clone();
        self.push_step(Step::Take(Box::new(move |r| {
            match Failure::catch(move || f(r)).unwrap_or_else(Outcome::Failure) {
                Outcome::Value(v) => trampoline::schedule(move || {
                    let _ = tx.fire_raw(Ok(v));
                }),
                Outcome::Failure(e) => trampoline::schedule(move || {
                    let _ = tx.fire_raw(Err(e));
                }),
                Outcome::Wait(inner) => {
                    *waiting.lock() = Some(Arc::downgrade(&inner.shared));
                    inner.push_step_raw(Step::Take(Box::new(move |r| {
                        trampoline::schedule(move || {
                            let _ = tx.fire_raw(r);
                        });
                        None
                    })));
                }
            }
            None
        })));
        next
    }

    /// Passes this Deferred's result on to `other` (Twisted's `chainDeferred`): `other` fires with
    /// it, and this Deferred's result is moved out (later steps here see
    /// [`ResultTaken`](super::ResultTaken)). If `other` has already fired, the result is dropped
    /// and this Deferred continues with an [`AlreadyCalled`](crate::AlreadyCalled) failure, as in
    /// Twisted.
    ///
    /// ```
    /// use filature::deferred::Deferred;
    ///
    /// let source = Deferred::new();
    /// let sink = Deferred::new();
    /// source.chain_deferred(&sink);
    /// source.callback("hello").unwrap();
    /// assert_eq!(sink.result_now().unwrap().unwrap(), "hello");
    /// ```
    pub fn chain_deferred(&self, other: &Deferred<T>) -> &Self {
        let other = other.clone();
        self.push_step(Step::Take(Box::new(move |r| {
            if other.is_called() {
                return Some(Err(Failure::from_error(AlreadyCalled)));
            }
            trampoline::schedule(move || {
                let _ = other.fire_raw(r);
            });
            None
        })));
        self
    }
}
