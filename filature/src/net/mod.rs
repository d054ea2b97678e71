//! Green sockets with std's API: swap `std::net` (or `std::os::unix::net`) for `filature::net`
//! and the same code parks a green thread instead of blocking its OS thread.
//!
//! [`TcpListener`], [`TcpStream`], [`UdpSocket`], [`UnixListener`], [`UnixStream`] and
//! [`UnixDatagram`] have std's methods, with std's results and error kinds. A blocking call
//! parks only the calling green thread; from a thread's main context it drives the thread's hub
//! until it can go on (so `main()` can be a client or a server); inside a hub callback it panics,
//! like every blocking call (spawn a green thread). A kill or a
//! [`with_timeout`](crate::green::with_timeout) interrupts a parked socket call cleanly: the
//! green thread unwinds, the socket stays usable and, once dropped, its fd is closed and no
//! registration is left.
//!
//! ```
//! use std::io::{Read, Write};
//! use filature::{green, net::{TcpListener, TcpStream}};
//!
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! green::spawn(move || {
//!     for stream in listener.incoming() {
//!         let mut stream = stream.unwrap();
//!         green::spawn(move || { // a green thread per connection
//!             let mut buf = [0; 1024];
//!             loop {
//!                 match stream.read(&mut buf).unwrap() {
//!                     0 => return,
//!                     n => stream.write_all(&buf[..n]).unwrap(),
//!                 }
//!             }
//!         });
//!     }
//! });
//! let mut c = TcpStream::connect(addr).unwrap();
//! c.write_all(b"ping").unwrap();
//! let mut buf = [0; 4];
//! c.read_exact(&mut buf).unwrap();
//! assert_eq!(&buf, b"ping");
//! ```
//!
//! # How it works
//!
//! Every socket's fd is in non-blocking mode. A call tries the syscall; on `WouldBlock` it
//! registers the fd with the hub of the calling thread (once; edge-triggered, both directions)
//! and parks on that direction's readiness. Reads and writes wait apart, so one green thread can
//! read while another writes the same stream (`&TcpStream` is `Read` and `Write`, as in std). A
//! socket is `Send` and `Sync`: used on another thread, it registers with that thread's hub and
//! leaves the old one. The registration protocol and its invariants are in `src/hub/io.rs`.
//!
//! # Differences from std
//!
//! * **Timeouts** (`set_read_timeout`, `set_write_timeout`) are std's: kept in the kernel
//!   (`SO_RCVTIMEO`/`SO_SNDTIMEO`, so the getters report the kernel's rounding and clones share
//!   them), a zero duration is `InvalidInput`, and a call that waits longer fails with
//!   `WouldBlock` (`EAGAIN`: what std reports on Linux when `SO_RCVTIMEO` expires; `TimedOut` is
//!   only `connect_timeout`'s). The kernel does not enforce them on a non-blocking fd; the park
//!   does.
//! * **Non-blocking mode** ([`set_nonblocking`](TcpStream::set_nonblocking)) makes calls return
//!   `WouldBlock` instead of parking; such a socket may be used from hub callbacks. It is also
//!   per object (std's is per open file, shared by clones).
//! * [`ToSocketAddrs`] is filature's twin of std's (same implementors, same behaviour), because
//!   host names must be looked up on [`tpool`](crate::tpool), off the hub; literal addresses
//!   never touch the pool. [`lookup_host`] does the lookup alone.
//! * `into_std` hands back the std socket deregistered, in the green socket's blocking mode.
//!
//! # Accept loops
//!
//! An accept can fail for reasons that a retry cannot fix at once: out of file descriptors
//! (`EMFILE`, `ENFILE`) or memory. The pending connection stays queued, so the listener stays
//! readable, and a loop that logs and retries at once spins at 100% CPU, flooding its log. Use
//! [`TcpListener::accept_with_backoff`] (or [`UnixListener::accept_with_backoff`]): it retries
//! connections that died in the queue, and on exhaustion logs one warning, sleeps (5 ms, doubling
//! up to 1 s; only the accepting green thread waits, established connections go on and may free
//! descriptors) and tries again, logging once more when it recovers:
//!
//! ```
//! use filature::{green, net::TcpListener};
//!
//! fn serve(listener: TcpListener) {
//!     loop {
//!         match listener.accept_with_backoff() {
//!             Ok((stream, _peer)) => {
//!                 green::spawn(move || drop(stream)); // handle the connection
//!             }
//!             Err(e) => {
//!                 eprintln!("accept failed for good: {e}");
//!                 return;
//!             }
//!         }
//!     }
//! }
//! # let l = TcpListener::bind("127.0.0.1:0").unwrap();
//! # l.set_nonblocking(true).unwrap();
//! # serve(l); // non-blocking: returns at once with WouldBlock
//! ```
//!
//! # Serving one port from N hubs
//!
//! A connection stays on the hub that owns it, so a server spreads over cores by running N hubs
//! (N OS threads, each in [`hub::scope`](crate::hub::scope)). Two ways to feed them:
//!
//! * **One listener per hub** (recommended): each thread binds its own listener to the same
//!   address with `SO_REUSEPORT` ([`TcpListener::bind_reuseport`] or [`ListenOptions`]) and runs
//!   its own accept loop; the kernel spreads connections among the listeners and no connection
//!   crosses threads.
//!
//!   ```
//!   use filature::{green, hub, net::TcpListener};
//!
//!   let first = TcpListener::bind_reuseport("127.0.0.1:0").unwrap();
//!   let addr = first.local_addr().unwrap();
//!   let threads: Vec<_> = (0..2)
//!       .map(|_| {
//!           std::thread::spawn(move || hub::scope(|| {
//!               let listener = TcpListener::bind_reuseport(addr).unwrap();
//!               let acceptor = green::spawn(move || loop {
//!                   let (stream, _) = listener.accept_with_backoff().unwrap();
//!                   green::spawn(move || drop(stream)); // serve it on this hub
//!               });
//!               green::sleep(std::time::Duration::from_millis(10)); // or hub::run()
//!               acceptor.kill();
//!           }))
//!       })
//!       .collect();
//!   threads.into_iter().for_each(|t| t.join().unwrap());
//!   ```
//!
//! * **One acceptor handing streams to N hubs**: accept on one hub and pass each stream to
//!   another hub's green thread ([`HubHandle::spawn`](crate::hub::HubHandle::spawn) with the
//!   stream moved in). The stream registers with the hub that uses it on its first blocking
//!   call. Simpler to balance by hand, but every connection crosses threads once.
//!
//! # Twisted-style protocols, and the bridge to green threads
//!
//! The same sockets also serve callback-style code, on any hub (the reactor is one):
//! a [`Protocol`] gets `connection_made`, `data_received`, `connection_lost` (and
//! `pause_writing`/`resume_writing` at the write buffer's water marks) as hub callbacks; a
//! [`Factory`] builds one per connection; a [`Transport`] writes (buffered, non-blocking),
//! closes and pauses reading. [`listen_tcp`] and [`connect_tcp`] work on the current hub,
//! [`reactor::listen_tcp`](crate::reactor::listen_tcp) and
//! [`reactor::connect_tcp`](crate::reactor::connect_tcp) on the reactor. Readiness reaches a
//! connection through the same registration as green sockets (`src/hub/io.rs`), and the
//! connection runs in the next pass, as a hub callback (`driver.rs`).
//!
//! eventlib's bridge sits on top: a [`GreenTransport`] is a connection as a green thread sees
//! it (blocking `read`, `recv`, `write`, `lose_connection`); it reads from the socket only while
//! a green thread is reading, so TCP back-pressure bounds memory. [`GreenClientCreator`]
//! connects and returns one; [`SpawnFactory`] runs a handler per accepted connection in its own
//! green thread; [`LineTransport`] reads and sends lines.

mod accept;
mod addr;
mod conn;
pub(crate) mod driver;
mod green_transport;
mod listen;
pub(crate) mod port;
mod protocol;
mod signal;
mod source;
mod spawn;
mod tcp;
mod udp;
mod unix;

/// Registers the networking thread-locals before the thread-exit hook (see
/// `Core::arm_exit_hook`), so they outlive it.
pub(crate) fn touch_thread_locals() {
    driver::touch_thread_local();
    conn::touch_thread_local();
}

pub use addr::{lookup_host, ToSocketAddrs};
pub use conn::Transport;
pub use green_transport::{GreenClientCreator, GreenTransport};
pub use listen::ListenOptions;
pub use port::{connect_tcp, listen_tcp, ListeningPort};
pub use protocol::{ClientFactory, Factory, Protocol, Reason};
pub use spawn::{LineTransport, Lines, SpawnFactory};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};

use socket2::SockRef;
use std::os::fd::AsFd;

/// Switches a std socket being adopted to non-blocking mode; returns the blocking mode it had.
pub(crate) fn adopt<S: AsFd>(s: &S) -> bool {
    let sock = SockRef::from(s);
    let nonblocking = sock.nonblocking().unwrap_or(false);
    if let Err(e) = sock.set_nonblocking(true) {
        panic!("filature::net: cannot switch an adopted socket to non-blocking mode: {e}");
    }
    nonblocking
}

/// Gives the std socket a green socket becomes the green socket's blocking mode. Cannot fail on
/// a valid socket; a failure is logged.
pub(crate) fn restore<S: AsFd>(s: &S, nonblocking: bool) {
    if let Err(e) = SockRef::from(s).set_nonblocking(nonblocking) {
        tracing::warn!("filature::net: into_std could not restore the blocking mode: {e}");
    }
}

/// `Read` and `Write` for a stream and for `&stream` (as std has both), parking on the
/// stream's read and write readiness. `$short_drains`: a short read or write empties or fills
/// the socket's buffer (TCP; see "Shortcuts" in `hub::io`).
macro_rules! stream_io {
    ($t:ty, $read:literal, $write:literal, short_drains: $short:literal) => {
        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let len = buf.len();
                self.src.stream_call(
                    $read,
                    $crate::hub::io::Direction::Read,
                    $short,
                    len,
                    |mut s| std::io::Read::read(&mut s, buf),
                )
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.src.stream_call(
                    $read,
                    $crate::hub::io::Direction::Read,
                    $short,
                    len,
                    |mut s| std::io::Read::read_vectored(&mut s, bufs),
                )
            }
        }

        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.src.stream_call(
                    $write,
                    $crate::hub::io::Direction::Write,
                    $short,
                    buf.len(),
                    |mut s| std::io::Write::write(&mut s, buf),
                )
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.src.stream_call(
                    $write,
                    $crate::hub::io::Direction::Write,
                    $short,
                    len,
                    |mut s| std::io::Write::write_vectored(&mut s, bufs),
                )
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                std::io::Read::read_vectored(&mut &*self, bufs)
            }
        }

        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                std::io::Write::write_vectored(&mut &*self, bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use stream_io;

/// std's timeout methods, for the sockets that read and write.
macro_rules! timeouts {
    ($t:ty) => {
        impl $t {
            /// The read timeout: a read that waits longer fails with `WouldBlock` (what std
            /// reports on Linux when `SO_RCVTIMEO` expires). `Some(Duration::ZERO)` is
            /// `InvalidInput`, as in std. Kept in the kernel, as std keeps it.
            pub fn set_read_timeout(
                &self,
                dur: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.src.set_timeout($crate::hub::io::Direction::Read, dur)
            }

            /// The write timeout; see `set_read_timeout`.
            pub fn set_write_timeout(
                &self,
                dur: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.src.set_timeout($crate::hub::io::Direction::Write, dur)
            }

            /// The read timeout, as std reports it (as the kernel rounded it).
            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                self.src.get_timeout($crate::hub::io::Direction::Read)
            }

            /// The write timeout, as std reports it.
            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                self.src.get_timeout($crate::hub::io::Direction::Write)
            }
        }
    };
}
pub(crate) use timeouts;

