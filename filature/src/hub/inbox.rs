//! The cross-thread inbox of a hub.
//!
//! # Pieces
//!
//! * `queue`: a lock-free, unbounded, multi-producer single-consumer FIFO (`hub/mpsc.rs`: blocks of
//!   31 items, a producer reserves a slot with one compare-and-swap on the tail, emptied blocks
//!   are reused). Only the hub's thread takes items out. Under `--cfg loom` it is a loom
//!   `Mutex<VecDeque>`, a stand-in with the same contract, so that the models check the protocol
//!   below (the same code in both builds); the real queue has its own model.
//! * `state`: one atomic word, changed only with read-modify-writes (so all its changes form one
//!   total order, its modification order, and each RMW acquires everything released by the ones
//!   before it): `SLEEPING` (bit 0), `CLOSED` (bit 1), and above them `entered`, the number of
//!   pushes ever let in (wrapping).
//! * `taken`: how many items the hub has taken out, ever (wrapping; only the hub writes it).
//!
//! A push is one RMW on `state` (enter: count itself and read both flags), then the queue's push.
//! The hub compares `entered` with `taken` to know whether a push it cannot see yet is on its way.
//!
//! # Invariants
//!
//! * **Every push that is let in puts exactly one item in the queue**, after its enter. So
//!   `entered - taken` items are queued or on their way, and every item the hub took was let in
//!   by an enter earlier in the modification order than any RMW the hub makes afterwards.
//! * **Exactly once, or handed back.** An enter that reads `CLOSED` undoes itself and hands the
//!   item back. `close` sets `CLOSED` and reads `entered` in one RMW, then takes items until it
//!   has taken that many in all (waiting for pushes still on their way): every push let in before
//!   `CLOSED` is taken, once (the queue hands each item out once), and none is let in after.
//! * **Order.** The queue is FIFO in the order producers reserved their slots, so items run in
//!   arrival order overall and FIFO per producer.
//! * **No starvation.** `drain` takes what is queued (at most `DRAIN_MAX` items) before the hub
//!   runs any of it; items posted while the hub runs a drained batch wait for the next pass, so
//!   timers and I/O still run under a flood of posts.
//! * **No lost wake-up.** The hub announces sleep with an RMW that sets `SLEEPING` and reads
//!   `entered` (`prepare_sleep`), and sleeps only if `entered == taken`. A push whose enter comes
//!   before that RMW is counted in `entered`; since every item taken was let in before the RMW,
//!   `entered == taken` means its item has been taken already. A push whose enter comes after it
//!   reads `SLEEPING`, and wakes the hub once its item is in the queue. A producer that reads
//!   `SLEEPING` clears it (`fetch_and`) and wakes the hub only if it was the one that cleared it,
//!   so several producers make one syscall; a stale clear (the hub woke and went back to sleep
//!   meanwhile) costs one spurious wake-up, never a lost one. `nudge` is such a clear without an
//!   item, for conditions stored before it (a stop request, an unpark of the main context) that
//!   the hub re-checks after `prepare_sleep`.
//! * While the hub is awake, a post is one RMW on `state` plus the queue's push: no lock, no
//!   syscall. A push stopped between its enter and its queue push (preempted) makes the hub spin
//!   politely (it will not sleep, and `close` waits) until the item lands.

use crossbeam_utils::CachePadded;

#[cfg(not(loom))]
use super::mpsc::Queue;

use crate::loom::sync::atomic::{AtomicUsize, Ordering};

const SLEEPING: usize = 1;
const CLOSED: usize = 2;
const SHIFT: u32 = 2;
/// One push let in, in `state`.
const ENTERED_ONE: usize = 1 << SHIFT;
/// `taken` reduced to the width of `entered`.
const COUNT_MASK: usize = usize::MAX >> SHIFT;
/// The most items one `drain` takes, so that producers that post as fast as the hub takes items
/// out cannot keep one drain going.
const DRAIN_MAX: usize = 1024;

