//! `DeferredList` and `gather_results`: waiting for several Deferreds at once.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::chain::{Shared, Step};
use super::errors::FirstError;
use super::trampoline;
use super::{Deferred, Outcome};
use crate::Failure;

/// What a [`DeferredList`] fires with.
///
/// ```
/// use filature::deferred::{succeed, DeferredList, ListResult};
///
/// let list = DeferredList::new([succeed('a'), succeed('b')]).fire_on_one_callback(true);
/// match list.into_deferred().take_result().unwrap().unwrap() {
///     ListResult::First { index, value } => assert_eq!((index, value), (0, 'a')),
///     ListResult::All(_) => unreachable!("fire_on_one_callback reports the first value"),
/// }
/// ```
#[derive(Debug)]
pub enum ListResult<T> {
    /// Every input fired: their results, in input order (Twisted's list of `(success, result)`).
    All(Vec<Result<T, Failure>>),
    /// With `fire_on_one_callback`: the first value to arrive and the index of its Deferred.
    First {
        /// Position of the Deferred in the input list.
        index: usize,
        /// Its value.
        value: T,
    },
}

/// Waits for a list of Deferreds (Twisted's `DeferredList`), built with options and turned into a
/// `Deferred<ListResult<T>>` by [`into_deferred`](DeferredList::into_deferred).
///
/// The list moves each input's value out of it (values are not `Clone`); a step added to an input
/// afterwards sees [`ResultTaken`](super::ResultTaken). A failure is copied into the list and,
/// unless `consume_errors` is set, stays in the input as well — so it is logged as unhandled when the
/// input is dropped, as in Twisted. Cancelling the list's Deferred cancels every input.
///
/// ```
/// use filature::deferred::{Deferred, DeferredList, ListResult};
/// use filature::{Failure, TimedOut};
///
/// let a = Deferred::new();
/// let b = Deferred::new();
/// let all = DeferredList::new(vec![a.clone(), b.clone()]).consume_errors(true).into_deferred();
/// b.callback(2).unwrap();
/// a.errback(Failure::from_error(TimedOut)).unwrap();
/// match all.take_result().unwrap().unwrap() {
///     ListResult::All(results) => {
///         assert!(results[0].as_ref().unwrap_err().is::<TimedOut>());
///         assert_eq!(*results[1].as_ref().unwrap(), 2);
///     }
///     ListResult::First { .. } => unreachable!(),
/// }
/// ```
#[derive(Debug)]
pub struct DeferredList<T: 'static> {
    inputs: Vec<Deferred<T>>,
    fire_on_one_callback: bool,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

struct Collector<T: 'static> {
    slots: Vec<Option<Result<T, Failure>>>,
    remaining: usize,
    done: bool,
}

