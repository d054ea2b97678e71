//! Native thread pools: [`ThreadPool`] (Twisted's contract, its traps fixed).

mod lock;
mod thread_pool;

pub use thread_pool::{
    is_current_thread_worker, JobHandle, PoolSizeError, PoolStats, StopTimedOut, StuckJob,
    ThreadPool, ThreadPoolBuilder, DEFAULT_IDLE_TIMEOUT,
};
