//! `Source`: a non-blocking socket plus its hub registration and its blocking mode.
//!
//! Timeouts live where std keeps them, in the kernel (`SO_RCVTIMEO`, `SO_SNDTIMEO`): they have no
//! effect on a non-blocking fd, but the getters then report what std's report (the kernel rounds
//! to its clock tick), clones share them as std's do, and a blocking call reads its timeout
//! there when it is about to park. To spare that `getsockopt` on every park, a socket remembers
//! each direction's timeout when it knows it: a socket filature created itself has none (or, if
//! accepted, its listener's, which Linux copies), and `set_read_timeout`/`set_write_timeout`
//! store what they set. It asks the kernel when it cannot know: an adopted std socket, the
//! sockets accepted from one, and `try_clone`d siblings (which share their timeouts, so either
//! may change both). A timeout set on the raw fd with `setsockopt` behind filature's back is not
//! seen.
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::deadline::deadline_after;
use crate::hub::io::{Direction, OnTimeout, Registration};

/// A socket whose fd is in non-blocking mode, and what a blocking call on it needs.
pub(crate) struct Source<S: AsRawFd + AsFd> {
    /// Declared before `io`: dropped (deregistered) while the fd is still open.
    reg: Registration,
    io: S,
    /// `set_nonblocking(true)`: calls return `WouldBlock` instead of parking.
    nonblocking: AtomicBool,
    /// Each direction's timeout as far as this socket knows it (read, write; see `Known`).
    timeouts: [AtomicU64; 2],
}

/// A remembered timeout: `NONE`, `UNKNOWN` (ask the kernel), or nanoseconds.
struct Known;

impl Known {
    const NONE: u64 = 0;
    const UNKNOWN: u64 = u64::MAX;

    fn encode(t: Option<Duration>) -> u64 {
        match t {
            None => Known::NONE,
            Some(d) => u64::try_from(d.as_nanos())
                .unwrap_or(Known::UNKNOWN - 1)
                .clamp(1, Known::UNKNOWN - 1),
        }
    }
}

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

impl<S: AsRawFd + AsFd> Source<S> {
    /// Wraps `io`, whose fd must be in non-blocking mode already, and which may carry kernel
    /// timeouts (an adopted socket).
    pub(crate) fn new(io: S) -> Source<S> {
        Source::with_timeouts(io, true)
    }

    /// Wraps `io`, a socket filature has just created, which has no timeouts unless
    /// `inherits_timeouts` (accepted from a listener that may have them).
    pub(crate) fn fresh(io: S, inherits_timeouts: bool) -> Source<S> {
        Source::with_timeouts(io, inherits_timeouts)
    }

    fn with_timeouts(io: S, may_have_timeouts: bool) -> Source<S> {
        let known = if may_have_timeouts {
            Known::UNKNOWN
        } else {
            Known::NONE
        };
        Source {
            reg: Registration::new(io.as_raw_fd()),
            io,
            nonblocking: AtomicBool::new(false),
            timeouts: [AtomicU64::new(known), AtomicU64::new(known)],
        }
    }

    /// Whether the socket may carry kernel timeouts (for the sockets a listener accepts, which
    /// inherit them).
    pub(crate) fn may_have_timeouts(&self) -> bool {
        self.timeouts
            .iter()
            .any(|t| t.load(Ordering::Relaxed) != Known::NONE)
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.io
    }

    /// A call that reads (or accepts, or waits for a datagram), honouring the read timeout.
    pub(crate) fn read<R>(
        &self,
        what: &'static str,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.call(what, Direction::Read, || op(&self.io), |_| false)
    }

    /// A call that writes, honouring the write timeout.
    pub(crate) fn write<R>(
        &self,
        what: &'static str,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.call(what, Direction::Write, || op(&self.io), |_| false)
    }

    /// A stream's read or write of up to `len` bytes. With `short_drains` (TCP), a short one
    /// (some bytes, fewer than `len`) emptied the receive queue or filled the send buffer, so
    /// the next call waits for readiness without trying (see "Shortcuts" in `hub::io`).
    pub(crate) fn stream_call(
        &self,
        what: &'static str,
        dir: Direction,
        short_drains: bool,
        len: usize,
        mut op: impl FnMut(&S) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.call(
            what,
            dir,
            || op(&self.io),
            move |&n| short_drains && 0 < n && n < len,
        )
    }

    fn call<R>(
        &self,
        what: &'static str,
        dir: Direction,
        op: impl FnMut() -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let mut op = op;
        if self.nonblocking.load(Ordering::Relaxed) {
            return op();
        }
        let deadline = || self.timeout(dir).and_then(deadline_after);
        self.reg.io(what, dir, deadline, would_block, op, drained)
    }