/// What every green socket has: `try_clone`, `take_error`, `set_nonblocking`, `into_std`,
/// `Debug`, std's fd traits and conversions to and from `OwnedFd`.
macro_rules! socket_common {
    ($t:ty, $std:ty) => {
        impl $t {
            /// Another handle to the same socket (a `dup`): timeouts and socket options are
            /// shared, as std's; the blocking mode is copied, then kept per handle.
            pub fn try_clone(&self) -> std::io::Result<$t> {
                Ok(Self {
                    src: self.src.try_clone()?,
                })
            }

            /// The pending socket error (`SO_ERROR`), cleared.
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                self.src.take_error()
            }

            /// In non-blocking mode calls return `WouldBlock` instead of parking (and may then
            /// be made from hub callbacks).
            pub fn set_nonblocking(&self, nonblocking: bool) -> std::io::Result<()> {
                self.src.set_nonblocking(nonblocking);
                Ok(())
            }

            /// The std socket, deregistered from every hub, in this one's blocking mode
            /// (timeouts are the socket's already).
            pub fn into_std(self) -> $std {
                let nonblocking = self.src.is_nonblocking();
                let std: $std = self.src.into_inner().into();
                $crate::net::restore(&std, nonblocking);
                std
            }

            /// How many hubs the socket is registered with now (introspection and tests).
            pub fn registrations(&self) -> usize {
                self.src.registrations()
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.src.get_ref().fmt(f)
            }
        }

        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.src.get_ref().as_raw_fd()
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.src.get_ref().as_fd()
            }
        }

        impl std::os::fd::IntoRawFd for $t {
            /// Deregisters the socket and hands over its fd, in the blocking mode the socket
            /// had.
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                self.into_std().into_raw_fd()
            }
        }

        impl std::os::fd::FromRawFd for $t {
            /// Adopts `fd` as std's `from_raw_fd` does (same obligations: `fd` is an open socket
            /// of the right kind, owned by nobody else), keeping its blocking mode.
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> $t {
                // SAFETY: the caller promises what std's `from_raw_fd` requires; passed on.
                <$t>::from(unsafe { <$std>::from_raw_fd(fd) })
            }
        }

        impl From<$t> for std::os::fd::OwnedFd {
            fn from(s: $t) -> std::os::fd::OwnedFd {
                s.into_std().into()
            }
        }

        impl From<std::os::fd::OwnedFd> for $t {
            fn from(fd: std::os::fd::OwnedFd) -> $t {
                <$t>::from(<$std>::from(fd))
            }
        }
    };
}
pub(crate) use socket_common;
