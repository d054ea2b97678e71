//! `park --count N`: N tasks parked on one event at once, then released and
//! joined. Metrics: `parked` (tasks counted in right before they wait, checked
//! against N at release), `rss_kib_per_thread` (RSS growth from before the
//! first spawn to "all parked", over N), `spawn_ns` (per task), `vmas` (lines
//! of /proc/self/maps while parked) and `release_join_ns` (per task).
//!
//! Each system runs in a fresh child process (`filature-bench __park <system>
//! --count N --json`) so that one system's memory does not pollute another's
//! RSS, and so that a system that dies (may runs out of memory mappings near
//! 32k coroutines: an mmap'd stack plus an mprotect guard each, against the
//! default `vm.max_map_count` of 65530) only ends its own attempt. may is tried
//! at N, then at halved sizes until one survives; that N is `max_n`.
//!
//! Before it starts its clock, every child touches and frees [`PREWARM_BYTES_PER_TASK`] × N of
//! anonymous memory (more than the hungriest system, filature, then holds: its RSS plus its page
//! tables), so that no system pays for guest memory the VM has not backed yet (see [`prewarm`]).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{ns_per_op, rss_kib, vma_count, Config, Metric};
use crate::System;

/// The hidden sub-command that runs one system's side in this process.
pub(crate) const CHILD_COMMAND: &str = "__park";

/// A child that has not finished by then is killed and reported as hung.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// The smallest size may is tried at before giving up.
const MAY_MIN_N: usize = 1_000;

/// Bisection steps between may's largest survivor and smallest failure.
const MAY_BISECT_STEPS: usize = 6;

/// Memory each child touches and frees per task before timing. filature's 1M run holds about
/// 4.5 KiB of RSS plus 0.54 KiB of page tables per parked green thread (2026-12-02: 4.49 GB +
/// 0.54 GB); tokio and may hold less.
const PREWARM_BYTES_PER_TASK: usize = 5632;

pub(crate) fn systems() -> Vec<System> {
    vec![
        System {
            name: "filature",
            run: |cfg| in_child("filature", count(cfg), cfg).unwrap_or_else(failed),
        },
        System {
            name: "tokio",
            run: |cfg| in_child("tokio", count(cfg), cfg).unwrap_or_else(failed),
        },
        System {
            name: "may",
            run: may_largest_surviving,
        },
    ]
}

fn count(cfg: &Config) -> usize {
    cfg.count.unwrap_or(cfg.pick(10_000, 1_000_000))
}

fn failed(why: String) -> Vec<Metric> {
    vec![Metric::new("parked", 0.0).with_note(why)]
}

/// Runs `filature-bench __park <system> --count n --json` and collects its metrics.
fn in_child(system: &str, n: usize, cfg: &Config) -> Result<Vec<Metric>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.env("RUST_BACKTRACE", "0");
    cmd.args([CHILD_COMMAND, system, "--count", &n.to_string(), "--json"]);
    if cfg.quick {
        cmd.arg("--quick");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn child: {e}"))?;
    // Drain both pipes on helper threads so a chatty child cannot block.
    let drain = |mut pipe: Box<dyn Read + Send>, name: &str| {
        crate::harness::spawn_named(format!("bench-park-{name}-reader"), move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()), "stdout");
    let err = drain(Box::new(child.stderr.take().unwrap()), "stderr");
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(format!("N={n}: hung, killed after {CHILD_TIMEOUT:?}"));
    };
    if !status.success() {
        return Err(format!("N={n}: {}", describe_failure(status, &stderr)));
    }
    let metrics: Vec<Metric> = stdout.lines().filter_map(Metric::from_json).collect();
    if metrics.is_empty() {
        return Err(format!("N={n}: child printed no metrics"));
    }
    Ok(metrics)
}

