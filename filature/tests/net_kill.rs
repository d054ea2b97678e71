//! Green threads interrupted in socket calls (killed, timed out, their hub shut down) leave no
//! registration and no fd behind; exhausted resources and slow peers do not make anyone spin or
//! buffer without bound.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use common::{cpu_time, in_child, use_up_fds, LogCapture, Watchdog};
use filature::green::{self, JoinError};
use filature::hub;
use filature::net::{ListenOptions, TcpListener, TcpStream};

/// The tests count this process's fds: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` alone, in a `hub::scope`: its hub (and that hub's fds) is gone before the next test
/// counts.
fn serially(f: impl FnOnce()) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    hub::scope(f);
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn registrations() -> usize {
    hub::stats().io_registrations
}

/// A listener nobody accepts from, its queue full: a connect to it parks (its SYN is dropped).
fn full_listener() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
    let l = ListenOptions::new().backlog(0).bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..64 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fillers.push(s),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
                return (l, fillers, addr);
            }
        }
    }
    panic!("the listener's queue never filled");
}

/// A connected pair: (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (c, l.accept().unwrap().0)
}

/// Fills `s`'s send buffer (its peer does not read) until a write would park.
fn fill(s: &TcpStream) {
    s.set_nonblocking(true).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while (&*s).write(&chunk).is_ok() {}
    s.set_nonblocking(false).unwrap();
}

/// Spawns `make()`'s blocking call in a green thread, waits until it parked on a socket, then
/// interrupts it (kill, or its own `with_timeout` expiring): afterwards the hub holds no more
/// registrations and the process no more fds than before `make` ran.
fn interrupted<F: FnOnce() + 'static>(
    what: &'static str,
    by_timeout: bool,
    make: impl FnOnce() -> F,
) {
    let _w = Watchdog::new(what, Duration::from_secs(30));
    let regs_before = registrations(); // creates this thread's hub (its fds) first
    let fds_before = fds();
    let blocked = make();
    let h = green::spawn(move || {
        if by_timeout {
            let r = green::with_timeout(Duration::from_millis(100), blocked);
            assert!(r.is_err(), "{what}: returned instead of timing out");
        } else {
            blocked();
        }
    });
    if by_timeout {
        h.join();
    } else {
        common::drive_until(Duration::from_secs(5), || registrations() > regs_before);
        green::sleep(Duration::from_millis(20));
        h.kill();
        assert!(matches!(h.join_result(), Err(JoinError::Killed)), "{what}");
    }
    assert_eq!(
        registrations(),
        regs_before,
        "{what}: registration left behind"
    );
    assert_eq!(fds(), fds_before, "{what}: fd left open");
}

fn accept_call() -> impl FnOnce() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    move || {
        let _ = l.accept();
        unreachable!("nobody connects");
    }
}

fn read_call() -> impl FnOnce() {
    let (c, s) = pair();
    move || {
        let _peer = s;
        let _ = (&c).read(&mut [0; 8]);
        unreachable!("nobody writes");
    }
}

fn write_call() -> impl FnOnce() {
    let (c, s) = pair();
    fill(&c);
    move || {
        let _peer = s;
        let _ = (&c).write(&[0; 1 << 16]);
        unreachable!("nobody reads");
    }
}

fn connect_call() -> impl FnOnce() {
    let (l, fillers, addr) = full_listener();
    move || {
        let _keep = (l, fillers);
        let _ = TcpStream::connect(addr);
        unreachable!("the queue is full");
    }
}

#[test]
fn killed_in_accept_read_write_connect_leaves_nothing() {
    serially(|| {
        interrupted("accept", false, accept_call);
        interrupted("read", false, read_call);
        interrupted("write", false, write_call);
        interrupted("connect", false, connect_call);
    });
}

#[test]
fn timed_out_in_accept_read_write_connect_leaves_nothing() {
    serially(|| {
        interrupted("accept", true, accept_call);
        interrupted("read", true, read_call);
        interrupted("write", true, write_call);
        interrupted("connect", true, connect_call);
    });
}

#[test]
fn a_socket_survives_an_interrupted_call_on_it() {
    serially(|| {
        let _w = Watchdog::new("survives", Duration::from_secs(30));
        let (c, s) = pair();
        let c = std::rc::Rc::new(c);
        let c2 = c.clone();
        let r = green::spawn(move || {
            green::with_timeout(Duration::from_millis(30), || (&*c2).read(&mut [0; 4]))
        })
        .join();
        assert!(r.is_err());
        (&s).write_all(b"late").unwrap();
        let mut buf = [0; 4];
        (&*c).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
    });
}

