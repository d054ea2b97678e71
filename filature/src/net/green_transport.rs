//! eventlib's `GreenTransport` and `GreenClientCreator`: a green thread's blocking view of a
//! protocol connection.
//!
//! # Invariants
//!
//! * **Who owns what.** A connection's protocol is a `GreenProtocol`, which shares one
//!   `Shared` (`Rc`, hub-local) with the [`GreenTransport`] handed to a green thread. `Shared`
//!   holds the bytes received and not yet read, how many bytes the current reader still wants
//!   (`want`), whether the read side ended and why the connection was lost. Everything runs on
//!   the connection's hub: the protocol's methods as hub callbacks, the `GreenTransport`'s in
//!   green threads (or the main context) of that hub; neither is `Send`.
//! * **Reading only while someone reads.** The transport is paused (not reading the socket)
//!   unless a reader waits for more than is buffered: the reader sets `want` and resumes it;
//!   `data_received` appends one chunk (at most the hub's 64 KiB read buffer) and pauses again
//!   as soon as `want` is met. So at most one read's worth beyond what the reader asked for is
//!   held, and a fast sender meets TCP back-pressure.
//! * **Endings.** After an unclean loss every read (once buffered bytes are consumed) returns
//!   the same error (`Reason::to_io_error`), every write fails with it; after a clean end reads
//!   return 0 / empty. A writer parked until the buffer drains is woken by the loss and fails.
//! * **Drop / kill.** Dropping a `GreenTransport` (also when its green thread is killed while
//!   parked in it) closes the connection: `lose_connection` when nothing is buffered, else
//!   `abort_connection`, so no connection outlives its handle and no fd is left.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::signal::Signal;
use super::{ClientFactory, Factory, Protocol, Reason, ToSocketAddrs, Transport};

#[derive(Default)]
pub(crate) struct Shared {
    transport: RefCell<Option<Transport>>,
    st: RefCell<State>,
    changed: Signal,
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    pos: usize,
    /// Buffered bytes the waiting reader needs before it can go on (0: nobody waits).
    want: usize,
    eof: bool,
    lost: Option<Reason>,
}

impl State {
    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn ended(&self) -> bool {
        self.eof || self.lost.is_some()
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.available());
        let start = self.pos;
        self.pos += n;
        &self.buf[start..start + n]
    }

    /// Forgets consumed bytes (cheaply: when everything is consumed, or most of it).
    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4096 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// The protocol side: feeds `Shared` and pauses the transport when no reader needs more.
pub(crate) struct GreenProtocol {
    shared: Rc<Shared>,
    on_made: Option<Box<dyn FnOnce(GreenTransport)>>,
}

impl GreenProtocol {
    /// A protocol that hands its `GreenTransport` to `on_made` once the connection is up.
    pub(crate) fn new(on_made: impl FnOnce(GreenTransport) + 'static) -> GreenProtocol {
        GreenProtocol {
            shared: Rc::default(),
            on_made: Some(Box::new(on_made)),
        }
    }
}

impl Protocol for GreenProtocol {
    fn connection_made(&mut self, transport: Transport) {
        transport.pause_producing(); // until someone reads
        *self.shared.transport.borrow_mut() = Some(transport);
        if let Some(f) = self.on_made.take() {
            f(GreenTransport {
                shared: self.shared.clone(),
            });
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        let satisfied = {
            let mut st = self.shared.st.borrow_mut();
            st.compact();
            st.buf.extend_from_slice(data);
            st.available() >= st.want
        };
        if satisfied {
            if let Some(t) = &*self.shared.transport.borrow() {
                t.pause_producing();
            }
        }
        self.shared.changed.notify_all();
    }

    fn eof_received(&mut self) -> bool {
        self.shared.st.borrow_mut().eof = true;
        self.shared.changed.notify_all();
        true // the green thread may still write; it closes when it is done
    }

    fn connection_lost(&mut self, reason: Reason) {
        self.shared.st.borrow_mut().lost = Some(reason);
        self.shared.changed.notify_all();
    }
}

/// A connection as a green thread sees it (eventlib's `GreenTransport`): blocking reads and
/// writes that park only the calling green thread. The socket is read only while a green thread
/// is reading, so a fast sender meets TCP back-pressure and memory stays bounded by one read's
/// worth. Also `std::io::Read` and `Write`. Get one from [`GreenClientCreator`] or
/// [`SpawnFactory`](super::SpawnFactory). Dropping it closes the connection.
///
/// ```
/// use filature::net::{self, GreenClientCreator, SpawnFactory};
///
/// let echo = SpawnFactory::new(|mut t| {
///     while let Ok(chunk) = t.recv(1024) {
///         if chunk.is_empty() { break; } // clean end
///         t.write(&chunk).unwrap();
///     }
/// });
/// let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), echo).unwrap();
/// let c = GreenClientCreator::new().connect_tcp(port.local_addr()).unwrap();
/// c.write(b"ping").unwrap(); // returns once sent
/// assert_eq!(c.read(4).unwrap(), b"ping");
/// c.lose_connection().unwrap(); // returns once closed
/// ```
pub struct GreenTransport {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for GreenTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenTransport")
            .field("transport", &*self.shared.transport.borrow())
            .finish()
    }
}

