//! The accept loop's back-off (see "Accept loops" in the module docs).

use std::io;
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Errors after which an immediate retry would fail the same way: out of descriptors or memory.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Errors about one connection only (it went away before we accepted it): accept the next.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO))
}

/// Calls `accept` until it succeeds or fails with an error that is not transient; backs off
/// (sleeping, parking only the caller) while resources are exhausted, with one log line when an
/// episode starts and one when it ends.
pub(crate) fn with_backoff<T>(
    what: &str,
    mut accept: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut delay = Duration::ZERO;
    loop {
        match accept() {
            Ok(t) => {
                if !delay.is_zero() {
                    tracing::info!("{what}: accepting again");
                }
                return Ok(t);
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) if is_exhaustion(&e) => {
                if delay.is_zero() {
                    tracing::warn!(
                        "{what}: {e}; retrying with back-off ({FIRST_DELAY:?}, doubling up to {MAX_DELAY:?}) until it works"
                    );
                    delay = FIRST_DELAY;
                } else {
                    delay = (delay * 2).min(MAX_DELAY);
                }
                crate::green::sleep(delay);
            }
            Err(e) => return Err(e),
        }
    }
}
