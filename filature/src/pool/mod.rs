//! Native thread pools: [`ThreadPool`] (Twisted's contract, its traps fixed). The eventlet-style
//! [`tpool`](crate::tpool) is built on it.

mod lock;
pub(crate) mod scoped;
mod state;
mod thread_pool;

#[cfg(not(loom))]
pub(crate) use thread_pool::registry;

pub use thread_pool::{
    is_current_thread_worker, JobHandle, PoolSizeError, PoolStats, StopTimedOut, StuckJob,
    ThreadPool, ThreadPoolBuilder, DEFAULT_IDLE_TIMEOUT,
};
