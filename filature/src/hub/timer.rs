//! Timers of a hub: a binary heap on the monotonic clock, with lazy deletion.
//!
//! # Invariants
//!
//! * Every timer is a `TimerCell` (shared by the heap and, for user timers, a [`DelayedCall`]).
//!   A heap entry is `(deadline, seq, gen, cell)`; `seq` is the timer's creation number, so equal
//!   deadlines fire in creation order (a `reset` keeps the timer's `seq`).
//! * Moving a timer (`reset`, `delay`) bumps the cell's `gen` and pushes a new entry; an entry
//!   whose `gen` is stale, or whose cell is no longer `Pending`, is dropped when it reaches the
//!   top. When stale entries outnumber live ones the heap is rebuilt, so a churn of cancelled
//!   timeouts cannot grow it without bound.
//! * A timer fires at most once: its state goes `Pending -> Running -> Called` (or `Pending ->
//!   Cancelled`), only on the hub's thread, and its action is taken out of the cell before it runs.
//!   `active()` is false while it runs, as in Twisted.
//! * Timers are `!Send`: they live on one hub and are touched only from its thread.
//! * A deadline of `None` is one the clock cannot represent (see [`crate::deadline`]): such a
//!   timer sorts after every other and never becomes due, so the loop never wakes for it. It is
//!   still a pending timer (counted, cancellable, movable back into reach by `reset`).

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::deadline::{deadline_after, latest, postpone};
use crate::green::park::Unparker;

pub(crate) enum Action {
    /// A user callback, run as a hub callback.
    Call(Box<dyn FnOnce()>),
    /// Wake a parked context (a timed wait).
    Unpark(Unparker),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Pending,
    Running,
    Called,
    Cancelled,
}

pub(crate) struct TimerCell {
    deadline: Cell<Option<Instant>>,
    seq: u64,
    gen: Cell<u32>,
    state: Cell<State>,
    action: RefCell<Option<Action>>,
}

struct Entry {
    deadline: Option<Instant>,
    seq: u64,
    gen: u32,
    cell: Rc<TimerCell>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest (deadline, seq) on top.
        other.key().cmp(&self.key())
    }
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
    live: usize,
}

impl Timers {
    /// Adds a timer due at `deadline` (`None`: never due).
    pub(crate) fn add(&mut self, deadline: Option<Instant>, action: Action) -> Rc<TimerCell> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let cell = Rc::new(TimerCell {
            deadline: Cell::new(deadline),
            seq,
            gen: Cell::new(0),
            state: Cell::new(State::Pending),
            action: RefCell::new(Some(action)),
        });
        self.heap.push(Entry {
            deadline,
            seq,
            gen: 0,
            cell: cell.clone(),
        });
        self.live += 1;
        cell
    }

    pub(crate) fn reschedule(&mut self, cell: &Rc<TimerCell>, deadline: Option<Instant>) {
        let gen = cell.gen.get().wrapping_add(1);
        cell.gen.set(gen);
        cell.deadline.set(deadline);
        self.heap.push(Entry {
            deadline,
            seq: cell.seq,
            gen,
            cell: cell.clone(),
        });
        self.compact_if_needed();
    }

    fn cancelled(&mut self) {
        self.live = self.live.saturating_sub(1);
        self.compact_if_needed();
    }

    fn compact_if_needed(&mut self) {
        if self.heap.len() > 1024 && self.heap.len() > 2 * self.live {
            let entries = std::mem::take(&mut self.heap).into_vec();
            self.heap = entries.into_iter().filter(|e| e.is_live()).collect();
        }
    }

    /// Cancels every pending timer (a hub shutting down) and hands back their actions.
    pub(crate) fn clear(&mut self) -> Vec<Action> {
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.live = 0;
        let mut actions = Vec::new();
        for e in entries {
            if e.cell.is_pending() {
                e.cell.state.set(State::Cancelled);
                actions.extend(e.cell.action.borrow_mut().take());
            }
        }
        actions
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The earliest live deadline; `None` if no timer will ever be due.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.heap.peek() {
            if top.is_live() {
                return top.deadline;
            }
            self.heap.pop();
        }
        None
    }

    /// Pops the next timer due at `now`, marking it running and handing out its action.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Rc<TimerCell>, Action)> {
        loop {
            let top = self.heap.peek()?;
            if !top.is_live() {
                self.heap.pop();
                continue;
            }
            if !matches!(top.deadline, Some(d) if d <= now) {
                return None;
            }
            let entry = self.heap.pop().expect("peeked");
            self.live -= 1;
            entry.cell.state.set(State::Running);
            let action = entry
                .cell
                .action
                .borrow_mut()
                .take()
                .expect("a pending timer has an action");
            return Some((entry.cell, action));
        }
    }
}