impl<T: Send + 'static> DeferredList<T> {
    /// A list over `inputs`, with every option off.
    ///
    /// ```
    /// use filature::deferred::{succeed, DeferredList, ListResult};
    ///
    /// let all = DeferredList::new([succeed(1), succeed(2)]).into_deferred();
    /// let ListResult::All(r) = all.take_result().unwrap().unwrap() else { unreachable!() };
    /// assert_eq!(r.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn new(inputs: impl IntoIterator<Item = Deferred<T>>) -> DeferredList<T> {
        DeferredList {
            inputs: inputs.into_iter().collect(),
            fire_on_one_callback: false,
            fire_on_one_errback: false,
            consume_errors: false,
        }
    }

    /// Fire with [`ListResult::First`] as soon as one input succeeds. An empty list fires at once
    /// with an empty [`ListResult::All`] (Twisted's list would never fire).
    ///
    /// ```
    /// use filature::deferred::{Deferred, DeferredList, ListResult};
    ///
    /// let slow = Deferred::<u32>::new();
    /// let fast = Deferred::new();
    /// let first = DeferredList::new(vec![slow, fast.clone()])
    ///     .fire_on_one_callback(true)
    ///     .into_deferred();
    /// fast.callback(8).unwrap();
    /// assert!(matches!(first.take_result(), Some(Ok(ListResult::First { index: 1, value: 8 }))));
    /// ```
    pub fn fire_on_one_callback(mut self, yes: bool) -> DeferredList<T> {
        self.fire_on_one_callback = yes;
        self
    }

    /// Fail with a [`FirstError`] (the failure and its input's index) as soon as one input fails.
    ///
    /// ```
    /// use filature::deferred::{fail, Deferred, DeferredList, FirstError};
    /// use filature::{Cancelled, Failure};
    ///
    /// let inputs = vec![Deferred::<u32>::new(), fail(Failure::from_error(Cancelled))];
    /// let list = DeferredList::new(inputs)
    ///     .fire_on_one_errback(true)
    ///     .consume_errors(true)
    ///     .into_deferred();
    /// let failure = list.take_result().unwrap().unwrap_err();
    /// assert_eq!(failure.downcast_ref::<FirstError>().unwrap().index, 1);
    /// ```
    pub fn fire_on_one_errback(mut self, yes: bool) -> DeferredList<T> {
        self.fire_on_one_errback = yes;
        self
    }

    /// Take the inputs' failures out of them, so that only the list reports them (Twisted's
    /// `consumeErrors`). Without it, a failed input also logs "Unhandled error in Deferred" when
    /// dropped, unless someone else handles it.
    ///
    /// ```
    /// use filature::deferred::{fail, DeferredList};
    /// use filature::{Failure, TimedOut};
    ///
    /// let input = fail::<u32>(Failure::from_error(TimedOut));
    /// let list = DeferredList::new(vec![input.clone()]).consume_errors(true).into_deferred();
    /// assert!(list.take_result().unwrap().is_ok());
    /// drop(input); // nothing logged: the list consumed the failure
    /// ```
    pub fn consume_errors(mut self, yes: bool) -> DeferredList<T> {
        self.consume_errors = yes;
        self
    }

    /// The Deferred that fires as configured. Inputs that have already fired are taken at once.
    ///
    /// ```
    /// use filature::deferred::{DeferredList, ListResult};
    ///
    /// let d = DeferredList::<u32>::new(vec![]).fire_on_one_callback(true).into_deferred();
    /// assert!(matches!(d.take_result(), Some(Ok(ListResult::All(v))) if v.is_empty()));
    /// ```
    pub fn into_deferred(self) -> Deferred<ListResult<T>> {
        let DeferredList {
            inputs,
            fire_on_one_callback,
            fire_on_one_errback,
            consume_errors,
        } = self;
        let weak: Vec<Weak<Shared<T>>> = inputs.iter().map(|d| Arc::downgrade(&d.shared)).collect();
        let out = Deferred::with_canceller(move |_| {
            for shared in weak.iter().filter_map(Weak::upgrade) {
                Deferred { shared }.hand_on_cancel();
            }
        });
        if inputs.is_empty() {
            let _ = out.callback(ListResult::All(Vec::new()));
            return out;
        }
        let collector = Arc::new(Mutex::new(Collector {
            slots: (0..inputs.len()).map(|_| None).collect(),
            remaining: inputs.len(),
            done: false,
        }));
        for (index, input) in inputs.iter().enumerate() {
            let collector = Arc::clone(&collector);
            let out = out.clone();
            input.push_step(Step::Take(Box::new(move |result| {
                let keep = match &result {
                    Err(f) if !consume_errors => Some(Err(f.clone())),
                    _ => None,
                };
                let mut c = collector.lock();
                if c.done {
                    return keep;
                }
                let fire = match result {
                    Ok(value) if fire_on_one_callback => {
                        Some(Ok(ListResult::First { index, value }))
                    }
                    Err(failure) if fire_on_one_errback => {
                        Some(Err(Failure::from_error(FirstError { index, failure })))
                    }
                    result => {
                        c.slots[index] = Some(result);
                        c.remaining -= 1;
                        (c.remaining == 0).then(|| {
                            let slots = std::mem::take(&mut c.slots);
                            Ok(ListResult::All(slots.into_iter().flatten().collect()))
                        })
                    }
                };
                c.done = fire.is_some();
                drop(c);
                if let Some(fire) = fire {
                    trampoline::schedule(move || {
                        let _ = out.fire_raw(fire);
                    });
                }
                keep
            })));
        }
        out
    }
}

/// A Deferred for all the values of `inputs`, in input order, or the first failure as a
/// [`FirstError`] carrying its index (Twisted's `gatherResults`). The inputs' failures are
/// consumed: only the gathered Deferred reports them. Cancelling it cancels every input.
///
/// ```
/// use filature::deferred::{gather_results, Deferred};
///
/// let a = Deferred::new();
/// let b = Deferred::new();
/// let all = gather_results(vec![a.clone(), b.clone()]);
/// b.callback("b").unwrap();
/// a.callback("a").unwrap();
/// assert_eq!(all.take_result().unwrap().unwrap(), ["a", "b"]);
/// ```
pub fn gather_results<T: Send + 'static>(
    inputs: impl IntoIterator<Item = Deferred<T>>,
) -> Deferred<Vec<T>> {
    DeferredList::new(inputs)
        .fire_on_one_errback(true)
        .consume_errors(true)
        .into_deferred()
        .then(|list| match list {
            ListResult::All(results) => results.into_iter().collect::<Result<Vec<T>, _>>().into(),
            ListResult::First { value, .. } => Outcome::Value(vec![value]),
        })
}