/// "killed by signal 11 (SIGSEGV)" or "exit status 101", plus the last line of stderr.
fn describe_failure(status: std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
        (Some(code), _) => format!("exit status {code}"),
        _ => "ended abnormally".to_owned(),
    };
    // The panic message (the line after "panicked at <place>:"), else the last line.
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let last = match stderr.lines().position(|l| l.contains("panicked at")) {
        Some(at) => stderr.lines().nth(at + 1).unwrap_or("").trim(),
        None => lines.next_back().unwrap_or(""),
    };
    if last.is_empty() {
        how
    } else {
        format!("{how}: {last}")
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGILL => "SIGILL",
        _ => "signal",
    }
}

/// Tries may at N, N/2, N/4, … in fresh processes until one size survives,
/// then bisects between that size and the smallest failure (a few steps) so
/// `max_n` lands near the real ceiling; reports the largest survivor.
fn may_largest_surviving(cfg: &Config) -> Vec<Metric> {
    let mut n = count(cfg);
    let mut failures = Vec::new();
    let mut smallest_failure = None;
    let mut best = None;
    while n >= MAY_MIN_N.min(count(cfg)) {
        match in_child("may", n, cfg) {
            Ok(metrics) => {
                best = Some((n, metrics));
                break;
            }
            Err(why) => {
                failures.push(why);
                smallest_failure = Some(n);
            }
        }
        n /= 2;
    }
    let Some((mut low, mut metrics)) = best else {
        return failed(format!("no size survived: {}", failures.join("; ")));
    };
    if let Some(mut high) = smallest_failure {
        for _ in 0..MAY_BISECT_STEPS {
            let mid = low + (high - low) / 2;
            match in_child("may", mid, cfg) {
                Ok(m) => (low, metrics) = (mid, m),
                Err(_) => high = mid,
            }
        }
    }
    let mut max_n = Metric::new("max_n", low as f64);
    if let Some(first) = failures.first() {
        max_n = max_n.with_note(format!(
            "largest size tried that survived; first failure: {first}"
        ));
    }
    metrics.insert(0, max_n);
    metrics
}

/// Entry point of the child process: runs one system's park and prints JSON lines.
pub(crate) fn run_child(system: &str, cfg: &Config) -> Result<(), String> {
    let n = count(cfg);
    // A system that runs out of memory mappings panics while spawning, and
    // unwinding (or capturing a backtrace) with no mappings left can hang the
    // process. Print the message and abort at once: the parent reports both.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{info}");
        std::process::abort();
    }));
    let park: fn(usize) -> Vec<Metric> = match system {
        "filature" => filature_park,
        "tokio" => tokio_park,
        "may" => may_park,
        other => return Err(format!("no park child for system `{other}`")),
    };
    prewarm(n.saturating_mul(PREWARM_BYTES_PER_TASK))?;
    let metrics = park(n);
    for m in metrics {
        println!("{}", m.to_json("park", system));
    }
    Ok(())
}

