//! The HTTP/1.1 connection loop of `hello_http`: parse as many complete requests as the read
//! buffer holds (pipelining), answer each with the same fixed response, keep the connection alive,
//! and close what misbehaves (garbage, oversized headers, an idle or trickling client, a peer that
//! stops reading).
//!
//! The benchmark crate includes this very file (`#[path]` in `bench/src/servers/mod.rs`): its
//! filature and may servers run it, and its tokio server (`tokio_connection`) does the same steps
//! written async; keep that one in step with changes here.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// The response to every request: 13 bytes of body, keep-alive.
pub(crate) const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: F\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// Size of each connection's read buffer, and so the cap on one request (headers and body).
pub(crate) const BUF: usize = 4096;

/// How long a connection may take to send a complete request (counted from when the server starts
/// waiting for it), and how long a write may wait for a peer that does not read.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const BODY_TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const NOT_IMPLEMENTED: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer closed between requests: the normal end.
    Closed,
    /// The peer closed in the middle of a request.
    Truncated,
    /// Not a byte of a next request within the idle time: an idle keep-alive connection.
    Idle,
    /// A request begun but not complete within the idle time: a slowloris client.
    TooSlow,
    /// A response could not be written within the idle time: the peer stopped reading.
    Stalled,
    /// Not HTTP/1.x: answered `400`.
    Garbage,
    /// Headers past [`BUF`] or too many of them: answered `431`.
    HeadersTooLarge,
    /// A body past [`BUF`]: answered `413`.
    BodyTooLarge,
    /// A `Transfer-Encoding` body: answered `501`.
    Unsupported,
    /// A socket error (a reset, mostly). Logged by `hello_http`; the benchmark ignores it.
    Io(#[allow(dead_code)] io::Error),
}

/// What a parse of the read buffer found.
pub(crate) enum Parsed {
    /// `consumed` bytes held this many complete requests; their responses were appended.
    Requests { consumed: usize },
    /// The responses to the complete requests and then an error response were appended: write
    /// them and close.
    Close(Ended),
}

/// Parses the complete requests at the start of `buf` and appends one response per request to
/// `out`. A body is skipped by its `Content-Length`.
pub(crate) fn serve(buf: &[u8], out: &mut Vec<u8>) -> Parsed {
    let mut consumed = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[consumed..]) {
            Ok(httparse::Status::Complete(n)) => {
                let mut body = 0;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        match std::str::from_utf8(h.value).map(|v| v.trim().parse::<usize>()) {
                            Ok(Ok(len)) => body = len,
                            _ => return close(out, BAD_REQUEST, Ended::Garbage),
                        }
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return close(out, NOT_IMPLEMENTED, Ended::Unsupported);
                    }
                }
                if n + body > BUF {
                    return close(out, BODY_TOO_LARGE, Ended::BodyTooLarge);
                }
                if buf.len() - consumed < n + body {
                    break; // the body is still on its way
                }
                consumed += n + body;
                out.extend_from_slice(RESPONSE);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() - consumed >= BUF {
                    return close(out, TOO_LARGE, Ended::HeadersTooLarge);
                }
                break;
            }
            Err(httparse::Error::TooManyHeaders) => {
                return close(out, TOO_LARGE, Ended::HeadersTooLarge)
            }
            Err(_) => return close(out, BAD_REQUEST, Ended::Garbage),
        }
    }
    Parsed::Requests { consumed }
}

fn close(out: &mut Vec<u8>, response: &[u8], why: Ended) -> Parsed {
    out.extend_from_slice(response);
    Parsed::Close(why)
}

/// What the connection loop needs from a socket beyond `Read` and `Write`.
pub(crate) trait Conn: Read + Write {
    /// std's `set_read_timeout`: a read that waits longer fails with `WouldBlock` or `TimedOut`.
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// std's `set_write_timeout`.
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    /// std's `shutdown(Shutdown::Write)`.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Conn for filature::net::TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        filature::net::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        filature::net::TcpStream::set_write_timeout(self, t)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Serves one connection until the peer closes, errs or misbehaves: read, answer every complete
/// request, write, repeat. A request must be complete within `idle` of the server starting to
/// wait for it (a client trickling one byte at a time gains nothing), and a write may wait `idle`
/// for a peer that does not read; so a connection costs at most one buffer and one batch of
/// responses, and is never held forever.
pub(crate) fn connection<S: Conn>(mut s: S, idle: Duration) -> Ended {
    let mut buf = vec![0u8; BUF];
    let mut filled = 0;
    let mut out = Vec::with_capacity(BUF);
    if let Err(e) = s.set_write_timeout(Some(idle)) {
        return Ended::Io(e);
    }
    let mut timeout = None; // the read timeout the socket has now: set only when it changes
    let mut waiting_since = Instant::now();
    loop {
        // A fresh request gets the whole idle time; a started one what is left of it.
        let left = if filled == 0 {
            waiting_since = Instant::now();
            idle
        } else {
            idle.saturating_sub(waiting_since.elapsed())
        };
        if left.is_zero() {
            return Ended::TooSlow;
        }
        if timeout != Some(left) {
            if let Err(e) = s.set_read_timeout(Some(left)) {
                return Ended::Io(e);
            }
            timeout = Some(left);
        }
        let n = match s.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ended::Closed,
            Ok(0) => return Ended::Truncated,
            Ok(n) => n,
            Err(e) if timed_out(&e) && filled == 0 => return Ended::Idle,
            Err(e) if timed_out(&e) => return Ended::TooSlow,
            Err(e) => return Ended::Io(e),
        };
        filled += n;
        let parsed = serve(&buf[..filled], &mut out);
        if let Parsed::Requests { consumed } = parsed {
            buf.copy_within(consumed..filled, 0);
            filled -= consumed;
        }
        if !out.is_empty() {
            match s.write_all(&out) {
                Ok(()) => out.clear(),
                Err(e) if timed_out(&e) => return Ended::Stalled,
                Err(e) => return Ended::Io(e),
            }
        }
        if let Parsed::Close(why) = parsed {
            linger(&mut s, &mut buf);
            return why;
        }
    }
}

/// Closes gracefully after an error response: closing a socket with unread input makes the
/// kernel send a reset, which can destroy the response before the client reads it. So: end our
/// side, then read and drop what the client still sends (a bounded amount, for a bounded time).
fn linger<S: Conn>(s: &mut S, buf: &mut [u8]) {
    if s.shutdown_write().is_err() || s.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match s.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_get_one_response_each_and_a_partial_one_waits() {
        let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT";
        let mut out = Vec::new();
        match serve(two, &mut out) {
            Parsed::Requests { consumed } => assert_eq!(consumed, two.len() - 8),
            Parsed::Close(why) => panic!("closed: {why:?}"),
        }
        assert_eq!(out.len(), 2 * RESPONSE.len());
    }

    #[test]
    fn garbage_and_oversized_requests_are_answered_then_closed() {
        let mut out = Vec::new();
        let garbage = serve(b"\x00\x01 nope\r\n\r\n", &mut out);
        assert!(matches!(garbage, Parsed::Close(Ended::Garbage)));
        assert!(out.starts_with(b"HTTP/1.1 400 "));
        out.clear();
        let huge = serve(&[b'a'; BUF + 1], &mut out);
        assert!(matches!(huge, Parsed::Close(_)));
        out.clear();
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(BUF, b'x');
        let long = serve(&long, &mut out);
        assert!(matches!(long, Parsed::Close(Ended::HeadersTooLarge)));
        assert!(out.starts_with(b"HTTP/1.1 431 "));
    }
}
