//! The driver of callback-style networking: each hub's table of *driven* objects (connections,
//! listening ports, connects in progress) and the queue of those that have work to do.
//!
//! # Invariants
//!
//! * **Hub-local.** The table is a thread-local (one hub per thread, so thread-local is
//!   hub-local). A driven object is created on its hub's thread, lives in that table, registers
//!   its socket with that hub only (`Registration::try_io`) and is run only there: its state is
//!   `Rc`/`RefCell`, never shared with another thread. What other threads may hold is a
//!   [`Key`]-carrying `Waker` (`Send + Sync`) or a `ListeningPort` (a hub handle and a key):
//!   both reach the object only through a call posted to its hub.
//! * **Runs are hub callbacks, never dispatch.** A readiness event wakes the object's `Waker`
//!   inside `Core::poll_io`; the wake only queues the object (at most once: its `scheduled`
//!   flag) and, if the queue was empty, queues one drain with `call_soon` (a zero-sized closure:
//!   no allocation). The drain runs in the next pass as a hub callback, so protocol code never
//!   runs inside a dispatch (as `io.rs` requires) and blocking in it panics. Objects queued
//!   during a drain run in the next drain (next pass), so a busy connection cannot starve
//!   timers, green threads or the inbox.
//! * **Keys have generations.** A key names `(slot, generation)`; a wake for a removed or
//!   reused slot is ignored.
//! * **Shutdown.** `Core::shut_down` calls [`shut_down`] after the hub's green threads are
//!   gone: every object still in the table is closed (connections report `connection_lost`
//!   with a "hub shut down" reason, ports fire their stop Deferreds) and the table is emptied.
//!   At thread exit the table's own destructor drops what is left (closing fds) without
//!   running user code.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Wake, Waker};

use crate::hub::HubHandle;

/// Something the driver runs: a connection, a listening port, a connect in progress.
pub(crate) trait Driven {
    /// Does whatever readiness allows (read, write, accept, finish a connect). Called from a
    /// drain, as a hub callback.
    fn run(self: Rc<Self>);
    /// The hub is shutting down: close, tell the user, let go.
    fn shut_down(self: Rc<Self>);
    /// Set while the object is queued.
    fn scheduled(&self) -> &Cell<bool>;
    /// For the owners of keys that need the concrete type (a `ListeningPort`).
    fn as_any(self: Rc<Self>) -> Rc<dyn std::any::Any>;
}

/// `(slot, generation)` of a driven object in its hub's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    slot: u32,
    gen: u32,
}

#[derive(Default)]
struct Driver {
    slots: Vec<(u32, Option<Rc<dyn Driven>>)>,
    free: Vec<u32>,
    ready: Vec<Rc<dyn Driven>>,
    /// A drain is queued on the hub.
    drain_queued: bool,
}

thread_local! {
    static DRIVER: RefCell<Driver> = RefCell::default();
}

/// Wakes a driven object; `Send + Sync`, as a `Waker` must be.
struct KeyWaker {
    hub: HubHandle,
    key: Key,
}

impl Wake for KeyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.hub.is_current() {
            wake(self.key);
        } else {
            // Not reached by the driver's own registrations (dispatch runs on the hub's
            // thread); refused only once the hub has closed, and its table with it.
            let key = self.key;
            let _ = self.hub.call(move || wake(key));
        }
    }
}

/// Puts the object `make` builds (given its key and its waker) in this hub's table.
pub(crate) fn insert<T: Driven + 'static>(make: impl FnOnce(Key, Waker) -> Rc<T>) -> Rc<T> {
    let hub = crate::hub::current();
    let key = DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        match d.free.pop() {
            Some(slot) => {
                let e = &mut d.slots[slot as usize];
                e.0 = e.0.wrapping_add(1);
                Key { slot, gen: e.0 }
            }
            None => {
                d.slots.push((0, None));
                Key {
                    slot: (d.slots.len() - 1) as u32,
                    gen: 0,
                }
            }
        }
    });
    let waker = Waker::from(Arc::new(KeyWaker { hub, key }));
    let obj = make(key, waker);
    let dynobj: Rc<dyn Driven> = obj.clone();
    DRIVER.with(|d| d.borrow_mut().slots[key.slot as usize].1 = Some(dynobj));
    obj
}

