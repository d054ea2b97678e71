//! Twisted's `Protocol`, `Factory` and `ClientFactory`, and the [`Reason`] a connection ended.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::Transport;

/// What to do with a connection's events (Twisted's `Protocol`): one protocol object per
/// connection, its methods called on the connection's hub as hub callbacks (blocking in them
/// panics: spawn a green thread, or use [`GreenTransport`](super::GreenTransport)).
///
/// Order: [`connection_made`](Self::connection_made) once, then any number of
/// [`data_received`](Self::data_received) (and [`eof_received`](Self::eof_received) at most
/// once), then [`connection_lost`](Self::connection_lost) once. A panic in any of them is
/// logged once with the peer's address and closes that connection only
/// (`connection_lost` then gets an unclean [`Reason`]).
///
/// ```
/// use filature::net::{self, Protocol, Transport};
///
/// struct Echo(Option<Transport>);
/// impl Protocol for Echo {
///     fn connection_made(&mut self, t: Transport) { self.0 = Some(t); }
///     fn data_received(&mut self, data: &[u8]) { self.0.as_ref().unwrap().write(data); }
/// }
///
/// let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), |_peer| {
///     Some(Box::new(Echo(None)) as Box<dyn Protocol>)
/// })
/// .unwrap();
/// let mut c = filature::net::TcpStream::connect(port.local_addr()).unwrap();
/// use std::io::{Read, Write};
/// c.write_all(b"hi").unwrap();
/// let mut buf = [0; 2];
/// c.read_exact(&mut buf).unwrap();
/// assert_eq!(&buf, b"hi");
/// ```
pub trait Protocol {
    /// The connection is up; keep `transport` (a cheap handle) to write and to close.
    fn connection_made(&mut self, transport: Transport) {
        let _ = transport;
    }

    /// Some bytes arrived. `data` is only valid during the call (it is the hub's read buffer).
    fn data_received(&mut self, data: &[u8]);

    /// The peer closed its write side (a half-close). Return `true` to keep writing (close later
    /// with [`Transport::lose_connection`]); the default, `false`, closes the connection once
    /// the pending writes are flushed (Twisted without `IHalfCloseableProtocol`, but flushing).
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is closed (its socket too); `reason` says whether cleanly.
    fn connection_lost(&mut self, reason: Reason) {
        let _ = reason;
    }

    /// The transport's write buffer went above its high-water mark: stop producing data
    /// (Twisted's `IPushProducer.pauseProducing`, asyncio's `pause_writing`). Called from the
    /// `write` that crossed the mark, or, when that write was made inside one of this
    /// protocol's own methods (which Rust cannot re-enter), right after that method returns.
    fn pause_writing(&mut self) {}

    /// The write buffer went back to its low-water mark after [`pause_writing`](Self::pause_writing).
    fn resume_writing(&mut self) {}
}

/// Builds a protocol for each new connection (Twisted's `Factory.buildProtocol`). A closure
/// `FnMut(SocketAddr) -> Option<Box<dyn Protocol>>` is a factory.
pub trait Factory {
    /// A protocol for the connection with `peer`, or `None` to refuse it (it is closed).
    fn build_protocol(&mut self, peer: SocketAddr) -> Option<Box<dyn Protocol>>;
}

impl<F: FnMut(SocketAddr) -> Option<Box<dyn Protocol>>> Factory for F {
    fn build_protocol(&mut self, peer: SocketAddr) -> Option<Box<dyn Protocol>> {
        self(peer)
    }
}

/// A factory for an outgoing connection (Twisted's `ClientFactory`): also told when the
/// connection could not be made.
pub trait ClientFactory: Factory {
    /// The connection failed (refused, timed out, unreachable).
    fn client_connection_failed(&mut self, error: io::Error) {
        tracing::debug!("filature::net: connection failed: {error}");
    }
}

impl<F: FnMut(SocketAddr) -> Option<Box<dyn Protocol>>> ClientFactory for F {}

/// Why a connection ended: cleanly (closed by either side after its data) or not (reset,
/// aborted, an I/O error, a panicking protocol, the hub shutting down). Cheap to clone.
///
/// ```
/// use filature::net::Reason;
///
/// assert!(Reason::clean().is_clean());
/// let r = Reason::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
/// assert_eq!(r.to_io_error().kind(), std::io::ErrorKind::ConnectionReset);
/// ```
#[derive(Clone, Debug)]
pub struct Reason {
    error: Option<Arc<io::Error>>,
}

impl Reason {
    /// A clean close (Twisted's `ConnectionDone`).
    pub fn clean() -> Reason {
        Reason { error: None }
    }

    /// Whether the connection closed cleanly.
    pub fn is_clean(&self) -> bool {
        self.error.is_none()
    }

    /// The error of an unclean close.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_deref()
    }

    /// The error as a fresh `io::Error` of the same kind, OS code and message (a clean close
    /// gives `NotConnected`): what every read after an unclean loss returns.
    pub fn to_io_error(&self) -> io::Error {
        match &self.error {
            None => io::Error::new(io::ErrorKind::NotConnected, "connection closed"),
            Some(e) => match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            },
        }
    }
}

impl From<io::Error> for Reason {
    fn from(e: io::Error) -> Reason {
        Reason {
            error: Some(Arc::new(e)),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            None => f.write_str("connection closed cleanly"),
            Some(e) => write!(f, "connection lost: {e}"),
        }
    }
}
