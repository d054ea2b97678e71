//! `filature::snapshot`: every hub (green threads and where they wait, timers, inbox) and every
//! thread pool, described on demand and printed as a table.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{hub_thread, in_child, Watchdog, LONG};
use filature::hub::{self, GreenState};
use filature::pool::ThreadPool;
use filature::sync::Event;
use filature::{green, snapshot};

/// Generous: only a hub that is really stuck takes this long to answer.
const ANSWER: Duration = Duration::from_secs(20);

/// Runs `body` on a fresh OS thread called `name` (so its hub is called `name`) and joins it.
fn on_thread<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn parked_green_threads_show_where_they_wait() {
    let _w = Watchdog::new("parked_green_threads_show_where_they_wait", LONG);
    on_thread("snap-labels", || {
        let ev: Event<()> = Event::new();
        let e = ev.clone();
        let sleeper = green::Builder::new()
            .name("sleeper")
            .spawn(|| green::sleep(Duration::from_secs(600)));
        let waiter = green::Builder::new().name("waiter").spawn(move || {
            let _ = e.wait();
        });
        let timer = hub::call_later(Duration::from_secs(600), || {});
        green::sleep(Duration::from_millis(5)); // both start and park

        let snap = snapshot(ANSWER);
        let here = snap.hub("snap-labels").expect("the caller's hub is listed");
        assert!(here.is_caller);
        assert!(here.answered());
        assert_eq!(
            here.green("sleeper").unwrap().state,
            GreenState::Parked("green::sleep")
        );
        assert_eq!(
            here.green("waiter").unwrap().state,
            GreenState::Parked("Event::wait")
        );
        let detail = here.detail.as_ref().unwrap();
        assert!(detail.timers >= 2, "the sleep and call_later: {detail:?}");

        let table = snap.to_string();
        let row = |parts: &[&str]| table.lines().any(|l| parts.iter().all(|p| l.contains(p)));
        assert!(row(&["snap-labels (caller)", "answered"]), "{table}");
        assert!(
            row(&["snap-labels", "sleeper", "parked", "green::sleep"]),
            "{table}"
        );
        assert!(
            row(&["snap-labels", "waiter", "parked", "Event::wait"]),
            "{table}"
        );
        assert!(row(&["HUB", "STATE", "INBOX", "TIMERS"]), "{table}");
        assert!(row(&["POOL", "WORKERS", "BUSY", "BACKLOG"]), "{table}");

        timer.cancel().unwrap();
        sleeper.kill();
        ev.send(()).unwrap();
        waiter.join();
    });
}

#[test]
fn another_hub_answers_through_its_inbox() {
    let _w = Watchdog::new("another_hub_answers_through_its_inbox", LONG);
    let (tx, rx) = mpsc::channel();
    let remote = std::thread::Builder::new()
        .name("snap-remote".into())
        .spawn(move || {
            let h = green::Builder::new()
                .name("remote-sleeper")
                .spawn(|| green::sleep(Duration::from_secs(600)));
            green::sleep(Duration::from_millis(5));
            tx.send(hub::current()).unwrap();
            hub::run();
            h.kill();
        })
        .unwrap();
    let handle = rx.recv().unwrap();

    let snap = snapshot(ANSWER); // from a thread without a hub
    let h = snap.hub("snap-remote").expect("listed");
    assert!(!h.is_caller);
    assert!(h.answered(), "{snap}");
    assert_eq!(
        h.green("remote-sleeper").unwrap().state,
        GreenState::Parked("green::sleep")
    );

    handle.stop();
    remote.join().unwrap();
}

#[test]
fn green_thread_and_callback_callers_describe_their_own_hub() {
    let _w = Watchdog::new("green_thread_and_callback_callers", LONG);
    on_thread("snap-self", || {
        let from_green = green::Builder::new()
            .name("asker")
            .spawn(|| snapshot(ANSWER));
        let snap = from_green.join();
        let here = snap.hub("snap-self").unwrap();
        assert!(here.is_caller);
        assert_eq!(here.green("asker").unwrap().state, GreenState::Running);

        let got: Event<bool> = Event::new();
        let g = got.clone();
        hub::call_soon(move || {
            // A callback cannot park: the snapshot blocks the thread and describes its own hub.
            let snap = snapshot(ANSWER);
            let h = snap.hub("snap-self").unwrap();
            g.send(h.is_caller && h.answered()).unwrap();
        });
        assert!(got.wait().unwrap());
    });
}

#[test]
fn a_blocked_hub_is_listed_as_not_answering() {
    in_child("a_blocked_hub_is_listed_as_not_answering", || {
        let _w = Watchdog::new("a_blocked_hub_is_listed_as_not_answering", LONG);
        let (handle, blocked) = hub_thread("snap-blocked");
        let (entered_tx, entered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        handle
            .call(move || {
                entered_tx.send(()).unwrap();
                released.recv().unwrap(); // a long callback: the hub is stuck here
            })
            .unwrap();
        entered.recv().unwrap();
        handle.call(|| {}).unwrap(); // waits in the inbox behind the stuck callback

        let started = Instant::now();
        let snap = snapshot(Duration::from_millis(200));
        assert!(started.elapsed() < LONG);
        let h = snap.hub("snap-blocked").expect("listed");
        assert!(!h.answered(), "{snap}");
        assert!(h.inbox >= 1, "{snap}");
        let table = snap.to_string();
        assert!(
            table
                .lines()
                .any(|l| l.contains("snap-blocked") && l.contains("not answering")),
            "{table}"
        );

        release.send(()).unwrap();
        handle.stop();
        blocked.join().unwrap();
    });
}

#[test]
fn thread_pools_are_listed_with_their_counters() {
    let _w = Watchdog::new("thread_pools_are_listed", LONG);
    let pool = ThreadPool::with_name("snap-pool", 1, 2).unwrap();
    pool.start().unwrap();
    let snap = snapshot(ANSWER);
    let p = snap.pool("snap-pool").expect("listed");
    assert!(!p.stopping);
    assert_eq!(p.stats.workers, 1);
    assert!(snap
        .to_string()
        .lines()
        .any(|l| l.contains("snap-pool") && l.contains("running")));
    pool.stop();
    assert!(
        snapshot(ANSWER).pool("snap-pool").is_none(),
        "stopped pools leave"
    );
}
