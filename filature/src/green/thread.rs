//! A green thread: a corosensei coroutine on a [`GreenStack`], pinned to the hub that made it.
//!
//! # Invariants
//!
//! * A `Green` lives in an `Rc` owned by its hub (slot table, ready queue, `current`); it is never
//!   touched from another thread. Other threads reach it only through its `ParkCell` (an `Arc`),
//!   whose wake-ups travel through the hub's inbox as a slot number checked against the id.
//! * The coroutine is resumed only by the hub loop (`Core::resume`), only on the thread that
//!   created it, and only while it is not finished. It suspends only from inside itself, through
//!   the `Yielder` it was given when it started (`suspend`), so a resume always returns to the loop.
//! * The stack never moves while the coroutine exists, so data a green thread lends from its stack
//!   (`tpool::execute`) stays valid while it is parked.
//! * The body catches every panic at the green thread's boundary and turns it into the join
//!   outcome; a kill is an unwind with a private payload, caught there too. Nothing unwinds out of
//!   `resume`.
//! * A kill or timeout is never raised while the green thread is already unwinding (from a
//!   destructor that blocks on the way out): that would be a panic escaping a destructor during
//!   cleanup, which aborts the process. The unwinding in progress ends the green thread anyway.
//!   Whether it was unwinding when it suspended is recorded by the loop after each resume
//!   (`suspended`); the thread's panic state is otherwise read only when an interrupt is pending,
//!   so a park point with nothing pending costs two loads.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;
use std::sync::Arc as StdArc;
use std::time::Instant;

use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::join::{Complete, JoinError, JoinShared};
use super::park::Unparker;
use super::stack::GreenStack;
use crate::hub::timer::{Action, TimerCell};
use crate::hub::Core;
use crate::Failure;

type Coro = Coroutine<(), (), (), GreenStack>;

/// The unwind payload of a kill. Private: only our own boundary catches it.
pub(crate) struct KillUnwind;

/// The unwind payload of an expired [`Timeout`](super::Timeout), carrying its id.
pub(crate) struct TimeoutUnwind(pub(crate) u64);

pub(crate) struct Green {
    pub(crate) cell: Unparker,
    /// `cell.id`, copied here so the loop reads it in one load on every resume.
    id: u64,
    co: RefCell<Option<Coro>>,
    yielder: Cell<*const Yielder<(), ()>>,
    pub(crate) name: Option<StdArc<str>>,
    slot: Cell<usize>,
    finished: Cell<bool>,
    /// The outermost expired `Timeout` not yet raised (smallest id wins: outer timeouts start first).
    pub(crate) timeout: Cell<Option<u64>>,
    /// While > 0 the stack is lent to a pool job and a kill is held back.
    pub(crate) lent: Cell<u32>,
    /// Whether this green thread was unwinding when it last suspended (kept by `suspended`, read
    /// by `check_interrupts`).
    unwinding: Cell<bool>,
    /// The label of the park point it last parked at (`Parker::current`'s `op`), stored by
    /// `park_green` just before it suspends; read by `hub::snapshot` (meaningful while parked).
    pub(crate) parked_at: Cell<&'static str>,
    /// The timer of its timed parks, kept armed between them (see [`Green::arm_park_timer`]).
    park_timer: RefCell<Option<Rc<TimerCell>>>,
    completion: StdArc<dyn Complete>,
}

