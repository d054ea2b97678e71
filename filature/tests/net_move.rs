//! Sockets between green threads and hubs: a reader and a writer on one stream at once, a stream
//! moved to another hub, one stream used by two OS threads at once, name lookups on the pool.

mod common;

use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::{hub_thread, in_child, Watchdog};
use filature::net::{TcpListener, TcpStream, UdpSocket};
use filature::{green, hub, tpool};

/// A std echo peer on its own thread.
fn echo_peer() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0; 1 << 14];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return,
                n => s.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    addr
}

#[test]
fn one_green_thread_reads_while_another_writes_the_same_stream() {
    let _w = Watchdog::new("read while write", Duration::from_secs(30));
    // 8 MB through an echo: more than the socket buffers hold both ways, so the writer parks
    // on a full send buffer while the reader parks on an empty receive buffer, many times over.
    const TOTAL: usize = 8 << 20;
    let s = Rc::new(TcpStream::connect(echo_peer()).unwrap());
    let w = s.clone();
    let writer = green::spawn(move || {
        let chunk: Vec<u8> = (0..1 << 16).map(|i| i as u8).collect();
        for _ in 0..TOTAL / chunk.len() {
            (&*w).write_all(&chunk).unwrap();
        }
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let r = s.clone();
    let reader = green::spawn(move || {
        let mut got = 0usize;
        let mut buf = vec![0; 1 << 15];
        loop {
            let n = (&*r).read(&mut buf).unwrap();
            if n == 0 {
                return got;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, ((got + i) % (1 << 16)) as u8);
            }
            got += n;
        }
    });
    writer.join();
    assert_eq!(reader.join(), TOTAL);
    // Reader and writer share one registration with this hub (none at all if neither ever
    // had to wait: registration is lazy, and a slow run may never meet a full or empty buffer).
    assert!(s.registrations() <= 1, "{}", s.registrations());
}

#[test]
fn a_stream_accepted_on_one_hub_is_used_on_another() {
    let _w = Watchdog::new("move", Duration::from_secs(30));
    let (a, a_thread) = hub_thread("net-hub-a");
    let (b, b_thread) = hub_thread("net-hub-b");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // Waits (bounded) until `hub` has a socket registered: a read there has parked.
    let parked_on = |hub: filature::hub::HubHandle| {
        let start = std::time::Instant::now();
        while hub.spawn(|| hub::stats().io_registrations).unwrap().join() == 0
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let (a2, b2) = (a.clone(), b.clone());
    let client = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        parked_on(a2); // hub A's read parks first
        c.write_all(b"move").unwrap();
        parked_on(b2); // the stream moved, and hub B's read parks
        c.write_all(b"next").unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer
    });
    // Accepted here (so hub A's only registration will be the stream's), then on hub A a read
    // that parks (registering the stream with A).
    let (s, _) = l.accept().unwrap();
    let on_a = a
        .spawn(move || {
            let mut s = s;
            let mut buf = [0; 4];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"move");
            (s.registrations(), s)
        })
        .unwrap();
    let (regs_on_a, s) = on_a.join();
    assert_eq!(regs_on_a, 1);
    // On hub B: the next read registers with B and leaves A.
    let on_b = b
        .spawn(move || {
            let mut s = s;
            let mut buf = [0; 4];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"next");
            let regs = s.registrations();
            s.write_all(b"done").unwrap();
            regs
        })
        .unwrap();
    assert_eq!(on_b.join(), 1);
    assert_eq!(client.join().unwrap(), "done");
    let left_on_a = a.spawn(|| hub::stats().io_registrations).unwrap().join();
    assert_eq!(left_on_a, 0, "hub A still has the moved stream registered");
    a.stop();
    b.stop();
    a_thread.join().unwrap();
    b_thread.join().unwrap();
}

#[test]
fn two_os_threads_use_one_stream_at_once() {
    let _w = Watchdog::new("shared stream", Duration::from_secs(30));
    let s = Arc::new(TcpStream::connect(echo_peer()).unwrap());
    let r = s.clone();
    // The reader parks on its thread's hub...
    let reader = std::thread::spawn(move || {
        let mut buf = [0; 5];
        (&*r).read_exact(&mut buf).unwrap();
        buf
    });
    std::thread::sleep(Duration::from_millis(50));
    // ...while this thread writes: both hubs hold a registration, each wakes its own waiter.
    (&*s).write_all(b"hello").unwrap();
    assert_eq!(&reader.join().unwrap(), b"hello");
}

#[test]
fn literal_addresses_never_touch_the_pool_but_host_names_do() {
    in_child(
        "literal_addresses_never_touch_the_pool_but_host_names_do",
        || {
            let _w = Watchdog::new("pool", Duration::from_secs(30));
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _c = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            u.send_to(b"x", ("127.0.0.1", port)).unwrap();
            assert_eq!(tpool::global().stats().workers, 0);
            let _c = TcpStream::connect(("localhost", port));
            let found: Vec<_> = filature::net::lookup_host(("localhost", port))
                .unwrap()
                .collect();
            assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
            assert!(tpool::global().stats().workers > 0);
        },
    );
}

#[test]
fn lookups_park_only_the_calling_green_thread() {
    let _w = Watchdog::new("lookup", Duration::from_secs(30));
    let ticks = Rc::new(std::cell::Cell::new(0));
    let t = ticks.clone();
    let ticker = green::spawn(move || loop {
        t.set(t.get() + 1);
        green::sleep(Duration::from_millis(1));
    });
    let lookup = green::spawn(|| filature::net::lookup_host("localhost:1").unwrap().count());
    assert!(lookup.join() > 0);
    ticker.kill();
    assert!(ticks.get() > 0);
}
