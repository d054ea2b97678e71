//! A line-based chat room on `SpawnFactory` + `LineTransport`: every connection is a green
//! thread reading lines; each line goes to everyone else in the room.
//!
//! ```sh
//! cargo run --example chat -- --port 7002 --secs 300
//! nc 127.0.0.1 7002      # in two terminals; "/nick NAME" renames you, "/quit" leaves
//! ```
//!
//! Binds 127.0.0.1 (`--port 0`, the default, picks a free port) and prints its address. Lines
//! are capped at 1 KiB (a longer one ends that member's session). Broadcasts never block the
//! sender: they go into each member's transport buffer, and a member whose buffer passes
//! 1 MiB (it does not read) is dropped. `--secs N` stops after N seconds.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use filature::net::{self, LineTransport, SpawnFactory, Transport};
use filature::{green, hub};

const MAX_LINE: usize = 1024;
const MAX_BACKLOG: usize = 1 << 20;

#[derive(Default)]
struct Room {
    members: RefCell<Vec<(u64, String, Transport)>>,
    next_id: RefCell<u64>,
}

impl Room {
    /// Sends `line` to every member but `from`, without waiting for anyone.
    fn broadcast(&self, from: u64, line: &str) {
        let members = self.members.borrow().clone();
        for (id, _, t) in members {
            if id == from {
                continue;
            }
            if t.buffered() > MAX_BACKLOG {
                t.abort_connection(); // not reading: dropped
                continue;
            }
            t.write_sequence(&[line.as_bytes(), b"\n"]);
        }
    }

    fn serve(&self, mut lines: LineTransport) {
        let t = lines.get_ref().transport();
        let id = {
            let mut n = self.next_id.borrow_mut();
            *n += 1;
            *n
        };
        let mut name = format!("guest{id}");
        self.members.borrow_mut().push((id, name.clone(), t));
        let _ = lines.send_line(format!("welcome, {name}; /nick NAME, /quit").as_bytes());
        self.broadcast(id, &format!("* {name} joined"));
        loop {
            let line = match lines.read_line() {
                Ok(Some(l)) => String::from_utf8_lossy(&l).into_owned(),
                Ok(None) => break,
                Err(e) => {
                    let _ = lines.send_line(format!("error: {e}").as_bytes());
                    break;
                }
            };
            if line == "/quit" {
                break;
            } else if let Some(new) = line.strip_prefix("/nick ") {
                let new = new.trim().to_owned();
                self.broadcast(id, &format!("* {name} is now {new}"));
                for m in self.members.borrow_mut().iter_mut().filter(|m| m.0 == id) {
                    m.1 = new.clone();
                }
                name = new;
            } else {
                self.broadcast(id, &format!("{name}: {line}"));
            }
        }
        self.members.borrow_mut().retain(|m| m.0 != id);
        self.broadcast(id, &format!("* {name} left"));
        let _ = lines.into_inner().lose_connection();
    }
}

/// Serves a chat room on `addr`, on the current hub.
pub fn serve(addr: SocketAddr) -> std::io::Result<(net::ListeningPort, SpawnFactory)> {
    let room = Rc::new(Room::default());
    let factory = SpawnFactory::new(move |t| {
        room.serve(LineTransport::new(t).max_length(MAX_LINE));
    });
    Ok((net::listen_tcp(addr, factory.clone())?, factory))
}

fn main() {
    let mut port = 0u16;
    let mut secs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--secs" => secs = Some(args.next().and_then(|v| v.parse().ok()).expect("--secs N")),
            other => {
                eprintln!("usage: chat [--port N] [--secs N] (unknown argument {other:?})");
                std::process::exit(2);
            }
        }
    }
    hub::scope(|| {
        let (port, _factory) = serve(SocketAddr::from(([127, 0, 0, 1], port))).expect("listen");
        println!("chat: listening on {}", port.local_addr());
        match secs {
            Some(s) => green::sleep(Duration::from_secs(s)),
            None => hub::run(),
        }
        println!("chat: stopping");
        let _ = green::block_on(port.stop_listening());
    }); // members still connected are closed by the hub's shutdown
}
