//! The load generator of the socket scenarios (`echo`, `connect_rate`, `conns`): one thread, one
//! mio poll, every connection a small state machine, so it costs far less per message than any
//! server it drives and is the same for every server.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Bytes per message.
pub(crate) const MESSAGE: usize = 64;

/// How long any one run may take before it is abandoned as stuck.
const LIMIT: Duration = Duration::from_secs(120);

struct Conn {
    stream: TcpStream,
    sent: usize,
    /// Bytes of the current echo read so far.
    got: usize,
    /// Bytes of the current message written so far.
    wrote: usize,
    done: usize,
}

/// `conns` connections to `addr`, each sending `messages` messages of [`MESSAGE`] bytes and reading
/// each echo before sending the next. Returns the elapsed time of the exchange (connections are
/// made before the clock starts).
pub(crate) fn echo(addr: SocketAddr, conns: usize, messages: usize) -> Result<Duration, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut all = Vec::with_capacity(conns);
    for i in 0..conns {
        let std = StdStream::connect(addr).map_err(|e| format!("connect #{i}: {e}"))?;
        std.set_nodelay(true).map_err(|e| e.to_string())?;
        std.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = TcpStream::from_std(std);
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        all.push(Conn {
            stream,
            sent: 0,
            got: 0,
            wrote: 0,
            done: 0,
        });
    }
    let payload = [b'x'; MESSAGE];
    let mut buf = [0u8; MESSAGE * 4];
    let mut events = Events::with_capacity(1024);
    let mut finished = 0;
    let start = Instant::now();
    // Every connection starts by writing its first message.
    for (i, c) in all.iter_mut().enumerate() {
        step(c, i, &payload, &mut buf, messages)?;
        if c.done == messages {
            finished += 1;
        }
    }
    while finished < conns {
        if start.elapsed() > LIMIT {
            return Err(format!(
                "echo load stuck: {finished} of {conns} connections done"
            ));
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut all[i];
            let before = c.done;
            step(c, i, &payload, &mut buf, messages)?;
            if before < messages && c.done == messages {
                finished += 1;
            }
        }
    }
    Ok(start.elapsed())
}

/// Advances one connection as far as it can without blocking.
fn step(
    c: &mut Conn,
    i: usize,
    payload: &[u8; MESSAGE],
    buf: &mut [u8],
    messages: usize,
) -> Result<(), String> {
    loop {
        if c.done == messages {
            return Ok(());
        }
        if c.sent == c.done {
            // Write the next message.
            match c.stream.write(&payload[c.wrote..]) {
                Ok(n) => {
                    c.wrote += n;
                    if c.wrote == MESSAGE {
                        c.wrote = 0;
                        c.sent += 1;
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("connection #{i} write: {e}")),
            }
        }
        // Read its echo.
        match c.stream.read(&mut buf[..MESSAGE - c.got]) {
            Ok(0) => return Err(format!("connection #{i}: the server closed it")),
            Ok(n) => {
                c.got += n;
                if c.got == MESSAGE {
                    c.got = 0;
                    c.done += 1;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("connection #{i} read: {e}")),
        }
    }
}

/// `total` short connections, at most `concurrent` at a time: connect, one [`MESSAGE`]-byte round
/// trip, close (with an RST, so no TIME_WAIT piles up across runs). Returns the elapsed time.
pub(crate) fn connect_rate(
    addr: SocketAddr,
    total: usize,
    concurrent: usize,
) -> Result<Duration, String> {
    let payload = [b'c'; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    let start = Instant::now();
    let mut started = 0;
    let mut completed = 0;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    // Each slot: the stream and (written, read) byte counts.
    let mut slots: Vec<Option<(TcpStream, usize, usize)>> = (0..concurrent).map(|_| None).collect();
    let open = |poll: &Poll, slot: usize| -> Result<TcpStream, String> {
        let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        poll.registry()
            .register(&mut s, Token(slot), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| e.to_string())?;
        Ok(s)
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        if started < total {
            *slot = Some((open(&poll, i)?, 0, 0));
            started += 1;
        }
    }
    while completed < total {
        if start.elapsed() > LIMIT {
            return Err(format!("connect load stuck: {completed} of {total} done"));
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            let i = ev.token().0;
            let Some((s, wrote, got)) = slots[i].as_mut() else {
                continue;
            };
            let mut finished = false;
            loop {
                if *wrote < MESSAGE {
                    match s.write(&payload[*wrote..]) {
                        Ok(n) => *wrote += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // Not connected yet: wait for writability.
                        Err(e) if e.kind() == ErrorKind::NotConnected => break,
                        Err(e) => return Err(format!("write: {e}")),
                    }
                    continue;
                }
                match s.read(&mut buf[..MESSAGE - *got]) {
                    Ok(0) => return Err("the server closed a connection early".into()),
                    Ok(n) => {
                        *got += n;
                        if *got == MESSAGE {
                            finished = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            if finished {
                let (mut s, _, _) = slots[i].take().expect("present");
                let _ = poll.registry().deregister(&mut s);
                let std: StdStream = s.into();
                // Close with an RST: no TIME_WAIT left behind for the next runs' ports.
                let _ = socket2::SockRef::from(&std).set_linger(Some(Duration::ZERO));
                drop(std);
                completed += 1;
                if started < total {
                    slots[i] = Some((open(&poll, i)?, 0, 0));
                    started += 1;
                }
            }
        }
    }
    Ok(start.elapsed())
}

/// Opens `n` connections to `addr` and keeps them idle until the returned value is dropped (then
/// they are reset).
/// Spreads them over source addresses 127.0.0.2, 127.0.0.3, … (10,000 each) so the ephemeral
/// port range is never the limit.
pub(crate) fn hold(addr: SocketAddr, n: usize) -> Result<Vec<StdStream>, String> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let src: SocketAddr = ([127, 0, 0, 2 + (i / 10_000) as u8], 0).into();
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| format!("socket #{i}: {e}"))?;
        // Choose the port at connect time (per destination), not at bind time: otherwise every
        // bound socket takes a port of its own from the ephemeral range.
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&on`, a live c_int; the fd
        // is the socket we own.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&src.into())
            .map_err(|e| format!("bind #{i} to {src}: {e}"))?;
        sock.connect(&addr.into())
            .map_err(|e| format!("connect #{i}: {e}"))?;
        // Closed with an RST when dropped: no TIME_WAIT ties up the ports for the next run.
        let _ = sock.set_linger(Some(Duration::ZERO));
        held.push(sock.into());
    }
    Ok(held)
}
