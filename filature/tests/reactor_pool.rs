//! The reactor's thread pool: `call_in_thread`, `defer_to_thread` (and its cancellation),
//! `call_multiple_in_thread`, `suggest_thread_pool_size`, `defer_to_thread_pool`.
//!
//! One process shares one reactor and one reactor pool, so the tests take a lock and run one at
//! a time (several of them resize or fill the pool). Every wait has a timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use filature::deferred::{Deferred, Outcome};
use filature::pool::ThreadPool;
use filature::reactor;
use filature::sync::Event;
use filature::{Cancelled, Failure, Stopped};

const LONG: Duration = Duration::from_secs(20);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

type Seen<T> = Event<(Result<T, Failure>, bool)>;

/// Observes the Deferred: its result and whether the observer ran on the reactor thread. (An
/// observer added after the Deferred fired runs on the adding thread, so tests that check the
/// thread hold the job on a gate until the observer is in place.)
fn observe<T: Clone + Send + 'static>(d: &Deferred<T>) -> Seen<T> {
    let ev: Seen<T> = Event::new();
    let e = ev.clone();
    d.observe(move |r| {
        let _ = e.send((r.clone(), reactor::is_reactor_thread()));
    });
    ev
}

/// The Deferred's result, waited for with a timeout, and whether it was seen on the reactor.
fn outcome<T: Clone + Send + 'static>(d: &Deferred<T>) -> (Result<T, Failure>, bool) {
    wait(&observe(d))
}

/// A gate for a job: the job waits (bounded) until the sender is used or dropped.
fn gate() -> (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>) {
    std::sync::mpsc::channel()
}

fn wait<T: Clone>(ev: &Event<T>) -> T {
    ev.wait_timeout(LONG).expect("timed out").unwrap()
}

fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the reactor pool has no running and no queued job.
fn pool_quiet() {
    until("the reactor pool to be idle", || {
        let s = reactor::thread_pool().stats();
        s.busy == 0 && s.backlog == 0
    });
}

/// Occupies `n` workers of the reactor pool until the returned gate is released (dropped or
/// sent); returns once all `n` are running.
fn block_workers(n: usize) -> Vec<std::sync::mpsc::Sender<()>> {
    let started = Arc::new(AtomicUsize::new(0));
    let gates = (0..n)
        .map(|_| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let s = started.clone();
            reactor::call_in_thread(move || {
                s.fetch_add(1, Ordering::SeqCst);
                let _ = rx.recv_timeout(LONG);
            })
            .unwrap();
            tx
        })
        .collect();
    until("the blockers to start", || {
        started.load(Ordering::SeqCst) == n
    });
    gates
}

#[test]
fn call_in_thread_runs_on_a_reactor_pool_thread() {
    let _s = serial();
    let ran = Event::new();
    let r = ran.clone();
    reactor::call_in_thread(move || {
        let name = std::thread::current().name().map(str::to_owned);
        r.send((name, reactor::is_reactor_thread())).unwrap();
    })
    .unwrap();
    let (name, on_reactor) = wait(&ran);
    assert!(
        name.as_deref()
            .unwrap()
            .starts_with("filature-pool-reactor-"),
        "{name:?}"
    );
    assert!(!on_reactor);
    assert!(reactor::is_running());
}

#[test]
fn defer_to_thread_fires_with_the_value_on_the_reactor_thread() {
    let _s = serial();
    let (release, held) = gate();
    let d = reactor::defer_to_thread(move || {
        let _ = held.recv_timeout(LONG);
        assert!(!reactor::is_reactor_thread());
        6 * 7
    });
    let seen = observe(&d);
    drop(release);
    let (r, on_reactor) = wait(&seen);
    assert_eq!(r.unwrap(), 42);
    assert!(on_reactor, "the Deferred must fire on the reactor thread");
}

#[test]
fn a_callback_added_before_the_result_runs_on_the_reactor_thread() {
    let _s = serial();
    let (release, held) = gate();
    let d = reactor::defer_to_thread(move || {
        let _ = held.recv_timeout(LONG);
        "done"
    });
    let seen = Event::new();
    let s = seen.clone();
    d.add_callback(move |v| {
        s.send(reactor::is_reactor_thread()).unwrap();
        Outcome::Value(v)
    });
    release.send(()).unwrap();
    assert!(wait(&seen));
}

