//! The measuring and reporting half of the bench: run configuration, timing
//! helpers (warm-up, samples, median, percentiles), the shared throughput
//! rig, and the two output forms (JSON lines and a readable table).
//!
//! Every number printed is measured in this run; nothing is hard-coded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the command line asked for, shared by every scenario.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    /// Small sizes, so that `all --quick` finishes in seconds (the CI smoke test).
    pub(crate) quick: bool,
    /// One JSON object per line instead of a table.
    pub(crate) json: bool,
    /// `--count N` (the `park` scenario's population).
    pub(crate) count: Option<usize>,
    /// `--originals PYTHON`: also run eventlet and Twisted with that interpreter.
    pub(crate) originals: Option<String>,
}

impl Config {
    /// `quick` when `--quick` was given, otherwise `full`.
    pub(crate) fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// How many timed samples to take (after one warm-up run).
    pub(crate) fn samples(&self) -> usize {
        self.pick(3, 7)
    }
}

/// One measured number of one system; the runner adds the system's name.
#[derive(Clone, Debug)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) value: f64,
    /// Free text that explains the number (e.g. why a peer ran at a smaller N).
    pub(crate) note: Option<String>,
}

impl Metric {
    pub(crate) fn new(name: &str, value: f64) -> Self {
        Metric {
            name: name.to_owned(),
            value,
            note: None,
        }
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The JSON-lines form, keys in contract order:
    /// `{"scenario", "system", "metric", "value"[, "note"]}`.
    pub(crate) fn to_json(&self, scenario: &str, system: &str) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        // A non-finite value (a failed measurement) has no JSON number form.
        let value = serde_json::Number::from_f64(self.value)
            .map_or_else(|| "null".to_owned(), |n| n.to_string());
        let mut line = format!(
            "{{\"scenario\": {}, \"system\": {}, \"metric\": {}, \"value\": {}",
            text(scenario),
            text(system),
            text(&self.name),
            value,
        );
        if let Some(note) = &self.note {
            line.push_str(&format!(", \"note\": {}", text(note)));
        }
        line.push('}');
        line
    }

    /// Reads back a line written by [`Metric::to_json`] (used for child processes).
    pub(crate) fn from_json(line: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some(Metric {
            name: v.get("metric")?.as_str()?.to_owned(),
            value: v.get("value")?.as_f64()?,
            note: v.get("note").and_then(|n| n.as_str()).map(str::to_owned),
        })
    }
}

/// A metric together with the system that produced it.
struct Record {
    system: &'static str,
    metric: Metric,
}

// ---------------------------------------------------------------------------
// Timing

/// Runs `sample` once to warm up, then `cfg.samples()` times, and returns the
/// median of what it returned (each call reports its own per-operation figure).
pub(crate) fn median_of(cfg: &Config, mut sample: impl FnMut() -> f64) -> f64 {
    sample();
    let mut values: Vec<f64> = (0..cfg.samples()).map(|_| sample()).collect();
    percentile(&mut values, 50.0)
}

/// Nanoseconds per operation for `ops` operations that took `elapsed`.
pub(crate) fn ns_per_op(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

/// Operations per second for `ops` operations that took `elapsed`.
pub(crate) fn ops_per_sec(elapsed: Duration, ops: usize) -> f64 {
    ops as f64 / elapsed.as_secs_f64()
}

/// The `p`th percentile (nearest rank) of `values`; sorts them in place.
pub(crate) fn percentile(values: &mut [f64], p: f64) -> f64 {
    assert!(!values.is_empty(), "percentile of no samples");
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Times `rounds` round trips with `one` (after `rounds / 10` warm-up ones) and
/// returns the latencies in microseconds.
pub(crate) fn latencies_us(rounds: usize, mut one: impl FnMut()) -> Vec<f64> {
    for _ in 0..rounds / 10 {
        one();
    }
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            one();
            start.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect()
}

/// Spawns an OS thread with a name (every thread in this binary has one).
pub(crate) fn spawn_named<T: Send + 'static>(
    name: impl Into<String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("failed to spawn a bench thread")
}

// ---------------------------------------------------------------------------
// Throughput rig: producers posting jobs into one consumer

/// A job as every "post a call to another thread" peer carries it.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Counts finished jobs and wakes the waiter when the last one is done.
#[derive(Debug)]
pub(crate) struct Countdown {
    left: AtomicUsize,
    done: Mutex<bool>,
    cond: Condvar,
}

impl Countdown {
    pub(crate) fn new(total: usize) -> Arc<Self> {
        Arc::new(Countdown {
            left: AtomicUsize::new(total),
            done: Mutex::new(total == 0),
            cond: Condvar::new(),
        })
    }

    /// Marks one job finished.
    pub(crate) fn tick(&self) {
        // ORDERING: AcqRel so the last ticker sees every earlier job's effects
        // before it announces completion under the mutex.
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.done.lock().unwrap() = true;
            self.cond.notify_all();
        }
    }

    /// Blocks until every job has ticked.
    pub(crate) fn wait(&self) {
        let mut done = self.done.lock().unwrap();
        while !*done {
            done = self.cond.wait(done).unwrap();
        }
    }
}

