//! `Tpool`: one lazily created [`ThreadPool`] behind a lock, and the tpool operations on it.

use std::fmt;
use std::panic;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use super::config::{self, SizeVarError};
use super::handle::{self, TpoolHandle};
use crate::deadline::deadline_after;
use crate::green::Parker;
use crate::pool::scoped::{self, Scoped};
use crate::pool::{is_current_thread_worker, PoolStats, StopTimedOut, ThreadPool};
use crate::sync::Event;

/// A tpool: up to `size` worker threads, created on demand, running work for green threads (and
/// any other thread) that wait for it. The free functions of [`tpool`](crate::tpool) use the
/// global one ([`global`](super::global)); build more with [`Tpool::new`].
///
/// `Clone` shares the same pool. The worker threads are created on first use and again after a
/// [`killall`](Tpool::killall).
///
/// ```
/// use filature::tpool::Tpool;
///
/// let db = Tpool::new("db", 2);
/// let mut rows = vec![3, 1, 2];
/// db.execute(|| rows.sort());
/// assert_eq!(rows, [1, 2, 3]);
/// let thread = db.execute(|| std::thread::current().name().unwrap().to_owned());
/// assert!(thread.starts_with("filature-pool-tpool-db-"));
/// db.killall();
/// ```
#[derive(Clone)]
pub struct Tpool {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for the global pool.
    name: Option<String>,
    state: RwLock<State>,
}

struct State {
    /// `None` until the global pool reads [`config::SIZE_VAR`].
    size: Option<usize>,
    pool: Option<ThreadPool>,
    warned_inline: bool,
}

/// Where a job goes: a live pool (read-locked while submitting), or inline.
enum Target<'a> {
    Pool(parking_lot::RwLockReadGuard<'a, State>),
    Inline,
}

impl Tpool {
    /// A named pool of at most `size` threads (`0`: everything runs inline on the caller), its
    /// threads called `filature-pool-tpool-<name>-<n>`.
    ///
    /// ```
    /// let io = filature::tpool::Tpool::new("io", 4);
    /// assert_eq!(io.name(), "io");
    /// assert_eq!(io.num_threads(), 4);
    /// ```
    pub fn new(name: impl Into<String>, size: usize) -> Tpool {
        Tpool::make(Some(name.into()), Some(size))
    }

    pub(super) fn global() -> Tpool {
        Tpool::make(None, None)
    }

    fn make(name: Option<String>, size: Option<usize>) -> Tpool {
        Tpool {
            inner: Arc::new(Inner {
                name,
                state: RwLock::new(State {
                    size,
                    pool: None,
                    warned_inline: false,
                }),
            }),
        }
    }

    /// The pool's name (`"tpool"` for the global one).
    pub fn name(&self) -> &str {
        self.inner.name.as_deref().unwrap_or("tpool")
    }

