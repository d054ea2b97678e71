//! `Semaphore` and `BoundedSemaphore` with FIFO hand-off (eventlet's `coros.Semaphore`, fixed).
//!
//! # Invariants
//!
//! * Under the lock: `permits` free permits and a FIFO list of waiting nodes. A permit is either
//!   counted in `permits` or granted to exactly one node, never both: `release` hands it to the
//!   first waiting node if there is one (marking the node granted under the lock), else counts it.
//! * `acquire` takes a counted permit only when no one is waiting, so a newcomer never overtakes a
//!   waiter (FIFO fairness).
//! * A waiter that gives up (timeout or kill) removes its node if still listed; if it was granted
//!   in the meantime it releases that permit again, which passes it to the next waiter. No permit
//!   is lost or duplicated.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;

use super::waiter::{Node, Waiter};
use crate::deadline::deadline_after;
use crate::green::Parker;

/// A release beyond a `BoundedSemaphore`'s initial count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("released a bounded semaphore more times than it was acquired")]
pub struct OverReleased;

/// A counting semaphore whose waiters are served first come, first served.
///
/// `Clone` shares the same semaphore.
///
/// ```
/// use filature::sync::Semaphore;
///
/// let sem = Semaphore::new(1);
/// sem.acquire();
/// assert!(!sem.try_acquire());
/// sem.release();
/// let _permit = sem.access(); // released when dropped
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    bound: Option<usize>,
}

struct State {
    permits: usize,
    waiters: VecDeque<Arc<Node<()>>>,
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore::with_bound(permits, None)
    }

    fn with_bound(permits: usize, bound: Option<usize>) -> Semaphore {
        Semaphore {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    permits,
                    waiters: VecDeque::new(),
                }),
                bound,
            }),
        }
    }

    /// Takes a permit if one is free and nobody waits; never blocks.
    pub fn try_acquire(&self) -> bool {
        let mut st = self.inner.state.lock();
        if st.waiters.is_empty() && st.permits > 0 {
            st.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Takes a permit, waiting for one in FIFO order.
    pub fn acquire(&self) {
        self.acquire_until(None);
    }

    /// Takes a permit, waiting at most `timeout`. Returns whether it got one. A
    /// `timeout` too large to add to the clock (`Duration::MAX`) is no limit.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_until(deadline_after(timeout))
    }

    /// Takes a permit and returns a guard that releases it when dropped.
    pub fn access(&self) -> SemaphoreGuard<'_> {
        self.acquire();
        SemaphoreGuard { sem: self }
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let parker = Parker::current("Semaphore::acquire");
        let node = {
            let mut st = self.inner.state.lock();
            if st.waiters.is_empty() && st.permits > 0 {
                st.permits -= 1;
                return true;
            }
            let node = Node::new(Waiter::Park(parker.unparker().clone()));
            st.waiters.push_back(node.clone());
            node
        };
        let guard = GiveUp {
            sem: self,
            node: &node,
            done: false,
        };
        loop {
            {
                let _st = self.inner.state.lock();
                if node.grant.lock().is_some() {
                    let mut g = guard;
                    g.done = true;
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
            parker.park(deadline);
        }
        drop(guard);
        // The guard passed on a grant that raced with the timeout; we report the timeout.
        false
    }

    /// Returns a permit (to the first waiter, if any). Never blocks. On a `BoundedSemaphore`
    /// created through [`BoundedSemaphore::new`], use its `release`, which checks the bound.
    pub fn release(&self) {
        let _ = self.release_checked();
    }

    fn release_checked(&self) -> Result<(), OverReleased> {
        let waiter = {
            let mut st = self.inner.state.lock();
            match st.waiters.pop_front() {
                Some(node) => {
                    *node.grant.lock() = Some(());
                    Some(node.waiter.clone())
                }
                None => {
                    if self.inner.bound.is_some_and(|b| st.permits >= b) {
                        return Err(OverReleased);
                    }
                    st.permits += 1;
                    None
                }
            }
        };
        if let Some(w) = waiter {
            w.wake();
        }
        Ok(())
    }

    /// Free permits now.
    pub fn available(&self) -> usize {
        self.inner.state.lock().permits
    }

    /// Free permits minus waiters (negative when green threads wait), as eventlet's `balance`.
    pub fn balance(&self) -> isize {
        let st = self.inner.state.lock();
        st.permits as isize - st.waiters.len() as isize
    }

    /// True when an `acquire` now would wait.
    pub fn locked(&self) -> bool {
        let st = self.inner.state.lock();
        st.permits == 0 || !st.waiters.is_empty()
    }
}

/// Gives up a wait: unlists the node, or passes on a permit granted meanwhile.
struct GiveUp<'a> {
    sem: &'a Semaphore,
    node: &'a Arc<Node<()>>,
    done: bool,
}

impl Drop for GiveUp<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let granted = {
            let mut st = self.sem.inner.state.lock();
            match st.waiters.iter().position(|n| Arc::ptr_eq(n, self.node)) {
                Some(i) => {
                    st.waiters.remove(i);
                    false
                }
                None => self.node.grant.lock().is_some(),
            }
        };
        if granted {
            self.sem.release();
        }
    }
}

/// Releases its permit when dropped.
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.sem.release();
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("Semaphore")
            .field("permits", &st.permits)
            .field("waiters", &st.waiters.len())
            .finish()
    }
}

/// A semaphore that refuses to be released above its initial count (eventlet's
/// `BoundedSemaphore`).
///
/// ```
/// use filature::sync::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1);
/// assert!(sem.release().is_err());
/// sem.acquire();
/// assert!(sem.release().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// A semaphore with `permits` permits, never more.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            sem: Semaphore::with_bound(permits, Some(permits)),
        }
    }
    /// See [`Semaphore::acquire`].
    pub fn acquire(&self) {
        self.sem.acquire()
    }
    /// See [`Semaphore::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.sem.acquire_timeout(timeout)
    }
    /// See [`Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }
    /// Returns a permit; an error if that would exceed the initial count.
    pub fn release(&self) -> Result<(), OverReleased> {
        self.sem.release_checked()
    }
    /// See [`Semaphore::available`].
    pub fn available(&self) -> usize {
        self.sem.available()
    }
    /// See [`Semaphore::balance`].
    pub fn balance(&self) -> isize {
        self.sem.balance()
    }
}
