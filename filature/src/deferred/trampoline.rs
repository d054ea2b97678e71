//! The per-thread trampoline that keeps chained Deferreds iterative.
//!
//! When a Deferred that another one waits on fires, the waiting Deferred must resume its own chain.
//! Doing that by a direct call nests one stack frame per level of chaining, so 100 000 nested
//! Deferreds would overflow the stack. Instead the resumption is *scheduled* here and run by the
//! innermost public entry point (`callback`, `add_callback`, `cancel`, …) on this thread, after the
//! chain it started has run: the stack depth stays constant whatever the depth of chaining.
//!
//! Every public entry point that may run callbacks opens a *scope* (a fresh queue, saving the
//! enclosing one) and drains it before returning, so that when `d.callback(v)` returns, everything
//! chained behind `d` has run — even when `callback` is called from inside another callback.
//! Internal code (a resumption, a type-changing `then`) runs chains without opening a scope.
//!
//! Cancellation has the same problem one level up: the canceller of a `then` Deferred cancels
//! the Deferred before it, so a long chain would nest one `cancel` per link. [`run_cancel`] runs
//! a cancellation and those it hands on ([`hand_on_cancel`]) from an explicit stack instead.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::thread::LocalKey;

type Job = Box<dyn FnOnce()>;

thread_local! {
    /// `Some` while a scope is open on this thread.
    static QUEUE: RefCell<Option<VecDeque<Job>>> = const { RefCell::new(None) };
}

/// Runs `f` in a fresh scope, then every job scheduled in that scope (including jobs scheduled by
/// those jobs), then restores the enclosing scope.
pub(super) fn in_scope<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Option<VecDeque<Job>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let saved = self.0.take().flatten();
            // A scope left by a panic (not expected: callbacks are caught) drops its jobs.
            let _ = QUEUE.try_with(|q| q.replace(saved));
        }
    }
    let saved = QUEUE.with(|q| q.replace(Some(VecDeque::new())));
    let _restore = Restore(Some(saved));
    let result = f();
    while let Some(job) = QUEUE.with(|q| q.borrow_mut().as_mut().and_then(VecDeque::pop_front)) {
        job();
    }
    result
}

/// Runs `job` after the current job or chain of the innermost open scope; at once (in its own
/// scope) if no scope is open.
pub(super) fn schedule(job: impl FnOnce() + 'static) {
    let job: Job = Box::new(job);
    if let Some(job) = push_if_open(&QUEUE, job, VecDeque::push_back) {
        in_scope(job);
    }
}

/// Adds `item` to the collection open on this thread in `slot`; gives it back if none is open.
fn push_if_open<C, I>(
    slot: &'static LocalKey<RefCell<Option<C>>>,
    item: I,
    push: fn(&mut C, I),
) -> Option<I> {
    slot.with(|open| match open.borrow_mut().as_mut() {
        Some(collection) => {
            push(collection, item);
            None
        }
        None => Some(item),
    })
}

/// One step of a cancellation: cancel one Deferred (run its canceller), returning the follow-up
/// (fail it with `Cancelled` if the canceller did not fire it), if any.
pub(super) type CancelStep = Box<dyn FnOnce() -> Option<Job>>;

thread_local! {
    /// `Some` while a cancellation step runs on this thread: the cancellations it hands on.
    static HANDED_ON: RefCell<Option<Vec<CancelStep>>> = const { RefCell::new(None) };
}

pub(super) fn touch_thread_locals() {
    let _ = QUEUE.try_with(|_| ());
    let _ = HANDED_ON.try_with(|_| ());
}

/// Runs a cancellation and every cancellation it hands on ([`hand_on_cancel`]), depth first, with
/// an explicit stack instead of nested calls: the cancellations a step hands on run after it, in
/// the order they were handed on, and before its follow-up — the order nested `cancel` calls
/// made by its canceller would give — so cancelling the end of a 100 000-link `then` chain keeps
/// a constant stack depth. Each step and follow-up runs in its own scope (see [`in_scope`]), as
/// the body of a `cancel` call would.
pub(super) fn run_cancel(first: CancelStep) {
    enum Work {
        Step(CancelStep),
        FollowUp(Job),
    }
    let mut stack = vec![Work::Step(first)];
    while let Some(work) = stack.pop() {
        match work {
            Work::Step(step) => {
                let collect = Collect::start();
                let follow_up = in_scope(step);
                let handed_on = collect.finish();
                if let Some(follow_up) = follow_up {
                    stack.push(Work::FollowUp(follow_up));
                }
                stack.extend(handed_on.into_iter().rev().map(Work::Step));
            }
            Work::FollowUp(job) => in_scope(job),
        }
    }
}

/// Cancels with `step` once the cancellation step running on this thread has returned (the
/// step's last act, like a tail call), or at once if none is running. For the cancellers of the
/// Deferreds that `then` and `DeferredList` make, which only hand the cancellation on.
pub(super) fn hand_on_cancel(step: CancelStep) {
    if let Some(step) = push_if_open(&HANDED_ON, step, Vec::push) {
        run_cancel(step);
    }
}

/// Collects the cancellations handed on during one step; restores the enclosing collection (a
/// `cancel` called inside a canceller runs its own `run_cancel`) when finished or unwound.
struct Collect(Option<Option<Vec<CancelStep>>>);

impl Collect {
    fn start() -> Collect {
        Collect(Some(HANDED_ON.with(|h| h.replace(Some(Vec::new())))))
    }

    fn finish(mut self) -> Vec<CancelStep> {
        let saved = self.0.take().flatten();
        HANDED_ON.with(|h| h.replace(saved)).unwrap_or_default()
    }
}

impl Drop for Collect {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = HANDED_ON.try_with(|h| h.replace(saved));
        }
    }
}
