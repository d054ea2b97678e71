//! `Oneshot<T>`: a slot filled once and taken once, waited on from any context (crate-private).
//!
//! The meeting point of the bridges that hand one value across threads: a future's output to its
//! [`FutureHandle`](crate::hub::FutureHandle), a reactor call's value to the thread blocked in
//! `blocking_call_from_thread`, an actor's reply to a [`Command`](crate::green::Command).
//!
//! # Invariants
//!
//! * One mutex guards the value, the `filled` flag and the FIFO waiter list. `fill` succeeds
//!   exactly once (the first caller wins; later ones get their value back), takes the whole list
//!   under the lock and wakes it after releasing the lock.
//! * `filled` never goes back to false; the value is taken at most once (`take`). A waiter that
//!   finds `filled` with the value already taken gets `None`: someone else consumed it.
//! * A waiter (parked context or task) is listed at most once and removes itself on the way out
//!   (timeout, kill, drop of a future), so no stale wake-up remains. Wake-ups may be spurious;
//!   every wait loop re-checks `filled`.

use std::task::{Context, Poll};
use std::time::Instant;

use crate::green::park::Park;
use crate::green::Parker;
use crate::loom::sync::{Mutex, MutexGuard};
use crate::sync::waiter::{Waiter, WaiterList};

pub(crate) struct Oneshot<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    value: Option<T>,
    filled: bool,
    waiters: WaiterList,
}

impl<T> Oneshot<T> {
    pub(crate) fn new() -> Oneshot<T> {
        Oneshot {
            state: Mutex::new(State {
                value: None,
                filled: false,
                waiters: WaiterList::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No user code runs under this lock, so poisoning can only come from an abort in progress.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fills the slot and wakes every waiter. Hands `value` back if it was already filled.
    pub(crate) fn fill(&self, value: T) -> Result<(), T> {
        let waiters = {
            let mut st = self.lock();
            if st.filled {
                return Err(value);
            }
            st.filled = true;
            st.value = Some(value);
            std::mem::take(&mut st.waiters)
        };
        waiters.wake_all();
        Ok(())
    }

    pub(crate) fn is_filled(&self) -> bool {
        self.lock().filled
    }

    /// Takes the value if it is there, without waiting.
    pub(crate) fn try_take(&self) -> Option<T> {
        self.lock().value.take()
    }

    /// Waits until filled or `deadline` (parks a green thread, drives the hub in a main context;
    /// panics in a hub callback, naming `op`). Returns whether it was filled; does not take.
    pub(crate) fn wait(&self, op: &'static str, deadline: Option<Instant>) -> bool {
        crate::green::refuse_in_callback(op);
        if self.lock().filled {
            return true;
        }
        self.wait_with(&Parker::current(op), deadline)
    }

    /// The wait loop, for any way of parking (the loom model brings its own).
    pub(crate) fn wait_with(&self, parker: &impl Park, deadline: Option<Instant>) -> bool {
        let me = Waiter::Park(parker.unparker().clone());
        let guard = Unlist {
            shot: self,
            me: &me,
        };
        let mut listed = false;
        loop {
            {
                let mut st = guard.shot.lock();
                if st.filled {
                    // Filling took the list, with us in it if we were listed.
                    std::mem::forget(guard);
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false; // `guard` unlists us
                }
                if !listed {
                    st.waiters.push(me.clone());
                    listed = true;
                }
            }
            // A kill or timeout unwinds from here; `guard` then unlists us.
            parker.park(deadline);
        }
    }

    /// Polls for the value from a task: takes it if filled, else registers the task's waker.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut st = self.lock();
        if st.filled {
            return Poll::Ready(st.value.take());
        }
        let w = Waiter::Task(cx.waker().clone());
        if !st.waiters.contains(&w) {
            st.waiters.push(w);
        }
        Poll::Pending
    }
}

/// Removes a parked waiter if its wait unwinds (kill, timeout).
struct Unlist<'a, T> {
    shot: &'a Oneshot<T>,
    me: &'a Waiter,
}

impl<T> Drop for Unlist<'_, T> {
    fn drop(&mut self) {
        self.shot.lock().waiters.remove(self.me);
    }
}
