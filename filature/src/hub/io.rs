//! I/O registration: how a socket's readiness reaches the green threads (and main contexts) that
//! wait on it. One type, [`Registration`], serves the green sockets of `crate::net` and the
//! callback-style `Protocol`/`Transport` layer (`net::driver`), which waits with a `Waker`
//! instead of a parked context ([`Registration::try_io`]).
//!
//! # Vocabulary
//!
//! * A **registration** ([`Registration`], `Send + Sync`, owned by one socket object) is the
//!   socket's side: its file descriptor's number and the list of its *scheduled I/O*s, one per
//!   hub it is registered with. It never owns the fd: its owner (`net::Source`) declares it
//!   before the I/O object, so the registration is dropped (and deregistered) while the fd is
//!   still open.
//! * A **scheduled I/O** ([`ScheduledIo`], shared as an `Arc`) is the socket as one hub sees it:
//!   the hub's shared half (which owns a clone of the hub's mio `Registry`, so the epoll instance
//!   lives as long as any `ScheduledIo` of it does, even after the hub is gone), the mio token,
//!   **readiness per direction** (read, write) and **a waiter list per direction**, so one green
//!   thread can wait to read while another waits to write the same socket.
//! * The hub's **I/O table** ([`IoTable`], in the core) maps tokens to scheduled I/Os.
//!   `Core::poll_io` hands every event but the waker's to [`IoTable::dispatch`], which sets the
//!   readiness bits and wakes that direction's waiters (an error or hang-up wakes both).
//!
//! # Protocol
//!
//! Registration is edge-triggered (`EPOLLET`, for reads and writes at once). A blocking call
//! ([`Registration::io`]) first just tries the syscall (the fd is non-blocking). On `WouldBlock` it
//! clears that direction's readiness, adds its parker to that direction's waiters and parks until
//! the readiness bit is set again (or its deadline passes, or it is killed or timed out: the
//! park point unwinds it, and a guard takes it off the list), then tries again.
//!
//! A callback-driven owner (a `Protocol` transport) does not park: [`Registration::try_io`]
//! tries the syscall once and, on `WouldBlock`, clears that direction and lists the owner's
//! `Waker` there, in the same step and on the hub's thread, so the same argument holds: the
//! next readiness of that direction wakes the owner (which then runs as a hub callback, never
//! inside the dispatch).
//!
//! # Shortcuts
//!
//! Two shortcuts spare the syscall that would only say `WouldBlock`, as tokio's do:
//!
//! * A call first looks at its direction's readiness on the current hub (when the socket is
//!   registered there): cleared means the last call said `WouldBlock` and no event came since, so
//!   the call parks at once. A socket not yet registered there, or a direction not yet seen
//!   blocking, counts as ready.
//! * A **short** stream read (fewer bytes than asked, but some) empties the socket's receive
//!   queue, and a short write fills its send buffer: the caller clears that direction right away
//!   (`drained`), as after a `WouldBlock`, except that an end of stream already reported stays
//!   (`READ_CLOSED`: its event may have come with the data the short read took). Only TCP
//!   streams use this (`net::TcpStream` and the protocol transports): a Unix stream read may
//!   stop early at a change of sender credentials.
//!   Edge-triggered epoll reports any later arrival, so nothing is missed; the one case a short
//!   TCP read does not empty the queue is a read that stops at TCP urgent data (out-of-band, a
//!   feature RFC 6093 tells applications not to use): the rest then waits for the peer's next
//!   segment, as it does with tokio.
//!
//! # Invariants
//!
//! * **A scheduled I/O's readiness and waiter lists are touched only on its hub's thread**: a
//!   socket used on thread T looks up (or creates) the scheduled I/O of T's hub, and only the
//!   code of T (its green threads, its main context, its dispatch) uses that one. So clearing
//!   readiness after a `WouldBlock` cannot lose an event: no dispatch can run between the syscall
//!   and the clear (it runs only in the loop, which the caller is not in). The atomics and the
//!   mutex are there for `Sync` and for the one cross-thread reader, the pruning below, which
//!   only asks whether the lists are empty.
//! * **Moving a socket.** A socket is `Send` (and `Sync`, like std's). Used on a thread whose hub
//!   it is not registered with, it registers there (epoll `ADD` on that hub's epoll) and, in
//!   the same step, drops its scheduled I/Os elsewhere that nobody waits on: epoll `DEL` through
//!   the old hub's registry (always valid: the `ScheduledIo` keeps that epoll instance alive),
//!   then the old hub's table entry is freed by a call posted to it (if it is closed, its table is
//!   gone already). A scheduled I/O with waiters (a socket used by two OS threads at once) stays:
//!   the fd is then in two epoll sets and each hub wakes its own waiters.
//! * **The fd outlives its registrations.** Every epoll `DEL` happens before the fd is closed
//!   (drop, `into_std`): with the fd open its number cannot have been reused, so a `DEL` never
//!   hits another socket. (Closing alone would not be enough: a `try_clone`d fd keeps the open
//!   file, and its epoll entries, alive.)
//! * **No stale event reaches a freed slot.** A hub dispatches an epoll batch right after the
//!   poll that returned it, before it runs any user code and before its next inbox drain, and a
//!   table entry is freed only after the `DEL` (locally by user code, remotely by a posted call
//!   drained in a later pass). So tokens need no generation.
//! * **Shutdown.** `Core::shut_down` and `Core::teardown` clear the table after the green threads
//!   are gone (killed parked waiters took themselves off the lists while unwinding); sockets that
//!   outlive the hub keep their scheduled I/O (hub closed) until their next use elsewhere or their
//!   drop, which `DEL`s it. A green thread killed or timed out in a socket call leaves no waiter
//!   behind, and the socket's drop leaves no registration and closes its fd.

