//! Deadlines: a [`Duration`] from now, where a duration too large to add to the clock means
//! "no limit".
//!
//! std's `thread::sleep` and `recv_timeout` accept `Duration::MAX`; so does every filature API
//! that takes a timeout or a delay. Each one turns its duration into a deadline here, never with
//! `Instant::now() + d` (which panics when the sum does not fit the clock).
//!
//! # The rule
//!
//! * A deadline is an `Option<Instant>`; `None` is "no limit": a wait without a deadline, a
//!   timer that never fires. The sync primitives' `*_until` loops and the hub's timers already
//!   speak this language, so a huge timeout needs no special case beyond this file.
//! * A duration is "too large" exactly when `Instant::now() + d` does not fit the clock (on
//!   Linux, some 292 billion years away), so nothing a program can observe changes: no wait of
//!   that length could ever end in time anyway.
//! * Postponing a deadline (`DelayedCall::delay`) keeps "no limit" as it is and turns an
//!   overflow into "no limit".

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The instant `d` from now; `None` ("no limit") if the clock cannot represent it.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// `at` postponed by `d`; `None` ("no limit") if `at` is `None` or the sum does not fit.
pub(crate) fn postpone(at: Option<Instant>, d: Duration) -> Option<Instant> {
    at.and_then(|t| t.checked_add(d))
}

/// What a timer with no reachable deadline reports as its time: the latest instant the clock can
/// represent (computed once). Nothing can be due later, and no program lives to see it.
pub(crate) fn latest() -> Instant {
    static LATEST: OnceLock<Instant> = OnceLock::new();
    *LATEST.get_or_init(|| {
        let base = Instant::now();
        let fits = |nanos: u128| base.checked_add(duration_from_nanos(nanos)).is_some();
        // Whether `base + n` fits is monotonic in `n`: search for the largest `n` that does.
        let (mut lo, mut hi) = (0u128, Duration::MAX.as_nanos());
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        base + duration_from_nanos(lo)
    })
}

/// A `Duration` of `nanos` nanoseconds (at most `Duration::MAX.as_nanos()`).
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below one second, so it fits.
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_the_clock_cannot_hold_is_no_limit() {
        assert_eq!(deadline_after(Duration::MAX), None);
        assert_eq!(deadline_after(Duration::from_secs(u64::MAX)), None);
        let soon = deadline_after(Duration::from_secs(1)).unwrap();
        assert!(soon > Instant::now());
    }

    #[test]
    fn postponing_keeps_no_limit_and_overflows_into_it() {
        let now = Instant::now();
        assert_eq!(postpone(None, Duration::ZERO), None);
        assert_eq!(postpone(Some(now), Duration::MAX), None);
        assert_eq!(
            postpone(Some(now), Duration::from_secs(1)),
            Some(now + Duration::from_secs(1))
        );
    }

    #[test]
    fn latest_is_the_last_instant_the_clock_holds() {
        let last = latest();
        assert!(last > Instant::now());
        assert_eq!(last.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(latest(), last);
    }
}
