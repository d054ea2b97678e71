//! The same client code, instantiated once with `std::net` and once with `filature::net` (a
//! macro pastes one source text under both imports), must give the same results and error
//! kinds. The peers are plain std threads; the filature side runs in the main context, which
//! drives its hub.

mod common;

use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::Watchdog;

/// A std peer on its own thread: accepts one connection and runs `f` on it.
fn peer(
    f: impl FnOnce(std::net::TcpStream) + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = thread::spawn(move || f(l.accept().unwrap().0));
    (addr, t)
}

fn kind<T>(r: io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

macro_rules! scenarios {
    ($m:ident, $($net:tt)*) => {
        mod $m {
            use super::*;
            use $($net)*::{TcpListener, TcpStream, UdpSocket};

            pub(crate) fn stream_basics() -> Vec<String> {
                let mut out = Vec::new();
                let (go, wait) = std::sync::mpsc::channel::<()>();
                let (addr, t) = peer(move |mut s| {
                    let mut buf = [0; 11];
                    s.read_exact(&mut buf).unwrap();
                    s.write_all(&buf).unwrap();
                    s.write_all(b"!").unwrap();
                    // Wait for the client's half-close, then answer and close.
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).unwrap();
                    wait.recv().unwrap();
                    s.write_all(format!("got {}", rest.len()).as_bytes()).unwrap();
                });
                let mut c = TcpStream::connect(addr).unwrap();
                out.push(format!("peer {}", c.peer_addr().unwrap() == addr));
                out.push(format!("local {}", c.local_addr().unwrap().ip()));
                out.push(format!("write {:?}", c.write(b"hello").unwrap()));
                let n = c.write_vectored(&[IoSlice::new(b" wor"), IoSlice::new(b"ld")]).unwrap();
                out.push(format!("write_vectored {n}"));
                let mut peeked = [0; 5];
                let mut got = 0;
                while got == 0 {
                    got = c.peek(&mut peeked).unwrap();
                }
                out.push(format!("peek {}", peeked[0] as char));
                let (mut a, mut b) = ([0; 6], [0; 10]);
                let n = c.read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)]).unwrap();
                let mut got: Vec<u8> = a.iter().chain(b.iter()).take(n).copied().collect();
                while got.len() < 12 {
                    let mut x = [0; 16];
                    let k = c.read(&mut x).unwrap();
                    got.extend_from_slice(&x[..k]);
                }
                out.push(format!("read {:?}", String::from_utf8_lossy(&got)));
                c.set_nodelay(true).unwrap();
                out.push(format!("nodelay {}", c.nodelay().unwrap()));
                c.set_ttl(42).unwrap();
                out.push(format!("ttl {}", c.ttl().unwrap()));
                out.push(format!("take_error {:?}", c.take_error().unwrap().is_none()));
                c.write_all(b"tail").unwrap();
                out.push(format!("shutdown write {}", kind(c.shutdown(Shutdown::Write))));
                out.push(format!("shutdown write again {}", kind(c.shutdown(Shutdown::Write))));
                out.push(format!("write after shutdown {}", kind(c.write(b"x"))));
                go.send(()).unwrap();
                let mut rest = String::new();
                c.read_to_string(&mut rest).unwrap();
                out.push(format!("answer {rest:?}"));
                let mut buf = [0; 8];
                out.push(format!("read at eof {:?}", c.read(&mut buf).unwrap()));
                out.push(format!("shutdown both {}", kind(c.shutdown(Shutdown::Both))));
                out.push(format!("shutdown both again {}", kind(c.shutdown(Shutdown::Both))));
                t.join().unwrap();
                out
            }

            pub(crate) fn timeouts() -> Vec<String> {
                let mut out = Vec::new();
                let (go, wait) = std::sync::mpsc::channel::<()>();
                let (addr, t) = peer(move |mut s| {
                    wait.recv().unwrap(); // neither reads nor writes until told
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf);
                });
                let c = TcpStream::connect(addr).unwrap();
                out.push(format!("initial {:?} {:?}", c.read_timeout().unwrap(), c.write_timeout().unwrap()));
                out.push(format!("zero read {}", kind(c.set_read_timeout(Some(Duration::ZERO)))));
                out.push(format!("zero write {}", kind(c.set_write_timeout(Some(Duration::ZERO)))));
                c.set_read_timeout(Some(Duration::from_nanos(1))).unwrap();
                out.push(format!("1ns reads back {:?}", c.read_timeout().unwrap()));
                c.set_read_timeout(Some(Duration::new(3, 1_500_007))).unwrap();
                out.push(format!("rounded {:?}", c.read_timeout().unwrap()));
                c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let start = Instant::now();
                let mut buf = [0; 4];
                let r = (&c).read(&mut buf);
                out.push(format!("read timed out {} after >=50ms {}", kind(r), start.elapsed() >= Duration::from_millis(45)));
                c.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
                let chunk = vec![0u8; 1 << 16];
                let r = loop {
                    match (&c).write(&chunk) {
                        Ok(n) => assert!(n > 0),
                        Err(e) => break Err::<(), _>(e),
                    }
                };
                out.push(format!("write timed out {}", kind(r)));
                go.send(()).unwrap();
                c.set_read_timeout(None).unwrap();
                out.push(format!("cleared {:?}", c.read_timeout().unwrap()));
                c.shutdown(Shutdown::Both).unwrap();
                drop(c);
                t.join().unwrap();
                out
            }

            pub(crate) fn connect_errors() -> Vec<String> {
                let mut out = Vec::new();
                let gone = {
                    let l = TcpListener::bind("127.0.0.1:0").unwrap();
                    l.local_addr().unwrap()
                };
                out.push(format!("refused {}", kind(TcpStream::connect(gone))));
                out.push(format!("zero timeout {}", kind(TcpStream::connect_timeout(&gone, Duration::ZERO))));
                out.push(format!("refused with timeout {}", kind(TcpStream::connect_timeout(&gone, Duration::from_secs(5)))));
                out.push(format!("no port {}", kind(TcpStream::connect("127.0.0.1"))));
                out.push(format!("no addresses {}", kind(TcpStream::connect(&[] as &[SocketAddr]))));
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                out.push(format!("in use {}", kind(TcpListener::bind(addr))));
                out
            }

            pub(crate) fn listener() -> Vec<String> {
                let mut out = Vec::new();
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                l.set_ttl(7).unwrap();
                out.push(format!("ttl {}", l.ttl().unwrap()));
                out.push(format!("take_error {}", l.take_error().unwrap().is_none()));
                l.set_nonblocking(true).unwrap();
                out.push(format!("nonblocking accept {}", kind(l.accept())));
                l.set_nonblocking(false).unwrap();
                let c = thread::spawn(move || std::net::TcpStream::connect(addr).unwrap());
                let clone = l.try_clone().unwrap();
                let (s, from) = clone.accept().unwrap();
                let c = c.join().unwrap();
                out.push(format!("accepted from client {}", from == c.local_addr().unwrap()));
                out.push(format!("accepted peer {}", s.peer_addr().unwrap() == c.local_addr().unwrap()));
                let c2 = thread::spawn(move || std::net::TcpStream::connect(addr).unwrap());
                let s2 = l.incoming().next().unwrap().unwrap();
                out.push(format!("incoming {}", s2.peer_addr().unwrap() == c2.join().unwrap().local_addr().unwrap()));
                s.set_nonblocking(true).unwrap();
                let mut buf = [0; 4];
                out.push(format!("nonblocking read {}", kind((&s).read(&mut buf))));
                out
            }

            pub(crate) fn reset_mid_write() -> Vec<String> {
                let (addr, t) = peer(|s| {
                    let mut b = [0; 1];
                    (&s).read_exact(&mut b).unwrap();
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                    drop(s); // RST
                });
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(b"x").unwrap();
                t.join().unwrap();
                let chunk = vec![1u8; 1 << 16];
                let mut err = None;
                for _ in 0..1000 {
                    if let Err(e) = c.write(&chunk) {
                        err = Some(e.kind());
                        break;
                    }
                }
                let ok = matches!(err, Some(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe));
                vec![format!("write fails {ok}")]
            }

            pub(crate) fn udp() -> Vec<String> {
                let mut out = Vec::new();
                let a = UdpSocket::bind("127.0.0.1:0").unwrap();
                let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
                out.push(format!("peer before connect {}", kind(a.peer_addr())));
                out.push(format!("send_to nowhere {}", kind(a.send_to(b"x", &[] as &[SocketAddr]))));
                out.push(format!("zero timeout {}", kind(a.set_read_timeout(Some(Duration::ZERO)))));
                a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
                let mut buf = [0; 16];
                out.push(format!("recv timed out {}", kind(a.recv_from(&mut buf))));
                a.set_read_timeout(None).unwrap();
                let echo = thread::spawn(move || {
                    let mut buf = [0; 16];
                    for _ in 0..2 {
                        let (n, from) = b.recv_from(&mut buf).unwrap();
                        b.send_to(&buf[..n], from).unwrap();
                    }
                });
                out.push(format!("send_to {}", a.send_to(b"hello", b_addr).unwrap()));
                let (n, from) = a.peek_from(&mut buf).unwrap();
                out.push(format!("peek_from {:?} {}", &buf[..n], from == b_addr));
                let (n, from) = a.recv_from(&mut buf).unwrap();
                out.push(format!("recv_from {:?} {}", &buf[..n], from == b_addr));
                a.connect(b_addr).unwrap();
                out.push(format!("peer {}", a.peer_addr().unwrap() == b_addr));
                out.push(format!("send {}", a.send(b"again").unwrap()));
                let n = a.peek(&mut buf).unwrap();
                out.push(format!("peek {:?}", &buf[..n]));
                let n = a.recv(&mut buf).unwrap();
                out.push(format!("recv {:?}", &buf[..n]));
                a.set_broadcast(true).unwrap();
                out.push(format!("broadcast {}", a.broadcast().unwrap()));
                a.set_ttl(9).unwrap();
                out.push(format!("ttl {}", a.ttl().unwrap()));
                a.set_nonblocking(true).unwrap();
                out.push(format!("nonblocking recv {}", kind(a.recv(&mut buf))));
                let c = a.try_clone().unwrap();
                out.push(format!("clone addr {}", c.local_addr().unwrap() == a_addr));
                echo.join().unwrap();
                out
            }
        }
    };
}