/// Registers the table's thread-local before the thread-exit hook (see `Core::arm_exit_hook`):
/// the hook's shutdown closes what is in it, and green threads it unwinds may drop transports.
pub(crate) fn touch_thread_local() {
    let _ = DRIVER.try_with(|_| ());
}

/// Takes the object out of the table (it closed). Its key no longer wakes anything. Nothing to
/// do once the table itself is gone (the thread is exiting and its objects were dropped with it).
pub(crate) fn remove(key: Key) {
    let gone = DRIVER.try_with(|d| {
        let mut d = d.borrow_mut();
        let e = d.slots.get_mut(key.slot as usize)?;
        if e.0 != key.gen || e.1.is_none() {
            return None;
        }
        let gone = e.1.take();
        d.free.push(key.slot);
        gone
    });
    drop(gone.ok().flatten()); // outside the borrow: dropping it may run user code
}

/// The object behind `key`, if it is still in the table (and the table is not gone).
pub(crate) fn get(key: Key) -> Option<Rc<dyn Driven>> {
    DRIVER
        .try_with(|d| {
            let d = d.borrow();
            match d.slots.get(key.slot as usize) {
                Some((gen, Some(obj))) if *gen == key.gen => Some(obj.clone()),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

fn wake(key: Key) {
    if let Some(obj) = get(key) {
        schedule(obj);
    }
}

/// Queues `obj` to run in the next drain (once, however often it is scheduled).
pub(crate) fn schedule(obj: Rc<dyn Driven>) {
    if obj.scheduled().replace(true) {
        return;
    }
    // Once the table is gone (thread exit) nothing runs objects any more: drop it.
    let queue_drain = DRIVER.try_with(|d| {
        let mut d = d.borrow_mut();
        d.ready.push(obj);
        !std::mem::replace(&mut d.drain_queued, true)
    });
    if queue_drain == Ok(true) {
        crate::hub::call_soon(drain);
    }
}

/// Runs what was queued before this drain began (a hub callback, from `call_soon`).
fn drain() {
    let batch = DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        d.drain_queued = false;
        std::mem::take(&mut d.ready)
    });
    let mut batch = batch;
    for obj in batch.drain(..) {
        obj.scheduled().set(false);
        obj.run();
    }
    // Give the (now empty) vector back, so steady traffic allocates no new queue.
    DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        if d.ready.is_empty() && d.ready.capacity() < batch.capacity() {
            d.ready = batch;
        }
    });
}

/// The hub is shutting down (from `Core::shut_down`, green threads gone): closes every driven
/// object, running its user code as hub callbacks, until the table is empty.
pub(crate) fn shut_down() {
    // Closing one object may create none (the hub refuses nothing yet, but nothing new is
    // started by a shutting-down protocol that matters); loop until the table stays empty.
    for _ in 0..8 {
        // The table outlives the thread-exit hook that calls this (`touch_thread_local`); were
        // it gone, its objects would have been dropped with it.
        let all: Vec<Rc<dyn Driven>> = DRIVER
            .try_with(|d| {
                let mut d = d.borrow_mut();
                d.ready.clear();
                d.drain_queued = false;
                d.slots.iter().filter_map(|(_, o)| o.clone()).collect()
            })
            .unwrap_or_default();
        if all.is_empty() {
            break;
        }
        for obj in all {
            crate::hub::with_core(|c| c.run_callback("connection shutdown", || obj.shut_down()));
        }
    }
    let rest = DRIVER.try_with(|d| std::mem::take(&mut *d.borrow_mut()));
    drop(rest);
}
