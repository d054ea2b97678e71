//! `Proxy<T>`: an object whose methods run on the pool (eventlet's `tpool.Proxy`).

use std::fmt;
use std::hash::{Hash, Hasher};

use super::pool::Tpool;

/// Wraps an object so that calls on it run on a tpool thread while only the caller waits
/// (eventlet's `tpool.Proxy`). Typical use: a blocking client (a database connection, a file
/// parser) used from green threads.
///
/// * [`call`](Proxy::call) runs a closure on the object through [`Tpool::execute`] (so it may
///   borrow, is not interruptible, and re-raises panics); [`call_wrapped`](Proxy::call_wrapped)
///   wraps the result in a `Proxy` on the same pool (eventlet's `autowrap`).
/// * A proxied iterator is an iterator whose `next` runs on the pool.
/// * `Debug`, `PartialEq`, `Eq` and `Hash` look at the object directly, on the caller's thread
///   (they are expected to be cheap and non-blocking).
///
/// ```
/// use filature::tpool::Proxy;
///
/// let mut lines = Proxy::new(vec!["a", "b"]);
/// lines.call(|v| v.push("c"));
/// assert_eq!(lines.call(|v| v.len()), 3);
///
/// let iter = lines.call_wrapped(|v| v.clone().into_iter()); // Proxy<vec::IntoIter<&str>>
/// assert_eq!(iter.collect::<Vec<_>>(), ["a", "b", "c"]); // each `next` on the pool
/// assert_eq!(format!("{lines:?}"), r#"["a", "b", "c"]"#); // evaluated directly
/// ```
pub struct Proxy<T> {
    obj: T,
    pool: Tpool,
}

impl<T> Proxy<T> {
    /// Wraps `obj`; calls go to the global pool.
    pub fn new(obj: T) -> Proxy<T> {
        Proxy {
            obj,
            pool: super::global().clone(),
        }
    }

    /// Wraps `obj`; calls go to `pool`.
    ///
    /// ```
    /// use filature::tpool::{Proxy, Tpool};
    ///
    /// let pool = Tpool::new("proxy", 1);
    /// let mut p = Proxy::with_pool(5, &pool);
    /// assert_eq!(p.call(|n| std::thread::current().name().unwrap().to_owned()),
    ///            "filature-pool-tpool-proxy-1");
    /// ```
    pub fn with_pool(obj: T, pool: &Tpool) -> Proxy<T> {
        Proxy {
            obj,
            pool: pool.clone(),
        }
    }

    /// The pool the calls go to.
    pub fn pool(&self) -> &Tpool {
        &self.pool
    }

    /// Unwraps the object.
    ///
    /// ```
    /// assert_eq!(filature::tpool::Proxy::new(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.obj
    }
}

impl<T: Send> Proxy<T> {
    /// Runs `f` on the object on a pool thread and returns its result (see [`Tpool::execute`]).
    ///
    /// ```
    /// let mut p = filature::tpool::Proxy::new(String::from("ab"));
    /// p.call(|s| s.push('c'));
    /// assert_eq!(p.call(|s| s.clone()), "abc");
    /// ```
    pub fn call<R, F>(&mut self, f: F) -> R
    where
        F: FnOnce(&mut T) -> R + Send,
        R: Send,
    {
        let obj = &mut self.obj;
        self.pool.execute(move || f(obj))
    }

    /// Like [`call`](Proxy::call), wrapping the result in a `Proxy` on the same pool
    /// (eventlet's `autowrap`).
    ///
    /// ```
    /// let mut p = filature::tpool::Proxy::new(vec![1, 2, 3]);
    /// let mut doubled = p.call_wrapped(|v| v.iter().map(|x| x * 2).collect::<Vec<_>>());
    /// assert_eq!(doubled.call(|v| v.iter().sum::<i32>()), 12);
    /// ```
    pub fn call_wrapped<U, F>(&mut self, f: F) -> Proxy<U>
    where
        F: FnOnce(&mut T) -> U + Send,
        U: Send,
    {
        let obj = self.call(f);
        Proxy {
            obj,
            pool: self.pool.clone(),
        }
    }
}

/// Iterates through the pool: each `next` runs on a pool thread.
impl<I> Iterator for Proxy<I>
where
    I: Iterator + Send,
    I::Item: Send,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        self.call(Iterator::next)
    }
}

impl<T: fmt::Debug> fmt::Debug for Proxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.obj, f)
    }
}

impl<T: PartialEq> PartialEq for Proxy<T> {
    fn eq(&self, other: &Self) -> bool {
        self.obj == other.obj
    }
}

impl<T: Eq> Eq for Proxy<T> {}

impl<T: Hash> Hash for Proxy<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.obj.hash(state);
    }
}
