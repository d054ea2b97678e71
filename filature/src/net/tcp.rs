//! TCP: [`TcpListener`] and [`TcpStream`], std's API on green sockets.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::addr::{each_addr, ToSocketAddrs};
use super::source::Source;
use crate::deadline::deadline_after;
use crate::hub::io::Direction;

/// A TCP server socket, as [`std::net::TcpListener`]: [`accept`](Self::accept) parks only the
/// calling green thread (from a thread's main context it drives the hub).
///
/// ```
/// use std::io::{Read, Write};
/// use filature::{green, net::{TcpListener, TcpStream}};
///
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// let server = green::spawn(move || {
///     let (mut s, _) = listener.accept().unwrap();
///     let mut buf = [0; 5];
///     s.read_exact(&mut buf).unwrap();
///     s.write_all(&buf).unwrap();
/// });
/// let mut c = TcpStream::connect(addr).unwrap(); // main context: drives the hub
/// c.write_all(b"hello").unwrap();
/// let mut back = String::new();
/// c.read_to_string(&mut back).unwrap();
/// assert_eq!(back, "hello");
/// server.join();
/// ```
pub struct TcpListener {
    src: Source<mio::net::TcpListener>,
}

/// A TCP connection, as [`std::net::TcpStream`]: reads and writes park only the calling green
/// thread, and a reader and a writer on the same stream (`&TcpStream` is `Read` and `Write`, as
/// std's is) park independently.
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use filature::{green, net::{TcpListener, TcpStream}};
///
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// green::spawn(move || {
///     let mut s = listener.accept().unwrap().0;
///     s.write_all(b"one\ntwo\n").unwrap();
/// });
/// let lines: Vec<String> = BufReader::new(TcpStream::connect(addr).unwrap())
///     .lines()
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(lines, ["one", "two"]);
/// ```
pub struct TcpStream {
    src: Source<std::net::TcpStream>,
}

/// The connections of a [`TcpListener`], as [`std::net::Incoming`]: never ends; each item is
/// [`TcpListener::accept`]'s result.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl TcpListener {
    /// Binds to `addr` (std's `bind`: `SO_REUSEADDR`, the first address that works). See
    /// [`ListenOptions`](super::ListenOptions) for `SO_REUSEPORT` and the backlog.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let std = each_addr(&addr, |a| std::net::TcpListener::bind(a))?;
        std.set_nonblocking(true)?;
        Ok(TcpListener::from_nonblocking(std))
    }

    /// [`ListenOptions::new().reuse_port(true).bind(addr)`](super::ListenOptions): one of several
    /// listeners on the same port (one per hub), among which the kernel spreads connections.
    pub fn bind_reuseport<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        super::ListenOptions::new().reuse_port(true).bind(addr)
    }

    pub(crate) fn source(&self) -> &Source<mio::net::TcpListener> {
        &self.src
    }

    /// A listener filature has just created (no timeouts).
    pub(crate) fn from_nonblocking(std: std::net::TcpListener) -> TcpListener {
        TcpListener {
            src: Source::fresh(mio::net::TcpListener::from_std(std), false),
        }
    }

    /// Accepts a connection, parking the caller until one arrives.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) = self.src.read("TcpListener::accept", |l| loop {
            match l.accept() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        })?;
        let stream = TcpStream {
            src: Source::fresh(s.into(), self.src.may_have_timeouts()),
        };
        Ok((stream, addr))
    }

    /// [`accept`](Self::accept) for a server's accept loop: retries what a later accept may
    /// not meet again (a connection aborted before it was accepted, or with a network error
    /// pending, which Linux reports from `accept`) and, when the process or
    /// the system is out of file descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`,
    /// `ENOMEM`), logs one warning, sleeps (5 ms, doubling up to 1 s) and tries again until
    /// it works, logging once more when it does. Other errors are returned. See "Accept loops"
    /// in the [module docs](super).
    pub fn accept_with_backoff(&self) -> io::Result<(TcpStream, SocketAddr)> {
        super::accept::with_backoff("TcpListener::accept", || self.accept())
    }

    /// An iterator over accepted connections, as std's.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().local_addr()
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.src.get_ref().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.src.get_ref().ttl()
    }
}

