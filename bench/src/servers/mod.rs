//! The network benchmark servers, each run as its own child process
//! (`filature-bench __http_server <system> <port> <workers>`) so its CPU time can be read from
//! `/proc/<pid>/stat`. Every HTTP server runs the same program (`http_core`): same parsing, same
//! response bytes, same buffer size; only the runtime under it differs. `may_minihttp` is the may
//! project's own server, the strongest peer, run as it ships.
//!
//! A server prints `listening` on stdout once it accepts connections, then serves until killed.

pub(crate) mod http_core;

use std::io::Write;
use std::net::SocketAddr;

/// The hidden sub-command that runs one server.
pub(crate) const HTTP_SERVER_COMMAND: &str = "__http_server";

/// The HTTP servers: (name, what it is). `filature` joins once green sockets exist.
pub(crate) const HTTP_SYSTEMS: &[&str] = &["tokio", "may", "may_minihttp"];

/// Runs server `system` on 127.0.0.1:`port` with `workers` threads (hubs, runtime workers, may
/// workers); returns only on error.
pub(crate) fn run_http_server(system: &str, port: u16, workers: usize) -> Result<(), String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match system {
        "tokio" => tokio_server(addr, workers),
        "may" => may_server(addr, workers),
        "may_minihttp" => may_minihttp_server(addr, workers),
        other => Err(format!("unknown http server `{other}`")),
    }
}

fn announce() {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening");
    let _ = out.flush();
}

fn tokio_server(addr: SocketAddr, workers: usize) -> Result<(), String> {
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
            tokio::spawn(tokio_connection(stream));
        }
    })
}

async fn tokio_connection(mut s: tokio::net::TcpStream) {
    use http_core::{serve, Parsed, BUF};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; BUF];
    let mut filled = 0;
    let mut out = Vec::with_capacity(BUF);
    loop {
        let n = match s.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        match serve(&buf[..filled], &mut out) {
            Parsed::Close => return,
            Parsed::Requests { consumed } => {
                buf.copy_within(consumed..filled, 0);
                filled -= consumed;
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if filled == buf.len() {
            return;
        }
    }
}

fn may_server(addr: SocketAddr, workers: usize) -> Result<(), String> {
    may::config().set_workers(workers.max(1));
    let listener = may::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    announce();
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                may::go!(move || http_core::connection(s));
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
