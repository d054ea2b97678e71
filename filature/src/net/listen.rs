//! [`ListenOptions`]: listener options std lacks (`SO_REUSEPORT`, the backlog), through socket2.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::addr::{each_addr, ToSocketAddrs};
use super::TcpListener;

/// How to set up a [`TcpListener`] beyond std's `bind`: `SO_REUSEPORT` (several listeners on one
/// port, for one listener per hub; see "Serving one port from N hubs" in the
/// [module docs](super)), the listen backlog, `IPV6_V6ONLY`.
///
/// ```
/// use filature::net::ListenOptions;
///
/// let a = ListenOptions::new().reuse_port(true).backlog(64).bind("127.0.0.1:0").unwrap();
/// let port = a.local_addr().unwrap().port();
/// let b = ListenOptions::new().reuse_port(true).bind(("127.0.0.1", port)).unwrap();
/// assert_eq!(b.local_addr().unwrap().port(), port);
/// ```
#[derive(Debug, Clone)]
pub struct ListenOptions {
    backlog: i32,
    reuse_port: bool,
    only_v6: Option<bool>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions::new()
    }
}

impl ListenOptions {
    /// `SO_REUSEADDR` on (as std's `bind`), `SO_REUSEPORT` off, backlog 1024, the system's
    /// `IPV6_V6ONLY` default.
    pub fn new() -> ListenOptions {
        ListenOptions {
            backlog: 1024,
            reuse_port: false,
            only_v6: None,
        }
    }

    /// The listen backlog (the kernel caps it at `net.core.somaxconn`).
    pub fn backlog(mut self, backlog: u32) -> ListenOptions {
        self.backlog = backlog.min(i32::MAX as u32) as i32;
        self
    }

    /// `SO_REUSEPORT`: every listener bound with it to one address shares the port, and the
    /// kernel spreads new connections among them.
    pub fn reuse_port(mut self, on: bool) -> ListenOptions {
        self.reuse_port = on;
        self
    }

    /// `IPV6_V6ONLY` for IPv6 addresses.
    pub fn only_v6(mut self, on: bool) -> ListenOptions {
        self.only_v6 = Some(on);
        self
    }

    /// Binds and listens on the first of `addr`'s addresses that works.
    pub fn bind<A: ToSocketAddrs>(&self, addr: A) -> io::Result<TcpListener> {
        each_addr(&addr, |a| self.bind_one(a))
    }

    fn bind_one(&self, addr: &SocketAddr) -> io::Result<TcpListener> {
        let sock = Socket::new(
            Domain::for_address(*addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        sock.set_reuse_address(true)?;
        if self.reuse_port {
            sock.set_reuse_port(true)?;
        }
        if let (Some(on), true) = (self.only_v6, addr.is_ipv6()) {
            sock.set_only_v6(on)?;
        }
        sock.bind(&(*addr).into())?;
        sock.listen(self.backlog)?;
        Ok(TcpListener::from_nonblocking(sock.into()))
    }
}
