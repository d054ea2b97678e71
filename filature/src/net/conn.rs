//! A protocol connection (`Conn`) and its handle, [`Transport`].
//!
//! # Invariants
//!
//! * **Ownership.** A `Conn` is owned by its hub's driver table (`driver.rs`) from
//!   `Conn::start` until it closes, and shared (`Rc`) with the [`Transport`] handles its
//!   protocol and green threads hold. It is `!Send`: every method runs on its hub's thread.
//! * **Two cells, never both held across user code.** `st` (buffers and flags) is borrowed
//!   only for short stretches without user code; `protocol` is borrowed mutably while a protocol
//!   method runs. A transport method called from inside a protocol method (a `write` that
//!   crosses the high-water mark, an `abort_connection`) finds `protocol` busy and leaves a note
//!   (`notes`, or the close reason), delivered right after the running method returns
//!   (`after_call`). So protocol methods are never re-entered, and a panic never leaves a cell
//!   borrowed.
//! * **One read buffer per hub.** `data_received` gets a slice of the hub's 64 KiB read buffer
//!   (a thread-local, taken out for the call): reading allocates nothing per call. A write with
//!   nothing pending goes to the socket at once; what the socket does not take is appended to
//!   the connection's write buffer, which is reused (cleared when it drains; shrunk when a
//!   burst made it large), so steady traffic allocates nothing either.
//! * **Reading only when asked.** The socket is read only while `paused_reading` is false
//!   ([`Transport::pause_producing`]); the readiness bit is then left set, and
//!   [`Transport::resume_producing`] queues a run that reads again (none when the last read
//!   found the socket empty: its waker is listed and the next data runs it): the kernel's
//!   buffers fill and TCP back-pressure slows the peer.
//! * **Closing.** `close` runs once: it drops the socket (deregistering it, then closing the
//!   fd), takes the connection out of the driver table, wakes green threads waiting for a drain,
//!   then hands `connection_lost` to the protocol (at once, or after the running protocol method
//!   returns) and drops the protocol, which breaks the `Conn → protocol → Transport → Conn`
//!   cycle. At hub shutdown the driver closes every connection still open ("hub shut down").

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::task::Waker;

use super::driver::{self, Driven, Key};
use super::signal::Signal;
use super::{Protocol, Reason, TcpStream};
use crate::failure::panic_message;
use crate::hub::io::Direction;

/// Bytes per read (and the size of each hub's read buffer).
const READ_CHUNK: usize = 64 * 1024;
/// Reads per run before the connection yields to the others (it is queued again).
const READS_PER_RUN: u32 = 16;
/// Default water marks of the write buffer.
pub(crate) const HIGH_WATER: usize = 64 * 1024;
pub(crate) const LOW_WATER: usize = 16 * 1024;
/// A drained write buffer larger than this is given back to the allocator.
const KEEP_CAPACITY: usize = 1 << 20;

const NOTE_PAUSE: u8 = 1;
const NOTE_RESUME: u8 = 2;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Registers the read buffer's thread-local before the thread-exit hook (see
/// `Core::arm_exit_hook`): the hook's shutdown may still read for a closing connection.
pub(crate) fn touch_thread_local() {
    let _ = READ_BUF.try_with(|_| ());
}

pub(crate) struct Conn {
    key: Key,
    waker: Waker,
    peer: SocketAddr,
    host: SocketAddr,
    stream: RefCell<Option<TcpStream>>,
    st: RefCell<State>,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    scheduled: Cell<bool>,
    /// Green threads waiting for the write buffer to drain (or the connection to close).
    pub(crate) drained: Signal,
}

#[derive(Default)]
struct State {
    wbuf: Vec<u8>,
    wpos: usize,
    high: usize,
    low: usize,
    paused_reading: bool,
    eof_read: bool,
    /// `lose_connection`: close once the buffer is flushed.
    closing: bool,
    /// `write_eof`: shut the write side down once the buffer is flushed.
    eof_wanted: bool,
    eof_written: bool,
    /// `pause_writing` delivered (or noted) and `resume_writing` not yet.
    writing_paused: bool,
    notes: u8,
    closed: Option<Reason>,
    /// `connection_lost` still to deliver (the protocol was busy when the connection closed).
    lost_pending: bool,
}

