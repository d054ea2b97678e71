//! Twisted-style protocols: `Protocol`, `Factory`, `Transport`, `listen_tcp`, `connect_tcp`.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{cpu_time, drive_recv, in_child, use_up_fds, LogCapture, Watchdog};
use filature::net::{self, ClientFactory, Factory, Protocol, Reason, Transport};
use filature::{green, hub, reactor};

type Log = Rc<RefCell<Vec<String>>>;

/// Drives the hub (main context) until `cond` holds; fails after 10 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        green::sleep(Duration::from_millis(1));
    }
}

/// Records every event; echoes data back when `echo`.
struct Recorder {
    log: Log,
    t: Option<Transport>,
    echo: bool,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, t: Transport) {
        self.log.borrow_mut().push("made".into());
        self.t = Some(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.log
            .borrow_mut()
            .push(format!("data {}", String::from_utf8_lossy(data)));
        if self.echo {
            let t = self.t.as_ref().unwrap();
            t.write(data);
            t.lose_connection();
        }
    }
    fn connection_lost(&mut self, reason: Reason) {
        self.log
            .borrow_mut()
            .push(format!("lost clean={}", reason.is_clean()));
    }
}

struct Client {
    log: Log,
    send: &'static [u8],
}

impl Factory for Client {
    fn build_protocol(&mut self, _: SocketAddr) -> Option<Box<dyn Protocol>> {
        let log = self.log.clone();
        let send = self.send;
        struct Sender(Recorder, &'static [u8]);
        impl Protocol for Sender {
            fn connection_made(&mut self, t: Transport) {
                t.write(self.1);
                self.0.connection_made(t);
            }
            fn data_received(&mut self, d: &[u8]) {
                self.0.data_received(d);
            }
            fn connection_lost(&mut self, r: Reason) {
                self.0.connection_lost(r);
            }
        }
        Some(Box::new(Sender(
            Recorder {
                log,
                t: None,
                echo: false,
            },
            send,
        )))
    }
}

impl ClientFactory for Client {
    fn client_connection_failed(&mut self, e: std::io::Error) {
        self.log.borrow_mut().push(format!("failed {:?}", e.kind()));
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn callbacks_come_in_order_on_both_sides() {
    let _w = Watchdog::new("order", Duration::from_secs(30));
    hub::scope(|| {
        let server: Log = Rc::default();
        let s = server.clone();
        let port = net::listen_tcp(any_port(), move |_| {
            Some(Box::new(Recorder {
                log: s.clone(),
                t: None,
                echo: true,
            }) as Box<dyn Protocol>)
        })
        .unwrap();
        let client: Log = Rc::default();
        net::connect_tcp(
            port.local_addr(),
            Client {
                log: client.clone(),
                send: b"ping",
            },
            Duration::from_secs(5),
        );
        wait_for("both lost", || {
            server.borrow().len() == 3 && client.borrow().len() == 3
        });
        assert_eq!(*server.borrow(), ["made", "data ping", "lost clean=true"]);
        assert_eq!(*client.borrow(), ["made", "data ping", "lost clean=true"]);
    });
}

#[test]
fn connect_refused_reaches_the_client_factory() {
    let _w = Watchdog::new("refused", Duration::from_secs(30));
    hub::scope(|| {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log: Log = Rc::default();
        net::connect_tcp(
            free,
            Client {
                log: log.clone(),
                send: b"",
            },
            Duration::from_secs(5),
        );
        wait_for("failed", || !log.borrow().is_empty());
        assert_eq!(*log.borrow(), ["failed ConnectionRefused"]);
    });
}

/// Writes `total` bytes at once, then loses the connection.
struct Blaster {
    total: usize,
    limits: Option<(usize, usize)>,
    marks: Log,
    t: Option<Transport>,
}

impl Protocol for Blaster {
    fn connection_made(&mut self, t: Transport) {
        if let Some((h, l)) = self.limits {
            t.set_write_buffer_limits(h, l);
        }
        let chunk = vec![7u8; 64 * 1024];
        let mut left = self.total;
        while left > 0 {
            let n = left.min(chunk.len());
            t.write(&chunk[..n]);
            left -= n;
        }
        t.lose_connection();
        self.t = Some(t);
    }
    fn data_received(&mut self, _: &[u8]) {}
    fn pause_writing(&mut self) {
        let b = self.t.as_ref().map_or(0, |t| t.buffered());
        self.marks.borrow_mut().push(format!("pause {b}"));
    }
    fn resume_writing(&mut self) {
        let b = self.t.as_ref().unwrap().buffered();
        self.marks.borrow_mut().push(format!("resume {b}"));
    }
    fn connection_lost(&mut self, r: Reason) {
        self.marks
            .borrow_mut()
            .push(format!("lost clean={}", r.is_clean()));
    }
}

/// A std client on its own thread: connects, waits `delay`, reads to the end; sends the count.
fn slow_reader(addr: SocketAddr, delay: Duration) -> mpsc::Receiver<usize> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(delay);
        let mut buf = vec![0; 1 << 16];
        let mut n = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        tx.send(n).unwrap();
    });
    rx
}

