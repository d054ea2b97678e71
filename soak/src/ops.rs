//! The random operations, run from every context: a thread's main context (drivers, short-lived
//! threads, named-thread jobs, pool jobs), green threads and hub callbacks. Each checks what it
//! can at once; the tallies and records check the rest at the end.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use filature::deferred::{Deferred, Outcome};
use filature::green::{self, with_timeout};
use filature::sync::{Event, QueueError};
use filature::tpool::{self, WaitTimeoutError};
use filature::{hub, reactor, Cancelled, TimedOut};

use crate::check::{
    self, bump, early, ensure, inject, is_injected, is_injected_failure, posted, violation, Kind,
    Op, Site, Token, Tracked,
};
use crate::green::{kill_victim, spawn, Mode, Style, Target};
use crate::rng::Rng;
use crate::world::{self, lock, stopping, world, Held, HubKind, Item, PutGuard, SHORTS_MAX};

/// The context code runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctx {
    /// A thread's main context: a driver, a short-lived thread.
    Main,
    /// A green thread.
    Green,
    /// A hub callback: a posted call, a timer, a Deferred callback fired there. Must not block.
    Callback,
    /// A `ThreadPool` job (a worker's main context).
    PoolJob,
    /// A named thread's job (its main context).
    NamedJob,
}

impl Ctx {
    pub(crate) fn can_block(self) -> bool {
        self != Ctx::Callback
    }
}

/// How deep bodies nest (a green thread's operations spawn green threads and post calls whose
/// bodies run operations...).
const MAX_DEPTH: u32 = 3;

pub(crate) struct Cx {
    pub(crate) ctx: Ctx,
    pub(crate) depth: u32,
    pub(crate) rng: Rng,
}

impl Cx {
    pub(crate) fn new(ctx: Ctx, depth: u32, seed: u64) -> Cx {
        Cx {
            ctx,
            depth,
            rng: Rng::new(seed),
        }
    }

    /// A seed and depth for a nested body, or `None` at the depth limit.
    fn nest(&mut self) -> Option<(u64, u32)> {
        (self.depth < MAX_DEPTH).then(|| (self.rng.next_u64(), self.depth + 1))
    }

    pub(crate) fn run_ops(&mut self, n: u64) {
        for _ in 0..n {
            if stopping() {
                return;
            }
            self.run_op();
        }
    }

    /// One random operation allowed in this context.
    pub(crate) fn run_op(&mut self) {
        let blocking = self.ctx.can_block();
        match self.rng.below(if blocking { 25 } else { 14 }) {
            0..=2 => self.op_spawn(),
            3 => kill_victim(self),
            4 => self.op_hub_call(),
            5 => self.op_reactor_call(),
            6 => self.op_timer(),
            7 => self.op_pool(),
            8 => self.op_named(),
            9 => self.op_deferred(),
            10 => self.op_queue(),
            11 => self.op_sem(),
            12 => self.op_short(),
            13 => self.op_tpool_spawn(),
            14 | 15 => self.op_sleep(),
            16 => self.op_timeouts(),
            17 | 18 => self.op_event(),
            19 => self.op_lend(),
            20 | 21 => self.op_blocking_call(),
            22 => self.op_killall(),
            23 => self.op_net(),
            _ => kill_victim(self),
        }
        world::PROGRESS.fetch_add(1, Relaxed);
    }