impl GreenTransport {
    /// The underlying callback-style transport (for its addresses and counters).
    pub fn transport(&self) -> Transport {
        self.shared
            .transport
            .borrow()
            .clone()
            .expect("a GreenTransport exists only once its connection is made")
    }

    /// Parks until `min` bytes are buffered or the read side ended, reading meanwhile.
    fn fill(&self, what: &'static str, min: usize) {
        let sh = &*self.shared;
        struct Done<'a>(&'a Shared);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.st.borrow_mut().want = 0;
                if let Some(t) = &*self.0.transport.borrow() {
                    t.pause_producing();
                }
            }
        }
        {
            let st = sh.st.borrow();
            if st.available() >= min || st.ended() {
                drop(st);
                crate::green::refuse_in_callback(what);
                return;
            }
        }
        let _done = Done(sh);
        sh.st.borrow_mut().want = min;
        if let Some(t) = &*sh.transport.borrow() {
            t.resume_producing();
        }
        sh.changed.wait_until(what, || {
            let st = sh.st.borrow();
            st.available() >= min || st.ended()
        });
    }

    /// What a read returns once nothing is buffered: the loss's error, or the clean end.
    fn end(&self) -> io::Result<()> {
        match &self.shared.st.borrow().lost {
            Some(r) if !r.is_clean() => Err(r.to_io_error()),
            _ => Ok(()),
        }
    }

    /// Reads exactly `n` bytes, fewer only if the connection ends first (then empty at the
    /// end); an unclean loss with nothing left to read is an error, the same every time.
    pub fn read(&self, n: usize) -> io::Result<Vec<u8>> {
        self.fill("GreenTransport::read", n);
        let mut st = self.shared.st.borrow_mut();
        let out = st.take(n).to_vec();
        st.compact();
        drop(st);
        if out.is_empty() && n > 0 {
            self.end()?;
        }
        Ok(out)
    }

    /// Reads until the connection ends: everything, or the error of an unclean loss.
    pub fn read_to_end(&self) -> io::Result<Vec<u8>> {
        self.fill("GreenTransport::read_to_end", usize::MAX);
        self.end()?;
        let mut st = self.shared.st.borrow_mut();
        let n = st.available();
        let out = st.take(n).to_vec();
        st.compact();
        Ok(out)
    }

    /// Reads one chunk: what is buffered (at most `max` bytes; the rest is kept for the next
    /// read), waiting for some if nothing is. Empty at a clean end.
    pub fn recv(&self, max: usize) -> io::Result<Vec<u8>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.fill("GreenTransport::recv", 1);
        // Only what is there is copied (no `max`-sized zeroed buffer per call).
        let mut st = self.shared.st.borrow_mut();
        let out = st.take(max).to_vec();
        st.compact();
        drop(st);
        if out.is_empty() {
            self.end()?;
        }
        Ok(out)
    }

    fn recv_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.fill("GreenTransport::recv", 1);
        let mut st = self.shared.st.borrow_mut();
        let got = st.take(buf.len());
        let n = got.len();
        buf[..n].copy_from_slice(got);
        st.compact();
        drop(st);
        if n == 0 {
            self.end()?;
        }
        Ok(n)
    }

    /// Reads a line: bytes up to `delim` (not included), waiting for more as needed. `None` at
    /// the end of the stream (a last line without delimiter is returned first). A line longer
    /// than `max` bytes is an `InvalidData` error (its bytes stay unread): memory never grows
    /// past `max` plus one read's worth.
    pub(crate) fn read_until(&self, delim: &[u8], max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut scanned: usize = 0;
        loop {
            {
                let mut st = self.shared.st.borrow_mut();
                let avail = &st.buf[st.pos..];
                let from = scanned.saturating_sub(delim.len() - 1);
                if let Some(i) = avail[from..]
                    .windows(delim.len())
                    .position(|w| w == delim)
                    .map(|i| i + from)
                {
                    if i > max {
                        return Err(line_too_long(max));
                    }
                    let line = avail[..i].to_vec();
                    st.pos += i + delim.len();
                    st.compact();
                    return Ok(Some(line));
                }
                if avail.len() > max {
                    return Err(line_too_long(max));
                }
                scanned = avail.len();
                if st.ended() {
                    if avail.is_empty() {
                        drop(st);
                        self.end()?;
                        return Ok(None);
                    }
                    let line = avail.to_vec();
                    st.pos = st.buf.len();
                    st.compact();
                    return Ok(Some(line));
                }
            }
            self.fill("LineTransport::read_line", scanned + 1);
        }
    }

    /// Sends `data` and returns once the transport's buffer has drained (the kernel took it
    /// all). Fails once the connection is lost (with the loss's error; `NotConnected` after a
    /// clean close or `lose_connection`), also while waiting for the drain.
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        let t = self.transport();
        if let Some(r) = t.closed() {
            crate::green::refuse_in_callback("GreenTransport::write");
            return Err(r.to_io_error());
        }
        if t.is_closing() {
            crate::green::refuse_in_callback("GreenTransport::write");
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection closing",
            ));
        }
        t.write(data);
        t.conn.drained.wait_until("GreenTransport::write", || {
            t.buffered() == 0 || t.closed().is_some()
        });
        match t.closed() {
            Some(r) if t.buffered() > 0 || !r.is_clean() => Err(r.to_io_error()),
            _ => Ok(()),
        }
    }

    /// Closes the connection once everything written has been sent, and returns once it is
    /// closed (`connection_lost` ran). An error if it was lost uncleanly.
    pub fn lose_connection(&self) -> io::Result<()> {
        self.transport().lose_connection();
        let sh = &*self.shared;
        sh.changed
            .wait_until("GreenTransport::lose_connection", || {
                sh.st.borrow().lost.is_some()
            });
        match &sh.st.borrow().lost {
            Some(r) if !r.is_clean() => Err(r.to_io_error()),
            _ => Ok(()),
        }
    }

    /// Shuts the write side down once everything written has been sent (a half-close);
    /// reading goes on.
    pub fn write_eof(&self) {
        self.transport().write_eof();
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.transport().peer_addr()
    }

    /// The local address.
    pub fn host_addr(&self) -> SocketAddr {
        self.transport().host_addr()
    }

    /// Bytes received and not yet read (at most one read's worth beyond what a reader asked
    /// for).
    pub fn buffered_in(&self) -> usize {
        self.shared.st.borrow().available()
    }

    /// Bytes written and not yet handed to the kernel.
    pub fn buffered_out(&self) -> usize {
        self.transport().buffered()
    }
}

