//! The pool's lock-free queue-length hint, beside the pool's lock and condvars (which are
//! [`crate::loom::lock`]'s: `parking_lot`, or loom's under `--cfg loom`).
//!
//! [`QueueHint`] is a lock-free copy of the queue length that a worker spinning before it sleeps
//! polls instead of the lock. It is only a hint (every decision is re-made under the lock), so
//! `Relaxed` suffices; under loom it is a no-op and the spin is one `yield_now`.

pub(crate) use crate::loom::lock::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
mod imp {
    /// The queue length as last published under the lock.
    pub(crate) struct QueueHint(std::sync::atomic::AtomicUsize);

    impl QueueHint {
        pub(crate) fn new() -> Self {
            QueueHint(std::sync::atomic::AtomicUsize::new(0))
        }

        /// Publishes the queue length; called with the lock held after every change.
        pub(crate) fn set(&self, len: usize) {
            self.0.store(len, std::sync::atomic::Ordering::Relaxed);
        }

        /// Spins (then yields) for a few microseconds, returning early if work appears.
        pub(crate) fn spin_until_work(&self) {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                if self.0.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                    return;
                }
                backoff.snooze();
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    /// No hint under loom: the model only needs the unlock / yield / relock of the spin.
    pub(crate) struct QueueHint;

    impl QueueHint {
        pub(crate) fn new() -> Self {
            QueueHint
        }

        pub(crate) fn set(&self, _len: usize) {}

        pub(crate) fn spin_until_work(&self) {
            loom::thread::yield_now();
        }
    }
}

pub(crate) use imp::QueueHint;
