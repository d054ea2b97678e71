//! The HTTP/1.1 work every benchmark server does, whatever its runtime: parse as many complete
//! requests as the read buffer holds (pipelining), answer each with the same fixed response, keep
//! the connection alive. One copy, used by the filature, tokio and may servers alike, so they
//! differ only in how they wait for sockets.

/// The response to every request: 13 bytes of body, keep-alive.
pub(crate) const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: F\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// Size of each connection's read buffer, and the cap on one request's header bytes.
pub(crate) const BUF: usize = 4096;

/// What a parse of the read buffer found.
pub(crate) enum Parsed {
    /// `consumed` bytes held this many complete requests; their responses were appended.
    Requests { consumed: usize },
    /// A malformed request, or headers longer than [`BUF`]: close the connection.
    Close,
}

/// Parses the complete requests at the start of `buf` and appends one response per request to
/// `out`. A request with a body is not expected (GET only); its `Content-Length` is skipped.
pub(crate) fn serve(buf: &[u8], out: &mut Vec<u8>) -> Parsed {
    let mut consumed = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[consumed..]) {
            Ok(httparse::Status::Complete(n)) => {
                let body = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0);
                if buf.len() - consumed < n + body {
                    break; // the body is still on its way
                }
                consumed += n + body;
                out.extend_from_slice(RESPONSE);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() - consumed >= BUF {
                    return Parsed::Close; // header too large
                }
                break;
            }
            Err(_) => return Parsed::Close,
        }
    }
    Parsed::Requests { consumed }
}

/// Runs the parse/answer loop over a blocking-style connection (filature's green sockets, may's
/// coroutine sockets, std): read, answer every complete request, write, repeat until the peer
/// closes or errs.
pub(crate) fn connection<S: std::io::Read + std::io::Write>(mut s: S) {
    let mut buf = vec![0u8; BUF];
    let mut filled = 0;
    let mut out = Vec::with_capacity(BUF);
    loop {
        let n = match s.read(&mut buf[filled..]) {
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
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        if filled == buf.len() {
            return; // a request larger than the buffer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_get_one_response_each_and_a_partial_one_waits() {
        let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT";
        let mut out = Vec::new();
        match serve(two, &mut out) {
            Parsed::Requests { consumed } => assert_eq!(consumed, two.len() - 8),
            Parsed::Close => panic!("closed"),
        }
        assert_eq!(out.len(), 2 * RESPONSE.len());
    }

    #[test]
    fn garbage_closes() {
        let mut out = Vec::new();
        assert!(matches!(
            serve(b"\x00\x01 nope\r\n\r\n", &mut out),
            Parsed::Close
        ));
        assert!(matches!(serve(&[b'a'; BUF + 1], &mut out), Parsed::Close));
    }
}
