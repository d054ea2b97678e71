//! The pool's lock and condvars, with one by-value API over two implementations.
//!
//! Normally `parking_lot` (its adaptive spinning keeps the submitter and the workers off the futex
//! when the queue lock is only briefly held, which is most of the pool's throughput); under
//! `--cfg loom` the shim's model-checked `Mutex`/`Condvar` (see `crate::loom`). Poisoning cannot
//! happen (no code panics while holding the lock: jobs run unlocked) and is ignored.
//!
//! Also here: [`QueueHint`], a lock-free copy of the queue length that a worker spinning before it
//! sleeps polls instead of the lock. It is only a hint (every decision is re-made under the lock),
//! so `Relaxed` suffices; under loom it is a no-op and the spin is one `yield_now`.

#[cfg(not(loom))]
mod imp {
    use std::time::Duration;

    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(parking_lot::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }

        pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(&mut guard);
            guard
        }

        /// Returns the guard and whether the wait timed out.
        pub(crate) fn wait_timeout<'a, T>(
            &self,
            mut guard: MutexGuard<'a, T>,
            timeout: Duration,
        ) -> (MutexGuard<'a, T>, bool) {
            let result = self.0.wait_for(&mut guard, timeout);
            (guard, result.timed_out())
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

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
    use std::sync::PoisonError;
    use std::time::Duration;

    pub(crate) use crate::loom::sync::MutexGuard;

    pub(crate) struct Mutex<T>(crate::loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(crate::loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    pub(crate) struct Condvar(crate::loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(crate::loom::sync::Condvar::new())
        }

        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
        }

        /// Returns the guard and whether the wait timed out (loom never times out).
        pub(crate) fn wait_timeout<'a, T>(
            &self,
            guard: MutexGuard<'a, T>,
            timeout: Duration,
        ) -> (MutexGuard<'a, T>, bool) {
            let (guard, result) = self
                .0
                .wait_timeout(guard, timeout)
                .unwrap_or_else(PoisonError::into_inner);
            (guard, result.timed_out())
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

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

pub(crate) use imp::{Condvar, Mutex, MutexGuard, QueueHint};
