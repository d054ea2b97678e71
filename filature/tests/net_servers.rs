//! The example servers, `hello_http` and `http_proxy`, run in-process (their files included as
//! modules) against clients that misbehave: garbage, truncated and oversized requests, resets,
//! half-closes, a client that never reads, slowloris clients, running out of file descriptors.
//! Loopback only; each test checks that nothing panics, that the server goes on serving others and
//! that every descriptor it opened is closed again.

// Each example is a crate of its own, and both include `common/server.rs`; here they meet.
#![allow(clippy::duplicate_mod)]

mod common;

#[allow(dead_code)]
#[path = "../examples/hello_http.rs"]
mod hello_http;
#[allow(dead_code)]
#[path = "../examples/http_proxy.rs"]
mod http_proxy;
// The examples' shared files, for the test's own upstream servers.
use hello_http::{http_core, server};

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cpu_time, eventually, in_child, use_up_fds, LogCapture, Watchdog};

/// The tests count this process's descriptors: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
const TEST_IDLE: Duration = Duration::from_secs(1);

/// A client with a read timeout, so a test fails instead of hanging.
fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response with a `Content-Length` body: (status, body).
fn response(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&got).unwrap() {
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| {
                    std::str::from_utf8(h.value).unwrap().parse().unwrap()
                });
            if got.len() >= head + len {
                assert_eq!(got.len(), head + len, "more than one response");
                return (resp.code.unwrap(), got[head..].to_vec());
            }
        }
    }
}

/// One GET on a fresh connection.
fn hello_get(addr: SocketAddr) -> Vec<u8> {
    let mut s = client(addr);
    s.write_all(GET).unwrap();
    let (code, body) = response(&mut s);
    assert_eq!(code, 200);
    body
}

/// Everything until the peer closes.
fn to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    all
}

/// Runs `test` against a hello server (one hub, `idle`), checks the descriptors come back.
fn with_hello(idle: Duration, test: impl FnOnce(SocketAddr)) {
    let _one = serial();
    let before = fds();
    let server = hello_http::start(0, 1, idle).unwrap();
    test(server.addr());
    server.stop();
    assert!(
        eventually(|| fds() == before),
        "{} fds, {before} before",
        fds()
    );
}

#[test]
fn hello_answers_pipelined_requests_on_kept_connections_from_two_hubs() {
    let _w = Watchdog::new("pipelining", Duration::from_secs(30));
    let _one = serial();
    let before = fds();
    let server = hello_http::start(0, 2, TEST_IDLE).unwrap();
    let mut clients: Vec<_> = (0..20).map(|_| client(server.addr())).collect();
    for round in 0..3 {
        for c in &mut clients {
            c.write_all(&GET.repeat(3)).unwrap();
            let mut got = vec![0; 3 * http_core::RESPONSE.len()];
            c.read_exact(&mut got).unwrap();
            assert_eq!(got, http_core::RESPONSE.repeat(3), "round {round}");
        }
    }
    drop(clients);
    server.stop();
    assert!(eventually(|| fds() == before));
}

#[test]
fn hello_answers_garbage_with_400_oversized_headers_with_431_and_closes() {
    let _w = Watchdog::new("garbage", Duration::from_secs(30));
    with_hello(TEST_IDLE, |addr| {
        let mut garbage = client(addr);
        garbage.write_all(b"\x00\x01 not http\r\n\r\n").unwrap();
        assert!(to_end(&mut garbage).starts_with(b"HTTP/1.1 400 "));

        // The good request before the garbage is answered first.
        let mut mixed = client(addr);
        mixed
            .write_all(b"GET / HTTP/1.1\r\n\r\nBREW / HTCPCP/1.0\r\n\r\n")
            .unwrap();
        let all = to_end(&mut mixed);
        assert!(all.starts_with(http_core::RESPONSE));
        assert!(all[http_core::RESPONSE.len()..].starts_with(b"HTTP/1.1 400 "));

        let mut huge = client(addr);
        let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        req.resize(20_000, b'x');
        req.extend_from_slice(b"\r\n\r\n");
        let _ = huge.write_all(&req); // the server may have closed before the end
        assert!(to_end(&mut huge).starts_with(b"HTTP/1.1 431 "));

        // A request cut short by the client's close gets no answer, just the close.
        let mut truncated = client(addr);
        truncated.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
        truncated.shutdown(Shutdown::Write).unwrap();
        assert_eq!(to_end(&mut truncated), b"");

        assert_eq!(hello_get(addr), b"Hello, World!");
    });
}