use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use mio::unix::SourceFd;
use parking_lot::Mutex;

use super::{Core, HubHandle, HubShared};
use crate::green::Parker;
use crate::loom::sync::Arc;
use crate::sync::waiter::{Waiter, WaiterList};

/// Which way a call moves data: what readiness it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read = 0,
    Write = 1,
}

impl Direction {
    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Every readiness bit of this direction.
    fn mask(self) -> u8 {
        match self {
            Direction::Read => READ | READ_CLOSED,
            Direction::Write => WRITE,
        }
    }
}

const READ: u8 = 1;
const WRITE: u8 = 2;
/// The peer's end of the read side is closed (FIN, reset, hang-up): reads return at once from
/// now on. Kept by [`ScheduledIo::clear_drained`], so a short read that took the last bytes
/// before an end of stream whose event came with the data's does not wait for another event.
const READ_CLOSED: u8 = 4;

/// A socket as one hub sees it. See the module docs.
pub(crate) struct ScheduledIo {
    hub: Arc<HubShared>,
    token: mio::Token,
    /// `READ | WRITE` bits; only the hub's thread reads or writes them (Relaxed).
    readiness: AtomicU8,
    /// Waiters per direction; only the hub's thread adds, removes or wakes them.
    waiters: Mutex<[WaiterList; 2]>,
}

impl ScheduledIo {
    fn is_ready(&self, dir: Direction) -> bool {
        self.readiness.load(Ordering::Relaxed) & dir.mask() != 0
    }

    /// After a `WouldBlock`: the kernel said this direction is not ready.
    fn clear(&self, dir: Direction) {
        self.readiness.fetch_and(!dir.mask(), Ordering::Relaxed);
    }

    /// After a short stream read or write: the buffer is empty (full), but an end of stream
    /// already reported stays (a read returns it at once).
    fn clear_drained(&self, dir: Direction) {
        self.readiness.fetch_and(!dir.bit(), Ordering::Relaxed);
    }

    /// Adds `me` to `dir`'s waiters unless it is there already.
    fn list(&self, dir: Direction, me: &Waiter) {
        let mut w = self.waiters.lock();
        if !w[dir as usize].contains(me) {
            w[dir as usize].push(me.clone());
        }
    }

    fn has_waiters(&self) -> bool {
        let w = self.waiters.lock();
        !w[0].is_empty() || !w[1].is_empty()
    }