impl Green {
    /// Creates the green thread and queues it to start on `core`'s next pass.
    pub(crate) fn start<F, T>(
        core: &Rc<Core>,
        shared: StdArc<JoinShared<T>>,
        stack_size: usize,
        f: F,
    ) -> Result<(), super::SpawnError>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        super::stack::ensure_signal_stack();
        let mut stack = GreenStack::new(stack_size).map_err(super::SpawnError::from)?;
        stack.label(shared.id(), shared.name().map(|n| &**n));
        let body_shared = shared.clone();
        let co = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
            body(y, body_shared, f);
        });
        let g = Rc::new(Green {
            cell: shared.cell.clone(),
            id: shared.cell.id,
            co: RefCell::new(Some(co)),
            yielder: Cell::new(ptr::null()),
            name: shared.name().cloned(),
            slot: Cell::new(0),
            finished: Cell::new(false),
            timeout: Cell::new(None),
            lent: Cell::new(0),
            unwinding: Cell::new(false),
            parked_at: Cell::new(""),
            park_timer: RefCell::new(None),
            completion: shared,
        });
        if let Some(name) = &g.name {
            core.shared.activity.named_started(g.id(), name);
        }
        let slot = core.insert_green(&g);
        g.slot.set(slot);
        g.cell.set_slot(slot);
        core.ready.borrow_mut().push_back(g);
        Ok(())
    }

    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot.get()
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.get()
    }

    /// Whether it has run at all (so it may have frames parked on its stack).
    pub(crate) fn has_started(&self) -> bool {
        self.co
            .try_borrow()
            .map_or(true, |co| co.as_ref().is_some_and(|c| c.started()))
    }

    /// Runs the green thread until it suspends or finishes. Returns true when it finished.
    /// Called only by the hub loop, with `current` set to this green thread.
    #[inline(always)]
    pub(crate) fn resume(&self) -> bool {
        let mut co = self.co.borrow_mut();
        let Some(c) = co.as_mut() else { return true };
        match c.resume(()) {
            CoroutineResult::Yield(()) => false,
            CoroutineResult::Return(()) => {
                self.finished.set(true);
                self.disarm_park_timer();
                // Dropping the finished coroutine returns its stack to the pool.
                *co = None;
                true
            }
        }
    }

    /// Switches from this green thread back to its hub loop. Returns when the loop resumes it.
    /// Must be called on this green thread (it is `current`).
    #[inline]
    pub(crate) fn suspend(&self) {
        suspend_current(self.yielder());
    }

    /// Makes sure a timer wakes this green thread by `deadline`, for a timed park.
    ///
    /// The timer is not cancelled when the park ends some other way: it stays armed for the next
    /// timed park, which usually wants a later deadline (a read timeout renewed on every read)
    /// and then keeps the earlier one. So a timed wait costs a heap push and a cancel only when
    /// its deadline comes before the armed one, or after the armed one fired. The price: a kept
    /// timer that comes due wakes the green thread once early (or, if it is running then, makes
    /// its next park return at once), and every park's caller already loops until its condition
    /// or its own deadline holds (spurious wake-ups are part of `Parker::park`'s contract). The
    /// timer is cancelled when the green thread finishes.
    pub(crate) fn arm_park_timer(&self, core: &Core, deadline: Instant) {
        let mut slot = self.park_timer.borrow_mut();
        match slot.as_ref() {
            Some(t) if t.is_pending() => {
                if t.deadline().map_or(true, |armed| armed > deadline) {
                    core.reschedule_timer(t, Some(deadline));
                }
            }
            _ => *slot = Some(core.add_timer(Some(deadline), Action::Unpark(self.cell.clone()))),
        }
    }

    /// Cancels the kept park timer (the green thread has finished).
    fn disarm_park_timer(&self) {
        if let Some(t) = self.park_timer.borrow_mut().take() {
            t.cancel_quiet();
        }
    }

    /// This green thread's way back to the loop, for [`suspend_current`].
    #[inline]
    pub(crate) fn yielder(&self) -> CurrentYielder {
        CurrentYielder(self.yielder.get())
    }

    /// Raises a pending kill or timeout at this park point (the caller is this green thread).
    ///
    /// Not while this green thread is already unwinding (a destructor that blocks on the way
    /// out of a kill or a panic): a second unwind out of a destructor aborts the process. The
    /// interrupt stays pending; the unwinding already in progress ends the green thread (or
    /// reaches the `with_timeout` that will clear it). The thread's panic count is shared by all
    /// green threads on it, so "this one is unwinding" is read as: panicking now, but not when
    /// the loop resumed it (remembered in `unwinding` across the suspensions that follow).
    ///
    /// The common case (nothing pending) costs two loads; the thread's panic state is read only
    /// when there is something to raise.
    #[inline]
    pub(crate) fn check_interrupts(&self) {
        if self.cell.is_killed() || self.timeout.get().is_some() {
            self.raise_interrupts();
        }
    }

    #[cold]
    fn raise_interrupts(&self) {
        if self.lent.get() > 0 || self.is_unwinding() {
            return;
        }
        if self.cell.is_killed() {
            panic::resume_unwind(Box::new(KillUnwind));
        }
        if let Some(id) = self.timeout.take() {
            panic::resume_unwind(Box::new(TimeoutUnwind(id)));
        }
    }

    /// Whether this green thread is unwinding now (it runs: it is `current`): the thread is
    /// panicking, and either this green thread already was when it last suspended, or the thread
    /// was not panicking when the loop resumed it (so the panic began in this run).
    fn is_unwinding(&self) -> bool {
        std::thread::panicking()
            && (self.unwinding.get() || !crate::hub::with_core(|c| c.panicking_at_resume.get()))
    }

    /// Called by the loop when this green thread has suspended, with whether the thread was
    /// panicking when it was resumed: remembers whether it suspended part-way through unwinding
    /// (the panic state changed during its run only because of its own unwinding, since nothing
    /// else ran meanwhile).
    #[inline]
    pub(crate) fn suspended(&self, panicking_at_resume: bool) {
        let panicking = std::thread::panicking();
        if panicking || self.unwinding.get() {
            self.unwinding
                .set(panicking && (self.unwinding.get() || !panicking_at_resume));
        }
    }

    /// The hub gives up on this green thread (still parked after the shutdown's grace period, or
    /// left at thread exit): tell its joiners it was killed, and leak its stack rather than
    /// resume or unwind it (its frames may borrow what is no longer alive).
    ///
    /// One that never started has no frames: its stack simply goes back to the pool. Either way
    /// it counts as finished from now on, so a stale entry in the ready queue never resumes it
    /// (nor frees the slot a newer green thread may have taken).
    pub(crate) fn abandon(&self) {
        self.finished.set(true);
        self.disarm_park_timer();
        self.completion.complete_killed();
        if let Ok(mut co) = self.co.try_borrow_mut() {
            if let Some(c) = co.take() {
                if c.started() && !c.done() {
                    // Never resumed, never unwound: its frames stay frozen on a leaked stack.
                    // Whoever abandons it says so (quietly on the main thread at process exit).
                    std::mem::forget(c);
                }
            }
        }
    }
}

