//! `reactor::call_later` and its `Send` handle, [`DelayedCall`].
//!
//! A hub timer is `!Send` (it lives on its hub), so the handle any thread holds is a small shared
//! state, and the timer itself is made, moved and dropped on the reactor thread.
//!
//! # Invariants
//!
//! * `state` decides, with one compare-and-swap, whether the call runs or is cancelled:
//!   `PENDING -> RUNNING -> CALLED` (the timer fired and won) or `PENDING -> CANCELLED` (a
//!   `cancel` won, or the timer was dropped unfired: the reactor stopped, or refused the call).
//!   The loser learns it from the failed CAS, so `cancel` answers at once, from any thread,
//!   without a round trip to the reactor.
//! * `deadline` is the one source of the due time. The reactor applies it when it makes the timer
//!   and again on every `reset`/`delay` message, so a reset that reaches the reactor before the
//!   timer was made is not lost. `None` is a due time the clock cannot represent (a delay of
//!   `Duration::MAX`; see [`crate::deadline`]): the timer never fires.
//! * The reactor-side `hub::DelayedCall` sits in a reactor-thread-local map while pending, so a
//!   cancel or reset can find it; it leaves the map when it fires or is cancelled, and the whole
//!   map is cleared at shutdown.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::deadline::{deadline_after, latest, postpone};
use crate::hub::{self, DelayedCallError};
use crate::Stopped;

const PENDING: u8 = 0;
const RUNNING: u8 = 1;
const CALLED: u8 = 2;
const CANCELLED: u8 = 3;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The reactor's pending timers, by id (only ever used on the reactor thread).
    static TIMERS: RefCell<HashMap<u64, hub::DelayedCall>> = RefCell::new(HashMap::new());
}

struct Shared {
    id: u64,
    state: AtomicU8,
    deadline: Mutex<Option<Instant>>,
}

impl Shared {
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_pending(&self) -> Result<(), DelayedCallError> {
        // ORDERING: Acquire pairs with the AcqRel transitions below.
        match self.state.load(Ordering::Acquire) {
            PENDING => Ok(()),
            CANCELLED => Err(DelayedCallError::AlreadyCancelled),
            _ => Err(DelayedCallError::AlreadyCalled),
        }
    }