fn line_too_long(max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("line longer than {max} bytes"),
    )
}

impl Drop for GreenTransport {
    fn drop(&mut self) {
        if let Some(t) = &*self.shared.transport.borrow() {
            if t.buffered() > 0 {
                t.abort_connection();
            } else {
                t.lose_connection();
            }
        }
    }
}

impl io::Read for &GreenTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf)
    }
}

impl io::Read for GreenTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_into(buf)
    }
}

impl io::Write for &GreenTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        GreenTransport::write(self, buf).map(|()| buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for GreenTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        GreenTransport::write(self, buf).map(|()| buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects and hands back a [`GreenTransport`] (eventlib's `GreenClientCreator.connectTCP`):
/// only the calling green thread waits; a refused or timed-out connect is an error returned
/// to the caller, and nothing else sees it.
///
/// ```
/// use filature::net::GreenClientCreator;
/// use std::time::Duration;
///
/// let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
/// let err = GreenClientCreator::new()
///     .timeout(Duration::from_secs(5))
///     .connect_tcp(free)
///     .unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
/// ```
#[derive(Clone, Debug)]
pub struct GreenClientCreator {
    timeout: Duration,
}

impl Default for GreenClientCreator {
    fn default() -> Self {
        GreenClientCreator::new()
    }
}

type Outcome = Rc<(RefCell<Option<io::Result<GreenTransport>>>, Signal)>;

struct CreatorFactory(Outcome);

impl Factory for CreatorFactory {
    fn build_protocol(&mut self, _peer: SocketAddr) -> Option<Box<dyn Protocol>> {
        let out = self.0.clone();
        Some(Box::new(GreenProtocol::new(move |t| {
            *out.0.borrow_mut() = Some(Ok(t));
            out.1.notify_all();
        })))
    }
}

impl ClientFactory for CreatorFactory {
    fn client_connection_failed(&mut self, error: io::Error) {
        *self.0 .0.borrow_mut() = Some(Err(error));
        self.0 .1.notify_all();
    }
}

impl GreenClientCreator {
    /// Connect timeout 30 s (Twisted's `connectTCP` default).
    pub fn new() -> GreenClientCreator {
        GreenClientCreator {
            timeout: Duration::from_secs(30),
        }
    }

    /// How long a connect may take before it fails with `TimedOut`.
    pub fn timeout(mut self, timeout: Duration) -> GreenClientCreator {
        self.timeout = timeout;
        self
    }

    /// Connects to `addr` (each of its addresses in turn; names are looked up on
    /// [`tpool`](crate::tpool)) on the current hub, parking the caller until connected.
    pub fn connect_tcp<A: ToSocketAddrs>(&self, addr: A) -> io::Result<GreenTransport> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match self.connect_one(a) {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to connect to")
        }))
    }

    fn connect_one(&self, addr: SocketAddr) -> io::Result<GreenTransport> {
        crate::green::refuse_in_callback("GreenClientCreator::connect_tcp");
        let out: Outcome = Rc::default();
        super::connect_tcp(addr, CreatorFactory(out.clone()), self.timeout);
        // If the caller is killed here the connect goes on; its transport, when it comes, is
        // dropped with `out` (closing it).
        out.1.wait_until("GreenClientCreator::connect_tcp", || {
            out.0.borrow().is_some()
        });
        let r = out.0.borrow_mut().take().expect("just checked");
        r
    }
}
