//! The readiness shortcuts of `hub::io` ("Shortcuts"): a call whose direction is known not
//! ready parks without a syscall, and a short TCP read or write clears readiness at once. These
//! tests try to make a shortcut miss the last event: data and end of stream arriving together,
//! after the socket was drained; random chunk sizes, pauses and buffer sizes, on green sockets
//! and on protocol transports.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::Watchdog;
use filature::net::{self, Factory, Protocol, Reason, TcpListener, TcpStream, Transport};
use filature::{green, hub};

/// A small deterministic generator (xorshift), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A std peer on its own thread: connects to `addr` and runs `f`.
fn peer(addr: SocketAddr, f: impl FnOnce(std::net::TcpStream) + Send + 'static) {
    thread::spawn(move || f(std::net::TcpStream::connect(addr).unwrap()));
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Data and the end of stream arrive together after the socket was drained (its readiness
/// cleared by a short read): the next short read takes the data, and the read after it must see
/// the end of stream at once instead of waiting for an event that already came.
#[test]
fn end_of_stream_arriving_with_the_last_data_is_not_missed() {
    let _w = Watchdog::new("eof with data", Duration::from_secs(30));
    for round in 0..20 {
        let (l, addr) = listener();
        let (go, wait) = mpsc::channel::<()>();
        peer(addr, move |mut s| {
            s.write_all(b"first").unwrap();
            wait.recv().unwrap();
            s.write_all(b"last").unwrap();
            // Closed right after the data: FIN follows the data within microseconds.
        });
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        // Blocks (registers the socket) unless "first" is there already; short either way.
        let n = s.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        while got.len() < 5 {
            let n = s.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        go.send(()).unwrap();
        // Let "last" and the FIN both arrive (and their events be harvested) before reading.
        green::sleep(Duration::from_millis(round % 5 * 5));
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"firstlast", "round {round}");
    }
}

/// Random chunks, pauses, half-closes and reader buffer sizes between a std writer and a green
/// reader that echoes every byte back with writes of random sizes; the writer checks the echo.
/// A shortcut that missed an event would hang (the watchdog fails the test).
#[test]
fn random_chunks_and_pauses_through_a_green_echo() {
    let _w = Watchdog::new("random echo", Duration::from_secs(60));
    for seed in 1..=12u64 {
        let (l, addr) = listener();
        let total = 200_000 + (seed as usize * 7919) % 100_000;
        let (done_tx, done_rx) = mpsc::channel();
        peer(addr, move |s| {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut w = s.try_clone().unwrap();
            let reader = thread::spawn(move || {
                let mut r = s;
                let mut back = Vec::new();
                r.read_to_end(&mut back).unwrap();
                back
            });
            let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let mut at = 0;
            while at < total {
                let n = (1 + rng.below(20_000) as usize).min(total - at);
                w.write_all(&data[at..at + n]).unwrap();
                at += n;
                if rng.below(4) == 0 {
                    thread::sleep(Duration::from_micros(rng.below(2_000)));
                }
            }
            w.shutdown(std::net::Shutdown::Write).unwrap();
            let back = reader.join().unwrap();
            done_tx.send(back == data).unwrap();
        });
        let (s, _) = l.accept().unwrap();
        let s = Rc::new(s);
        let echo = {
            let s = s.clone();
            green::spawn(move || {
                let mut rng = Rng(seed);
                let mut buf = vec![0u8; 70_000];
                let mut moved = 0;
                loop {
                    let want = 1 + rng.below(buf.len() as u64) as usize;
                    let n = (&*s).read(&mut buf[..want]).unwrap();
                    if n == 0 {
                        break;
                    }
                    let mut at = 0;
                    while at < n {
                        let k = (1 + rng.below(n as u64) as usize).min(n - at);
                        (&*s).write_all(&buf[at..at + k]).unwrap();
                        at += k;
                    }
                    moved += n;
                    if rng.below(8) == 0 {
                        green::sleep(Duration::from_micros(rng.below(1_000)));
                    }
                }
                s.shutdown(std::net::Shutdown::Write).unwrap();
                moved
            })
        };
        assert_eq!(echo.join(), total, "seed {seed}");
        let ok = loop {
            match done_rx.try_recv() {
                Ok(ok) => break ok,
                Err(_) => green::sleep(Duration::from_millis(1)),
            }
        };
        assert!(ok, "seed {seed}: the echo differs");
    }
}

/// The same random traffic against a `Protocol` that echoes what it receives and closes on the
/// end of stream: the transport's read loop stops after a short read and must still see data
/// and the end of stream that follow.
#[test]
fn random_chunks_through_a_protocol_echo() {
    let _w = Watchdog::new("protocol echo", Duration::from_secs(60));
    struct Echo {
        t: Option<Transport>,
        moved: Rc<RefCell<usize>>,
    }
    impl Protocol for Echo {
        fn connection_made(&mut self, t: Transport) {
            self.t = Some(t);
        }
        fn data_received(&mut self, data: &[u8]) {
            *self.moved.borrow_mut() += data.len();
            self.t.as_ref().unwrap().write(data);
        }
        fn connection_lost(&mut self, _: Reason) {}
    }
    struct EchoFactory(Rc<RefCell<usize>>);
    impl Factory for EchoFactory {
        fn build_protocol(&mut self, _: SocketAddr) -> Option<Box<dyn Protocol>> {
            Some(Box::new(Echo {
                t: None,
                moved: self.0.clone(),
            }))
        }
    }
    hub::scope(|| {
        for seed in 1..=8u64 {
            let moved = Rc::new(RefCell::new(0));
            let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), EchoFactory(moved.clone()))
                .unwrap();
            let addr = port.local_addr();
            let total = 100_000 + (seed as usize * 104_729) % 200_000;
            let (done_tx, done_rx) = mpsc::channel();
            peer(addr, move |s| {
                let mut rng = Rng(seed ^ 0xDEAD_BEEF);
                let mut w = s.try_clone().unwrap();
                let reader = thread::spawn(move || {
                    let mut r = s;
                    let mut back = vec![0u8; total];
                    r.read_exact(&mut back).unwrap();
                    back
                });
                let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
                let mut at = 0;
                while at < total {
                    let n = (1 + rng.below(30_000) as usize).min(total - at);
                    w.write_all(&data[at..at + n]).unwrap();
                    at += n;
                    if rng.below(3) == 0 {
                        thread::sleep(Duration::from_micros(rng.below(3_000)));
                    }
                }
                let back = reader.join().unwrap();
                done_tx.send(back == data).unwrap();
            });
            let ok = loop {
                match done_rx.try_recv() {
                    Ok(ok) => break ok,
                    Err(_) => green::sleep(Duration::from_millis(1)),
                }
            };
            assert!(ok, "seed {seed}: the echo differs");
            assert_eq!(*moved.borrow(), total, "seed {seed}");
            green::block_on(port.stop_listening()).unwrap();
        }
    });
}

