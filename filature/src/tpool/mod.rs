//! eventlet's `tpool`: run blocking work on native threads while only the calling green thread
//! waits.
//!
//! [`execute`] runs a closure on a pool thread and returns its value; the green thread that calls
//! it parks and the other green threads on its hub keep running. The closure may borrow from the
//! caller's stack. [`spawn`] is the detached form for `'static` work, with a handle that can time
//! out and cancel. [`Proxy`] wraps an object whose calls go through the pool. The free functions
//! use one global pool sized by [`SIZE_VAR`] (default [`DEFAULT_SIZE`]); [`Tpool::new`] makes
//! more, named ones.
//!
//! # Invariants
//!
//! * **Who owns the job.** Each [`Tpool`] owns at most one [`ThreadPool`](crate::pool::ThreadPool)
//!   (threads `0..=size`, started on demand), behind an `RwLock`. A submitter holds the read lock
//!   while it queues, so [`killall`] (which takes the pool out under the write lock) never stops a
//!   pool under a submitter, and a queued job is always run: the pool's stop runs its backlog.
//!   Once queued, a job belongs to the pool's queue, then to the worker that runs it.
//! * **How the result travels.** [`execute`]'s job writes `f`'s value, or its panic payload, into
//!   a slot shared with the caller, marks it done, and unparks the caller, which re-checks the
//!   slot after every wake-up, takes the outcome, and returns the value or re-raises the panic
//!   with its original payload (`crate::pool::scoped`). A [`spawn`]ed job delivers into its
//!   [`TpoolHandle`]'s shared state instead, waking every waiter.
//! * **Why borrowing is sound.** Green threads never move between threads and their stacks never
//!   move (no stack copying), and `execute` does not return, nor unwind, until the job has
//!   finished with everything it borrowed — exactly the argument of [`std::thread::scope`]. The
//!   one `unsafe` block that erases the closure's lifetime lives in `pool/scoped.rs`, with that
//!   argument spelled out.
//! * **How a kill is held back.** While it waits, the caller has lent its stack
//!   (`Parker::lend_stack`: the green thread's `lent` count, or its hub's `main_lent` in a main
//!   context). A kill or an expired [`with_timeout`](crate::green::with_timeout) then stays
//!   pending instead of unwinding from the park point; `execute` raises it as soon as the job has
//!   returned (dropping the job's value).
//! * **No deadlock when nested.** From a worker of any filature pool, `execute` and `spawn` run
//!   inline: queueing behind the caller's own job could wait forever on a full pool.
//!
//! ```
//! use std::time::Duration;
//! use filature::{green, tpool};
//!
//! let ticks = green::spawn(|| (0..5).map(|_| green::sleep(Duration::from_millis(2))).count());
//! // The main context waits for a slow blocking call; `ticks` keeps running meanwhile.
//! let mut buf = vec![0u8; 4];
//! tpool::execute(|| {
//!     std::thread::sleep(Duration::from_millis(30));
//!     buf.copy_from_slice(b"done");
//! });
//! assert_eq!(&buf, b"done");
//! assert_eq!(ticks.join(), 5);
//! ```

mod config;
mod handle;
mod pool;
mod proxy;

use std::sync::OnceLock;
use std::time::Duration;

pub use config::{parse_pool_size, SizeVarError, DEFAULT_SIZE, SIZE_VAR};
pub use handle::{JobError, TpoolHandle, WaitTimeoutError};
pub use pool::Tpool;
pub use proxy::Proxy;

use crate::pool::StopTimedOut;

/// The global pool, used by the free functions of this module.
///
/// ```
/// assert_eq!(filature::tpool::global().name(), "tpool");
/// ```
pub fn global() -> &'static Tpool {
    static GLOBAL: OnceLock<Tpool> = OnceLock::new();
    GLOBAL.get_or_init(Tpool::global)
}

/// Reads [`SIZE_VAR`] now (unless [`set_num_threads`] already set the size) and returns the
/// global pool's size, or the error that the first [`execute`] would otherwise panic with.
///
/// ```
/// // With FILATURE_THREADPOOL_SIZE unset:
/// # std::env::remove_var(filature::tpool::SIZE_VAR);
/// assert_eq!(filature::tpool::try_init(), Ok(filature::tpool::DEFAULT_SIZE));
/// ```
pub fn try_init() -> Result<usize, SizeVarError> {
    global().try_num_threads()
}

/// Runs `f` on a thread of the global pool; see [`Tpool::execute`].
///
/// ```
/// use filature::{green, tpool};
///
/// let mut buf = [0u8; 64];
/// tpool::execute(|| buf.fill(7)); // may borrow
/// assert_eq!(buf, [7; 64]);
/// let g = green::spawn(|| tpool::execute(|| "from a pool thread"));
/// assert_eq!(g.join(), "from a pool thread");
/// ```
///
/// # Panics
///
/// Re-raises a panic of `f`. Panics if [`SIZE_VAR`] is malformed (see [`try_init`]), and inside
/// a hub callback.
pub fn execute<'a, F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'a,
{
    global().execute(f)
}

/// Runs `'static` work on the global pool without waiting; see [`Tpool::spawn`].
///
/// ```
/// let h = filature::tpool::spawn(|| 2 + 2);
/// assert_eq!(h.wait(), 4);
/// ```
pub fn spawn<F, T>(f: F) -> TpoolHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    global().spawn(f)
}

/// Sets the global pool's number of threads (overriding [`SIZE_VAR`]); see
/// [`Tpool::set_num_threads`].
///
/// ```
/// filature::tpool::set_num_threads(4);
/// assert_eq!(filature::tpool::global().num_threads(), 4);
/// ```
pub fn set_num_threads(n: usize) {
    global().set_num_threads(n)
}

/// Stops the global pool after its outstanding work, delivering every result, and joins its
/// threads; the next call starts a fresh pool. See [`Tpool::killall`].
///
/// ```
/// let h = filature::tpool::spawn(|| 1);
/// filature::tpool::killall();
/// assert_eq!(h.wait(), 1);
/// assert_eq!(filature::tpool::execute(|| 2), 2);
/// ```
pub fn killall() {
    global().killall()
}

/// [`killall`] that gives up after about `timeout`, naming the jobs still running. A `timeout`
/// too large to add to the clock (`Duration::MAX`) is no limit.
///
/// ```
/// filature::tpool::killall_timeout(std::time::Duration::from_secs(5)).unwrap();
/// ```
pub fn killall_timeout(timeout: Duration) -> Result<(), StopTimedOut> {
    global().killall_timeout(timeout)
}