    fn op_spawn(&mut self) {
        let here = world::here();
        let target = match self.rng.below(10) {
            0..=3 => Target::Local,
            4 | 5 => Target::After(self.rng.millis(10)),
            6..=8 => match world::random_slot(&mut self.rng) {
                Some(s) => Target::Remote(s),
                None => Target::Local,
            },
            _ => Target::Reactor,
        };
        let local = matches!(target, Target::Local | Target::After(_));
        // Green threads left on a pool worker's hub run only while a job there waits.
        let victims_ok = !(local && here == HubKind::Pool);
        let mut mode = match self.rng.below(10) {
            0..=2 => Mode::Join,
            3 | 4 => Mode::Victim,
            5 | 6 => Mode::Detached,
            7 => Mode::Forget,
            _ => Mode::KillNow,
        };
        if mode == Mode::Join && !self.ctx.can_block() {
            mode = Mode::Detached;
        }
        if mode == Mode::Victim && !victims_ok {
            mode = Mode::Join;
        }
        let style = if mode == Mode::Victim && self.rng.chance(40) {
            Style::Forever
        } else {
            Style::Ops
        };
        let mode = if self.nest().is_none() && style == Style::Ops && mode == Mode::Join {
            Mode::Detached
        } else {
            mode
        };
        if mode == Mode::Join && !self.ctx.can_block() {
            return;
        }
        spawn(self, target, style, mode);
    }

    /// A call posted to a runner's or driver's hub, as a hub callback.
    fn op_hub_call(&mut self) {
        bump(Op::Call);
        let Some(slot) = world::random_slot(&mut self.rng) else {
            return;
        };
        let token = Token::new(Kind::HubCall);
        let body = self.callback_body();
        let r = slot.hub.call(move || {
            token.run();
            body();
        });
        if !posted(Kind::HubCall, &r) {
            slot.refused("a call");
        }
    }

    fn op_reactor_call(&mut self) {
        bump(Op::Call);
        let token = Token::new(Kind::ReactorCall);
        let body = self.callback_body();
        let r = reactor::call_from_thread(move || {
            token.run();
            body();
        });
        ensure(posted(Kind::ReactorCall, &r), || {
            format!("reactor::call_from_thread refused: {r:?}")
        });
    }

