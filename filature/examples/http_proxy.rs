//! An HTTP/1.1 forward proxy, one green thread per client connection (two while it tunnels).
//!
//! ```sh
//! cargo run --example http_proxy -- --port 3128 --secs 600
//! curl -x http://127.0.0.1:3128 http://127.0.0.1:8080/      # a plain request, forwarded
//! curl -p -x http://127.0.0.1:3128 http://127.0.0.1:8080/   # the same through a CONNECT tunnel
//! ```
//!
//! Binds 127.0.0.1 (`--port 0`, the default, picks a free port), prints
//! `http_proxy: listening on ADDR` once it listens, and with `--secs N` stops after N seconds.
//!
//! * **Requests** come in absolute form (`GET http://host:port/path HTTP/1.1`) and go upstream in
//!   origin form (`GET /path HTTP/1.1`, `Host: host:port`), without the hop-by-hop headers.
//!   Host names are looked up through `filature::net` (on `tpool`, off the hub).
//! * **Keep-alive** on both sides: a client connection serves request after request, and keeps
//!   its last upstream connection for the next request to the same `host:port`. If that
//!   connection turns out to have been closed by the server before it answered, a request
//!   without a body is sent once more on a fresh one.
//! * **Bodies** pass through as they come: `Content-Length` bodies by their length, chunked ones
//!   (requests and responses) unchanged, their framing parsed only to find where they end; a
//!   response with neither runs until the server closes, and then the client connection closes
//!   too.
//! * **`CONNECT host:port`** opens a tunnel: after `200` the bytes flow both ways at once, one
//!   green thread per direction; when one side ends its sending, the other side is told (a
//!   half-close), and the tunnel ends when both have.
//! * **Limits**: a request head must arrive whole within `--idle-secs` (10) of the proxy waiting
//!   for it and fit in 8 KiB (else `431`); a tunnel or a body that moves nothing for as long is
//!   closed; a connect gives up after 10 s.
//! * **Errors**: a request the proxy cannot parse gets `400`, an unsupported body encoding `501`,
//!   an upstream that cannot be reached or answers garbage `502`, one that is too slow `504`; each
//!   then closes the client connection, with one log line per episode. Once a response has begun,
//!   an upstream failure can only close the client connection.

#[path = "common/server.rs"]
mod server;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use filature::green;
use filature::net::TcpStream;
use server::Server;

/// The cap on a request or response head, and the read buffer of each side.
const HEAD_MAX: usize = 8 * 1024;
/// The cap on a chunk-size line or a trailer line.
const LINE_MAX: usize = 1024;
/// How long a connection to an upstream server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of `--idle-secs`.
const IDLE: Duration = Duration::from_secs(10);

fn main() {
    server::init_log();
    let [port, secs, idle] = server::flags(
        "http_proxy [--port N] [--secs N] [--idle-secs N]",
        [
            ("port", Some(0)),
            ("secs", None),
            ("idle-secs", Some(IDLE.as_secs())),
        ],
    );
    let port = u16::try_from(port.unwrap_or(0)).expect("--port: a port number");
    let idle = Duration::from_secs(idle.unwrap_or(10).max(1));
    let server = start(port, idle).expect("http_proxy: cannot listen");
    println!("http_proxy: listening on {}", server.addr());
    server.serve_for("http_proxy", secs);
}

/// Serves the proxy on 127.0.0.1:`port` from one hub.
pub(crate) fn start(port: u16, idle: Duration) -> io::Result<Server> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Server::start("http_proxy", addr, 1, move |stream, peer| {
        client(stream, peer, idle)
    })
}

/// Why a request failed: the status the client gets (if no response has begun) and the log
/// line (none for an end that is no failure).
struct Failure {
    status: Option<u16>,
    why: Option<String>,
}

fn fail(status: u16, why: impl Into<String>) -> Failure {
    Failure {
        status: Some(status),
        why: Some(why.into()),
    }
}

/// An end that is no failure (an idle keep-alive connection expires): closed, not logged.
fn quiet() -> Failure {
    Failure {
        status: None,
        why: None,
    }
}