#[test]
fn blocking_in_a_hub_callback_panics_even_when_data_is_ready() {
    serially(|| {
        let (c, s) = pair();
        (&s).write_all(b"x").unwrap();
        green::sleep(Duration::from_millis(20));
        let outcome = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
        let o = outcome.clone();
        hub::call_soon(move || {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (&c).read(&mut [0; 1])));
            *o.borrow_mut() = match r {
                Err(p) => common::panic_text(&*p),
                Ok(_) => "no panic".into(),
            };
            // Non-blocking mode never blocks: allowed in a callback.
            c.set_nonblocking(true).unwrap();
            assert_eq!((&c).read(&mut [0; 1]).unwrap(), 1);
        });
        common::drive_until(Duration::from_secs(5), || !outcome.borrow().is_empty());
        assert!(
            outcome
                .borrow()
                .contains("TcpStream::read: cannot block inside a hub callback"),
            "{}",
            outcome.borrow()
        );
    });
}

/// A green thread that parks in socket calls on a thread whose hub ends: `hub::scope` (or, for
/// a thread without one, the thread-exit hook) unwinds it, and every socket it owned is closed.
fn thread_ends_with_parked_socket_calls(scoped: bool) {
    let _w = Watchdog::new("thread end", Duration::from_secs(30));
    let before = fds();
    let body = || {
        green::spawn(accept_call());
        green::spawn(read_call());
        green::spawn(write_call());
        green::sleep(Duration::from_millis(50));
        assert!(registrations() >= 3);
    };
    std::thread::spawn(move || {
        if scoped {
            hub::scope(body);
        } else {
            body();
        }
    })
    .join()
    .unwrap();
    assert_eq!(fds(), before);
}

#[test]
fn scope_end_with_green_threads_parked_in_socket_calls() {
    serially(|| {
        thread_ends_with_parked_socket_calls(true);
    });
}

#[test]
fn thread_exit_with_green_threads_parked_in_socket_calls() {
    serially(|| {
        thread_ends_with_parked_socket_calls(false);
    });
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_slow_reader_parks_the_sender_and_memory_stays_bounded() {
    serially(|| {
        let _w = Watchdog::new("slow reader", Duration::from_secs(60));
        const TOTAL: usize = 100 << 20;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sent = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let s2 = sent.clone();
        let rss_before = rss_bytes();
        let sender = green::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..TOTAL / chunk.len() {
                s.write_all(&chunk).unwrap();
                s2.set(s2.get() + chunk.len());
            }
        });
        let (mut peer, _) = l.accept().unwrap();
        green::sleep(Duration::from_millis(200));
        let stuck_at = sent.get();
        green::sleep(Duration::from_millis(100));
        assert_eq!(sent.get(), stuck_at, "the sender should be parked");
        assert!(
            stuck_at < 64 << 20,
            "sent {stuck_at} bytes into a connection nobody reads"
        );
        assert!(
            rss_bytes() < rss_before + (64 << 20),
            "memory grew with the backlog"
        );
        let mut got = 0;
        let mut buf = vec![0; 1 << 16];
        while got < TOTAL {
            let n = peer.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n;
        }
        sender.join();
        assert_eq!(peer.read(&mut buf).unwrap(), 0);
    });
}

/// Out of fds with connections queued: a plain accept fails with `EMFILE` at once (as std's);
/// `accept_with_backoff` logs once, sleeps instead of spinning, and accepts when an fd frees.
#[test]
fn accept_out_of_fds_backs_off_instead_of_spinning() {
    // Serial too: the parent's pipes to the child are fds the other tests would count.
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    in_child("accept_out_of_fds_backs_off_instead_of_spinning", || {
        let _w = Watchdog::new("emfile", Duration::from_secs(30));
        let _hub = hub::current(); // its epoll and eventfd, before the fds run out
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let log = LogCapture::start_bare();
        let mut holes = use_up_fds(2);
        let e = l.accept().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        let cpu = cpu_time();
        let acceptor =
            green::spawn(move || l.accept_with_backoff().map(|(s, _)| s.peer_addr().unwrap()));
        green::sleep(Duration::from_millis(400));
        let spent = cpu_time() - cpu;
        assert!(
            spent < Duration::from_millis(150),
            "the accept loop spun: {spent:?} of CPU in 400 ms"
        );
        drop(holes.pop());
        drop(holes.pop());
        let peer = acceptor.join().unwrap();
        assert!(clients.iter().any(|c| c.local_addr().unwrap() == peer));
        drop(holes);
        assert_eq!(log.count(&["retrying with back-off"]), 1, "{}", log.text());
        assert_eq!(log.count(&["accepting again"]), 1, "{}", log.text());
    });
}