    /// What a posted call or a timer runs: a few operations in callback context, perhaps a
    /// panic.
    fn callback_body(&mut self) -> impl FnOnce() + Send + 'static {
        let nest = self.nest();
        let panic = self.rng.chance(5);
        move || {
            if let Some((seed, depth)) = nest {
                let mut cx = Cx::new(Ctx::Callback, depth, seed);
                let n = cx.rng.below(3);
                cx.run_ops(n);
            }
            if panic {
                inject(Site::Callback);
            }
        }
    }

    /// `hub::call_later` here, or `reactor::call_later`, then perhaps cancel or reset.
    fn op_timer(&mut self) {
        bump(Op::Timer);
        let cancelled = Arc::new(AtomicBool::new(false));
        let d = self.rng.millis(30);
        let body = self.callback_body();
        if self.rng.chance(50) {
            let kind = if world::timers_stable_here() {
                Kind::StableTimer
            } else {
                Kind::UnstableTimer
            };
            let token = Token::cancellable(kind, cancelled.clone());
            let dc = hub::call_later(d, move || {
                token.run();
                body();
            });
            posted::<()>(kind, &Ok(()));
            self.cancel_or_reset(
                kind,
                &cancelled,
                || dc.cancel().is_ok(),
                |d| {
                    let _ = dc.reset(d);
                },
            );
        } else {
            let token = Token::cancellable(Kind::ReactorTimer, cancelled.clone());
            let r = reactor::call_later(d, move || {
                token.run();
                body();
            });
            let Ok(dc) = r else {
                return violation(format!("reactor::call_later refused: {:?}", r.err()));
            };
            posted::<()>(Kind::ReactorTimer, &Ok(()));
            self.cancel_or_reset(
                Kind::ReactorTimer,
                &cancelled,
                || dc.cancel().is_ok(),
                |d| {
                    let _ = dc.reset(d);
                },
            );
        }
    }

    /// Perhaps cancels a timer (counting a successful cancel) or resets it.
    fn cancel_or_reset(
        &mut self,
        kind: Kind,
        cancelled: &AtomicBool,
        cancel: impl FnOnce() -> bool,
        reset: impl FnOnce(Duration),
    ) {
        match self.rng.below(4) {
            0 if cancel() => {
                cancelled.store(true, Relaxed);
                check::tally(kind).cancelled.fetch_add(1, Relaxed);
            }
            1 => reset(self.rng.millis(30)),
            _ => {}
        }
    }

    /// A job for the `ThreadPool`, or a random resize.
    fn op_pool(&mut self) {
        bump(Op::Pool);
        let pool = &world().pool;
        if self.rng.chance(15) {
            let min = self.rng.below(3) as usize;
            let max = (min + self.rng.below(3) as usize).max(1);
            if let Err(e) = pool.adjust_pool_size(min, max) {
                violation(format!("adjust_pool_size({min}, {max}): {e}"));
            }
            return;
        }
        let token = Token::new(Kind::PoolJob);
        let nest = self.nest();
        let panic = self.rng.chance(5);
        let r = pool.call_in_thread(move || {
            token.run();
            if let Some((seed, depth)) = nest {
                let mut cx = Cx::new(Ctx::PoolJob, depth, seed);
                let n = cx.rng.below(3);
                cx.run_ops(n);
            }
            if panic {
                inject(Site::PoolJob);
            }
        });
        ensure(posted(Kind::PoolJob, &r), || {
            format!("ThreadPool::call_in_thread refused while running: {r:?}")
        });
    }

    /// A job for a named thread (queued or, from elsewhere, `call_in_thread`), or a stop.
    fn op_named(&mut self) {
        bump(Op::Named);
        let w = world();
        let id = &w.named_ids[self.rng.index(w.named_ids.len())];
        if self.rng.chance(10) {
            if let Err(e) = w.manager.stop_thread(id) {
                ensure(!e.is_stopped(), || {
                    format!("stop_thread({id}) before stop: {e}")
                });
            }
            return;
        }
        let token = Token::new(Kind::NamedJob);
        let nest = self.nest();
        // `call_in_thread` runs inline on the thread itself (a panic would unwind here): queue
        // there, and inject panics only into queued jobs.
        let on_named = thread::current()
            .name()
            .is_some_and(|n| n.starts_with("soak-n"));
        let queued = on_named || !self.ctx.can_block() || self.rng.chance(50);
        let panic = queued && self.rng.chance(5);
        let job = move || {
            token.run();
            world::set_here(HubKind::Named);
            if let Some((seed, depth)) = nest {
                let mut cx = Cx::new(Ctx::NamedJob, depth, seed);
                let n = cx.rng.below(3);
                cx.run_ops(n);
            }
            if panic {
                inject(Site::NamedJob);
            }
        };
        let r = if queued {
            w.manager.schedule_in_thread(id, job)
        } else {
            w.manager.call_in_thread(id, job)
        };
        ensure(posted(Kind::NamedJob, &r), || {
            format!("a post to named thread {id} refused before stop: {r:?}")
        });
    }

    /// A Deferred chain with callbacks (some panicking), errbacks and a last step, fired here,
    /// from a pool job, from the reactor or a timer, or cancelled; sometimes left unhandled.
    fn op_deferred(&mut self) {
        bump(Op::Deferred);
        let d = Deferred::<Tracked>::new();
        let unhandled = self.rng.chance(3);
        for _ in 0..self.rng.below(4) {
            match self.rng.below(3) {
                0 => {
                    let panic = self.rng.chance(20);
                    d.add_callback(move |v| {
                        if panic {
                            drop(v);
                            inject(Site::Deferred);
                        }
                        Outcome::Value(v)
                    });
                }
                1 if !unhandled => {
                    d.add_errback(|f| {
                        if is_injected_failure(&f) {
                            Outcome::Value(Tracked::new(0))
                        } else {
                            Outcome::Failure(f)
                        }
                    });
                }
                _ => {
                    // Pauses on an inner Deferred that the reactor fires a little later.
                    let delay = self.rng.millis(3);
                    d.add_callback(move |v| {
                        let inner = Deferred::<Tracked>::new();
                        let i2 = inner.clone();
                        let r = reactor::call_later(delay, move || {
                            let _ = i2.callback(v);
                        });
                        ensure(r.is_ok(), || "reactor refused a timer".into());
                        Outcome::Wait(inner)
                    });
                }
            }
        }
        if unhandled {
            // Fired here with a panicking callback and dropped: logged once, when dropped.
            d.add_callback(|v| {
                drop(v);
                inject(Site::Deferred)
            });
            check::expect_log(Site::Deferred);
            let _ = d.callback(Tracked::new(1));
            return;
        }
        let token = Token::new(Kind::DeferredEnd);
        d.add_both(move |r| {
            token.run();
            match &r {
                Ok(_) => {}
                Err(f) if f.is::<Cancelled>() || is_injected_failure(f) => {}
                Err(f) => violation(format!("a Deferred chain failed with {f}")),
            }
            Outcome::Value(r.unwrap_or_else(|_| Tracked::new(2)))
        });
        let fire = d.clone();
        match self.rng.below(5) {
            0 => {
                let _ = d.callback(Tracked::new(3));
            }
            1 => {
                let token = Token::new(Kind::PoolJob);
                let r = world().pool.call_in_thread(move || {
                    token.run();
                    let _ = fire.callback(Tracked::new(4));
                });
                ensure(posted(Kind::PoolJob, &r), || "pool refused a job".into());
            }
            2 => {
                let token = Token::new(Kind::ReactorCall);
                let r = reactor::call_from_thread(move || {
                    token.run();
                    let _ = fire.callback(Tracked::new(5));
                });
                ensure(posted(Kind::ReactorCall, &r), || {
                    "reactor refused a call".into()
                });
            }
            3 => {
                let r = reactor::call_later(self.rng.millis(5), move || {
                    let _ = fire.callback(Tracked::new(6));
                });
                ensure(r.is_ok(), || "reactor refused a timer".into());
            }
            _ => {
                d.cancel();
                let _ = fire.callback(Tracked::new(7));
            }
        }
        if self.rng.chance(20) {
            d.cancel();
        }
    }

    /// Timed puts and gets (`try_` in callbacks) on the shared queues.
    fn op_queue(&mut self) {
        bump(Op::Queue);
        let w = world();
        let q = &w.queues[self.rng.index(w.queues.len())];
        let put = self.rng.chance(50);
        if !self.ctx.can_block() {
            if put {
                let item = Item::new();
                let id = item.id;
                match q.try_put(item) {
                    Ok(()) => world::item_accepted(id),
                    Err(e) => match e.into_inner() {
                        Some(item) => item.returned(),
                        None => violation("try_put lost its item"),
                    },
                }
            } else if let Ok(item) = q.try_get() {
                item.got();
            }
            return;
        }
        let t = self.rng.millis(15);
        let start = Instant::now();
        if put {
            let item = Item::new();
            let id = item.id;
            let _guard = PutGuard(id);
            match q.put_timeout(item, t) {
                Ok(()) => world::item_accepted(id),
                Err(QueueError::TimedOut(Some(item))) => {
                    early(start, t, "Queue::put_timeout");
                    item.returned();
                }
                Err(e) => violation(format!("put_timeout: {e:?} without its item")),
            }
        } else {
            match q.get_timeout(t) {
                Ok(item) => item.got(),
                Err(QueueError::TimedOut(None)) => early(start, t, "Queue::get_timeout"),
                Err(e) => violation(format!("get_timeout: {e:?}")),
            }
        }
    }

    /// Acquire (timed, or `try_` in callbacks), hold a little, release.
    fn op_sem(&mut self) {
        bump(Op::Sem);
        let w = world();
        let s = &w.sems[self.rng.index(w.sems.len())];
        if !self.ctx.can_block() {
            if s.sem.try_acquire() {
                drop(Held::new(s));
            }
            return;
        }
        let t = self.rng.millis(10);
        let start = Instant::now();
        if s.sem.acquire_timeout(t) {
            let _held = Held::new(s);
            green::sleep(self.rng.millis(3));
        } else {
            early(start, t, "Semaphore::acquire_timeout");
        }
    }

    /// A short-lived OS thread that leaves green threads parked when it ends, with or without
    /// `hub::scope`.
    fn op_short(&mut self) {
        let w = world();
        if stopping() || w.shorts_live.fetch_add(1, Relaxed) >= SHORTS_MAX {
            w.shorts_live.fetch_sub(1, Relaxed);
            return;
        }
        bump(Op::Short);
        let seed = self.rng.next_u64();
        let scoped = self.rng.chance(50);
        let t = thread::Builder::new()
            .name(format!(
                "soak-short-{}",
                if scoped { "scoped" } else { "plain" }
            ))
            .spawn(move || {
                world::set_here(HubKind::Short);
                let body = move || {
                    let mut cx = Cx::new(Ctx::Main, 1, seed);
                    for _ in 0..=cx.rng.below(3) {
                        let mode = if cx.rng.chance(50) {
                            Mode::Victim
                        } else {
                            Mode::Detached
                        };
                        let style = if mode == Mode::Victim {
                            Style::Forever
                        } else {
                            Style::Ops
                        };
                        spawn(&mut cx, Target::Local, style, mode);
                    }
                    let n = cx.rng.below(3);
                    cx.run_ops(n);
                    green::sleep(cx.rng.millis(3)); // they run, and park
                };
                if scoped {
                    hub::scope(body);
                } else {
                    body();
                }
                world().shorts_live.fetch_sub(1, Relaxed);
            })
            .expect("a short-lived thread");
        lock(&w.shorts).push(t);
    }

    /// `tpool::spawn`, waited for with a timeout where the caller may block.
    fn op_tpool_spawn(&mut self) {
        bump(Op::Tpool);
        let token = Token::new(Kind::TpoolSpawn);
        posted::<()>(Kind::TpoolSpawn, &Ok(()));
        let nap = self.rng.millis(2);
        let h = tpool::spawn(move || {
            token.run();
            thread::sleep(nap);
            Tracked::new(8)
        });
        if self.ctx.can_block() && self.rng.chance(70) {
            let t = self.rng.millis(5);
            let start = Instant::now();
            match h.wait_timeout(t) {
                Ok(v) => drop(v),
                Err(WaitTimeoutError::TimedOut(_)) => early(start, t, "TpoolHandle::wait_timeout"),
                Err(WaitTimeoutError::Failed(e)) => violation(format!("tpool job failed: {e}")),
            }
        }
    }

    fn op_sleep(&mut self) {
        bump(Op::Sleep);
        let d = self.rng.millis(5);
        let start = Instant::now();
        green::sleep(d);
        early(start, d, "green::sleep");
    }

    /// Nested `with_timeout`s around a sleep or a random blocking operation.
    fn op_timeouts(&mut self) {
        bump(Op::Timeout);
        let (d1, d2, d3) = (
            self.rng.millis(20),
            self.rng.millis(20),
            self.rng.millis(20),
        );
        let other_op = self.nest().is_some() && self.rng.chance(40);
        let start = Instant::now();
        let outer = with_timeout(d1, || {
            let s2 = Instant::now();
            let inner = with_timeout(d2, || {
                if other_op {
                    self.run_op();
                } else {
                    green::sleep(d3);
                    early(s2, d3, "green::sleep under with_timeout");
                }
            });
            if inner.is_err() {
                early(s2, d2, "inner with_timeout");
            }
            inner
        });
        if outer.is_err() {
            early(start, d1, "outer with_timeout");
        }
        let _: Result<Result<(), TimedOut>, TimedOut> = outer;
    }

    /// An Event sent by someone else (a green thread, a timer, a runner, a pool job) or nobody,
    /// waited for with a timeout.
    fn op_event(&mut self) {
        bump(Op::Event);
        let ev = Event::<Arc<Tracked>>::new();
        let e = ev.clone();
        let d = self.rng.millis(10);
        match self.rng.below(5) {
            0 => drop(green::spawn_after(d, move || {
                let _ = e.send(Arc::new(Tracked::new(9)));
            })),
            1 => drop(hub::call_later(d, move || {
                let _ = e.send(Arc::new(Tracked::new(10)));
            })),
            2 => {
                if let Some(slot) = world::random_slot(&mut self.rng) {
                    let token = Token::new(Kind::HubCall);
                    let r = slot.hub.call(move || {
                        token.run();
                        let _ = e.send(Arc::new(Tracked::new(11)));
                    });
                    if !posted(Kind::HubCall, &r) {
                        slot.refused("a call");
                    }
                }
            }
            3 => {
                let token = Token::new(Kind::PoolJob);
                let r = world().pool.call_in_thread(move || {
                    token.run();
                    thread::sleep(d);
                    let _ = e.send(Arc::new(Tracked::new(12)));
                });
                ensure(posted(Kind::PoolJob, &r), || "pool refused a job".into());
            }
            _ => drop(e),
        }
        let t = self.rng.millis(15);
        let start = Instant::now();
        match ev.wait_timeout(t) {
            Ok(Ok(v)) => drop(v),
            Ok(Err(f)) => violation(format!("an Event failed: {f}")),
            Err(TimedOut) => early(start, t, "Event::wait_timeout"),
        }
    }

    /// `tpool::execute` borrowing this stack's data; sometimes the job panics.
    fn op_lend(&mut self) {
        bump(Op::Lend);
        let tag = self.rng.below(250) as u8 + 1;
        let nap = self.rng.millis(2);
        let panic = self.rng.chance(5);
        let mut buf = [0u8; 256];
        let witness = Tracked::new(13);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            tpool::execute(|| {
                thread::sleep(nap);
                buf.fill(tag);
                let _ = &witness;
                if panic {
                    inject(Site::Lend);
                }
                tag
            })
        }));
        match r {
            Ok(v) => {
                ensure(v == tag && buf.iter().all(|&b| b == tag), || {
                    "tpool::execute: the lent buffer or the value is wrong".into()
                });
            }
            Err(p) if panic && is_injected(&*p) => {}
            Err(p) => panic::resume_unwind(p),
        }
    }

    /// `reactor::blocking_call_from_thread[_timeout]` (never from the reactor's thread).
    fn op_blocking_call(&mut self) {
        if reactor::is_reactor_thread() {
            return;
        }
        bump(Op::Blocking);
        let panic = self.rng.chance(5);
        let nested = self.nest();
        let f = move || {
            if let Some((seed, depth)) = nested {
                let mut cx = Cx::new(Ctx::Callback, depth, seed);
                cx.run_ops(1);
            }
            if panic {
                inject(Site::Blocking);
            }
            Tracked::new(14)
        };
        let start = Instant::now();
        let timeout = self.rng.chance(50).then(|| self.rng.millis(10));
        let r = match timeout {
            Some(t) => reactor::blocking_call_from_thread_timeout(t, f),
            None => reactor::blocking_call_from_thread(f),
        };
        match r {
            Ok(v) => drop(v),
            Err(f) if f.is::<TimedOut>() && timeout.is_some() => early(
                start,
                timeout.unwrap_or_default(),
                "blocking_call_from_thread_timeout",
            ),
            Err(f) if panic && is_injected_failure(&f) => {}
            Err(f) => violation(format!("blocking_call_from_thread: {f}")),
        }
    }

    /// `tpool::killall`, at most every 300 ms.
    fn op_killall(&mut self) {
        if self.ctx == Ctx::PoolJob {
            return;
        }
        {
            let mut last = lock(&world().last_killall);
            if last.elapsed() < Duration::from_millis(300) {
                return;
            }
            *last = Instant::now();
        }
        bump(Op::Killall);
        tpool::killall();
    }
}
