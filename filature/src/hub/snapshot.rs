//! Introspection: [`snapshot`] describes every hub (its green threads and where they wait, its
//! timers, inbox and local callbacks) and every thread pool (workers, busy, backlog), and
//! [`Snapshot`] prints as a plain-text table.
//!
//! # How it works
//!
//! * The hubs come from the blocking detector's registry (`detector::live_hubs`, one `Weak` per
//!   hub, entered when the hub is created); the pools from the thread pools' registry
//!   (`pool::registry`, one `Weak` per [`ThreadPool`](crate::pool::ThreadPool), entered when it is
//!   built). A hub whose inbox is closed (its thread exited or shut it down) is left out, as is a
//!   pool that has finished stopping.
//! * A hub is described only on its own thread (`Core::describe`), since a core is `!Send`: the
//!   caller's own hub directly, every other hub by a call posted to its inbox, which wakes it. The
//!   inbox depth is read by the caller before posting (it needs no help from the hub).
//! * The caller then waits for the answers until the deadline. A hub that has not answered by
//!   then (blocked in a long callback or green thread, or a thread that made a hub and does not
//!   drive it) is listed as not answering, with its inbox depth. Its posted call still runs later
//!   and fills a reply slot nobody reads any more.
//! * How the caller waits: in a green thread it parks (its hub keeps running, so it can answer
//!   other snapshots meanwhile); in a main context with a hub it drives that hub, as every
//!   green-blocking call does; in a hub callback, or on a thread without a hub, it blocks the OS
//!   thread on a condvar (a callback cannot park, and a diagnostic should not create a hub).
//!
//! # Invariants
//!
//! * Only the hub's own thread touches its core; the snapshot adds no cross-thread access to it.
//! * The caller never waits past `now + timeout`, whatever the other hubs do.
//! * Every hub counted in `Replies::expected` is accounted for exactly once: answered by its
//!   posted call, or marked done by the caller (its own hub, a closed inbox, a refused post). The
//!   one that completes the count fills `done` and notifies the condvar, so either way of waiting
//!   wakes.
//! * Describing borrows the core's `RefCell`s with `try_borrow`: none is held while user code runs
//!   (the loop releases them before resuming a green thread or running a callback), and if one
//!   ever were, the hub would be listed as not answering rather than panic.
//! * Hot paths: a park stores its `&'static str` label in the green thread (`Green::parked_at`,
//!   one plain store); yield, switch and post are unchanged.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{detector, Core, Msg};
use crate::deadline::deadline_after;
use crate::pool::PoolStats;
use crate::sync::oneshot::Oneshot;

/// Every hub and every thread pool of the process at one moment, from [`snapshot`].
///
/// `Display` prints it as plain-text tables: one row per hub, one per green thread, one per pool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every live hub, in the order they were created.
    pub hubs: Vec<HubSnapshot>,
    /// Every thread pool that has not finished stopping, in the order they were built.
    pub pools: Vec<PoolSnapshot>,
}

/// One hub in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubSnapshot {
    /// The hub's name (its thread's name).
    pub name: String,
    /// Whether this is the hub of the thread that took the snapshot.
    pub is_caller: bool,
    /// Items posted to the hub by other threads and not yet run, when the snapshot asked it.
    pub inbox: usize,
    /// What the hub said about itself; `None` if it did not answer within the timeout.
    pub detail: Option<HubDetail>,
}

/// What a hub that answered says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubDetail {
    /// Its green threads that have been spawned and not finished, by id.
    pub green_threads: Vec<GreenSnapshot>,
    /// Pending timers (including the deadlines of timed waits: a green thread's timed wait keeps
    /// its timer armed after it ends, for its next one, until it comes due or the thread
    /// finishes).
    pub timers: usize,
    /// Callbacks queued on the hub by its own thread for its next pass.
    pub local_callbacks: usize,
}

/// One green thread in a [`HubDetail`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GreenSnapshot {
    /// The green thread's id.
    pub id: u64,
    /// Its name, if it was spawned with one.
    pub name: Option<String>,
    /// Running, ready, or parked and where.
    pub state: GreenState,
}

/// What a green thread is doing in a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreenState {
    /// It is the one that took the snapshot.
    Running,
    /// Queued to run (not started yet, yielded, or woken).
    Ready,
    /// Parked at a wait, labelled by the call that parked it (`"green::sleep"`, `"Event::wait"`,
    /// `"JoinHandle::join"`, …).
    Parked(&'static str),
}

/// One thread pool in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// The pool's name (`""` for an unnamed pool).
    pub name: String,
    /// Whether it is stopping (refusing work, draining its queue).
    pub stopping: bool,
    /// Its counters.
    pub stats: PoolStats,
}

impl Snapshot {
    /// The first hub called `name`.
    pub fn hub(&self, name: &str) -> Option<&HubSnapshot> {
        self.hubs.iter().find(|h| h.name == name)
    }

    /// The first pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolSnapshot> {
        self.pools.iter().find(|p| p.name == name)
    }
}

impl HubSnapshot {
    /// Whether the hub answered within the timeout.
    pub fn answered(&self) -> bool {
        self.detail.is_some()
    }