/// A failure after the response began: the client connection can only be closed.
fn broken(why: impl Into<String>) -> Failure {
    Failure {
        status: None,
        why: Some(why.into()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// One client connection, in its own green thread: requests one after another until the client
/// closes, a request fails, or a `CONNECT` turns the connection into a tunnel.
fn client(stream: TcpStream, peer: SocketAddr, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(idle)); // a client that stops reading is dropped
    let mut client = Buffered::new(stream);
    let mut upstream: Option<Upstream> = None;
    loop {
        let result = match read_head(&mut client, idle, parse_request) {
            Ok(None) => return, // closed between requests
            Ok(Some(req)) if req.method == "CONNECT" => return tunnel(client, &req, peer, idle),
            Ok(Some(req)) => forward(&mut client, &req, &mut upstream, idle),
            Err(e) => Err(e.failure(false)),
        };
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err(f) => return report(&client.s, peer, f),
        }
    }
}

/// Answers a failure (if the response has not begun) and logs it, once per episode.
fn report(client: &TcpStream, peer: SocketAddr, f: Failure) {
    let Some(why) = f.why else {
        return; // quiet()
    };
    let kind = f.status.map_or("broken", reason);
    let status = f.status.map_or(String::new(), |s| format!(" ({s})"));
    server::episode(kind, format_args!("http_proxy: {peer}: {why}{status}"));
    if let Some(status) = f.status {
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            reason(status)
        );
        if (&*client).write_all(head.as_bytes()).is_ok() {
            linger(client);
        }
    }
}

/// After an error response: end our side and drop what the client still sends, briefly, so that
/// closing with unread input (which makes the kernel send a reset) cannot destroy the response.
fn linger(s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0; 4096];
    for _ in 0..16 {
        if !matches!((&*s).read(&mut buf), Ok(n) if n > 0) {
            return;
        }
    }
}

// ---- plain requests -------------------------------------------------------------------------

/// A kept upstream connection and the server it goes to.
struct Upstream {
    authority: String,
    conn: Buffered,
}

/// Forwards one request and its response. `Ok(true)`: the client connection stays open.
fn forward(
    client: &mut Buffered,
    req: &Request,
    upstream: &mut Option<Upstream>,
    idle: Duration,
) -> Result<bool, Failure> {
    let (authority, path) = absolute_form(&req.target)
        .ok_or_else(|| fail(400, format!("not an http:// URI: {:?}", req.target)))?;
    let body = request_body(&req.headers)?;
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {authority}\r\n", req.method).into_bytes();
    push_headers(&mut head, &req.headers, &["host"]);
    head.extend_from_slice(b"\r\n");

    let reused = matches!(upstream, Some(u) if u.authority == authority);
    if !reused {
        *upstream = Some(connect(&authority, idle)?);
    }
    let mut up = upstream.take().expect("connected above");
    let resp = match exchange(client, &mut up.conn, &head, &body, idle)? {
        Some(resp) => resp,
        // A kept connection the server had closed: once more on a fresh one, if nothing of the
        // request is lost (no body was read from the client).
        None if reused && matches!(body, Body::None) => {
            up = connect(&authority, idle)?;
            exchange(client, &mut up.conn, &head, &body, idle)?
                .ok_or_else(|| fail(502, format!("{authority} closed without answering")))?
        }
        None => return Err(fail(502, format!("{authority} closed without answering"))),
    };
    let resp_body = response_body(&req.method, &resp);
    let until_close = matches!(resp_body, Body::UntilClose);
    let keep_client = !until_close && keeps_alive(req.version, &req.headers);
    let keep_upstream = !until_close && keeps_alive(resp.version, &resp.headers);

    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.code, resp.reason).into_bytes();
    push_headers(&mut out, &resp.headers, &[]);
    if !keep_client {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (&client.s)
        .write_all(&out)
        .map_err(|e| broken(format!("writing to the client: {e}")))?;
    up.conn
        .copy_body(&resp_body, &client.s, idle)
        .map_err(|e| broken(format!("relaying the response from {authority}: {e}")))?;
    if keep_upstream {
        *upstream = Some(up);
    }
    Ok(keep_client)
}

/// Sends the request head and body upstream and reads the response head (passing `1xx`
/// interim responses on to the client). `Ok(None)`: the server closed the connection before it
/// answered (a kept connection it had timed out, usually).
fn exchange(
    client: &mut Buffered,
    up: &mut Buffered,
    head: &[u8],
    body: &Body,
    idle: Duration,
) -> Result<Option<Response>, Failure> {
    if (&up.s).write_all(head).is_err() {
        return Ok(None);
    }
    client
        .copy_body(body, &up.s, idle)
        .map_err(|e| fail(502, format!("relaying the request body: {e}")))?;
    loop {
        let resp = match read_head(up, idle, parse_response) {
            Ok(Some(resp)) => resp,
            Ok(None) => return Ok(None),
            Err(HeadError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e.failure(true)),
        };
        if resp.code == 101 {
            return Err(fail(502, "the upstream server switched protocols unasked"));
        }
        if !(100..200).contains(&resp.code) {
            return Ok(Some(resp));
        }
        let mut interim = format!("HTTP/1.1 {} {}\r\n", resp.code, resp.reason).into_bytes();
        push_headers(&mut interim, &resp.headers, &[]);
        interim.extend_from_slice(b"\r\n");
        (&client.s)
            .write_all(&interim)
            .map_err(|e| broken(format!("writing to the client: {e}")))?;
    }
}