/// A writer whose writes come back short (the peer reads slowly) parks until the peer drains
/// the buffer, and every byte arrives.
#[test]
fn short_writes_wait_for_the_peer_and_lose_nothing() {
    let _w = Watchdog::new("short writes", Duration::from_secs(60));
    let (l, addr) = listener();
    let total = 8 * 1024 * 1024;
    let (tx, rx) = mpsc::channel();
    peer(addr, move |mut s| {
        let mut buf = vec![0u8; 4096];
        let mut sum = 0u64;
        let mut n_total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            n_total += n;
            sum += buf[..n].iter().map(|&b| u64::from(b)).sum::<u64>();
            if n_total % (1 << 20) < 4096 {
                thread::sleep(Duration::from_millis(5));
            }
        }
        tx.send((n_total, sum)).unwrap();
    });
    let (s, _) = l.accept().unwrap();
    let data: Vec<u8> = (0..total).map(|i| (i % 241) as u8).collect();
    let want: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let mut at = 0;
    let mut short = 0;
    while at < total {
        let n = (&s).write(&data[at..]).unwrap();
        if n < total - at {
            short += 1;
        }
        at += n;
    }
    drop(s);
    let (n, sum) = loop {
        match rx.try_recv() {
            Ok(r) => break r,
            Err(_) => green::sleep(Duration::from_millis(1)),
        }
    };
    assert_eq!((n, sum), (total, want));
    assert!(
        short > 0,
        "no write came back short: the test did not test anything"
    );
}