    /// The first green thread called `name`, if the hub answered.
    pub fn green(&self, name: &str) -> Option<&GreenSnapshot> {
        self.detail
            .as_ref()?
            .green_threads
            .iter()
            .find(|g| g.name.as_deref() == Some(name))
    }
}

/// Describes every hub and every thread pool of the process (the SPEC's introspection snapshot).
///
/// Each hub is asked, through its inbox, to describe itself; the caller's own hub is described
/// directly. A hub that has not answered within `timeout` (it is blocked, or its thread does not
/// drive it) is listed with [`detail`](HubSnapshot::detail) `None` and its inbox depth: the call
/// returns within about `timeout` (a `timeout` too large to add to the clock, `Duration::MAX`,
/// waits for every hub). Meanwhile a green thread caller parks and a main-context
/// caller drives its hub; in a hub callback, or on a thread without a hub, the OS thread blocks.
/// A hub whose thread no longer drives it (a plain thread that once waited on an `Event`) keeps
/// the request in its inbox until it runs its loop again or exits: each snapshot leaves one
/// small closure there.
///
/// Pools: every [`ThreadPool`](crate::pool::ThreadPool) in the process, which includes the
/// reactor's pool and the [`tpool`](crate::tpool) pools once they exist. Named threads
/// ([`crate::threads`]) run their own hubs and appear as hubs.
///
/// ```
/// use std::time::Duration;
/// use filature::{green, hub::GreenState};
///
/// let napper = green::Builder::new().name("napper").spawn(|| green::sleep(Duration::from_secs(60)));
/// green::sleep(Duration::from_millis(1)); // let it start and park
/// let snap = filature::snapshot(Duration::from_secs(1));
/// let here = snap.hubs.iter().find(|h| h.is_caller).unwrap();
/// let g = here.green("napper").unwrap();
/// assert_eq!(g.state, GreenState::Parked("green::sleep"));
/// println!("{snap}");
/// napper.kill();
/// ```
pub fn snapshot(timeout: Duration) -> Snapshot {
    let deadline = deadline_after(timeout);
    let hubs = detector::live_hubs();
    let replies = Arc::new(Replies::new(hubs.len()));
    let mut out = Vec::with_capacity(hubs.len());
    for hub in &hubs {
        let inbox = hub.inbox.len();
        if hub.inbox.is_closed() {
            replies.skip();
            continue;
        }
        let i = out.len();
        let is_caller = super::is_current_shared(hub);
        let mut detail = None;
        if is_caller {
            detail = describe_here();
            replies.skip();
        } else {
            let r = replies.clone();
            let ask = Msg::Call(Box::new(move || r.answer(i, describe_here())));
            if hub.post(ask).is_err() {
                replies.skip(); // closed meanwhile: gone
                continue;
            }
        }
        out.push(HubSnapshot {
            name: hub.name().to_owned(),
            is_caller,
            inbox,
            detail,
        });
    }
    replies.wait(deadline);
    let mut answers = replies.lock();
    for (i, d) in answers.answers.drain(..) {
        if let Some(h) = out.get_mut(i) {
            h.detail = d;
        }
    }
    drop(answers);
    Snapshot {
        hubs: out,
        pools: pools(),
    }
}

#[cfg(not(loom))]
fn pools() -> Vec<PoolSnapshot> {
    crate::pool::registry::all()
        .into_iter()
        .map(|(name, stopping, stats)| PoolSnapshot {
            name,
            stopping,
            stats,
        })
        .collect()
}

#[cfg(loom)]
fn pools() -> Vec<PoolSnapshot> {
    Vec::new()
}

/// Describes the current thread's hub, if it has one and it can be described.
fn describe_here() -> Option<HubDetail> {
    super::existing_core().and_then(|core| core.describe())
}

impl Core {
    /// What this hub says about itself (on its own thread). `None` if a borrow is held.
    fn describe(&self) -> Option<HubDetail> {
        let ready: HashSet<u64> = self
            .ready
            .try_borrow()
            .ok()?
            .iter()
            .map(|g| g.id())
            .collect();
        let running = self.with_current(|g| g.map(|g| g.id()));
        let mut green_threads: Vec<GreenSnapshot> = self
            .greens
            .try_borrow()
            .ok()?
            .slots
            .iter()
            .flatten()
            .map(|g| GreenSnapshot {
                id: g.id(),
                name: g.name.as_deref().map(str::to_owned),
                state: if Some(g.id()) == running {
                    GreenState::Running
                } else if ready.contains(&g.id()) {
                    GreenState::Ready
                } else {
                    GreenState::Parked(g.parked_at.get())
                },
            })
            .collect();
        green_threads.sort_by_key(|g| g.id);
        Some(HubDetail {
            green_threads,
            timers: self.timers.try_borrow().ok()?.len(),
            local_callbacks: self.local.try_borrow().ok()?.len(),
        })
    }
}

