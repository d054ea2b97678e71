//! `http`: the same keep-alive, pipelining HTTP/1.1 "Hello, World!" server on each runtime,
//! loaded by `wrk -t2` on loopback at 100 and 1,000 connections, with 1 worker (hub, runtime
//! thread, may worker) and with 2.
//!
//! Each server is a child process (`servers`), so its CPU time (user + system, from
//! `/proc/<pid>/stat`) divided by the requests it served gives the CPU cost per request, which
//! this noisy VM keeps far steadier than throughput. Rounds are interleaved, the order of the
//! systems rotating each round, and every metric is the median of the rounds (the range goes in
//! the note). `--quick`: one round of one second.
//!
//! The systems' runs share one measurement: the first system asked runs every round for every
//! system, and each system's entry then reports its own figures.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::harness::{Config, Metric};
use crate::servers::{ServerProcess, HTTP_SERVER_COMMAND, HTTP_SYSTEMS, PROTOCOL_HTTP_SYSTEMS};
use crate::System;

/// A registry entry for one system of one of this module's scenarios (the entries of a
/// scenario share one interleaved measurement).
macro_rules! entry {
    ($scenario:literal, $system:literal) => {
        System {
            name: $system,
            run: |cfg| metrics_for($scenario, $system, cfg),
        }
    };
}

pub(crate) fn systems() -> Vec<System> {
    vec![
        entry!("http", "filature"),
        entry!("http", "tokio"),
        entry!("http", "may"),
        entry!("http", "may_minihttp"),
    ]
}

/// `protocol_http`: the same HTTP core written as a filature `Protocol`, beside the green-socket
/// server and tokio's, one hub / worker (no 2-hub runs).
pub(crate) fn protocol_systems() -> Vec<System> {
    vec![
        entry!("protocol_http", "filature-protocol"),
        entry!("protocol_http", "filature"),
        entry!("protocol_http", "tokio"),
    ]
}

/// Which servers a scenario runs, and with how many workers.
fn plan(scenario: &str) -> (&'static [&'static str], &'static [usize]) {
    if scenario == "protocol_http" {
        (PROTOCOL_HTTP_SYSTEMS, &[1])
    } else {
        (HTTP_SYSTEMS, &[1, 2])
    }
}

/// One wrk run's outcome.
#[derive(Clone, Copy, Debug)]
struct Load {
    requests: f64,
    requests_per_sec: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
}

/// (system, workers, connections) → one `Load` per round.
type Results = HashMap<(&'static str, usize, usize), Vec<Load>>;

/// Each scenario's results, measured once for all its systems.
static RESULTS: OnceLock<Mutex<HashMap<&'static str, Result<Results, String>>>> = OnceLock::new();

fn metrics_for(scenario: &'static str, system: &str, cfg: &Config) -> Vec<Metric> {
    let table = RESULTS.get_or_init(Default::default);
    let mut table = table.lock().unwrap();
    let results = table
        .entry(scenario)
        .or_insert_with(|| measure_all(scenario, cfg));
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            return vec![Metric::new("requests_per_sec_c100", f64::NAN).with_note(e.clone())];
        }
    };
    let pick = |workers: usize, conns: usize, f: fn(&Load) -> f64| -> Option<(f64, String)> {
        let loads = results.get(&(intern(scenario, system)?, workers, conns))?;
        let mut values: Vec<f64> = loads.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        let note = format!(
            "median of {} rounds, range {:.2}-{:.2}",
            values.len(),
            values[0],
            values[values.len() - 1]
        );
        Some((median, note))
    };
    let mut out = Vec::new();
    let mut push = |name: &str, v: Option<(f64, String)>| {
        if let Some((value, note)) = v {
            out.push(Metric::new(name, value).with_note(note));
        }
    };
    push(
        "requests_per_sec_c100",
        pick(1, 100, |l| l.requests_per_sec),
    );
    push(
        "requests_per_sec_c1000",
        pick(1, 1000, |l| l.requests_per_sec),
    );
    push(
        "cpu_us_per_request_c100",
        pick(1, 100, |l| l.cpu_us_per_request),
    );
    push(
        "cpu_us_per_request_c1000",
        pick(1, 1000, |l| l.cpu_us_per_request),
    );
    push("p99_ms_c1000", pick(1, 1000, |l| l.p99_ms));
    push(
        "requests_per_sec_c1000_2hubs",
        pick(2, 1000, |l| l.requests_per_sec),
    );
    push(
        "cpu_us_per_request_c1000_2hubs",
        pick(2, 1000, |l| l.cpu_us_per_request),
    );
    out
}

fn intern(scenario: &str, system: &str) -> Option<&'static str> {
    plan(scenario).0.iter().copied().find(|s| *s == system)
}

fn measure_all(scenario: &str, cfg: &Config) -> Result<Results, String> {
    which_wrk()?;
    let (systems, worker_counts) = plan(scenario);
    let rounds = cfg.pick(1, 3);
    let secs = cfg.pick(1, 5);
    let mut results = Results::new();
    for round in 0..rounds {
        for &workers in worker_counts {
            let n = systems.len();
            for i in 0..n {
                let system = systems[(i + round) % n];
                let server = ServerProcess::start(HTTP_SERVER_COMMAND, system, workers)?;
                let load = |conns| wrk(&server, conns, secs);
                for conns in [100, 1000] {
                    let load = load(conns)?;
                    results
                        .entry((system, workers, conns))
                        .or_default()
                        .push(load);
                }
            }
        }
    }
    Ok(results)
}

fn which_wrk() -> Result<(), String> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(_) => Err(
            "wrk is not installed: `apt-get install wrk` (Debian), then run this scenario again"
                .into(),
        ),
    }
}

/// Loads `server` with wrk for `secs` seconds at `conns` connections.
fn wrk(server: &ServerProcess, conns: usize, secs: u64) -> Result<Load, String> {
    let before = server.cpu_us()?;
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "--timeout",
            "5s",
            &format!("http://{}/", server.addr),
        ])
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let after = server.cpu_us()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut load = parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))?;
    load.cpu_us_per_request = if load.requests > 0.0 {
        (after - before) / load.requests
    } else {
        f64::NAN
    };
    Ok(load)
}

/// Reads `N requests in`, `Requests/sec:` and the `99%` latency line of `wrk --latency`.
fn parse_wrk(text: &str) -> Option<Load> {
    let mut requests = None;
    let mut rps = None;
    let mut p99 = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse::<f64>().ok();
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next()?.parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = parse_duration_ms(rest.trim());
        }
    }
    Some(Load {
        requests: requests?,
        requests_per_sec: rps?,
        p99_ms: p99.unwrap_or(f64::NAN),
        cpu_us_per_request: f64::NAN,
    })
}

/// `1.23ms`, `850.00us`, `1.02s` → milliseconds.
fn parse_duration_ms(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:1/\n  2 threads and 100 connections\n  Latency Distribution\n     50%  500.00us\n     99%    2.50ms\n  12345 requests in 1.00s, 1.00MB read\nRequests/sec:  12345.67\nTransfer/sec:      1.00MB\n";
        let l = parse_wrk(text).unwrap();
        assert_eq!(l.requests, 12345.0);
        assert!((l.requests_per_sec - 12345.67).abs() < 1e-6);
        assert!((l.p99_ms - 2.5).abs() < 1e-9);
        assert_eq!(parse_duration_ms("850.00us"), Some(0.85));
        assert_eq!(parse_duration_ms("1.50s"), Some(1500.0));
    }
}
