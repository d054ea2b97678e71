//! Green-aware synchronisation: usable from green threads (they park), a thread's main context
//! (it drives the hub while waiting) and any other OS thread. A send, put or release from any
//! thread wakes a waiter on any hub. Waiters are served in FIFO order, and a waiter that is killed
//! or times out leaves no stale wake-up and loses or duplicates no permit or item.
//!
//! Blocking calls panic inside a hub callback (spawn a green thread instead); the `try_*`, `send`
//! and `release` operations never block and work everywhere.

mod countdown;
mod event;
pub(crate) mod oneshot;
mod queue;
mod semaphore;
pub(crate) mod waiter;

pub use countdown::CountdownEvent;
pub use event::{AlreadySent, Event};
pub use queue::{Queue, QueueError};
pub use semaphore::{BoundedSemaphore, OverReleased, Semaphore, SemaphoreGuard};
