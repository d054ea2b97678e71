//! The socket scenarios, every server a child process driven by one load generator
//! (`loadgen`, a single mio thread) in this process:
//!
//! * `echo`: 1,000 connections each sending 1,000 64-byte messages and reading each echo;
//!   `messages_per_sec` and the server's `cpu_us_per_message` (user + system from `/proc`);
//! * `connect_rate`: 20,000 short connections (connect, one 64-byte round trip, close) from 100
//!   concurrent clients; `conns_per_sec` (it measures spawning a task per connection);
//! * `conns`: 50,000 idle connections held by one server thread, a task per connection with a
//!   4 KiB read buffer; `rss_kib_per_connection`.
//!
//! `echo` and `connect_rate` run 3 interleaved rounds (the order of the systems rotating) and
//! report medians with the range; `conns` one round. `--quick` shrinks every count.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{Config, Metric};
use crate::loadgen;
use crate::servers::{ServerProcess, ECHO_SERVER_COMMAND, ECHO_SYSTEMS, PROTOCOL_ECHO_SYSTEMS};
use crate::System;

/// (scenario, system) → the metric samples of every round.
type Samples = HashMap<(&'static str, &'static str), Vec<Metric>>;

/// A registry entry for one system of one scenario (the entries of a scenario share one
/// interleaved measurement).
macro_rules! entry {
    ($scenario:literal, $system:literal) => {
        System {
            name: $system,
            run: |cfg| report($scenario, $system, cfg),
        }
    };
}

pub(crate) fn echo_systems() -> Vec<System> {
    vec![
        entry!("echo", "filature"),
        entry!("echo", "tokio"),
        entry!("echo", "may"),
    ]
}

pub(crate) fn connect_rate_systems() -> Vec<System> {
    vec![
        entry!("connect_rate", "filature"),
        entry!("connect_rate", "tokio"),
        entry!("connect_rate", "may"),
    ]
}

/// `protocol_echo`: the echo written as a `Protocol` and as a `SpawnFactory` handler on a
/// `GreenTransport`, beside the green-socket echo and tokio's, under `echo`'s load.
pub(crate) fn protocol_echo_systems() -> Vec<System> {
    vec![
        entry!("protocol_echo", "filature-protocol"),
        entry!("protocol_echo", "filature-green-transport"),
        entry!("protocol_echo", "filature"),
        entry!("protocol_echo", "tokio"),
    ]
}

pub(crate) fn conns_systems() -> Vec<System> {
    vec![
        entry!("conns", "filature"),
        entry!("conns", "tokio"),
        entry!("conns", "may"),
    ]
}

/// Each scenario's samples, measured once for all its systems.
static RESULTS: OnceLock<Mutex<HashMap<&'static str, Result<Samples, String>>>> = OnceLock::new();

fn report(scenario: &'static str, system: &'static str, cfg: &Config) -> Vec<Metric> {
    let table = RESULTS.get_or_init(Default::default);
    let mut table = table.lock().unwrap();
    let results = table
        .entry(scenario)
        .or_insert_with(|| measure(scenario, cfg));
    let samples = match results {
        Ok(s) => s,
        Err(e) => return vec![Metric::new("error", f64::NAN).with_note(e.clone())],
    };
    let Some(rounds) = samples.get(&(scenario, system)) else {
        return Vec::new();
    };
    // Median per metric name, with the range.
    let mut by_name: Vec<(String, Vec<f64>)> = Vec::new();
    for m in rounds {
        match by_name.iter_mut().find(|(n, _)| *n == m.name) {
            Some((_, v)) => v.push(m.value),
            None => by_name.push((m.name.clone(), vec![m.value])),
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            let note = format!(
                "median of {} rounds, range {:.2}-{:.2}",
                v.len(),
                v[0],
                v[v.len() - 1]
            );
            Metric::new(&name, v[v.len() / 2]).with_note(note)
        })
        .collect()
}

