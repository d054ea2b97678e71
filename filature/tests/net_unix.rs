//! Unix domain sockets: the same client code under `std::os::unix::net` and `filature::net`
//! must agree; the filature side runs in the main context and in green threads.

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::Duration;

use common::Watchdog;

fn kind<T>(r: io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

fn temp_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("filature-net-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

macro_rules! scenarios {
    ($m:ident, $($net:tt)*) => {
        mod $m {
            use super::*;
            use $($net)*::{UnixDatagram, UnixListener, UnixStream};

            pub(crate) fn streams(tag: &str) -> Vec<String> {
                let mut out = Vec::new();
                let path = temp_path(tag);
                let l = UnixListener::bind(&path).unwrap();
                out.push(format!("in use {}", kind(UnixListener::bind(&path))));
                let peer = std::thread::spawn({
                    let path = path.clone();
                    move || {
                        let mut c = std::os::unix::net::UnixStream::connect(path).unwrap();
                        c.write_all(b"hello").unwrap();
                        c.shutdown(Shutdown::Write).unwrap();
                        let mut back = String::new();
                        c.read_to_string(&mut back).unwrap();
                        back
                    }
                });
                let (mut s, _) = l.accept().unwrap();
                let mut got = String::new();
                s.read_to_string(&mut got).unwrap();
                out.push(format!("got {got:?}"));
                s.write_all(b"bye").unwrap();
                out.push(format!("shutdown {}", kind(s.shutdown(Shutdown::Write))));
                out.push(format!("peer said {:?}", peer.join().unwrap()));
                out.push(format!("read at eof {}", s.read(&mut [0; 4]).unwrap()));
                let (a, b) = UnixStream::pair().unwrap();
                out.push(format!("zero timeout {}", kind(a.set_read_timeout(Some(Duration::ZERO)))));
                a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
                out.push(format!("timeout {:?}", a.read_timeout().unwrap()));
                out.push(format!("timed out {}", kind((&a).read(&mut [0; 4]))));
                a.set_nonblocking(true).unwrap();
                out.push(format!("nonblocking {}", kind((&a).read(&mut [0; 4]))));
                (&b).write_all(b"x").unwrap();
                let c = a.try_clone().unwrap();
                out.push(format!("clone reads {}", (&c).read(&mut [0; 4]).unwrap()));
                out.push(format!("gone {}", kind(UnixStream::connect(temp_path("nobody")))));
                drop(l);
                std::fs::remove_file(&path).unwrap();
                out
            }

            pub(crate) fn datagrams() -> Vec<String> {
                let mut out = Vec::new();
                let (a, b) = UnixDatagram::pair().unwrap();
                a.send(b"one").unwrap();
                let mut buf = [0; 8];
                let n = b.recv(&mut buf).unwrap();
                out.push(format!("recv {:?}", &buf[..n]));
                b.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
                out.push(format!("timed out {}", kind(b.recv(&mut buf))));
                let u = UnixDatagram::unbound().unwrap();
                out.push(format!("unbound peer {}", kind(u.peer_addr())));
                out
            }
        }
    };
}

scenarios!(with_std, std::os::unix::net);
scenarios!(with_filature, filature::net);

#[test]
fn unix_streams_agree_with_std() {
    let _w = Watchdog::new("unix streams", Duration::from_secs(30));
    assert_eq!(with_filature::streams("ours"), with_std::streams("std"));
}

#[test]
fn unix_datagrams_agree_with_std() {
    let _w = Watchdog::new("unix datagrams", Duration::from_secs(30));
    assert_eq!(with_filature::datagrams(), with_std::datagrams());
}

#[test]
fn unix_streams_in_green_threads() {
    let _w = Watchdog::new("unix green", Duration::from_secs(30));
    let path = temp_path("green");
    let l = filature::net::UnixListener::bind(&path).unwrap();
    let server = filature::green::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let p = path.clone();
    let client = filature::green::spawn(move || {
        let mut c = filature::net::UnixStream::connect(p).unwrap();
        c.write_all(b"ping").unwrap();
        let mut back = [0; 4];
        c.read_exact(&mut back).unwrap();
        back
    });
    assert_eq!(&client.join(), b"ping");
    server.join();
    std::fs::remove_file(path).unwrap();
}
