//! eventlib's bridge: `GreenTransport`, `GreenClientCreator`, `SpawnFactory`, `LineTransport`.

mod common;

use std::cell::Cell;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{drive_recv, LogCapture, Watchdog};
use filature::net::{self, GreenClientCreator, GreenTransport, LineTransport, SpawnFactory};
use filature::sync::Event;
use filature::{green, hub};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Serves one connection with `handler` (in a green thread); returns the port's address.
fn serve(handler: impl Fn(GreenTransport) + 'static) -> (SocketAddr, SpawnFactory) {
    let f = SpawnFactory::new(handler);
    let port = net::listen_tcp(any_port(), f.clone()).unwrap();
    (port.local_addr(), f)
}

/// A std client on its own OS thread; its result comes back through the channel.
fn std_client<T: Send + 'static>(
    addr: SocketAddr,
    f: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        let _ = tx.send(f(s));
    });
    rx
}

/// Closes `s` with a reset (RST), not a FIN.
fn reset(s: std::net::TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

#[test]
fn read_n_collects_many_small_segments() {
    let _w = Watchdog::new("small segments", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |t| {
            let _ = g.send(t.read(1000).unwrap());
        });
        let rx = std_client(addr, |mut s| {
            s.set_nodelay(true).unwrap();
            for i in 0..1000u32 {
                s.write_all(&[(i % 251) as u8]).unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            s
        });
        let data = got.wait().unwrap();
        let _s = drive_recv(Duration::from_secs(20), &rx);
        assert_eq!(data.len(), 1000);
        assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    });
}

#[test]
fn recv_returns_at_most_max_and_keeps_the_rest() {
    let _w = Watchdog::new("recv keeps", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |t| {
            let first = t.read(1).unwrap(); // now all ten are buffered (one segment)
            let a = t.recv(4).unwrap();
            let b = t.recv(100).unwrap();
            let _ = g.send((first, a, b));
        });
        let _rx = std_client(addr, |mut s| {
            s.write_all(b"0123456789").unwrap();
            std::thread::sleep(Duration::from_secs(1));
        });
        let (first, a, b) = got.wait().unwrap();
        assert_eq!(first, b"0");
        assert_eq!(a, b"1234");
        assert_eq!(b, b"56789");
    });
}

#[test]
fn read_to_end_and_std_read_after_a_clean_close() {
    let _w = Watchdog::new("clean close", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |mut t| {
            let all = t.read_to_end().unwrap();
            // After a clean close every read is empty / 0.
            let again = (t.recv(10).unwrap(), t.read(5).unwrap());
            let mut buf = [0; 8];
            let n = Read::read(&mut t, &mut buf).unwrap();
            let _ = g.send((all, again, n));
        });
        let _rx = std_client(addr, |mut s| {
            s.write_all(b"all of it").unwrap();
        });
        let (all, again, n) = got.wait().unwrap();
        assert_eq!(all, b"all of it");
        assert_eq!(again, (vec![], vec![]));
        assert_eq!(n, 0);
    });
}

#[test]
fn after_a_reset_every_read_returns_the_same_error() {
    let _w = Watchdog::new("reset reads", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |t| {
            let errs: Vec<(ErrorKind, Option<i32>)> = (0..3)
                .map(|i| {
                    let e = match i {
                        0 => t.recv(10).unwrap_err(),
                        1 => t.read(10).unwrap_err(),
                        _ => t.read_to_end().unwrap_err(),
                    };
                    (e.kind(), e.raw_os_error())
                })
                .collect();
            let _ = g.send(errs);
        });
        let _rx = std_client(addr, |s| {
            std::thread::sleep(Duration::from_millis(50));
            reset(s);
        });
        let errs = got.wait().unwrap();
        assert_eq!(errs[0].0, ErrorKind::ConnectionReset, "{errs:?}");
        assert!(errs.iter().all(|e| *e == errs[0]), "{errs:?}");
    });
}