impl State {
    fn buffered(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

/// A handle to a connection, for its protocol and for whoever else on its hub writes to it
/// (Twisted's `ITCPTransport`). Cheap to clone; `!Send` (it lives on the connection's hub).
/// Every method is non-blocking and may be called from protocol callbacks. After the
/// connection closed, writes are ignored and the other methods do nothing.
///
/// ```
/// use filature::net::{self, Protocol, Reason, Transport};
///
/// struct Greeter;
/// impl Protocol for Greeter {
///     fn connection_made(&mut self, t: Transport) {
///         t.write_sequence(&[b"hello, ", b"world\n"]); // no joined copy
///         t.lose_connection(); // after the pending bytes are sent
///     }
///     fn data_received(&mut self, _: &[u8]) {}
/// }
///
/// let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), |_| {
///     Some(Box::new(Greeter) as Box<dyn Protocol>)
/// })
/// .unwrap();
/// let mut c = net::TcpStream::connect(port.local_addr()).unwrap();
/// let mut got = String::new();
/// std::io::Read::read_to_string(&mut c, &mut got).unwrap();
/// assert_eq!(got, "hello, world\n");
/// ```
#[derive(Clone)]
pub struct Transport {
    pub(crate) conn: Rc<Conn>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.conn.peer)
            .field("host", &self.conn.host)
            .field("buffered", &self.buffered())
            .finish()
    }
}

impl Conn {
    /// Makes a connection of `stream` (non-blocking, on this hub) for `protocol`: calls
    /// `connection_made` and queues the first read.
    pub(crate) fn start(stream: TcpStream, peer: SocketAddr, protocol: Box<dyn Protocol>) {
        let host = stream.local_addr().unwrap_or(peer);
        let conn = driver::insert(|key, waker| {
            Rc::new(Conn {
                key,
                waker,
                peer,
                host,
                stream: RefCell::new(Some(stream)),
                st: RefCell::new(State {
                    high: HIGH_WATER,
                    low: LOW_WATER,
                    ..State::default()
                }),
                protocol: RefCell::new(Some(protocol)),
                scheduled: Cell::new(false),
                drained: Signal::default(),
            })
        });
        let t = Transport { conn: conn.clone() };
        conn.call("connection_made", |p| p.connection_made(t));
        driver::schedule(conn);
    }

    /// Runs `f` on the protocol (unless it is busy or gone), catching a panic, then delivers
    /// what was noted meanwhile.
    fn call(self: &Rc<Self>, what: &'static str, f: impl FnOnce(&mut dyn Protocol)) {
        let r = {
            let Ok(mut p) = self.protocol.try_borrow_mut() else {
                return;
            };
            let Some(p) = p.as_mut() else { return };
            catch_unwind(AssertUnwindSafe(|| f(&mut **p)))
        };
        if let Err(panic) = r {
            tracing::error!(
                peer = %self.peer,
                "a protocol's {what} panicked; closing the connection with {}: {}",
                self.peer,
                panic_message(&*panic)
            );
            let msg = format!("protocol panicked in {what}: {}", panic_message(&*panic));
            self.close(Reason::from(io::Error::other(msg)));
        }
        self.after_call();
    }

    /// Delivers the water-mark notes and a pending `connection_lost`.
    fn after_call(self: &Rc<Self>) {
        loop {
            let note = {
                let mut st = self.st.borrow_mut();
                if st.closed.is_some() {
                    st.notes = 0;
                }
                let n = st.notes;
                st.notes = 0;
                n
            };
            if note == 0 {
                break;
            }
            if note & NOTE_PAUSE != 0 {
                self.call("pause_writing", |p| p.pause_writing());
            }
            if note & NOTE_RESUME != 0 {
                self.call("resume_writing", |p| p.resume_writing());
            }
        }
        let lost = {
            let mut st = self.st.borrow_mut();
            std::mem::take(&mut st.lost_pending)
                .then(|| st.closed.clone())
                .flatten()
        };
        if let Some(reason) = lost {
            self.deliver_lost(reason);
        }
    }

