//! Errors specific to Deferreds.

use thiserror::Error;

use crate::Failure;

/// The result of this Deferred was moved out by an earlier consumer (an `await`, a [`then`], a
/// [`DeferredList`]), so there is nothing left for a step added afterwards.
///
/// [`then`]: super::Deferred::then
/// [`DeferredList`]: super::DeferredList
///
/// ```
/// use filature::deferred::{succeed, ResultTaken};
///
/// let d = succeed(1);
/// let doubled = d.map(|v| v * 2);
/// assert_eq!(doubled.result_now().unwrap().unwrap(), 2);
/// // `map` took the value; the original now reports that it is gone.
/// assert!(d.result_now().unwrap().unwrap_err().is::<ResultTaken>());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the Deferred's result was already taken by an earlier consumer")]
pub struct ResultTaken;

/// A callback returned the Deferred it was added to (Twisted raises the same mistake as an error).
///
/// ```
/// use filature::deferred::{ChainedToItself, Deferred, Outcome};
///
/// let d = Deferred::<u32>::new();
/// let same = d.clone();
/// d.add_callback(move |_| Outcome::Wait(same));
/// d.callback(1).unwrap();
/// assert!(d.result_now().unwrap().unwrap_err().is::<ChainedToItself>());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a Deferred callback returned the Deferred it was added to")]
pub struct ChainedToItself;

/// The first failure of a [`DeferredList`](super::DeferredList) with `fire_on_one_errback`, or of
/// [`gather_results`](super::gather_results), with the position of the Deferred that failed.
///
/// ```
/// use filature::deferred::{fail, gather_results, succeed, FirstError};
/// use filature::{Cancelled, Failure};
///
/// let all = gather_results(vec![succeed(1), fail(Failure::from_error(Cancelled))]);
/// let failure = all.result_now().unwrap().unwrap_err();
/// let first = failure.downcast_ref::<FirstError>().unwrap();
/// assert_eq!(first.index, 1);
/// assert!(first.failure.is::<Cancelled>());
/// ```
#[derive(Debug, Clone, Error)]
#[error("Deferred #{index} failed: {failure}")]
pub struct FirstError {
    /// The position of the failed Deferred in the input list.
    pub index: usize,
    /// Its failure.
    #[source]
    pub failure: Failure,
}
