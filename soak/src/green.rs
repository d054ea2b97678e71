//! The soak's green threads: each has a record shared by its body, its link listener and its
//! handle's holder; when the last of them lets go, the record checks that the green thread ended
//! exactly once and that everyone saw the same outcome.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use filature::green::{self, JoinError, JoinHandle, JoinTimeoutError};
use filature::reactor;
use filature::sync::Event;

use crate::check::{self, ensure, inject, is_injected_failure, violation, Site};
use crate::ops::{Ctx, Cx};
use crate::world::{self, lock, Slot, Victim, VICTIMS_MAX};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
pub(crate) static SPAWNED: AtomicU64 = AtomicU64::new(0);
pub(crate) static REFUSED: AtomicU64 = AtomicU64::new(0);
pub(crate) static VERIFIED: AtomicU64 = AtomicU64::new(0);

/// An outcome as someone saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    Value(u64),
    Panicked,
    Killed,
}

pub(crate) fn seen(r: &Result<u64, JoinError>) -> Seen {
    match r {
        Ok(v) => Seen::Value(*v),
        Err(JoinError::Panicked(f)) => {
            ensure(is_injected_failure(f), || {
                format!("a green thread panicked with something not injected: {f}")
            });
            Seen::Panicked
        }
        Err(JoinError::Killed) => Seen::Killed,
    }
}

const UNSTARTED: u8 = 0;
const RUNNING: u8 = 1;
const RETURNED: u8 = 2;
const PANICKED: u8 = 3;
const UNWOUND: u8 = 4;

/// What happens to a green thread's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Linked and joined by the spawner (now, with join_timeout rounds).
    Join,
    /// Linked and put in the victims list (killed and joined by anyone later).
    Victim,
    /// Linked; the handle is dropped at once.
    Detached,
    /// Not linked; the handle is dropped at once (an injected panic is then logged once).
    Forget,
    /// Linked and killed at once (often before it starts).
    KillNow,
}

/// The records alive, by id, with where they were spawned (reported if any is left at the end).
pub(crate) static LIVE: Mutex<Option<HashMap<u64, String>>> = Mutex::new(None);

pub(crate) fn live_report() -> Vec<String> {
    lock(&LIVE)
        .iter()
        .flatten()
        .take(10)
        .map(|(id, origin)| format!("#{id}: {origin}"))
        .collect()
}

pub(crate) struct GreenRec {
    id: u64,
    origin: String,
    mode: Mode,
    /// Its link listener panics (after recording what it saw).
    bad_listener: bool,
    /// The second listener (unlinked at once) ran before its unlink: it observed the outcome.
    extra_ran: AtomicU8,
    body: AtomicU8,
    body_runs: AtomicU32,
    links: Mutex<Vec<Seen>>,
    join: Mutex<Option<Seen>>,
}

impl GreenRec {
    fn value(&self) -> u64 {
        self.id.wrapping_mul(0x9E37_79B9)
    }

    /// The outcome its body says it had.
    fn expected(&self) -> Seen {
        match self.body.load(Relaxed) {
            RETURNED => Seen::Value(self.value()),
            PANICKED => Seen::Panicked,
            _ => Seen::Killed,
        }
    }

    pub(crate) fn joined(&self, s: Seen) {
        let exp = self.expected();
        ensure(s == exp, || {
            format!(
                "green thread #{}: joined {s:?}, its body says {exp:?}",
                self.id
            )
        });
        let prev = lock(&self.join).replace(s);
        ensure(prev.is_none(), || {
            format!("green thread #{} joined twice", self.id)
        });
        check::bump(check::Op::Join);
    }
}

