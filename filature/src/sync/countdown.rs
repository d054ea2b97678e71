//! `CountdownEvent`: waiters wait until a counter is zero (eventlib's `metaphore`).
//!
//! Built on [`Event`]: whenever the count is zero the inner event holds `()`; when it leaves zero
//! the event is reset. Both changes happen under the counter's lock, so the event always agrees
//! with the count and waiters inherit `Event`'s FIFO, no-stale-wake-up behaviour.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::Event;
use crate::TimedOut;

/// A counter whose waiters are released when it reaches zero.
///
/// ```
/// use filature::{green, sync::CountdownEvent};
///
/// let done = CountdownEvent::new(2);
/// for _ in 0..2 {
///     let d = done.clone();
///     green::spawn(move || d.count_down());
/// }
/// done.wait();
/// assert_eq!(done.count(), 0);
/// ```
#[derive(Clone)]
pub struct CountdownEvent {
    inner: Arc<Inner>,
}

struct Inner {
    count: Mutex<usize>,
    zero: Event<()>,
}

impl CountdownEvent {
    /// A counter starting at `count`.
    pub fn new(count: usize) -> CountdownEvent {
        let zero = Event::new();
        if count == 0 {
            zero.send(()).expect("fresh event");
        }
        CountdownEvent {
            inner: Arc::new(Inner {
                count: Mutex::new(count),
                zero,
            }),
        }
    }

    /// Adds `n` to the counter (eventlib's `acquire`).
    pub fn add(&self, n: usize) {
        let mut c = self.inner.count.lock();
        if *c == 0 && n > 0 {
            self.inner.zero.reset();
        }
        *c += n;
    }

    /// Subtracts one (eventlib's `release`); at zero every waiter is released. Counting down at
    /// zero stays at zero.
    pub fn count_down(&self) {
        let mut c = self.inner.count.lock();
        if *c > 0 {
            *c -= 1;
            if *c == 0 {
                let _ = self.inner.zero.send(());
            }
        }
    }

    /// The counter's value.
    pub fn count(&self) -> usize {
        *self.inner.count.lock()
    }

    /// Waits until the counter is zero.
    pub fn wait(&self) {
        let _ = self.inner.zero.wait();
    }

    /// Waits at most `timeout` for the counter to reach zero. A `timeout` too
    /// large to add to the clock (`Duration::MAX`) is no limit.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        self.inner.zero.wait_timeout(timeout).map(|_| ())
    }
}

impl fmt::Debug for CountdownEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountdownEvent")
            .field("count", &self.count())
            .finish()
    }
}
