//! The crate-private synchronisation shim.
//!
//! The cross-thread parts (the hub inbox, the park/unpark cell, the Event core, the thread pool's
//! queue) import `Arc`, `Mutex`, `Condvar` and atomics from here, so that a `--cfg loom` build swaps
//! them for loom's model-checked versions (see `tests/loom_*.rs`).

#[cfg(not(loom))]
#[allow(unused_imports)]
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
