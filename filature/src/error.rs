//! Error types shared across filature. Each is small, matchable and says what happened.

use thiserror::Error;

/// A wait ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("timed out")]
pub struct TimedOut;

/// An operation was cancelled before it produced a result (Twisted's `CancelledError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Something that fires once was fired a second time (Twisted's `AlreadyCalled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("already called")]
pub struct AlreadyCalled;

/// The target refused new work because it has stopped (or is stopping).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what} has stopped")]
pub struct Stopped {
    /// What stopped: "the reactor", "thread pool 'db'", ….
    pub what: String,
}
