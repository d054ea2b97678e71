//! eventlib's `SpawnFactory` and `LineOnlyReceiverTransport`: [`SpawnFactory`],
//! [`LineTransport`].
//!
//! Invariants: a `SpawnFactory` and its handlers live on the hub whose port uses it (the
//! handlers are green threads of that hub; the factory is `Rc`, `!Send`). It keeps the
//! `JoinHandle`s of handlers that have not finished (finished ones are dropped at the next
//! spawn), so `join_all` waits for exactly the handlers alive when it is called and memory does
//! not grow with the number of connections served.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use super::green_transport::GreenProtocol;
use super::{Factory, GreenTransport, Protocol};
use crate::green::{self, JoinHandle};
use crate::sync::Semaphore;

/// A factory that runs `handler` in a green thread of its own for every accepted connection,
/// with the connection as a [`GreenTransport`] (eventlib's `SpawnFactory`). Clone it to keep a
/// handle for [`join_all`](Self::join_all) while a port owns the other.
///
/// ```
/// use filature::net::{self, GreenClientCreator, SpawnFactory};
///
/// let factory = SpawnFactory::new(|t| {
///     let name = t.read(5).unwrap();
///     t.write(&[b"hello ", &name[..]].concat()).unwrap();
/// })
/// .max_concurrent(100); // the 101st connection waits for a handler to finish
/// let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), factory.clone()).unwrap();
/// let c = GreenClientCreator::new().connect_tcp(port.local_addr()).unwrap();
/// c.write(b"world").unwrap();
/// assert_eq!(c.read_to_end().unwrap(), b"hello world");
/// factory.join_all(); // every handler has returned
/// ```
#[derive(Clone)]
pub struct SpawnFactory {
    inner: Rc<Inner>,
}

struct Inner {
    handler: Rc<dyn Fn(GreenTransport)>,
    handles: RefCell<Vec<JoinHandle<()>>>,
    limit: RefCell<Option<Rc<Semaphore>>>,
}

impl std::fmt::Debug for SpawnFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnFactory")
            .field("handlers", &self.inner.handles.borrow().len())
            .finish()
    }
}

impl SpawnFactory {
    /// A factory whose connections are served by `handler`, each in its own green thread.
    pub fn new(handler: impl Fn(GreenTransport) + 'static) -> SpawnFactory {
        SpawnFactory {
            inner: Rc::new(Inner {
                handler: Rc::new(handler),
                handles: RefCell::default(),
                limit: RefCell::new(None),
            }),
        }
    }

    /// At most `n` handlers run at once; a connection beyond that waits (accepted, not read)
    /// until one finishes.
    pub fn max_concurrent(self, n: usize) -> SpawnFactory {
        *self.inner.limit.borrow_mut() = Some(Rc::new(Semaphore::new(n)));
        self
    }

    /// Waits until every handler started so far has returned (a panicking handler's failure is
    /// logged, not raised). From a green thread or the main context of the factory's hub.
    pub fn join_all(&self) {
        loop {
            let handles = std::mem::take(&mut *self.inner.handles.borrow_mut());
            if handles.is_empty() {
                return;
            }
            for h in handles {
                if let Err(e) = h.join_result() {
                    tracing::error!("a SpawnFactory handler failed: {e}");
                }
            }
        }
    }

    /// Kills every handler still running (each unwinds from where it is parked; its
    /// `GreenTransport`, dropped, closes its connection). Does not wait: see
    /// [`join_all`](Self::join_all).
    pub fn kill_all(&self) {
        for h in self.inner.handles.borrow().iter() {
            h.kill();
        }
    }

    /// Handlers started and not yet finished.
    pub fn active(&self) -> usize {
        let mut handles = self.inner.handles.borrow_mut();
        handles.retain(|h| !h.is_finished());
        handles.len()
    }
}

impl Factory for SpawnFactory {
    fn build_protocol(&mut self, _peer: SocketAddr) -> Option<Box<dyn Protocol>> {
        let inner = self.inner.clone();
        Some(Box::new(GreenProtocol::new(move |t| {
            let handler = inner.handler.clone();
            let limit = inner.limit.borrow().clone();
            let h = green::spawn(move || {
                let _permit = limit.as_ref().map(|s| {
                    s.acquire();
                    Permit(s.clone())
                });
                handler(t);
            });
            let mut handles = inner.handles.borrow_mut();
            handles.retain(|h| !h.is_finished());
            handles.push(h);
        })))
    }
}