#[test]
fn lose_connection_with_a_full_write_buffer_delivers_everything() {
    let _w = Watchdog::new("lose full", Duration::from_secs(60));
    hub::scope(|| {
        let marks: Log = Rc::default();
        let m = marks.clone();
        let total = 16 << 20;
        let port = net::listen_tcp(any_port(), move |_| {
            Some(Box::new(Blaster {
                total,
                limits: None,
                marks: m.clone(),
                t: None,
            }) as Box<dyn Protocol>)
        })
        .unwrap();
        let rx = slow_reader(port.local_addr(), Duration::from_millis(200));
        assert_eq!(drive_recv(Duration::from_secs(20), &rx), total);
        wait_for("lost", || {
            marks.borrow().iter().any(|m| m.starts_with("lost"))
        });
        assert!(marks.borrow().contains(&"lost clean=true".to_string()));
    });
}

/// A producer that writes from a green thread (outside the protocol's callbacks) while the
/// protocol is not paused; the protocol records the marks it sees.
struct Producer {
    marks: Log,
    paused: Rc<Cell<bool>>,
    t: Option<Transport>,
}

impl Protocol for Producer {
    fn connection_made(&mut self, t: Transport) {
        t.set_write_buffer_limits(100_000, 10_000);
        self.t = Some(t.clone());
        let paused = self.paused.clone();
        green::spawn(move || {
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..64 {
                while paused.get() {
                    green::sleep(Duration::from_millis(1));
                }
                t.write(&chunk);
            }
            t.lose_connection();
        });
    }
    fn data_received(&mut self, _: &[u8]) {}
    fn pause_writing(&mut self) {
        self.paused.set(true);
        let b = self.t.as_ref().unwrap().buffered();
        self.marks.borrow_mut().push(format!("pause {b}"));
    }
    fn resume_writing(&mut self) {
        self.paused.set(false);
        let b = self.t.as_ref().unwrap().buffered();
        self.marks.borrow_mut().push(format!("resume {b}"));
    }
    fn connection_lost(&mut self, r: Reason) {
        self.marks
            .borrow_mut()
            .push(format!("lost clean={}", r.is_clean()));
    }
}

#[test]
fn pause_and_resume_writing_fire_at_the_water_marks() {
    let _w = Watchdog::new("water marks", Duration::from_secs(60));
    hub::scope(|| {
        let marks: Log = Rc::default();
        let m = marks.clone();
        let port = net::listen_tcp(any_port(), move |_| {
            Some(Box::new(Producer {
                marks: m.clone(),
                paused: Rc::default(),
                t: None,
            }) as Box<dyn Protocol>)
        })
        .unwrap();
        let rx = slow_reader(port.local_addr(), Duration::from_millis(200));
        assert_eq!(drive_recv(Duration::from_secs(20), &rx), 64 * 64 * 1024);
        wait_for("lost", || {
            marks.borrow().iter().any(|m| m.starts_with("lost"))
        });
        let marks = marks.borrow();
        assert_eq!(marks.last().unwrap(), "lost clean=true");
        let pauses: Vec<&String> = marks.iter().filter(|m| m.starts_with("pause")).collect();
        let resumes: Vec<&String> = marks.iter().filter(|m| m.starts_with("resume")).collect();
        assert!(!pauses.is_empty(), "{marks:?}");
        assert!(pauses.len() == resumes.len() || pauses.len() == resumes.len() + 1);
        for p in pauses {
            let b: usize = p.strip_prefix("pause ").unwrap().parse().unwrap();
            // Called from the write that crossed 100 000: at most one chunk above it.
            assert!(b > 100_000 && b <= 100_000 + 65536, "{marks:?}");
        }
        for r in resumes {
            let b: usize = r.strip_prefix("resume ").unwrap().parse().unwrap();
            assert!(b <= 10_000, "{marks:?}");
        }
        // Marks alternate, starting with a pause.
        for (i, m) in marks.iter().take(marks.len() - 1).enumerate() {
            assert_eq!(m.starts_with("pause"), i % 2 == 0, "{marks:?}");
        }
    });
}

