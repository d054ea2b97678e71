//! The blocking detector: reports a hub callback or a green thread that holds its hub's loop
//! longer than a threshold (opt-in, process-wide, see [`set_blocking_threshold`]).
//!
//! # How it works
//!
//! * Each hub's shared half carries an [`Activity`]: a sequence number `seq` and the id of what
//!   runs (`running`: a green thread's id, 0 for a hub callback). The loop bumps `seq` to an odd
//!   value when it enters a resume or a callback ([`Activity::enter`]) and to the next even value
//!   when that returns ([`Activity::exit`]). One odd value is one **episode**: one uninterrupted
//!   stretch of user code holding the loop.
//! * A registry (`Global::hubs`) holds a `Weak` to every hub's shared half. Hubs register when they
//!   are created (cold); dead entries are pruned by the monitor at every sample, and by
//!   registration whenever the list has doubled since the last prune. [`super::snapshot`] reads
//!   the same registry (`live_hubs`).
//! * While a threshold is set, one OS thread, `filature-blocking-monitor`, samples every hub every
//!   threshold/4 (at least 1 ms). A hub whose `seq` is odd and unchanged since the monitor first
//!   saw it that value, for at least the threshold, is reported once (`tracing::warn!`) with the
//!   hub's name and the green thread's id and name, or "a hub callback". A later episode (another
//!   `seq`) can be reported again. Setting the threshold to `None` lets the monitor exit.
//! * Names: the monitor cannot touch a `Green` (it is `!Send`, owned by its hub). A green thread
//!   spawned with a name is entered in its hub's `Activity::names` when it starts and removed when
//!   it finishes or is abandoned; unnamed ones never touch the map.
//!
//! # Invariants
//!
//! * Only the hub's own thread writes `seq` and `running`, so `enter` and `exit` are plain
//!   `Relaxed` loads and stores (no read-modify-write): three stores per resume, no branch, no
//!   lock; the detector being off changes nothing on that path.
//! * Resumes and callbacks never nest (the loop is never re-entered, and callbacks run only from
//!   the loop between resumes), so `seq` alternates odd/even strictly.
//! * Only time inside a resume or a callback is odd. A main context working outside the loop, and
//!   a hub asleep in `poll`, are even, so they are never reported.
//! * A report is never early: the episode was seen running at two samples at least a threshold
//!   apart with the same `seq`, and `seq` changes whenever the episode ends, so it lasted at least
//!   the threshold. It may be late by up to one sampling period (plus the monitor's own scheduling
//!   delay).
//! * The monitor reads `seq` and `running` with `Relaxed` loads and without a seqlock: its view
//!   may lag the hub by a switch. It reports only an episode it has seen unchanged for a whole
//!   threshold, long after `running` was stored before `seq`; this is a diagnostic, and the worst a
//!   stale read could do is name the neighbouring episode's green thread.
//! * The registry lock is never held while logging or while taking a hub's `names` lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use super::HubShared;

/// The environment variable read once, when the first hub is created: a threshold in milliseconds
/// (`0` leaves the detector off).
pub const BLOCKING_THRESHOLD_ENV: &str = "FILATURE_BLOCKING_THRESHOLD_MS";

/// The shortest sampling period of the monitor.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// What a hub's loop is running, written by the hub's thread only, read by the monitor.
#[derive(Default)]
pub(crate) struct Activity {
    /// Odd while the loop is inside a resume or a callback; bumped on every entry and exit.
    seq: AtomicU64,
    /// The id of the green thread running, 0 for a hub callback. Meaningful while `seq` is odd.
    running: AtomicU64,
    /// Names of this hub's named green threads that have started and not finished, by id.
    names: Mutex<HashMap<u64, Arc<str>>>,
}

impl Activity {
    /// The loop enters a resume of green thread `id` (0: a callback). Returns the token for
    /// [`exit`](Self::exit).
    #[inline(always)]
    pub(crate) fn enter(&self, id: u64) -> u64 {
        let s = self.seq.load(Ordering::Relaxed) | 1;
        self.running.store(id, Ordering::Relaxed);
        self.seq.store(s, Ordering::Relaxed);
        s
    }

