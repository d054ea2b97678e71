//! The network benchmark servers, each run as its own child process
//! (`filature-bench __http_server <system> <port> <workers>`) so its CPU time can be read from
//! `/proc/<pid>/stat`. Every HTTP server runs the same program (`http_core`): same parsing, same
//! response bytes, same buffer size; only the runtime under it differs. `may_minihttp` is the may
//! project's own server, the strongest peer, run as it ships.
//!
//! A server prints `listening` on stdout once it accepts connections, then serves until killed.

/// `hello_http`'s connection loop, the one file every HTTP server here runs (the example is the
/// filature benchmark server; included from it rather than copied).
#[path = "../../../filature/examples/common/http_core.rs"]
pub(crate) mod http_core;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The hidden sub-command that runs one server.
pub(crate) const HTTP_SERVER_COMMAND: &str = "__http_server";

/// The hidden sub-command that runs one echo server.
pub(crate) const ECHO_SERVER_COMMAND: &str = "__echo_server";

/// The HTTP servers.
pub(crate) const HTTP_SYSTEMS: &[&str] = &["filature", "tokio", "may", "may_minihttp"];

/// The echo servers.
pub(crate) const ECHO_SYSTEMS: &[&str] = &["filature", "tokio", "may"];

/// The `protocol_echo` servers: filature's echo as a `Protocol`, as a `SpawnFactory` handler on a
/// `GreenTransport`, and on green sockets, against tokio's.
pub(crate) const PROTOCOL_ECHO_SYSTEMS: &[&str] = &[
    "filature-protocol",
    "filature-green-transport",
    "filature",
    "tokio",
];

/// The `protocol_http` servers: the HTTP core as a filature `Protocol`, on green sockets, and on
/// tokio.
pub(crate) const PROTOCOL_HTTP_SYSTEMS: &[&str] = &["filature-protocol", "filature", "tokio"];

/// A benchmark server in its own process (`exe <command> <system> <port> <workers>`), killed
/// when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server and waits until it says it listens.
    pub(crate) fn start(command: &str, system: &str, workers: usize) -> Result<Self, String> {
        let port = free_port()?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args([command, system, &port.to_string(), &workers.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the {system} server: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("{system} server: {e}"))?;
        let server = ServerProcess {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        };
        if line.trim() != "listening" {
            return Err(format!("the {system} server did not start: {line:?}"));
        }
        Ok(server)
    }

    fn proc_file(&self, what: &str) -> Result<String, String> {
        std::fs::read_to_string(format!("/proc/{}/{what}", self.child.id()))
            .map_err(|e| format!("/proc/{}/{what}: {e}", self.child.id()))
    }

    /// CPU time (user + system) the server has used, in microseconds.
    pub(crate) fn cpu_us(&self) -> Result<f64, String> {
        let stat = self.proc_file("stat")?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')').ok_or("bad stat")? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| -> Result<f64, String> {
            fields
                .get(i)
                .ok_or("short stat")?
                .parse::<f64>()
                .map_err(|e| e.to_string())
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok((field(11)? + field(12)?) * 1e6 / hz)
    }

    /// The server's resident set, in KiB.
    pub(crate) fn rss_kib(&self) -> Result<f64, String> {
        let statm = self.proc_file("statm")?;
        let pages: f64 = statm
            .split_whitespace()
            .nth(1)
            .ok_or("short statm")?
            .parse()
            .map_err(|e: std::num::ParseFloatError| e.to_string())?;
        Ok(pages * 4.0)
    }

    /// How many file descriptors the server has open.
    pub(crate) fn fd_count(&self) -> Result<usize, String> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map_err(|e| e.to_string())?
            .count())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now (the server binds it a moment later).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Runs server `system` on 127.0.0.1:`port` with `workers` threads (hubs, runtime workers, may
/// workers); returns only on error.
pub(crate) fn run_http_server(system: &str, port: u16, workers: usize) -> Result<(), String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match system {
        "filature" => filature_server(addr, workers, |s| {
            http_core::connection(s, http_core::IDLE);
        }),
        "filature-protocol" => protocol_server(addr, || Box::new(HttpProtocol::default())),
        "tokio" => tokio_server(addr, workers, tokio_connection),
        "may" => may_server(addr, workers, |s| {
            http_core::connection(s, http_core::IDLE);
        }),
        "may_minihttp" => may_minihttp_server(addr, workers),
        other => Err(format!("unknown http server `{other}`")),
    }
}

