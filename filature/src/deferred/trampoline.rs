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

use std::cell::RefCell;
use std::collections::VecDeque;

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
    let rejected = QUEUE.with(|q| match q.borrow_mut().as_mut() {
        Some(queue) => {
            queue.push_back(job);
            None
        }
        None => Some(job),
    });
    if let Some(job) = rejected {
        in_scope(job);
    }
}
