//! A panicking job on a named thread is logged with the thread's name, and the thread goes on.
//! (Its own test binary: it installs the process-wide log subscriber.)

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::unbounded;
use filature::threads::ThreadManager;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[test]
fn a_panicking_job_is_logged_with_the_thread_name_and_the_thread_goes_on() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");

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

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("tm-panicky-5d2b"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once with the thread name: {text}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    assert!(lines[0].contains("bad job 2"), "{}", lines[0]);
}
