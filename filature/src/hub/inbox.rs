//! The cross-thread inbox of a hub.
//!
//! # Invariants
//!
//! * One mutex guards `items`, `sleeping` and `closed`. Producers push under it; the hub takes the
//!   whole vector under it (a swap), then runs the items *without* the lock. Items posted while a
//!   drain is running land in the fresh vector and so run in the next pass: a flood of posts never
//!   starves timers or I/O.
//! * Order: one vector, appended under the lock, drained front to back, so items run in arrival
//!   order overall and therefore FIFO per producer. Every accepted item is drained exactly once:
//!   `push` either appends (and returns `Ok`) or, once `closed`, hands the item back (`Err`).
//! * Wake-ups: the hub sets `sleeping = true` under the lock only after seeing no items
//!   (`prepare_sleep`); a producer that finds `sleeping` clears it and is the one (and only one)
//!   that must wake the hub. Because the flag is read and written under the same lock as the items,
//!   no post can slip between "hub saw nothing" and "hub sleeps" without the producer seeing
//!   `sleeping`. No syscall is made for a post while the hub is awake.
//! * `pending` mirrors "items is non-empty" and is written only under the lock; the hub reads it
//!   without the lock as a cheap hint each pass (a stale `false` only delays an item to the next
//!   pass; the sleep path re-checks under the lock).

use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::loom::sync::Mutex;

pub(crate) struct Inbox<M> {
    state: Mutex<State<M>>,
    pending: AtomicBool,
}

struct State<M> {
    items: Vec<M>,
    sleeping: bool,
    closed: bool,
}

/// What a producer must do after a successful push.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Wake {
    /// The hub is awake and will see the item on its next pass.
    No,
    /// The hub was asleep (or about to sleep): wake it.
    Yes,
}

impl<M> Inbox<M> {
    pub(crate) fn new() -> Self {
        Inbox {
            state: Mutex::new(State {
                items: Vec::new(),
                sleeping: false,
                closed: false,
            }),
            pending: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> crate::loom::sync::MutexGuard<'_, State<M>> {
        // A panic never happens while the lock is held (no user code runs under it), so a
        // poisoned lock can only come from an abort-in-progress; carry on with the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item`. Returns the item back if the inbox is closed.
    pub(crate) fn push(&self, item: M) -> Result<Wake, M> {
        let mut st = self.lock();
        if st.closed {
            return Err(item);
        }
        st.items.push(item);
        // ORDERING: Release pairs with the hub's Acquire in `has_pending`, so a hub that sees
        // `true` and then locks finds the item (the lock would order it anyway; this keeps the
        // hint honest).
        self.pending.store(true, Ordering::Release);
        Ok(if std::mem::take(&mut st.sleeping) {
            Wake::Yes
        } else {
            Wake::No
        })
    }

    /// Asks a sleeping hub to wake up without posting anything (used when some other condition
    /// the hub waits on has changed). Returns whether the caller must wake it.
    pub(crate) fn nudge(&self) -> Wake {
        let mut st = self.lock();
        if std::mem::take(&mut st.sleeping) {
            Wake::Yes
        } else {
            Wake::No
        }
    }

    /// Cheap hint: were items posted since the last drain?
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        // ORDERING: Acquire pairs with the Release store in `push`.
        self.pending.load(Ordering::Acquire)
    }

    /// Moves every item posted so far into `out` (which must be empty), in arrival order.
    pub(crate) fn drain(&self, out: &mut Vec<M>) {
        debug_assert!(out.is_empty());
        let mut st = self.lock();
        std::mem::swap(&mut st.items, out);
        // ORDERING: written under the lock; see `push`.
        self.pending.store(false, Ordering::Release);
    }

    /// The hub is about to block. Returns `false` (and does not mark it asleep) if items are
    /// waiting; otherwise marks it asleep so the next producer wakes it.
    pub(crate) fn prepare_sleep(&self) -> bool {
        let mut st = self.lock();
        if !st.items.is_empty() {
            return false;
        }
        st.sleeping = true;
        true
    }

    /// The hub is awake again (whether or not someone woke it).
    pub(crate) fn end_sleep(&self) {
        self.lock().sleeping = false;
    }

    /// Refuses all further pushes and returns what was still queued, in order.
    pub(crate) fn close(&self) -> Vec<M> {
        let mut st = self.lock();
        st.closed = true;
        // ORDERING: written under the lock; see `push`.
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut st.items)
    }

    /// True once `close` has run (the reactor asks, to refuse inline calls after its shutdown).
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}
