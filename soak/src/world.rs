//! The shared state the soak's threads act on: hubs to post to, queues, semaphores, the green
//! threads waiting to be killed, the thread pool and the named threads.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Instant;

use filature::green::JoinHandle;
use filature::hub::{self, HubHandle};
use filature::pool::ThreadPool;
use filature::sync::{Queue, Semaphore};
use filature::threads::ThreadManager;

use crate::check::{ensure, Tracked};
use crate::green::GreenRec;

/// Set when the run's time is up: operations stop starting new work.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);
/// Bumped by every finished operation; the watchdog wants it to move.
pub(crate) static PROGRESS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn stopping() -> bool {
    STOP.load(Relaxed)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What kind of thread the code runs on; decides what it may leave behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HubKind {
    /// A driver thread (its main context runs operations; its hub runs while it waits).
    Driver,
    /// A runner thread (`hub::run` inside `hub::scope`), restarted now and then.
    Runner,
    /// A named thread of the soak's `ThreadManager`.
    Named,
    /// A `ThreadPool` or `tpool` worker: its hub runs only while a job waits.
    Pool,
    /// A short-lived OS thread.
    Short,
    /// The reactor's thread.
    Reactor,
    /// The main thread (end of run only).
    Main,
}

thread_local! {
    static KIND: Cell<Option<HubKind>> = const { Cell::new(None) };
    /// The retirement flag of this thread's hub, on drivers and runners.
    static RETIRED: Cell<Option<&'static AtomicBool>> = const { Cell::new(None) };
}

pub(crate) fn set_here(kind: HubKind) {
    KIND.with(|k| k.set(Some(kind)));
}

/// The kind of the calling thread.
pub(crate) fn here() -> HubKind {
    if filature::reactor::is_reactor_thread() {
        HubKind::Reactor
    } else if filature::pool::is_current_thread_worker() {
        HubKind::Pool
    } else {
        KIND.with(Cell::get).unwrap_or(HubKind::Main)
    }
}

/// True if a timer set now on this thread's hub fires before the hub shuts down: a driver that
/// has not retired (it sleeps past every timer before its scope ends), or the reactor.
pub(crate) fn timers_stable_here() -> bool {
    match here() {
        HubKind::Reactor => true,
        HubKind::Driver => RETIRED.with(Cell::get).is_some_and(|r| !r.load(Relaxed)),
        _ => false,
    }
}

/// A hub others may post to, with the flag set before it is told to stop: a post it refuses
/// while the flag is clear is a violation.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) hub: HubHandle,
    pub(crate) retired: &'static AtomicBool,
}

impl Slot {
    /// A slot for the calling thread's hub, remembered as this thread's own.
    pub(crate) fn for_current_thread() -> Slot {
        let retired: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        RETIRED.with(|r| r.set(Some(retired)));
        Slot {
            hub: hub::current(),
            retired,
        }
    }

    /// Checks a refused post.
    pub(crate) fn refused(&self, what: &str) {
        ensure(self.retired.load(Relaxed), || {
            format!(
                "{what} to hub '{}' refused before it was told to stop",
                self.hub.name()
            )
        });
    }
}

pub(crate) struct Runner {
    pub(crate) slot: Slot,
    pub(crate) thread: thread::JoinHandle<()>,
}

/// A green thread waiting for someone to kill or join it.
pub(crate) struct Victim {
    pub(crate) handle: JoinHandle<u64>,
    pub(crate) rec: Arc<GreenRec>,
}

/// A semaphore and how many of its permits the soak holds.
pub(crate) struct Sem {
    pub(crate) sem: Semaphore,
    pub(crate) permits: usize,
    pub(crate) held: AtomicIsize,
}

/// A permit held; released on drop (also when its holder is killed).
pub(crate) struct Held<'a>(&'a Sem);

impl<'a> Held<'a> {
    pub(crate) fn new(s: &'a Sem) -> Held<'a> {
        let now = s.held.fetch_add(1, Relaxed) + 1;
        ensure(now <= s.permits as isize, || {
            format!("{now} permits held of a semaphore of {}", s.permits)
        });
        Held(s)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Relaxed);
        self.0.sem.release();
    }
}

/// The queues' items, with the bookkeeping that shows one lost or delivered twice: an id is in
/// `accepted` from the `Ok` of its put until a getter takes it, in `early` if a getter took it
/// before its putter saw the `Ok`.
#[derive(Default)]
pub(crate) struct ItemBook {
    pub(crate) accepted: HashSet<u64>,
    pub(crate) early: HashSet<u64>,
    /// Ids whose put was unwound (killed, timed out from outside): delivered or not.
    pub(crate) unwound: HashSet<u64>,
}

pub(crate) static ITEMS: Mutex<Option<ItemBook>> = Mutex::new(None);
static NEXT_ITEM: AtomicU64 = AtomicU64::new(1);
pub(crate) static ITEMS_GOT: AtomicU64 = AtomicU64::new(0);
pub(crate) static ITEMS_PUT: AtomicU64 = AtomicU64::new(0);
pub(crate) static ITEMS_RETURNED: AtomicU64 = AtomicU64::new(0);

fn with_items<R>(f: impl FnOnce(&mut ItemBook) -> R) -> R {
    f(lock(&ITEMS).get_or_insert_with(ItemBook::default))
}

pub(crate) struct Item {
    pub(crate) id: u64,
    settled: bool,
    _value: Tracked,
}

impl Item {
    pub(crate) fn new() -> Item {
        let id = NEXT_ITEM.fetch_add(1, Relaxed);
        Item {
            id,
            settled: false,
            _value: Tracked::new(id),
        }
    }

