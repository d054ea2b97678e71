//! With `mprotect` guards forced, spawning until no stack can be had gives a clear error that
//! names `vm.max_map_count`, never a crash or hang. Runs in a child process.

use std::process::Command;
use std::time::Duration;

use filature::green::{self, Builder};

const CHILD_ENV: &str = "FILATURE_TEST_EXHAUST_CHILD";

#[test]
fn try_spawn_reports_the_map_count_ceiling() {
    const TEST: &str = "try_spawn_reports_the_map_count_ceiling";
    if std::env::var_os(CHILD_ENV).is_some() {
        green::force_mprotect_guards();
        let mut handles = Vec::new();
        let err = loop {
            match Builder::new().stack_size(16 * 1024).try_spawn(|| ()) {
                Ok(h) => handles.push(h),
                Err(e) => break e,
            }
            assert!(handles.len() < 1_000_000, "no ceiling reached");
        };
        println!("spawned={} error={err}", handles.len());
        println!("map_count={}", err.stack_error().is_map_count_exceeded());
        // The hub is still usable once stacks come back.
        drop(handles.drain(..handles.len().min(1000)));
        green::sleep(Duration::from_millis(1));
        std::process::exit(0);
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("spawned="))
        .unwrap_or_else(|| panic!("no result line\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(line.contains("cannot spawn a green thread"), "{line}");
    assert!(line.contains("vm.max_map_count"), "{line}");
    assert!(stdout.contains("map_count=true"), "{stdout}");
}