#[test]
fn hello_answers_a_half_closed_client() {
    let _w = Watchdog::new("half-close", Duration::from_secs(30));
    with_hello(TEST_IDLE, |addr| {
        let mut c = client(addr);
        c.write_all(&GET.repeat(2)).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(to_end(&mut c), http_core::RESPONSE.repeat(2));
    });
}

#[test]
fn hello_survives_a_peer_that_resets_mid_write() {
    let _w = Watchdog::new("reset", Duration::from_secs(30));
    with_hello(Duration::from_secs(10), |addr| {
        let with_server = fds();
        for _ in 0..5 {
            let c = client(addr);
            c.set_write_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            // Requests until the server blocks writing their responses to us, who never read.
            let batch = GET.repeat(1000);
            for _ in 0..200 {
                if (&c).write_all(&batch).is_err() {
                    break;
                }
            }
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(c); // a reset, while the server is parked writing
        }
        assert_eq!(hello_get(addr), b"Hello, World!");
        let ok = eventually(|| fds() == with_server);
        if !ok {
            eprintln!("{}", filature::snapshot(Duration::from_secs(1)));
            for e in std::fs::read_dir("/proc/self/fd").unwrap() {
                let e = e.unwrap();
                eprintln!("{:?} -> {:?}", e.file_name(), std::fs::read_link(e.path()));
            }
            eprintln!("{}", std::fs::read_to_string("/proc/net/tcp").unwrap());
        }
        assert!(ok, "a connection leaked");
    });
}

#[test]
fn hello_stays_bounded_with_a_client_that_never_reads() {
    let _w = Watchdog::new("slow reader", Duration::from_secs(60));
    with_hello(Duration::from_secs(2), |addr| {
        let with_server = fds();
        let rss = rss_bytes();
        let c = client(addr);
        c.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // 100 MB of responses asked for; the server stops reading once its writes block, and
        // then our writes block too.
        let batch = GET.repeat(1000);
        let batches = 100_000_000 / (1000 * http_core::RESPONSE.len());
        let mut sent = 0;
        while sent < batches && (&c).write_all(&batch).is_ok() {
            sent += 1;
        }
        assert!(
            sent < batches,
            "100 MB of responses went into a socket nobody reads"
        );
        assert_eq!(hello_get(addr), b"Hello, World!");
        let grown = rss_bytes().saturating_sub(rss);
        assert!(
            grown < 16 << 20,
            "the server's memory grew by {grown} bytes"
        );
        // The server gives up on the stalled connection after its idle time.
        assert!(
            eventually(|| fds() == with_server + 1),
            "the stalled connection is kept"
        );
        drop(c);
        assert!(eventually(|| fds() == with_server));
    });
}

/// Trickles a request a header line at a time; returns how long the server took to close.
fn slowloris(addr: SocketAddr, first: &[u8]) -> Duration {
    let mut c = client(addr);
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    c.write_all(first).unwrap();
    let mut buf = [0; 1024];
    while start.elapsed() < Duration::from_secs(10) {
        if c.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("answered {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break, // reset
        }
    }
    start.elapsed()
}

