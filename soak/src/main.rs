//! `filature-soak`: a seeded, time-bounded randomized stress test of filature.
//!
//! ```text
//! cargo run --release -p filature-soak --bin filature-soak -- [--secs N] [--seed S]
//! ```
//!
//! Driver threads run random operations from their main context (waits drive their hubs) while
//! runner threads serve their hubs with `hub::run` inside `hub::scope` and are restarted now and
//! then; operations reach every context (green threads, hub callbacks, pool jobs, named-thread
//! jobs, short-lived threads) and every bridge between them, with panics injected in each. See
//! `check.rs` for what is counted, `ops.rs` for the operations, and `bench/README.md` for how to
//! run it longer and reproduce a seed. Exits 0 when no invariant was violated, 1 otherwise, 2 on
//! a bad command line, 3 when the watchdog saw no progress.

#![forbid(unsafe_code)]

mod check;
mod green;
mod net;
mod ops;
mod rng;
mod world;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use filature::hub;

use check::{ensure, violation, KINDS};
use ops::{Ctx, Cx};
use world::{lock, world, HubKind, Slot, PROGRESS, RUNNERS, STOP};

const DRIVERS: usize = 3;
/// How long a driver sleeps after it retires, so its timers (at most 30 ms, reset once to at most
/// 30 ms more) fire before its scope ends.
const DRIVER_DRAIN: Duration = Duration::from_millis(300);
/// The watchdog's patience.
const STALL: Duration = Duration::from_secs(10);
/// Allowed growth between warm-up and the end. Every thread that waits owns a hub (an epoll fd
/// and an eventfd), and the number of threads alive moves by design: the pool resizes (1..=4
/// workers), tpool restarts after `killall` (4 threads), short-lived threads (up to 3), named
/// threads stopped and re-created (3 + thread-ops), runners restarted (2): about 20 threads, 40
/// fds. A leak grows with time instead; longer runs show it.
const FD_SLACK: i64 = 48;
/// RSS: green-thread stacks are pooled and reused, glibc keeps per-thread arenas for threads
/// that come and go, and the bookkeeping of in-flight work varies.
const RSS_SLACK_KIB: i64 = 64 * 1024;

struct Args {
    secs: u64,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut secs = 30;
    let mut seed = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a whole number"))
        };
        match a.as_str() {
            "--secs" => secs = value("--secs")?,
            "--seed" => seed = Some(value("--seed")?),
            "-h" | "--help" => {
                return Err("usage: filature-soak [--secs N] [--seed S]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
    });
    Ok(Args { secs, seed })
}

/// Resident set (KiB) from `/proc/self/statm` (4 KiB pages) and the open fd count.
fn resources() -> (i64, i64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(-1, |pages| pages * 4);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64);
    (rss, fds)
}

fn threads_alive() -> i64 {
    std::fs::read_dir("/proc/self/task").map_or(-1, |d| d.count() as i64)
}

static DONE: AtomicBool = AtomicBool::new(false);

/// Prints a summary every 5 s; if nothing progresses for `STALL`, prints a snapshot of every hub
/// and exits with status 3.
fn watchdog(start: Instant) {
    let mut last = PROGRESS.load(Relaxed);
    let mut since = Instant::now();
    let mut next_line = start + Duration::from_secs(5);
    loop {
        thread::sleep(Duration::from_millis(200));
        if DONE.load(Relaxed) {
            return;
        }
        let now = PROGRESS.load(Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= STALL {
            eprintln!("soak: no progress for {STALL:?}; every hub now:");
            eprintln!("{}", filature::snapshot(Duration::from_secs(2)));
            eprintln!("soak: 0 passed, 1 failed (watchdog: stalled)");
            std::process::exit(3);
        }
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(5);
            let (rss, fds) = resources();
            println!(
                "[{:>6.1}s] ops={now} {} | rss={}MiB fds={fds} threads={}",
                start.elapsed().as_secs_f64(),
                check::op_line(),
                rss / 1024,
                threads_alive()
            );
        }
    }
}