    /// The configured number of threads (for the global pool, read from
    /// [`SIZE_VAR`](super::SIZE_VAR) on first use). Panics if that variable is malformed; see
    /// [`try_init`](super::try_init).
    ///
    /// ```
    /// let p = filature::tpool::Tpool::new("n", 3);
    /// p.set_num_threads(5);
    /// assert_eq!(p.num_threads(), 5);
    /// ```
    pub fn num_threads(&self) -> usize {
        match self.try_num_threads() {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    pub(super) fn try_num_threads(&self) -> Result<usize, SizeVarError> {
        if let Some(size) = self.inner.state.read().size {
            return Ok(size);
        }
        let mut st = self.inner.state.write();
        Self::resolve(&mut st)
    }

    fn resolve(st: &mut State) -> Result<usize, SizeVarError> {
        match st.size {
            Some(size) => Ok(size),
            None => {
                let size = config::size_from_env()?;
                st.size = Some(size);
                Ok(size)
            }
        }
    }

    /// Sets the number of threads. Growing takes effect at once; shrinking as workers finish
    /// their current job. `0` makes later calls run inline; the current workers finish what was
    /// queued, then exit.
    ///
    /// ```
    /// let p = filature::tpool::Tpool::new("resize", 1);
    /// p.set_num_threads(0);
    /// assert_eq!(p.execute(|| std::thread::current().name().map(str::to_owned)),
    ///            std::thread::current().name().map(str::to_owned)); // inline
    /// ```
    pub fn set_num_threads(&self, n: usize) {
        let retired = {
            let mut st = self.inner.state.write();
            st.size = Some(n);
            st.warned_inline = false;
            if n == 0 {
                st.pool.take()
            } else {
                if let Some(pool) = &st.pool {
                    pool.adjust_pool_size(0, n)
                        .expect("0 <= n and n >= 1 is a valid size");
                }
                None
            }
        };
        // Dropping a pool begins its stop without waiting: queued work still runs.
        drop(retired);
    }

    /// Counters of the live pool (all zero when no worker exists yet).
    ///
    /// ```
    /// let p = filature::tpool::Tpool::new("stats", 2);
    /// assert_eq!(p.stats().workers, 0);
    /// p.execute(|| ());
    /// assert_eq!(p.stats().workers, 1);
    /// ```
    pub fn stats(&self) -> PoolStats {
        match &self.inner.state.read().pool {
            Some(pool) => pool.stats(),
            None => PoolStats::default(),
        }
    }

    /// The pool to submit to, created if need be, read-locked so that a concurrent `killall`
    /// cannot stop it under the submitter; or `Inline` when the size is 0.
    fn target(&self) -> Target<'_> {
        {
            let st = self.inner.state.read();
            if st.pool.is_some() {
                return Target::Pool(st);
            }
            if st.size == Some(0) && st.warned_inline {
                return Target::Inline;
            }
        }
        let mut st = self.inner.state.write();
        let size = match Self::resolve(&mut st) {
            Ok(size) => size,
            Err(e) => panic!("{e}"),
        };
        if size == 0 {
            if !st.warned_inline {
                st.warned_inline = true;
                tracing::warn!(
                    pool = self.name(),
                    "tpool size is 0: work runs inline on the calling thread, blocking it"
                );
            }
            return Target::Inline;
        }
        if st.pool.is_none() {
            let name = match &self.inner.name {
                Some(name) => format!("tpool-{name}"),
                None => "tpool".to_owned(),
            };
            let pool = ThreadPool::builder()
                .name(name)
                .min(0)
                .max(size)
                .build()
                .expect("size >= 1 is a valid pool size");
            pool.start().expect("a new pool starts");
            st.pool = Some(pool);
        }
        Target::Pool(parking_lot::RwLockWriteGuard::downgrade(st))
    }

    /// Runs `f` on one of the pool's threads and returns its value; only the caller waits.
    ///
    /// * In a green thread, only that green thread parks: the others on its hub keep running. In
    ///   a thread's main context the thread drives its hub meanwhile (like any filature wait). On
    ///   a thread that never used filature, that is simply a blocking wait. Inside a hub callback
    ///   it panics, as every blocking call does there.
    /// * `f` may borrow from the caller's stack (like [`std::thread::scope`]): the call does not
    ///   return, or unwind, before `f` has finished.
    /// * Not interruptible: a kill or a [`with_timeout`](crate::green::with_timeout) expiry that
    ///   arrives meanwhile is held back, and raised as soon as `f` has returned (its value is then
    ///   dropped).
    /// * A panic in `f` is re-raised here with its original payload; the worker survives.
    /// * Called from a worker of any filature pool, or with size 0, `f` runs inline.
    ///
    /// ```
    /// use filature::{green, tpool::Tpool};
    ///
    /// let pool = Tpool::new("example", 4);
    /// let mut buf = [0u8; 64];
    /// pool.execute(|| buf.fill(7)); // borrows `buf`
    /// assert!(buf.iter().all(|&b| b == 7));
    ///
    /// let p = pool.clone();
    /// let g = green::spawn(move || p.execute(|| 6 * 7));
    /// assert_eq!(g.join(), 42);
    /// ```
    ///
    /// What the job borrows must be shareable across threads, as with [`std::thread::scope`]:
    ///
    /// ```compile_fail
    /// let counter = std::rc::Rc::new(1); // `Rc` is not `Send`
    /// filature::tpool::Tpool::new("no", 1).execute(|| *counter + 1);
    /// ```
    pub fn execute<'a, F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'a,
        T: Send + 'a,
    {
        if is_current_thread_worker() {
            return f();
        }
        let st = match self.target() {
            Target::Pool(st) => st,
            Target::Inline => return f(),
        };
        let parker = Parker::current("tpool::execute");
        let outcome = scoped::call_scoped(&parker, f, move |job| {
            let pool = st.pool.as_ref().expect("a live pool under the read lock");
            // The read lock keeps `killall` from taking this pool away, so it accepts the job.
            pool.submit_boxed(job)
        });
        // The job is over: deliver what was held back while the stack was lent.
        parker.check_interrupts();
        match outcome {
            Ok(Scoped::Ran(Ok(value))) => value,
            Ok(Scoped::Ran(Err(payload))) => panic::resume_unwind(payload),
            Ok(Scoped::Dropped) => {
                panic!("tpool '{}' dropped a job without running it", self.name())
            }
            Err(refused) => unreachable!("{refused} while read-locked"),
        }
    }

    /// Runs `f` on one of the pool's threads without waiting; the [`TpoolHandle`] waits (with or
    /// without a timeout), cancels while the job is queued, or is awaited as a `Future`. With size
    /// 0, or from a pool worker, `f` runs inline before this returns.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = filature::tpool::Tpool::new("spawn", 2);
    /// let h = pool.spawn(|| 6 * 7);
    /// assert_eq!(h.wait(), 42);
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> TpoolHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = handle::job(f);
        if is_current_thread_worker() {
            job();
            return handle;
        }
        match self.target() {
            Target::Pool(st) => {
                let pool = st.pool.as_ref().expect("a live pool under the read lock");
                match pool.submit_boxed_cancellable(job) {
                    Ok(job) => handle.with_job(job),
                    Err(refused) => unreachable!("{refused} while read-locked"),
                }
            }
            Target::Inline => {
                job();
                handle
            }
        }
    }

