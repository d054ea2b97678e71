//! The `portforward` example against the real world: garbage, resets, half-close, slowloris
//! (idle timeout), a target that refuses; each time the forwarder keeps serving and leaks
//! nothing.

mod common;

#[allow(dead_code)]
#[path = "../examples/portforward.rs"]
mod portforward;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{drive_recv, Watchdog};
use filature::hub;
use filature::net::{self, SpawnFactory};
use portforward::Options;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An echo target on this hub (green thread per connection).
fn echo_target() -> (SocketAddr, SpawnFactory) {
    let f = SpawnFactory::new(|mut t| {
        let mut buf = [0; 16 * 1024];
        loop {
            match Read::read(&mut t, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if t.write(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        t.write_eof(); // answer a half-close with one
        let _ = t.lose_connection();
    });
    let port = net::listen_tcp(any_port(), f.clone()).unwrap();
    (port.local_addr(), f)
}

fn forwarder(to: SocketAddr, idle: Duration) -> SocketAddr {
    let opts = Options {
        idle,
        ..Options::default()
    };
    portforward::serve(any_port(), to, opts)
        .unwrap()
        .local_addr()
}

fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// A well-behaved client still gets its bytes back.
fn check_alive(fwd: SocketAddr) {
    let rx = on_thread(move || {
        let mut s = std::net::TcpStream::connect(fwd).unwrap();
        s.write_all(b"still there?").unwrap();
        let mut buf = [0; 12];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    assert_eq!(&drive_recv(Duration::from_secs(30), &rx), b"still there?");
}

#[test]
fn forwards_both_directions_at_once_and_half_close() {
    let _w = Watchdog::new("forward", Duration::from_secs(60));
    hub::scope(|| {
        let (target, _f) = echo_target();
        let fwd = forwarder(target, Duration::from_secs(30));
        let rx = on_thread(move || {
            let s = std::net::TcpStream::connect(fwd).unwrap();
            let mut r = s.try_clone().unwrap();
            let total = 8 << 20;
            let reader = std::thread::spawn(move || {
                let mut all = Vec::new();
                r.read_to_end(&mut all).unwrap();
                all
            });
            let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
            (&s).write_all(&data).unwrap();
            s.shutdown(Shutdown::Write).unwrap(); // half-close: the answer still comes
            let back = reader.join().unwrap();
            back == data
        });
        assert!(drive_recv(Duration::from_secs(30), &rx));
    });
}

#[test]
fn garbage_and_resets_do_not_stop_the_forwarder() {
    let _w = Watchdog::new("garbage", Duration::from_secs(60));
    hub::scope(|| {
        let (target, _f) = echo_target();
        let fwd = forwarder(target, Duration::from_secs(30));
        let rx = on_thread(move || {
            for i in 0..20u32 {
                let mut s = std::net::TcpStream::connect(fwd).unwrap();
                let junk: Vec<u8> = (0..(i * 997) % 70_000)
                    .map(|k| (k * 31 + i) as u8)
                    .collect();
                let _ = s.write_all(&junk);
                if i % 2 == 0 {
                    socket2::SockRef::from(&s)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                }
                drop(s); // a reset (even), or a close with unread data (odd)
            }
        });
        drive_recv(Duration::from_secs(30), &rx);
        check_alive(fwd);
    });
}

#[test]
fn slowloris_connections_are_closed_by_the_idle_timeout() {
    let _w = Watchdog::new("slowloris", Duration::from_secs(60));
    hub::scope(|| {
        let (target, _f) = echo_target();
        let fwd = forwarder(target, Duration::from_millis(300));
        let rx = on_thread(move || {
            let start = Instant::now();
            let conns: Vec<_> = (0..20)
                .map(|_| std::net::TcpStream::connect(fwd).unwrap())
                .collect();
            // Each sends one byte, then nothing: the forwarder closes them.
            let mut closed_after = Vec::new();
            for mut c in conns {
                c.write_all(b"G").unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0; 8];
                // The echo of "G" comes back, then the close.
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                closed_after.push(start.elapsed());
            }
            closed_after
        });
        let closed_after = drive_recv(Duration::from_secs(30), &rx);
        assert!(closed_after
            .iter()
            .all(|d| *d >= Duration::from_millis(250) && *d < Duration::from_secs(5)));
        check_alive(fwd);
    });
}

#[test]
fn a_refusing_target_closes_the_client_only() {
    let _w = Watchdog::new("refusing target", Duration::from_secs(60));
    hub::scope(|| {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let fwd = forwarder(free, Duration::from_secs(30));
        for _ in 0..3 {
            let rx = on_thread(move || {
                let mut s = std::net::TcpStream::connect(fwd).unwrap();
                let mut buf = [0; 4];
                matches!(s.read(&mut buf), Ok(0) | Err(_))
            });
            assert!(drive_recv(Duration::from_secs(30), &rx));
        }
    });
}
