//! A port forwarder: a `Protocol`-based listener whose every connection is forwarded through a
//! `GreenClientCreator` connection, both directions at once.
//!
//! ```sh
//! cargo run --example echo -- --port 7000 &
//! cargo run --example portforward -- --port 7001 --to 127.0.0.1:7000 --secs 60
//! nc 127.0.0.1 7001      # type lines; the echo server sends them back through the forwarder
//! ```
//!
//! Binds 127.0.0.1 (`--port 0`, the default, picks a free port) and prints its address. Each
//! inbound connection is a `Protocol` (callbacks on the hub); a green thread connects to the
//! target and pumps target → client, while the client's bytes go straight from
//! `data_received` into the target's transport. Both ways have back-pressure: a side whose
//! write buffer passes its high-water mark pauses reading from the other. A connection idle
//! (no bytes either way) for `--idle N` seconds (default 60) is closed, as is one that cannot
//! reach the target; at most `--max N` connections (default 1000) are served at once (more are
//! refused). `--secs N` stops after N seconds.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use filature::hub::{self, DelayedCall};
use filature::net::{self, GreenClientCreator, GreenTransport, ListeningPort, Protocol, Transport};
use filature::{green, sync::Event};

/// How the forwarder behaves (see the module docs for the defaults).
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) idle: Duration,
    pub(crate) max_connections: usize,
    pub(crate) connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            idle: Duration::from_secs(60),
            max_connections: 1000,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Forwards every connection to `listen` on to `to`, on the current hub.
pub(crate) fn serve(
    listen: SocketAddr,
    to: SocketAddr,
    opts: Options,
) -> std::io::Result<ListeningPort> {
    let live = Rc::new(Cell::new(0usize));
    net::listen_tcp(listen, move |_peer| {
        if live.get() >= opts.max_connections {
            return None; // refused: closed at once
        }
        live.set(live.get() + 1);
        Some(Box::new(Inbound(Rc::new(Link {
            to,
            opts: opts.clone(),
            live: live.clone(),
            inbound: RefCell::default(),
            outbound: RefCell::default(),
            idle: RefCell::default(),
            writable: Event::new(),
            inbound_eof: Cell::new(false),
            outbound_eof: Cell::new(false),
        }))) as Box<dyn Protocol>)
    })
}

/// One forwarded connection, shared by the inbound protocol and the green threads.
struct Link {
    to: SocketAddr,
    opts: Options,
    live: Rc<Cell<usize>>,
    inbound: RefCell<Option<Transport>>,
    outbound: RefCell<Option<Rc<GreenTransport>>>,
    idle: RefCell<Option<DelayedCall>>,
    /// Set while the inbound side can take more (cleared by `pause_writing`).
    writable: Event<()>,
    inbound_eof: Cell<bool>,
    outbound_eof: Cell<bool>,
}

impl Link {
    fn inbound(&self) -> Option<Transport> {
        self.inbound.borrow().clone()
    }

    /// Some bytes moved: the idle timer starts again.
    fn touch(self: &Rc<Self>) {
        let mut idle = self.idle.borrow_mut();
        if let Some(t) = &*idle {
            if t.reset(self.opts.idle).is_ok() {
                return;
            }
        }
        let me = Rc::downgrade(self);
        *idle = Some(hub::call_later(self.opts.idle, move || {
            if let Some(me) = me.upgrade() {
                me.close_both();
            }
        }));
    }

    fn close_both(&self) {
        if let Some(t) = self.inbound() {
            t.abort_connection();
        }
        if let Some(o) = self.outbound.borrow_mut().take() {
            o.transport().abort_connection();
        }
    }

    /// Both sides have sent their end: close both once flushed.
    fn maybe_finish(&self) {
        if self.inbound_eof.get() && self.outbound_eof.get() {
            if let Some(t) = self.inbound() {
                t.lose_connection();
            }
            if let Some(o) = &*self.outbound.borrow() {
                o.transport().lose_connection();
            }
        }
    }

