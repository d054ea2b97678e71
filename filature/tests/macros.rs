//! The attribute macros: each on a free function and on a method, called from the thread it
//! targets and from another. The compile errors are in `macros_compile_fail.rs`.

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{in_child, log, push, Log};
use filature::green::{self, JoinError, JoinHandle};
use filature::threads::ThreadManager;
use filature::{
    reactor, run_in_green_thread, run_in_reactor, run_in_thread, run_in_waitable_green_thread,
};

const LONG: Duration = Duration::from_secs(20);

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

/// Runs `f` on named thread `id` and waits for it.
fn on_named_thread(id: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    ThreadManager::global()
        .call_in_thread(id, move || {
            f();
            tx.send(()).unwrap();
        })
        .unwrap();
    rx.recv_timeout(LONG).expect("the named thread ran the job");
}

/// Runs `f` on the reactor thread (as a callback) and waits for it.
fn on_reactor(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    reactor::call_from_thread(move || {
        f();
        tx.send(()).unwrap();
    })
    .unwrap();
    rx.recv_timeout(LONG).expect("the reactor ran the call");
}

// ---------------------------------------------------------------------------------------------
// #[run_in_thread]

const SAVER: &str = "macros-saver";

/// Records where it ran.
#[run_in_thread(SAVER)]
fn save(log: Log, what: String, done: mpsc::Sender<()>) {
    push(&log, format!("{what} on {}", thread_name()));
    done.send(()).unwrap();
}

#[run_in_thread("macros-scheduled", scheduled)]
fn save_later(log: Log, what: &'static str) {
    push(&log, what);
}

#[derive(Clone)]
struct Saver {
    log: Log,
}

impl Saver {
    #[run_in_thread("macros-method")]
    fn save(self, what: String, done: mpsc::Sender<()>) {
        push(&self.log, format!("{what} on {}", thread_name()));
        done.send(()).unwrap();
    }

    #[run_in_thread("macros-method", scheduled)]
    fn save_shared(self: Arc<Self>, what: &'static str) {
        push(&self.log, what);
    }
}

#[test]
fn run_in_thread_fn_from_another_thread_is_queued_on_the_named_thread() {
    let l = log();
    let (tx, rx) = mpsc::channel();
    save(l.clone(), "a".into(), tx);
    rx.recv_timeout(LONG).unwrap();
    assert_eq!(*l.lock().unwrap(), vec![format!("a on {SAVER}")]);
}

#[test]
fn run_in_thread_fn_on_its_own_thread_runs_inline() {
    let l = log();
    let l2 = l.clone();
    on_named_thread(SAVER, move || {
        let (tx, rx) = mpsc::channel();
        push(&l2, "before");
        save(l2.clone(), "inline".into(), tx);
        // Inline: already done, so this cannot block.
        rx.try_recv().expect("ran inline");
        push(&l2, "after");
    });
    assert_eq!(
        *l.lock().unwrap(),
        vec![
            "before".to_owned(),
            format!("inline on {SAVER}"),
            "after".into()
        ]
    );
}

#[test]
fn run_in_thread_scheduled_fn_on_its_own_thread_is_queued_behind_the_caller() {
    let l = log();
    let l2 = l.clone();
    on_named_thread("macros-scheduled", move || {
        push(&l2, "before");
        save_later(l2.clone(), "scheduled");
        push(&l2, "after");
    });
    // The scheduled job was queued behind the job that waited for us: flush with another one.
    on_named_thread("macros-scheduled", || {});
    assert_eq!(*l.lock().unwrap(), vec!["before", "after", "scheduled"]);
}

#[test]
fn run_in_thread_scheduled_fn_from_another_thread_runs_there() {
    let l = log();
    save_later(l.clone(), "one");
    save_later(l.clone(), "two");
    on_named_thread("macros-scheduled", || {});
    assert_eq!(*l.lock().unwrap(), vec!["one", "two"]);
}