fn measure(scenario: &'static str, cfg: &Config) -> Result<Samples, String> {
    let rounds = if scenario == "conns" {
        1
    } else {
        cfg.pick(1, 3)
    };
    if scenario == "conns" {
        // Before any server starts: children inherit the limit.
        raise_nofile(WANTED_CONNS as u64 + 1024)?;
    }
    let mut samples = Samples::new();
    for round in 0..rounds {
        let systems = if scenario == "protocol_echo" {
            PROTOCOL_ECHO_SYSTEMS
        } else {
            ECHO_SYSTEMS
        };
        let n = systems.len();
        for i in 0..n {
            let system = systems[(i + round) % n];
            let server = ServerProcess::start(ECHO_SERVER_COMMAND, system, 1)?;
            let metrics = match scenario {
                "echo" | "protocol_echo" => echo_round(&server, cfg)?,
                "connect_rate" => connect_round(&server, cfg)?,
                _ => conns_round(&server, cfg)?,
            };
            samples
                .entry((scenario, system))
                .or_default()
                .extend(metrics);
        }
    }
    Ok(samples)
}

fn echo_round(server: &ServerProcess, cfg: &Config) -> Result<Vec<Metric>, String> {
    let conns = cfg.pick(100, 1000);
    let messages = cfg.pick(100, 1000);
    let before = server.cpu_us()?;
    let elapsed = loadgen::echo(server.addr, conns, messages)?;
    let cpu = server.cpu_us()? - before;
    let total = (conns * messages) as f64;
    Ok(vec![
        Metric::new("messages_per_sec", total / elapsed.as_secs_f64()),
        Metric::new("cpu_us_per_message", cpu / total),
    ])
}

fn connect_round(server: &ServerProcess, cfg: &Config) -> Result<Vec<Metric>, String> {
    let total = cfg.pick(2_000, 20_000);
    let elapsed = loadgen::connect_rate(server.addr, total, 100)?;
    Ok(vec![Metric::new(
        "conns_per_sec",
        total as f64 / elapsed.as_secs_f64(),
    )])
}

/// How many idle connections `conns` holds, if the open-file limit allows.
const WANTED_CONNS: usize = 50_000;

fn conns_round(server: &ServerProcess, cfg: &Config) -> Result<Vec<Metric>, String> {
    // The server and this process each hold one fd per connection: each needs the limit.
    let limit = current_nofile()? as usize;
    let wanted = cfg.pick(2_000, WANTED_CONNS);
    let n = wanted.min(limit.saturating_sub(512));
    let capped = if n < wanted {
        format!(
            "; capped from {wanted}: RLIMIT_NOFILE is {limit} and could not be raised (raising \
             the hard limit needs CAP_SYS_RESOURCE)"
        )
    } else {
        String::new()
    };
    if n < 1000 {
        return Err(format!(
            "RLIMIT_NOFILE is {limit}: too low to measure{capped}"
        ));
    }
    let fds_before = server.fd_count()?;
    let rss_before = server.rss_kib()?;
    let held = loadgen::hold(server.addr, n)?;
    // Wait until the server has accepted them all (one fd each).
    let start = Instant::now();
    while server.fd_count()? < fds_before + n {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the server accepted {} of {n} connections in 60 s",
                server.fd_count()? - fds_before
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let each connection's task reach its first read.
    std::thread::sleep(Duration::from_millis(500));
    let rss = server.rss_kib()? - rss_before;
    drop(held);
    Ok(vec![Metric::new("rss_kib_per_connection", rss / n as f64)
        .with_note(format!("{n} idle connections{capped}"))])
}

/// This process's soft open-file limit.
fn current_nofile() -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(lim.rlim_cur)
}

/// Raises this process's open-file limit (soft, and hard if allowed) towards `want`; children
/// inherit it. Returns the soft limit in force afterwards.
fn raise_nofile(want: u64) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: setrlimit reads the struct we pass; raising the hard limit needs privilege and
    // fails cleanly without it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(want);
    }
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above; the soft limit may always go up to the hard one.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) };
    Ok(lim.rlim_max)
}
