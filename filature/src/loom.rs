//! The crate-private synchronisation shim.
//!
//! The cross-thread parts (the hub inbox, the park/unpark cell, the Event core, the thread pool's
//! queue) import `Arc`, `Mutex`, `Condvar` and atomics from here (or the lock from [`lock`]), so that a `--cfg loom` build swaps
//! them for loom's model-checked versions (see `src/loom_models.rs` and `tests/loom_pool.rs`).

#[cfg(not(loom))]
#[allow(unused_imports)] // not every build uses every name yet
pub(crate) mod sync {
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{
            AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
        };
    }
}

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) mod sync {
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{
            AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
        };
    }
}

/// An `UnsafeCell` with loom's closure API, so that loom checks every access to the cell's
/// contents under `--cfg loom` (used by the hub inbox's queue, `hub/mpsc.rs`).
pub(crate) mod cell {
    #[cfg(loom)]
    pub(crate) use loom::cell::UnsafeCell;

    #[cfg(not(loom))]
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(loom))]
    impl<T> UnsafeCell<T> {
        pub(crate) fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Calls `f` with a pointer to the contents (which `f` may write through).
        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

/// Thread spawning, so that the thread pool's workers become loom threads under `--cfg loom`.
#[cfg(not(loom))]
pub(crate) mod thread {
    pub(crate) use std::thread::{current, yield_now, Builder, JoinHandle};

    /// True if the thread behind `handle` has finished (so joining it will not block).
    pub(crate) fn is_finished<T>(handle: &JoinHandle<T>) -> bool {
        handle.is_finished()
    }
}

/// Thread spawning, so that the thread pool's workers become loom threads under `--cfg loom`.
#[cfg(loom)]
pub(crate) mod thread {
    pub(crate) use loom::thread::{current, yield_now, Builder, JoinHandle};

    /// Loom cannot ask; report "not finished" so that handles are kept and joined at stop.
    pub(crate) fn is_finished<T>(_handle: &JoinHandle<T>) -> bool {
        false
    }
}

/// A lock and condvar with one by-value API: `parking_lot` normally (its adaptive spinning keeps
/// short critical sections off the futex), the shim's model-checked `Mutex`/`Condvar` under
/// `--cfg loom`. Poisoning cannot happen (no code panics while holding these locks: user code
/// runs unlocked) and is ignored. Used by the thread pool's queue, `JoinHandle` and `Queue`.
pub(crate) mod lock {
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
    }

    pub(crate) use imp::{Condvar, Mutex, MutexGuard};
}