#[test]
fn run_in_thread_method_from_another_thread_and_inline_on_its_own() {
    let saver = Saver { log: log() };
    let (tx, rx) = mpsc::channel();
    saver.clone().save("remote".into(), tx);
    rx.recv_timeout(LONG).unwrap();

    let s = saver.clone();
    on_named_thread("macros-method", move || {
        let (tx, rx) = mpsc::channel();
        push(&s.log, "before");
        s.clone().save("inline".into(), tx);
        rx.try_recv().expect("ran inline");
        Arc::new(s.clone()).save_shared("scheduled");
        push(&s.log, "after");
    });
    on_named_thread("macros-method", || {});
    assert_eq!(
        *saver.log.lock().unwrap(),
        vec![
            "remote on macros-method".to_owned(),
            "before".into(),
            "inline on macros-method".into(),
            "after".into(),
            "scheduled".into(),
        ]
    );
}

#[test]
fn run_in_thread_moves_its_arguments_and_drops_them_once_after_the_body() {
    struct Token(Arc<Mutex<Vec<&'static str>>>);
    impl Drop for Token {
        fn drop(&mut self) {
            self.0.lock().unwrap().push("dropped");
        }
    }
    #[run_in_thread("macros-drop")]
    fn consume(t: Token) {
        t.0.lock().unwrap().push("body");
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    consume(Token(events.clone()));
    on_named_thread("macros-drop", || {});
    assert_eq!(*events.lock().unwrap(), vec!["body", "dropped"]);
}

#[test]
fn a_panicking_run_in_thread_body_is_contained_and_the_thread_goes_on() {
    #[run_in_thread("macros-panic")]
    fn explode() {
        panic!("boom in a decorated fn");
    }
    explode();
    let l = log();
    let (tx, rx) = mpsc::channel();
    let l2 = l.clone();
    ThreadManager::global()
        .call_in_thread("macros-panic", move || {
            push(&l2, "next job ran");
            tx.send(()).unwrap();
        })
        .unwrap();
    rx.recv_timeout(LONG).unwrap();
    assert_eq!(*l.lock().unwrap(), vec!["next job ran"]);
}

#[test]
fn run_in_thread_after_the_manager_stopped_panics_with_the_reason() {
    in_child(
        "run_in_thread_after_the_manager_stopped_panics_with_the_reason",
        || {
            #[run_in_thread("late")]
            fn late() {}
            ThreadManager::global().stop();
            let err = std::panic::catch_unwind(late).unwrap_err();
            let msg = err.downcast_ref::<String>().unwrap();
            assert!(msg.contains("#[run_in_thread] fn late"), "{msg}");
            assert!(msg.contains("stopped"), "{msg}");
        },
    );
}

// ---------------------------------------------------------------------------------------------
// #[run_in_reactor]

#[run_in_reactor]
fn note_on_reactor(log: Log, what: &'static str, done: Option<mpsc::Sender<()>>) {
    push(
        &log,
        format!("{what} reactor={}", reactor::is_reactor_thread()),
    );
    if let Some(d) = done {
        d.send(()).unwrap();
    }
}

struct Counter {
    log: Log,
}

impl Counter {
    #[run_in_reactor]
    fn note(self: Arc<Self>, what: &'static str, done: Option<mpsc::Sender<()>>) {
        push(
            &self.log,
            format!("{what} reactor={}", reactor::is_reactor_thread()),
        );
        if let Some(d) = done {
            d.send(()).unwrap();
        }
    }
}

#[test]
fn run_in_reactor_fn_from_another_thread_runs_on_the_reactor() {
    let l = log();
    let (tx, rx) = mpsc::channel();
    note_on_reactor(l.clone(), "remote", Some(tx));
    rx.recv_timeout(LONG).unwrap();
    assert_eq!(*l.lock().unwrap(), vec!["remote reactor=true"]);
}

#[test]
fn run_in_reactor_fn_on_the_reactor_runs_inline() {
    let l = log();
    let l2 = l.clone();
    on_reactor(move || {
        push(&l2, "before");
        note_on_reactor(l2.clone(), "inline", None);
        push(&l2, "after");
    });
    assert_eq!(
        *l.lock().unwrap(),
        vec!["before", "inline reactor=true", "after"]
    );
}

#[test]
fn run_in_reactor_method_from_another_thread_and_inline_on_the_reactor() {
    let c = Arc::new(Counter { log: log() });
    let (tx, rx) = mpsc::channel();
    c.clone().note("remote", Some(tx));
    rx.recv_timeout(LONG).unwrap();
    let c2 = c.clone();
    on_reactor(move || {
        push(&c2.log, "before");
        c2.clone().note("inline", None);
        push(&c2.log, "after");
    });
    assert_eq!(
        *c.log.lock().unwrap(),
        vec![
            "remote reactor=true",
            "before",
            "inline reactor=true",
            "after"
        ]
    );
}

#[test]
fn run_in_reactor_after_the_reactor_stopped_panics_with_the_reason() {
    in_child(
        "run_in_reactor_after_the_reactor_stopped_panics_with_the_reason",
        || {
            #[run_in_reactor]
            fn late() {}
            reactor::call_when_running(|| reactor::stop().unwrap()).unwrap();
            reactor::run().unwrap();
            let err = std::panic::catch_unwind(late).unwrap_err();
            let msg = err.downcast_ref::<String>().unwrap();
            assert!(msg.contains("#[run_in_reactor] fn late"), "{msg}");
            assert!(msg.contains("stopped"), "{msg}");
        },
    );
}

// ---------------------------------------------------------------------------------------------
// #[run_in_green_thread]

#[run_in_green_thread]
fn green_note(log: Log, what: &'static str, done: mpsc::Sender<()>) {
    // Green threads may block green-style.
    green::sleep(Duration::from_millis(1));
    push(
        &log,
        format!(
            "{what} green={} reactor={}",
            green::in_green_thread(),
            reactor::is_reactor_thread()
        ),
    );
    done.send(()).unwrap();
}

#[derive(Clone)]
struct Greeter {
    log: Log,
}

impl Greeter {
    #[run_in_green_thread]
    fn greet(self, what: &'static str, done: mpsc::Sender<()>) {
        green::yield_now();
        push(
            &self.log,
            format!(
                "{what} green={} reactor={}",
                green::in_green_thread(),
                reactor::is_reactor_thread()
            ),
        );
        done.send(()).unwrap();
    }
}

#[test]
fn run_in_green_thread_fn_from_another_thread_runs_in_a_green_thread_on_the_reactor() {
    let l = log();
    let (tx, rx) = mpsc::channel();
    green_note(l.clone(), "remote", tx);
    rx.recv_timeout(LONG).unwrap();
    assert_eq!(*l.lock().unwrap(), vec!["remote green=true reactor=true"]);
}

#[test]
fn run_in_green_thread_fn_on_the_reactor_starts_a_green_thread_and_returns_at_once() {
    let l = log();
    let l2 = l.clone();
    let (tx, rx) = mpsc::channel();
    on_reactor(move || {
        push(&l2, "before");
        green_note(l2.clone(), "spawned", tx);
        push(&l2, "after");
    });
    rx.recv_timeout(LONG).unwrap();
    assert_eq!(
        *l.lock().unwrap(),
        vec!["before", "after", "spawned green=true reactor=true"]
    );
}

#[test]
fn run_in_green_thread_method_from_another_thread_and_from_the_reactor() {
    let g = Greeter { log: log() };
    let (tx, rx) = mpsc::channel();
    g.clone().greet("remote", tx);
    rx.recv_timeout(LONG).unwrap();
    let g2 = g.clone();
    let (tx, rx) = mpsc::channel();
    on_reactor(move || g2.greet("local", tx));
    rx.recv_timeout(LONG).unwrap();
    assert_eq!(
        *g.log.lock().unwrap(),
        vec![
            "remote green=true reactor=true",
            "local green=true reactor=true"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// #[run_in_waitable_green_thread]

/// Doubles `x` after a green sleep.
#[run_in_waitable_green_thread]
fn double(x: u64) -> u64 {
    green::sleep(Duration::from_millis(1));
    assert!(reactor::is_reactor_thread());
    x * 2
}

#[run_in_waitable_green_thread]
fn fail(msg: String) -> u64 {
    panic!("{msg}");
}

#[run_in_waitable_green_thread]
fn nothing(log: Log) {
    push(&log, format!("green={}", green::in_green_thread()));
}

struct Calculator {
    offset: u64,
}

impl Calculator {
    #[run_in_waitable_green_thread]
    fn add(self: Arc<Self>, x: u64) -> Result<u64, String> {
        green::yield_now();
        x.checked_add(self.offset).ok_or_else(|| "overflow".into())
    }
}

#[test]
fn waitable_fn_joined_from_the_main_context() {
    let h: JoinHandle<u64> = double(21);
    assert_eq!(h.join(), 42);
}

#[test]
fn waitable_fn_joined_from_another_os_thread() {
    let h = double(4);
    let v = std::thread::spawn(move || h.join()).join().unwrap();
    assert_eq!(v, 8);
}

#[test]
fn waitable_fn_called_and_joined_in_a_green_thread_on_another_hub() {
    let v = green::spawn(|| double(5).join()).join();
    assert_eq!(v, 10);
}

#[test]
fn waitable_fn_called_and_joined_from_a_green_thread_on_the_reactor() {
    let v = reactor::spawn(|| double(6).join()).join();
    assert_eq!(v, 12);
}

#[test]
fn waitable_fn_called_from_a_reactor_callback_returns_a_handle_at_once() {
    let (tx, rx) = mpsc::channel();
    on_reactor(move || {
        let h = double(7);
        assert!(!h.is_finished(), "the green thread starts later");
        tx.send(h).unwrap();
    });
    assert_eq!(rx.recv().unwrap().join(), 14);
}

#[test]
fn waitable_panic_is_reraised_by_join_and_given_by_join_result() {
    let err = fail("kaput".into()).join_result().unwrap_err();
    match err {
        JoinError::Panicked(f) => assert!(f.to_string().contains("kaput"), "{f}"),
        JoinError::Killed => panic!("expected a panic, got Killed"),
    }
    let reraised = std::panic::catch_unwind(|| fail("again".into()).join()).unwrap_err();
    let text = reraised
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("again"), "{text}");
}

#[test]
fn waitable_unit_fn_gives_a_unit_handle() {
    let l = log();
    let h: JoinHandle<()> = nothing(l.clone());
    h.join_timeout(LONG).unwrap();
    assert_eq!(*l.lock().unwrap(), vec!["green=true"]);
}

#[test]
fn waitable_method_from_another_thread_and_from_the_reactor() {
    let c = Arc::new(Calculator { offset: 100 });
    assert_eq!(c.clone().add(1).join(), Ok(101));
    assert_eq!(c.clone().add(u64::MAX).join(), Err("overflow".to_owned()));
    let c2 = c.clone();
    let v = reactor::spawn(move || c2.add(2).join()).join();
    assert_eq!(v, Ok(102));
}

#[test]
fn waitable_after_the_reactor_stopped_reports_killed() {
    in_child("waitable_after_the_reactor_stopped_reports_killed", || {
        reactor::call_when_running(|| reactor::stop().unwrap()).unwrap();
        reactor::run().unwrap();
        let h = double(1);
        assert!(matches!(h.join_result(), Err(JoinError::Killed)));
    });
}

#[test]
fn waitable_before_a_prepared_run_starts_when_the_reactor_runs() {
    in_child(
        "waitable_before_a_prepared_run_starts_when_the_reactor_runs",
        || {
            reactor::prepare_run().unwrap();
            // Called on the prepared thread itself, and from another one, before `run`.
            let here = double(10);
            let there = std::thread::spawn(|| double(20)).join().unwrap();
            assert!(!here.is_finished() && !there.is_finished());
            let joiner = std::thread::spawn(move || there.join());
            reactor::call_later(Duration::from_millis(20), || reactor::stop().unwrap()).unwrap();
            reactor::run().unwrap();
            assert_eq!(here.join(), 20);
            assert_eq!(joiner.join().unwrap(), 40);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Generics and trait methods

#[run_in_waitable_green_thread]
fn echo<T>(value: T) -> T
where
    T: Clone + Send + 'static,
{
    value.clone()
}

trait Sink {
    fn put(self, what: String, done: mpsc::Sender<String>);
}

#[derive(Clone)]
struct ThreadSink;

impl Sink for ThreadSink {
    #[run_in_thread("macros-trait")]
    fn put(self, what: String, done: mpsc::Sender<String>) {
        done.send(format!("{what} on {}", thread_name())).unwrap();
    }
}

#[test]
fn generic_functions_and_trait_methods_work() {
    assert_eq!(echo(vec![1, 2, 3]).join(), vec![1, 2, 3]);
    assert_eq!(echo("text".to_owned()).join(), "text");
    let (tx, rx) = mpsc::channel();
    ThreadSink.put("x".into(), tx);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), "x on macros-trait");
}
