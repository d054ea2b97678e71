//! `Event<T>`: a value (or failure) sent once and seen by every waiter (eventlet's `coros.event`).
//!
//! # Invariants
//!
//! * One mutex guards the value and the FIFO waiter list. `send` stores the value, takes the whole
//!   list and bumps `epoch` under the lock, then wakes the waiters (in order) after releasing it.
//! * A waiter records the `epoch` at which it registered. If the epoch has moved on it was taken
//!   off the list by a send or reset and need not search the list on its way out, so a million
//!   waiters released at once cost O(n), not O(n²). If the epoch is unchanged it is still listed and
//!   removes itself (timeout, kill) so no stale wake-up remains.
//! * Waiters re-check the value after every wake-up: wake-ups may be spurious, never lost. A
//!   `reset` keeps the value it removes in `reset_value`, so a waiter that a send released (its
//!   epoch moved on) but that had not run yet before the reset still returns that value.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::waiter::Waiter;
use crate::deadline::deadline_after;
use crate::green::park::Park;
use crate::green::Parker;
use crate::loom::sync::{Arc, Mutex, MutexGuard};
use crate::{Failure, TimedOut};

/// `send` on an event that already has a value (call `reset` first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the event was already sent")]
pub struct AlreadySent;

/// A one-shot value that any number of waiters receive (eventlet's `event`).
///
/// `Clone` shares the same event. `send` never blocks or yields; waiters wake in FIFO order.
///
/// ```
/// use filature::{green, sync::Event};
///
/// let ev = Event::new();
/// let e = ev.clone();
/// let waiter = green::spawn(move || e.wait().unwrap() + 1);
/// ev.send(41).unwrap();
/// assert_eq!(waiter.join(), 42);
/// ```
pub struct Event<T> {
    inner: Arc<Mutex<State<T>>>,
}

struct State<T> {
    value: Option<Result<T, Failure>>,
    /// The value `reset` took away, for waiters that the send released but that had not run yet.
    reset_value: Option<Result<T, Failure>>,
    waiters: VecDeque<Waiter>,
    epoch: u64,
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Self {
        Event {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Event<T> {
    fn default() -> Self {
        Event::new()
    }
}

impl<T> Event<T> {
    /// A new event with no value.
    pub fn new() -> Event<T> {
        Event {
            inner: Arc::new(Mutex::new(State {
                value: None,
                reset_value: None,
                waiters: VecDeque::new(),
                epoch: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fire(&self, value: Result<T, Failure>) -> Result<(), AlreadySent> {
        let waiters = {
            let mut st = self.lock();
            if st.value.is_some() {
                return Err(AlreadySent);
            }
            st.value = Some(value);
            st.epoch += 1;
            std::mem::take(&mut st.waiters)
        };
        for w in waiters {
            w.wake();
        }
        Ok(())
    }

    /// Sends the value to every current and future waiter. Never blocks.
    pub fn send(&self, value: T) -> Result<(), AlreadySent> {
        self.fire(Ok(value))
    }

    /// Sends a failure: waiters get `Err(failure)`.
    pub fn send_err(&self, failure: Failure) -> Result<(), AlreadySent> {
        self.fire(Err(failure))
    }

    /// True once a value or failure has been sent.
    pub fn ready(&self) -> bool {
        self.lock().value.is_some()
    }

    /// Forgets the value so the event can be sent again. Waiters that were waiting when it was
    /// sent still receive it (even if they had not run yet); later waiters wait for the next send.
    ///
    /// On an event without a value (never sent, or reset since its last send) `reset` does
    /// nothing: it does not panic (eventlet's `reset` asserts that the event was sent), the
    /// waiters keep waiting, and the next `send` succeeds.
    ///
    /// ```
    /// use filature::sync::Event;
    ///
    /// let ev = Event::new();
    /// ev.reset(); // never sent: nothing to forget
    /// assert!(!ev.ready());
    /// ev.send(1).unwrap();
    /// ```
    pub fn reset(&self) {
        let mut st = self.lock();
        if let Some(v) = st.value.take() {
            st.reset_value = Some(v);
        }
    }
}

impl<T: Clone> Event<T> {
    /// The value if it has been sent; never blocks.
    pub fn poll(&self) -> Option<Result<T, Failure>> {
        self.lock().value.clone()
    }

    /// Waits for the value (parks a green thread; drives the hub in a main context).
    pub fn wait(&self) -> Result<T, Failure> {
        match self.wait_until(None) {
            Ok(v) => v,
            Err(TimedOut) => unreachable!("no deadline"),
        }
    }

    /// Waits at most `timeout`. A `timeout` too large to add to the clock (`Duration::MAX`) is
    /// no limit.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Result<T, Failure>, TimedOut> {
        self.wait_until(deadline_after(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<Result<T, Failure>, TimedOut> {
        self.wait_with(&Parker::current("Event::wait"), deadline)
    }

    /// The wait loop, for any way of parking (the loom model brings its own).
    pub(crate) fn wait_with(
        &self,
        parker: &impl Park,
        deadline: Option<Instant>,
    ) -> Result<Result<T, Failure>, TimedOut> {
        let me = Waiter::Park(parker.unparker().clone());
        let mut listed_at: Option<u64> = None;
        let guard = Unlist {
            event: self,
            me: &me,
            listed_at: &mut listed_at,
        };
        loop {
            {
                let mut st = guard.event.lock();
                if let Some(v) = &st.value {
                    return Ok(v.clone());
                }
                if guard.listed_at.is_some_and(|at| at != st.epoch) {
                    // A send released us, then a reset took the value away before we ran.
                    if let Some(v) = &st.reset_value {
                        return Ok(v.clone());
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(TimedOut);
                }
                if *guard.listed_at != Some(st.epoch) {
                    st.waiters.push_back(me.clone());
                    *guard.listed_at = Some(st.epoch);
                }
            }
            parker.park(deadline);
        }
    }
}

/// Takes a waiter off the list on the way out if it is still there (timeout, kill).
struct Unlist<'a, T> {
    event: &'a Event<T>,
    me: &'a Waiter,
    listed_at: &'a mut Option<u64>,
}

impl<T> Drop for Unlist<'_, T> {
    fn drop(&mut self) {
        if let Some(epoch) = *self.listed_at {
            let mut st = self.event.lock();
            if st.epoch == epoch {
                if let Some(i) = st.waiters.iter().position(|w| w.same(self.me)) {
                    st.waiters.remove(i);
                }
            }
        }
    }
}

impl<T> fmt::Debug for Event<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Event")
            .field("ready", &st.value.is_some())
            .field("waiters", &st.waiters.len())
            .finish()
    }
}
