//! Listening ports and outgoing connects of the protocol layer: [`listen_tcp`], [`connect_tcp`],
//! [`ListeningPort`].
//!
//! # Invariants
//!
//! * A port (`Port`) and a connect in progress (`Connecting`) are driven objects (see
//!   `driver.rs`): created on their hub's thread, in its table, run there only. A
//!   [`ListeningPort`] is `Send`: a hub handle and the port's key; `stop_listening` from another
//!   thread posts the stop to the hub.
//! * The factory is called only from a run of its port (a hub callback); its panic is logged
//!   and refuses that one connection. The listener keeps serving.
//! * An accept loop never spins: out of descriptors or memory, the port logs once, stops
//!   accepting and tries again after a back-off (5 ms doubling to 1 s), logging when it accepts
//!   again.
//! * Stopping closes the listening socket at once (later connects are refused) and fires the
//!   stop Deferred; a port closed by the hub's shutdown fires its Deferreds too.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use super::conn::Conn;
use super::driver::{self, Driven, Key};
use super::{ClientFactory, Factory, TcpListener, TcpStream};
use crate::deferred::Deferred;
use crate::failure::panic_message;
use crate::hub::io::Direction;
use crate::hub::{DelayedCall, HubHandle};

const ACCEPTS_PER_RUN: u32 = 64;
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

struct Port {
    key: Key,
    waker: Waker,
    listener: RefCell<Option<TcpListener>>,
    factory: RefCell<Box<dyn Factory>>,
    scheduled: Cell<bool>,
    backoff: Cell<Duration>,
}

/// A listening socket of the protocol layer (Twisted's `IListeningPort`), from
/// [`listen_tcp`] or [`reactor::listen_tcp`](crate::reactor::listen_tcp). `Send`: stop it from
/// any thread. Dropping it does not stop it (as in Twisted): call
/// [`stop_listening`](Self::stop_listening).
///
/// ```
/// use filature::{green, net};
///
/// let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), |_| None).unwrap();
/// let addr = port.local_addr();
/// let done = port.stop_listening();
/// green::block_on(done).unwrap(); // fired once the socket is closed
/// assert!(std::net::TcpStream::connect(addr).is_err()); // refused
/// ```
#[derive(Clone, Debug)]
pub struct ListeningPort {
    hub: HubHandle,
    key: Key,
    addr: SocketAddr,
}

/// Listens on `addr` on the current thread's hub; each accepted connection gets a protocol from
/// `factory` (Twisted's `reactor.listenTCP` on this hub). Errors (address in use, …) are
/// returned at once. See [`Protocol`](super::Protocol) for an example.
pub fn listen_tcp(addr: SocketAddr, factory: impl Factory + 'static) -> io::Result<ListeningPort> {
    let listener = super::ListenOptions::new().bind(addr)?;
    Ok(listen_on(listener, Box::new(factory)))
}

/// Serves `listener` with `factory` on the current hub.
pub(crate) fn listen_on(listener: TcpListener, factory: Box<dyn Factory>) -> ListeningPort {
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let port = driver::insert(|key, waker| {
        Rc::new(Port {
            key,
            waker,
            listener: RefCell::new(Some(listener)),
            factory: RefCell::new(factory),
            scheduled: Cell::new(false),
            backoff: Cell::new(Duration::ZERO),
        })
    });
    let key = port.key;
    driver::schedule(port);
    ListeningPort {
        hub: crate::hub::current(),
        key,
        addr,
    }
}

impl ListeningPort {
    /// The address the port listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening: the socket is closed (later connects are refused) and the returned
    /// Deferred fires, on the port's hub, once it is. Connections already accepted go on.
    /// Stopping twice, or after the hub shut down, fires at once.
    pub fn stop_listening(&self) -> Deferred<()> {
        let d = Deferred::new();
        let key = self.key;
        if self.hub.is_current() {
            stop(key, &d);
        } else {
            let d2 = d.clone();
            if self.hub.call(move || stop(key, &d2)).is_err() {
                let _ = d.callback(()); // the hub is gone, and its ports with it
            }
        }
        d
    }
}

fn stop(key: Key, done: &Deferred<()>) {
    if let Some(obj) = driver::get(key) {
        if let Ok(port) = obj.as_any().downcast::<Port>() {
            port.close();
        }
    }
    let _ = done.callback(());
}

impl Port {
    fn close(&self) {
        let l = self.listener.borrow_mut().take();
        drop(l); // deregistered, then closed
        driver::remove(self.key);
    }

    fn accept_one(self: &Rc<Self>) -> Option<io::Result<(TcpStream, SocketAddr)>> {
        let guard = self.listener.borrow();
        let l = guard.as_ref()?;
        let r = l
            .source()
            .try_io(Direction::Read, &self.waker, |l| loop {
                match l.accept() {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => return r,
                }
            })
            .map(|(s, peer)| (TcpStream::from_nonblocking(s.into()), peer));
        Some(r)
    }

    fn back_off(self: &Rc<Self>, e: &io::Error) {
        let delay = match self.backoff.get() {
            d if d.is_zero() => {
                tracing::warn!(
                    "listen_tcp {}: accept failed: {e}; retrying with back-off ({FIRST_BACKOFF:?}, doubling up to {MAX_BACKOFF:?})",
                    self.local()
                );
                FIRST_BACKOFF
            }
            d => (d * 2).min(MAX_BACKOFF),
        };
        self.backoff.set(delay);
        let me = self.clone();
        let _: DelayedCall = crate::hub::call_later(delay, move || driver::schedule(me));
    }

    fn local(&self) -> String {
        self.listener
            .borrow()
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "(closed)".into(), |a| a.to_string())
    }
}

