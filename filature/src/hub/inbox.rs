//! The cross-thread inbox of a hub.
//!
//! # Pieces
//!
//! * `queue`: a lock-free, unbounded, multi-producer FIFO (crossbeam-channel's list flavour: one
//!   allocation per 31 items, a producer reserves a slot with one compare-and-swap on the tail).
//!   Only the hub's thread takes items out. Under `--cfg loom` it is a loom `Mutex<VecDeque>`, a
//!   stand-in with the same contract (linearizable push, pop and emptiness check), so that the
//!   model checks the protocol below, which is the same code in both builds.
//! * `state`: one atomic word that both sides change only with read-modify-writes:
//!   `SLEEPING` (bit 0), `CLOSED` (bit 1), and above them the number of producers inside `push`.
//!   All writes to it are RMWs, so they form one total order (its modification order), and every
//!   RMW both acquires and releases: a later RMW (or an `Acquire` load) sees everything that
//!   happened on the thread of any earlier one.
//!
//! # Invariants
//!
//! * **Exactly once, or handed back.** `push` first enters (adds one producer) and reads `CLOSED`
//!   in the same RMW. If closed, it leaves and hands the item back. Otherwise it pushes and
//!   leaves. `close` sets `CLOSED`, then waits until no producer is inside, then takes every
//!   item: a producer that entered before `CLOSED` is counted and waited for, so its item is
//!   taken; one that entered after sees `CLOSED`. So every item `push` accepted is taken by a
//!   drain or by `close`, once (the queue hands each item out once), and none after `close`.
//! * **Order.** The queue is FIFO in the order producers reserved their slots, so items run in
//!   arrival order overall and FIFO per producer.
//! * **No starvation.** `drain` takes what is queued (at most `DRAIN_MAX` items) before the hub
//!   runs any of it; items posted while the hub runs a drained batch wait for the next pass, so
//!   timers and I/O still run under a flood of posts.
//! * **No lost wake-up.** The hub sets `SLEEPING` (an RMW) and only then checks the queue
//!   (`prepare_sleep`). A producer pushes and only then leaves (an RMW that reads `SLEEPING`).
//!   Either the producer's leave comes first in the modification order, and the hub's RMW
//!   acquires it, so the hub sees the item and does not sleep; or the hub's RMW comes first, and
//!   the producer reads `SLEEPING`. A producer that reads `SLEEPING` clears it (`fetch_and`);
//!   whoever clears it is the one that wakes the hub, so several producers make one syscall. A
//!   stale clear (the hub woke and went back to sleep meanwhile) costs one spurious wake-up,
//!   never a lost one. `nudge` is the same leave without an item, for conditions stored before
//!   it (a stop request, an unpark of the main context) that the hub re-checks after
//!   `prepare_sleep`.
//! * While the hub is awake, a post is the queue's push plus two RMWs on `state`: no lock, no
//!   syscall.

use crossbeam_utils::CachePadded;

use crate::loom::sync::atomic::{AtomicUsize, Ordering};

const SLEEPING: usize = 1;
const CLOSED: usize = 2;
/// One producer inside `push`.
const PRODUCER: usize = 4;
/// The most items one `drain` takes, so that producers that post as fast as the hub takes items
/// out cannot keep one drain going.
const DRAIN_MAX: usize = 1024;

pub(crate) struct Inbox<M> {
    queue: Queue<M>,
    /// Padded: producers write it on every post; the hub's other fields stay out of its line.
    state: CachePadded<AtomicUsize>,
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
        }
    }

    /// Appends `item`. Returns the item back if the inbox is closed.
    pub(crate) fn push(&self, item: M) -> Result<Wake, M> {
        // ORDERING: AcqRel, like every RMW on `state` (see the module docs); this one orders the
        // push after our check of `CLOSED` and makes us visible to `close`'s wait.
        let entered = self.state.fetch_add(PRODUCER, Ordering::AcqRel);
        if entered & CLOSED != 0 {
            // ORDERING: see above.
            self.state.fetch_sub(PRODUCER, Ordering::AcqRel);
            return Err(item);
        }
        self.queue.push(item);
        // ORDERING: AcqRel: releases the push to the hub's next RMW on `state` (its
        // `prepare_sleep`), and reads `SLEEPING` in the same step.
        let left = self.state.fetch_sub(PRODUCER, Ordering::AcqRel);
        Ok(if left & SLEEPING != 0 {
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

    /// Cheap check, each pass: is anything queued?
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Moves the items queued now into `out` (which must be empty), in arrival order: until the
    /// queue is empty, or at most `DRAIN_MAX` of them (the rest wait for the next pass). Hub
    /// thread only.
    pub(crate) fn drain(&self, out: &mut Vec<M>) {
        debug_assert!(out.is_empty());
        while out.len() < DRAIN_MAX {
            match self.queue.pop() {
                Some(m) => out.push(m),
                None => break,
            }
        }
    }

    /// The hub is about to block. Returns `false` (and does not mark it asleep) if items are
    /// waiting; otherwise marks it asleep so the next producer wakes it. Hub thread only.
    pub(crate) fn prepare_sleep(&self) -> bool {
        // ORDERING: AcqRel: acquires every push whose producer left before this, so the check
        // below sees its item (see the module docs).
        self.state.fetch_or(SLEEPING, Ordering::AcqRel);
        if self.queue.is_empty() {
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

    /// Refuses all further pushes and returns what was still queued, in order. Hub thread only.
    pub(crate) fn close(&self) -> Vec<M> {
        // ORDERING: AcqRel, see the module docs.
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        // Producers that entered before `CLOSED` are finishing a push (no user code runs there);
        // those after it leave at once.
        // ORDERING: Acquire: the load that sees no producer inside acquires their pushes (every
        // write to `state` is an RMW, so it reads the end of their release sequences).
        while self.state.load(Ordering::Acquire) >= PRODUCER {
            crate::loom::thread::yield_now();
        }
        let mut rest = Vec::new();
        while let Some(m) = self.queue.pop() {
            rest.push(m);
        }
        rest
    }

    /// True once `close` has run (the reactor asks, to refuse inline calls after its shutdown).
    pub(crate) fn is_closed(&self) -> bool {
        // ORDERING: Acquire, pairs with `close`.
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// How many items are queued (a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// The lock-free queue.
#[cfg(not(loom))]
struct Queue<M> {
    tx: crossbeam_channel::Sender<M>,
    rx: crossbeam_channel::Receiver<M>,
}

#[cfg(not(loom))]
impl<M> Queue<M> {
    fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Queue { tx, rx }
    }

    fn push(&self, item: M) {
        if self.tx.send(item).is_err() {
            unreachable!("the inbox owns both ends of its queue");
        }
    }

    fn pop(&self) -> Option<M> {
        self.rx.try_recv().ok()
    }

    fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn len(&self) -> usize {
        self.rx.len()
    }
}

/// The queue's stand-in for loom: the same contract, built from loom's `Mutex`.
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

    fn pop(&self) -> Option<M> {
        self.0.lock().unwrap().pop_front()
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}
