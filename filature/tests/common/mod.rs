//! Helpers shared by the integration tests: a watchdog, log capture, drop counters.
#![allow(dead_code)]

use std::cell::Cell;
use std::io::Write;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Aborts the whole test process if it is not dropped within `limit` (so nothing hangs CI).
pub(crate) struct Watchdog(Option<mpsc::Sender<()>>);

impl Watchdog {
    pub(crate) fn new(what: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("test-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    eprintln!(
                        "watchdog: test '{what}' still running after {limit:?}; aborting. \
                         What the hubs were doing:\n{}",
                        filature::snapshot(Duration::from_secs(1))
                    );
                    std::process::abort();
                }
            })
            .unwrap();
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Log lines written by `tracing` into a [`LogCapture`], or into [`LogCapture::global`].
#[derive(Clone, Default)]
pub(crate) struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl LogBuf {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// Lines that contain every one of `parts`.
    pub(crate) fn count(&self, parts: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    pub(crate) fn contains(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }
}

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Captures this thread's `tracing` output (every level, no colours) until dropped; read it
/// through the [`LogBuf`] methods.
pub(crate) struct LogCapture {
    buf: LogBuf,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    /// Full lines: time, level, target, fields and message.
    pub(crate) fn start() -> LogCapture {
        let buf = LogBuf::default();
        let guard = tracing::subscriber::set_default(full_lines(buf.clone()));
        LogCapture { buf, _guard: guard }
    }

    /// Bare lines: no time, level or target, so each line starts with the message.
    pub(crate) fn start_bare() -> LogCapture {
        let buf = LogBuf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        LogCapture { buf, _guard: guard }
    }

    /// Every thread's output in this process (full lines), from the first call on, for code that
    /// logs from threads it starts itself. The first call installs the process-wide subscriber,
    /// so a test binary that uses this must not install another one.
    pub(crate) fn global() -> &'static LogBuf {
        static GLOBAL: OnceLock<LogBuf> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let buf = LogBuf::default();
            tracing::subscriber::set_global_default(full_lines(buf.clone()))
                .expect("no other global subscriber");
            buf
        })
    }
}

/// A subscriber that writes every event, at every level, as a full line (no colours) into `buf`.
fn full_lines(buf: LogBuf) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(buf)
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish()
}

impl std::ops::Deref for LogCapture {
    type Target = LogBuf;
    fn deref(&self) -> &LogBuf {
        &self.buf
    }
}

/// The current OS thread's name, `<unnamed>` if it has none.
pub(crate) fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned()
}

/// Polls `cond` (sleeping, not driving a hub) until it holds or 5 s pass; its last answer.
pub(crate) fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// An ordered record of what happened, shared between threads.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

pub(crate) fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

pub(crate) fn push(log: &Log, s: impl Into<String>) {
    log.lock().unwrap().push(s.into());
}

/// Counts its drops in a shared cell.
pub(crate) struct DropCount(pub(crate) Rc<Cell<u32>>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Drives the current hub (main context) until `cond` holds; panics after `limit`.
pub(crate) fn drive_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "condition not reached within {limit:?}"
        );
        filature::green::sleep(Duration::from_millis(1));
    }
}

/// Drives the current hub (main context) until `rx` answers (a thread of the test's own
/// talking to the hub's sockets); panics after `limit`.
pub(crate) fn drive_recv<T>(limit: Duration, rx: &mpsc::Receiver<T>) -> T {
    let mut got = None;
    drive_until(limit, || {
        got = rx.try_recv().ok();
        got.is_some()
    });
    got.expect("just received")
}

/// The message of a caught panic payload.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_owned()
    }
}

pub(crate) const LONG: Duration = Duration::from_secs(30);

/// The variable that tells a re-run test binary which single test it is the child for.
const TEST_CHILD_ENV: &str = "FILATURE_TEST_CHILD";
/// How long a child test process may take before it is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// Runs `body` in a fresh child process (this test binary, filtered to `name`).
pub(crate) fn in_child(name: &str, body: impl FnOnce()) {
    in_child_with_env(name, &[], body);
}

/// [`in_child`], with extra environment variables set for the child.
pub(crate) fn in_child_with_env(name: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    if std::env::var(TEST_CHILD_ENV).as_deref() == Ok(name) {
        body();
        return;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(TEST_CHILD_ENV, name)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(CHILD_LIMIT) {
        Ok(out) => {
            let out = out.unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "child '{name}' failed:\n{text}");
            assert!(
                text.contains("1 passed"),
                "child '{name}' ran no test:\n{text}"
            );
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("child '{name}' did not finish within {CHILD_LIMIT:?}");
        }
    }
}

/// A hub on its own OS thread named `name`, running (`hub::run`) until stopped through the handle.
pub(crate) fn hub_thread(name: &str) -> (filature::hub::HubHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            tx.send(filature::hub::current()).unwrap();
            filature::hub::run();
        })
        .unwrap();
    (rx.recv_timeout(LONG).unwrap(), t)
}

/// Runs this process out of file descriptors: lowers `RLIMIT_NOFILE` to `spare` above the highest
/// open one and fills every free slot below it. Dropping the returned files frees exactly `spare`
/// slots, however the process's descriptors were packed before: the gaps below the highest open
/// descriptor stay filled for good (a process with gaps and one without behave alike; an earlier
/// version freed the gaps too, and a machine with none hung waiting for a slot). The limit stays
/// (for a child process of [`in_child`]).
pub(crate) fn use_up_fds(spare: usize) -> Vec<std::fs::File> {
    let top = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let limit = libc::rlimit {
        rlim_cur: top + 1 + spare as u64,
        rlim_max: top + 1 + spare as u64,
    };
    // SAFETY: a valid rlimit struct for a known resource.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut taken = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        taken.push(f);
    }
    // The kernel hands out the lowest free slot: the last `spare` opened are the ones above `top`.
    assert!(taken.len() >= spare, "only {} slots taken", taken.len());
    let holes = taken.split_off(taken.len() - spare);
    std::mem::forget(taken);
    holes
}

/// The CPU time this process has used.
pub(crate) fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
