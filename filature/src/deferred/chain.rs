//! The state machine behind [`Deferred`]: the shared cell, the steps of the chain and the runner.
//!
//! See the module documentation of `deferred` for the states and invariants. Everything here runs
//! without a scope of its own: public entry points wrap these calls in
//! [`trampoline::in_scope`](super::trampoline::in_scope).

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem;
use std::sync::{Arc, Weak};
use std::task::Waker;

use parking_lot::Mutex;

use super::errors::{ChainedToItself, ResultTaken};
use super::trampoline;
use super::{Deferred, Outcome};
use crate::{AlreadyCalled, Failure};

pub(super) type OnValue<T> = Box<dyn FnOnce(T) -> Outcome<T> + Send>;
pub(super) type OnFailure<T> = Box<dyn FnOnce(Failure) -> Outcome<T> + Send>;
pub(super) type OnBoth<T> = Box<dyn FnOnce(Result<T, Failure>) -> Outcome<T> + Send>;
pub(super) type Observer<T> = Box<dyn FnOnce(&Result<T, Failure>) + Send>;
pub(super) type Taker<T> = Box<dyn FnOnce(Result<T, Failure>) -> Option<Result<T, Failure>> + Send>;
pub(super) type Canceller<T> = Box<dyn FnOnce(&Deferred<T>) + Send>;

/// One link of the chain.
pub(super) enum Step<T: 'static> {
    /// `add_callback` / `add_errback` / `add_callbacks`: the side that does not match the current
    /// result is skipped and the result passes through unchanged (still handled if it was).
    Callbacks {
        on_value: Option<OnValue<T>>,
        on_failure: Option<OnFailure<T>>,
    },
    /// `add_both`.
    Both(OnBoth<T>),
    /// `observe`: sees the result and passes it through; marks a failure as handled.
    Observe(Observer<T>),
    /// Takes the result out of this Deferred (`then`, awaiting an inner Deferred, a DeferredList).
    /// It may hand a result back, which then continues down the chain as a fresh (unhandled) one.
    Take(Taker<T>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not fired yet; steps accumulate.
    Pending,
    /// One thread runs the chain and holds the result; steps added meanwhile are queued for it.
    Running,
    /// Paused until the inner Deferred in `waiting_on` fires; steps are queued.
    Waiting,
    /// Idle with the result in `result` (`None`: taken by a consumer).
    Settled,
}

pub(super) struct State<T: 'static> {
    pub(super) phase: Phase,
    pub(super) result: Option<Result<T, Failure>>,
    /// The failure in `result` has been seen by an errback, an observer or `result_now`.
    pub(super) handled: bool,
    pub(super) steps: VecDeque<Step<T>>,
    pub(super) canceller: Option<Canceller<T>>,
    /// Set by `cancel` without a canceller: the next `callback`/`errback` is silently ignored.
    pub(super) suppress_already_called: bool,
    pub(super) waiting_on: Option<Weak<Shared<T>>>,
    pub(super) waker: Option<Waker>,
}

pub(super) struct Shared<T: 'static> {
    pub(super) state: Mutex<State<T>>,
}

impl<T: 'static> Shared<T> {
    pub(super) fn new(canceller: Option<Canceller<T>>) -> Shared<T> {
        Shared {
            state: Mutex::new(State {
                phase: Phase::Pending,
                result: None,
                handled: false,
                steps: VecDeque::new(),
                canceller,
                suppress_already_called: false,
                waiting_on: None,
                waker: None,
            }),
        }
    }
}

impl<T: 'static> Drop for Shared<T> {
    /// The last holder is gone: this is where "unhandled" is decided, exactly once.
    fn drop(&mut self) {
        let state = self.state.get_mut();
        if let (Some(Err(failure)), false) = (&state.result, state.handled) {
            tracing::error!(
                target: "filature::deferred",
                "Unhandled error in Deferred: {failure} ({failure:?})"
            );
        }
        let steps = mem::take(&mut state.steps);
        if !steps.is_empty() {
            bury(Box::new(steps));
        }
    }
}

thread_local! {
    /// Pending steps of Deferreds being dropped on this thread; `Some` while a drop drains it.
    static GRAVEYARD: RefCell<Option<Vec<Box<dyn Any>>>> = const { RefCell::new(None) };
}

pub(super) fn touch_thread_local() {
    let _ = GRAVEYARD.try_with(|_| ());
}