impl Drop for GreenRec {
    fn drop(&mut self) {
        VERIFIED.fetch_add(1, Relaxed);
        lock(&LIVE)
            .get_or_insert_with(HashMap::new)
            .remove(&self.id);
        let id = self.id;
        let body = self.body.load(Relaxed);
        ensure(body != RUNNING, || {
            format!("green thread #{id}: body still running")
        });
        let runs = self.body_runs.load(Relaxed);
        ensure(runs <= 1, || {
            format!("green thread #{id}: body ran {runs} times")
        });
        let exp = self.expected();
        let links = std::mem::take(&mut *lock(&self.links));
        if self.mode != Mode::Forget {
            ensure(links.len() == 1, || {
                format!(
                    "green thread #{id} ({}): link listener ran {} times",
                    self.origin,
                    links.len()
                )
            });
        }
        for l in links {
            ensure(l == exp, || {
                format!("green thread #{id}: link listener saw {l:?}, its body says {exp:?}")
            });
        }
        // "Panicked and nobody joined it" is logged once when no listener observed the panic
        // (none was linked, or the one linked panicked) and the handle was dropped unjoined.
        let joined = lock(&self.join).is_some();
        let observed = joined || self.extra_ran.load(Relaxed) != 0;
        if body == PANICKED && (self.mode == Mode::Forget || (self.bad_listener && !observed)) {
            check::expect_log(Site::Green);
        }
    }
}

/// Held by the body while it runs; records how it ended.
pub(crate) struct BodyGuard(Arc<GreenRec>);

impl BodyGuard {
    fn start(&self) {
        let n = self.0.body_runs.fetch_add(1, Relaxed) + 1;
        ensure(n == 1, || {
            format!("green thread #{}: body started {n} times", self.0.id)
        });
        self.0.body.store(RUNNING, Relaxed);
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if self.0.body.load(Relaxed) == RUNNING {
            self.0.body.store(UNWOUND, Relaxed);
        }
    }
}

/// How the body behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// Runs a few random operations, then returns (or panics).
    Ops,
    /// Parks until it is killed.
    Forever,
}

fn body(guard: BodyGuard, seed: u64, depth: u32, style: Style, panic: bool) -> u64 {
    guard.start();
    match style {
        Style::Forever => {
            let never = Event::<()>::new();
            let r = never.wait();
            violation(format!("a wait on a never-sent Event returned {r:?}"));
        }
        Style::Ops => {
            let mut cx = Cx::new(Ctx::Green, depth, seed);
            let n = cx.rng.below(3);
            cx.run_ops(n);
        }
    }
    if panic {
        guard.0.body.store(PANICKED, Relaxed);
        inject(Site::Green);
    }
    guard.0.body.store(RETURNED, Relaxed);
    guard.0.value()
}

/// Where to spawn.
pub(crate) enum Target {
    Local,
    After(Duration),
    Remote(Slot),
    Reactor,
}

