//! The process's main thread returning from `main` with green threads still parked (a test with
//! its own `main`: `harness = false`). Each scenario runs as a child process of this binary, whose
//! `main` returns while a green thread is parked; the parent checks its exit code and output.
//!
//! * a green thread parked forever: exit code 0 and nothing printed, even with a `tracing`
//!   subscriber that prints every level;
//! * programs A, B and C of the thread-exit issue on the main thread: what the lent job, the
//!   scoped thread or the resumed green thread computes from a thread-local is right (printed by
//!   the child, checked by the parent), and under AddressSanitizer (`.ci/asan`) nothing is
//!   reported.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use filature::{green, tpool};

const SCENARIO_ENV: &str = "FILATURE_MAIN_EXIT_SCENARIO";
const N: u64 = 4096;
const EXPECTED: u64 = N * (N - 1) / 2;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

thread_local! {
    static DATA: Vec<u64> = (0..N).collect();
}

/// Lends started, and sums printed: `main` returns only once the scenario is in place, however
/// loaded the machine.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Drives main's hub until `STARTED` reaches `n` (bounded).
fn drive_until_started(n: usize) {
    let start = Instant::now();
    while STARTED.load(SeqCst) < n && start.elapsed() < Duration::from_secs(20) {
        green::sleep(ms(5));
    }
}

struct Driver;
impl Drop for Driver {
    fn drop(&mut self) {
        green::sleep(ms(60));
    }
}
thread_local! {
    static DRIVER: Driver = const { Driver };
}

/// Runs in the child: sets a scenario up and returns from `main` with a green thread parked.
fn child(scenario: &str) {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .init();
    match scenario {
        "parked_forever" => {
            green::spawn(|| loop {
                green::sleep(ms(1000));
            });
            green::spawn(|| filature::sync::Event::<()>::new().wait());
        }
        "lend_to_tpool" => {
            green::spawn(|| {
                DATA.with(|d| {
                    tpool::execute(|| {
                        STARTED.fetch_add(1, SeqCst);
                        std::thread::sleep(ms(300));
                        println!("sum={}", d.iter().sum::<u64>());
                    })
                })
            });
        }
        "std_thread_scope" => {
            green::spawn(|| {
                DATA.with(|d| {
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            STARTED.fetch_add(1, SeqCst);
                            std::thread::sleep(ms(300));
                            println!("sum={}", d.iter().sum::<u64>());
                        });
                        green::sleep(ms(10_000));
                    })
                })
            });
        }
        "driver_destructor" => {
            let _ = filature::hub::current();
            DRIVER.with(|_| ());
            green::spawn(|| {
                DATA.with(|d| loop {
                    green::sleep(ms(10));
                    println!("sum={}", d.iter().sum::<u64>());
                    STARTED.fetch_add(1, SeqCst);
                })
            });
            drive_until_started(2);
            return;
        }
        other => panic!("unknown scenario {other}"),
    }
    // The green threads park (and any lend starts); then main returns.
    green::sleep(ms(20));
    if scenario != "parked_forever" {
        drive_until_started(1);
    }
}

fn run(scenario: &str) -> Result<(), String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(SCENARIO_ENV, scenario)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "exit status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        ));
    }
    match scenario {
        "parked_forever" => {
            if !stdout.is_empty() || !stderr.is_empty() {
                return Err(format!("printed something:\n{stdout}{stderr}"));
            }
        }
        _ => {
            let sums: Vec<&str> = stdout.lines().collect();
            if sums.is_empty() || sums.iter().any(|l| *l != format!("sum={EXPECTED}")) {
                return Err(format!(
                    "wrong or missing sums:\n{stdout}\nstderr:\n{stderr}"
                ));
            }
            if !stderr.is_empty() {
                return Err(format!("printed to stderr:\n{stderr}"));
            }
        }
    }
    Ok(())
}

fn main() {
    if let Ok(scenario) = std::env::var(SCENARIO_ENV) {
        child(&scenario);
        return;
    }
    let scenarios = [
        "parked_forever",
        "lend_to_tpool",
        "std_thread_scope",
        "driver_destructor",
    ];
    let mut failed = 0;
    for s in scenarios {
        match run(s) {
            Ok(()) => println!("main exit: {s} ... ok"),
            Err(e) => {
                failed += 1;
                println!("main exit: {s} ... FAILED\n{e}");
            }
        }
    }
    println!(
        "main exit: {} passed, {failed} failed",
        scenarios.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
