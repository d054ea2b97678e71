//! `Queue<T>`: a FIFO channel between green threads and OS threads, bounded or not
//! (eventlet's `coros.queue`).
//!
//! # Invariants
//!
//! * Under one lock: the items, the FIFO list of waiting getters and the FIFO list of waiting
//!   putters (each with its item in its node).
//! * An item is in exactly one place: the queue, a waiting putter's node, a granted getter's node,
//!   or the hands of the caller that got it. Hand-offs move it under the lock.
//! * `put` gives its item straight to the first waiting getter if there is one (getters wait only
//!   while the queue is empty, so this keeps FIFO order); otherwise it appends if there is room,
//!   otherwise it waits in the putter list. `get` takes the front item and then moves the first
//!   waiting putter's item in; with capacity 0 it takes straight from the first putter.
//! * Giving up (timeout, kill): a listed node removes itself. A getter that was granted an item
//!   and is being killed puts it back at the front (or hands it to the next getter); one that
//!   timed out simply returns it. A putter whose item was already taken has succeeded; one that
//!   times out checks that it is still listed and unlists itself in one lock hold, so it either
//!   was delivered or takes its item back, never both.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::waiter::{Node, Waiter};
use crate::deadline::deadline_after;
use crate::green::park::Park;
use crate::green::Parker;
use crate::loom::lock::{Mutex, MutexGuard};

/// Why a queue operation did not complete; gives the item back where there is one.
#[derive(Error, PartialEq, Eq)]
pub enum QueueError<T> {
    /// `try_put` on a full queue, or `try_get` on an empty one.
    #[error("the queue is full or empty")]
    WouldBlock(Option<T>),
    /// A timed `put` or `get` ran out of time.
    #[error("timed out")]
    TimedOut(Option<T>),
}

impl<T> QueueError<T> {
    /// The item that was not put, if any.
    pub fn into_inner(self) -> Option<T> {
        match self {
            QueueError::WouldBlock(v) | QueueError::TimedOut(v) => v,
        }
    }
}

impl<T> fmt::Debug for QueueError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::WouldBlock(_) => f.write_str("WouldBlock(..)"),
            QueueError::TimedOut(_) => f.write_str("TimedOut(..)"),
        }
    }
}

/// A FIFO queue usable from any context. `Clone` shares the queue.
///
/// ```
/// use filature::{green, sync::Queue};
///
/// let q = Queue::bounded(1);
/// let tx = q.clone();
/// let producer = green::spawn(move || for i in 0..3 { tx.put(i) });
/// let got: Vec<i32> = (0..3).map(|_| q.get()).collect();
/// producer.join();
/// assert_eq!(got, [0, 1, 2]);
/// ```
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    capacity: Option<usize>,
}

