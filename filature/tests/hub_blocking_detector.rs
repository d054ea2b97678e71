//! The blocking detector: a green thread or a hub callback that holds its hub's loop past the
//! threshold is reported once, by name; parked green threads, idle hubs and main contexts working
//! outside the loop are not. Each test runs in its own child process (the threshold and the log
//! subscriber are process-wide). Margins are wide: 400 ms of work against an 80 ms threshold, and
//! the assertions count reports, never time them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{eventually, in_child, in_child_with_env, LogBuf, LogCapture, Watchdog};
use filature::{green, hub};

const THRESHOLD: Duration = Duration::from_millis(80);
const WORK: Duration = Duration::from_millis(400);
const REPORT: &str = "blocking detector";

/// Burns the CPU for `d` without yielding.
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Runs `body` on a fresh OS thread named `hub_name` (so its hub has that name), with the detector
/// on, and returns the captured log once the monitor has had time to look.
fn on_hub(hub_name: &str, body: impl FnOnce() + Send + 'static) -> &'static LogBuf {
    let _watchdog = Watchdog::new("blocking detector", Duration::from_secs(30));
    let logs = LogCapture::global();
    hub::set_blocking_threshold(Some(THRESHOLD));
    std::thread::Builder::new()
        .name(hub_name.into())
        .spawn(body)
        .unwrap()
        .join()
        .unwrap();
    // Give the monitor a few more periods to report whatever it is going to report.
    std::thread::sleep(THRESHOLD * 3);
    hub::set_blocking_threshold(None);
    logs
}

fn monitor_alive() -> bool {
    std::fs::read_dir("/proc/self/task").unwrap().any(|t| {
        let comm = t.unwrap().path().join("comm");
        std::fs::read_to_string(comm).is_ok_and(|c| c.starts_with("filature-block"))
    })
}

#[test]
fn a_green_thread_spinning_past_the_threshold_is_reported_once_by_name() {
    in_child(
        "a_green_thread_spinning_past_the_threshold_is_reported_once_by_name",
        || {
            let logs = on_hub("spin-hub", || {
                let g = green::Builder::new().name("cruncher").spawn(|| spin(WORK));
                g.join();
            });
            let text = logs.text();
            assert_eq!(
                logs.count(&[REPORT, "green thread", "'cruncher'", "hub 'spin-hub'"]),
                1,
                "{text}"
            );
            assert_eq!(logs.count(&[REPORT]), 1, "{text}");
            assert!(logs.count(&["WARN", "green_name=cruncher"]) == 1, "{text}");
        },
    );
}

#[test]
fn a_hub_callback_spinning_past_the_threshold_is_reported_once() {
    in_child(
        "a_hub_callback_spinning_past_the_threshold_is_reported_once",
        || {
            let logs = on_hub("callback-hub", || {
                hub::call_soon(|| spin(WORK));
                green::sleep(WORK + THRESHOLD); // drives the loop, which runs the callback
            });
            let text = logs.text();
            assert_eq!(
                logs.count(&[REPORT, "a hub callback", "hub 'callback-hub'"]),
                1,
                "{text}"
            );
            assert_eq!(logs.count(&[REPORT]), 1, "{text}");
        },
    );
}

#[test]
fn each_stall_of_one_green_thread_is_its_own_report() {
    in_child("each_stall_of_one_green_thread_is_its_own_report", || {
        let logs = on_hub("twice-hub", || {
            let g = green::Builder::new().name("twice").spawn(|| {
                spin(WORK);
                // A yield with nothing else ready goes on at once: park instead.
                green::sleep(Duration::from_millis(1));
                spin(WORK);
            });
            g.join();
        });
        let text = logs.text();
        assert_eq!(
            logs.count(&[REPORT, "'twice'", "hub 'twice-hub'"]),
            2,
            "{text}"
        );
    });
}

#[test]
fn an_unnamed_green_thread_is_reported_by_id() {
    static SPUN: AtomicU64 = AtomicU64::new(0);
    in_child("an_unnamed_green_thread_is_reported_by_id", || {
        let logs = on_hub("anon-hub", || {
            let g = green::spawn(|| {
                let id = green::current().unwrap().id();
                spin(WORK);
                id
            });
            SPUN.store(g.join(), Ordering::Relaxed);
        });
        let id = SPUN.load(Ordering::Relaxed);
        let text = logs.text();
        let needle = format!("green thread {id} '<unnamed>'");
        assert_eq!(logs.count(&[REPORT, &needle]), 1, "{text}");
    });
}

#[test]
fn a_parked_green_thread_is_not_reported() {
    in_child("a_parked_green_thread_is_not_reported", || {
        let logs = on_hub("park-hub", || {
            let g = green::Builder::new()
                .name("sleeper")
                .spawn(|| green::sleep(WORK));
            g.join();
        });
        assert_eq!(logs.count(&[REPORT]), 0, "{}", logs.text());
    });
}

#[test]
fn a_main_context_working_outside_the_loop_is_not_reported() {
    in_child(
        "a_main_context_working_outside_the_loop_is_not_reported",
        || {
            let logs = on_hub("main-hub", || {
                let g = green::Builder::new()
                    .name("waiting")
                    .spawn(|| green::sleep(THRESHOLD));
                green::yield_now(); // the green thread starts and parks
                spin(WORK); // the main context's own work, outside the loop
                g.join();
            });
            assert_eq!(logs.count(&[REPORT]), 0, "{}", logs.text());
        },
    );
}

#[test]
fn turning_the_detector_off_stops_reports_and_the_monitor() {
    in_child(
        "turning_the_detector_off_stops_reports_and_the_monitor",
        || {
            let logs = on_hub("off-hub", || {
                green::Builder::new()
                    .name("first")
                    .spawn(|| spin(WORK))
                    .join();
            });
            assert_eq!(hub::blocking_threshold(), None);
            assert!(eventually(|| !monitor_alive()), "the monitor thread exited");
            std::thread::Builder::new()
                .name("off-hub".into())
                .spawn(|| {
                    green::Builder::new()
                        .name("second")
                        .spawn(|| spin(WORK))
                        .join();
                })
                .unwrap()
                .join()
                .unwrap();
            let text = logs.text();
            assert_eq!(logs.count(&[REPORT, "'first'"]), 1, "{text}");
            assert_eq!(logs.count(&[REPORT, "'second'"]), 0, "{text}");
            // And on again: a new monitor starts.
            hub::set_blocking_threshold(Some(THRESHOLD));
            assert!(eventually(monitor_alive), "a new monitor thread started");
            hub::set_blocking_threshold(None);
        },
    );
}

#[test]
fn the_threshold_can_come_from_the_environment() {
    in_child_with_env(
        "the_threshold_can_come_from_the_environment",
        &[(hub::BLOCKING_THRESHOLD_ENV, "80")],
        || {
            let logs = LogCapture::global();
            std::thread::Builder::new()
                .name("env-hub".into())
                .spawn(|| {
                    assert_eq!(hub::blocking_threshold(), Some(THRESHOLD));
                    green::Builder::new()
                        .name("from-env")
                        .spawn(|| spin(WORK))
                        .join();
                })
                .unwrap()
                .join()
                .unwrap();
            std::thread::sleep(THRESHOLD * 3);
            hub::set_blocking_threshold(None);
            let text = logs.text();
            assert_eq!(
                logs.count(&[REPORT, "'from-env'", "hub 'env-hub'"]),
                1,
                "{text}"
            );
        },
    );
}

#[test]
fn a_bad_threshold_in_the_environment_is_logged_and_leaves_the_detector_off() {
    in_child_with_env(
        "a_bad_threshold_in_the_environment_is_logged_and_leaves_the_detector_off",
        &[(hub::BLOCKING_THRESHOLD_ENV, "forty")],
        || {
            let logs = LogCapture::global();
            let _hub = hub::current(); // the first hub reads the variable
            assert_eq!(hub::blocking_threshold(), None);
            let text = logs.text();
            assert_eq!(
                logs.count(&[
                    "ERROR",
                    "FILATURE_BLOCKING_THRESHOLD_MS=\"forty\"",
                    "stays off"
                ]),
                1,
                "{text}"
            );
        },
    );
}