    /// The resume or callback that [`enter`](Self::enter) returned `token` for has returned.
    #[inline(always)]
    pub(crate) fn exit(&self, token: u64) {
        self.seq.store(token.wrapping_add(1), Ordering::Relaxed);
    }

    /// A named green thread started on this hub (called on the hub's thread, at start only).
    pub(crate) fn named_started(&self, id: u64, name: &Arc<str>) {
        lock(&self.names).insert(id, name.clone());
    }

    /// A named green thread finished or was abandoned.
    pub(crate) fn named_finished(&self, id: u64) {
        lock(&self.names).remove(&id);
    }

    /// Forgets every name (the hub is torn down).
    pub(crate) fn clear_names(&self) {
        lock(&self.names).clear();
    }

    fn name_of(&self, id: u64) -> Option<Arc<str>> {
        lock(&self.names).get(&id).cloned()
    }
}

/// Locks `m`, ignoring poisoning (no code that could panic runs under these locks).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One hub as the monitor sees it.
struct Watch {
    hub: Weak<HubShared>,
    /// The odd `seq` last seen, and when it was first seen.
    seen: Option<(u64, Instant)>,
    /// Whether the episode `seen` has been reported.
    reported: bool,
}

struct Global {
    threshold: Option<Duration>,
    monitor_running: bool,
    hubs: Vec<Watch>,
    /// `register` prunes dead hubs when `hubs` reaches this length (the monitor prunes too, but
    /// it may never run), then sets it to twice what is left: amortised O(1) per hub.
    prune_at: usize,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    threshold: None,
    monitor_running: false,
    hubs: Vec::new(),
    prune_at: MIN_PRUNE_AT,
});
const MIN_PRUNE_AT: usize = 64;
/// Wakes the monitor when the threshold changes.
static CHANGED: Condvar = Condvar::new();

/// Sets the process-wide blocking threshold: from now on a hub callback or a green thread that
/// holds its hub's loop for longer than `threshold` is reported with a `tracing` warning, naming
/// the hub and the green thread (id and name) or "a hub callback". `None` turns the detector off.
///
/// Only time spent inside the loop counts: a green thread parked (sleeping, waiting on an
/// `Event`), a hub asleep waiting for work, and a thread's main context doing its own work
/// outside the loop are never reported. Each stall is reported once, at most about a quarter of a
/// threshold after it passed the threshold.
///
/// Enabling starts one monitor thread (`filature-blocking-monitor`) that samples every hub every
/// threshold/4 (at least 1 ms); turning it off lets that thread exit. The cost on the loop is a
/// few plain stores per switch, paid whether the detector is on or not. The threshold can also
/// come from the `FILATURE_BLOCKING_THRESHOLD_MS` environment variable, read when the first hub
/// is created.
///
/// ```
/// use std::time::Duration;
/// use filature::{green, hub};
///
/// hub::set_blocking_threshold(Some(Duration::from_millis(100)));
/// let busy = green::Builder::new().name("cruncher").spawn(|| {
///     let start = std::time::Instant::now();
///     while start.elapsed() < Duration::from_millis(10) {} // under the threshold: not reported
/// });
/// busy.join();
/// hub::set_blocking_threshold(None);
/// ```
pub fn set_blocking_threshold(threshold: Option<Duration>) {
    init_from_env();
    set_threshold(threshold);
}

/// The process-wide blocking threshold, `None` while the detector is off.
pub fn blocking_threshold() -> Option<Duration> {
    init_from_env();
    lock(&GLOBAL).threshold
}

fn set_threshold(threshold: Option<Duration>) {
    let mut g = lock(&GLOBAL);
    g.threshold = threshold;
    if threshold.is_some() && !g.monitor_running {
        let spawned = std::thread::Builder::new()
            .name("filature-blocking-monitor".into())
            .spawn(monitor);
        match spawned {
            Ok(_) => g.monitor_running = true,
            Err(e) => {
                tracing::error!("cannot start the blocking detector's monitor thread: {e}");
                g.threshold = None;
            }
        }
    }
    drop(g);
    CHANGED.notify_all();
}