#[test]
fn a_writer_blocked_when_the_peer_resets_gets_the_error() {
    let _w = Watchdog::new("blocked writer", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |t| {
            let big = vec![1u8; 32 << 20]; // more than the kernel buffers: the write parks
            let first = t.write(&big).map_err(|e| e.kind());
            let second = t.write(b"x").map_err(|e| e.kind());
            let _ = g.send((first, second));
        });
        let _rx = std_client(addr, |s| {
            std::thread::sleep(Duration::from_millis(200)); // the writer is parked by now
            reset(s);
        });
        let (first, second) = got.wait().unwrap();
        assert!(
            matches!(
                first,
                Err(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
            ),
            "{first:?}"
        );
        assert_eq!(second.map_err(|_| ()), Err(()));
    });
}

#[test]
fn write_after_the_peer_reset_fails() {
    let _w = Watchdog::new("write after reset", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |t| {
            let _ = t.recv(1); // the reset arrives
            let _ = g.send(t.write(b"too late").map_err(|e| e.kind()));
        });
        let _rx = std_client(addr, reset);
        let r = got.wait().unwrap();
        assert!(r.is_err(), "{r:?}");
    });
}

#[test]
fn lose_connection_delivers_earlier_writes_and_returns_after_connection_lost() {
    let _w = Watchdog::new("lose delivers", Duration::from_secs(60));
    hub::scope(|| {
        let (addr, f) = serve(move |t| {
            // Buffered (non-blocking) writes, then the blocking close.
            let chunk = vec![9u8; 1 << 20];
            for _ in 0..8 {
                t.transport().write(&chunk);
            }
            assert!(t.buffered_out() > 0);
            t.lose_connection().unwrap();
            assert!(t.transport().closed().unwrap().is_clean());
            assert!(t.write(b"after").is_err());
        });
        let rx = std_client(addr, |mut s| {
            std::thread::sleep(Duration::from_millis(100));
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all.len()
        });
        assert_eq!(drive_recv(Duration::from_secs(20), &rx), 8 << 20);
        f.join_all();
    });
}

#[test]
fn std_io_traits_work_over_a_green_transport() {
    let _w = Watchdog::new("std io", Duration::from_secs(30));
    hub::scope(|| {
        let (addr, _f) = serve(move |t| {
            let mut lines = BufReader::new(&t).lines();
            while let Some(Ok(line)) = lines.next() {
                writeln!(&t, "{}", line.len()).unwrap();
            }
        });
        let c = GreenClientCreator::new().connect_tcp(addr).unwrap();
        (&c).write_all(b"abc\nhello\n").unwrap();
        c.write_eof();
        let mut back = String::new();
        (&c).read_to_string(&mut back).unwrap();
        assert_eq!(back, "3\n5\n");
    });
}

#[test]
fn green_client_creator_connects_and_exchanges() {
    let _w = Watchdog::new("creator", Duration::from_secs(30));
    hub::scope(|| {
        let (addr, _f) = serve(|t| {
            let d = t.read(3).unwrap();
            t.write(&d).unwrap();
        });
        let handle = green::spawn(move || {
            let c = GreenClientCreator::new().connect_tcp(addr).unwrap();
            assert_eq!(c.peer_addr(), addr);
            c.write(b"abc").unwrap();
            c.read(3).unwrap()
        });
        assert_eq!(handle.join(), b"abc");
    });
}

#[test]
fn connection_refused_is_an_error_in_the_caller_only() {
    let _w = Watchdog::new("refused", Duration::from_secs(30));
    let logs = LogCapture::start();
    hub::scope(|| {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e =
            green::spawn(move || GreenClientCreator::new().connect_tcp(free).unwrap_err()).join();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    });
    let text = logs.text();
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
}

#[test]
fn connect_timeout_is_an_error_in_the_caller() {
    let _w = Watchdog::new("connect timeout", Duration::from_secs(30));
    hub::scope(|| {
        // A listener whose queue is full: further SYNs are dropped.
        let l = net::ListenOptions::new()
            .backlog(0)
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = l.local_addr().unwrap();
        let mut fillers = Vec::new();
        loop {
            match net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
            assert!(fillers.len() < 64);
        }
        let start = Instant::now();
        let e = GreenClientCreator::new()
            .timeout(Duration::from_millis(200))
            .connect_tcp(addr)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(190));
    });
}