    fn note(self: &Rc<Self>, note: u8) {
        self.st.borrow_mut().notes |= note;
        if self.protocol.try_borrow_mut().is_ok() {
            self.after_call();
        }
    }

    fn deliver_lost(self: &Rc<Self>, reason: Reason) {
        let protocol = match self.protocol.try_borrow_mut() {
            Ok(mut p) => p.take(),
            Err(_) => {
                self.st.borrow_mut().lost_pending = true;
                return;
            }
        };
        if let Some(mut p) = protocol {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| p.connection_lost(reason))) {
                tracing::error!(
                    peer = %self.peer,
                    "a protocol's connection_lost panicked (connection with {}): {}",
                    self.peer,
                    panic_message(&*panic)
                );
            }
        }
    }

    /// Closes now (once): socket, table entry, drain waiters, then `connection_lost`.
    pub(crate) fn close(self: &Rc<Self>, reason: Reason) {
        {
            let mut st = self.st.borrow_mut();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason.clone());
            st.wbuf = Vec::new();
            st.wpos = 0;
        }
        let stream = self.stream.borrow_mut().take();
        drop(stream); // deregisters, then closes the fd
        driver::remove(self.key);
        self.drained.notify_all();
        self.deliver_lost(reason);
    }

    fn read_some(self: &Rc<Self>) {
        let mut reads = 0;
        loop {
            {
                let st = self.st.borrow();
                if st.paused_reading || st.eof_read || st.closed.is_some() || st.closing {
                    return;
                }
            }
            if reads == READS_PER_RUN {
                driver::schedule(self.clone());
                return;
            }
            reads += 1;
            let mut buf = READ_BUF
                .try_with(|b| std::mem::take(&mut *b.borrow_mut()))
                .unwrap_or_default();
            if buf.len() < READ_CHUNK {
                buf.resize(READ_CHUNK, 0);
            }
            let len = buf.len();
            let (r, more) = match &*self.stream.borrow() {
                Some(s) => s
                    .source()
                    .try_stream_io(Direction::Read, &self.waker, len, |s| (&*s).read(&mut buf)),
                None => return,
            };
            match r {
                Ok(0) => {
                    let _ = READ_BUF.try_with(|b| *b.borrow_mut() = buf);
                    self.st.borrow_mut().eof_read = true;
                    let mut keep_open = false;
                    self.call("eof_received", |p| keep_open = p.eof_received());
                    if !keep_open {
                        Transport { conn: self.clone() }.lose_connection();
                    }
                    return;
                }
                Ok(n) => {
                    self.call("data_received", |p| p.data_received(&buf[..n]));
                    let _ = READ_BUF.try_with(|b| {
                        let mut b = b.borrow_mut();
                        if b.is_empty() {
                            *b = buf;
                        }
                    });
                    if !more {
                        // A short read emptied the socket: the waker is listed for the next
                        // data (`try_stream_io`), so trying again would only say WouldBlock.
                        // (An end of stream reported with the data keeps the socket ready.)
                        return;
                    }
                }
                Err(e) => {
                    let _ = READ_BUF.try_with(|b| *b.borrow_mut() = buf);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return,
                        io::ErrorKind::Interrupted => {}
                        _ => return self.close(Reason::from(e)),
                    }
                }
            }
        }
    }

    /// Whether a read may find data (or the end) without waiting for an event: false only when
    /// the socket's read readiness is cleared on this hub, which `try_io` does only together
    /// with listing this connection's waker there.
    fn may_read(&self) -> bool {
        self.stream
            .borrow()
            .as_ref()
            .map_or(true, |s| s.source().ready_here(Direction::Read))
    }

    /// Sends what the buffer holds, as far as the socket takes it; then the water marks, the
    /// drain waiters, a wanted write EOF and a wanted close.
    fn flush(self: &Rc<Self>) {
        let err = {
            let mut st = self.st.borrow_mut();
            if st.closed.is_some() {
                return;
            }
            let stream = self.stream.borrow();
            let Some(s) = &*stream else { return };
            let mut err = None;
            while st.wpos < st.wbuf.len() {
                let State { wbuf, wpos, .. } = &mut *st;
                let (r, _) = s.source().try_stream_io(
                    Direction::Write,
                    &self.waker,
                    wbuf.len() - *wpos,
                    |s| (&*s).write(&wbuf[*wpos..]),
                );
                match r {
                    Ok(n) => {
                        st.wpos += n;
                        if st.wpos < st.wbuf.len() {
                            // A short write filled the socket's buffer: the waker is listed
                            // for when it drains (`try_stream_io`).
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            err
        };
        if let Some(e) = err {
            return self.close(Reason::from(e));
        }
        self.after_progress();
    }

    fn after_progress(self: &Rc<Self>) {
        let (resume, empty, eof, close) = {
            let mut st = self.st.borrow_mut();
            if st.wpos == st.wbuf.len() {
                st.wbuf.clear();
                st.wpos = 0;
                if st.wbuf.capacity() > KEEP_CAPACITY {
                    st.wbuf = Vec::new();
                }
            } else if st.wpos >= READ_CHUNK && st.wpos * 2 >= st.wbuf.len() {
                let wpos = st.wpos;
                st.wbuf.drain(..wpos);
                st.wpos = 0;
            }
            let buffered = st.buffered();
            let resume = st.writing_paused && buffered <= st.low;
            if resume {
                st.writing_paused = false;
            }
            let empty = buffered == 0;
            let eof = empty && st.eof_wanted && !st.eof_written;
            if eof {
                st.eof_written = true;
            }
            (resume, empty, eof, empty && st.closing)
        };
        if resume {
            self.note(NOTE_RESUME);
        }
        if empty {
            self.drained.notify_all();
        }
        if eof {
            if let Some(s) = &*self.stream.borrow() {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
        }
        if close {
            self.close(Reason::clean());
        }
    }
}

impl Driven for Conn {
    fn run(self: Rc<Self>) {
        self.read_some();
        self.flush();
    }

    fn shut_down(self: Rc<Self>) {
        self.close(Reason::from(io::Error::other("the hub shut down")));
    }

    fn scheduled(&self) -> &Cell<bool> {
        &self.scheduled
    }

    fn as_any(self: Rc<Self>) -> Rc<dyn std::any::Any> {
        self
    }
}

impl Transport {
    /// Sends `data`: at once, as far as the socket takes it, when nothing is waiting to be sent
    /// (as asyncio's transports do); what it does not take, or everything while earlier bytes
    /// are pending, is appended to the connection's write buffer and sent after the current
    /// callback. Crossing the high-water mark calls the protocol's `pause_writing`. Ignored once
    /// the connection is closing or closed.
    pub fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let sent = self.send_now(&[data]);
        if sent == data.len() || !self.append(|buf| buf.extend_from_slice(&data[sent..])) {
            return;
        }
        self.written();
    }

    /// Queues several buffers as one write, without joining them first: with nothing pending,
    /// they go to the socket at once in one `writev` and only what it did not take is buffered.
    pub fn write_sequence(&self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return;
        }
        let mut sent = self.send_now(parts);
        if sent == total {
            return;
        }
        let appended = self.append(|buf| {
            for p in parts {
                let skip = sent.min(p.len());
                sent -= skip;
                buf.extend_from_slice(&p[skip..]);
            }
        });
        if appended {
            self.written();
        }
    }

    /// Writes `parts` to the socket now if nothing is pending (buffered, or an end of stream
    /// asked for): the bytes the socket took. An error closes the connection (0 then).
    fn send_now(&self, parts: &[&[u8]]) -> usize {
        let c = &self.conn;
        let direct = {
            let st = c.st.borrow();
            st.closed.is_none() && !st.closing && !st.eof_wanted && st.buffered() == 0
        };
        if !direct {
            return 0;
        }
        let (r, _) = match (&*c.stream.borrow(), parts) {
            (None, _) => return 0,
            (Some(s), [one]) => {
                s.source()
                    .try_stream_io(Direction::Write, &c.waker, one.len(), |s| (&*s).write(one))
            }
            (Some(s), _) => {
                let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                let len = parts.iter().map(|p| p.len()).sum();
                s.source()
                    .try_stream_io(Direction::Write, &c.waker, len, |s| {
                        (&*s).write_vectored(&slices)
                    })
            }
        };
        match r {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => {
                c.close(Reason::from(e));
                0
            }
        }
    }

    fn append(&self, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut st = self.conn.st.borrow_mut();
        if st.closed.is_some() || st.closing {
            return false;
        }
        f(&mut st.wbuf);
        true
    }

    /// After an append: the high-water mark, and a flush soon.
    fn written(&self) {
        let pause = {
            let mut st = self.conn.st.borrow_mut();
            let pause = !st.writing_paused && st.buffered() > st.high;
            if pause {
                st.writing_paused = true;
            }
            pause
        };
        if pause {
            self.conn.note(NOTE_PAUSE);
        }
        driver::schedule(self.conn.clone());
    }

    /// Closes the connection once everything written so far has been sent (Twisted's
    /// `loseConnection`); later writes are ignored. `connection_lost` gets a clean reason.
    pub fn lose_connection(&self) {
        {
            let mut st = self.conn.st.borrow_mut();
            if st.closed.is_some() || st.closing {
                return;
            }
            st.closing = true;
        }
        driver::schedule(self.conn.clone());
    }

    /// Closes the connection now, dropping whatever is buffered (Twisted's
    /// `abortConnection`); `connection_lost` gets an unclean reason (`ConnectionAborted`).
    pub fn abort_connection(&self) {
        self.conn.close(Reason::from(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection aborted",
        )));
    }

    /// Shuts the write side down once the buffer is flushed (a half-close); reading goes on.
    pub fn write_eof(&self) {
        let mut st = self.conn.st.borrow_mut();
        if st.closed.is_none() && !st.eof_wanted {
            st.eof_wanted = true;
            drop(st);
            driver::schedule(self.conn.clone());
        }
    }

    /// Stops reading from the socket (Twisted's `pauseProducing`): the peer meets TCP
    /// back-pressure.
    pub fn pause_producing(&self) {
        self.conn.st.borrow_mut().paused_reading = true;
    }

    /// Reads again after [`pause_producing`](Self::pause_producing).
    pub fn resume_producing(&self) {
        let was = std::mem::replace(&mut self.conn.st.borrow_mut().paused_reading, false);
        // A socket known not readable needs no run now: its last read said WouldBlock (or
        // drained it) and listed the connection's waker, which the next data wakes.
        if was && self.conn.may_read() {
            driver::schedule(self.conn.clone());
        }
    }

    /// Sets the write buffer's water marks (asyncio's `set_write_buffer_limits`): above `high`
    /// bytes the protocol's `pause_writing` is called, at `low` or below again
    /// `resume_writing`. Defaults: 64 KiB and 16 KiB. `low` is capped at `high`.
    pub fn set_write_buffer_limits(&self, high: usize, low: usize) {
        let mut st = self.conn.st.borrow_mut();
        st.high = high;
        st.low = low.min(high);
    }

    /// Bytes written but not yet handed to the kernel.
    pub fn buffered(&self) -> usize {
        self.conn.st.borrow().buffered()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The local address.
    pub fn host_addr(&self) -> SocketAddr {
        self.conn.host
    }

    /// Whether reading is paused ([`pause_producing`](Self::pause_producing)).
    pub fn is_reading_paused(&self) -> bool {
        self.conn.st.borrow().paused_reading
    }

    /// Why the connection closed, once it has.
    pub fn closed(&self) -> Option<Reason> {
        self.conn.st.borrow().closed.clone()
    }

    /// Whether `lose_connection` was called (or the connection closed).
    pub fn is_closing(&self) -> bool {
        let st = self.conn.st.borrow();
        st.closing || st.closed.is_some()
    }

    /// Whether the peer has closed its write side (end of stream read).
    pub fn is_eof_received(&self) -> bool {
        self.conn.st.borrow().eof_read
    }
}