/// Connects to `authority` (`host:port`, the port 80 by default), looking the host up through
/// `filature::net` (on `tpool`).
fn connect(authority: &str, idle: Duration) -> Result<Upstream, Failure> {
    let (host, port) =
        split_authority(authority).ok_or_else(|| fail(400, format!("bad host: {authority:?}")))?;
    let addrs = filature::net::lookup_host((host, port))
        .map_err(|e| fail(502, format!("cannot resolve {host}: {e}")))?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_write_timeout(Some(idle));
                return Ok(Upstream {
                    authority: authority.to_owned(),
                    conn: Buffered::new(s),
                });
            }
            Err(e) => last = e,
        }
    }
    let status = if last.kind() == io::ErrorKind::TimedOut {
        504
    } else {
        502
    };
    Err(fail(
        status,
        format!("cannot connect to {authority}: {last}"),
    ))
}

/// `http://authority/path?query` → (`authority`, `/path?query`).
fn absolute_form(target: &str) -> Option<(String, String)> {
    let scheme = target.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = &target[7..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let path = match path.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Some((authority.to_ascii_lowercase(), path))
}

/// `host:port`, `host` (port 80), `[v6]:port` → (host, port).
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, 80),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

// ---- CONNECT tunnels ------------------------------------------------------------------------

/// Runs a `CONNECT` tunnel to the end: both directions at once, this green thread carrying the
/// client's bytes upstream and a second one the server's back.
fn tunnel(client: Buffered, req: &Request, peer: SocketAddr, idle: Duration) {
    let up = match req.target.contains(':').then(|| connect(&req.target, idle)) {
        Some(Ok(up)) => up,
        Some(Err(f)) => return report(&client.s, peer, f),
        None => {
            return report(
                &client.s,
                peer,
                fail(400, format!("CONNECT to {:?}", req.target)),
            )
        }
    };
    let established = (&client.s).write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n");
    // What the client sent after its request head is already the tunnel's.
    let early = &client.buf[client.start..client.end];
    if established.is_err() || (&up.conn.s).write_all(early).is_err() {
        return;
    }
    let (client, server) = (Rc::new(client.s), Rc::new(up.conn.s));
    let last = Rc::new(Cell::new(Instant::now()));
    let back = green::spawn({
        let (client, server, last) = (client.clone(), server.clone(), last.clone());
        move || pump(&server, &client, &last, idle)
    });
    let there = pump(&client, &server, &last, idle);
    let back = back.join();
    if let Some(e) = there.err().or(back.err()) {
        server::episode(
            "tunnel",
            format_args!("http_proxy: {peer}: tunnel to {} ended: {e}", req.target),
        );
    }
}