/// Reads [`BLOCKING_THRESHOLD_ENV`] once per process.
fn init_from_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(v) = std::env::var(BLOCKING_THRESHOLD_ENV) else {
            return;
        };
        match v.trim().parse::<u64>() {
            Ok(0) => {}
            Ok(ms) => set_threshold(Some(Duration::from_millis(ms))),
            Err(e) => tracing::error!(
                "{BLOCKING_THRESHOLD_ENV}={v:?} is not a whole number of milliseconds ({e}); \
                 the blocking detector stays off"
            ),
        }
    });
}

/// Enters a new hub in the registry (at hub creation).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn register(hub: &Arc<HubShared>) {
    init_from_env();
    let mut g = lock(&GLOBAL);
    if g.hubs.len() >= g.prune_at {
        g.hubs.retain(|w| w.hub.strong_count() > 0);
        g.prune_at = (g.hubs.len() * 2).max(MIN_PRUNE_AT);
    }
    g.hubs.push(Watch {
        hub: Arc::downgrade(hub),
        seen: None,
        reported: false,
    });
}

/// Every hub in the registry whose shared half is alive, in the order they were created (for
/// [`super::snapshot`]). The registry lock is released before the caller touches any hub.
pub(crate) fn live_hubs() -> Vec<Arc<HubShared>> {
    lock(&GLOBAL)
        .hubs
        .iter()
        .filter_map(|w| w.hub.upgrade())
        .collect()
}

/// A stall to report, gathered under the registry lock and logged after it.
struct Stall {
    hub: Arc<HubShared>,
    id: u64,
    held: Duration,
}

/// The monitor thread's body: samples until the threshold is `None`.
fn monitor() {
    let mut stalls = Vec::new();
    let mut g = lock(&GLOBAL);
    loop {
        let Some(threshold) = g.threshold else {
            g.monitor_running = false;
            return;
        };
        let period = (threshold / 4).max(MIN_PERIOD);
        g = CHANGED
            .wait_timeout(g, period)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        let Some(threshold) = g.threshold else {
            continue;
        };
        let now = Instant::now();
        g.hubs.retain_mut(|w| {
            let Some(hub) = w.hub.upgrade() else {
                return false;
            };
            let a = &hub.activity;
            let seq = a.seq.load(Ordering::Relaxed);
            if seq & 1 == 0 {
                w.seen = None;
                return true;
            }
            match w.seen {
                Some((s, since)) if s == seq => {
                    let held = now.saturating_duration_since(since);
                    if !w.reported && held >= threshold {
                        w.reported = true;
                        let id = a.running.load(Ordering::Relaxed);
                        stalls.push(Stall { hub, id, held });
                    }
                }
                _ => {
                    w.seen = Some((seq, now));
                    w.reported = false;
                }
            }
            true
        });
        if stalls.is_empty() {
            continue;
        }
        drop(g);
        for s in stalls.drain(..) {
            report(&s, threshold);
        }
        g = lock(&GLOBAL);
    }
}

fn report(s: &Stall, threshold: Duration) {
    let hub = s.hub.name();
    if s.id == 0 {
        tracing::warn!(
            hub = %hub,
            "blocking detector: a hub callback has held hub '{hub}' for at least {:?} \
             (threshold {threshold:?})",
            s.held
        );
        return;
    }
    let name = s.hub.activity.name_of(s.id);
    let name = name.as_deref().unwrap_or("<unnamed>");
    tracing::warn!(
        hub = %hub,
        green_id = s.id,
        green_name = %name,
        "blocking detector: green thread {} '{name}' has held hub '{hub}' for at least {:?} \
         without yielding (threshold {threshold:?})",
        s.id,
        s.held
    );
}