fn driver(i: usize, seed: u64) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(format!("soak-driver-{i}"))
        .spawn(move || {
            world::set_here(HubKind::Driver);
            hub::scope(|| {
                let slot = Slot::for_current_thread();
                lock(&world().drivers).push(slot.clone());
                let mut cx = Cx::new(Ctx::Main, 0, seed);
                while !world::stopping() {
                    cx.run_op();
                    if cx.rng.chance(2) {
                        maybe_restart_runner(&mut cx);
                    }
                    reap_finished();
                }
                slot.retired.store(true, Relaxed);
                lock(&world().drivers).retain(|s| !std::ptr::eq(s.retired, slot.retired));
                filature::green::sleep(DRIVER_DRAIN);
            });
        })
        .expect("a driver thread")
}

/// Stops a random runner (its hub shuts down, unwinding its green threads) and starts a new one,
/// at most every 300 ms.
fn maybe_restart_runner(cx: &mut Cx) {
    let w = world();
    {
        let mut last = lock(&w.last_restart);
        if last.elapsed() < Duration::from_millis(300) {
            return;
        }
        *last = Instant::now();
    }
    check::bump(check::Op::Restart);
    let i = cx.rng.index(RUNNERS);
    let mut r = lock(&w.runners[i]);
    if let Some(old) = r.take() {
        old.slot.retired.store(true, Relaxed);
        old.slot.hub.stop();
        lock(&w.retired_threads).push(old.thread);
    }
    *r = Some(world::start_runner(i));
}

/// Joins the short-lived and retired threads that have finished.
fn reap_finished() {
    let w = world();
    for list in [&w.shorts, &w.retired_threads] {
        let done: Vec<_> = {
            let mut l = lock(list);
            let (done, alive) = std::mem::take(&mut *l)
                .into_iter()
                .partition(|t: &thread::JoinHandle<()>| t.is_finished());
            *l = alive;
            done
        };
        for t in done {
            if t.join().is_err() {
                violation("a short-lived or runner thread panicked");
            }
        }
    }
}

fn join_all(list: &std::sync::Mutex<Vec<thread::JoinHandle<()>>>, what: &str) {
    loop {
        let Some(t) = lock(list).pop() else { return };
        if t.join().is_err() {
            violation(format!("a {what} thread panicked"));
        }
        PROGRESS.fetch_add(1, Relaxed);
    }
}

/// Waits (up to `limit`) for `cond`, moving the progress counter.
fn settle(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= limit {
            return false;
        }
        PROGRESS.fetch_add(1, Relaxed);
        thread::sleep(Duration::from_millis(20));
    }
    true
}