/// Drops the pending steps of a dropped Deferred iteratively.
///
/// A pending step often holds the next Deferred of a chain (the one fed by `then`, or the outer
/// one waiting on this), whose own steps hold the next, and so on: dropping them in place would
/// recurse once per link. The outermost drop on this thread drains them one by one instead.
fn bury(steps: Box<dyn Any>) {
    let rejected = GRAVEYARD.try_with(|g| match g.borrow_mut().as_mut() {
        Some(graves) => {
            graves.push(steps);
            None
        }
        None => Some(steps),
    });
    let Ok(Some(steps)) = rejected else { return };
    if GRAVEYARD
        .try_with(|g| *g.borrow_mut() = Some(Vec::new()))
        .is_err()
    {
        return drop(steps);
    }
    drop(steps);
    while let Some(next) = GRAVEYARD.with(|g| g.borrow_mut().as_mut().and_then(Vec::pop)) {
        drop(next);
    }
    GRAVEYARD.with(|g| *g.borrow_mut() = None);
}

/// Largest step buffer a settled Deferred keeps for later additions.
const KEEP_BUFFER: usize = 8;

enum Control {
    Continue,
    Paused,
}

fn taken() -> Failure {
    Failure::from_error(ResultTaken)
}

impl<T: Send + 'static> Deferred<T> {
    /// Fires this Deferred with `result` and runs its chain (no scope of its own).
    pub(super) fn fire_raw(&self, result: Result<T, Failure>) -> Result<(), AlreadyCalled> {
        let mut state = self.shared.state.lock();
        if state.phase != Phase::Pending {
            if mem::take(&mut state.suppress_already_called) {
                return Ok(());
            }
            return Err(AlreadyCalled);
        }
        state.phase = Phase::Running;
        let canceller = state.canceller.take();
        let batch = mem::take(&mut state.steps);
        drop(state);
        drop(canceller);
        self.run(Some(result), false, batch);
        Ok(())
    }

    /// Adds a step; runs it at once (no scope of its own) if the Deferred is settled.
    pub(super) fn push_step_raw(&self, step: Step<T>) {
        let mut state = self.shared.state.lock();
        if state.phase != Phase::Settled {
            state.steps.push_back(step);
            return;
        }
        state.phase = Phase::Running;
        let result = state.result.take();
        let handled = state.handled;
        // The queue is empty here; reuse its buffer (kept by `run` when it settles).
        state.steps.push_back(step);
        let batch = mem::take(&mut state.steps);
        drop(state);
        self.run(result, handled, batch);
    }

    /// Adds a step; runs it at once, in a scope of its own, if the Deferred is settled.
    pub(super) fn push_step(&self, step: Step<T>) {
        let mut state = self.shared.state.lock();
        if state.phase != Phase::Settled {
            state.steps.push_back(step);
            return;
        }
        drop(state);
        trampoline::in_scope(|| self.push_step_raw(step));
    }

    /// Continues the chain of a Deferred paused in `Waiting` with the inner Deferred's result.
    fn resume(&self, result: Result<T, Failure>) {
        let mut state = self.shared.state.lock();
        debug_assert_eq!(state.phase, Phase::Waiting);
        state.phase = Phase::Running;
        state.waiting_on = None;
        let batch = mem::take(&mut state.steps);
        drop(state);
        self.run(Some(result), false, batch);
    }

    /// The result of a settled Deferred, taken out of it (`None` if it has not settled).
    pub(super) fn try_take_settled(&self) -> Option<Result<T, Failure>> {
        let mut state = self.shared.state.lock();
        if state.phase != Phase::Settled {
            return None;
        }
        Some(state.result.take().unwrap_or_else(|| Err(taken())))
    }

    /// Runs the chain. The caller has moved the phase to `Running` and holds the result. Steps are
    /// run from the local `batch` without the lock; the lock is taken again only when the batch is
    /// empty (to pick up steps added meanwhile, or to settle) or to pause.
    fn run(
        &self,
        mut result: Option<Result<T, Failure>>,
        mut handled: bool,
        mut batch: VecDeque<Step<T>>,
    ) {
        loop {
            while let Some(step) = batch.pop_front() {
                let current = match result.take() {
                    Some(r) => r,
                    None => {
                        handled = false;
                        Err(taken())
                    }
                };
                let outcome = match (step, current) {
                    (
                        Step::Callbacks {
                            on_value: Some(f), ..
                        },
                        Ok(v),
                    ) => call(move || f(v)),
                    (
                        Step::Callbacks {
                            on_failure: Some(f),
                            ..
                        },
                        Err(e),
                    ) => call(move || f(e)),
                    (Step::Callbacks { .. }, passing) => {
                        result = Some(passing);
                        continue;
                    }
                    (Step::Both(f), r) => call(move || f(r)),
                    (Step::Observe(f), r) => {
                        if let Err(panic) = Failure::catch(|| f(&r)) {
                            tracing::error!(
                                target: "filature::deferred",
                                "a Deferred observer panicked: {panic}"
                            );
                        }
                        handled |= r.is_err();
                        result = Some(r);
                        continue;
                    }
                    (Step::Take(f), r) => {
                        result = Failure::catch(move || f(r)).unwrap_or_else(|p| Some(Err(p)));
                        handled = false;
                        continue;
                    }
                };
                handled = false;
                match self.apply(outcome, &mut result, &mut batch) {
                    Control::Continue => {}
                    Control::Paused => return,
                }
            }
            let mut state = self.shared.state.lock();
            if !state.steps.is_empty() {
                mem::swap(&mut batch, &mut state.steps);
                continue;
            }
            if batch.capacity() <= KEEP_BUFFER {
                // Keep a small buffer for steps added after settling (no allocation per add).
                mem::swap(&mut batch, &mut state.steps);
            }
            state.phase = Phase::Settled;
            state.result = result;
            state.handled = handled;
            let waker = state.waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
            return;
        }
    }

    /// Stores a step's outcome in `result`, or pauses the chain on an inner Deferred.
    fn apply(
        &self,
        outcome: Outcome<T>,
        result: &mut Option<Result<T, Failure>>,
        batch: &mut VecDeque<Step<T>>,
    ) -> Control {
        let inner = match outcome {
            Outcome::Value(v) => {
                *result = Some(Ok(v));
                return Control::Continue;
            }
            Outcome::Failure(e) => {
                *result = Some(Err(e));
                return Control::Continue;
            }
            Outcome::Wait(inner) => inner,
        };
        if Arc::ptr_eq(&inner.shared, &self.shared) {
            *result = Some(Err(Failure::from_error(ChainedToItself)));
            return Control::Continue;
        }
        // Fast path: an inner Deferred that has already settled is consumed in place.
        if let Some(r) = inner.try_take_settled() {
            *result = Some(r);
            return Control::Continue;
        }
        let mut state = self.shared.state.lock();
        batch.append(&mut state.steps);
        mem::swap(batch, &mut state.steps);
        state.phase = Phase::Waiting;
        state.waiting_on = Some(Arc::downgrade(&inner.shared));
        drop(state);
        let outer = self.clone();
        inner.push_step_raw(Step::Take(Box::new(move |r| {
            trampoline::schedule(move || outer.resume(r));
            None
        })));
        Control::Paused
    }

    /// One cancellation step (see [`trampoline::run_cancel`]): cancels this Deferred, or the
    /// innermost Deferred it (transitively) waits on, by running its canceller; returns the
    /// follow-up that fails it with `Cancelled` if it is still not fired by then.
    pub(super) fn cancel_step(&self) -> Option<Box<dyn FnOnce()>> {
        let mut current = self.clone();
        loop {
            let mut state = current.shared.state.lock();
            match state.phase {
                Phase::Waiting => {
                    let inner = state.waiting_on.as_ref().and_then(Weak::upgrade);
                    drop(state);
                    match inner {
                        Some(shared) => current = Deferred { shared },
                        None => return None,
                    }
                }
                Phase::Pending => {
                    let canceller = state.canceller.take();
                    if canceller.is_none() {
                        state.suppress_already_called = true;
                    }
                    drop(state);
                    if let Some(canceller) = canceller {
                        if let Err(panic) = Failure::catch(|| canceller(&current)) {
                            let _ = current.fire_raw(Err(panic));
                        }
                    }
                    return Some(Box::new(move || {
                        if !current.is_called() {
                            let _ = current.fire_raw(Err(Failure::from_error(crate::Cancelled)));
                        }
                    }));
                }
                Phase::Running | Phase::Settled => return None,
            }
        }
    }

    /// Cancels `self` after the cancellation step running on this thread (for cancellers that
    /// only hand the cancellation on; see [`trampoline::hand_on_cancel`]).
    pub(super) fn hand_on_cancel(self) {
        trampoline::hand_on_cancel(Box::new(move || self.cancel_step()));
    }
}

/// Runs a user callback, turning a panic into a failure.
fn call<T: 'static>(f: impl FnOnce() -> Outcome<T>) -> Outcome<T> {
    Failure::catch(f).unwrap_or_else(Outcome::Failure)
}