impl Driven for Port {
    fn run(self: Rc<Self>) {
        for _ in 0..ACCEPTS_PER_RUN {
            let (stream, peer) = match self.accept_one() {
                None => return,
                Some(Ok(x)) => x,
                Some(Err(e)) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    _ if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {
                        continue
                    }
                    _ => return self.back_off(&e),
                },
            };
            if !self.backoff.replace(Duration::ZERO).is_zero() {
                tracing::info!("listen_tcp {}: accepting again", self.local());
            }
            let built = {
                let mut f = self.factory.borrow_mut();
                catch_unwind(AssertUnwindSafe(|| f.build_protocol(peer)))
            };
            match built {
                Ok(Some(p)) => Conn::start(stream, peer, p),
                Ok(None) => drop(stream),
                Err(panic) => tracing::error!(
                    peer = %peer,
                    "a factory's build_protocol panicked for a connection from {peer}: {}",
                    panic_message(&*panic)
                ),
            }
        }
        driver::schedule(self); // more may be queued: after the others have run
    }

    fn shut_down(self: Rc<Self>) {
        self.close();
    }

    fn scheduled(&self) -> &Cell<bool> {
        &self.scheduled
    }

    fn as_any(self: Rc<Self>) -> Rc<dyn std::any::Any> {
        self
    }
}

/// Connects to `addr` from the current thread's hub; once connected, `factory` builds the
/// connection's protocol, or is told the connection failed (refused, or not made within
/// `timeout`) with [`client_connection_failed`](ClientFactory::client_connection_failed)
/// (Twisted's `reactor.connectTCP` on this hub). Never blocks; every outcome is reported
/// later, from the hub.
///
/// ```
/// use filature::net::{self, ClientFactory, Factory, Protocol};
/// use std::{cell::Cell, net::SocketAddr, rc::Rc, time::Duration};
///
/// struct Failed(Rc<Cell<bool>>);
/// impl Factory for Failed {
///     fn build_protocol(&mut self, _: SocketAddr) -> Option<Box<dyn Protocol>> { None }
/// }
/// impl ClientFactory for Failed {
///     fn client_connection_failed(&mut self, e: std::io::Error) {
///         assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
///         self.0.set(true);
///     }
/// }
///
/// let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
/// let failed = Rc::new(Cell::new(false));
/// net::connect_tcp(free, Failed(failed.clone()), Duration::from_secs(5));
/// while !failed.get() {
///     filature::green::sleep(Duration::from_millis(1));
/// }
/// ```
pub fn connect_tcp(addr: SocketAddr, factory: impl ClientFactory + 'static, timeout: Duration) {
    let mut factory: Box<dyn ClientFactory> = Box::new(factory);
    let stream = match TcpStream::start_connect(&addr) {
        Ok((s, _)) => s,
        Err(e) => {
            crate::hub::call_soon(move || factory.client_connection_failed(e));
            return;
        }
    };
    let c = driver::insert(|key, waker| {
        Rc::new(Connecting {
            key,
            waker,
            addr,
            stream: RefCell::new(Some(stream)),
            factory: RefCell::new(Some(factory)),
            timer: RefCell::new(None),
            scheduled: Cell::new(false),
        })
    });
    let weak = Rc::downgrade(&c);
    let timer = crate::hub::call_later(timeout, move || {
        if let Some(c) = weak.upgrade() {
            c.fail(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            ));
        }
    });
    *c.timer.borrow_mut() = Some(timer);
    driver::schedule(c);
}

struct Connecting {
    key: Key,
    waker: Waker,
    addr: SocketAddr,
    stream: RefCell<Option<TcpStream>>,
    factory: RefCell<Option<Box<dyn ClientFactory>>>,
    timer: RefCell<Option<DelayedCall>>,
    scheduled: Cell<bool>,
}

impl Connecting {
    /// Ends the attempt: out of the table, timer cancelled; the stream and factory handed back.
    fn finish(&self) -> Option<(Option<TcpStream>, Box<dyn ClientFactory>)> {
        let factory = self.factory.borrow_mut().take()?;
        driver::remove(self.key);
        if let Some(t) = self.timer.borrow_mut().take() {
            let _ = t.cancel();
        }
        Some((self.stream.borrow_mut().take(), factory))
    }

    fn fail(&self, e: io::Error) {
        if let Some((stream, mut factory)) = self.finish() {
            drop(stream);
            if let Err(panic) =
                catch_unwind(AssertUnwindSafe(|| factory.client_connection_failed(e)))
            {
                tracing::error!(
                    "a client factory's client_connection_failed panicked (connect to {}): {}",
                    self.addr,
                    panic_message(&*panic)
                );
            }
        }
    }
}

impl Driven for Connecting {
    fn run(self: Rc<Self>) {
        let r = match &*self.stream.borrow() {
            None => return,
            Some(s) => {
                s.source()
                    .try_io(Direction::Write, &self.waker, super::tcp::connect_finished)
            }
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.fail(e),
            Ok(()) => {
                let Some((Some(stream), mut factory)) = self.finish() else {
                    return;
                };
                let built = catch_unwind(AssertUnwindSafe(|| factory.build_protocol(self.addr)));
                match built {
                    Ok(Some(p)) => Conn::start(stream, self.addr, p),
                    Ok(None) => drop(stream),
                    Err(panic) => tracing::error!(
                        "a client factory's build_protocol panicked (connected to {}): {}",
                        self.addr,
                        panic_message(&*panic)
                    ),
                }
            }
        }
    }

    fn shut_down(self: Rc<Self>) {
        self.fail(io::Error::other("the hub shut down"));
    }

    fn scheduled(&self) -> &Cell<bool> {
        &self.scheduled
    }

    fn as_any(self: Rc<Self>) -> Rc<dyn std::any::Any> {
        self
    }
}