/// Whether a connect in progress on `s` has finished: `Ok` once connected, its error if it
/// failed, `WouldBlock` while it is still in progress.
pub(crate) fn connect_finished(s: &std::net::TcpStream) -> io::Result<()> {
    if let Some(e) = s.take_error()? {
        return Err(e);
    }
    match s.peer_addr() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e),
    }
}

fn connect_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
}

impl TcpStream {
    /// Connects to `addr`, trying each of its addresses in turn (std's `connect`); host names
    /// are looked up on [`tpool`](crate::tpool). Parks the caller until the connection is up or
    /// has failed.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(&addr, |a| TcpStream::connect_addr(a, None))
    }

    /// Connects to `addr`, giving up after `timeout` with `TimedOut` (std's
    /// `connect_timeout`; a zero timeout is `InvalidInput`).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_addr(addr, Some(timeout))
    }

    fn connect_addr(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let (stream, in_progress) = TcpStream::start_connect(addr)?;
        if !in_progress {
            return Ok(stream);
        }
        let deadline = timeout.and_then(deadline_after);
        stream.src.call_until(
            "TcpStream::connect",
            Direction::Write,
            deadline,
            connect_timed_out,
            connect_finished,
        )?;
        Ok(stream)
    }

    /// A non-blocking socket connecting to `addr`; `true` while the connect is in progress
    /// (wait for writability, then [`connect_finished`]).
    pub(crate) fn start_connect(addr: &SocketAddr) -> io::Result<(TcpStream, bool)> {
        let sock = Socket::new(
            Domain::for_address(*addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        let stream = TcpStream::from_nonblocking(sock.into());
        match SockRef::from(stream.src.get_ref()).connect(&(*addr).into()) {
            Ok(()) => Ok((stream, false)),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok((stream, true)),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn source(&self) -> &Source<std::net::TcpStream> {
        &self.src
    }

    /// A stream filature has just connected (no timeouts).
    pub(crate) fn from_nonblocking(std: std::net::TcpStream) -> TcpStream {
        TcpStream {
            src: Source::fresh(std, false),
        }
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().local_addr()
    }

    /// Shuts down the read half, the write half or both (std's; twice is fine on Linux).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.src.get_ref().shutdown(how)
    }

    /// Reads without consuming (`MSG_PEEK`), parking until data or end of stream.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.read("TcpStream::peek", |s| s.peek(buf))
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.src.get_ref().set_nodelay(nodelay)
    }

    /// `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.src.get_ref().nodelay()
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.src.get_ref().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.src.get_ref().ttl()
    }
}

super::stream_io!(
    TcpStream,
    "TcpStream::read",
    "TcpStream::write",
    short_drains: true
);
super::timeouts!(TcpStream);

impl From<std::net::TcpStream> for TcpStream {
    /// Adopts a std stream, keeping its blocking mode and timeouts (its fd is switched to
    /// non-blocking mode; the green socket parks instead).
    fn from(std: std::net::TcpStream) -> TcpStream {
        let nonblocking = super::adopt(&std);
        let src = Source::new(std);
        src.set_nonblocking(nonblocking);
        TcpStream { src }
    }
}

impl From<std::net::TcpListener> for TcpListener {
    /// Adopts a std listener, keeping its blocking mode.
    fn from(std: std::net::TcpListener) -> TcpListener {
        let nb = super::adopt(&std);
        // Adopted: it may carry timeouts its accepted sockets would inherit.
        let l = TcpListener {
            src: Source::new(mio::net::TcpListener::from_std(std)),
        };
        l.src.set_nonblocking(nb);
        l
    }
}

super::socket_common!(TcpStream, std::net::TcpStream);
super::socket_common!(TcpListener, std::net::TcpListener);