pub(crate) struct Inbox<M> {
    queue: Queue<M>,
    /// Padded: producers write it on every post; the hub's other fields stay out of its line.
    state: CachePadded<AtomicUsize>,
    /// Written by the hub only (an atomic so that the inbox is `Sync`; `Relaxed` suffices).
    taken: AtomicUsize,
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
            queue: Queue::new(),
            state: CachePadded::new(AtomicUsize::new(0)),
            taken: AtomicUsize::new(0),
        }
    }

    /// Appends `item`. Returns the item back if the inbox is closed.
    pub(crate) fn push(&self, item: M) -> Result<Wake, M> {
        // ORDERING: AcqRel, like every RMW on `state` (see the module docs).
        let seen = self.state.fetch_add(ENTERED_ONE, Ordering::AcqRel);
        if seen & CLOSED != 0 {
            // ORDERING: see above.
            self.state.fetch_sub(ENTERED_ONE, Ordering::AcqRel);
            return Err(item);
        }
        self.queue.push(item);
        Ok(if seen & SLEEPING != 0 {
            self.take_sleeping()
        } else {
            Wake::No
        })
    }

    /// Clears `SLEEPING`; the caller that cleared it must wake the hub.
    fn take_sleeping(&self) -> Wake {
        // ORDERING: AcqRel, see the module docs.
        if self.state.fetch_and(!SLEEPING, Ordering::AcqRel) & SLEEPING != 0 {
            Wake::Yes
        } else {
            Wake::No
        }
    }

    /// Asks a sleeping hub to wake up without posting anything (used when some other condition
    /// the hub waits on has changed; store it before calling). Returns whether the caller must
    /// wake it.
    pub(crate) fn nudge(&self) -> Wake {
        self.take_sleeping()
    }

    /// Was anything let in that the hub has not taken yet (queued, or on its way into the queue:
    /// a producer between its enter and its push, which is brief and runs no user code)? Checked
    /// each pass, and while the hub watches before sleeping. Two loads, one of them of `state`,
    /// whose line stays in the hub's cache while nobody posts.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        // ORDERING: Acquire, so that a drain after a `true` finds the item once its push is
        // done (the queue's own Acquire on the item's slot is what makes the item visible).
        self.pending_count(Ordering::Acquire) != 0
    }

    /// The same question for the loop to ask after each green thread it resumes, where a stale
    /// answer costs little: a stale `false` only delays an item to the next pass (whose
    /// `has_pending` and `prepare_sleep` are the real checks); a `true` for an item still on its
    /// way ends a run of green threads early.
    #[inline]
    pub(crate) fn maybe_pending(&self) -> bool {
        self.pending_count(Ordering::Relaxed) != 0
    }

    /// `entered - taken`: items queued or on their way.
    #[inline]
    fn pending_count(&self, order: Ordering) -> usize {
        let entered = self.state.load(order) >> SHIFT;
        entered.wrapping_sub(self.taken.load(Ordering::Relaxed)) & COUNT_MASK
    }

    /// Adds `n` to `taken` (hub only, so a load and a store).
    fn count_taken(&self, n: usize) {
        let taken = self.taken.load(Ordering::Relaxed);
        self.taken.store(taken.wrapping_add(n), Ordering::Relaxed);
    }

    /// Moves the items queued now into `out` (which must be empty), in arrival order: until the
    /// queue is empty, or at most `DRAIN_MAX` of them (the rest wait for the next pass). Hub
    /// thread only.
    pub(crate) fn drain(&self, out: &mut Vec<M>) {
        debug_assert!(out.is_empty());
        let mut queue = self.queue.consumer();
        while out.len() < DRAIN_MAX {
            match queue.pop() {
                Some(m) => out.push(m),
                None => break,
            }
        }
        drop(queue);
        self.count_taken(out.len());
    }

    /// The hub is about to block. Returns `false` (and does not mark it asleep) if items are
    /// queued or on their way; otherwise marks it asleep so the next producer wakes it. Hub
    /// thread only.
    pub(crate) fn prepare_sleep(&self) -> bool {
        // ORDERING: AcqRel, see the module docs.
        let seen = self.state.fetch_or(SLEEPING, Ordering::AcqRel);
        if seen >> SHIFT == self.taken.load(Ordering::Relaxed) & COUNT_MASK {
            return true;
        }
        self.end_sleep();
        false
    }

    /// The hub is awake again (whether or not someone woke it). Hub thread only.
    pub(crate) fn end_sleep(&self) {
        // ORDERING: AcqRel, see the module docs.
        self.state.fetch_and(!SLEEPING, Ordering::AcqRel);
    }

    /// Refuses all further pushes and returns what was still queued, in order, waiting for pushes
    /// let in before the close that are still on their way. Hub thread only.
    pub(crate) fn close(&self) -> Vec<M> {
        // ORDERING: AcqRel, see the module docs.
        let seen = self.state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut rest = Vec::new();
        if seen & CLOSED != 0 {
            return rest; // the first close took everything
        }
        let entered = seen >> SHIFT;
        let mut taken = self.taken.load(Ordering::Relaxed);
        let mut queue = self.queue.consumer();
        while taken & COUNT_MASK != entered {
            match queue.pop() {
                Some(m) => {
                    rest.push(m);
                    taken = taken.wrapping_add(1);
                }
                // A producer let in before `CLOSED` is between its enter and its push (no user
                // code runs there).
                None => crate::loom::thread::yield_now(),
            }
        }
        self.taken.store(taken, Ordering::Relaxed);
        rest
    }

    /// True once `close` has run (the reactor asks, to refuse inline calls after its shutdown).
    pub(crate) fn is_closed(&self) -> bool {
        // ORDERING: Acquire, pairs with `close`.
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// How many items are queued or on their way (a snapshot; exact on the hub's thread).
    pub(crate) fn len(&self) -> usize {
        // ORDERING: Relaxed: a snapshot for introspection.
        self.pending_count(Ordering::Relaxed)
    }
}

/// The queue's stand-in for the inbox models: the same contract (linearizable push and pop, one
/// consumer), built from loom's `Mutex`, so that the models of the protocol above stay small;
/// `hub::mpsc::Queue` has its own model (`loom_models`).
#[cfg(loom)]
struct Queue<M>(crate::loom::sync::Mutex<std::collections::VecDeque<M>>);

#[cfg(loom)]
impl<M> Queue<M> {
    fn new() -> Self {
        Queue(crate::loom::sync::Mutex::new(
            std::collections::VecDeque::new(),
        ))
    }

    fn push(&self, item: M) {
        self.0.lock().unwrap().push_back(item);
    }

    fn consumer(&self) -> StandInConsumer<'_, M> {
        StandInConsumer(self)
    }
}

#[cfg(loom)]
struct StandInConsumer<'a, M>(&'a Queue<M>);

#[cfg(loom)]
impl<M> StandInConsumer<'_, M> {
    fn pop(&mut self) -> Option<M> {
        self.0 .0.lock().unwrap().pop_front()
    }
}