impl Entry {
    /// The heap order: by deadline, a `None` deadline last, then by creation.
    fn key(&self) -> (bool, Option<Instant>, u64) {
        (self.deadline.is_none(), self.deadline, self.seq)
    }

    fn is_live(&self) -> bool {
        self.cell.is_pending() && self.cell.gen.get() == self.gen
    }
}

impl TimerCell {
    /// Neither run (nor running) nor cancelled.
    pub(crate) fn is_pending(&self) -> bool {
        self.state.get() == State::Pending
    }

    /// When it is due (`None`: never).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.get()
    }

    pub(crate) fn finish(&self) {
        self.state.set(State::Called);
    }

    /// Cancels the timer if it is still pending (internal timers; silent).
    pub(crate) fn cancel_quiet(self: &Rc<Self>) {
        if self.is_pending() {
            self.state.set(State::Cancelled);
            self.action.borrow_mut().take();
            crate::hub::try_with_timers(|t| t.cancelled());
        }
    }
}

/// Why a [`DelayedCall`] operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DelayedCallError {
    /// The call was already cancelled.
    #[error("the delayed call was already cancelled")]
    AlreadyCancelled,
    /// The call already ran (or is running).
    #[error("the delayed call has already been called")]
    AlreadyCalled,
}

/// A call scheduled on a hub for later (Twisted's `DelayedCall`), returned by
/// [`call_later`](crate::hub::call_later). Not `Send`: it belongs to the hub that made it.
///
/// ```
/// use std::time::Duration;
/// use filature::hub;
///
/// let dc = hub::call_later(Duration::from_secs(60), || unreachable!());
/// assert!(dc.active());
/// dc.cancel().unwrap();
/// assert!(!dc.active());
/// assert_eq!(dc.cancel(), Err(hub::DelayedCallError::AlreadyCancelled));
/// ```
pub struct DelayedCall {
    pub(crate) cell: Rc<TimerCell>,
}

impl DelayedCall {
    fn check_pending(&self) -> Result<(), DelayedCallError> {
        match self.cell.state.get() {
            State::Pending => Ok(()),
            State::Cancelled => Err(DelayedCallError::AlreadyCancelled),
            State::Running | State::Called => Err(DelayedCallError::AlreadyCalled),
        }
    }

    /// Cancels the call. Cancelling twice, or after it ran, is an error that says which.
    pub fn cancel(&self) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        self.cell.state.set(State::Cancelled);
        self.cell.action.borrow_mut().take();
        crate::hub::with_timers(|t| t.cancelled());
        Ok(())
    }

    /// Moves the call to `d` from now. A `d` too large to add to now (`Duration::MAX`) means
    /// the call never runs (see [`time`](Self::time)).
    pub fn reset(&self, d: Duration) -> Result<(), DelayedCallError> {
        self.reset_at(deadline_after(d))
    }

    /// Postpones the call by `d` (from its current time). A call that would be due later than
    /// the clock can represent never runs; one that never runs stays so.
    pub fn delay(&self, d: Duration) -> Result<(), DelayedCallError> {
        self.reset_at(postpone(self.cell.deadline.get(), d))
    }

    /// Moves the call to `at` (`None`: never).
    pub(crate) fn reset_at(&self, at: Option<Instant>) -> Result<(), DelayedCallError> {
        self.check_pending()?;
        crate::hub::with_timers(|t| t.reschedule(&self.cell, at));
        Ok(())
    }

    /// True until the call runs or is cancelled (false while it is running). A call that never
    /// runs stays active until it is cancelled or its hub shuts down.
    pub fn active(&self) -> bool {
        self.cell.is_pending()
    }

    /// When the call is due, on the monotonic clock. For a call that never runs (its delay was
    /// too large to add to the clock, e.g. `Duration::MAX`), the latest instant the clock can
    /// represent.
    pub fn time(&self) -> Instant {
        self.cell.deadline.get().unwrap_or_else(latest)
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedCall")
            .field("time", &self.time())
            .field("state", &self.cell.state.get())
            .finish()
    }
}
