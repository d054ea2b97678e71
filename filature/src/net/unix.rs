//! Unix domain sockets: [`UnixListener`], [`UnixStream`], [`UnixDatagram`], std's API
//! (`std::os::unix::net`) on green sockets.

use std::io;
use std::net::Shutdown;
use std::os::unix::net::{self as std_unix, SocketAddr};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::source::Source;
use crate::hub::io::Direction;

/// A Unix domain socket server, as [`std::os::unix::net::UnixListener`].
///
/// ```
/// use std::io::{Read, Write};
/// use filature::{green, net::{UnixListener, UnixStream}};
///
/// let path = std::env::temp_dir().join(format!("filature-doc-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let listener = UnixListener::bind(&path).unwrap();
/// green::spawn(move || {
///     let (mut s, _) = listener.accept().unwrap();
///     s.write_all(b"hi").unwrap();
/// });
/// let mut c = UnixStream::connect(&path).unwrap();
/// let mut buf = String::new();
/// c.read_to_string(&mut buf).unwrap();
/// assert_eq!(buf, "hi");
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    src: Source<mio::net::UnixListener>,
}

/// A Unix domain stream, as [`std::os::unix::net::UnixStream`].
///
/// ```
/// use std::io::{Read, Write};
/// use filature::{green, net::UnixStream};
///
/// let (mut a, mut b) = UnixStream::pair().unwrap();
/// green::spawn(move || a.write_all(b"ping").unwrap());
/// let mut buf = [0; 4];
/// b.read_exact(&mut buf).unwrap();
/// assert_eq!(&buf, b"ping");
/// ```
pub struct UnixStream {
    src: Source<std_unix::UnixStream>,
}

/// A Unix datagram socket, as [`std::os::unix::net::UnixDatagram`].
///
/// ```
/// use filature::{green, net::UnixDatagram};
///
/// let (a, b) = UnixDatagram::pair().unwrap();
/// green::spawn(move || a.send(b"one").unwrap());
/// let mut buf = [0; 8];
/// let n = b.recv(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"one");
/// ```
pub struct UnixDatagram {
    src: Source<std_unix::UnixDatagram>,
}

/// The connections of a [`UnixListener`], as std's `Incoming`: never ends.
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl UnixListener {
    /// Binds to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let std = std_unix::UnixListener::bind(path)?;
        std.set_nonblocking(true)?;
        Ok(UnixListener {
            src: Source::new(mio::net::UnixListener::from_std(std)),
        })
    }

    /// Accepts a connection, parking the caller until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self.src.read("UnixListener::accept", |l| loop {
            match l.accept() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        })?;
        Ok((UnixStream::from_nonblocking(s.into()), addr))
    }

    /// [`accept`](Self::accept) for accept loops, backing off on exhausted resources; see
    /// [`TcpListener::accept_with_backoff`](super::TcpListener::accept_with_backoff).
    pub fn accept_with_backoff(&self) -> io::Result<(UnixStream, SocketAddr)> {
        super::accept::with_backoff("UnixListener::accept", || self.accept())
    }

    /// An iterator over accepted connections.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().local_addr()
    }
}

/// A Unix stream connect that found the listener's backlog full (`EAGAIN`) retries after these
/// sleeps, doubling, capped at the last.
const CONNECT_RETRY: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(64));

impl UnixStream {
    /// Connects to the socket at `path`. A full backlog (a non-blocking Unix connect says
    /// `EAGAIN`, with no readiness to wait for) is retried after short sleeps, parking only the
    /// caller, as std's blocking connect would wait.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let addr = SockAddr::unix(path)?;
        crate::green::refuse_in_callback("UnixStream::connect");
        let sock = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        let mut delay = CONNECT_RETRY.0;
        loop {
            match sock.connect(&addr) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    crate::green::sleep(delay);
                    delay = (delay * 2).min(CONNECT_RETRY.1);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    let s = UnixStream::from_nonblocking(sock.into());
                    s.src.call_until(
                        "UnixStream::connect",
                        Direction::Write,
                        None,
                        || io::ErrorKind::TimedOut.into(),
                        |s| match s.take_error()? {
                            Some(e) => Err(e),
                            None => Ok(()),
                        },
                    )?;
                    return Ok(s);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(UnixStream::from_nonblocking(sock.into()))
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std_unix::UnixStream::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((
            UnixStream::from_nonblocking(a),
            UnixStream::from_nonblocking(b),
        ))
    }

    fn from_nonblocking(std: std_unix::UnixStream) -> UnixStream {
        UnixStream {
            src: Source::new(std),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().peer_addr()
    }

    /// Shuts down the read half, the write half or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.src.get_ref().shutdown(how)
    }
}

// A Unix stream read may stop early at a change of sender credentials: no shortcut.
super::stream_io!(
    UnixStream,
    "UnixStream::read",
    "UnixStream::write",
    short_drains: false
);
super::timeouts!(UnixStream);

impl UnixDatagram {
    /// A socket bound to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::adopt_nonblocking(std_unix::UnixDatagram::bind(path)?)
    }

    /// A socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::adopt_nonblocking(std_unix::UnixDatagram::unbound()?)
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std_unix::UnixDatagram::pair()?;
        Ok((
            UnixDatagram::adopt_nonblocking(a)?,
            UnixDatagram::adopt_nonblocking(b)?,
        ))
    }

    fn adopt_nonblocking(std: std_unix::UnixDatagram) -> io::Result<UnixDatagram> {
        std.set_nonblocking(true)?;
        Ok(UnixDatagram {
            src: Source::new(std),
        })
    }

    /// Connects to the socket at `path`: `send`/`recv` then talk to it.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.src.get_ref().connect(path)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().peer_addr()
    }

    /// Receives a datagram and its sender, parking until one arrives.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.src
            .read("UnixDatagram::recv_from", |s| s.recv_from(buf))
    }

    /// Receives a datagram, parking until one arrives.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.read("UnixDatagram::recv", |s| s.recv(buf))
    }

    /// Sends a datagram to the socket at `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.src
            .write("UnixDatagram::send_to", |s| s.send_to(buf, path))
    }

    /// Sends a datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.src.write("UnixDatagram::send", |s| s.send(buf))
    }

    /// Shuts down the read half, the write half or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.src.get_ref().shutdown(how)
    }
}

impl From<std_unix::UnixStream> for UnixStream {
    /// Adopts a std stream, keeping its blocking mode and timeouts.
    fn from(std: std_unix::UnixStream) -> UnixStream {
        let nonblocking = super::adopt(&std);
        let src = Source::new(std);
        src.set_nonblocking(nonblocking);
        UnixStream { src }
    }
}

impl From<std_unix::UnixDatagram> for UnixDatagram {
    /// Adopts a std socket, keeping its blocking mode and timeouts.
    fn from(std: std_unix::UnixDatagram) -> UnixDatagram {
        let nonblocking = super::adopt(&std);
        let src = Source::new(std);
        src.set_nonblocking(nonblocking);
        UnixDatagram { src }
    }
}

impl From<std_unix::UnixListener> for UnixListener {
    /// Adopts a std listener, keeping its blocking mode.
    fn from(std: std_unix::UnixListener) -> UnixListener {
        let nb = super::adopt(&std);
        let l = UnixListener {
            src: Source::new(mio::net::UnixListener::from_std(std)),
        };
        l.src.set_nonblocking(nb);
        l
    }
}

super::socket_common!(UnixStream, std_unix::UnixStream);
super::socket_common!(UnixDatagram, std_unix::UnixDatagram);
super::timeouts!(UnixDatagram);
super::socket_common!(UnixListener, std_unix::UnixListener);