struct State<T> {
    items: VecDeque<T>,
    getters: VecDeque<Arc<Node<T>>>,
    putters: VecDeque<Arc<Node<T>>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Queue<T> {
    /// A queue without a size limit: `put` never waits.
    pub fn unbounded() -> Queue<T> {
        Queue::with_capacity(None)
    }

    /// A queue holding at most `capacity` items; `put` waits while it is full. With capacity 0,
    /// every `put` waits for a `get` (a rendezvous).
    pub fn bounded(capacity: usize) -> Queue<T> {
        Queue::with_capacity(Some(capacity))
    }

    fn with_capacity(capacity: Option<usize>) -> Queue<T> {
        Queue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    items: VecDeque::new(),
                    getters: VecDeque::new(),
                    putters: VecDeque::new(),
                }),
                capacity,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.inner.state.lock()
    }

    fn has_room(&self, st: &State<T>) -> bool {
        self.inner.capacity.map_or(true, |c| st.items.len() < c)
    }

    /// Under the lock: hand `item` to a waiting getter or append it if there is room.
    fn offer(&self, st: &mut State<T>, item: T) -> Result<Option<Waiter>, T> {
        if let Some(g) = st.getters.pop_front() {
            *g.grant.lock() = Some(item);
            return Ok(Some(g.waiter.clone()));
        }
        if self.has_room(st) {
            st.items.push_back(item);
            return Ok(None);
        }
        Err(item)
    }

    /// Under the lock: take the next item, refilling from the first waiting putter.
    fn take(&self, st: &mut State<T>) -> Option<(T, Option<Waiter>)> {
        if let Some(v) = st.items.pop_front() {
            let mut woke = None;
            if self.has_room(st) {
                if let Some(p) = st.putters.pop_front() {
                    if let Some(item) = p.grant.lock().take() {
                        st.items.push_back(item);
                    }
                    woke = Some(p.waiter.clone());
                }
            }
            return Some((v, woke));
        }
        if let Some(p) = st.putters.pop_front() {
            let item = p
                .grant
                .lock()
                .take()
                .expect("a waiting putter holds its item");
            return Some((item, Some(p.waiter.clone())));
        }
        None
    }

    /// Puts without waiting; gives the item back if the queue is full.
    pub fn try_put(&self, item: T) -> Result<(), QueueError<T>> {
        let r = {
            let mut st = self.lock();
            self.offer(&mut st, item)
        };
        match r {
            Ok(w) => {
                if let Some(w) = w {
                    w.wake();
                }
                Ok(())
            }
            Err(item) => Err(QueueError::WouldBlock(Some(item))),
        }
    }

    /// Gets without waiting.
    pub fn try_get(&self) -> Result<T, QueueError<T>> {
        let r = {
            let mut st = self.lock();
            self.take(&mut st)
        };
        match r {
            Some((v, w)) => {
                if let Some(w) = w {
                    w.wake();
                }
                Ok(v)
            }
            None => Err(QueueError::WouldBlock(None)),
        }
    }

    /// Puts, waiting while the queue is full.
    pub fn put(&self, item: T) {
        if self.put_until(item, None).is_err() {
            unreachable!("no deadline");
        }
    }

    /// Puts, waiting at most `timeout`. `Ok` means the item was delivered (to a getter or into
    /// the queue); on timeout it was not, and it comes back in the error
    /// ([`QueueError::into_inner`]), so retrying never sends it twice. A `timeout` too large to
    /// add to the clock (`Duration::MAX`) is no limit.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), QueueError<T>> {
        self.put_until(item, deadline_after(timeout))
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), QueueError<T>> {
        self.put_with(&Parker::current("Queue::put"), item, deadline)
    }

    /// The put loop, for any way of parking (the loom models bring their own).
    pub(crate) fn put_with(
        &self,
        parker: &impl Park,
        item: T,
        deadline: Option<Instant>,
    ) -> Result<(), QueueError<T>> {
        let node = {
            let mut st = self.lock();
            match self.offer(&mut st, item) {
                Ok(w) => {
                    drop(st);
                    if let Some(w) = w {
                        w.wake();
                    }
                    return Ok(());
                }
                Err(item) => {
                    let node = Node::new(Waiter::Park(parker.unparker().clone()));
                    *node.grant.lock() = Some(item);
                    st.putters.push_back(node.clone());
                    node
                }
            }
        };
        let _guard = UnlistPutter {
            q: self,
            node: &node,
        };
        loop {
            {
                let mut st = self.lock();
                let Some(i) = st.putters.iter().position(|n| Arc::ptr_eq(n, &node)) else {
                    return Ok(()); // our item was taken
                };
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    // Still listed, and the lock is held from the check to the removal: no getter
                    // can take the item in between, so the item comes back and was not delivered.
                    st.putters.remove(i);
                    let item = node.grant.lock().take();
                    debug_assert!(item.is_some(), "a listed putter holds its item");
                    return Err(QueueError::TimedOut(item));
                }
            }
            parker.park(deadline);
        }
    }

    /// Gets the next item, waiting while the queue is empty.
    pub fn get(&self) -> T {
        match self.get_until(None) {
            Ok(v) => v,
            Err(_) => unreachable!("no deadline"),
        }
    }

    /// Gets the next item, waiting at most `timeout`. A `timeout` too large to add to the clock
    /// (`Duration::MAX`) is no limit.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, QueueError<T>> {
        self.get_until(deadline_after(timeout))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, QueueError<T>> {
        let parker = Parker::current("Queue::get");
        let node = {
            let mut st = self.lock();
            if let Some((v, w)) = self.take(&mut st) {
                drop(st);
                if let Some(w) = w {
                    w.wake();
                }
                return Ok(v);
            }
            let node = Node::new(Waiter::Park(parker.unparker().clone()));
            st.getters.push_back(node.clone());
            node
        };
        let guard = UnlistGetter {
            q: self,
            node: &node,
        };
        loop {
            {
                let mut st = self.lock();
                if let Some(v) = node.grant.lock().take() {
                    return Ok(v);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    st.getters.retain(|n| !Arc::ptr_eq(n, &node));
                    drop(st);
                    drop(guard);
                    return Err(QueueError::TimedOut(None));
                }
            }
            parker.park(deadline);
        }
    }

    /// Items in the queue now (not counting waiting putters').
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when no item is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity, `None` for unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.inner.capacity
    }

    /// Green threads (or contexts) waiting in `get`.
    pub fn getting(&self) -> usize {
        self.lock().getters.len()
    }

    /// Contexts waiting in `put`.
    pub fn putting(&self) -> usize {
        self.lock().putters.len()
    }
}

/// A getter leaving early: unlist it, or give back an item granted meanwhile.
struct UnlistGetter<'a, T> {
    q: &'a Queue<T>,
    node: &'a Arc<Node<T>>,
}

impl<T> Drop for UnlistGetter<'_, T> {
    fn drop(&mut self) {
        let woke = {
            let mut st = self.q.lock();
            if let Some(i) = st.getters.iter().position(|n| Arc::ptr_eq(n, self.node)) {
                st.getters.remove(i);
                None
            } else if let Some(item) = self.node.grant.lock().take() {
                // Granted but never received (we are unwinding): back to the front, or to the
                // next getter, so the item is neither lost nor reordered.
                if let Some(g) = st.getters.pop_front() {
                    *g.grant.lock() = Some(item);
                    Some(g.waiter.clone())
                } else {
                    st.items.push_front(item);
                    None
                }
            } else {
                None
            }
        };
        if let Some(w) = woke {
            w.wake();
        }
    }
}

/// A putter leaving early: unlist it (its item goes with it).
struct UnlistPutter<'a, T> {
    q: &'a Queue<T>,
    node: &'a Arc<Node<T>>,
}

impl<T> Drop for UnlistPutter<'_, T> {
    fn drop(&mut self) {
        let mut st = self.q.lock();
        st.putters.retain(|n| !Arc::ptr_eq(n, self.node));
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Queue")
            .field("len", &st.items.len())
            .field("capacity", &self.inner.capacity)
            .field("getters", &st.getters.len())
            .field("putters", &st.putters.len())
            .finish()
    }
}