/// Maps `bytes` of anonymous memory, writes one byte in each page, and unmaps it.
///
/// This VM backs guest memory lazily and takes freed memory back (virtio-balloon free page
/// reporting), so the first touch of a page the guest has not used lately costs several times
/// a warm page fault: the same 1M filature run measured 18.8 µs per spawn the first time and
/// 5.0 µs right after. Touching (and freeing) as much memory as the run will need just before it
/// gives every system the same warm start. The kernel still zeroes each page a system faults in;
/// that cost stays in the figures.
#[inline(never)] // Kept out of line so profiles tell it from the timed part.
fn prewarm(bytes: usize) -> Result<(), String> {
    if bytes == 0 {
        return Ok(());
    }
    // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing aliases
    // nothing; it is written below only within its `bytes` and unmapped before returning.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(format!(
            "prewarm: mmap of {bytes} bytes: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always valid.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let base = map.cast::<u8>();
    for offset in (0..bytes).step_by(page) {
        // SAFETY: `offset < bytes`, inside the read-write mapping made above, which nothing else
        // uses; volatile so the store (and its page fault) is not optimised away.
        unsafe { base.add(offset).write_volatile(1) };
    }
    // SAFETY: unmaps exactly the mapping made above; no reference into it survives.
    if unsafe { libc::munmap(map, bytes) } != 0 {
        return Err(format!(
            "prewarm: munmap: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// What every system measures while its N tasks are parked.
struct Parked {
    parked: usize,
    rss_kib: f64,
    vmas: usize,
}

fn metrics(
    n: usize,
    rss_before: f64,
    spawn: Duration,
    at: Parked,
    release: Duration,
) -> Vec<Metric> {
    let mut parked = Metric::new("parked", at.parked as f64);
    if at.parked != n {
        parked = parked.with_note(format!("only {} of {n} parked at release", at.parked));
    }
    vec![
        parked,
        Metric::new("rss_kib_per_thread", (at.rss_kib - rss_before) / n as f64),
        Metric::new("spawn_ns", ns_per_op(spawn, n)),
        Metric::new("vmas", at.vmas as f64),
        Metric::new("release_join_ns", ns_per_op(release, n)),
    ]
}

/// N green threads waiting on one `Event`; a last green thread measures once
/// all have parked, then sends.
fn filature_park(n: usize) -> Vec<Metric> {
    use std::cell::Cell;
    use std::rc::Rc;

    use filature::green;
    use filature::sync::Event;

    let event = Event::<()>::new();
    let parked = Rc::new(Cell::new(0usize));
    let rss_before = rss_kib();
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let event = event.clone();
            let parked = Rc::clone(&parked);
            green::spawn(move || {
                parked.set(parked.get() + 1);
                event.wait().expect("sent");
            })
        })
        .collect();
    let spawn = start.elapsed();
    let releaser = green::spawn(move || {
        while parked.get() < n {
            green::yield_now();
        }
        let at = Parked {
            parked: parked.get(),
            rss_kib: rss_kib(),
            vmas: vma_count(),
        };
        event.send(()).expect("first send");
        (at, Instant::now())
    });
    let (at, released) = releaser.join();
    for h in handles {
        h.join();
    }
    metrics(n, rss_before, spawn, at, released.elapsed())
}

/// N tokio tasks on a current-thread runtime waiting on one `Notify`.
fn tokio_park(n: usize) -> Vec<Metric> {
    let rt = super::tokio_current_thread("bench-park-tokio");
    rt.block_on(async move {
        let notify = Arc::new(tokio::sync::Notify::new());
        let parked = Arc::new(AtomicUsize::new(0));
        let rss_before = rss_kib();
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let notify = Arc::clone(&notify);
                let parked = Arc::clone(&parked);
                tokio::spawn(async move {
                    parked.fetch_add(1, Ordering::Relaxed);
                    // Registers as a waiter on its first poll, in the same
                    // poll as the increment above (one thread runs both).
                    notify.notified().await;
                })
            })
            .collect();
        let spawn = start.elapsed();
        while parked.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        let at = Parked {
            parked: parked.load(Ordering::Relaxed),
            rss_kib: rss_kib(),
            vmas: vma_count(),
        };
        let released = Instant::now();
        notify.notify_waiters();
        for h in handles {
            h.await.unwrap();
        }
        metrics(n, rss_before, spawn, at, released.elapsed())
    })
}

/// N may coroutines (one worker) waiting on one `SyncFlag`.
fn may_park(n: usize) -> Vec<Metric> {
    super::may_single_worker();
    let flag = Arc::new(may::sync::SyncFlag::new());
    let parked = Arc::new(AtomicUsize::new(0));
    let rss_before = rss_kib();
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let flag = Arc::clone(&flag);
            let parked = Arc::clone(&parked);
            may::go!(move || {
                parked.fetch_add(1, Ordering::Relaxed);
                flag.wait();
            })
        })
        .collect();
    let spawn = start.elapsed();
    while parked.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The last coroutine has counted itself but may still be on its way into
    // `wait`; give the worker a moment to finish parking it.
    std::thread::sleep(Duration::from_millis(10));
    let at = Parked {
        parked: parked.load(Ordering::Relaxed),
        rss_kib: rss_kib(),
        vmas: vma_count(),
    };
    let released = Instant::now();
    flag.fire();
    for h in handles {
        h.join().unwrap();
    }
    metrics(n, rss_before, spawn, at, released.elapsed())
}
