//! `GreenPool`: bounded concurrency for green threads (eventlet's `GreenPool`, eventlib's `Pool`).
//!
//! # Invariants
//!
//! * A [`Semaphore`] with `size` permits bounds the members: `spawn` takes a permit (waiting in
//!   FIFO order when the pool is full) and the member gives it back when it ends, however it ends
//!   (a guard inside the green thread, so panics and kills release too).
//! * `members` holds the ids of running members. A member that spawns into its own full pool runs
//!   the function inline instead of waiting for itself (eventlet's rule), so a pool can never
//!   deadlock on its own members.
//! * The pool belongs to the hub that made it (`!Send`), like its green threads.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::rc::Rc;

use super::{current, join, park::ParkCell, JoinHandle};
use crate::loom::sync::Arc;
use crate::sync::Semaphore;

/// A pool of at most `size` concurrently running green threads.
///
/// ```
/// use filature::green::GreenPool;
///
/// let pool = GreenPool::new(2);
/// let squares: Vec<u32> = pool.imap(1..=5, |x| x * x).collect();
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// ```
pub struct GreenPool {
    inner: Rc<Inner>,
}

struct Inner {
    sem: Semaphore,
    size: usize,
    members: RefCell<HashSet<u64>>,
}

impl GreenPool {
    /// A pool running at most `size` green threads at once (`size` ≥ 1).
    pub fn new(size: usize) -> GreenPool {
        assert!(size >= 1, "a GreenPool needs a size of at least 1");
        GreenPool {
            inner: Rc::new(Inner {
                sem: Semaphore::new(size),
                size,
                members: RefCell::new(HashSet::new()),
            }),
        }
    }

    /// The pool's size.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Members running now.
    pub fn running(&self) -> usize {
        self.inner.members.borrow().len()
    }

    /// Free places now.
    pub fn free(&self) -> usize {
        self.inner.sem.available()
    }

    fn is_member(&self) -> bool {
        current().is_some_and(|c| self.inner.members.borrow().contains(&c.id()))
    }

    /// Spawns `f` as a member, waiting for a free place when the pool is full. A member spawning
    /// into its own full pool runs `f` inline and gets back an already finished handle.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if self.is_member() && !self.inner.sem.try_acquire() {
            return run_inline(f);
        } else if !self.is_member() {
            self.inner.sem.acquire();
        }
        self.start(f)
    }

    /// Spawns `f` if a place is free now; otherwise gives `f` back.
    pub fn try_spawn<F, T>(&self, f: F) -> Result<JoinHandle<T>, F>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if self.inner.sem.try_acquire() {
            Ok(self.start(f))
        } else {
            Err(f)
        }
    }

    /// Spawns with a permit already taken.
    fn start<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let inner = self.inner.clone();
        super::spawn(move || {
            let id = current().expect("in a green thread").id();
            inner.members.borrow_mut().insert(id);
            struct Leave(Rc<Inner>, u64);
            impl Drop for Leave {
                fn drop(&mut self) {
                    self.0.members.borrow_mut().remove(&self.1);
                    self.0.sem.release();
                }
            }
            let _leave = Leave(inner, id);
            f()
        })
    }

    /// Waits until no member is running (eventlet's `waitall`).
    pub fn wait_all(&self) {
        for _ in 0..self.inner.size {
            self.inner.sem.acquire();
        }
        for _ in 0..self.inner.size {
            self.inner.sem.release();
        }
    }

    /// Applies `f` to every item on pool members, yielding results in input order. At most
    /// `size` calls run at once; items are pulled from `items` as places free up.
    pub fn imap<I, F, T>(&self, items: I, f: F) -> Imap<'_, I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: 'static,
        F: Fn(I::Item) -> T + Clone + 'static,
        T: 'static,
    {
        Imap {
            pool: self,
            items: items.into_iter(),
            f,
            pending: VecDeque::new(),
        }
    }
}

fn run_inline<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let cell =
        crate::hub::with_core(|c| Arc::new(ParkCell::new(c.shared.clone(), super::next_id())));
    let shared = join::JoinShared::new(cell, None);
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(super::thread::classify);
    shared.complete(outcome);
    JoinHandle::new(shared)
}

/// The iterator returned by [`GreenPool::imap`].
pub struct Imap<'a, I, F, T> {
    pool: &'a GreenPool,
    items: I,
    f: F,
    pending: VecDeque<JoinHandle<T>>,
}

impl<I, F, T> Iterator for Imap<'_, I, F, T>
where
    I: Iterator,
    I::Item: 'static,
    F: Fn(I::Item) -> T + Clone + 'static,
    T: 'static,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        // Keep the pool busy: start as many items as there are free places (at least one when
        // nothing is pending, waiting for a place if need be).
        loop {
            if !self.pending.is_empty() && self.pool.free() == 0 {
                break;
            }
            let Some(item) = self.items.next() else { break };
            let f = self.f.clone();
            self.pending.push_back(self.pool.spawn(move || f(item)));
        }
        self.pending.pop_front().map(JoinHandle::join)
    }
}

impl fmt::Debug for GreenPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPool")
            .field("size", &self.inner.size)
            .field("running", &self.running())
            .finish()
    }
}
