//! Twisted's `Deferred`, typed: a result that arrives later, with a chain of callbacks.
//!
//! ```
//! use filature::deferred::{Deferred, Outcome};
//! use filature::Failure;
//!
//! let d = Deferred::<u32>::new();
//! d.add_callback(|v| Outcome::Value(v + 1))
//!     .add_callback(|v| match v {
//!         0..=10 => Outcome::Value(v),
//!         _ => Outcome::error(std::io::Error::other("too big")),
//!     })
//!     .add_errback(|_f: Failure| Outcome::Value(0));
//! d.callback(41).unwrap();
//! assert_eq!(d.result_now().unwrap().unwrap(), 0);
//! ```
//!
//! # From Twisted's dynamic typing to Rust
//!
//! | Twisted | here |
//! |---|---|
//! | `Deferred()` | [`Deferred<T>`]: every link of the chain takes and gives a `Result<T, Failure>` |
//! | callback returns a value / raises / returns a `Deferred` | it returns an [`Outcome<T>`]: `Value(T)`, `Failure(Failure)`, `Wait(Deferred<T>)`; a panic becomes a failure |
//! | a callback that changes the type of the result (`d.addCallback(len)`) | [`Deferred::then`], [`Deferred::map`], [`Deferred::then_both`] return a new `Deferred<U>` fed by this one |
//! | `Failure` | [`Failure`](crate::Failure): an error value or a caught panic; `f.check(E)` is `f.is::<E>()`, `f.trap(E)` is matching on `downcast_ref` and returning `Outcome::Failure(f)` otherwise |
//! | `d.result`, `d.called` | [`Deferred::result_now`] (needs `T: Clone`), [`Deferred::take_result`], [`Deferred::is_called`] |
//! | `yield d` / `await d` | `d.await`: a Deferred is a [`Future`](std::future::Future) with `Output = Result<T, Failure>` |
//! | `d.chainDeferred(d2)` | [`Deferred::chain_deferred`] |
//! | `succeed`, `fail`, `maybeDeferred` | [`succeed`], [`fail`], [`maybe_deferred`] |
//! | `DeferredList`, `gatherResults`, `FirstError` | [`DeferredList`] → `Deferred<`[`ListResult<T>`]`>`, [`gather_results`], [`FirstError`] |
//! | `CancelledError`, `AlreadyCalledError` | [`Cancelled`](crate::Cancelled), [`AlreadyCalled`](crate::AlreadyCalled) (returned, never raised) |
//!
//! Where Python shares the result object, Rust must move it: `then`, `await`, `take_result`,
//! `chain_deferred`, a `DeferredList` and an outer Deferred waiting on an inner one *take* the
//! value out. A link added after that sees the failure [`ResultTaken`] instead of waiting forever.
//! `Deferred<T>` requires `T: 'static` (its callbacks are boxed `'static` closures), and its
//! methods `T: Send`, so that any thread may fire it.
//!
//! # The state machine
//!
//! A `Deferred<T>` is an `Arc` of one shared cell (`chain::Shared`) holding, under a mutex, a phase,
//! the current result, a queue of steps (the callbacks not yet run), a canceller, the Deferred it
//! waits on and the waker of a task awaiting it. Its phases:
//!
//! ```text
//!   Pending --fire--> Running --chain empty--> Settled --step added--> Running
//!                      |  ^                                  ^
//!        callback gave |  | inner fired (resume, scheduled)  | await / then / list take the result
//!       an unfired     v  |                                  | (result becomes None: "taken")
//!       Deferred     Waiting
//! ```
//!
//! - **Pending**: not fired. Steps accumulate. `callback`/`errback`/`fire` move it to Running,
//!   drop the canceller and run the chain. This is the only phase in which firing is allowed; in
//!   any other phase firing returns [`AlreadyCalled`](crate::AlreadyCalled), except once after a
//!   cancellation without canceller (the late real result is ignored, as in Twisted).
//! - **Running**: exactly one thread — the one that fired, resumed, or added a step to a settled
//!   Deferred — holds the result *outside* the lock and runs the steps it took out of the queue,
//!   again without the lock. Steps added meanwhile (by its own callbacks or by other threads) are
//!   queued; the runner takes the lock only when its batch is empty, to pick them up or to settle.
//!   So a chain of N callbacks costs one lock for the whole run, and callbacks may freely add
//!   callbacks, fire other Deferreds, or cancel.
//! - **Waiting**: a callback returned `Outcome::Wait(inner)`. If `inner` has settled, its result is
//!   taken on the spot and the chain goes on (no pause, no allocation). Otherwise the remaining
//!   steps go back to the queue, the phase becomes Waiting with a weak reference to `inner` (for
//!   cancellation; weak so that two abandoned Deferreds cannot keep each other alive), and a
//!   `Take` step on `inner` *schedules* the resumption of the outer chain.
//! - **Settled**: the chain has run out of steps; the result (or `None` if a consumer took it) is
//!   in the cell, and the waker, if any, is woken. Adding a step moves it back to Running on the
//!   adding thread, which runs the step at once.
//!
//! Callbacks run on the thread that fires the Deferred or adds the step; the lock is never held
//! while user code runs. A panic in a callback is caught and becomes the failure passed on.
//!
//! ## Iteration, not recursion
//!
//! Resuming an outer Deferred when its inner one fires, and feeding the `Deferred<U>` of a `then`,
//! would nest one call per level of chaining. Instead they are *scheduled* on a per-thread
//! trampoline (`trampoline.rs`) and run by the innermost public entry point (`callback`,
//! `add_callback`, `cancel`, …) once the chain it started has run. The stack depth is therefore
//! constant: 100 000 nested Deferreds fire on a 2 MiB stack. Each public entry point opens its own
//! scope, so when `d.callback(v)` returns — even from inside another callback — everything chained
//! behind `d` has run.
//!
//! Dropping is iterative too: a pending step often holds the next Deferred of a chain, so the
//! cell's `Drop` hands its pending steps to a per-thread graveyard drained by the outermost drop,
//! and dropping a 100 000-link unfired chain does not recurse.
//!
//! ## Cancellation
//!
//! `cancel` walks inward through Waiting Deferreds (iteratively) to the innermost one. If that one
//! is Pending, its canceller runs (taken, so at most once); if it is still not fired afterwards it
//! fails with [`Cancelled`](crate::Cancelled), and, when there was no canceller, its next firing is
//! ignored once. A Running or Settled Deferred ignores `cancel`. The Deferreds made by `then` and by
//! [`DeferredList`] / [`gather_results`] have cancellers that cancel what they are fed by (for
//! `then`, the Deferred its function returned, once it has returned one). Those cancellers do not
//! call `cancel` (that would nest one call per link: a long `then` chain overflowed the stack);
//! they hand the cancellation on to the cancellation running on this thread, which runs it after
//! the canceller returns and before deciding whether the Deferred it cancelled still needs its
//! `Cancelled` failure — the order nested calls give, with an explicit stack (see
//! `trampoline::run_cancel`). Cancelling the end of a 100 000-link chain keeps a constant depth.
//!
//! ## When a failure is "unhandled"
//!
//! The cell keeps a `handled` flag for the failure it holds. It is set when an observer
//! ([`Deferred::observe`]) sees the failure or [`Deferred::result_now`] returns it, and cleared
//! whenever a link produces a new result (an errback that re-raises makes a fresh, unhandled
//! failure). A failure moved out (`await`, `then`, `take_result`, a consuming list, an outer
//! Deferred) is no longer this Deferred's concern. When the last handle is dropped — the `Drop` of
//! the shared cell, so deterministically and exactly once — a failure still in the cell and not
//! handled is logged with `tracing::error!` as `Unhandled error in Deferred: …`. Internal links
//! hold the cell only while they are needed (an inner Deferred's pending step holds its outer one;
//! cancellation links are weak), so "the last holder" is the user's last handle.

mod api;
mod chain;
mod errors;
mod list;
mod then;
mod trampoline;

/// Makes sure the Deferred machinery's thread-locals are registered on this thread (see
/// `hub::Core::arm_exit_hook`: a thread-exit hook must be newer than every thread-local that
/// unwinding green threads may use, filature's own included).
pub(crate) fn touch_thread_locals() {
    chain::touch_thread_local();
    trampoline::touch_thread_locals();
}

pub use api::{fail, maybe_deferred, succeed, Deferred, Outcome};
pub use errors::{ChainedToItself, FirstError, ResultTaken};
pub use list::{gather_results, DeferredList, ListResult};
