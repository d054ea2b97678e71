//! Waiters: who to wake when a condition changes, and FIFO lists of them.
//!
//! A waiter is either a parked context (green thread or main context, woken through its
//! [`ParkCell`](crate::green::park)) or an async task (a `std::task::Waker`). Lists are FIFO: the
//! sync primitives wake (or hand off to) their waiters in arrival order.
//!
//! Hand-off primitives (`Semaphore`, `Queue`) use [`Node`]s: the releaser removes the first node
//! from the list and marks it `granted` (with the item, for queues) under the primitive's lock, so
//! a permit or item is never claimed twice. A waiter that gives up (timeout, kill) removes its node
//! if it is still listed; if it was already granted, it passes the grant on (puts the permit or
//! item back and wakes the next waiter), so nothing is lost or duplicated.

use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;

use crate::green::park::{unpark, Unparker};

#[derive(Clone)]
pub(crate) enum Waiter {
    Park(Unparker),
    Task(Waker),
}

impl Waiter {
    pub(crate) fn wake(self) {
        match self {
            Waiter::Park(u) => unpark(&u),
            Waiter::Task(w) => w.wake(),
        }
    }

    pub(crate) fn same(&self, other: &Waiter) -> bool {
        match (self, other) {
            (Waiter::Park(a), Waiter::Park(b)) => crate::loom::sync::Arc::ptr_eq(a, b),
            (Waiter::Task(a), Waiter::Task(b)) => a.will_wake(b),
            _ => false,
        }
    }
}

/// A waiter with a slot for what is handed to it.
pub(crate) struct Node<T> {
    pub(crate) waiter: Waiter,
    /// `Some` once granted; only ever written under the owning primitive's lock.
    pub(crate) grant: Mutex<Option<T>>,
}

impl<T> Node<T> {
    pub(crate) fn new(waiter: Waiter) -> Arc<Node<T>> {
        Arc::new(Node {
            waiter,
            grant: Mutex::new(None),
        })
    }
}

/// A list of waiters that holds the first one inline: most waits have exactly one waiter, and
/// this keeps them allocation-free.
#[derive(Default)]
pub(crate) struct WaiterList {
    first: Option<Waiter>,
    rest: Vec<Waiter>,
}

impl WaiterList {
    pub(crate) fn push(&mut self, w: Waiter) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn contains(&self, w: &Waiter) -> bool {
        self.first.as_ref().is_some_and(|f| f.same(w)) || self.rest.iter().any(|x| x.same(w))
    }

    pub(crate) fn remove(&mut self, w: &Waiter) {
        if self.first.as_ref().is_some_and(|f| f.same(w)) {
            self.first = if self.rest.is_empty() {
                None
            } else {
                Some(self.rest.remove(0))
            };
        } else {
            self.rest.retain(|x| !x.same(w));
        }
    }

    /// Wakes everyone, in the order they were added.
    pub(crate) fn wake_all(self) {
        if let Some(f) = self.first {
            f.wake();
        }
        for w in self.rest {
            w.wake();
        }
    }
}