#[test]
fn hello_closes_slowloris_and_idle_connections() {
    let _w = Watchdog::new("slowloris", Duration::from_secs(30));
    with_hello(TEST_IDLE, |addr| {
        let mut idle = client(addr);
        let took = slowloris(addr, b"GET / HTTP/1.1\r\n");
        assert!(
            took >= TEST_IDLE && took < 3 * TEST_IDLE,
            "closed after {took:?}"
        );
        assert_eq!(to_end(&mut idle), b"", "an idle connection is closed");
        assert_eq!(hello_get(addr), b"Hello, World!");
    });
}

#[test]
fn hello_backs_off_when_out_of_fds_and_serves_again() {
    let _one = serial();
    in_child("hello_backs_off_when_out_of_fds_and_serves_again", || {
        let _w = Watchdog::new("emfile", Duration::from_secs(30));
        let log = LogCapture::global();
        let server = hello_http::start(0, 1, Duration::from_secs(10)).unwrap();
        let addr = server.addr();
        let mut served = client(addr);
        served.write_all(GET).unwrap();
        assert_eq!(response(&mut served).0, 200);
        // Sockets for later clients, made while descriptors are left.
        let waiting: Vec<_> = (0..3)
            .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None))
            .collect::<Result<_, _>>()
            .unwrap();
        let holes = use_up_fds(4); // three clients, and the accept that finds the queue empty
        let mut waiting: Vec<TcpStream> = waiting
            .into_iter()
            .map(|s| {
                s.connect(&addr.into()).unwrap();
                (&s).write_all(GET).unwrap();
                s.into()
            })
            .collect();
        let cpu = cpu_time();
        std::thread::sleep(Duration::from_millis(500));
        let spent = cpu_time() - cpu;
        assert!(
            spent < Duration::from_millis(150),
            "spun: {spent:?} of CPU in 500 ms"
        );
        // A connection accepted before goes on being served meanwhile.
        served.write_all(GET).unwrap();
        assert_eq!(response(&mut served).0, 200);
        drop(holes);
        for (i, c) in waiting.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // On a failure, say what the server was doing (its log and its hubs' state).
            let mut first = [0u8; 1];
            if let Err(e) = c.peek(&mut first) {
                panic!(
                    "waiting client {i}: no answer ({e}); server log:\n{}\n{}",
                    log.text(),
                    filature::snapshot(Duration::from_secs(2))
                );
            }
            assert_eq!(response(c), (200, b"Hello, World!".to_vec()));
        }
        server.stop();
        assert_eq!(log.count(&["retrying with back-off"]), 1, "{}", log.text());
        assert_eq!(log.count(&["accepting again"]), 1, "{}", log.text());
    });
}

// ---- the proxy ------------------------------------------------------------------------------

/// An upstream server on the test's side: `handle` per connection, connections counted.
fn upstream(
    handle: impl Fn(filature::net::TcpStream) + Send + Sync + 'static,
) -> (server::Server, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = server::Server::start("upstream", addr, 1, move |s, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        handle(s)
    })
    .unwrap();
    (server, count)
}

fn hello_upstream() -> (server::Server, Arc<AtomicUsize>) {
    upstream(|s| {
        http_core::connection(s, Duration::from_secs(10));
    })
}

/// Runs `test` against a proxy (`idle`), checks the descriptors come back.
fn with_proxy(idle: Duration, test: impl FnOnce(SocketAddr)) {
    let _one = serial();
    let before = fds();
    let proxy = http_proxy::start(0, idle).unwrap();
    test(proxy.addr());
    proxy.stop();
    assert!(
        eventually(|| fds() == before),
        "{} fds, {before} before",
        fds()
    );
}

fn proxied_get(to: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET http://{to}{path} HTTP/1.1\r\nHost: {to}\r\nProxy-Connection: keep-alive\r\n\r\n")
        .into_bytes()
}

