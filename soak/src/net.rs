//! Network operations, from every context that may block: each sets up its own loopback
//! exchange (green sockets, a `Protocol` port, `SpawnFactory` + `LineTransport`, UDP), sometimes
//! with a fault injected (the serving green thread killed or timed out at a random moment, the
//! server moved to another runner's hub, a panicking protocol callback, an over-long line), and
//! checks what the peer sees: the bytes it sent come back in order, or the exchange ends with an
//! end of stream or an error, never a hang (every wait is bounded; a bound that expires without a
//! fault injected is a violation). Sockets left open would show in the end-of-run fd check.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use filature::green::{self, with_timeout, JoinHandle};
use filature::net::{
    self, GreenClientCreator, LineTransport, Protocol, Reason, SpawnFactory, TcpListener,
    TcpStream, Transport, UdpSocket,
};

use crate::check::{bump, ensure, expect_log, inject, violation, Op, Site};
use crate::ops::{Ctx, Cx};
use crate::world;

/// The bound on every wait of an exchange; only a lost wake-up or a hang gets near it.
const BOUND: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// Random bytes, 1 to `max` of them.
fn payload(cx: &mut Cx, max: usize) -> Vec<u8> {
    let n = 1 + cx.rng.index(max);
    (0..n).map(|_| cx.rng.below(256) as u8).collect()
}

/// What a faulty exchange may end with: an end of stream, a reset (also as `NotConnected`, what
/// `shutdown` says on a connection the peer has reset), a broken pipe, a refused connection.
fn ended(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotConnected
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionRefused
    )
}