struct Permit(Rc<Semaphore>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Lines over a [`GreenTransport`] (eventlib's `LineOnlyReceiverTransport`): `read_line`
/// without the delimiter, `send_line`, and an iterator over lines that ends cleanly when the
/// connection does. A line longer than the maximum (default 16 KiB) is an `InvalidData` error,
/// never unbounded memory.
///
/// ```
/// use filature::net::{self, GreenClientCreator, LineTransport, SpawnFactory};
///
/// let upper = SpawnFactory::new(|t| {
///     let mut lines = LineTransport::new(t);
///     while let Some(line) = lines.read_line().unwrap() {
///         lines.send_line(&line.to_ascii_uppercase()).unwrap();
///     }
/// });
/// let port = net::listen_tcp("127.0.0.1:0".parse().unwrap(), upper).unwrap();
/// let mut c = LineTransport::new(GreenClientCreator::new().connect_tcp(port.local_addr()).unwrap());
/// c.send_line(b"hello").unwrap();
/// assert_eq!(c.read_line().unwrap().unwrap(), b"HELLO");
/// ```
#[derive(Debug)]
pub struct LineTransport {
    transport: GreenTransport,
    delimiter: Vec<u8>,
    max_length: usize,
}

impl LineTransport {
    /// Lines ending in `\n` (a `\r` before it is dropped too), at most 16 KiB.
    pub fn new(transport: GreenTransport) -> LineTransport {
        LineTransport {
            transport,
            delimiter: b"\n".to_vec(),
            max_length: 16 * 1024,
        }
    }

    /// Lines end in `delimiter` (not empty) instead; sent lines too.
    pub fn with_delimiter(mut self, delimiter: &[u8]) -> LineTransport {
        assert!(!delimiter.is_empty(), "a line delimiter cannot be empty");
        self.delimiter = delimiter.to_vec();
        self
    }

    /// The longest line accepted, in bytes (without the delimiter).
    pub fn max_length(mut self, max: usize) -> LineTransport {
        self.max_length = max;
        self
    }

    /// The next line, without its delimiter; `None` once the connection ended cleanly (a last
    /// line without delimiter comes first). A line over the maximum is an `InvalidData` error.
    pub fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let line = self
            .transport
            .read_until(&self.delimiter, self.max_length + 1)?;
        Ok(line.map(|mut l| {
            if self.delimiter == b"\n" && l.last() == Some(&b'\r') {
                l.pop();
            }
            l
        }))
        .and_then(|l| match l {
            Some(l) if l.len() > self.max_length => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {} bytes", self.max_length),
            )),
            l => Ok(l),
        })
    }

    /// Sends `line` and the delimiter (one write; returns once sent).
    pub fn send_line(&self, line: &[u8]) -> io::Result<()> {
        let t = self.transport.transport();
        if t.closed().is_some() || t.is_closing() {
            return self.transport.write(line); // reports the error
        }
        t.write_sequence(&[line, &self.delimiter]);
        self.transport.write(&[])
    }

    /// An iterator over the lines; it ends at a clean end of the connection, and yields an
    /// error (then ends) otherwise.
    pub fn lines(&mut self) -> Lines<'_> {
        Lines {
            t: self,
            done: false,
        }
    }

    /// The green transport underneath.
    pub fn get_ref(&self) -> &GreenTransport {
        &self.transport
    }

    /// The green transport underneath.
    pub fn into_inner(self) -> GreenTransport {
        self.transport
    }
}

/// The lines of a [`LineTransport`]; see [`LineTransport::lines`].
#[derive(Debug)]
pub struct Lines<'a> {
    t: &'a mut LineTransport,
    done: bool,
}

impl Iterator for Lines<'_> {
    type Item = io::Result<Vec<u8>>;
    fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        match self.t.read_line() {
            Ok(Some(l)) => Some(Ok(l)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
