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

/// Errors about one connection only: accept the next. Besides a connection that went away before
/// we accepted it (`ECONNABORTED`), Linux's `accept` passes on the network errors already pending
/// on the new connection, and its man page says to treat those of TCP/IP like `EAGAIN`; `EPERM`
/// is a firewall's refusal of that one connection.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM
        )
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error pending on one queued connection does not end the accept loop: the next
    /// connection is accepted.
    #[test]
    fn network_errors_of_one_connection_are_skipped() {
        for errno in [
            libc::ECONNABORTED,
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::EPERM,
        ] {
            let mut results = vec![Err(io::Error::from_raw_os_error(errno)), Ok(7)].into_iter();
            assert_eq!(with_backoff("test", || results.next().unwrap()).unwrap(), 7);
        }
        let mut fatal = || -> io::Result<u8> { Err(io::Error::from_raw_os_error(libc::EBADF)) };
        assert!(with_backoff("test", &mut fatal).is_err());
    }
}