/// Posts `total` jobs from `producers` named threads through `post` (each
/// producer posts its share) and returns jobs per second, measured from the
/// moment the producers start until the consumer has run the last job.
pub(crate) fn producer_throughput(
    label: &str,
    producers: usize,
    total: usize,
    post: Arc<dyn Fn(Job) + Send + Sync>,
) -> f64 {
    let countdown = Countdown::new(total);
    let start_gate = Arc::new(std::sync::Barrier::new(producers + 1));
    let share = total / producers;
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let post = Arc::clone(&post);
            let countdown = Arc::clone(&countdown);
            let gate = Arc::clone(&start_gate);
            let mine = if p + 1 == producers {
                total - share * (producers - 1)
            } else {
                share
            };
            spawn_named(format!("bench-{label}-producer-{p}"), move || {
                gate.wait();
                for _ in 0..mine {
                    let countdown = Arc::clone(&countdown);
                    post(Box::new(move || countdown.tick()));
                }
            })
        })
        .collect();
    start_gate.wait();
    let start = Instant::now();
    countdown.wait();
    let elapsed = start.elapsed();
    for h in handles {
        h.join().expect("producer thread panicked");
    }
    ops_per_sec(elapsed, total)
}

// ---------------------------------------------------------------------------
// Process memory (Linux /proc)

/// Resident set size of this process in KiB, from `/proc/self/statm`.
pub(crate) fn rss_kib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident_pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("parse /proc/self/statm");
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always valid.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    resident_pages * page / 1024.0
}

/// Number of memory mappings (VMAs) of this process: lines of `/proc/self/maps`.
pub(crate) fn vma_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .count()
}

// ---------------------------------------------------------------------------
// Output

/// Collects one scenario's records and prints them as JSON lines (at once) or
/// as a table (when the scenario ends).
pub(crate) struct Report<'a> {
    cfg: &'a Config,
    scenario: &'static str,
    floor: Option<&'static str>,
    records: Vec<Record>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(
        cfg: &'a Config,
        scenario: &'static str,
        floor: Option<&'static str>,
    ) -> Self {
        Report {
            cfg,
            scenario,
            floor,
            records: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, system: &'static str, metric: Metric) {
        if self.cfg.json {
            println!("{}", metric.to_json(self.scenario, system));
        }
        self.records.push(Record { system, metric });
    }

    /// Prints the table (without `--json`).
    pub(crate) fn finish(self) {
        if self.cfg.json {
            return;
        }
        println!("== {} ==", self.scenario);
        if self.records.is_empty() {
            println!("  (no system compiled in for this scenario)\n");
            return;
        }
        // Metrics in first-seen order; per metric, systems in first-seen order.
        let mut metrics: Vec<&str> = Vec::new();
        let mut by_metric: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for r in &self.records {
            let name = r.metric.name.as_str();
            if !metrics.contains(&name) {
                metrics.push(name);
            }
            by_metric.entry(name).or_default().push(r);
        }
        let floor_header = self.floor.map(|f| format!("x {f}")).unwrap_or_default();
        println!(
            "  {:<22} {:<11} {:>16} {:>12} {:>14}  note",
            "metric", "system", "value", "x filature", floor_header,
        );
        for metric in metrics {
            let rows = &by_metric[metric];
            let base = |system: Option<&str>| {
                system.and_then(|s| rows.iter().find(|r| r.system == s).map(|r| r.metric.value))
            };
            let filature = base(Some("filature"));
            let floor = base(self.floor);
            let ratio = |b: Option<f64>, v: f64| match b {
                Some(b) if b != 0.0 => format!("{:.2}", v / b),
                _ => "-".to_owned(),
            };
            let floor_ratio = |v: f64| match self.floor {
                Some(_) => ratio(floor, v),
                None => String::new(),
            };
            for r in rows {
                let m = &r.metric;
                println!(
                    "  {:<22} {:<11} {:>16} {:>12} {:>14}  {}",
                    m.name,
                    r.system,
                    format_value(m.value),
                    ratio(filature, m.value),
                    floor_ratio(m.value),
                    m.note.as_deref().unwrap_or(""),
                );
            }
        }
        println!();
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 50.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut v, 100.0), 100.0);
        assert_eq!(percentile(&mut [7.0], 50.0), 7.0);
    }

    #[test]
    fn json_line_has_contract_keys_in_order_and_reads_back() {
        let m = Metric::new("p50_us", 2.5).with_note("a \"quoted\" note");
        let line = m.to_json("wake", "tokio");
        assert!(line.starts_with(r#"{"scenario": "wake", "system": "tokio", "metric": "p50_us""#));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["value"], 2.5);
        let back = Metric::from_json(&line).unwrap();
        assert_eq!(back.name, "p50_us");
        assert_eq!(back.note.as_deref(), Some("a \"quoted\" note"));
    }

    #[test]
    fn producer_throughput_runs_every_job() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let rate = producer_throughput(
            "test",
            3,
            1_000,
            Arc::new(move |job: Job| {
                counter.fetch_add(1, Ordering::Relaxed);
                job();
            }),
        );
        assert_eq!(ran.load(Ordering::Relaxed), 1_000);
        assert!(rate > 0.0);
    }
}
