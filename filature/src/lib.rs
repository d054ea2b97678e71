//! filature: hubs, stackful green threads, native thread pools and named threads in one process,
//! with safe bridges between them.
//!
//! See the README for a tour.

mod error;
mod failure;
mod loom;

pub mod deferred;
pub mod green;
pub mod hub;
pub mod pool;
pub mod reactor;
pub mod sync;
pub mod threads;
pub mod tpool;

#[cfg(all(test, loom))]
mod loom_models;

pub use error::{AlreadyCalled, Cancelled, Stopped, TimedOut};
pub use failure::Failure;