    fn claim(&self, to: u8) -> bool {
        // ORDERING: AcqRel: the winner's transition is seen by every later reader.
        self.state
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Marks the call cancelled if its closure is dropped unrun (the reactor stopped or refused it).
struct Unfired(Arc<Shared>);

impl Drop for Unfired {
    fn drop(&mut self) {
        self.0.claim(CANCELLED);
    }
}

/// A call scheduled on the reactor by [`call_later`]; `Send + Sync`, usable from any thread
/// (unlike [`hub::DelayedCall`], which belongs to its hub's thread).
///
/// `cancel` decides at once whether the call will run. `reset` and `delay` move a pending call;
/// they take effect when the reactor processes them, and do nothing if it fired meanwhile.
///
/// ```
/// use std::time::Duration;
/// use filature::{hub::DelayedCallError, reactor};
///
/// let dc = reactor::call_later(Duration::from_secs(60), || unreachable!()).unwrap();
/// assert!(dc.active());
/// let handle = dc.clone();
/// std::thread::spawn(move || handle.cancel()).join().unwrap().unwrap();
/// assert!(!dc.active());
/// assert_eq!(dc.cancel(), Err(DelayedCallError::AlreadyCancelled));
/// ```
#[derive(Clone)]
pub struct DelayedCall {
    shared: Arc<Shared>,
}

/// Runs `f` on the reactor thread after `delay`, as a hub callback (Twisted's `callLater`), from
/// any thread. Timers with equal deadlines fire in the order the reactor received them. Starts the
/// reactor if nobody has; fails with [`Stopped`] once it has stopped. A call not yet due when the
/// reactor stops never runs: its handle then reports it cancelled. A `delay` too large to add to
/// the clock (`Duration::MAX`) means "never": the call stays pending (see
/// [`DelayedCall::time`]) until cancelled, reset, or dropped by the reactor's shutdown.
///
/// ```
/// use std::time::{Duration, Instant};
/// use filature::{reactor, sync::Event};
///
/// let fired = Event::new();
/// let f = fired.clone();
/// let start = Instant::now();
/// reactor::call_later(Duration::from_millis(20), move || f.send(Instant::now()).unwrap()).unwrap();
/// assert!(fired.wait().unwrap() - start >= Duration::from_millis(20));
/// ```
pub fn call_later(
    delay: Duration,
    f: impl FnOnce() + Send + 'static,
) -> Result<DelayedCall, Stopped> {
    let shared = Arc::new(Shared {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        state: AtomicU8::new(PENDING),
        deadline: Mutex::new(deadline_after(delay)),
    });
    let guard = Unfired(shared.clone());
    super::call_in_reactor(move || {
        let s = guard.0.clone();
        let id = s.id;
        let dc = hub::call_at(s.deadline(), move || {
            let guard = guard;
            let _ = TIMERS.try_with(|t| t.borrow_mut().remove(&id));
            if guard.0.claim(RUNNING) {
                f();
                // ORDERING: Release, read by `check_pending`.
                guard.0.state.store(CALLED, Ordering::Release);
            }
        });
        if s.check_pending().is_ok() {
            let mut dc = Some(dc);
            let _ = TIMERS.try_with(|t| t.borrow_mut().insert(id, dc.take().expect("once")));
            if let Some(dc) = dc {
                let _ = dc.cancel(); // the table is gone: the reactor's thread is exiting
            }
        } else {
            let _ = dc.cancel(); // cancelled before it was even scheduled
        }
    })?;
    Ok(DelayedCall { shared })
}

impl DelayedCall {
    /// Cancels the call. `AlreadyCancelled` if it was cancelled (or dropped by a reactor that
    /// stopped), `AlreadyCalled` if it ran or is running.
    pub fn cancel(&self) -> Result<(), DelayedCallError> {
        if self.shared.claim(CANCELLED) {
            let id = self.shared.id;
            // Drop the timer (and its closure) early; if the reactor is gone it is gone already.
            let _ = super::call_in_reactor(move || {
                if let Some(dc) = TIMERS
                    .try_with(|t| t.borrow_mut().remove(&id))
                    .ok()
                    .flatten()
                {
                    let _ = dc.cancel();
                }
            });
            return Ok(());
        }
        self.shared.check_pending()
    }

    /// Moves the call to `d` from now. A `d` too large to add to the clock (`Duration::MAX`)
    /// means the call never runs.
    pub fn reset(&self, d: Duration) -> Result<(), DelayedCallError> {
        self.move_to(|_| deadline_after(d))
    }

    /// Postpones the call by `d` from its current time. A call that would be due later than the
    /// clock can represent never runs; one that never runs stays so.
    pub fn delay(&self, d: Duration) -> Result<(), DelayedCallError> {
        self.move_to(|t| postpone(t, d))
    }

    fn move_to(
        &self,
        at: impl FnOnce(Option<Instant>) -> Option<Instant>,
    ) -> Result<(), DelayedCallError> {
        self.shared.check_pending()?;
        {
            let mut deadline = self
                .shared
                .deadline
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *deadline = at(*deadline);
        }
        let s = self.shared.clone();
        let _ = super::call_in_reactor(move || {
            let _ = TIMERS.try_with(|t| {
                if let Some(dc) = t.borrow().get(&s.id) {
                    let _ = dc.reset_at(s.deadline());
                }
            });
        });
        Ok(())
    }

    /// True until the call runs or is cancelled (false while it runs). A call that never runs
    /// stays active until it is cancelled or the reactor stops.
    pub fn active(&self) -> bool {
        self.shared.check_pending().is_ok()
    }

    /// When the call is due, on the monotonic clock. For a call that never runs (its delay was
    /// too large to add to the clock, e.g. `Duration::MAX`), the latest instant the clock can
    /// represent.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use filature::reactor;
    ///
    /// let never = reactor::call_later(Duration::MAX, || unreachable!()).unwrap();
    /// assert!(never.active());
    /// assert!(never.time() > Instant::now() + Duration::from_secs(1_000_000_000));
    /// never.cancel().unwrap();
    /// ```
    pub fn time(&self) -> Instant {
        self.shared.deadline().unwrap_or_else(latest)
    }
}

impl fmt::Debug for DelayedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("reactor::DelayedCall")
            .field("time", &self.time())
            .field("active", &self.active())
            .finish()
    }
}

/// Forgets the reactor's timers (its hub has cancelled them already). Reactor thread, shutdown.
pub(super) fn forget_all() {
    let all = TIMERS.try_with(|t| std::mem::take(&mut *t.borrow_mut()));
    drop(all);
}

/// Registers the timer table's thread-local before the thread-exit hook (see
/// `Core::arm_exit_hook`): the hook's shutdown may run reactor calls that use it.
pub(crate) fn touch_thread_local() {
    let _ = TIMERS.try_with(|_| ());
}
