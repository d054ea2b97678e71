//! `Signal`: a hub-local "something changed" for green threads waiting on a transport.
//!
//! Invariants: hub-local (`RefCell`, `!Send`); notified only from the hub's thread (protocol
//! callbacks, transport methods); a waiter checks its condition, lists itself and parks, all
//! without a pass of the loop in between, so a notification cannot be missed. A waiter that
//! unwinds (kill, timeout) takes itself off the list.

use std::cell::RefCell;

use crate::green::Parker;
use crate::sync::waiter::{Waiter, WaiterList};

#[derive(Default)]
pub(crate) struct Signal {
    waiters: RefCell<WaiterList>,
}

impl Signal {
    /// Wakes every waiter (they re-check their conditions).
    pub(crate) fn notify_all(&self) {
        let list = std::mem::take(&mut *self.waiters.borrow_mut());
        list.wake_all();
    }

    /// Parks the calling green thread (or drives the hub from a main context) until `ready()`;
    /// panics, naming `what`, in a hub callback.
    pub(crate) fn wait_until(&self, what: &'static str, mut ready: impl FnMut() -> bool) {
        if ready() {
            crate::green::refuse_in_callback(what);
            return;
        }
        let parker = Parker::current(what);
        let me = Waiter::Park(parker.unparker().clone());
        struct Unlist<'a>(&'a Signal, &'a Waiter);
        impl Drop for Unlist<'_> {
            fn drop(&mut self) {
                self.0.waiters.borrow_mut().remove(self.1);
            }
        }
        let _unlist = Unlist(self, &me);
        loop {
            if ready() {
                return;
            }
            {
                let mut w = self.waiters.borrow_mut();
                if !w.contains(&me) {
                    w.push(me.clone());
                }
            }
            parker.park(None);
        }
    }
}
