//! Overflowing a green thread's stack aborts with a message naming the green thread. The overflow
//! happens in a child process (this test binary re-run with an environment variable).

use std::process::Command;

use filature::green::Builder;

const CHILD_ENV: &str = "FILATURE_TEST_OVERFLOW_CHILD";

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse_forever(depth: u64) -> u64 {
    let buf = std::hint::black_box([depth as u8; 512]);
    recurse_forever(depth + 1) + buf[7] as u64
}

#[test]
fn a_green_thread_overflowing_its_stack_aborts_with_its_name() {
    const TEST: &str = "a_green_thread_overflowing_its_stack_aborts_with_its_name";
    if std::env::var_os(CHILD_ENV).is_some() {
        let h = Builder::new()
            .name("deep")
            .stack_size(64 * 1024)
            .spawn(|| recurse_forever(0));
        let _ = h.join();
        unreachable!("returned from infinite recursion");
    }
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("green thread 'deep' has overflowed its stack"),
        "stderr:\n{stderr}"
    );
}
