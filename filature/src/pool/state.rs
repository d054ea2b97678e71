//! The pool's lock-free half: the job queue and the state word that submitters and workers
//! meet on (the protocol around them is written up in `thread_pool`'s module docs).
//!
//! * [`JobQueue`]: a lock-free, unbounded MPMC FIFO (crossbeam-channel's list flavour, used only
//!   through `send`/`try_recv`; its own blocking machinery is never used). Under `--cfg loom` it is
//!   a loom `Mutex<VecDeque>`, a stand-in with the same contract (linearizable push, pop and
//!   emptiness check), so that the models check the protocol, which is the same code in both
//!   builds.
//! * [`StateWord`]: one `AtomicU64`, changed only with read-modify-writes (so its changes form
//!   one total order and each RMW acquires everything released by the ones before it). Fields,
//!   low to high: `STOPPING`, `CAN_GROW`, `in_flight`, `waking`, `sleepers`.

use crate::loom::sync::atomic::{AtomicU64, Ordering};

/// The pool has begun stopping: submissions are refused. Set once, under the pool's lock.
pub(super) const STOPPING: u64 = 1;
/// A submitter that finds no worker on its way may start one (`started`, running,
/// `workers < max`). Kept in step with those, under the pool's lock.
pub(super) const CAN_GROW: u64 = 2;

const FIELD_BITS: u32 = 20;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const IN_FLIGHT_SHIFT: u32 = 2;
const WAKING_SHIFT: u32 = IN_FLIGHT_SHIFT + FIELD_BITS;
const SLEEPERS_SHIFT: u32 = WAKING_SHIFT + FIELD_BITS;

/// One submitter between its enter and its leave (its job is being pushed).
pub(super) const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
/// One worker that will look at the queue before it sleeps or retires (just started, woken, or
/// spinning), and has not yet taken a job.
pub(super) const WAKING_ONE: u64 = 1 << WAKING_SHIFT;
/// One worker announced as sleeping (on the `sleepers` stack, or about to push itself there).
pub(super) const SLEEPERS_ONE: u64 = 1 << SLEEPERS_SHIFT;

/// A snapshot of the state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen(pub(super) u64);

impl Seen {
    pub(super) fn stopping(self) -> bool {
        self.0 & STOPPING != 0
    }

    pub(super) fn can_grow(self) -> bool {
        self.0 & CAN_GROW != 0
    }

    pub(super) fn in_flight(self) -> u64 {
        (self.0 >> IN_FLIGHT_SHIFT) & FIELD_MASK
    }

    pub(super) fn waking(self) -> u64 {
        (self.0 >> WAKING_SHIFT) & FIELD_MASK
    }

    pub(super) fn sleepers(self) -> u64 {
        self.0 >> SLEEPERS_SHIFT
    }

    /// The value after `delta` was subtracted from this one (by the RMW that returned it).
    pub(super) fn minus(self, delta: u64) -> Seen {
        Seen(self.0.wrapping_sub(delta))
    }

    /// Someone could be woken or started: the caller must compare the backlog with `waking`
    /// (`JobQueue::outruns`) and hand the work on if nobody else will take it.
    pub(super) fn may_hand_off(self) -> bool {
        self.sleepers() > 0 || self.can_grow()
    }
}

pub(super) struct StateWord(AtomicU64);

impl StateWord {
    pub(super) fn new() -> Self {
        StateWord(AtomicU64::new(0))
    }

    /// Adds `delta` (wrapping: a field's decrement is the wrapping negation of its unit, and
    /// combined moves such as "one sleeper becomes waking" are one RMW). Returns the old value.
    pub(super) fn add(&self, delta: u64) -> Seen {
        // ORDERING: AcqRel, like every RMW on the word (see the module docs).
        Seen(self.0.fetch_add(delta, Ordering::AcqRel))
    }

    pub(super) fn sub(&self, delta: u64) -> Seen {
        // ORDERING: AcqRel, see the module docs.
        Seen(self.0.fetch_sub(delta, Ordering::AcqRel))
    }

    /// Sets or clears flag bits.
    pub(super) fn set_flag(&self, flag: u64, on: bool) -> Seen {
        // ORDERING: AcqRel, see the module docs.
        Seen(if on {
            self.0.fetch_or(flag, Ordering::AcqRel)
        } else {
            self.0.fetch_and(!flag, Ordering::AcqRel)
        })
    }

    pub(super) fn load(&self) -> Seen {
        // ORDERING: Acquire: pairs with the RMWs (used for decisions re-made under the lock, and
        // by the stopper waiting for `in_flight` to fall to zero).
        Seen(self.0.load(Ordering::Acquire))
    }
}

/// The job queue (see the module docs).
#[cfg(not(loom))]
pub(super) struct JobQueue<T> {
    tx: crossbeam_channel::Sender<T>,
    rx: crossbeam_channel::Receiver<T>,
}

#[cfg(not(loom))]
impl<T> JobQueue<T> {
    pub(super) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        JobQueue { tx, rx }
    }

    pub(super) fn push(&self, item: T) {
        if self.tx.send(item).is_err() {
            unreachable!("the queue owns both ends of its channel");
        }
    }

    pub(super) fn pop(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.rx.len()
    }

    /// More jobs queued than workers on their way (`waking` as last seen)?
    pub(super) fn outruns(&self, waking: u64) -> bool {
        self.len() as u64 > waking
    }

    /// Spins (then yields) for a few microseconds, returning early if work appears.
    pub(super) fn spin_until_work(&self) {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if !self.rx.is_empty() {
                return;
            }
            backoff.snooze();
        }
    }
}

/// The queue's stand-in for loom: the same contract, built from loom's `Mutex`.
#[cfg(loom)]
pub(super) struct JobQueue<T>(crate::loom::sync::Mutex<std::collections::VecDeque<T>>);

#[cfg(loom)]
impl<T> JobQueue<T> {
    pub(super) fn new() -> Self {
        JobQueue(crate::loom::sync::Mutex::new(
            std::collections::VecDeque::new(),
        ))
    }

    pub(super) fn push(&self, item: T) {
        self.0.lock().unwrap().push_back(item);
    }

    pub(super) fn pop(&self) -> Option<T> {
        self.0.lock().unwrap().pop_front()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// More jobs queued than workers on their way (`waking` as last seen)?
    pub(super) fn outruns(&self, waking: u64) -> bool {
        self.len() as u64 > waking
    }

    /// The model only needs the yield of the spin.
    pub(super) fn spin_until_work(&self) {
        crate::loom::thread::yield_now();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fields_move_independently() {
        let w = StateWord::new();
        w.add(IN_FLIGHT_ONE);
        w.add(WAKING_ONE);
        w.add(SLEEPERS_ONE);
        w.add(SLEEPERS_ONE);
        w.set_flag(CAN_GROW, true);
        let s = w.load();
        assert_eq!(
            (s.in_flight(), s.waking(), s.sleepers()),
            (1, 1, 2),
            "{s:?}"
        );
        assert!(s.can_grow() && !s.stopping());
        // One sleeper becomes waking, in one RMW.
        w.add(WAKING_ONE.wrapping_sub(SLEEPERS_ONE));
        let s = w.load();
        assert_eq!((s.in_flight(), s.waking(), s.sleepers()), (1, 2, 1));
        // And back.
        w.add(SLEEPERS_ONE.wrapping_sub(WAKING_ONE));
        w.sub(IN_FLIGHT_ONE);
        let s = w.load();
        assert_eq!((s.in_flight(), s.waking(), s.sleepers()), (0, 1, 2));
        assert!(s.may_hand_off());
    }
}