/// Copies `from` to `to` until `from` ends, then passes the end on (shuts `to` for writing). On
/// an error, or once neither direction has moved a byte for `idle`, shuts both sockets, which
/// ends the other direction too.
fn pump(from: &TcpStream, to: &TcpStream, last: &Cell<Instant>, idle: Duration) -> io::Result<()> {
    let result = copy_while_active(from, to, last, idle);
    match result {
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
    result
}

fn copy_while_active(
    mut from: &TcpStream,
    mut to: &TcpStream,
    last: &Cell<Instant>,
    idle: Duration,
) -> io::Result<()> {
    from.set_read_timeout(Some(idle))?;
    let mut buf = vec![0; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                to.write_all(&buf[..n])?;
                last.set(Instant::now());
            }
            // Quiet this way, but the other direction may be busy: the tunnel is not idle.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && last.get().elapsed() < idle => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {idle:?}"),
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

// ---- reading heads and bodies ---------------------------------------------------------------

/// A socket and its read buffer: heads are parsed in place, bodies pass through.
struct Buffered {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// How a head failed to arrive.
enum HeadError {
    /// The peer closed in the middle of it.
    Truncated,
    /// Not complete within the idle time; `begun`: not even a byte of it arrived.
    Idle {
        begun: bool,
    },
    TooLarge,
    Garbage(httparse::Error),
    Io(io::Error),
}

impl HeadError {
    /// The client's faults are 4xx (or a silent close); the upstream server's, 502 and 504.
    fn failure(self, upstream: bool) -> Failure {
        let from = if upstream {
            "the upstream server"
        } else {
            "the client"
        };
        match self {
            HeadError::Truncated if upstream => fail(502, format!("{from} closed mid-head")),
            HeadError::Truncated => broken(format!("{from} closed mid-head")),
            HeadError::Idle { .. } if upstream => fail(504, format!("{from} sent no head in time")),
            HeadError::Idle { begun: true } => {
                broken(format!("{from} sent no complete head in time"))
            }
            HeadError::Idle { begun: false } => quiet(),
            HeadError::TooLarge if upstream => fail(502, format!("{from}'s head is too large")),
            HeadError::TooLarge => fail(431, format!("{from}'s head is too large")),
            HeadError::Garbage(e) if upstream => fail(502, format!("{from} sent garbage: {e}")),
            HeadError::Garbage(e) => fail(400, format!("{from} sent garbage: {e}")),
            HeadError::Io(e) if upstream => fail(502, format!("reading {from}: {e}")),
            HeadError::Io(e) => broken(format!("reading {from}: {e}")),
        }
    }
}

/// Reads until `parse` finds a complete head: it must arrive within `idle` of the start and fit
/// in the buffer. `Ok(None)`: the peer closed before sending a byte of it.
fn read_head<T>(
    b: &mut Buffered,
    idle: Duration,
    parse: fn(&[u8]) -> httparse::Result<(usize, T)>,
) -> Result<Option<T>, HeadError> {
    let started = Instant::now();
    loop {
        match parse(&b.buf[b.start..b.end]) {
            Ok(httparse::Status::Complete((n, head))) => {
                b.start += n;
                return Ok(Some(head));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Garbage(e)),
        }
        if b.end - b.start == HEAD_MAX {
            return Err(HeadError::TooLarge);
        }
        let left = idle.saturating_sub(started.elapsed());
        let idle_error = HeadError::Idle {
            begun: b.start != b.end,
        };
        if left.is_zero() || b.s.set_read_timeout(Some(left)).is_err() {
            return Err(idle_error);
        }
        match b.fill() {
            Ok(0) if b.start == b.end => return Ok(None),
            Ok(0) => return Err(HeadError::Truncated),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(idle_error),
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

impl Buffered {
    fn new(s: TcpStream) -> Buffered {
        Buffered {
            s,
            buf: vec![0; HEAD_MAX],
            start: 0,
            end: 0,
        }
    }

    /// Reads more after what is buffered (moving that to the front first); `Ok(0)` at the end.
    fn fill(&mut self) -> io::Result<usize> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let n = (&self.s).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Makes sure something is buffered; an error at the end of the stream.
    fn fill_some(&mut self) -> io::Result<()> {
        if self.start == self.end && self.fill()? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Copies a body of the given framing to `to`, unchanged; the reads may wait `idle` each.
    fn copy_body(&mut self, body: &Body, to: &TcpStream, idle: Duration) -> io::Result<()> {
        self.s.set_read_timeout(Some(idle))?;
        match *body {
            Body::None => Ok(()),
            Body::Length(n) => self.copy_exact(n, to),
            Body::Chunked => self.copy_chunked(to),
            Body::UntilClose => loop {
                if self.start == self.end && self.fill()? == 0 {
                    return Ok(());
                }
                self.copy_exact((self.end - self.start) as u64, to)?;
            },
        }
    }

    fn copy_exact(&mut self, mut n: u64, mut to: &TcpStream) -> io::Result<()> {
        while n > 0 {
            self.fill_some()?;
            let k = (self.end - self.start).min(usize::try_from(n).unwrap_or(usize::MAX));
            to.write_all(&self.buf[self.start..self.start + k])?;
            self.start += k;
            n -= k as u64;
        }
        Ok(())
    }

    /// A chunked body, passed on as it is: size line, data and CRLF per chunk, then the last
    /// chunk's trailers up to an empty line.
    fn copy_chunked(&mut self, mut to: &TcpStream) -> io::Result<()> {
        loop {
            let line = self.line()?;
            to.write_all(&line)?;
            let size = match httparse::parse_chunk_size(&line) {
                Ok(httparse::Status::Complete((_, size))) => size,
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")),
            };
            if size == 0 {
                loop {
                    let trailer = self.line()?;
                    to.write_all(&trailer)?;
                    if trailer == b"\r\n" || trailer == b"\n" {
                        return Ok(());
                    }
                }
            }
            self.copy_exact(size + 2, to)?; // the data and its CRLF
        }
    }

    /// One line, with its line end.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            self.fill_some()?;
            let avail = &self.buf[self.start..self.end];
            let (take, done) = match avail.iter().position(|&c| c == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            line.extend_from_slice(&avail[..take]);
            self.start += take;
            if done {
                return Ok(line);
            }
            if line.len() > LINE_MAX {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
        }
    }
}

// ---- heads ----------------------------------------------------------------------------------

type Header = (String, Vec<u8>);

struct Request {
    method: String,
    target: String,
    version: u8,
    headers: Vec<Header>,
}

struct Response {
    code: u16,
    reason: String,
    version: u8,
    headers: Vec<Header>,
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_owned()))
        .collect()
}

fn parse_request(buf: &[u8]) -> httparse::Result<(usize, Request)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(httparse::Status::Partial),
    };
    let req = Request {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        version: req.version.unwrap_or(1),
        headers: owned(req.headers),
    };
    Ok(httparse::Status::Complete((n, req)))
}

fn parse_response(buf: &[u8]) -> httparse::Result<(usize, Response)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(httparse::Status::Partial),
    };
    let resp = Response {
        code: resp.code.unwrap_or(502),
        reason: resp.reason.unwrap_or_default().to_owned(),
        version: resp.version.unwrap_or(1),
        headers: owned(resp.headers),
    };
    Ok(httparse::Status::Complete((n, resp)))
}

/// How a message's body is framed.
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

fn header<'a>(headers: &'a [Header], name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
    let name = name.to_owned();
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
        .map(|(_, v)| v.as_slice())
}