/// The yielder of the running green thread, copied out so the caller can suspend without holding a
/// borrow of the hub's `current` slot across the switch.
#[derive(Clone, Copy)]
pub(crate) struct CurrentYielder(*const Yielder<(), ()>);

/// Switches from the running green thread back to its hub loop; returns when the loop resumes it.
/// `y` must come from the running green thread (`current`), which every caller ensures by taking
/// it from `core.with_current` on this thread just before.
#[inline]
pub(crate) fn suspend_current(y: CurrentYielder) {
    debug_assert!(!y.0.is_null(), "suspend before the green thread started");
    // SAFETY: the pointer was set by `body` from the `&Yielder` corosensei handed to the running
    // coroutine; it points into that coroutine's stack, which does not move or go away while the
    // coroutine exists, and we are executing on that coroutine (the caller took it from `current`
    // on this thread), which is exactly when `Yielder::suspend` may be called.
    unsafe { (*y.0).suspend(()) }
}

/// The body of every green thread, running on its own stack.
fn body<F, T>(y: &Yielder<(), ()>, shared: StdArc<JoinShared<T>>, f: F)
where
    F: FnOnce() -> T,
    T: 'static,
{
    crate::hub::with_core(|core| {
        core.with_current(|g| {
            if let Some(g) = g {
                g.yielder.set(y as *const _);
            }
        })
    });
    if shared.cell.is_killed() {
        shared.complete(Err(JoinError::Killed));
        return;
    }
    let outcome = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(p) => Err(classify(p)),
    };
    shared.complete(outcome);
}

pub(crate) fn classify(p: Box<dyn Any + Send>) -> JoinError {
    if p.is::<KillUnwind>() {
        JoinError::Killed
    } else if p.is::<TimeoutUnwind>() {
        JoinError::Panicked(Failure::from_error(crate::TimedOut))
    } else {
        JoinError::Panicked(Failure::from_panic(p))
    }
}