/// A socket used by two green threads, one reading and one writing, with the reader's
/// readiness cleared by short reads while the writer's writes go on.
#[test]
fn a_reader_and_a_writer_share_a_socket_through_short_reads() {
    let _w = Watchdog::new("shared", Duration::from_secs(30));
    let (l, addr) = listener();
    peer(addr, move |mut s| {
        // Echo in small pieces with pauses.
        let mut buf = [0u8; 100];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
            thread::sleep(Duration::from_micros(200));
        }
    });
    let (s, _) = l.accept().unwrap();
    let s = Rc::new(s);
    let total = 50_000;
    let reader = {
        let s = s.clone();
        green::spawn(move || {
            let mut got = 0;
            let mut buf = [0u8; 1000];
            while got < total {
                let n = (&*s).read(&mut buf).unwrap();
                assert!(n > 0);
                got += n;
            }
            got
        })
    };
    for chunk in (0..total).step_by(500) {
        let _ = chunk;
        (&*s).write_all(&[7u8; 500]).unwrap();
        if chunk % 5000 == 0 {
            green::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(reader.join(), total);
    let _: &TcpStream = &s;
}

/// More sockets become ready at once than one poll takes (256 events): the hub takes the rest
/// with another poll before it spins or sleeps, and every one is served, several rounds over.
#[test]
fn more_ready_sockets_than_one_poll_takes_are_all_served() {
    // 300 clients: 600 descriptors in all, under the common soft limit of 1,024.
    const CONNS: usize = 300;
    let _w = Watchdog::new("poll backlog", Duration::from_secs(60));
    let (l, addr) = listener();
    let accepted = filature::sync::Event::<()>::new();
    let all_in = accepted.clone();
    let server = green::spawn(move || {
        for _ in 0..CONNS {
            let (mut s, _) = l.accept().unwrap();
            green::spawn(move || {
                let mut b = [0u8; 64];
                loop {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => s.write_all(&b[..n]).unwrap(),
                    }
                }
            });
        }
        all_in.send(()).unwrap();
    });
    const ROUNDS: u8 = 5;
    let (done_tx, done) = mpsc::channel();
    // Each round the hub holds still (blocks its thread on purpose) while every client writes,
    // so that all 300 sockets are readable by its next poll.
    let go = filature::sync::Queue::<u8>::unbounded();
    let hold = go.clone();
    let holder = green::spawn(move || {
        accepted.wait().unwrap();
        for _ in 0..ROUNDS {
            hold.get();
            thread::sleep(Duration::from_millis(200));
        }
    });
    thread::spawn(move || {
        let mut clients: Vec<std::net::TcpStream> = (0..CONNS)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for round in 0..ROUNDS {
            go.put(round);
            thread::sleep(Duration::from_millis(20)); // the hub takes it and holds still
            for c in &mut clients {
                c.write_all(&[round; 8]).unwrap();
            }
            for c in &mut clients {
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut b = [0u8; 8];
                c.read_exact(&mut b).unwrap();
                assert_eq!(b, [round; 8]);
            }
        }
        done_tx.send(()).unwrap();
    });
    server.join();
    holder.join();
    loop {
        match done.try_recv() {
            Ok(()) => break,
            Err(mpsc::TryRecvError::Empty) => green::sleep(Duration::from_millis(5)),
            Err(mpsc::TryRecvError::Disconnected) => panic!("the clients failed"),
        }
    }
}