/// A bound expired: a violation unless a fault made the peer go quiet on purpose.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Cx {
    pub(crate) fn op_net(&mut self) {
        bump(Op::Net);
        match self.rng.below(5) {
            0 | 1 => self.net_echo(),
            2 => self.net_protocol(),
            3 => self.net_lines(),
            _ => self.net_udp(),
        }
    }

    /// A green-socket echo: the server is a green thread on this hub or on a runner's; the
    /// client, here, writes a random payload in random pieces, shuts its write side and reads
    /// everything back. Faults: the server killed or timed out at a random moment.
    fn net_echo(&mut self) {
        let listener = match TcpListener::bind(loopback()) {
            Ok(l) => l,
            Err(e) => return violation(format!("net: bind failed: {e}")),
        };
        let addr = listener.local_addr().expect("a bound address");
        // The first 8 bytes are this exchange's own: a listener's port may be one another
        // exchange's client, whose own listener just went away (a fault), still connects to.
        // The server drops such a stranger's connection and accepts again.
        let token = self.rng.next_u64().to_le_bytes();
        let mut data = token.to_vec();
        data.extend(payload(self, 48 * 1024));
        let fault = self.rng.chance(20);
        let server_timeout = self.rng.millis(20);
        let outcome: Arc<Mutex<Option<io::Result<()>>>> = Arc::default();
        let told = Arc::clone(&outcome);
        let serve = move || {
            let body = || -> io::Result<()> {
                let mut s = loop {
                    let (mut s, _) = listener.accept()?;
                    s.set_read_timeout(Some(BOUND))?;
                    let mut first = [0u8; 8];
                    if s.read_exact(&mut first).is_ok() && first == token {
                        s.write_all(&first)?;
                        break s;
                    }
                };
                drop(listener);
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    s.write_all(&buf[..n])?;
                }
            };
            // The fault: a timeout that may expire in accept, a read or a write.
            let r = if fault {
                with_timeout(server_timeout, body).unwrap_or(Ok(()))
            } else {
                body()
            };
            *told.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        };
        let remote = if self.rng.chance(30) {
            world::random_slot(&mut self.rng)
        } else {
            None
        };
        let server = Rc::new(KillOnDrop(match &remote {
            // Moved to another hub: a runner restarted meanwhile kills it, like a fault.
            Some(slot) => match slot.hub.spawn(serve) {
                Ok(h) => h,
                Err(_) => return,
            },
            None => green::spawn(serve),
        }));
        if fault && self.rng.chance(50) {
            let (h, d) = (Rc::clone(&server), self.rng.millis(10));
            drop(green::spawn(move || {
                green::sleep(d);
                h.0.kill();
            }));
        }
        let faulty = fault || remote.is_some();
        // Each step names itself in an error, with where the exchange ran.
        let at = |step: &'static str, ctx: Ctx| {
            move |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("{e} (in {step}; {ctx:?} on {:?})", world::here()),
                )
            }
        };
        let ctx = self.ctx;
        let r = (|| -> io::Result<Vec<u8>> {
            let mut c = TcpStream::connect(addr).map_err(at("connect", ctx))?;
            c.set_read_timeout(Some(BOUND))?;
            c.set_write_timeout(Some(BOUND))?;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = (1 + self.rng.index(8192)).min(rest.len());
                c.write_all(&rest[..n]).map_err(at("write", ctx))?;
                rest = &rest[n..];
            }
            c.shutdown(Shutdown::Write).map_err(at("shutdown", ctx))?;
            let mut back = Vec::new();
            c.read_to_end(&mut back).map_err(at("read", ctx))?;
            Ok(back)
        })();
        let clean = check_back("the echo", r, &data, faulty);
        // A clean exchange without a fault: the server must have finished cleanly too.
        if clean && !faulty {
            if !server.0.wait_timeout(BOUND) {
                return violation("net: the echo server did not finish");
            }
            match outcome.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(Ok(())) => {}
                Some(Err(e)) => violation(format!("net: the echo server failed: {e}")),
                None => violation("net: the echo server ended without an outcome"),
            }
        }
    }

    /// A `Protocol` echo port on this hub, a `GreenClientCreator` client; sometimes the
    /// protocol's `data_received` panics (the connection closes, the port keeps serving).
    fn net_protocol(&mut self) {
        struct Echo {
            t: Option<Transport>,
            panic_at: Option<usize>,
            seen: usize,
        }
        impl Protocol for Echo {
            fn connection_made(&mut self, t: Transport) {
                self.t = Some(t);
            }
            fn data_received(&mut self, data: &[u8]) {
                self.seen += data.len();
                if self.panic_at.is_some_and(|at| self.seen >= at) {
                    expect_log(Site::Protocol);
                    inject(Site::Protocol);
                }
                if let Some(t) = &self.t {
                    t.write(data);
                }
            }
            fn eof_received(&mut self) -> bool {
                if let Some(t) = &self.t {
                    t.lose_connection();
                }
                true
            }
            fn connection_lost(&mut self, _reason: Reason) {
                self.t = None;
            }
        }
        let data = payload(self, 32 * 1024);
        let panic_at = self.rng.chance(20).then(|| 1 + self.rng.index(data.len()));
        let mut first = panic_at;
        let factory = move |_peer| {
            Some(Box::new(Echo {
                t: None,
                panic_at: first.take(),
                seen: 0,
            }) as Box<dyn Protocol>)
        };
        let port = match net::listen_tcp(loopback(), factory) {
            Ok(p) => StopOnDrop(p),
            Err(e) => return violation(format!("net: listen_tcp failed: {e}")),
        };
        let r = (|| -> io::Result<Vec<u8>> {
            let t = GreenClientCreator::new()
                .timeout(BOUND)
                .connect_tcp(port.0.local_addr())?;
            t.write(&data)?;
            t.write_eof();
            t.read_to_end()
        })();
        check_back("the protocol echo", r, &data, panic_at.is_some());
        stop(&port.0);
    }

    /// `SpawnFactory` + `LineTransport` on this hub: the handler echoes lines until a clean
    /// close; sometimes a line longer than the maximum ends the handler with an error.
    fn net_lines(&mut self) {
        const MAX: usize = 256;
        let factory = SpawnFactory::new(|t| {
            let mut lines = LineTransport::new(t).max_length(MAX);
            loop {
                match lines.read_line() {
                    Ok(Some(l)) => {
                        if lines.send_line(&l).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        ensure(e.kind() == io::ErrorKind::InvalidData || ended(&e), || {
                            format!("net: read_line failed: {e}")
                        });
                        return;
                    }
                }
            }
        });
        let port = match net::listen_tcp(loopback(), factory.clone()) {
            Ok(p) => StopOnDrop(p),
            Err(e) => return violation(format!("net: listen_tcp failed: {e}")),
        };
        let n = 1 + self.rng.index(20);
        let long_at = self.rng.chance(20).then(|| self.rng.index(n));
        let lines: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let len = if long_at == Some(i) {
                    MAX + 1 + self.rng.index(MAX)
                } else {
                    self.rng.index(MAX)
                };
                (0..len).map(|_| b'a' + self.rng.below(26) as u8).collect()
            })
            .collect();
        let r = (|| -> io::Result<Vec<Vec<u8>>> {
            let t = GreenClientCreator::new()
                .timeout(BOUND)
                .connect_tcp(port.0.local_addr())?;
            let mut c = LineTransport::new(t);
            for l in &lines {
                c.send_line(l)?;
            }
            c.get_ref().write_eof();
            let mut back = Vec::new();
            while let Some(l) = c.read_line()? {
                back.push(l);
            }
            Ok(back)
        })();
        check_back(
            "the line echo",
            r,
            &lines[..long_at.unwrap_or(n)],
            long_at.is_some(),
        );
        stop(&port.0);
        factory.join_all();
    }

    /// Two UDP sockets on this hub, a datagram each way, with a bounded wait.
    fn net_udp(&mut self) {
        let (a, b) = match (UdpSocket::bind(loopback()), UdpSocket::bind(loopback())) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return violation("net: a UDP bind failed"),
        };
        let data = payload(self, 1024);
        let r = (|| -> io::Result<()> {
            a.set_read_timeout(Some(BOUND))?;
            b.set_read_timeout(Some(BOUND))?;
            let b_addr = b.local_addr()?;
            a.send_to(&data, b_addr)?;
            let mut buf = [0u8; 2048];
            let (n, from) = b.recv_from(&mut buf)?;
            b.send_to(&buf[..n], from)?;
            let (m, _) = a.recv_from(&mut buf)?;
            ensure(buf[..m] == data[..], || {
                "net: a UDP datagram changed".into()
            });
            Ok(())
        })();
        if let Err(e) = r {
            violation(format!("net: a UDP exchange failed: {e}"));
        }
    }
}