fn announce() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening");
    let _ = out.flush();
}

/// A tokio server: a current-thread runtime for one worker, a multi-thread one otherwise; a task
/// per connection running `serve`.
fn tokio_server<F, Fut>(addr: SocketAddr, workers: usize, serve: F) -> Result<(), String>
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| e.to_string())?;
        announce();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    })
}

/// `http_core::connection` in tokio's terms: the same parse, answers, caps and idle rule (a
/// request complete within `IDLE` of the server waiting for it; a write that waits `IDLE` for a
/// peer that does not read ends the connection), with tokio's timers instead of socket timeouts.
async fn tokio_connection(mut s: tokio::net::TcpStream) {
    use http_core::{serve, Parsed, BUF, IDLE};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::{timeout, Instant};
    let mut buf = vec![0u8; BUF];
    let mut filled = 0;
    let mut out = Vec::with_capacity(BUF);
    let mut waiting_since = Instant::now();
    loop {
        if filled == 0 {
            waiting_since = Instant::now();
        }
        let left = IDLE.saturating_sub(waiting_since.elapsed());
        let n = match timeout(left, s.read(&mut buf[filled..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        filled += n;
        let parsed = serve(&buf[..filled], &mut out);
        if let Parsed::Requests { consumed } = parsed {
            buf.copy_within(consumed..filled, 0);
            filled -= consumed;
        }
        if !out.is_empty() {
            match timeout(IDLE, s.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                _ => return,
            }
        }
        if let Parsed::Close(_) = parsed {
            // The lingering close of `http_core::connection`: end our side, drain a little.
            let _ = s.shutdown().await;
            let mut drained = 0;
            while drained < 64 * 1024 {
                match timeout(std::time::Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => drained += n,
                    _ => return,
                }
            }
            return;
        }
    }
}

/// What `http_core::connection` needs of a may socket.
impl http_core::Conn for may::net::TcpStream {
    fn set_read_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        may::net::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        may::net::TcpStream::set_write_timeout(self, t)
    }
    fn shutdown_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// A may server: `workers` may workers, a coroutine per connection running `serve`.
fn may_server(
    addr: SocketAddr,
    workers: usize,
    serve: fn(may::net::TcpStream),
) -> Result<(), String> {
    may::config().set_workers(workers.max(1));
    let listener = may::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    announce();
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                may::go!(move || serve(s));
            }
            Err(_) => may::coroutine::sleep(std::time::Duration::from_millis(10)),
        }
    }
    Ok(())
}

#[derive(Clone)]
struct Hello;

impl may_minihttp::HttpService for Hello {
    fn call(
        &mut self,
        _req: may_minihttp::Request,
        rsp: &mut may_minihttp::Response,
    ) -> std::io::Result<()> {
        rsp.header("Content-Type: text/plain");
        rsp.body("Hello, World!");
        Ok(())
    }
}

fn may_minihttp_server(addr: SocketAddr, workers: usize) -> Result<(), String> {
    may::config().set_workers(workers.max(1));
    let server = may_minihttp::HttpServer(Hello)
        .start(addr)
        .map_err(|e| e.to_string())?;
    announce();
    server
        .join()
        .map_err(|_| "may_minihttp's server panicked".to_string())
}

/// Runs echo server `system` on 127.0.0.1:`port` with `workers` threads; returns only on error.
/// Each connection reads into its own 4 KiB buffer and writes back what it read.
pub(crate) fn run_echo_server(system: &str, port: u16, workers: usize) -> Result<(), String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match system {
        "filature" => filature_server(addr, workers, echo_connection),
        "filature-protocol" => protocol_server(addr, || Box::new(EchoProtocol(None))),
        "filature-green-transport" => green_transport_echo(addr),
        "tokio" => tokio_server(addr, 1, tokio_echo_connection),
        "may" => may_server(addr, workers, echo_connection),
        other => Err(format!("unknown echo server `{other}`")),
    }
}