/// Where the asked hubs put their answers.
struct Replies {
    state: Mutex<ReplyState>,
    /// Notified when the last hub is accounted for (waiters that block the OS thread).
    all_in: Condvar,
    /// Filled when the last hub is accounted for (waiters that park or drive their hub).
    done: Oneshot<()>,
}

struct ReplyState {
    /// Hubs not yet accounted for.
    pending: usize,
    /// (index in the snapshot's hub list, answer).
    answers: Vec<(usize, Option<HubDetail>)>,
}

impl Replies {
    fn new(expected: usize) -> Replies {
        let r = Replies {
            state: Mutex::new(ReplyState {
                pending: expected,
                answers: Vec::new(),
            }),
            all_in: Condvar::new(),
            done: Oneshot::new(),
        };
        if expected == 0 {
            let _ = r.done.fill(());
        }
        r
    }

    fn lock(&self) -> MutexGuard<'_, ReplyState> {
        // Nothing that can panic runs under this lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer(&self, i: usize, detail: Option<HubDetail>) {
        let mut st = self.lock();
        st.answers.push((i, detail));
        self.account(st);
    }

    fn skip(&self) {
        self.account(self.lock());
    }

    fn account(&self, mut st: MutexGuard<'_, ReplyState>) {
        st.pending -= 1;
        if st.pending == 0 {
            drop(st);
            self.all_in.notify_all();
            let _ = self.done.fill(());
        }
    }

    /// Waits until every hub is accounted for or `deadline` passes (`None`: no limit).
    fn wait(&self, deadline: Option<Instant>) {
        let can_park =
            super::existing_core().is_some_and(|core| core.in_green() || !core.in_callback());
        if can_park {
            self.done.wait("hub::snapshot", deadline);
            return;
        }
        let mut st = self.lock();
        while st.pending > 0 {
            let Some(deadline) = deadline else {
                st = self.all_in.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = self
                .all_in
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl fmt::Display for GreenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GreenState::Running => "running",
            GreenState::Ready => "ready",
            GreenState::Parked(_) => "parked",
        })
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = || "-".to_owned();
        let hubs: Vec<Vec<String>> = self
            .hubs
            .iter()
            .map(|h| {
                let name = if h.is_caller {
                    format!("{} (caller)", h.name)
                } else {
                    h.name.clone()
                };
                match &h.detail {
                    Some(d) => vec![
                        name,
                        "answered".into(),
                        h.inbox.to_string(),
                        d.timers.to_string(),
                        d.local_callbacks.to_string(),
                        d.green_threads.len().to_string(),
                    ],
                    None => vec![
                        name,
                        "not answering".into(),
                        h.inbox.to_string(),
                        dash(),
                        dash(),
                        dash(),
                    ],
                }
            })
            .collect();
        table(
            f,
            &["HUB", "STATE", "INBOX", "TIMERS", "CALLBACKS", "GREEN"],
            &[false, false, true, true, true, true],
            &hubs,
        )?;
        writeln!(f)?;
        let greens: Vec<Vec<String>> = self
            .hubs
            .iter()
            .filter_map(|h| Some((h, h.detail.as_ref()?)))
            .flat_map(|(h, d)| {
                d.green_threads.iter().map(move |g| {
                    let waiting = match g.state {
                        GreenState::Parked(label) if !label.is_empty() => label.to_owned(),
                        _ => "-".to_owned(),
                    };
                    vec![
                        h.name.clone(),
                        g.id.to_string(),
                        g.name.clone().unwrap_or_else(|| "-".into()),
                        g.state.to_string(),
                        waiting,
                    ]
                })
            })
            .collect();
        table(
            f,
            &["HUB", "GREEN ID", "NAME", "STATE", "WAITING IN"],
            &[false, true, false, false, false],
            &greens,
        )?;
        writeln!(f)?;
        let pools: Vec<Vec<String>> = self
            .pools
            .iter()
            .map(|p| {
                vec![
                    if p.name.is_empty() {
                        "-".into()
                    } else {
                        p.name.clone()
                    },
                    if p.stopping { "stopping" } else { "running" }.into(),
                    p.stats.workers.to_string(),
                    p.stats.busy.to_string(),
                    p.stats.idle.to_string(),
                    p.stats.backlog.to_string(),
                ]
            })
            .collect();
        table(
            f,
            &["POOL", "STATE", "WORKERS", "BUSY", "IDLE", "BACKLOG"],
            &[false, false, true, true, true, true],
            &pools,
        )
    }
}

/// Writes a header and rows in aligned columns (two spaces apart; `right` columns right-aligned),
/// or the header and "(none)".
fn table(
    f: &mut fmt::Formatter<'_>,
    header: &[&str],
    right: &[bool],
    rows: &[Vec<String>],
) -> fmt::Result {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |f: &mut fmt::Formatter<'_>, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(cell.chars().count());
            if right[i] {
                s.extend(std::iter::repeat(' ').take(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.extend(std::iter::repeat(' ').take(pad));
            }
        }
        writeln!(f, "{}", s.trim_end())
    };
    line(f, &mut header.iter().copied())?;
    if rows.is_empty() {
        return writeln!(f, "(none)");
    }
    for row in rows {
        line(f, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}