#[test]
fn a_write_in_the_protocols_own_callback_pauses_it_right_after() {
    let _w = Watchdog::new("own callback marks", Duration::from_secs(60));
    hub::scope(|| {
        let marks: Log = Rc::default();
        let m = marks.clone();
        let port = net::listen_tcp(any_port(), move |_| {
            Some(Box::new(Blaster {
                // More than the kernel's socket buffers take at once (a few MiB on loopback):
                // connection_made's writes go to the socket directly until it is full.
                total: 32 << 20,
                limits: Some((100_000, 10_000)),
                marks: m.clone(),
                t: None,
            }) as Box<dyn Protocol>)
        })
        .unwrap();
        let rx = slow_reader(port.local_addr(), Duration::from_millis(100));
        assert_eq!(drive_recv(Duration::from_secs(20), &rx), 32 << 20);
        wait_for("lost", || {
            marks.borrow().iter().any(|m| m.starts_with("lost"))
        });
        let marks = marks.borrow();
        // connection_made wrote it all (the socket took what it could at once, the rest was
        // buffered, well above the high-water mark); pause_writing came right after it returned.
        let paused_at: usize = marks[0]
            .strip_prefix("pause ")
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("{marks:?}"));
        assert!(paused_at > 100_000 && paused_at <= 32 << 20, "{marks:?}");
        assert!(marks[1].starts_with("resume "), "{marks:?}");
        assert_eq!(marks[2], "lost clean=true");
    });
}

#[test]
fn a_panicking_protocol_closes_only_its_connection() {
    let _w = Watchdog::new("panic", Duration::from_secs(30));
    let logs = LogCapture::start();
    hub::scope(|| {
        struct Touchy(Option<Transport>);
        impl Protocol for Touchy {
            fn connection_made(&mut self, t: Transport) {
                self.0 = Some(t);
            }
            fn data_received(&mut self, d: &[u8]) {
                if d == b"boom" {
                    panic!("touchy");
                }
                self.0.as_ref().unwrap().write(d);
            }
        }
        let port = net::listen_tcp(any_port(), |_| {
            Some(Box::new(Touchy(None)) as Box<dyn Protocol>)
        })
        .unwrap();
        let addr = port.local_addr();
        let good = net::TcpStream::connect(addr).unwrap();
        let mut bad = net::TcpStream::connect(addr).unwrap();
        bad.write_all(b"boom").unwrap();
        let mut buf = [0; 4];
        assert!(matches!(bad.read(&mut buf), Ok(0) | Err(_)));
        (&good).write_all(b"fine").unwrap();
        (&good).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"fine");
        let mut later = net::TcpStream::connect(addr).unwrap();
        later.write_all(b"more").unwrap();
        later.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"more");
    });
    assert_eq!(logs.count(&["touchy"]), 1, "{}", logs.text());
    assert!(logs.contains("data_received panicked"));
}

#[test]
fn blocking_in_a_protocol_callback_panics_and_closes_the_connection() {
    let _w = Watchdog::new("blocking", Duration::from_secs(30));
    let logs = LogCapture::start();
    hub::scope(|| {
        struct Sleeper;
        impl Protocol for Sleeper {
            fn data_received(&mut self, _: &[u8]) {
                green::sleep(Duration::from_millis(1));
            }
        }
        let port =
            net::listen_tcp(any_port(), |_| Some(Box::new(Sleeper) as Box<dyn Protocol>)).unwrap();
        let mut c = net::TcpStream::connect(port.local_addr()).unwrap();
        c.write_all(b"x").unwrap();
        let mut buf = [0; 1];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    });
    assert!(
        logs.contains("cannot block inside a hub callback"),
        "{}",
        logs.text()
    );
}

#[test]
fn stop_listening_fires_once_closed_and_later_connects_are_refused() {
    let _w = Watchdog::new("stop", Duration::from_secs(30));
    hub::scope(|| {
        let port = net::listen_tcp(any_port(), |_| None).unwrap();
        let addr = port.local_addr();
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        let d = port.stop_listening();
        d.observe(move |_| ());
        green::block_on(d).unwrap();
        f.set(true);
        assert!(fired.get());
        let e = net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        // A second stop fires at once.
        green::block_on(port.stop_listening()).unwrap();
    });
}

