//! What the example servers share: N hubs serving one port, an accept loop that survives running
//! out of file descriptors, the command line, and a log of one line per episode.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use filature::green;
use filature::hub::{self, HubHandle};
use filature::net::{TcpListener, TcpStream};

/// A server: `hubs` OS threads, each running a hub with its own listener on the server's port.
///
/// Why one listener per hub (`SO_REUSEPORT`) rather than one acceptor handing connections out:
/// a connection then never crosses threads (no hand-off through another hub's inbox, no wake-up
/// per connection), the kernel spreads new connections among the listeners, and each hub's
/// accept loop stands alone, so one that is backing off (out of descriptors) or busy does not
/// hold up the others.
pub(crate) struct Server {
    addr: SocketAddr,
    hubs: Vec<(HubHandle, JoinHandle<()>)>,
}

impl Server {
    /// Binds `hubs` listeners to `addr` (port 0: the first picks a free port, the others share
    /// it) and serves each from its own hub, running `handle` in a green thread per connection.
    pub(crate) fn start<H>(
        name: &'static str,
        addr: SocketAddr,
        hubs: usize,
        handle: H,
    ) -> io::Result<Server>
    where
        H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        // Every listener is bound here, so that a bind error reaches the caller.
        let first = TcpListener::bind_reuseport(addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..hubs {
            listeners.push(TcpListener::bind_reuseport(addr)?);
        }
        let handle = Arc::new(handle);
        let hubs = listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| spawn_hub(name, i, listener, handle.clone()))
            .collect::<io::Result<_>>()?;
        Ok(Server { addr, hubs })
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops every hub: the accept loops end and every open connection's green thread is
    /// unwound, closing its socket (the end of `hub::scope`).
    pub(crate) fn stop(self) {
        for (hub, _) in &self.hubs {
            hub.stop();
        }
        for (_, thread) in self.hubs {
            thread.join().expect("a hub thread panicked");
        }
    }

    /// Serves for `secs` seconds, then stops; forever with `None`.
    pub(crate) fn serve_for(self, name: &str, secs: Option<u64>) {
        match secs {
            Some(secs) => {
                std::thread::sleep(Duration::from_secs(secs));
                println!("{name}: {secs} s are up; stopping");
                self.stop();
            }
            None => {
                for (_, thread) in self.hubs {
                    thread.join().expect("a hub thread panicked");
                }
            }
        }
    }
}

fn spawn_hub<H>(
    name: &'static str,
    i: usize,
    listener: TcpListener,
    handle: Arc<H>,
) -> io::Result<(HubHandle, JoinHandle<()>)>
where
    H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("{name}-{i}"))
        .spawn(move || {
            // The scope unwinds every connection's green thread when the hub stops, while the
            // thread is still alive.
            hub::scope(|| {
                green::spawn(move || accept_loop(name, &listener, handle));
                tx.send(hub::current()).expect("start() waits for the hub");
                hub::run();
            })
        })?;
    let hub = rx.recv().expect("the hub thread starts");
    Ok((hub, thread))
}

/// Accepts connections for as long as the listener works. `accept_with_backoff` rides out
/// `EMFILE` and friends (one warning, sleeps that double up to 1 s, no busy loop) and skips
/// connections that died in the queue, so an error here is one no retry can fix.
fn accept_loop<H>(name: &str, listener: &TcpListener, handle: Arc<H>)
where
    H: Fn(TcpStream, SocketAddr) + 'static,
{
    loop {
        match listener.accept_with_backoff() {
            Ok((stream, peer)) => {
                let handle = handle.clone();
                green::spawn(move || handle(stream, peer));
            }
            Err(e) => {
                tracing::error!("{name}: accept failed: {e}; no longer accepting");
                return;
            }
        }
    }
}

/// The values of `--NAME N` flags, each starting at its default; prints `usage` and exits on
/// anything else.
pub(crate) fn flags<const K: usize>(
    usage: &str,
    mut flags: [(&str, Option<u64>); K],
) -> [Option<u64>; K] {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let flag = flags
            .iter_mut()
            .find(|(name, _)| arg.strip_prefix("--") == Some(*name));
        match (flag, args.next().and_then(|v| v.parse().ok())) {
            (Some(flag), Some(value)) => flag.1 = Some(value),
            _ => {
                eprintln!("usage: {usage} (at {arg:?})");
                std::process::exit(2);
            }
        }
    }
    flags.map(|(_, value)| value)
}

/// Log lines (filature's too, such as the accept loop's) to stderr.
pub(crate) fn init_log() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// How long one episode of a kind lasts, for [`episode`].
const EPISODE: Duration = Duration::from_secs(10);

/// Logs a warning, one line per episode: the first event of a `kind` is logged at once, more of
/// that kind in the next 10 s are only counted, and the count goes into the next line of that
/// kind. A flood of bad clients so costs a few lines, not one per client.
pub(crate) fn episode(kind: &'static str, what: fmt::Arguments<'_>) {
    static LAST: Mutex<BTreeMap<&str, (Instant, u64)>> = Mutex::new(BTreeMap::new());
    let now = Instant::now();
    let quiet = {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        match last.get_mut(kind) {
            Some((at, quiet)) if now.duration_since(*at) < EPISODE => {
                *quiet += 1;
                return;
            }
            Some(entry) => std::mem::replace(entry, (now, 0)).1,
            None => {
                last.insert(kind, (now, 0));
                0
            }
        }
    };
    if quiet == 0 {
        tracing::warn!("{what}");
    } else {
        tracing::warn!("{what} (and {quiet} more like it since the last such line)");
    }
}