#[test]
fn proxy_forwards_requests_and_keeps_both_connections_alive() {
    let _w = Watchdog::new("proxy get", Duration::from_secs(30));
    with_proxy(TEST_IDLE, |proxy| {
        let (up, accepted) = hello_upstream();
        let mut c = client(proxy);
        for path in ["/", "/a?b=c", ""] {
            c.write_all(&proxied_get(up.addr(), path)).unwrap();
            assert_eq!(response(&mut c), (200, b"Hello, World!".to_vec()));
        }
        // A body by its length.
        let post = format!(
            "POST http://{}/form HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde",
            up.addr()
        );
        c.write_all(post.as_bytes()).unwrap();
        assert_eq!(response(&mut c).0, 200);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the upstream connection was reused"
        );
        // A half-closed client still gets its answer.
        let mut half = client(proxy);
        half.write_all(&proxied_get(up.addr(), "/")).unwrap();
        half.shutdown(Shutdown::Write).unwrap();
        assert_eq!(response(&mut half), (200, b"Hello, World!".to_vec()));
        assert_eq!(to_end(&mut half), b"");
        drop(c);
        up.stop();
    });
}

#[test]
fn proxy_rewrites_requests_and_passes_chunked_responses_through() {
    let _w = Watchdog::new("proxy chunked", Duration::from_secs(30));
    with_proxy(TEST_IDLE, |proxy| {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (up, _) = upstream({
            let heads = heads.clone();
            move |mut s| {
                let mut buf = [0; 4096];
                // One chunked response per request head (no bodies here), heads kept.
                while let Ok(n) = s.read(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let count = text.matches("\r\n\r\n").count();
                    if n == 0 || count == 0 {
                        return;
                    }
                    heads.lock().unwrap().push(text);
                    let one: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n8\r\n, World!\r\n0\r\nX-Trailer: t\r\n\r\n";
                    if s.write_all(&one.repeat(count)).is_err() {
                        return;
                    }
                }
            }
        });
        let mut c = client(proxy);
        for path in ["/x?y=1", ""] {
            c.write_all(&proxied_get(up.addr(), path)).unwrap();
            let mut got = Vec::new();
            let mut buf = [0; 4096];
            while !got.ends_with(b"0\r\nX-Trailer: t\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8(got).unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(
                text.contains("\r\n\r\n5\r\nHello\r\n8\r\n, World!\r\n0\r\n"),
                "{text}"
            );
        }
        drop(c);
        let addr = up.addr();
        up.stop();
        // Origin form upstream, the URI's authority as Host, no hop-by-hop headers; one
        // upstream connection carried both.
        let heads = heads.lock().unwrap();
        let host = format!("\r\nHost: {addr}\r\n");
        assert!(heads[0].starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{heads:?}");
        assert!(heads[1].starts_with("GET / HTTP/1.1\r\n"), "{heads:?}");
        for head in heads.iter() {
            assert_eq!(head.matches(&host).count(), 1, "{head:?}");
            assert!(
                !head.to_ascii_lowercase().contains("proxy-connection"),
                "{head:?}"
            );
        }
    });
}

#[test]
fn proxy_tunnels_connect_both_ways_at_once() {
    let _w = Watchdog::new("proxy connect", Duration::from_secs(30));
    with_proxy(TEST_IDLE, |proxy| {
        // Greets, then echoes until the client ends its side, then ends its own.
        let (up, _) = upstream(|mut s| {
            s.write_all(b"hello from upstream\n").unwrap();
            let mut buf = [0; 16 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => s.write_all(&buf[..n]).unwrap(),
                }
            }
        });
        let mut c = client(proxy);
        write!(
            c,
            "CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            up.addr(),
            up.addr()
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200 "));
        let head = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut back = got[head..].to_vec();
        // 4 MB up while the same comes back: both directions at once.
        const SIZE: usize = 4 << 20;
        let payload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let writer = {
            let (mut w, payload) = (c.try_clone().unwrap(), payload.clone());
            std::thread::spawn(move || {
                w.write_all(&payload).unwrap();
                w.shutdown(Shutdown::Write).unwrap();
            })
        };
        c.read_to_end(&mut back).unwrap(); // until the upstream's end comes through
        writer.join().unwrap();
        assert_eq!(&back[..20], b"hello from upstream\n");
        assert!(back[20..] == payload[..], "the echo differs");
        up.stop();
    });
}

#[test]
fn proxy_closes_an_idle_tunnel_at_both_ends() {
    let _w = Watchdog::new("proxy idle tunnel", Duration::from_secs(30));
    with_proxy(TEST_IDLE, |proxy| {
        let ended = Arc::new(AtomicUsize::new(0));
        let (up, _) = upstream({
            let ended = ended.clone();
            move |mut s| {
                let mut buf = [0; 64];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                ended.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mut c = client(proxy);
        write!(c, "CONNECT {} HTTP/1.1\r\n\r\n", up.addr()).unwrap();
        let start = Instant::now();
        let all = to_end(&mut c);
        let took = start.elapsed();
        assert!(all.starts_with(b"HTTP/1.1 200 "));
        assert!(
            took >= TEST_IDLE && took < 3 * TEST_IDLE,
            "closed after {took:?}"
        );
        assert!(
            eventually(|| ended.load(Ordering::SeqCst) == 1),
            "upstream side kept"
        );
        up.stop();
    });
}

#[test]
fn proxy_answers_502_for_a_refused_upstream_and_504_for_a_silent_one() {
    let _w = Watchdog::new("proxy errors", Duration::from_secs(30));
    let log = LogCapture::global(); // the proxy logs from its own thread
    with_proxy(TEST_IDLE, |proxy| {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        }; // nobody listens there now
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts
        let mut c = client(proxy);
        c.write_all(&proxied_get(closed, "/")).unwrap();
        assert_eq!(response(&mut c).0, 502);
        assert_eq!(to_end(&mut c), b"");

        let mut c = client(proxy);
        write!(c, "CONNECT {closed} HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(response(&mut c).0, 502);

        let mut c = client(proxy);
        c.write_all(&proxied_get(silent.local_addr().unwrap(), "/"))
            .unwrap();
        assert_eq!(response(&mut c).0, 504);

        // Two refusals, one episode: one log line.
        assert_eq!(
            log.count(&["cannot connect to", "(502)"]),
            1,
            "{}",
            log.text()
        );
        assert_eq!(log.count(&["no head in time (504)"]), 1, "{}", log.text());
    });
}

#[test]
fn proxy_answers_bad_requests_and_closes_slowloris_clients() {
    let _w = Watchdog::new("proxy bad", Duration::from_secs(30));
    with_proxy(TEST_IDLE, |proxy| {
        let (up, _) = hello_upstream();
        let cases: [(&[u8], u16); 4] = [
            (b"\x00\x01 not http\r\n\r\n", 400),
            (b"GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (
                b"POST http://127.0.0.1:1/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                501,
            ),
            (
                b"POST http://127.0.0.1:1/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
        ];
        for (req, status) in cases {
            let mut c = client(proxy);
            c.write_all(req).unwrap();
            assert_eq!(
                response(&mut c).0,
                status,
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
        let mut huge = client(proxy);
        let mut req = proxied_get(up.addr(), "/");
        req.truncate(req.len() - 2);
        req.extend_from_slice(format!("X-Big: {}\r\n\r\n", "x".repeat(20_000)).as_bytes());
        let _ = huge.write_all(&req);
        assert!(to_end(&mut huge).starts_with(b"HTTP/1.1 431 "));

        let first = format!("GET http://{}/ HTTP/1.1\r\n", up.addr());
        let took = slowloris(proxy, first.as_bytes());
        assert!(
            took >= TEST_IDLE && took < 3 * TEST_IDLE,
            "closed after {took:?}"
        );

        let mut c = client(proxy);
        c.write_all(&proxied_get(up.addr(), "/")).unwrap();
        assert_eq!(response(&mut c), (200, b"Hello, World!".to_vec()));
        drop(c);
        up.stop();
    });
}