fn step(what: &str) {
    PROGRESS.fetch_add(1, Relaxed);
    println!("soak: end: {what}");
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "soak: seed {} for {} s (reproduce the random choices with --seed {})",
        args.seed, args.secs, args.seed
    );
    check::install();
    filature::tpool::set_num_threads(4);
    world::make_world();
    let start = Instant::now();
    thread::Builder::new()
        .name("soak-watchdog".into())
        .spawn(move || watchdog(start))
        .expect("the watchdog");

    let mut seeds = rng::Rng::new(args.seed);
    let drivers: Vec<_> = (0..DRIVERS).map(|i| driver(i, seeds.next_u64())).collect();

    let total = Duration::from_secs(args.secs);
    let warm = (total / 3).min(Duration::from_secs(5));
    thread::sleep(warm);
    let (rss0, fds0) = resources();
    println!(
        "soak: warm-up at {:.1}s: rss {} MiB, {fds0} fds, {} threads",
        warm.as_secs_f64(),
        rss0 / 1024,
        threads_alive()
    );
    while start.elapsed() < total && !check::failed() {
        thread::sleep(Duration::from_millis(100));
    }
    let (rss1, fds1) = resources();
    println!(
        "soak: end at {:.1}s: rss {} MiB ({:+} KiB), {fds1} fds ({:+}), {} threads",
        start.elapsed().as_secs_f64(),
        rss1 / 1024,
        rss1 - rss0,
        fds1 - fds0,
        threads_alive()
    );
    ensure(rss1 - rss0 <= RSS_SLACK_KIB, || {
        format!(
            "RSS grew by {} KiB after warm-up (bound {RSS_SLACK_KIB})",
            rss1 - rss0
        )
    });
    ensure(fds1 - fds0 <= FD_SLACK, || {
        format!(
            "open fds grew by {} after warm-up (bound {FD_SLACK})",
            fds1 - fds0
        )
    });

    // The end: stop starting work, let everything settle, then check the books.
    STOP.store(true, Relaxed);
    world::set_here(HubKind::Main);
    for d in drivers {
        if d.join().is_err() {
            violation("a driver thread panicked");
        }
    }
    step("drivers joined");
    join_all(&world().shorts, "short-lived");
    step("short-lived threads joined");
    let w = world();
    for r in &w.runners {
        if let Some(old) = lock(r).take() {
            old.slot.retired.store(true, Relaxed);
            old.slot.hub.stop();
            lock(&w.retired_threads).push(old.thread);
        }
    }
    join_all(&w.retired_threads, "runner");
    step("runners stopped");
    w.manager.stop();
    step("named threads stopped");
    let victims = std::mem::take(&mut *lock(&w.victims));
    for v in victims {
        v.handle.kill();
        let r = v.handle.join_result();
        v.rec.joined(green::seen(&r));
        PROGRESS.fetch_add(1, Relaxed);
    }
    step("victims killed and joined");
    w.pool.stop();
    filature::tpool::killall();
    step("pools stopped");
    for q in &w.queues {
        while let Ok(item) = q.try_get() {
            item.got();
        }
    }
    for s in &w.sems {
        ensure(
            s.held.load(Relaxed) == 0 && s.sem.available() == s.permits,
            || {
                format!(
                    "semaphore of {}: {} held, {} available at the end",
                    s.permits,
                    s.held.load(Relaxed),
                    s.sem.available()
                )
            },
        );
    }
    step("queues drained, semaphores checked");
    let settled = settle(Duration::from_secs(15), || {
        KINDS.iter().all(|&k| check::tally_balanced(k).is_ok())
            && check::live_tracked() == 0
            && green::VERIFIED.load(Relaxed) == green::SPAWNED.load(Relaxed)
    });
    step(if settled {
        "settled"
    } else {
        "did not settle within 15 s"
    });
    for k in KINDS {
        if let Err(e) = check::tally_balanced(k) {
            violation(e);
        }
    }
    if let Err(e) = world::items_balanced() {
        violation(e);
    }
    let (spawned, verified) = (green::SPAWNED.load(Relaxed), green::VERIFIED.load(Relaxed));
    ensure(spawned == verified, || {
        format!(
            "{spawned} green threads spawned, {verified} ended and checked; left: {:?}",
            green::live_report()
        )
    });
    ensure(check::live_tracked() == 0, || {
        format!(
            "{} drop-counted values still alive at the end",
            check::live_tracked()
        )
    });
    for e in check::logs_balanced() {
        violation(e);
    }
    DONE.store(true, Relaxed);

    println!(
        "soak: totals after {:.1}s: {}",
        start.elapsed().as_secs_f64(),
        check::op_line()
    );
    println!(
        "soak: posted (accepted/ran/refused): {}",
        check::tally_line()
    );
    println!(
        "soak: green threads {spawned} spawned ({} refused), all checked; values {} made; \
         queue items {} put, {} got, {} handed back, {} unwound with their putter",
        green::REFUSED.load(Relaxed),
        check::made_tracked(),
        world::ITEMS_PUT.load(Relaxed),
        world::ITEMS_GOT.load(Relaxed),
        world::ITEMS_RETURNED.load(Relaxed),
        world::ITEMS_UNWOUND.load(Relaxed),
    );
    println!(
        "soak: panics injected {} (site injected/logged: {})",
        check::injected_total(),
        check::injection_line()
    );
    if check::failed() {
        println!(
            "soak: {} violation(s); seed {}",
            check::violation_count(),
            args.seed
        );
        println!("soak: 0 passed, 1 failed");
        std::process::exit(1);
    }
    println!("soak: 1 passed, 0 failed");
    std::process::exit(0);
}
