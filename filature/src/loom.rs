//! The crate-private synchronisation shim.
//!
//! The cross-thread parts (the hub inbox, the park/unpark cell, the Event core, the thread pool's
//! queue) import `Arc`, `Mutex`, `Condvar` and atomics from here, so that a `--cfg loom` build swaps
//! them for loom's model-checked versions (see `src/loom_models.rs` and `tests/loom_pool.rs`).

#[cfg(not(loom))]
#[allow(unused_imports)] // not every build uses every name yet
pub(crate) mod sync {
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
    }
}

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) mod sync {
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
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
