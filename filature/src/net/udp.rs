//! UDP: [`UdpSocket`], std's API on a green socket.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::addr::{each_addr, ToSocketAddrs};
use super::source::Source;

/// A UDP socket, as [`std::net::UdpSocket`]: receiving parks only the calling green thread.
///
/// ```
/// use filature::{green, net::UdpSocket};
///
/// let a = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let b_addr = b.local_addr().unwrap();
/// let echo = green::spawn(move || {
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf).unwrap();
///     b.send_to(&buf[..n], from).unwrap();
/// });
/// a.send_to(b"hi", b_addr).unwrap();
/// let mut buf = [0; 16];
/// let (n, from) = a.recv_from(&mut buf).unwrap(); // main context: drives the hub
/// assert_eq!((&buf[..n], from), (&b"hi"[..], b_addr));
/// echo.join();
/// ```
pub struct UdpSocket {
    src: Source<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to the first of `addr`'s addresses that works.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let std = each_addr(&addr, |a| std::net::UdpSocket::bind(a))?;
        std.set_nonblocking(true)?;
        Ok(UdpSocket {
            src: Source::new(std),
        })
    }

    /// Receives a datagram and its sender, parking until one arrives.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.src.read("UdpSocket::recv_from", |s| s.recv_from(buf))
    }

    /// Like [`recv_from`](Self::recv_from), leaving the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.src.read("UdpSocket::peek_from", |s| s.peek_from(buf))
    }

    /// Sends `buf` to the first of `addr`'s addresses (std's `send_to`).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        match addr.to_socket_addrs()?.next() {
            Some(to) => self.src.write("UdpSocket::send_to", |s| s.send_to(buf, to)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no addresses to send data to",
            )),
        }
    }

    /// The connected peer's address (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get_ref().local_addr()
    }

    /// `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.src.get_ref().set_broadcast(on)
    }

    /// `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.src.get_ref().broadcast()
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.src.get_ref().set_multicast_loop_v4(on)
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.src.get_ref().multicast_loop_v4()
    }

    /// `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.src.get_ref().set_multicast_ttl_v4(ttl)
    }

    /// `IP_MULTICAST_TTL`.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.src.get_ref().multicast_ttl_v4()
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.src.get_ref().set_multicast_loop_v6(on)
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.src.get_ref().multicast_loop_v6()
    }

    /// `IP_ADD_MEMBERSHIP`.
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.src.get_ref().join_multicast_v4(multiaddr, interface)
    }

    /// `IPV6_ADD_MEMBERSHIP`.
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.src.get_ref().join_multicast_v6(multiaddr, interface)
    }

    /// `IP_DROP_MEMBERSHIP`.
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.src.get_ref().leave_multicast_v4(multiaddr, interface)
    }

    /// `IPV6_DROP_MEMBERSHIP`.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.src.get_ref().leave_multicast_v6(multiaddr, interface)
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.src.get_ref().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.src.get_ref().ttl()
    }

    /// Connects to the first of `addr`'s addresses that works: `send`/`recv` then talk to it.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(&addr, |a| self.src.get_ref().connect(a))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.src.write("UdpSocket::send", |s| s.send(buf))
    }

    /// Receives from the connected peer, parking until a datagram arrives.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.read("UdpSocket::recv", |s| s.recv(buf))
    }

    /// Like [`recv`](Self::recv), leaving the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.src.read("UdpSocket::peek", |s| s.peek(buf))
    }
}

impl From<std::net::UdpSocket> for UdpSocket {
    /// Adopts a std socket, keeping its blocking mode and timeouts.
    fn from(std: std::net::UdpSocket) -> UdpSocket {
        let nonblocking = super::adopt(&std);
        let src = Source::new(std);
        src.set_nonblocking(nonblocking);
        UdpSocket { src }
    }
}

super::socket_common!(UdpSocket, std::net::UdpSocket);
super::timeouts!(UdpSocket);
