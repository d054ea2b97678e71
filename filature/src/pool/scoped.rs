//! Scoped jobs: run a closure that borrows from the caller's stack on a
//! [`ThreadPool`](super::ThreadPool) worker,
//! and wait for it (the engine of `tpool::execute`).
//!
//! # Invariants
//!
//! * **The job cannot outlive its borrows.** [`call_scoped`] erases the closure's lifetime to
//!   queue it (the one `unsafe` block of the pools), and from the moment it hands the job to
//!   `submit` it does not return, not even by unwinding (also when `submit` itself unwinds,
//!   perhaps after queueing the job), until the job's *done* flag is set. The flag is set
//!   by the job itself after `f` has returned or panicked (and so after `f`'s captures are
//!   dropped), or by the job's drop guard if the pool drops the job without running it. Either way
//!   nothing the job can still touch afterwards borrows from the caller: only its
//!   `Arc<Slot<T>>` (kept alive by the `Arc`, and empty by then or emptied by the caller) and the
//!   caller's `Unparker` (an owned `Arc`).
//! * **The stack does not move or unwind while lent.** Green threads never move and their stacks
//!   never move (`crate::green`), and a main context's stack is its OS thread's. While waiting,
//!   the caller holds [`Parker::lend_stack`], which holds back a kill or a timeout (they stay
//!   pending and are raised after the wait). If the wait unwound anyway (a bug elsewhere), the
//!   caller falls back to blocking its OS thread until the flag is set before it lets the unwind
//!   go on: soundness does not rest on the park machinery.
//! * **The outcome travels through the slot.** The job stores `Ok(value)` or `Err(panic payload)`
//!   in the slot under its mutex, sets `done` (Release), then unparks the caller; the caller reads
//!   `done` (Acquire) after every wake-up (wake-ups may be spurious) and takes the outcome.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::green::park::{unpark, Unparker};
use crate::green::Parker;

/// How a scoped job ended, as seen by its caller.
pub(crate) enum Scoped<T> {
    /// `f` returned or panicked (the payload, to re-raise).
    Ran(std::thread::Result<T>),
    /// The pool dropped the job without running it (it never started).
    Dropped,
}

struct Slot<T> {
    done: AtomicBool,
    outcome: Mutex<Option<std::thread::Result<T>>>,
}

/// Owned by the job: completes the slot exactly once, with the outcome, or as dropped if the job
/// is destroyed without running.
struct Completer<T> {
    slot: Arc<Slot<T>>,
    waiter: Unparker,
    completed: bool,
}

impl<T> Completer<T> {
    fn complete(&mut self, outcome: Option<std::thread::Result<T>>) {
        self.completed = true;
        *self.slot.outcome.lock() = outcome;
        // ORDERING: Release publishes the outcome (and every effect of `f` on borrowed data) to
        // the caller's Acquire load in `is_done`.
        self.slot.done.store(true, Ordering::Release);
        unpark(&self.waiter);
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if !self.completed {
            self.complete(None);
        }
    }
}

/// What a job owns. Fields drop in declaration order, so a job dropped unrun drops `f` (and its
/// borrows) before its completer tells the caller it is done.
struct JobParts<F, T> {
    f: F,
    completer: Completer<T>,
}

impl<T> Slot<T> {
    fn is_done(&self) -> bool {
        // ORDERING: pairs with the Release store in `Completer::complete`.
        self.done.load(Ordering::Acquire)
    }
}

/// A type-erased scoped job, as handed to `submit`. Running it (on any thread) runs `f` and
/// completes the caller's wait; dropping it unrun completes the wait with [`Scoped::Dropped`].
pub(crate) type ScopedJob = Box<dyn FnOnce() + Send + 'static>;

