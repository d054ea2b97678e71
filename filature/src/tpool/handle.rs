//! `TpoolHandle`: the waiting side of a detached (`'static`) tpool job.
//!
//! # Invariants
//!
//! * The job and the handle share one `Arc<Shared>`. The job owns a [`Deliver`] that fills the
//!   outcome exactly once: with `f`'s value or panic when it runs, or with `Cancelled` when the
//!   job is dropped unrun (a cancel removed it from the queue). Delivering takes the waiter list
//!   under the lock and wakes it after releasing the lock.
//! * A handle dropped (or a wait given up) before the job ends leaves the job to finish; its
//!   outcome then sits in `Shared` until the last `Arc` goes, which is the job's own on the
//!   worker: the value is dropped there, never leaked.
//! * Waiters re-check the outcome after every wake-up and take themselves off the list on the way
//!   out (timeout, kill), so no stale registration remains.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;

use crate::deadline::deadline_after;
use crate::green::Parker;
use crate::pool::JobHandle;
use crate::sync::waiter::{Waiter, WaiterList};
use crate::Failure;

/// How a tpool job ended when it did not return a value.
#[derive(Debug, Clone, Error)]
pub enum JobError {
    /// The job panicked; the failure carries the panic.
    #[error("tpool job panicked: {0}")]
    Panicked(Failure),
    /// The job was cancelled before it started, and never ran.
    #[error("tpool job was cancelled")]
    Cancelled,
}

impl JobError {
    /// True if the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JobError::Cancelled)
    }

    /// The panic, if the job panicked.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            JobError::Panicked(f) => Some(f),
            JobError::Cancelled => None,
        }
    }
}

/// [`TpoolHandle::wait_timeout`] gave up: time ran out (the handle comes back; drop it to leave
/// the job to finish on its own), or the job failed.
#[derive(Error)]
pub enum WaitTimeoutError<T> {
    /// Time ran out; here is the handle, still waitable.
    #[error("timed out waiting for a tpool job")]
    TimedOut(TpoolHandle<T>),
    /// The job panicked or was cancelled.
    #[error(transparent)]
    Failed(JobError),
}

impl<T> fmt::Debug for WaitTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitTimeoutError::TimedOut(_) => f.write_str("TimedOut(..)"),
            WaitTimeoutError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

enum Outcome<T> {
    Pending,
    Done(Result<T, JobError>),
    Taken,
}

struct State<T> {
    outcome: Outcome<T>,
    waiters: WaiterList,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn is_done(&self) -> bool {
        !matches!(self.state.lock().outcome, Outcome::Pending)
    }
}

/// Owned by the job; delivers its outcome exactly once (`Cancelled` if dropped unrun).
struct Deliver<T> {
    shared: Arc<Shared<T>>,
    delivered: bool,
}

impl<T> Deliver<T> {
    fn deliver(&mut self, outcome: Result<T, JobError>) {
        self.delivered = true;
        let waiters = {
            let mut st = self.shared.state.lock();
            st.outcome = Outcome::Done(outcome);
            std::mem::take(&mut st.waiters)
        };
        waiters.wake_all();
    }
}

impl<T> Drop for Deliver<T> {
    fn drop(&mut self) {
        if !self.delivered {
            self.deliver(Err(JobError::Cancelled));
        }
    }
}

/// The job to queue for `f`, and its handle (without a way to cancel yet).
pub(super) fn job<F, T>(f: F) -> (Box<dyn FnOnce() + Send>, TpoolHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            outcome: Outcome::Pending,
            waiters: WaiterList::default(),
        }),
    });
    let mut deliver = Deliver {
        shared: shared.clone(),
        delivered: false,
    };
    let job = Box::new(move || {
        let outcome = Failure::catch(f).map_err(JobError::Panicked);
        deliver.deliver(outcome);
    });
    (job, TpoolHandle { shared, job: None })
}

/// A detached tpool job, from [`spawn`](super::spawn) or [`Tpool::spawn`](super::Tpool::spawn).
///
/// Dropping the handle neither cancels nor waits: the job still runs and its value is dropped
/// on the worker. Waiting works from a green thread (only it parks), a main context, or any
/// thread; the handle is also a `Future`.
///
/// ```
/// use std::time::Duration;
/// use filature::tpool::{self, WaitTimeoutError};
///
/// let slow = tpool::spawn(|| { std::thread::sleep(Duration::from_millis(200)); "late" });
/// let slow = match slow.wait_timeout(Duration::from_millis(1)) {
///     Err(WaitTimeoutError::TimedOut(handle)) => handle,
///     other => panic!("{other:?}"),
/// };
/// assert_eq!(slow.wait(), "late");
/// ```
pub struct TpoolHandle<T> {
    shared: Arc<Shared<T>>,
    /// `None` if the job ran inline.
    job: Option<JobHandle>,
}