    /// A getter took it.
    pub(crate) fn got(mut self) {
        self.settled = true;
        ITEMS_GOT.fetch_add(1, Relaxed);
        with_items(|b| {
            if !b.accepted.remove(&self.id) {
                b.early.insert(self.id);
            }
        });
    }

    /// Its put failed and handed it back.
    pub(crate) fn returned(mut self) {
        self.settled = true;
        ITEMS_RETURNED.fetch_add(1, Relaxed);
    }
}

/// The putter saw `Ok` for item `id`.
pub(crate) fn item_accepted(id: u64) {
    ITEMS_PUT.fetch_add(1, Relaxed);
    with_items(|b| {
        if !b.early.remove(&id) {
            b.accepted.insert(id);
        }
    });
}

/// Records a put of `id` that unwound (the guard of a put in progress).
pub(crate) struct PutGuard(pub(crate) u64);

impl Drop for PutGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            with_items(|b| b.unwound.insert(self.0));
        }
    }
}

/// The end-of-run check of the items, after the queues were drained.
pub(crate) fn items_balanced() -> Result<(), String> {
    with_items(|b| {
        let strays: Vec<_> = b.early.difference(&b.unwound).take(5).collect();
        if !b.accepted.is_empty() || !strays.is_empty() {
            Err(format!(
                "queue items: {} accepted but never got (e.g. {:?}); {} got but never accepted \
                 (e.g. {strays:?})",
                b.accepted.len(),
                b.accepted.iter().take(5).collect::<Vec<_>>(),
                b.early.difference(&b.unwound).count()
            ))
        } else {
            Ok(())
        }
    })
}

impl Drop for Item {
    fn drop(&mut self) {
        // Unsettled: its putter unwound with it (killed, or timed out from outside).
        if !self.settled {
            ITEMS_UNWOUND.fetch_add(1, Relaxed);
        }
    }
}

pub(crate) static ITEMS_UNWOUND: AtomicU64 = AtomicU64::new(0);

pub(crate) struct World {
    pub(crate) runners: Vec<Mutex<Option<Runner>>>,
    pub(crate) retired_threads: Mutex<Vec<thread::JoinHandle<()>>>,
    pub(crate) drivers: Mutex<Vec<Slot>>,
    pub(crate) queues: Vec<Queue<Item>>,
    pub(crate) sems: Vec<Sem>,
    pub(crate) victims: Mutex<Vec<Victim>>,
    pub(crate) pool: ThreadPool,
    pub(crate) manager: ThreadManager,
    pub(crate) named_ids: Vec<String>,
    pub(crate) shorts: Mutex<Vec<thread::JoinHandle<()>>>,
    pub(crate) shorts_live: AtomicUsize,
    pub(crate) last_killall: Mutex<Instant>,
    pub(crate) last_restart: Mutex<Instant>,
}

static WORLD: OnceLock<World> = OnceLock::new();

pub(crate) fn world() -> &'static World {
    WORLD.get().expect("the world is made first")
}

pub(crate) const RUNNERS: usize = 2;
pub(crate) const VICTIMS_MAX: usize = 64;
pub(crate) const SHORTS_MAX: usize = 3;

pub(crate) fn make_world() {
    let pool = ThreadPool::builder()
        .name("soak-pool")
        .min(1)
        .max(3)
        .build()
        .expect("a valid size");
    pool.start().expect("a new pool starts");
    let w = World {
        runners: (0..RUNNERS).map(|_| Mutex::new(None)).collect(),
        retired_threads: Mutex::new(vec![]),
        drivers: Mutex::new(vec![]),
        queues: vec![
            Queue::bounded(0),
            Queue::bounded(1),
            Queue::bounded(3),
            Queue::unbounded(),
        ],
        sems: [1, 2, 3]
            .into_iter()
            .map(|permits| Sem {
                sem: Semaphore::new(permits),
                permits,
                held: AtomicIsize::new(0),
            })
            .collect(),
        victims: Mutex::new(vec![]),
        pool,
        manager: ThreadManager::new(),
        named_ids: (0..3).map(|i| format!("soak-n{i}")).collect(),
        shorts: Mutex::new(vec![]),
        shorts_live: AtomicUsize::new(0),
        last_killall: Mutex::new(Instant::now()),
        last_restart: Mutex::new(Instant::now()),
    };
    assert!(WORLD.set(w).is_ok(), "one world");
    for i in 0..RUNNERS {
        *lock(&world().runners[i]) = Some(start_runner(i));
    }
}

/// Starts runner `i`: `hub::run` inside `hub::scope` on a thread of its own.
pub(crate) fn start_runner(i: usize) -> Runner {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("soak-runner-{i}"))
        .spawn(move || {
            set_here(HubKind::Runner);
            hub::scope(|| {
                tx.send(Slot::for_current_thread())
                    .expect("the starter waits");
                hub::run();
            });
        })
        .expect("a runner thread");
    let slot = rx.recv().expect("the runner publishes its hub");
    Runner { slot, thread }
}

/// A random runner's or driver's hub to post to.
pub(crate) fn random_slot(rng: &mut crate::rng::Rng) -> Option<Slot> {
    let w = world();
    if rng.chance(60) {
        let r = lock(&w.runners[rng.index(RUNNERS)]);
        r.as_ref().map(|r| r.slot.clone())
    } else {
        let d = lock(&w.drivers);
        (!d.is_empty()).then(|| d[rng.index(d.len())].clone())
    }
}