/// Checks what a client got back: everything it sent, or, when a fault was injected, a prefix
/// of it or an error that says the connection ended. A wait that ran into its bound is a hang.
/// Returns whether the exchange was clean.
fn check_back<T: PartialEq>(what: &str, r: io::Result<Vec<T>>, sent: &[T], faulty: bool) -> bool {
    match r {
        Ok(back) if back == sent => true,
        Ok(back) => {
            ensure(faulty && sent.starts_with(&back), || {
                format!(
                    "net: {what} came back wrong ({} of {} items, not a prefix)",
                    back.len(),
                    sent.len()
                )
            });
            false
        }
        Err(e) if timed_out(&e) => {
            violation(format!("net: {what} hung: {e}"));
            false
        }
        Err(e) => {
            ensure(faulty && ended(&e), || {
                if faulty {
                    format!("net: {what} failed with an error a lost connection does not give: {e}")
                } else {
                    format!("net: {what} failed without a fault: {e}")
                }
            });
            false
        }
    }
}

/// Stops a port and waits (bounded) for its Deferred.
fn stop(port: &net::ListeningPort) {
    match with_timeout(BOUND, || green::block_on(port.stop_listening())) {
        Ok(Ok(())) => {}
        Ok(Err(f)) => violation(format!("net: stop_listening failed: {f}")),
        Err(_) => violation("net: stop_listening did not fire"),
    }
}

/// Kills a green thread when the operation that started it ends, also by unwinding (a killed
/// or timed-out caller), so no server is left parked in `accept` on a long-lived hub.
struct KillOnDrop(JoinHandle<()>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// Stops a port when the operation that opened it ends, also by unwinding (a port outlives its
/// handle, as in Twisted).
struct StopOnDrop(net::ListeningPort);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        drop(self.0.stop_listening());
    }
}