#[test]
fn spawn_factory_join_all_waits_for_every_handler() {
    let _w = Watchdog::new("join_all", Duration::from_secs(30));
    hub::scope(|| {
        let done = Rc::new(Cell::new(0));
        let d = done.clone();
        let (addr, f) = serve(move |t| {
            let n = t.read(1).unwrap()[0];
            green::sleep(Duration::from_millis(u64::from(n) * 5));
            d.set(d.get() + 1);
        });
        let clients: Vec<_> = (0..10u8)
            .map(|i| {
                green::spawn(move || {
                    let c = GreenClientCreator::new().connect_tcp(addr).unwrap();
                    c.write(&[10 - i]).unwrap();
                    c.read_to_end().unwrap()
                })
            })
            .collect();
        for c in clients {
            assert!(c.join().is_empty()); // each handler closed its connection on return
        }
        f.join_all();
        assert_eq!(done.get(), 10);
        assert_eq!(f.active(), 0);
        f.join_all(); // nothing left: returns at once
    });
}

#[test]
fn spawn_factory_caps_concurrent_handlers() {
    let _w = Watchdog::new("cap", Duration::from_secs(30));
    hub::scope(|| {
        let now = Rc::new(Cell::new(0));
        let max = Rc::new(Cell::new(0));
        let (n, m) = (now.clone(), max.clone());
        let f = SpawnFactory::new(move |t| {
            n.set(n.get() + 1);
            m.set(m.get().max(n.get()));
            green::sleep(Duration::from_millis(20));
            n.set(n.get() - 1);
            t.write(b"ok").unwrap();
        })
        .max_concurrent(2);
        let port = net::listen_tcp(any_port(), f.clone()).unwrap();
        let addr = port.local_addr();
        let clients: Vec<_> = (0..6)
            .map(|_| {
                green::spawn(move || {
                    GreenClientCreator::new()
                        .connect_tcp(addr)
                        .unwrap()
                        .read_to_end()
                        .unwrap()
                })
            })
            .collect();
        for c in clients {
            assert_eq!(c.join(), b"ok");
        }
        f.join_all();
        assert_eq!(max.get(), 2);
    });
}

#[test]
fn line_transport_reads_and_sends_lines_and_ends_cleanly() {
    let _w = Watchdog::new("lines", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |t| {
            let mut lt = LineTransport::new(t);
            let lines: Vec<Vec<u8>> = lt.lines().map(Result::unwrap).collect();
            let _ = g.send(lines);
        });
        let _rx = std_client(addr, |mut s| {
            s.write_all(b"one\r\ntwo\n\nthr").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(b"ee\nlast").unwrap();
        });
        let lines = got.wait().unwrap();
        assert_eq!(
            lines,
            [&b"one"[..], b"two", b"", b"three", b"last"].map(<[u8]>::to_vec)
        );
    });
}

#[test]
fn line_transport_send_line_and_custom_delimiter() {
    let _w = Watchdog::new("send_line", Duration::from_secs(30));
    hub::scope(|| {
        let (addr, _f) = serve(move |t| {
            let lt = LineTransport::new(t).with_delimiter(b"\r\n");
            lt.send_line(b"hello").unwrap();
            lt.send_line(b"world").unwrap();
        });
        let mut c = LineTransport::new(GreenClientCreator::new().connect_tcp(addr).unwrap())
            .with_delimiter(b"\r\n");
        assert_eq!(c.read_line().unwrap().unwrap(), b"hello");
        assert_eq!(c.read_line().unwrap().unwrap(), b"world");
        assert_eq!(c.read_line().unwrap(), None);
    });
}

#[test]
fn an_over_long_line_is_an_error_not_unbounded_memory() {
    let _w = Watchdog::new("long line", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (addr, _f) = serve(move |t| {
            let mut lt = LineTransport::new(t).max_length(100);
            let first = lt.read_line().unwrap();
            let err = lt.read_line().unwrap_err();
            let held = lt.get_ref().buffered_in();
            let _ = g.send((first, err.kind(), held));
        });
        let _rx = std_client(addr, |mut s| {
            s.write_all(b"short\n").unwrap();
            // 10 MB without a newline: the reader must give up, not buffer it all.
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..160 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let (first, kind, held) = got.wait().unwrap();
        assert_eq!(first.unwrap(), b"short");
        assert_eq!(kind, ErrorKind::InvalidData);
        assert!(held <= 100 + 64 * 1024 + 1, "held {held}");
    });
}