#[test]
fn write_sequence_sends_the_parts_in_order() {
    let _w = Watchdog::new("sequence", Duration::from_secs(30));
    hub::scope(|| {
        struct Seq;
        impl Protocol for Seq {
            fn connection_made(&mut self, t: Transport) {
                t.write(b"a");
                t.write_sequence(&[b"b", b"cd", b""]);
                t.write_sequence(&[b"ef"]);
                t.lose_connection();
                t.write(b"ignored");
            }
            fn data_received(&mut self, _: &[u8]) {}
        }
        let port =
            net::listen_tcp(any_port(), |_| Some(Box::new(Seq) as Box<dyn Protocol>)).unwrap();
        let mut c = net::TcpStream::connect(port.local_addr()).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "abcdef");
    });
}

#[test]
fn abort_connection_is_unclean_and_immediate() {
    let _w = Watchdog::new("abort", Duration::from_secs(30));
    hub::scope(|| {
        let log: Log = Rc::default();
        let l = log.clone();
        struct Aborter(Log);
        impl Protocol for Aborter {
            fn connection_made(&mut self, t: Transport) {
                t.write(b"never sent? maybe");
                t.abort_connection();
                assert!(t.closed().is_some());
            }
            fn data_received(&mut self, _: &[u8]) {}
            fn connection_lost(&mut self, r: Reason) {
                self.0
                    .borrow_mut()
                    .push(format!("{:?}", r.error().map(std::io::Error::kind)));
            }
        }
        let port = net::listen_tcp(any_port(), move |_| {
            Some(Box::new(Aborter(l.clone())) as Box<dyn Protocol>)
        })
        .unwrap();
        let _c = net::TcpStream::connect(port.local_addr()).unwrap();
        wait_for("lost", || !log.borrow().is_empty());
        assert_eq!(*log.borrow(), ["Some(ConnectionAborted)"]);
    });
}

#[test]
fn pause_producing_stops_reading() {
    let _w = Watchdog::new("pause producing", Duration::from_secs(30));
    hub::scope(|| {
        let got = Rc::new(Cell::new(0usize));
        let g = got.clone();
        let tr: Rc<RefCell<Option<Transport>>> = Rc::default();
        let tr2 = tr.clone();
        struct Counter(Rc<Cell<usize>>, Rc<RefCell<Option<Transport>>>);
        impl Protocol for Counter {
            fn connection_made(&mut self, t: Transport) {
                t.pause_producing();
                *self.1.borrow_mut() = Some(t);
            }
            fn data_received(&mut self, d: &[u8]) {
                self.0.set(self.0.get() + d.len());
            }
        }
        let port = net::listen_tcp(any_port(), move |_| {
            Some(Box::new(Counter(g.clone(), tr2.clone())) as Box<dyn Protocol>)
        })
        .unwrap();
        let mut c = net::TcpStream::connect(port.local_addr()).unwrap();
        c.write_all(b"12345").unwrap();
        green::sleep(Duration::from_millis(50));
        assert_eq!(got.get(), 0);
        let t = tr.borrow().clone().unwrap();
        assert!(t.is_reading_paused());
        t.resume_producing();
        wait_for("read", || got.get() == 5);
    });
}

#[test]
fn reactor_listen_and_connect_from_another_thread() {
    let _w = Watchdog::new("reactor", Duration::from_secs(30));
    struct Echo(Option<Transport>);
    impl Protocol for Echo {
        fn connection_made(&mut self, t: Transport) {
            assert!(reactor::is_reactor_thread());
            self.0 = Some(t);
        }
        fn data_received(&mut self, d: &[u8]) {
            self.0.as_ref().unwrap().write(d);
        }
    }
    let port = reactor::listen_tcp(any_port(), |_| {
        Some(Box::new(Echo(None)) as Box<dyn Protocol>)
    })
    .unwrap();
    let (tx, rx) = mpsc::channel();
    reactor::connect_tcp(
        port.local_addr(),
        move |_| {
            struct Once(std::sync::mpsc::Sender<Vec<u8>>);
            impl Protocol for Once {
                fn connection_made(&mut self, t: Transport) {
                    t.write(b"via reactor");
                }
                fn data_received(&mut self, d: &[u8]) {
                    let _ = self.0.send(d.to_vec());
                }
            }
            Some(Box::new(Once(tx.clone())) as Box<dyn Protocol>)
        },
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        b"via reactor"
    );
    let done = port.stop_listening();
    let (dtx, drx) = mpsc::channel();
    done.observe(move |r| dtx.send(r.is_ok()).unwrap());
    assert!(drx.recv_timeout(Duration::from_secs(10)).unwrap());
    assert!(std::net::TcpStream::connect(port.local_addr()).is_err());
}