impl<T> TpoolHandle<T> {
    pub(super) fn with_job(mut self, job: JobHandle) -> Self {
        self.job = Some(job);
        self
    }

    /// True once the job has finished (returned, panicked) or was cancelled.
    ///
    /// ```
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let h = filature::tpool::spawn(move || gate.recv().is_err());
    /// assert!(!h.is_finished());
    /// drop(release);
    /// while !h.is_finished() { std::thread::yield_now(); }
    /// assert!(h.wait());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.shared.is_done()
    }

    /// Removes the job from the pool's queue if no worker has taken it yet: then it never runs
    /// (its closure is dropped here) and waiters get [`JobError::Cancelled`]. True if it was
    /// removed; false if it had started, finished, or was cancelled already.
    ///
    /// ```
    /// use filature::tpool::{JobError, Tpool};
    ///
    /// let pool = Tpool::new("cancel", 1);
    /// let (release, gate) = std::sync::mpsc::channel::<()>();
    /// let busy = pool.spawn(move || { let _ = gate.recv(); });
    /// let queued = pool.spawn(|| unreachable!("cancelled"));
    /// assert!(queued.cancel());
    /// assert!(matches!(queued.wait_result(), Err(JobError::Cancelled)));
    /// drop(release);
    /// busy.wait();
    /// ```
    pub fn cancel(&self) -> bool {
        self.job.as_ref().is_some_and(JobHandle::cancel)
    }

    /// Waits for the job and returns its value; re-raises its panic; panics if it was cancelled.
    pub fn wait(self) -> T {
        match self.wait_result() {
            Ok(v) => v,
            Err(JobError::Panicked(f)) => f.resume_unwind(),
            Err(JobError::Cancelled) => panic!("waited for a tpool job that was cancelled"),
        }
    }

    /// Waits for the job and returns its outcome.
    pub fn wait_result(self) -> Result<T, JobError> {
        self.wait_until(None);
        self.take()
    }

    /// Waits at most `timeout`. On timeout the handle comes back inside the error (drop it to
    /// leave the job to finish; its value is then dropped on the worker). A `timeout` too
    /// large to add to the clock (`Duration::MAX`) is no limit.
    pub fn wait_timeout(self, timeout: Duration) -> Result<T, WaitTimeoutError<T>> {
        if self.wait_until(deadline_after(timeout)) {
            self.take().map_err(WaitTimeoutError::Failed)
        } else {
            Err(WaitTimeoutError::TimedOut(self))
        }
    }

    fn take(&self) -> Result<T, JobError> {
        let mut st = self.shared.state.lock();
        match std::mem::replace(&mut st.outcome, Outcome::Taken) {
            Outcome::Done(outcome) => outcome,
            Outcome::Pending | Outcome::Taken => unreachable!("taken once, after the job ended"),
        }
    }

    /// True once done; false if `deadline` passed first.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        crate::green::refuse_in_callback("TpoolHandle::wait");
        if self.shared.is_done() {
            return true;
        }
        let parker = Parker::current("TpoolHandle::wait");
        let me = Waiter::Park(parker.unparker().clone());
        let _unlist = Unlist {
            shared: &self.shared,
            me: &me,
        };
        loop {
            {
                let mut st = self.shared.state.lock();
                if !matches!(st.outcome, Outcome::Pending) {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                if !st.waiters.contains(&me) {
                    st.waiters.push(me.clone());
                }
            }
            parker.park(deadline);
        }
    }
}

/// Takes a waiter off the list on the way out (timeout, kill).
struct Unlist<'a, T> {
    shared: &'a Shared<T>,
    me: &'a Waiter,
}

impl<T> Drop for Unlist<'_, T> {
    fn drop(&mut self) {
        self.shared.state.lock().waiters.remove(self.me);
    }
}

impl<T> Future for TpoolHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.shared.state.lock();
        match std::mem::replace(&mut st.outcome, Outcome::Pending) {
            Outcome::Done(outcome) => {
                st.outcome = Outcome::Taken;
                Poll::Ready(outcome)
            }
            Outcome::Taken => panic!("TpoolHandle polled after it completed"),
            Outcome::Pending => {
                let w = Waiter::Task(cx.waker().clone());
                if !st.waiters.contains(&w) {
                    st.waiters.push(w);
                }
                Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for TpoolHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpoolHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