    /// On the hub's thread, from `IoTable::dispatch`.
    fn set_ready(&self, bits: u8) {
        self.readiness.fetch_or(bits, Ordering::Relaxed);
        let (readers, writers) = {
            let mut w = self.waiters.lock();
            let take = |list: &mut WaiterList, on: bool| {
                if on {
                    std::mem::take(list)
                } else {
                    WaiterList::default()
                }
            };
            let [r, wr] = &mut *w;
            (take(r, bits & READ != 0), take(wr, bits & WRITE != 0))
        };
        // Outside the lock: waking a context on another hub posts to its inbox.
        readers.wake_all();
        writers.wake_all();
    }

    /// Takes the fd out of this hub's epoll set and frees its table entry (see "Moving a
    /// socket"). `fd` must still be open.
    /// (Takes the `Arc` as an argument: loom's `Arc` cannot be a receiver.)
    fn release(this: Arc<Self>, fd: RawFd) {
        // Fails only if the fd was never added (or the epoll is gone, impossible while we hold
        // the registry); either way nothing is left registered.
        let _ = this.hub.registry.deregister(&mut SourceFd(&fd));
        match super::existing_core() {
            Some(core) if Arc::ptr_eq(&core.shared, &this.hub) => core.io_table_free(&this),
            _ => {
                let handle = HubHandle {
                    shared: this.hub.clone(),
                };
                // Refused only when the hub is closed: its table is gone, or goes with its core.
                let _ = handle.call(move || {
                    if let Some(core) = super::existing_core() {
                        if Arc::ptr_eq(&core.shared, &this.hub) {
                            core.io_table_free(&this);
                        }
                    }
                });
            }
        }
    }
}

/// A hub's token → scheduled I/O map (in the core; this thread only).
#[derive(Default)]
pub(crate) struct IoTable {
    slots: Vec<Option<Arc<ScheduledIo>>>,
    free: Vec<usize>,
}

impl IoTable {
    /// Registered sockets (for stats and tests).
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn insert(&mut self, make: impl FnOnce(mio::Token) -> Arc<ScheduledIo>) -> Arc<ScheduledIo> {
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let sio = make(mio::Token(i));
        self.slots[i] = Some(sio.clone());
        sio
    }

    pub(crate) fn remove(&mut self, sio: &Arc<ScheduledIo>) {
        let i = sio.token.0;
        if self
            .slots
            .get(i)
            .and_then(Option::as_ref)
            .is_some_and(|s| Arc::ptr_eq(s, sio))
        {
            self.slots[i] = None;
            self.free.push(i);
        }
    }

    /// The scheduled I/O behind an event's token, if it is still registered.
    pub(crate) fn get(&self, token: mio::Token) -> Option<Arc<ScheduledIo>> {
        self.slots.get(token.0).and_then(Option::clone)
    }

    /// Drops every entry (hub shutdown and teardown).
    pub(crate) fn clear(&mut self) -> Vec<Arc<ScheduledIo>> {
        self.free.clear();
        self.slots.drain(..).flatten().collect()
    }
}

/// Sets readiness and wakes waiters for one event (the hub's thread, right after its poll).
pub(crate) fn dispatch(sio: &ScheduledIo, event: &mio::event::Event) {
    let mut bits = 0;
    if event.is_readable() {
        bits |= READ;
    }
    if event.is_read_closed() {
        bits |= READ | READ_CLOSED;
    }
    if event.is_writable() || event.is_write_closed() {
        bits |= WRITE;
    }
    if event.is_error() {
        bits |= READ | WRITE;
    }
    if bits != 0 {
        sio.set_ready(bits);
    }
}

/// A socket's registrations with hubs. See the module docs.
pub(crate) struct Registration {
    fd: RawFd,
    scheduled: Mutex<Vec<Arc<ScheduledIo>>>,
}

/// What a blocking call does when its deadline passes.
pub(crate) type OnTimeout = fn() -> io::Error;

impl Registration {
    /// A registration for `fd`, registered nowhere yet. The owner keeps `fd` open for as long as
    /// this registration lives.
    pub(crate) fn new(fd: RawFd) -> Registration {
        Registration {
            fd,
            scheduled: Mutex::new(Vec::new()),
        }
    }

