//! Read timeouts are honoured however the socket came to have one: set on it, set on a
//! `try_clone` sibling (they share it, as std's do), or inherited from the listener that
//! accepted it (Linux copies a listener's timeouts to accepted sockets). filature skips reading
//! the kernel's timeout only for sockets that cannot have one.

mod common;

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use common::{Watchdog, LONG};
use filature::net::{TcpListener, TcpStream};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads from `s` (nothing will come) and checks it gave up with std's kind after `at_least`.
fn times_out(mut s: &TcpStream, at_least: Duration) {
    let start = Instant::now();
    let err = s.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
    assert!(start.elapsed() >= at_least - ms(5), "{:?}", start.elapsed());
}

#[test]
fn a_timeout_set_on_the_stream_itself() {
    let _w = Watchdog::new("own timeout", LONG);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let _peer = l.accept().unwrap();
    s.set_read_timeout(Some(ms(40))).unwrap();
    times_out(&s, ms(40));
}

#[test]
fn a_timeout_set_on_a_clone_applies_to_its_sibling() {
    let _w = Watchdog::new("clone timeout", LONG);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let _peer = l.accept().unwrap();
    let clone = s.try_clone().unwrap();
    clone.set_read_timeout(Some(ms(40))).unwrap();
    assert_eq!(s.read_timeout().unwrap(), clone.read_timeout().unwrap());
    times_out(&s, ms(40));
}

#[test]
fn a_timeout_inherited_from_an_adopted_listener() {
    let _w = Watchdog::new("inherited timeout", LONG);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&std_listener)
        .set_read_timeout(Some(ms(40)))
        .unwrap();
    let l = TcpListener::from(std_listener);
    let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (accepted, _) = l.accept().unwrap();
    assert!(accepted.read_timeout().unwrap().is_some());
    times_out(&accepted, ms(40));
}
