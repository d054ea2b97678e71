//! `GreenTransport` under pressure: an idle reader keeps memory bounded however much the peer
//! sends; a green thread killed while parked in a read or a write closes its connection and
//! leaves no fd or registration behind. The tests measure the process: one at a time.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use common::{drive_recv, Watchdog};
use filature::net::{self, GreenTransport, SpawnFactory};
use filature::sync::Event;
use filature::{green, hub};

static SERIAL: Mutex<()> = Mutex::new(());

fn serially(f: impl FnOnce()) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    hub::scope(f);
}

fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn an_idle_reader_keeps_memory_bounded_under_100_mb() {
    let _w = Watchdog::new("100 MB idle reader", Duration::from_secs(120));
    serially(|| {
        let total: usize = 100 << 20;
        let got = Rc::new(Event::new());
        let g = got.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let f = SpawnFactory::new(move |t| {
            // One small read first (the hub's read buffer exists), then idle until told.
            assert_eq!(t.read(5).unwrap(), b"hello");
            let _ = g.send(Rc::new(t));
            green::sleep(Duration::from_secs(3600));
        });
        let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), f.clone()).unwrap();
        let addr: SocketAddr = port.local_addr();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let chunk = vec![0x5a_u8; 1 << 20];
            s.write_all(b"hello").unwrap();
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let mut sent = 0;
            while sent < total {
                s.write_all(&chunk).unwrap();
                sent += chunk.len();
            }
            done_tx.send(sent).unwrap();
        });
        drive_recv(Duration::from_secs(60), &ready_rx);
        let t = got.wait().unwrap();
        green::sleep(Duration::from_millis(50));
        let before = rss();
        go_tx.send(()).unwrap();
        // The sender writes as fast as TCP lets it for a second; nobody reads.
        green::sleep(Duration::from_secs(1));
        let after = rss();
        assert!(done_rx.try_recv().is_err(), "the sender must be held back");
        assert!(
            after < before + (1 << 20),
            "resident memory grew by {} bytes",
            after.saturating_sub(before)
        );
        assert!(t.buffered_in() <= 64 * 1024);
        // Now read it all: everything arrives.
        let mut n = 0;
        let mut buf = vec![0; 1 << 16];
        while n < total {
            let k = Read::read(&mut &*t, &mut buf).unwrap();
            assert!(k > 0);
            n += k;
        }
        assert_eq!(drive_recv(Duration::from_secs(60), &done_rx), total);
        assert_eq!(n, total);
        drop(t);
        drop(port);
    });
}

/// Kills a handler parked in `op` on its `GreenTransport`: the client sees the connection end,
/// and fds and hub registrations come back to what they were.
fn killed_while_parked(what: &'static str, op: fn(&GreenTransport)) {
    let _w = Watchdog::new(what, Duration::from_secs(30));
    serially(|| {
        let regs_before = hub::stats().io_registrations;
        let fds_before = fds();
        {
            let parked = Rc::new(Event::new());
            let p = parked.clone();
            let f = SpawnFactory::new(move |t| {
                let _ = p.send(());
                op(&t);
                unreachable!("{what} returned");
            });
            let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), f.clone()).unwrap();
            let mut c = net::TcpStream::connect(port.local_addr()).unwrap();
            parked.wait().unwrap();
            green::sleep(Duration::from_millis(50)); // parked in `op` by now
            assert_eq!(f.active(), 1);
            f.kill_all();
            f.join_all();
            // The client sees the end (EOF or reset).
            let mut buf = [0; 1 << 16];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            green::block_on(port.stop_listening()).unwrap();
        }
        green::sleep(Duration::from_millis(20));
        assert_eq!(hub::stats().io_registrations, regs_before, "{what}");
        assert_eq!(fds(), fds_before, "{what}");
    });
}

#[test]
fn a_reader_killed_while_parked_closes_its_connection() {
    killed_while_parked("killed reader", |t| {
        let _ = t.read(10);
    });
}

#[test]
fn a_writer_killed_while_parked_closes_its_connection() {
    killed_while_parked("killed writer", |t| {
        let big = vec![0u8; 64 << 20]; // the client never reads: this parks
        let _ = t.write(&big);
    });
}