#[test]
fn defer_to_thread_turns_a_panic_into_a_failure() {
    let _s = serial();
    let (release, held) = gate();
    let d = reactor::defer_to_thread(move || -> u32 {
        let _ = held.recv_timeout(LONG);
        panic!("worker boom")
    });
    let seen = observe(&d);
    drop(release);
    let (r, on_reactor) = wait(&seen);
    let f = r.unwrap_err();
    assert!(f.is_panic());
    assert_eq!(f.panic_message(), Some("worker boom"));
    assert!(on_reactor);
    // The worker survived: the pool still runs jobs.
    let (r, _) = outcome(&reactor::defer_to_thread(|| 1));
    assert_eq!(r.unwrap(), 1);
}

#[test]
fn cancel_before_start_fails_at_once_and_removes_the_job() {
    let _s = serial();
    pool_quiet();
    reactor::suggest_thread_pool_size(2).unwrap();
    let gates = block_workers(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let token = Arc::new(()); // held only by the job's closure
    let (r, t) = (ran.clone(), token.clone());
    let d = reactor::defer_to_thread(move || {
        let _keep = &t;
        r.fetch_add(1, Ordering::SeqCst);
        7
    });
    assert_eq!(
        reactor::thread_pool().stats().backlog,
        1,
        "the job is queued"
    );
    assert_eq!(Arc::strong_count(&token), 2);
    d.cancel();
    // At once, on this thread: failed with Cancelled, and the job is gone from the queue (its
    // closure, and the token it held, dropped).
    let f = d.result_now().expect("fired at once").unwrap_err();
    assert!(f.is::<Cancelled>(), "{f}");
    assert_eq!(reactor::thread_pool().stats().backlog, 0);
    assert_eq!(Arc::strong_count(&token), 1);
    drop(gates);
    // A job queued after it runs: had the cancelled one still been queued, it would have run too.
    let after = Event::new();
    let a = after.clone();
    reactor::call_in_thread(move || a.send(()).unwrap()).unwrap();
    wait(&after);
    pool_quiet();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a cancelled queued job never runs"
    );
    let f = d.result_now().unwrap().unwrap_err();
    assert!(f.is::<Cancelled>());
    reactor::suggest_thread_pool_size(reactor::DEFAULT_MAX_THREADS).unwrap();
}

#[test]
fn cancel_after_start_fails_at_once_and_the_late_result_is_ignored() {
    let _s = serial();
    let started = Event::new();
    let (release, held) = gate();
    let finished = Arc::new(AtomicUsize::new(0));
    let (s, fin) = (started.clone(), finished.clone());
    let d = reactor::defer_to_thread(move || {
        s.send(()).unwrap();
        let _ = held.recv_timeout(LONG);
        fin.fetch_add(1, Ordering::SeqCst);
        99
    });
    let links = Arc::new(AtomicUsize::new(0));
    let l = links.clone();
    d.add_both(move |r| {
        l.fetch_add(1, Ordering::SeqCst);
        Outcome::from(r)
    });
    wait(&started);
    d.cancel();
    let f = d.result_now().expect("fired at once").unwrap_err();
    assert!(f.is::<Cancelled>(), "{f}");
    release.send(()).unwrap();
    until("the job to finish", || finished.load(Ordering::SeqCst) == 1);
    pool_quiet();
    // The job posted its result to the reactor before it ended; a call posted now runs after it.
    reactor::blocking_call_from_thread_timeout(LONG, || ()).unwrap();
    // The late value was dropped: still Cancelled, the chain ran once, and no AlreadyCalled
    // reached anyone (the Deferred can still be observed normally).
    let f = d.result_now().unwrap().unwrap_err();
    assert!(f.is::<Cancelled>(), "{f}");
    assert_eq!(links.load(Ordering::SeqCst), 1);
}