#[test]
fn hub_shutdown_closes_connections_and_reports_them_lost() {
    let _w = Watchdog::new("shutdown", Duration::from_secs(30));
    let log: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let l = log.clone();
    let addr = hub::scope(move || {
        struct Lost(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl Protocol for Lost {
            fn data_received(&mut self, _: &[u8]) {}
            fn connection_lost(&mut self, r: Reason) {
                self.0.lock().unwrap().push(r.to_string());
            }
        }
        let port = net::listen_tcp(any_port(), move |_| {
            Some(Box::new(Lost(l.clone())) as Box<dyn Protocol>)
        })
        .unwrap();
        let c = net::TcpStream::connect(port.local_addr()).unwrap();
        green::sleep(Duration::from_millis(20));
        std::mem::forget(c.try_clone().unwrap()); // keep the client side open
        port.local_addr()
    });
    assert_eq!(*log.lock().unwrap(), ["connection lost: the hub shut down"]);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// Out of file descriptors while accepting (`EMFILE`): the port logs once, backs off without
/// spinning, keeps its open connections working, and accepts the waiting clients once
/// descriptors are free again.
#[test]
fn a_port_out_of_descriptors_backs_off_and_accepts_again() {
    in_child(
        "a_port_out_of_descriptors_backs_off_and_accepts_again",
        || {
            let _w = Watchdog::new("port emfile", Duration::from_secs(30));
            let log = LogCapture::start();
            hub::scope(|| {
                /// Echoes what it receives.
                struct Echo(Option<Transport>);
                impl Protocol for Echo {
                    fn connection_made(&mut self, t: Transport) {
                        self.0 = Some(t);
                    }
                    fn data_received(&mut self, d: &[u8]) {
                        self.0.as_ref().unwrap().write(d);
                    }
                }
                let port = net::listen_tcp(any_port(), |_| {
                    Some(Box::new(Echo(None)) as Box<dyn Protocol>)
                })
                .unwrap();
                let addr = port.local_addr();
                // A client served before, and sockets for later ones, made while descriptors last.
                let (tx, rx) = mpsc::channel::<Vec<std::net::TcpStream>>();
                let (answers_tx, answers) = mpsc::channel();
                std::thread::spawn(move || {
                    // Each stream sends "hi" and expects it back within 10 s.
                    for batch in rx {
                        let got: Vec<bool> = batch
                            .into_iter()
                            .map(|mut s| {
                                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                                let mut b = [0u8; 2];
                                s.write_all(b"hi").is_ok()
                                    && s.read_exact(&mut b).is_ok()
                                    && &b == b"hi"
                            })
                            .collect();
                        answers_tx.send(got).unwrap();
                    }
                });
                let served = std::net::TcpStream::connect(addr).unwrap();
                let served2 = served.try_clone().unwrap();
                tx.send(vec![served]).unwrap();
                assert_eq!(drive_recv(Duration::from_secs(10), &answers), [true]);
                let waiting: Vec<_> = (0..3)
                    .map(|_| {
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    })
                    .collect::<Result<_, _>>()
                    .unwrap();
                let holes = use_up_fds(4); // three clients, and the accept that finds the queue empty
                let waiting: Vec<std::net::TcpStream> = waiting
                    .into_iter()
                    .map(|s| {
                        s.connect(&addr.into()).unwrap();
                        s.into()
                    })
                    .collect();
                let cpu = cpu_time();
                green::sleep(Duration::from_millis(500));
                let spent = cpu_time() - cpu;
                assert!(
                    spent < Duration::from_millis(150),
                    "spun: {spent:?} of CPU in 500 ms"
                );
                // The connection accepted before is still served.
                tx.send(vec![served2]).unwrap();
                assert_eq!(drive_recv(Duration::from_secs(10), &answers), [true]);
                drop(holes);
                tx.send(waiting).unwrap();
                assert_eq!(
                    drive_recv(Duration::from_secs(15), &answers),
                    [true, true, true],
                    "{}",
                    log.text()
                );
                green::block_on(port.stop_listening()).unwrap();
            });
            assert_eq!(log.count(&["retrying with back-off"]), 1, "{}", log.text());
            assert_eq!(log.count(&["accepting again"]), 1, "{}", log.text());
        },
    );
}