/// The echo loop for blocking-style sockets (filature, may).
pub(crate) fn echo_connection<S: std::io::Read + std::io::Write>(mut s: S) {
    // On the heap, as tokio's task has it (same allocation in every server).
    let mut buf = vec![0u8; ECHO_BUF];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Each echo connection's read buffer.
pub(crate) const ECHO_BUF: usize = 4096;

async fn tokio_echo_connection(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; ECHO_BUF];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A filature server: `hubs` hubs, each inside `hub::scope` with its own `SO_REUSEPORT` listener
/// on `addr` (the kernel spreads connections over them), a green thread per connection running
/// `serve`. One hub runs on the main thread, as tokio's current-thread runtime does here.
fn filature_server(
    addr: SocketAddr,
    hubs: usize,
    serve: fn(filature::net::TcpStream),
) -> Result<(), String> {
    use filature::{green, hub, net::TcpListener};
    let mut listeners = Vec::new();
    for _ in 0..hubs.max(1) {
        listeners.push(TcpListener::bind_reuseport(addr).map_err(|e| e.to_string())?);
    }
    announce();
    let accept_loop = move |listener: TcpListener| {
        hub::scope(|| loop {
            match listener.accept_with_backoff() {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    green::spawn(move || serve(stream));
                }
                Err(_) => return,
            }
        })
    };
    if listeners.len() == 1 {
        accept_loop(listeners.pop().expect("one"));
        return Err("the accept loop ended".into());
    }
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            std::thread::Builder::new()
                .name(format!("hub-{i}"))
                .spawn(move || accept_loop(listener))
                .expect("spawn a hub thread")
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Err("every hub's accept loop ended".into())
}

/// Serves `addr` with a `Protocol` per connection on this thread's hub (one hub).
fn protocol_server(
    addr: SocketAddr,
    build: fn() -> Box<dyn filature::net::Protocol>,
) -> Result<(), String> {
    use filature::{hub, net};
    hub::scope(|| {
        let _port = net::listen_tcp(addr, move |_peer| Some(build())).map_err(|e| e.to_string())?;
        announce();
        hub::run();
        Err("the hub stopped".to_string())
    })
}

/// Echo as a Twisted-style protocol: write back what arrives.
struct EchoProtocol(Option<filature::net::Transport>);

impl filature::net::Protocol for EchoProtocol {
    fn connection_made(&mut self, transport: filature::net::Transport) {
        self.0 = Some(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.0 {
            t.write(data);
        }
    }
}

/// The HTTP core as a protocol: parse what arrived (keeping a partial request), answer every
/// complete one, close on garbage or an oversized head.
#[derive(Default)]
struct HttpProtocol {
    transport: Option<filature::net::Transport>,
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl filature::net::Protocol for HttpProtocol {
    fn connection_made(&mut self, transport: filature::net::Transport) {
        self.transport = Some(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        let Some(t) = self.transport.clone() else {
            return;
        };
        let parsed = if self.pending.is_empty() {
            http_core::serve(data, &mut self.out)
        } else {
            self.pending.extend_from_slice(data);
            http_core::serve(&self.pending, &mut self.out)
        };
        if !self.out.is_empty() {
            t.write(&self.out);
            self.out.clear();
        }
        match parsed {
            http_core::Parsed::Requests { consumed } => {
                if self.pending.is_empty() {
                    self.pending.extend_from_slice(&data[consumed..]);
                } else {
                    self.pending.drain(..consumed);
                }
            }
            http_core::Parsed::Close(_) => t.lose_connection(),
        }
    }
}

/// Echo on eventlib's bridge: a green thread per connection reads chunks from a
/// `GreenTransport` and writes them back.
fn green_transport_echo(addr: SocketAddr) -> Result<(), String> {
    use filature::{hub, net};
    hub::scope(|| {
        // The green-socket server's echo loop, over the GreenTransport's `Read`/`Write`.
        let factory = net::SpawnFactory::new(echo_connection::<net::GreenTransport>);
        let _port = net::listen_tcp(addr, factory).map_err(|e| e.to_string())?;
        announce();
        hub::run();
        Err("the hub stopped".to_string())
    })
}
