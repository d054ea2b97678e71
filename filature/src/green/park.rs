//! Park and unpark: how a context (a green thread, or a thread's main context) waits and is woken.
//!
//! Every waiting context owns one [`ParkCell`], shared as an `Arc` with whoever may wake it (wait
//! lists of the sync primitives, timers, join handles, other OS threads). It works like
//! `std::thread::park`/`unpark`, with spurious wake-ups allowed: every wait loop re-checks its own
//! condition, so a stale unpark costs one extra check, never a wrong answer.
//!
//! # The state machine (`state`)
//!
//! ```text
//!             park(): RUNNING -> PARKED, then suspend / drive the hub
//!   RUNNING  --------------------------------------------------------->  PARKED
//!      ^                                                                   |
//!      | park(): NOTIFIED -> RUNNING (consume, return)      unpark(): swap |
//!      |                                                     to NOTIFIED   v
//!   NOTIFIED  <-----------------------------------------------------------+
//!                   (only the unpark that saw PARKED schedules the context)
//! ```
//!
//! * `unpark` swaps in `NOTIFIED`. Exactly one unpark observes `PARKED` per park, and only that one
//!   schedules the context (pushes it on its hub's ready queue, directly when on the hub's thread,
//!   else through the hub's inbox). So a parked green thread is in the ready queue at most once for
//!   being unparked, and unparks that find `RUNNING`/`NOTIFIED` cost one atomic swap.
//! * A green thread in the ready queue because it *yielded* stays `RUNNING`; an unpark meanwhile
//!   only leaves `NOTIFIED` behind, consumed by its next park.
//! * `killed` is set once by a kill request and never cleared; park points check it before
//!   parking and after every wake-up and unwind the green thread when it is set.
//! * A main context's cell is never scheduled: the thread's own loop re-checks the state after each
//!   pass; an unpark from another thread only nudges that hub out of its poll.

use crate::hub::HubShared;
use crate::loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use crate::loom::sync::Arc;

const RUNNING: u8 = 0;
const PARKED: u8 = 1;
const NOTIFIED: u8 = 2;

/// A handle that can wake one waiting context. `Send + Sync`; clone it freely.
pub(crate) type Unparker = Arc<ParkCell>;

pub(crate) struct ParkCell {
    state: AtomicU8,
    killed: AtomicBool,
    /// The hub the context lives on.
    pub(crate) hub: Arc<HubShared>,
    /// Green thread id, or 0 for a main context.
    pub(crate) id: u64,
    /// The green thread's slot in its hub (+1; 0 while it has none yet).
    slot: AtomicUsize,
    /// Loom models only: scheduling a parked model thread.
    #[cfg(loom)]
    pub(crate) model_wake: loom::sync::Notify,
}

impl ParkCell {
    pub(crate) fn new(hub: Arc<HubShared>, id: u64) -> ParkCell {
        ParkCell {
            state: AtomicU8::new(RUNNING),
            killed: AtomicBool::new(false),
            hub,
            id,
            slot: AtomicUsize::new(0),
            #[cfg(loom)]
            model_wake: loom::sync::Notify::new(),
        }
    }

    pub(crate) fn is_main(&self) -> bool {
        self.id == 0
    }

    pub(crate) fn set_slot(&self, slot: usize) {
        // ORDERING: Release pairs with the Acquire in `slot`: a cross-thread unpark that reads the
        // slot happened after the green thread parked, which happened after this store.
        self.slot.store(slot + 1, Ordering::Release);
    }

    pub(crate) fn slot(&self) -> Option<usize> {
        // ORDERING: see `set_slot`.
        self.slot.load(Ordering::Acquire).checked_sub(1)
    }

    /// Consumes a pending notification, if any. Only the owner calls this, and only while the
    /// state is RUNNING or NOTIFIED (never PARKED), so a plain store suffices: other threads only
    /// ever write NOTIFIED, and one that lands between our load and store merges into the
    /// notification we are consuming (the caller re-checks its condition after every wake-up).
    #[inline]
    pub(crate) fn try_consume(&self) -> bool {
        // ORDERING: Acquire makes everything the unparker wrote before its swap visible to the
        // woken context (e.g. the value an Event sender stored before waking its waiters).
        if self.state.load(Ordering::Acquire) == NOTIFIED {
            self.state.store(RUNNING, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Announces that the context is about to wait. Returns `false` if a notification arrived in
    /// the meantime (it is left in place for `try_consume`).
    #[inline]
    pub(crate) fn begin_park(&self) -> bool {
        // ORDERING: AcqRel: Release publishes the waiter's registration writes to the unparker that
        // swaps after us; Acquire is for the failure path's later consume.
        self.state
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends a wait, woken or not (a timer, a spurious resume, the main loop giving up), back in
    /// RUNNING with any notification consumed.
    #[inline]
    pub(crate) fn end_park(&self) {
        // ORDERING: Acquire, as in `try_consume`. Usually we were woken (NOTIFIED) and a plain
        // store suffices (see `try_consume`); from PARKED we must CAS, as an unpark may race us.
        if self.state.load(Ordering::Acquire) == NOTIFIED
            || self
                .state
                .compare_exchange(PARKED, RUNNING, Ordering::Acquire, Ordering::Acquire)
                .is_err()
        {
            self.state.store(RUNNING, Ordering::Relaxed);
        }
    }

    /// True if a notification is waiting to be consumed.
    #[inline]
    pub(crate) fn peek_notified(&self) -> bool {
        // ORDERING: Acquire, as a consume would.
        self.state.load(Ordering::Acquire) == NOTIFIED
    }

    /// Wakes the context. Returns true if this call must schedule it (it saw PARKED).
    #[inline]
    pub(crate) fn notify(&self) -> bool {
        // ORDERING: AcqRel: Release publishes the unparker's writes to the consumer's Acquire.
        self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED
    }

    /// Marks the context killed (green threads only). Returns true the first time.
    pub(crate) fn request_kill(&self) -> bool {
        // ORDERING: AcqRel so the killer's earlier writes are visible once the target observes it.
        !self.killed.swap(true, Ordering::AcqRel)
    }

    #[inline]
    pub(crate) fn is_killed(&self) -> bool {
        // ORDERING: Acquire pairs with `request_kill`.
        self.killed.load(Ordering::Acquire)
    }
}

/// Wakes the context behind `cell`, from any thread.
pub(crate) fn unpark(cell: &Unparker) {
    if cell.notify() {
        // In the loom models the context is a model thread, and scheduling it is a notify.
        #[cfg(loom)]
        {
            cell.model_wake.notify();
            return;
        }
        #[cfg(not(loom))]
        crate::hub::schedule_unparked(cell);
    }
}

/// How a waiting context blocks: implemented by `green::Parker` (green thread or main context)
/// and, in the loom models, by a model parker. The sync primitives' wait loops are written
/// against this, so the models run the real loops.
pub(crate) trait Park {
    /// Who to wake.
    fn unparker(&self) -> &Unparker;
    /// Waits until unparked, until `deadline`, or spuriously.
    fn park(&self, deadline: Option<std::time::Instant>);
}
