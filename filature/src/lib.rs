//! filature: hubs, stackful green threads, native thread pools and named threads in one process,
//! with safe bridges between them.
//!
//! See the README for a tour.

mod deadline;
mod error;
mod failure;
mod loom;

pub mod deferred;
pub mod green;
pub mod hub;
pub mod net;
pub mod pool;
pub mod reactor;
pub mod sync;
pub mod threads;
pub mod tpool;

#[cfg(all(test, loom))]
mod loom_models;

pub use error::{AlreadyCalled, Cancelled, Stopped, TimedOut};
pub use failure::Failure;
pub use hub::{snapshot, Snapshot};

/// Attribute macros that move a function's body to a named thread, the reactor or a green thread
/// (SIP SIMPLE's `run_in_thread`, `run_in_twisted_thread`, `run_in_green_thread`,
/// `run_in_waitable_green_thread`). See each macro's page.
pub use filature_macros::{
    run_in_green_thread, run_in_reactor, run_in_thread, run_in_waitable_green_thread,
};

#[doc(hidden)]
pub mod __private;

/// The README's Rust examples, compiled and run as doc-tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
