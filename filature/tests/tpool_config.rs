//! Sizing: `FILATURE_THREADPOOL_SIZE` (a bad value is a clear error), size 0 runs inline.

mod common;

use std::process::Command;

use common::{panic_text, LogCapture, Watchdog, LONG};
use filature::tpool::{self, parse_pool_size, Tpool, SIZE_VAR};

#[test]
fn parsing_the_size() {
    assert_eq!(parse_pool_size("20"), Ok(20));
    assert_eq!(parse_pool_size(" 3\n"), Ok(3));
    assert_eq!(parse_pool_size("0"), Ok(0));
    for bad in ["", "-1", "twenty", "2.5", "0x10"] {
        let err = parse_pool_size(bad).unwrap_err();
        assert_eq!(err.value(), bad);
        let text = err.to_string();
        assert!(text.contains(SIZE_VAR), "{text}");
        assert!(text.contains(&format!("{bad:?}")), "{text}");
    }
}

#[test]
fn size_zero_runs_inline_and_warns_once() {
    let _w = Watchdog::new("size zero", LONG);
    let log = LogCapture::start();
    let pool = Tpool::new("zero", 0);
    let me = std::thread::current().id();
    let mut buf = [0u8; 4];
    assert_eq!(pool.execute(|| std::thread::current().id()), me);
    pool.execute(|| buf.fill(1));
    assert_eq!(buf, [1; 4]);
    assert_eq!(pool.spawn(|| std::thread::current().id()).wait(), me);
    assert_eq!(pool.stats().workers, 0);
    assert_eq!(log.count(&["WARN", "tpool size is 0"]), 1, "{}", log.text());
    // Growing it makes a real pool.
    pool.set_num_threads(1);
    assert_ne!(pool.execute(|| std::thread::current().id()), me);
}

/// Runs `child_with_env` in a child process with `SIZE_VAR` set to `value`.
fn run_child(value: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_with_env",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SIZE_VAR, value)
        .env("TPOOL_CONFIG_CHILD", value)
        .output()
        .unwrap()
}

#[test]
fn a_bad_environment_value_is_a_clear_error() {
    let _w = Watchdog::new("bad env", LONG);
    for value in ["-3", "lots"] {
        let out = run_child(value);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child for {value:?} failed:\n{stdout}"
        );
        assert!(
            stdout.contains("1 passed"),
            "the child test did not run:\n{stdout}"
        );
    }
    let out = run_child("2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The child half of `a_bad_environment_value_is_a_clear_error` (does nothing when run alone).
#[test]
#[ignore = "run by a_bad_environment_value_is_a_clear_error in a child process"]
fn child_with_env() {
    let Ok(value) = std::env::var("TPOOL_CONFIG_CHILD") else {
        return;
    };
    match parse_pool_size(&value) {
        Ok(n) => {
            assert_eq!(tpool::try_init(), Ok(n));
            assert_eq!(tpool::execute(|| 1), 1);
            assert_eq!(tpool::global().num_threads(), n);
        }
        Err(expected) => {
            assert_eq!(tpool::try_init(), Err(expected));
            let caught = std::panic::catch_unwind(|| tpool::execute(|| ()))
                .expect_err("execute must refuse a bad size");
            let text = panic_text(&*caught);
            assert!(text.contains(SIZE_VAR), "{text}");
            assert!(text.contains(&value), "{text}");
            // `set_num_threads` overrides the bad value.
            tpool::set_num_threads(2);
            assert_eq!(tpool::execute(|| 3), 3);
        }
    }
}