    /// Runs `op` (a non-blocking syscall) until it does not say `WouldBlock`, parking the caller
    /// on `dir` between tries, until `deadline` (then `on_timeout()`). Panics, naming `what`, in a
    /// hub callback, even when `op` would succeed at once.
    ///
    /// `drained(&r)` says whether a successful result shows the socket's buffer in that direction
    /// emptied (read) or filled (write): a short stream read or write. The readiness is then
    /// cleared at once, so the next call parks without a syscall that would only say
    /// `WouldBlock` (see "Shortcuts" in the module docs).
    pub(crate) fn io<R>(
        &self,
        what: &'static str,
        dir: Direction,
        deadline: impl FnOnce() -> Option<Instant>,
        on_timeout: OnTimeout,
        mut op: impl FnMut() -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        // One look at the thread's hub: refuse a blocking call in a hub callback, and find this
        // socket's scheduled I/O there (none before its first wait on this hub).
        let known = super::with_existing_core(|core| {
            crate::green::refuse_in_callback_on(core, what);
            self.registered_on(&core.shared)
        })
        .flatten();
        // Not ready: the last call here said `WouldBlock` (or drained it) and no event came
        // since, so this one would say it again.
        if known.as_ref().map_or(true, |s| s.is_ready(dir)) {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(r) => {
                    if let Some(sio) = known.as_ref().filter(|_| drained(&r)) {
                        // Nothing ran since `op` (see the invariants).
                        sio.clear_drained(dir);
                    }
                    return Ok(r);
                }
                r => return r,
            }
        }
        let deadline = deadline();
        let parker = Parker::current(what);
        let sio = match known {
            Some(sio) => sio,
            None => self.scheduled_on(parker.core())?,
        };
        loop {
            // `op` just said WouldBlock (or the readiness was found cleared), and no dispatch
            // ran since (see the invariants).
            sio.clear(dir);
            self.wait(&parker, &sio, dir, deadline, on_timeout)?;
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(r) => {
                    if drained(&r) {
                        sio.clear_drained(dir);
                    }
                    return Ok(r);
                }
                r => return r,
            }
        }
    }

    /// The non-parking twin of [`io`](Self::io), for owners driven by hub callbacks: runs `op`
    /// once (or, when `dir` is known not ready here, says `WouldBlock` without it); on
    /// `WouldBlock`, or on a success that `drained`, clears `dir`'s readiness on this
    /// thread's hub and lists `waker` on it (once), so the next readiness of `dir` wakes it. On
    /// the hub's thread only (where the owner lives), like every use of a scheduled I/O. Also
    /// says whether `dir` is still ready: after a drained success the owner waits for its waker
    /// instead of trying again, unless it is (an end of stream came with the data).
    pub(crate) fn try_io<R>(
        &self,
        dir: Direction,
        waker: &std::task::Waker,
        op: impl FnOnce() -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> (io::Result<R>, bool) {
        let list = |sio: &ScheduledIo| sio.list(dir, &Waiter::Task(waker.clone()));
        let known = super::with_existing_core(|core| self.registered_on(&core.shared)).flatten();
        if let Some(sio) = known.as_ref().filter(|s| !s.is_ready(dir)) {
            // The last try said WouldBlock (or drained the socket) and no event came since:
            // this one would say it again. (The waker is listed already; listing is idempotent.)
            list(sio);
            return (Err(io::ErrorKind::WouldBlock.into()), false);
        }
        let r = op();
        let (wait, would_block) = match &r {
            Err(e) => (e.kind() == io::ErrorKind::WouldBlock, true),
            Ok(r) => (drained(r), false),
        };
        if !wait {
            return (r, true);
        }
        let sio = match known {
            Some(sio) => sio,
            None => match super::with_core(|core| self.scheduled_on(core)) {
                Ok(sio) => sio,
                Err(e) => return (Err(e), true),
            },
        };
        // `op` just said WouldBlock (or drained the socket), and no dispatch ran since (see the
        // invariants).
        if would_block {
            sio.clear(dir);
        } else {
            sio.clear_drained(dir);
        }
        list(&sio);
        (r, sio.is_ready(dir))
    }

    /// Parks until `dir` is ready on `sio` or `deadline` passes.
    fn wait(
        &self,
        parker: &Parker,
        sio: &ScheduledIo,
        dir: Direction,
        deadline: Option<Instant>,
        on_timeout: OnTimeout,
    ) -> io::Result<()> {
        let me = Waiter::Park(parker.unparker().clone());
        struct Listed<'a>(&'a ScheduledIo, Direction, &'a Waiter);
        impl Drop for Listed<'_> {
            fn drop(&mut self) {
                self.0.waiters.lock()[self.1 as usize].remove(self.2);
            }
        }
        let _listed = Listed(sio, dir, &me);
        // The first look at the clock is `park`'s own (which returns at once past the deadline).
        let mut parked = false;
        loop {
            sio.list(dir, &me);
            if sio.is_ready(dir) {
                return Ok(());
            }
            if parked && deadline.is_some_and(|d| Instant::now() >= d) {
                parker.check_interrupts();
                return Err(on_timeout());
            }
            parker.park(deadline);
            parked = true;
        }
    }

    /// Whether a call in direction `dir` on this thread's hub may make progress without waiting:
    /// false only when the socket is registered there and that direction's readiness is
    /// cleared (after a `WouldBlock` or a drained success, with no event since).
    pub(crate) fn ready_here(&self, dir: Direction) -> bool {
        super::with_existing_core(|core| self.registered_on(&core.shared))
            .flatten()
            .map_or(true, |sio| sio.is_ready(dir))
    }

    /// The scheduled I/O of the hub behind `hub`, if the socket is registered there.
    fn registered_on(&self, hub: &Arc<HubShared>) -> Option<Arc<ScheduledIo>> {
        find(&self.scheduled.lock(), hub).cloned()
    }

    /// The scheduled I/O of `core`'s hub, registering there first if needed (and dropping idle
    /// registrations with other hubs: the socket moved).
    fn scheduled_on(&self, core: &Rc<Core>) -> io::Result<Arc<ScheduledIo>> {
        let mut list = self.scheduled.lock();
        if let Some(s) = find(&list, &core.shared) {
            return Ok(s.clone());
        }
        let mut kept = Vec::with_capacity(list.len() + 1);
        for s in list.drain(..) {
            if s.has_waiters() && !s.hub.inbox.is_closed() {
                kept.push(s);
            } else {
                ScheduledIo::release(s, self.fd);
            }
        }
        *list = kept;
        let sio = core.io_table_register(self.fd)?;
        list.push(sio.clone());
        Ok(sio)
    }

    /// Takes the fd out of every hub's epoll set (drop, `into_std`). The fd must still be open.
    pub(crate) fn deregister(&self) {
        let list = std::mem::take(&mut *self.scheduled.lock());
        for s in list {
            ScheduledIo::release(s, self.fd);
        }
    }

    /// How many hubs the fd is registered with now (tests and docs).
    pub(crate) fn hubs(&self) -> usize {
        self.scheduled.lock().len()
    }
}

