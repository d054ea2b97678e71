//! A green-thread-per-connection echo server on filature's green sockets.
//!
//! ```sh
//! cargo run --example echo -- --port 7000 --secs 60
//! nc 127.0.0.1 7000      # type lines; they come back
//! ```
//!
//! Binds 127.0.0.1 (`--port 0`, the default, picks a free port), prints its address once it
//! listens, and with `--secs N` stops after N seconds: the accept loop is killed and the hub's
//! shutdown unwinds every connection's green thread, closing its socket.

use std::io::{Read, Write};
use std::time::Duration;

use filature::net::{TcpListener, TcpStream};
use filature::{green, hub};

fn main() {
    let mut port = 0u16;
    let mut secs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--secs" => secs = Some(args.next().and_then(|v| v.parse().ok()).expect("--secs N")),
            other => {
                eprintln!("usage: echo [--port N] [--secs N] (unknown argument {other:?})");
                std::process::exit(2);
            }
        }
    }
    hub::scope(|| {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        println!(
            "echo: listening on {}",
            listener.local_addr().expect("local address")
        );
        let acceptor = green::spawn(move || loop {
            match listener.accept_with_backoff() {
                Ok((stream, _peer)) => {
                    green::spawn(move || echo(stream));
                }
                Err(e) => {
                    eprintln!("echo: accept failed: {e}");
                    return;
                }
            }
        });
        match secs {
            Some(s) => {
                green::sleep(Duration::from_secs(s));
                acceptor.kill();
                println!("echo: {s} s are up; stopping");
            }
            None => {
                acceptor.join();
            }
        }
    }); // connections still open are unwound here, their sockets closed
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
