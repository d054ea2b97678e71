//! Addresses: [`ToSocketAddrs`] (std's trait, with name lookups moved to the thread pool) and
//! [`lookup_host`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// std's [`ToSocketAddrs`](std::net::ToSocketAddrs), for green sockets: the same implementors
/// (so `connect("127.0.0.1:80")`, `connect(("localhost", 80))` and `bind(addr)` read the same),
/// but a host name is looked up on [`tpool`](crate::tpool), never on the hub, and only the
/// calling green thread waits. A literal address (`"127.0.0.1:80"`, `("::1", 80)`, a
/// [`SocketAddr`]) is parsed in place and never touches the pool.
///
/// ```
/// use filature::net::ToSocketAddrs;
///
/// let mut addrs = "127.0.0.1:8080".to_socket_addrs().unwrap();
/// assert_eq!(addrs.next(), Some("127.0.0.1:8080".parse().unwrap()));
/// ```
pub trait ToSocketAddrs {
    /// The addresses the value stands for.
    type Iter: Iterator<Item = SocketAddr>;

    /// Converts (or looks up) the addresses; may park the calling green thread.
    fn to_socket_addrs(&self) -> io::Result<Self::Iter>;
}

/// Looks `host` up (a `"name:port"`, a `(name, port)`, or a literal address) and returns its
/// addresses: the lookup runs on [`tpool`](crate::tpool), parking only the calling green thread
/// (tokio's `lookup_host`).
///
/// ```
/// let addrs: Vec<_> = filature::net::lookup_host("localhost:80").unwrap().collect();
/// assert!(addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()));
/// ```
pub fn lookup_host<A: ToSocketAddrs>(host: A) -> io::Result<A::Iter> {
    host.to_socket_addrs()
}

/// Looks `host` up on the pool.
fn resolve<H>(host: H) -> io::Result<std::vec::IntoIter<SocketAddr>>
where
    H: std::net::ToSocketAddrs + Send,
{
    crate::tpool::execute(move || host.to_socket_addrs().map(|a| a.collect::<Vec<_>>()))
        .map(Vec::into_iter)
}

macro_rules! literal {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {
            type Iter = std::option::IntoIter<SocketAddr>;
            fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
                std::net::ToSocketAddrs::to_socket_addrs(self)
            }
        }
    )*};
}

literal!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl ToSocketAddrs for (&str, u16) {
    type Iter = std::vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        let (host, port) = *self;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)].into_iter());
        }
        resolve((host, port))
    }
}

impl ToSocketAddrs for (String, u16) {
    type Iter = std::vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        (self.0.as_str(), self.1).to_socket_addrs()
    }
}

impl ToSocketAddrs for str {
    type Iter = std::vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(vec![addr].into_iter());
        }
        resolve(self)
    }
}

impl ToSocketAddrs for String {
    type Iter = std::vec::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        self.as_str().to_socket_addrs()
    }
}

impl<'a> ToSocketAddrs for &'a [SocketAddr] {
    type Iter = std::iter::Cloned<std::slice::Iter<'a, SocketAddr>>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        Ok(self.iter().cloned())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {
    type Iter = T::Iter;
    fn to_socket_addrs(&self) -> io::Result<T::Iter> {
        (**self).to_socket_addrs()
    }
}

/// std's `each_addr`: tries `f` on every address in turn; the first success, else the last
/// error, else "could not resolve to any addresses".
pub(crate) fn each_addr<A: ToSocketAddrs + ?Sized, T>(
    addr: &A,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(&a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}