/// Runs `f` through `submit` (which queues the job on a pool, or runs it right here) and waits
/// for it as `parker`'s context waits (parking a green thread, driving the hub in a main
/// context). `f` may borrow from the caller's stack.
///
/// `submit` should drop the job before it returns `Err` (the error is passed through, and `f` was
/// dropped unrun); this waits for the job either way. Kills and timeouts of the caller stay
/// pending until this returns; the caller decides when to raise them.
pub(crate) fn call_scoped<'a, F, T, E>(
    parker: &Parker,
    f: F,
    submit: impl FnOnce(ScopedJob) -> Result<(), E>,
) -> Result<Scoped<T>, E>
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    let slot = Arc::new(Slot {
        done: AtomicBool::new(false),
        outcome: Mutex::new(None),
    });
    let parts = JobParts {
        f,
        completer: Completer {
            slot: slot.clone(),
            waiter: parker.unparker().clone(),
            completed: false,
        },
    };
    let job = move || {
        let JobParts { f, mut completer } = parts;
        let outcome = panic::catch_unwind(AssertUnwindSafe(f));
        completer.complete(Some(outcome));
    };
    let job: Box<dyn FnOnce() + Send + 'a> = Box::new(job);
    // SAFETY: only the lifetime changes (same layout, same vtable). The job borrows data valid
    // for `'a`, which outlives this call; the job cannot use those borrows after this call
    // returns or unwinds, because this function does not return or unwind until `slot.done` is
    // set, whatever `submit` did with the job (queued it, ran it, dropped it):
    // - `done` is set only by `Completer::complete`, after `f` has run or been dropped (see
    //   `JobParts`), with nothing of the job left that borrows for `'a`: the `Completer` it still
    //   owns holds an `Arc` of the slot (which stays allocated) and an owned `Unparker`. The
    //   slot's outcome is taken below before we return, so no `T` is dropped late through the
    //   job's `Arc`;
    // - the wait below cannot be cut short: kills and timeouts are held back by `lend_stack`, and
    //   should the wait unwind anyway, `wait_out` blocks this OS thread until `done` is set before
    //   resuming the unwind. The stack itself never moves (green stacks are pinned; a main
    //   context runs on its OS thread's stack).
    let job: ScopedJob = unsafe { std::mem::transmute(job) };
    // A refusing `submit` drops the job first (its `Completer` then sets `done` at once). One
    // that unwinds may have queued the job before it did: the job is waited out all the same
    // (it runs, or is dropped, and either way sets `done`) before the unwind goes on.
    let submitted = panic::catch_unwind(AssertUnwindSafe(|| submit(job)));

    let lent = parker.lend_stack();
    let waited = panic::catch_unwind(AssertUnwindSafe(|| {
        while !slot.is_done() {
            parker.park(None);
        }
    }));
    if waited.is_err() {
        wait_out(&slot);
    }
    drop(lent);
    let outcome = slot.outcome.lock().take();
    let submitted = match (submitted, waited) {
        (Err(payload), _) | (Ok(_), Err(payload)) => {
            drop(outcome);
            panic::resume_unwind(payload);
        }
        (Ok(submitted), Ok(())) => submitted,
    };
    submitted?;
    Ok(match outcome {
        Some(outcome) => Scoped::Ran(outcome),
        None => Scoped::Dropped,
    })
}

/// Last resort if a wait unwound while the job may still run: block the OS thread until done.
#[cold]
fn wait_out<T>(slot: &Slot<T>) {
    tracing::error!("a tpool wait unwound while its job was running; blocking until it finishes");
    while !slot.is_done() {
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A `submit` that queues the job (on a thread that runs it later) and then panics: the
    /// caller's unwind must wait until the job, which borrows the caller's stack, has run.
    #[test]
    fn a_submit_that_unwinds_after_queueing_waits_for_the_job() {
        let parker = Parker::current("test");
        let on_stack = AtomicUsize::new(0);
        let runner = parking_lot::Mutex::new(None);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = call_scoped(
                &parker,
                || {
                    std::thread::sleep(Duration::from_millis(100));
                    on_stack.fetch_add(1, Ordering::SeqCst);
                },
                |job| -> Result<(), ()> {
                    *runner.lock() = Some(std::thread::spawn(job));
                    panic!("submit failed after queueing");
                },
            );
        }));
        assert!(r.is_err(), "the submit's panic goes on");
        assert_eq!(
            on_stack.load(Ordering::SeqCst),
            1,
            "the job ran before the unwind went on"
        );
        runner.lock().take().unwrap().join().unwrap();
    }
}