    /// A call that waits for `dir` until `deadline` (then `on_timeout()`), whatever the
    /// socket's timeouts and blocking mode (a connect in progress).
    pub(crate) fn call_until<R>(
        &self,
        what: &'static str,
        dir: Direction,
        deadline: Option<Instant>,
        on_timeout: OnTimeout,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.reg.io(
            what,
            dir,
            || deadline,
            on_timeout,
            || op(&self.io),
            |_| false,
        )
    }

    /// One try of `op` for a callback-driven owner: on `WouldBlock`, `waker` is woken at the
    /// next readiness of `dir` (see `Registration::try_io`). Hub thread only.
    pub(crate) fn try_io<R>(
        &self,
        dir: Direction,
        waker: &std::task::Waker,
        op: impl FnOnce(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.reg.try_io(dir, waker, || op(&self.io), |_| false).0
    }

    /// [`try_io`](Self::try_io) for a TCP stream's read or write of up to `len` bytes: after a
    /// short one (see [`stream_call`](Self::stream_call)) the waker is listed as after a
    /// `WouldBlock`. Also says whether `dir` is still ready (if not, the owner waits for its
    /// waker instead of trying again).
    pub(crate) fn try_stream_io(
        &self,
        dir: Direction,
        waker: &std::task::Waker,
        len: usize,
        op: impl FnOnce(&S) -> io::Result<usize>,
    ) -> (io::Result<usize>, bool) {
        self.reg
            .try_io(dir, waker, || op(&self.io), move |&n| 0 < n && n < len)
    }

    /// Whether a call in `dir` on this thread's hub may make progress without an event first
    /// (see `Registration::ready_here`).
    pub(crate) fn ready_here(&self, dir: Direction) -> bool {
        self.reg.ready_here(dir)
    }

    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    pub(crate) fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    /// std's `set_read_timeout`/`set_write_timeout`: a zero duration is `InvalidInput`.
    pub(crate) fn set_timeout(&self, dir: Direction, t: Option<Duration>) -> io::Result<()> {
        let t = match t {
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            t => t,
        };
        let sock = SockRef::from(&self.io);
        let known = &self.timeouts[slot(dir)];
        let set = match dir {
            Direction::Read => sock.set_read_timeout(t.map(as_timeval)),
            Direction::Write => sock.set_write_timeout(t.map(as_timeval)),
        };
        // Unknown stays unknown (an adopted socket, or `try_clone` siblings sharing the
        // kernel's value): keep asking the kernel then.
        if known.load(Ordering::Relaxed) != Known::UNKNOWN {
            known.store(
                if set.is_ok() {
                    Known::encode(t)
                } else {
                    Known::UNKNOWN
                },
                Ordering::Relaxed,
            );
        }
        set
    }

    /// The timeout as the kernel keeps it (`None` if it cannot be read: a socket without one).
    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        match self.timeouts[slot(dir)].load(Ordering::Relaxed) {
            Known::NONE => None,
            Known::UNKNOWN => self.get_timeout(dir).unwrap_or(None),
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// std's `read_timeout`/`write_timeout`.
    pub(crate) fn get_timeout(&self, dir: Direction) -> io::Result<Option<Duration>> {
        let sock = SockRef::from(&self.io);
        match dir {
            Direction::Read => sock.read_timeout(),
            Direction::Write => sock.write_timeout(),
        }
    }

    /// Another source on a `dup` of the fd (same open file, so non-blocking too), in the same
    /// blocking mode.
    pub(crate) fn try_clone(&self) -> io::Result<Source<S>>
    where
        S: From<OwnedFd>,
    {
        let src = Source::new(S::from(self.io.as_fd().try_clone_to_owned()?));
        src.set_nonblocking(self.is_nonblocking());
        // Siblings share their timeouts: either may set one for both from now on.
        for t in self.timeouts.iter().chain(&src.timeouts) {
            t.store(Known::UNKNOWN, Ordering::Relaxed);
        }
        Ok(src)
    }

    /// The pending socket error (`SO_ERROR`), cleared.
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        SockRef::from(&self.io).take_error()
    }

    /// Deregisters and hands back the socket (still in non-blocking mode).
    pub(crate) fn into_inner(self) -> S {
        self.reg.deregister();
        let Source { io, .. } = self;
        io
    }

    /// How many hubs the socket is registered with now.
    pub(crate) fn registrations(&self) -> usize {
        self.reg.hubs()
    }
}

/// What std reports when `SO_RCVTIMEO`/`SO_SNDTIMEO` expires on Linux: `EAGAIN`, whose kind is
/// `WouldBlock`.
fn would_block() -> io::Error {
    io::Error::from_raw_os_error(libc::EAGAIN)
}

/// A duration as std hands it to the kernel: a `timeval` (whole microseconds, at least one;
/// seconds capped at `time_t::MAX`).
fn as_timeval(d: Duration) -> Duration {
    let secs = d.as_secs().min(libc::time_t::MAX as u64);
    let mut micros = d.subsec_micros();
    if secs == 0 && micros == 0 {
        micros = 1;
    }
    Duration::new(secs, micros * 1000)
}
