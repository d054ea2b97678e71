//! Timeouts that interrupt a blocking block of code (eventlet's `Timeout`, `with_timeout`).
//!
//! # Invariants
//!
//! * A `Timeout` arms a timer on the current hub. When it fires it records its id as the
//!   context's pending timeout and wakes the context; the next park point raises it as an unwind
//!   with a private payload carrying the id. [`with_timeout`] catches only its own id, so nested
//!   timeouts end only their own block, and a `TimedOut` value returned by the code itself is just
//!   a value.
//! * Pending ids keep the *outermost* expired timeout (the smallest id: outer timeouts start
//!   first), so an inner block cannot swallow an outer expiry.
//! * Dropping or cancelling the `Timeout` disarms the timer and clears its id if it is pending
//!   and not yet raised, so an expiry never leaks out of its block.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::park::unpark;
use super::thread::{Green, TimeoutUnwind};
use crate::deadline::deadline_after;
use crate::hub::timer::{Action, TimerCell};
use crate::hub::{self, Core};
use crate::TimedOut;

static NEXT_TIMEOUT: AtomicU64 = AtomicU64::new(1);

/// An armed timeout for the current context (green thread or main context); disarmed on drop.
///
/// When it expires, the next blocking call of this context unwinds to the nearest
/// [`with_timeout`] (or [`Timeout::run`]) that owns it, which returns `Err(TimedOut)`.
///
/// ```
/// use std::time::Duration;
/// use filature::{green, green::Timeout, TimedOut};
///
/// let t = Timeout::start(Duration::from_millis(10));
/// let r = t.run(|| green::sleep(Duration::from_secs(60)));
/// assert_eq!(r, Err(TimedOut));
/// ```
pub struct Timeout {
    id: u64,
    timer: Rc<TimerCell>,
    target: Target,
    expired: Rc<Cell<bool>>,
}

#[derive(Clone)]
enum Target {
    Green(Rc<Green>),
    Main(Rc<Core>),
}

impl Target {
    fn pending(&self) -> &Cell<Option<u64>> {
        match self {
            Target::Green(g) => &g.timeout,
            Target::Main(c) => &c.main_timeout,
        }
    }
}

impl Timeout {
    /// Arms a timeout of `d` for the calling context. A `d` too large to add to the clock
    /// (`Duration::MAX`) never expires.
    pub fn start(d: Duration) -> Timeout {
        let id = NEXT_TIMEOUT.fetch_add(1, Ordering::Relaxed);
        hub::with_core(|core| {
            let target = match core.current_green() {
                Some(g) => Target::Green(g),
                None => Target::Main(core.clone()),
            };
            let expired = Rc::new(Cell::new(false));
            let (t, e) = (target.clone(), expired.clone());
            let fire = move || {
                e.set(true);
                let p = t.pending();
                if p.get().map_or(true, |cur| id < cur) {
                    p.set(Some(id));
                }
                match &t {
                    Target::Green(g) => unpark(&g.cell),
                    Target::Main(c) => unpark(&c.main_cell),
                }
            };
            let timer = core.add_timer(deadline_after(d), Action::Call(Box::new(fire)));
            Timeout {
                id,
                timer,
                target,
                expired,
            }
        })
    }

    /// True once the time has run out (whether or not it has been raised yet).
    pub fn expired(&self) -> bool {
        self.expired.get()
    }

    /// Disarms the timeout.
    pub fn cancel(self) {}

    /// Runs `f` under this timeout: `Err(TimedOut)` if it expired while `f` blocked.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> Result<T, TimedOut> {
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        let id = self.id;
        drop(self);
        match r {
            Ok(v) => Ok(v),
            Err(p) => match p.downcast_ref::<TimeoutUnwind>() {
                Some(u) if u.0 == id => Err(TimedOut),
                _ => panic::resume_unwind(p),
            },
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.timer.cancel_quiet();
        let p = self.target.pending();
        if p.get() == Some(self.id) {
            p.set(None);
        }
    }
}

/// Runs `f`, giving up with `Err(TimedOut)` if it is still blocked after `d`.
///
/// Works in green threads and main contexts. The expiry is raised at `f`'s next blocking call
/// (code that never blocks cannot be interrupted). Nested timeouts end only their own block. A `d`
/// too large to add to the clock (`Duration::MAX`) is no limit.
///
/// ```
/// use std::time::Duration;
/// use filature::{green, TimedOut};
///
/// let h = green::spawn(|| {
///     green::with_timeout(Duration::from_millis(5), || green::sleep(Duration::from_secs(60)))
/// });
/// assert_eq!(h.join(), Err(TimedOut));
/// ```
pub fn with_timeout<T>(d: Duration, f: impl FnOnce() -> T) -> Result<T, TimedOut> {
    Timeout::start(d).run(f)
}