#[test]
fn call_multiple_in_thread_runs_in_order_on_one_thread() {
    let _s = serial();
    let seen: Arc<Mutex<Vec<(usize, std::thread::ThreadId)>>> = Arc::default();
    let done = Event::new();
    let mut jobs: Vec<Box<dyn FnOnce() + Send>> = (0..5)
        .map(|i| {
            let s = seen.clone();
            Box::new(move || s.lock().unwrap().push((i, std::thread::current().id())))
                as Box<dyn FnOnce() + Send>
        })
        .collect();
    let d = done.clone();
    jobs.push(Box::new(move || d.send(()).unwrap()));
    reactor::call_multiple_in_thread(jobs).unwrap();
    wait(&done);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(seen.iter().all(|(_, t)| *t == seen[0].1), "one pool job");
}

#[test]
fn call_multiple_in_thread_stops_at_a_failure() {
    let _s = serial();
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let dropped = Event::new();
    struct OnDrop(Event<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let guard = OnDrop(dropped.clone());
    let (s1, s3) = (seen.clone(), seen.clone());
    reactor::call_multiple_in_thread(vec![
        Box::new(move || s1.lock().unwrap().push("first")),
        Box::new(|| panic!("second fails")),
        Box::new(move || {
            let _g = guard;
            s3.lock().unwrap().push("third");
        }),
    ])
    .unwrap();
    // The third call is dropped unrun.
    wait(&dropped);
    pool_quiet();
    assert_eq!(*seen.lock().unwrap(), vec!["first"]);
    // The pool goes on.
    let (r, _) = outcome(&reactor::defer_to_thread(|| "still fine"));
    assert_eq!(r.unwrap(), "still fine");
}

/// Runs `jobs` sleeping jobs on the reactor pool and returns the highest concurrency seen.
fn max_concurrency(jobs: usize) -> usize {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let left = Arc::new(AtomicUsize::new(jobs));
    let done = Event::new();
    for _ in 0..jobs {
        let (now, peak, left, done) = (now.clone(), peak.clone(), left.clone(), done.clone());
        reactor::call_in_thread(move || {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            now.fetch_sub(1, Ordering::SeqCst);
            if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                done.send(()).unwrap();
            }
        })
        .unwrap();
    }
    wait(&done);
    peak.load(Ordering::SeqCst)
}

#[test]
fn suggest_thread_pool_size_changes_the_maximum_only() {
    let _s = serial();
    pool_quiet();
    assert_eq!(reactor::thread_pool().limits().0, 0);
    reactor::suggest_thread_pool_size(2).unwrap();
    assert_eq!(reactor::thread_pool().limits(), (0, 2));
    let peak = max_concurrency(8);
    assert!(peak <= 2, "peak {peak} above the suggested 2");
    reactor::suggest_thread_pool_size(4).unwrap();
    assert_eq!(reactor::thread_pool().limits(), (0, 4));
    let peak = max_concurrency(12);
    assert!(peak <= 4, "peak {peak} above the suggested 4");
    assert!(peak >= 3, "peak {peak}: the larger maximum was not used");
    assert!(reactor::suggest_thread_pool_size(0).is_err());
    reactor::suggest_thread_pool_size(reactor::DEFAULT_MAX_THREADS).unwrap();
    assert_eq!(
        reactor::thread_pool().limits(),
        (0, reactor::DEFAULT_MAX_THREADS)
    );
}

#[test]
fn defer_to_thread_pool_uses_the_given_pool_and_fires_on_the_reactor() {
    let _s = serial();
    let pool = ThreadPool::with_name("rp-test", 0, 1).unwrap(); // not started: the job waits
    let d =
        reactor::defer_to_thread_pool(&pool, || std::thread::current().name().map(str::to_owned));
    let seen = observe(&d);
    pool.start().unwrap();
    let (r, on_reactor) = wait(&seen);
    assert_eq!(r.unwrap().as_deref(), Some("filature-pool-rp-test-1"));
    assert!(on_reactor);
    pool.stop();
    // A stopped pool refuses the job: the Deferred fails with Stopped.
    let d = reactor::defer_to_thread_pool(&pool, || 1);
    let f = d.result_now().expect("failed at once").unwrap_err();
    assert!(f.is::<Stopped>(), "{f}");
}
