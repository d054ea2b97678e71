//! The protocol layer on the reactor: [`listen_tcp`] and [`connect_tcp`] (Twisted's
//! `reactor.listenTCP` / `reactor.connectTCP`), callable from any thread.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::net::{self, ClientFactory, Factory, ListeningPort};
use crate::Stopped;

/// Listens on `addr` on the reactor: each accepted connection gets a protocol from `factory`,
/// and its callbacks run on the reactor thread. The socket is bound on the calling thread, so
/// an address in use is an error here; the port starts serving when the reactor runs.
///
/// ```
/// use filature::{net::{Protocol, Transport}, reactor};
/// use std::io::{Read, Write};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: Transport) {
///         t.write(b"hello from the reactor\n");
///         t.lose_connection();
///     }
///     fn data_received(&mut self, _: &[u8]) {}
/// }
///
/// let port = reactor::listen_tcp("127.0.0.1:0".parse().unwrap(), |_| {
///     Some(Box::new(Hello) as Box<dyn Protocol>)
/// })
/// .unwrap();
/// let mut s = std::net::TcpStream::connect(port.local_addr()).unwrap();
/// let mut got = String::new();
/// s.read_to_string(&mut got).unwrap();
/// assert_eq!(got, "hello from the reactor\n");
/// port.stop_listening();
/// ```
pub fn listen_tcp(
    addr: SocketAddr,
    factory: impl Factory + Send + 'static,
) -> io::Result<ListeningPort> {
    let listener = net::ListenOptions::new().bind(addr)?;
    let factory: Box<dyn Factory + Send> = Box::new(factory);
    if super::is_reactor_thread() {
        return Ok(net::port::listen_on(listener, factory));
    }
    super::blocking_call_from_thread(move || net::port::listen_on(listener, factory))
        .map_err(|f| io::Error::other(f.to_string()))
}

/// Connects to `addr` from the reactor: once connected `factory` builds the protocol (its
/// callbacks run on the reactor thread), or its `client_connection_failed` is called (refused,
/// or not connected within `timeout`). Never blocks.
///
/// ```
/// use filature::{net::Protocol, reactor, sync::Event};
/// use std::time::Duration;
///
/// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let up = Event::new();
/// let up2 = up.clone();
/// reactor::connect_tcp(l.local_addr().unwrap(), move |_| {
///     up2.send(());
///     None::<Box<dyn Protocol>> // refuse: the connection is closed
/// }, Duration::from_secs(5))
/// .unwrap();
/// up.wait().unwrap();
/// ```
pub fn connect_tcp(
    addr: SocketAddr,
    factory: impl ClientFactory + Send + 'static,
    timeout: Duration,
) -> Result<(), Stopped> {
    super::call_in_reactor(move || net::connect_tcp(addr, factory, timeout))
}