/// The scheduled I/O of `hub` in a registration's list.
fn find<'a>(list: &'a [Arc<ScheduledIo>], hub: &Arc<HubShared>) -> Option<&'a Arc<ScheduledIo>> {
    list.iter().find(|s| Arc::ptr_eq(&s.hub, hub))
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl Core {
    /// Adds `fd` to this hub's epoll set (edge-triggered, both directions) under a new token.
    fn io_table_register(&self, fd: RawFd) -> io::Result<Arc<ScheduledIo>> {
        let mut table = self.io.borrow_mut();
        let mut err = None;
        let sio = table.insert(|token| {
            if let Err(e) = self.shared.registry.register(
                &mut SourceFd(&fd),
                token,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            ) {
                err = Some(e);
            }
            Arc::new(ScheduledIo {
                hub: self.shared.clone(),
                token,
                // Unknown, so assumed ready: the first call in each direction tries the
                // syscall (the caller clears the direction that just said `WouldBlock`).
                readiness: AtomicU8::new(READ | WRITE),
                waiters: Mutex::new(Default::default()),
            })
        });
        match err {
            Some(e) => {
                table.remove(&sio);
                Err(e)
            }
            None => Ok(sio),
        }
    }

    fn io_table_free(&self, sio: &Arc<ScheduledIo>) {
        if let Ok(mut table) = self.io.try_borrow_mut() {
            table.remove(sio);
        }
    }

    /// Hands an I/O event to its scheduled I/O (from `poll_io`).
    pub(crate) fn dispatch_io(&self, event: &mio::event::Event) {
        let sio = self.io.borrow().get(event.token());
        if let Some(sio) = sio {
            dispatch(&sio, event);
        }
    }
}
