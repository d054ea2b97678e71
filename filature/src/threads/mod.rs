//! Named threads: serial worker threads with an event-queue discipline.
//!
//! - [`EventQueue`]: a dedicated, named OS thread that hands events to a handler one at a time
//!   (python-application's `EventQueue`).
//! - [`CumulativeEventQueue`]: the same, but events accumulate into a batch until
//!   [`process`](CumulativeEventQueue::process) is called.

mod cumulative;
mod event_queue;
mod queue_core;

pub use cumulative::{CumulativeBuilder, CumulativeEventQueue};
pub use event_queue::{Builder, EventQueue};
pub use queue_core::{JoinError, PutError, StillRunning};