/// Spawns a green thread at `target` and deals with its handle as `mode` says (`Join` only
/// where the caller may block).
pub(crate) fn spawn(cx: &mut Cx, target: Target, style: Style, mode: Mode) {
    let mode = if style == Style::Forever && !matches!(mode, Mode::Victim | Mode::KillNow) {
        Mode::KillNow
    } else {
        mode
    };
    let origin = format!(
        "{mode:?} {style:?} spawned {} from {:?} on {:?} (thread {})",
        match &target {
            Target::Local => "locally".to_string(),
            Target::After(d) => format!("after {d:?}"),
            Target::Remote(s) => format!("on hub {}", s.hub.name()),
            Target::Reactor => "on the reactor".to_string(),
        },
        cx.ctx,
        world::here(),
        std::thread::current().name().unwrap_or("?"),
    );
    let id = NEXT_ID.fetch_add(1, Relaxed);
    lock(&LIVE)
        .get_or_insert_with(HashMap::new)
        .insert(id, origin.clone());
    let rec = Arc::new(GreenRec {
        id,
        origin,
        mode,
        bad_listener: cx.rng.chance(3),
        extra_ran: AtomicU8::new(0),
        body: AtomicU8::new(UNSTARTED),
        body_runs: AtomicU32::new(0),
        links: Mutex::new(vec![]),
        join: Mutex::new(None),
    });
    let guard = BodyGuard(rec.clone());
    let bad_listener = rec.bad_listener;
    let (seed, depth) = (cx.rng.next_u64(), cx.depth + 1);
    let panic = cx.rng.chance(8);
    let f = move || body(guard, seed, depth, style, panic);
    check::bump(check::Op::Spawn);
    let handle = match target {
        Target::Local => green::spawn(f),
        Target::After(d) => green::spawn_after(d, f),
        Target::Reactor => reactor::spawn(f),
        Target::Remote(slot) => match slot.hub.spawn(f) {
            Ok(h) => h,
            Err(_) => {
                slot.refused("a spawn");
                REFUSED.fetch_add(1, Relaxed);
                return;
            }
        },
    };
    SPAWNED.fetch_add(1, Relaxed);
    if mode != Mode::Forget {
        let r = rec.clone();
        handle.link(move |out| {
            let s = seen(out);
            lock(&r.links).push(s);
            if bad_listener {
                inject(Site::Link);
            }
        });
        if cx.rng.chance(10) {
            // A second listener, unlinked at once: if the unlink says so, it never runs.
            let r2 = rec.clone();
            let id = handle.link(move |_| r2.extra_ran.store(1, Relaxed));
            if handle.unlink(id) {
                ensure(rec.extra_ran.load(Relaxed) == 0, || {
                    "an unlinked listener ran".into()
                });
            }
        }
    }
    match mode {
        Mode::Join if cx.ctx.can_block() => join_until_done(cx, handle, &rec),
        Mode::Victim => {
            let mut v = lock(&world::world().victims);
            if v.len() < VICTIMS_MAX {
                v.push(Victim { handle, rec });
            } else {
                handle.kill();
            }
        }
        Mode::KillNow => {
            handle.kill();
            check::bump(check::Op::Kill);
            if cx.ctx.can_block() && cx.rng.chance(50) {
                let r = handle.join_result();
                rec.joined(seen(&r));
            }
        }
        _ => drop(handle),
    }
}

/// Joins with `join_timeout` rounds (killing it after a few), checking timed-out rounds waited
/// long enough.
pub(crate) fn join_until_done(cx: &mut Cx, mut h: JoinHandle<u64>, rec: &GreenRec) {
    let mut killed = false;
    for round in 0.. {
        if !killed && (round >= 3 || cx.rng.chance(20)) {
            h.kill();
            killed = true;
            check::bump(check::Op::Kill);
        }
        if killed && cx.rng.chance(30) {
            let r = h.join_result();
            rec.joined(seen(&r));
            return;
        }
        let t = cx.rng.millis(10);
        let start = Instant::now();
        match h.join_timeout(t) {
            Ok(v) => return rec.joined(Seen::Value(v)),
            Err(JoinTimeoutError::Failed(e)) => return rec.joined(seen(&Err(e))),
            Err(JoinTimeoutError::TimedOut(back)) => {
                check::early(start, t, "JoinHandle::join_timeout");
                h = back;
            }
        }
    }
}

/// Takes a random victim: kills it (mostly) and joins it where the caller may block.
pub(crate) fn kill_victim(cx: &mut Cx) {
    let v = {
        let mut vs = lock(&world::world().victims);
        if vs.is_empty() {
            return;
        }
        let i = cx.rng.index(vs.len());
        vs.swap_remove(i)
    };
    let me = green::current().map(|c| c.id());
    if me == Some(v.handle.id()) {
        // Not ourselves: put it back.
        lock(&world::world().victims).push(v);
        return;
    }
    // Killed first: if this caller is unwound while it joins (killed, timed out), the handle is
    // dropped, and a victim parked forever on a hub that never shuts down would stay there.
    v.handle.kill();
    check::bump(check::Op::Kill);
    if cx.ctx.can_block() {
        join_until_done(cx, v.handle, &v.rec);
    }
}