    /// Stops the pool's threads: the queued and running jobs finish and deliver their results to
    /// their waiters, then the workers are joined. Nothing is refused meanwhile: a call made
    /// after `killall` began starts a fresh set of threads. A no-op when no thread exists.
    ///
    /// Waits like any filature wait (a green thread parks, a main context drives its hub; the
    /// joining happens on a helper thread). From a pool worker or a hub callback it blocks the
    /// thread instead.
    ///
    /// ```
    /// let pool = filature::tpool::Tpool::new("kill", 2);
    /// let h = pool.spawn(|| { std::thread::sleep(std::time::Duration::from_millis(20)); 1 });
    /// pool.killall();
    /// assert_eq!(h.wait(), 1); // delivered
    /// assert_eq!(pool.stats().workers, 0);
    /// assert_eq!(pool.execute(|| 2), 2); // usable again
    /// ```
    pub fn killall(&self) {
        let _ = self.killall_until(None);
    }

    /// Like [`killall`](Tpool::killall), giving up after about `timeout` and naming the jobs
    /// still running; they still finish (and deliver) later, on threads no one joins.
    /// A `timeout` too large to add to the clock (`Duration::MAX`) is no limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = filature::tpool::Tpool::new("kill-timeout", 1);
    /// let h = pool.spawn(|| std::thread::sleep(Duration::from_millis(300)));
    /// # while pool.stats().busy == 0 { std::thread::yield_now(); }
    /// assert!(pool.killall_timeout(Duration::from_millis(10)).is_err());
    /// h.wait(); // still delivered
    /// ```
    pub fn killall_timeout(&self, timeout: Duration) -> Result<(), StopTimedOut> {
        self.killall_until(deadline_after(timeout))
    }

    fn killall_until(&self, deadline: Option<Instant>) -> Result<(), StopTimedOut> {
        // Taking the pool under the write lock waits out every submit in progress.
        let Some(pool) = self.inner.state.write().pool.take() else {
            return Ok(());
        };
        let stop = move || match deadline {
            None => {
                pool.stop();
                Ok(())
            }
            Some(deadline) => pool.stop_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        // A pool worker, or a hub callback, cannot wait green-style: stop right here.
        if is_current_thread_worker() || crate::hub::with_core(|core| core.in_callback()) {
            return stop();
        }
        // Otherwise stop on a helper thread and wait as this context waits, so the caller's hub
        // keeps running (a job that needs that hub, say through a blocking call into it, can
        // still finish).
        let done = Event::new();
        let tell = done.clone();
        let helper = std::thread::Builder::new()
            .name(format!("filature-tpool-{}-killall", self.name()))
            .spawn(move || {
                let _ = tell.send(stop());
            });
        if let Err(error) = helper {
            panic!(
                "tpool '{}': cannot start a thread to stop the pool: {error}",
                self.name()
            );
        }
        match done.wait() {
            Ok(outcome) => outcome,
            Err(failure) => failure.resume_unwind(),
        }
    }
}

impl fmt::Debug for Tpool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.read();
        f.debug_struct("Tpool")
            .field("name", &self.name())
            .field("size", &st.size)
            .field(
                "stats",
                &st.pool.as_ref().map(ThreadPool::stats).unwrap_or_default(),
            )
            .finish()
    }
}