scenarios!(with_std, std::net);
scenarios!(with_filature, filature::net);

macro_rules! parity {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let _w = Watchdog::new(stringify!($name), Duration::from_secs(30));
            let theirs = with_std::$name();
            let ours = with_filature::$name();
            assert_eq!(ours, theirs);
        }
    )*};
}

parity!(
    stream_basics,
    timeouts,
    connect_errors,
    listener,
    reset_mid_write,
    udp
);

/// A line protocol written against `std::net` (a `BufReader` over the stream, `lines()`,
/// `write_all`), pasted under both imports; the filature copy runs in a green thread.
macro_rules! line_service {
    ($m:ident, $($net:tt)*) => {
        mod $m {
            use super::*;
            use $($net)*::{TcpListener, TcpStream};

            /// Serves one client: answers each line with its length, until "quit".
            pub(crate) fn serve(listener: TcpListener) -> Vec<String> {
                let (stream, _) = listener.accept().unwrap();
                let mut out = stream.try_clone().unwrap();
                let mut seen = Vec::new();
                for line in BufReader::new(stream).lines() {
                    let line = line.unwrap();
                    if line == "quit" {
                        break;
                    }
                    writeln!(out, "{}", line.len()).unwrap();
                    seen.push(line);
                }
                seen
            }

            pub(crate) fn client(addr: SocketAddr) -> Vec<String> {
                let stream = TcpStream::connect(addr).unwrap();
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                let mut answers = Vec::new();
                for word in ["a", "bb", "ccc"] {
                    writeln!(w, "{word}").unwrap();
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    answers.push(line.trim_end().to_owned());
                }
                writeln!(w, "quit").unwrap();
                answers
            }
        }
    };
}

line_service!(lines_std, std::net);
line_service!(lines_filature, filature::net);

#[test]
fn bufreader_line_protocol_runs_unchanged_in_a_green_thread() {
    let _w = Watchdog::new("line protocol", Duration::from_secs(30));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = thread::spawn(move || lines_std::serve(l));
    let theirs = (lines_std::client(addr), server.join().unwrap());

    let l = filature::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = filature::green::spawn(move || lines_filature::serve(l));
    let client = filature::green::spawn(move || lines_filature::client(addr));
    let ours = (client.join(), server.join());
    assert_eq!(ours, theirs);
    assert_eq!(ours.0, ["1", "2", "3"]);
}
