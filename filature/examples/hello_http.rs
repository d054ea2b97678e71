//! A keep-alive, pipelining HTTP/1.1 server answering `Hello, World!` to every request, one green
//! thread per connection. It is also the benchmark server: its connection loop
//! (`common/http_core.rs`) is the one every server in `filature-bench` runs.
//!
//! ```sh
//! cargo run --release --example hello_http -- --port 8080 --hubs 2 --secs 60
//! curl -v http://127.0.0.1:8080/
//! wrk -t2 -c100 -d10s http://127.0.0.1:8080/
//! ```
//!
//! Binds 127.0.0.1 (`--port 0`, the default, picks a free port) and prints
//! `hello_http: listening on ADDR` once it listens. `--hubs N` serves the port from N OS threads,
//! each running a hub with its own `SO_REUSEPORT` listener and accept loop, rather than one
//! acceptor handing connections to the others: the kernel spreads the connections, none crosses
//! threads (no hand-off and wake-up per connection), and a hub that is busy or backing off (out
//! of descriptors) holds up no other. `--secs N` stops after N seconds, closing every connection.
//!
//! What it does not put up with, by default: a connection that has not sent a complete request
//! within `--idle-secs` (10) of the server waiting for it is closed (an idle keep-alive
//! connection or a slowloris client); so is one that does not read its responses for as long.
//! Headers past 4 KiB get `431`, garbage `400`, a body past 4 KiB `413`, a chunked body `501`,
//! each followed by a close. Each such end is logged, one line per episode.

#[path = "common/http_core.rs"]
pub(crate) mod http_core;
#[path = "common/server.rs"]
pub(crate) mod server;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use filature::net::TcpStream;
use http_core::Ended;
use server::Server;

fn main() {
    server::init_log();
    let [port, hubs, secs, idle] = server::flags(
        "hello_http [--port N] [--hubs N] [--secs N] [--idle-secs N]",
        [
            ("port", Some(0)),
            ("hubs", Some(1)),
            ("secs", None),
            ("idle-secs", Some(http_core::IDLE.as_secs())),
        ],
    );
    let port = u16::try_from(port.unwrap_or(0)).expect("--port: a port number");
    let hubs = hubs.unwrap_or(1).max(1) as usize;
    let idle = Duration::from_secs(idle.unwrap_or(10).max(1));
    let server = start(port, hubs, idle).expect("hello_http: cannot listen");
    println!("hello_http: listening on {}", server.addr());
    server.serve_for("hello_http", secs);
}

/// Serves 127.0.0.1:`port` from `hubs` hubs; a connection sending no complete request for
/// `idle` is closed.
pub(crate) fn start(port: u16, hubs: usize, idle: Duration) -> io::Result<Server> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Server::start("hello_http", addr, hubs, move |stream, peer| {
        connection(stream, peer, idle)
    })
}

/// One connection, in its own green thread.
fn connection(stream: TcpStream, peer: SocketAddr, idle: Duration) {
    // Responses leave whole, once per read: nothing to gain from Nagle's wait for an ack.
    let _ = stream.set_nodelay(true);
    let (kind, what) = match http_core::connection(stream, idle) {
        Ended::Closed | Ended::Idle => return, // the ends of a well-behaved client
        Ended::Truncated => (
            "truncated",
            "the client closed in the middle of a request".into(),
        ),
        Ended::TooSlow => ("slow", format!("no complete request within {idle:?}")),
        Ended::Stalled => ("stalled", format!("the client read nothing for {idle:?}")),
        Ended::Garbage => ("garbage", "not HTTP/1.x: answered 400".into()),
        Ended::HeadersTooLarge => ("headers", "headers too large: answered 431".into()),
        Ended::BodyTooLarge => ("body", "body too large: answered 413".into()),
        Ended::Unsupported => ("encoding", "a Transfer-Encoding body: answered 501".into()),
        Ended::Io(e) => ("io", e.to_string()),
    };
    server::episode(kind, format_args!("hello_http: {peer}: closed: {what}"));
}
