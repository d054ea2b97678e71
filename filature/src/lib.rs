//! filature: hubs, stackful green threads, native thread pools and named threads in one process,
//! with safe bridges between them.
//!
//! Write blocking-style code (`sleep`, `event.wait()`, `handle.join()`) that parks only a green
//! thread; run blocking work on a pool while only the caller waits; post work to named threads
//! and to a Twisted-style reactor; and move between these and async Rust without a bridge that
//! can hang silently.
//!
//! ```
//! use std::time::Duration;
//! use filature::{green, sync::Event, tpool};
//!
//! let ready = Event::new();
//! let r = ready.clone();
//! let worker = green::spawn(move || {
//!     green::sleep(Duration::from_millis(5)); // parks this green thread only
//!     let sum = tpool::execute(|| (1..=100u64).sum::<u64>()); // on a pool thread
//!     r.send(sum).unwrap();
//! });
//! assert_eq!(ready.wait().unwrap(), 5050); // main() drives its hub while it waits
//! worker.join();
//! ```
//!
//! # Three contexts, and what "blocking" means in each
//!
//! Every OS thread may own one [`hub`] (an event loop: timers, I/O readiness, a cross-thread
//! inbox), created the first time the thread needs it. Code on a thread runs in one of three
//! contexts:
//!
//! | context | what a filature wait (`sleep`, `Event::wait`, `join`, `tpool::execute`, …) does |
//! |---|---|
//! | a **green thread** ([`green::spawn`]) | parks the green thread; the hub runs the others |
//! | the thread's **main context** (`main()`, a plain thread, a named thread's job) | drives the hub until the condition holds, so green threads, timers and posted calls keep running |
//! | a **hub callback** (a timer, a posted call, a link listener) | panics at once, every time: blocking there would stall the loop; spawn a green thread |
//!
//! Non-blocking operations (spawn, send, `try_*`, post, cancel, kill) work everywhere.
//!
//! Green threads never leave the thread that spawned them, so `Rc`, thread-locals and `!Send`
//! captures are sound in them, and a parked green thread may lend data on its stack to a pool
//! job. When a thread ends, its green threads are killed and unwound before its thread-locals are
//! destroyed ([`hub::scope`]; `docs/thread-exit.md` in the repository).
//!
//! # Which kind of concurrency
//!
//! | you have | use | because |
//! |---|---|---|
//! | many concurrent waits (connections, timers, requests) | green threads: [`green::spawn`], [`green::GreenPool`] | a parked green thread costs ~4.5 KiB; a switch (round trip through the hub) ~20 ns |
//! | a blocking call you cannot avoid (a database driver, `std::fs`, DNS) | [`tpool::execute`] (may borrow from the caller), [`tpool::spawn`] | only the calling green thread waits; the hub keeps running |
//! | Twisted code: `callInThread`, `deferToThread`, a pool you size and stop | [`pool::ThreadPool`], [`reactor::call_in_thread`], [`reactor::defer_to_thread`] | Twisted's contract, with timeouts on `stop` and errors after it |
//! | work that must be serial and named (`"config"`, `"file-io"`) | [`threads::ThreadManager`], [`run_in_thread`], [`threads::EventQueue`] | one OS thread per name; jobs run in order and may block |
//! | a process-wide event loop, Twisted style | [`reactor`] (`run`, `stop`, `call_later`, system event triggers) | the reactor is one hub, on `main` or on its own thread |
//! | futures | [`hub::spawn_future`], [`green::block_on`]; a [`green::JoinHandle`] and a [`deferred::Deferred`] are futures | mix async and green code freely |
//!
//! # The bridges
//!
//! | from → to | call | the caller |
//! |---|---|---|
//! | any thread → the reactor | [`reactor::call_from_thread`] | returns at once; `Err(Stopped)` after the reactor stopped |
//! | any thread → the reactor, and wait | [`reactor::blocking_call_from_thread`] (`_timeout`, `_deferred`, `_future`) | waits in its own context; never on the reactor thread itself (an error) |
//! | any thread → a hub | [`hub::HubHandle::call`], [`hub::HubHandle::spawn`] | returns at once |
//! | the reactor → a pool | [`reactor::defer_to_thread`] → `Deferred` | returns at once |
//! | the reactor → a green thread | [`reactor::defer_to_green_thread`] → `Deferred`, [`reactor::spawn`] → `JoinHandle` | returns at once |
//! | a green thread → a pool | [`tpool::execute`] | parks; may lend its stack |
//! | any thread → a named thread | [`threads::ThreadManager::call_in_thread`], `#[run_in_thread]` | returns at once (inline on that thread) |
//! | async ↔ green | [`green::block_on`], [`hub::spawn_future`] | parks / returns a handle |
//!
//! Waits on events, queues, semaphores, joins, commands, pool handles and blocking calls have
//! `_timeout` forms, and [`green::with_timeout`] bounds any other wait; the exception is
//! [`tpool::execute`], which holds its borrow until the job returns (use [`tpool::spawn`] for a
//! job you may give up on). Every panic is caught at the boundary it crosses and handed to
//! whoever waits ([`Failure`]), and a duration too large for the clock (`Duration::MAX`) means
//! "no limit".
//!
//! # Modules
//!
//! [`green`] (green threads, timeouts, `GreenPool`, `Command`, `block_on`), [`sync`] (`Event`,
//! `Queue`, `Semaphore`, `BoundedSemaphore`, `CountdownEvent`), [`hub`] (the loop, timers,
//! `scope`, `snapshot`, the blocking detector), [`deferred`] (Twisted's `Deferred`,
//! `DeferredList`), [`reactor`], [`pool`] (`ThreadPool`), [`tpool`], [`threads`] (named threads,
//! event queues), and the attribute macros [`run_in_thread`], [`run_in_reactor`],
//! [`run_in_green_thread`], [`run_in_waitable_green_thread`].
//!
//! The repository's `filature/examples/tour.rs` (`cargo run --release --example tour`) walks
//! through all of it; `bench/README.md` compares every scenario with tokio, may and the
//! originals' peers side by side; `docs/concordance.md` maps every eventlet, eventlib, Twisted
//! and SIP SIMPLE SDK API to its filature name.

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
