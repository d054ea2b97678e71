//! `tpool::Proxy`: calls and iteration run on the pool; Debug, PartialEq and Hash do not.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use common::{Watchdog, LONG};
use filature::green;
use filature::tpool::{Proxy, Tpool};

fn here() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

/// Records on which thread each of its trait methods ran.
struct Spy {
    seen: Arc<Mutex<Vec<(&'static str, String)>>>,
    value: u32,
}

impl Spy {
    fn note(&self, what: &'static str) {
        self.seen.lock().unwrap().push((what, here()));
    }
}

impl fmt::Debug for Spy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.note("debug");
        write!(f, "Spy({})", self.value)
    }
}

impl PartialEq for Spy {
    fn eq(&self, other: &Spy) -> bool {
        self.note("eq");
        self.value == other.value
    }
}

impl Hash for Spy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.note("hash");
        self.value.hash(state);
    }
}

#[test]
fn calls_run_on_the_pool_and_call_wrapped_stays_on_it() {
    let _w = Watchdog::new("proxy call", LONG);
    let pool = Tpool::new("proxy", 1);
    let g = green::spawn(move || {
        let mut p = Proxy::with_pool(Vec::<u32>::new(), &pool);
        let name = p.call(|v| {
            v.extend([3, 1, 2]);
            here()
        });
        let mut sorted = p.call_wrapped(|v| {
            let mut s = v.clone();
            s.sort();
            s
        });
        let sorted_on = sorted.call(|_| here());
        (name, sorted_on, sorted.into_inner(), p.into_inner())
    });
    let (name, sorted_on, sorted, original) = g.join();
    assert_eq!(name, "filature-pool-tpool-proxy-1");
    assert_eq!(
        sorted_on, "filature-pool-tpool-proxy-1",
        "autowrap keeps the pool"
    );
    assert_eq!(sorted, [1, 2, 3]);
    assert_eq!(original, [3, 1, 2]);
}

#[test]
fn iteration_goes_through_the_pool() {
    let _w = Watchdog::new("proxy iter", LONG);
    let pool = Tpool::new("proxy-iter", 1);
    let it = Proxy::with_pool((0..4).map(|i| (i, here())), &pool);
    let items: Vec<_> = it.collect();
    assert_eq!(items.len(), 4);
    for (i, (n, thread)) in items.into_iter().enumerate() {
        assert_eq!(n, i);
        assert_eq!(thread, "filature-pool-tpool-proxy-iter-1");
    }
}

#[test]
fn debug_eq_and_hash_are_evaluated_directly() {
    let _w = Watchdog::new("proxy direct", LONG);
    let pool = Tpool::new("proxy-direct", 1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = Proxy::with_pool(
        Spy {
            seen: seen.clone(),
            value: 1,
        },
        &pool,
    );
    let b = Proxy::with_pool(
        Spy {
            seen: seen.clone(),
            value: 1,
        },
        &pool,
    );
    let c = Proxy::with_pool(
        Spy {
            seen: seen.clone(),
            value: 2,
        },
        &pool,
    );
    assert_eq!(format!("{a:?}"), "Spy(1)");
    assert!(a == b);
    assert!(a != c);
    let hash = |p: &Proxy<Spy>| {
        let mut h = DefaultHasher::new();
        p.hash(&mut h);
        h.finish()
    };
    assert_eq!(hash(&a), hash(&b));
    let me = here();
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 5);
    for (what, thread) in seen.iter() {
        assert_eq!(thread, &me, "{what} ran on {thread}, not on the caller");
    }
    assert_eq!(pool.stats().workers, 0, "the pool was never used");
}
