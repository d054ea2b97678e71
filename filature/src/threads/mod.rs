//! Named threads: serial worker threads, created on demand by name or driven by an event queue.
//!
//! - [`ThreadManager`]: threads created on first use by id (`"file-io"`, `"config"`), fed with
//!   [`call_in_thread`](ThreadManager::call_in_thread); each hosts a hub and runs its jobs one at
//!   a time in its main context, where they may block (the SIP SIMPLE SDK's `ThreadManager`).
//! - [`EventQueue`]: a dedicated, named OS thread that hands events to a handler one at a time
//!   (python-application's `EventQueue`).
//! - [`CumulativeEventQueue`]: the same, but events accumulate into a batch until
//!   [`process`](CumulativeEventQueue::process) is called.

mod cumulative;
mod event_queue;
mod manager;
mod manager_errors;
mod queue_core;

pub use cumulative::{CumulativeBuilder, CumulativeEventQueue};
pub use event_queue::{Builder, EventQueue};
pub use manager::{NamedThread, ThreadManager, THREAD_OPS};
pub use manager_errors::{StopTimeout, ThreadError, ThreadErrorKind};
pub use queue_core::{JoinError, PutError, StillRunning};