/// The comma-separated tokens of every `name` header, lower-cased.
fn tokens(headers: &[Header], name: &str) -> Vec<String> {
    header(headers, name)
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn content_length(headers: &[Header]) -> Result<Option<u64>, Failure> {
    let mut lengths = header(headers, "content-length").map(|v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(None),
        (Some(Some(n)), None) => Ok(Some(n)),
        _ => Err(fail(400, "a bad or repeated Content-Length")),
    }
}

/// A request's body. Both `Transfer-Encoding` and `Content-Length` is refused (the classic
/// request-smuggling ambiguity), and so is an encoding other than chunked.
fn request_body(headers: &[Header]) -> Result<Body, Failure> {
    let encodings = tokens(headers, "transfer-encoding");
    let length = content_length(headers)?;
    match (encodings.last().map(String::as_str), length) {
        (None, None) => Ok(Body::None),
        (None, Some(n)) => Ok(Body::Length(n)),
        (Some(_), Some(_)) => Err(fail(400, "both Transfer-Encoding and Content-Length")),
        (Some("chunked"), None) if encodings.len() == 1 => Ok(Body::Chunked),
        (Some(_), None) => Err(fail(501, "a Transfer-Encoding other than chunked")),
    }
}

/// A response's body (RFC 9112, section 6.3).
fn response_body(method: &str, resp: &Response) -> Body {
    if method == "HEAD" || resp.code < 200 || resp.code == 204 || resp.code == 304 {
        return Body::None;
    }
    let encodings = tokens(&resp.headers, "transfer-encoding");
    match encodings.last().map(String::as_str) {
        Some("chunked") => Body::Chunked,
        Some(_) => Body::UntilClose,
        None => match content_length(&resp.headers) {
            Ok(Some(n)) => Body::Length(n),
            _ => Body::UntilClose,
        },
    }
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
fn keeps_alive(version: u8, headers: &[Header]) -> bool {
    let mut said = tokens(headers, "connection");
    said.extend(tokens(headers, "proxy-connection"));
    match version {
        1 => !said.iter().any(|t| t == "close"),
        _ => said.iter().any(|t| t == "keep-alive"),
    }
}

/// Headers that concern one connection only, never forwarded (RFC 9110, section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Appends the end-to-end headers: not hop-by-hop, not named in `Connection`, not in `skip`.
fn push_headers(out: &mut Vec<u8>, headers: &[Header], skip: &[&str]) {
    let named = tokens(headers, "connection");
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str())
            || skip.contains(&lower.as_str())
            || named.contains(&lower)
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}