    /// Connects out, then pumps target → client until the target's end.
    fn run_outbound(self: Rc<Self>) {
        let out = match GreenClientCreator::new()
            .timeout(self.opts.connect_timeout)
            .connect_tcp(self.to)
        {
            Ok(o) => Rc::new(o),
            Err(e) => {
                eprintln!("portforward: cannot reach {}: {e}", self.to);
                return self.close_both();
            }
        };
        let Some(inbound) = self.inbound().filter(|t| t.closed().is_none()) else {
            return; // the client left meanwhile; `out` closes as it drops
        };
        *self.outbound.borrow_mut() = Some(out.clone());
        inbound.resume_producing();
        loop {
            match out.recv(64 * 1024) {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    self.touch();
                    inbound.write(&chunk);
                    if inbound.closed().is_some() {
                        return;
                    }
                    // Back-pressure: wait while the client's buffer is above its high mark.
                    if self.writable.wait().is_err() {
                        return;
                    }
                }
                Err(_) => return self.close_both(),
            }
        }
        self.outbound_eof.set(true);
        inbound.write_eof();
        self.maybe_finish();
    }
}

/// The client's side: a protocol on the listening hub.
struct Inbound(Rc<Link>);

impl Protocol for Inbound {
    fn connection_made(&mut self, t: Transport) {
        t.pause_producing(); // until the target is connected
        *self.0.inbound.borrow_mut() = Some(t);
        let _ = self.0.writable.send(());
        self.0.touch();
        let link = self.0.clone();
        green::spawn(move || link.run_outbound());
    }

    fn data_received(&mut self, data: &[u8]) {
        self.0.touch();
        let out = self.0.outbound.borrow().clone();
        let Some(out) = out else { return };
        let ot = out.transport();
        ot.write(data);
        if ot.buffered() > 256 * 1024 {
            // The target reads slower than the client sends: stop reading the client until
            // the target's buffer drains.
            let Some(inbound) = self.0.inbound() else {
                return;
            };
            inbound.pause_producing();
            green::spawn(move || {
                if out.write(&[]).is_ok() {
                    inbound.resume_producing();
                }
            });
        }
    }

    fn eof_received(&mut self) -> bool {
        self.0.inbound_eof.set(true);
        if let Some(o) = &*self.0.outbound.borrow() {
            o.write_eof();
        }
        self.0.maybe_finish();
        true
    }

    fn connection_lost(&mut self, _reason: net::Reason) {
        self.0.live.set(self.0.live.get() - 1);
        if let Some(t) = self.0.idle.borrow_mut().take() {
            let _ = t.cancel();
        }
        if let Some(o) = self.0.outbound.borrow_mut().take() {
            o.transport().lose_connection();
        }
        let _ = self.0.writable.send(()); // let the pump see the end
    }

    fn pause_writing(&mut self) {
        self.0.writable.reset();
    }

    fn resume_writing(&mut self) {
        let _ = self.0.writable.send(());
    }
}

#[allow(dead_code)] // the robustness tests include this file for `serve`
fn main() {
    let mut port = 0u16;
    let mut secs = None;
    let mut to: Option<SocketAddr> = None;
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    let usage = "usage: portforward --to HOST:PORT [--port N] [--secs N] [--idle N] [--max N]";
    while let Some(arg) = args.next() {
        let mut num = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{usage}"))
        };
        match arg.as_str() {
            "--port" => port = num() as u16,
            "--secs" => secs = Some(num()),
            "--idle" => opts.idle = Duration::from_secs(num()),
            "--max" => opts.max_connections = num() as usize,
            "--to" => {
                let v = args.next().expect(usage);
                to = Some(
                    net::lookup_host(v.as_str())
                        .ok()
                        .and_then(|mut a| a.next())
                        .expect("--to HOST:PORT"),
                );
            }
            other => {
                eprintln!("{usage} (unknown argument {other:?})");
                std::process::exit(2);
            }
        }
    }
    let Some(to) = to else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    hub::scope(|| {
        let port = serve(SocketAddr::from(([127, 0, 0, 1], port)), to, opts).expect("listen");
        println!(
            "portforward: listening on {}, forwarding to {to}",
            port.local_addr()
        );
        match secs {
            Some(s) => green::sleep(Duration::from_secs(s)),
            None => hub::run(),
        }
        println!("portforward: stopping");
        let _ = green::block_on(port.stop_listening());
    }); // open connections are closed by the hub's shutdown
}
