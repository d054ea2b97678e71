//! A panicking job on a named thread is logged with the thread's name, and the thread goes on.
//! (Its own test binary: it installs the process-wide log subscriber.)

mod common;

use std::time::Duration;

use common::LogCapture;
use crossbeam_channel::unbounded;
use filature::threads::ThreadManager;

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn a_panicking_job_is_logged_with_the_thread_name_and_the_thread_goes_on() {
    let logs = LogCapture::global();

    let manager = ThreadManager::new();
    let (tx, rx) = unbounded();
    for n in 1..=3u32 {
        let tx = tx.clone();
        manager
            .call_in_thread("tm-panicky-5d2b", move || {
                if n == 2 {
                    panic!("bad job {n}");
                }
                tx.send((n, std::thread::current().id())).unwrap();
            })
            .unwrap();
    }
    let (a, b) = (
        rx.recv_timeout(TIMEOUT).unwrap(),
        rx.recv_timeout(TIMEOUT).unwrap(),
    );
    assert_eq!((a.0, b.0), (1, 3));
    assert_eq!(a.1, b.1, "the same thread went on after the panic");
    manager.stop();

    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("tm-panicky-5d2b"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once with the thread name: {text}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    assert!(lines[0].contains("bad job 2"), "{}", lines[0]);
}
