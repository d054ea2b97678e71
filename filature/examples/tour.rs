//! A guided run of what filature does today. Each section prints what it is doing and what came
//! back; every number printed is measured in this run.
//!
//! ```sh
//! cargo run --release --example tour
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use filature::deferred::{self, Deferred, Outcome};
use filature::green::{self, GreenPool};
use filature::hub;
use filature::pool::ThreadPool;
use filature::sync::{Event, Queue, Semaphore};
use filature::threads::EventQueue;
use filature::{Failure, TimedOut};

fn section(title: &str) {
    println!("\n== {title} ==");
}

fn main() {
    println!("filature tour: hubs, green threads, sync, Deferred, thread pools, tpool, named threads, macros, the reactor");

    hubs_and_timers();
    green_threads();
    sync_across_threads();
    kill_timeout_and_panics();
    green_pool();
    many_parked_green_threads();
    deferreds();
    thread_pool();
    event_queue();
    tpool_offload();
    green_sockets();
    protocols_and_green_transports();
    named_threads();
    thread_exit();
    attribute_macros();
    the_reactor();

    println!("\nTour finished.");
}

fn hubs_and_timers() {
    section("hubs and timers");
    println!(
        "Every OS thread gets a hub (an event loop) on first use; main() is in its main context."
    );
    let order = Rc::new(RefCell::new(Vec::new()));
    for (name, ms) in [("b", 20), ("a", 10), ("c", 20)] {
        let o = order.clone();
        hub::call_later(Duration::from_millis(ms), move || o.borrow_mut().push(name));
    }
    let cancelled = hub::call_later(Duration::from_millis(15), || unreachable!());
    cancelled.cancel().expect("pending");
    println!("scheduled timers a@10ms, b@20ms, c@20ms and cancelled one @15ms");
    let t = Instant::now();
    green::sleep(Duration::from_millis(30)); // the main context drives the hub while it sleeps
    println!(
        "after sleeping {:?} in main(): fired {:?} (equal deadlines in creation order)",
        t.elapsed().as_millis(),
        order.borrow()
    );
    println!(
        "cancelling it again says: {}",
        cancelled.cancel().unwrap_err()
    );
}

fn green_threads() {
    section("green threads");
    let log = Rc::new(RefCell::new(Vec::new())); // Rc: green threads never leave their thread
    let mut handles = Vec::new();
    for name in ["ping", "pong"] {
        let log = log.clone();
        handles.push(green::Builder::new().name(name).spawn(move || {
            for i in 0..3 {
                log.borrow_mut().push(format!("{name}{i}"));
                green::yield_now();
            }
            green::current().and_then(|c| c.name().map(str::to_owned))
        }));
    }
    println!("spawned two green threads (spawn never switches); joining from main()");
    let names: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    println!("they interleaved with yield_now: {:?}", log.borrow());
    println!("and knew their names: {names:?}");
}

fn sync_across_threads() {
    section("sync across OS threads");
    let q: Queue<u32> = Queue::bounded(2);
    let done = Event::new();
    let (tx, d) = (q.clone(), done.clone());
    let producer = std::thread::Builder::new()
        .name("tour-producer".into())
        .spawn(move || {
            for i in 1..=5 {
                tx.put(i); // a plain OS thread: blocks (driving its own hub) while the queue is full
            }
            d.send("producer done").unwrap();
        })
        .unwrap();
    let consumer = green::spawn(move || (0..5).map(|_| q.get()).sum::<u32>());
    println!("an OS thread puts 1..=5 into a bounded(2) queue; a green thread here gets them");
    println!("green consumer summed {}", consumer.join());
    println!(
        "main() waited on an Event sent from the OS thread: {:?}",
        done.wait().unwrap()
    );
    producer.join().unwrap();
}

fn kill_timeout_and_panics() {
    section("kill, timeouts and panics");
    struct Noisy(&'static str);
    impl Drop for Noisy {
        fn drop(&mut self) {
            println!(
                "  destructor ran on the killed green thread's stack: {}",
                self.0
            );
        }
    }
    let sem = Semaphore::new(0);
    let s = sem.clone();
    let waiter = green::spawn(move || {
        let _guard = Noisy("guard");
        s.acquire(); // parks forever: nobody releases
    });
    green::yield_now(); // let it start and park
    println!("killing a green thread parked on a semaphore");
    waiter.kill();
    println!("join says: {}", waiter.join_result().unwrap_err());

    let r: Result<(), TimedOut> = green::with_timeout(Duration::from_millis(10), || {
        green::sleep(Duration::from_secs(60))
    });
    println!("with_timeout(10ms, sleep 60s) -> {r:?}");

    // The default panic hook would print the deliberate panic below; keep the tour readable.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let boom = green::spawn(|| -> u32 { panic!("a green thread failed") });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boom.join()));
    std::panic::set_hook(hook);
    let msg = caught.unwrap_err();
    println!(
        "a panic in a green thread is caught at its boundary and re-raised by join: {:?}",
        msg.downcast_ref::<&str>()
    );
}

fn green_pool() {
    section("GreenPool");
    let pool = GreenPool::new(3);
    let running = Rc::new(RefCell::new((0, 0))); // (now, max)
    let r = running.clone();
    let out: Vec<u64> = pool
        .imap(1..=9u64, move |x| {
            {
                let mut r = r.borrow_mut();
                r.0 += 1;
                r.1 = r.1.max(r.0);
            }
            green::sleep(Duration::from_millis(2));
            r.borrow_mut().0 -= 1;
            x * x
        })
        .collect();
    println!("imap over 1..=9 with a pool of 3: {out:?}");
    println!("at most {} ran at once", running.borrow().1);
}

fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

fn vmas() -> Option<usize> {
    Some(
        std::fs::read_to_string("/proc/self/maps")
            .ok()?
            .lines()
            .count(),
    )
}

fn many_parked_green_threads() {
    section("100,000 parked green threads");
    const N: usize = 100_000;
    let (rss0, vma0) = (rss_kib(), vmas());
    let gate: Event<()> = Event::new();
    let parked = Rc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (g, p) = (gate.clone(), parked.clone());
            green::spawn(move || {
                p.fetch_add(1, Ordering::Relaxed);
                g.wait().unwrap();
            })
        })
        .collect();
    let spawned = t.elapsed();
    while parked.load(Ordering::Relaxed) < N {
        green::yield_now(); // main() runs hub passes until every green thread has parked
    }
    let (rss1, vma1) = (rss_kib(), vmas());
    println!(
        "spawned {N} green threads in {:?} ({} ns each); {} are parked on one Event",
        spawned,
        spawned.as_nanos() / N as u128,
        parked.load(Ordering::Relaxed)
    );
    if let (Some(a), Some(b), Some(va), Some(vb)) = (rss0, rss1, vma0, vma1) {
        println!(
            "memory: {:.2} KiB RSS per parked green thread (guard page under each stack); VMAs {va} -> {vb}",
            (b.saturating_sub(a)) as f64 / N as f64
        );
    }
    gate.send(()).unwrap();
    green::join_all(handles);
    println!("released them with one send and joined all {N}");
}

fn deferreds() {
    section("Deferred (Twisted's callback chains)");
    let d: Deferred<u32> = Deferred::new();
    let inner: Deferred<u32> = Deferred::new();
    let i2 = inner.clone();
    d.add_callback(|v| Outcome::Value(v * 10))
        .add_callback(move |_| Outcome::Wait(i2)) // the chain waits for another Deferred
        .add_callback(|v| Outcome::Value(v + 1));
    d.callback(4).unwrap();
    println!(
        "fired with 4; the chain now waits on an inner Deferred: called = {}",
        d.is_called()
    );
    inner.callback(41).unwrap();
    println!(
        "inner fired with 41 -> result {:?}",
        d.result_now().map(|r| r.ok())
    );
    let failed = deferred::fail::<u32>(Failure::from_error(std::io::Error::other("disk full")));
    failed.add_errback(|f| {
        println!("errback saw: {f}");
        Outcome::Value(0)
    });
    let all = deferred::gather_results(vec![deferred::succeed(1), deferred::succeed(2)]);
    println!(
        "gather_results([1, 2]) -> {:?}",
        all.result_now().map(|r| r.ok())
    );
}

fn thread_pool() {
    section("Twisted-style ThreadPool");
    let pool = ThreadPool::with_name("tour", 0, 4).unwrap();
    println!("new(0, 4): {:?} before start", pool.stats());
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let d = done.clone();
        pool.call_in_thread(move || {
            std::thread::sleep(Duration::from_millis(5));
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    println!("queued 8 jobs before start: {:?}", pool.stats());
    pool.start().unwrap();
    pool.stop();
    println!(
        "start + stop ran them all: {} done; after stop: {:?}",
        done.load(Ordering::SeqCst),
        pool.stats()
    );
    println!(
        "submitting after stop: {}",
        pool.call_in_thread(|| ()).unwrap_err()
    );
}

fn event_queue() {
    section("EventQueue (serial handler thread)");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let q = EventQueue::builder()
        .name("tour-events")
        .spawn(move |e: u32| s.lock().unwrap().push(e))
        .unwrap();
    q.pause();
    q.put(1).unwrap();
    q.put(2).unwrap();
    println!(
        "paused, put 1 and 2: handled so far {:?}",
        seen.lock().unwrap()
    );
    q.unpause();
    q.stop();
    q.join_timeout(Duration::from_secs(5)).unwrap();
    println!(
        "unpaused and stopped gracefully: handled {:?}",
        seen.lock().unwrap()
    );
}

fn tpool_offload() {
    section("tpool: blocking work on a pool thread, only the caller waits");
    let ticks = Rc::new(RefCell::new(0u32));
    let t = ticks.clone();
    let ticker = green::spawn(move || {
        for _ in 0..10 {
            *t.borrow_mut() += 1;
            green::sleep(Duration::from_millis(5));
        }
    });
    let mut buf = vec![0u8; 1024]; // on this thread: the pool job borrows it
    let start = Instant::now();
    let caller = green::spawn(move || {
        let sum = filature::tpool::execute(|| {
            std::thread::sleep(Duration::from_millis(40)); // a blocking call (a database driver, say)
            buf.fill(3);
            buf.iter().map(|&b| b as u32).sum::<u32>()
        });
        (sum, std::thread::current().name().map(str::to_owned))
    });
    let (sum, thread) = caller.join();
    ticker.join();
    println!(
        "tpool::execute ran a 40 ms blocking job that filled a borrowed buffer (sum {sum}) in {:?}",
        start.elapsed()
    );
    println!(
        "meanwhile another green thread on {thread:?} ticked {} times: only the caller waited",
        ticks.borrow()
    );
}

fn green_sockets() {
    section("green sockets: std's API, a green thread per connection");
    use filature::net::{TcpListener, TcpStream};
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    println!("a server listens on {addr}; each connection gets its own green thread");
    let server = green::spawn(move || {
        let (stream, peer) = listener.accept().expect("accept");
        green::spawn(move || {
            // A line protocol written as for std::net: BufReader + lines().
            let mut out = stream.try_clone().expect("clone");
            for line in BufReader::new(stream).lines() {
                let line = line.expect("line");
                writeln!(out, "{} bytes from {peer}", line.len()).expect("write");
            }
        });
    });
    let ticks = Rc::new(std::cell::Cell::new(0u32));
    let t = ticks.clone();
    let ticker = green::spawn(move || loop {
        t.set(t.get() + 1);
        green::sleep(Duration::from_millis(1));
    });
    let client = green::spawn(move || {
        let stream = TcpStream::connect(addr).expect("connect");
        let mut w = stream.try_clone().expect("clone");
        let mut answers = BufReader::new(stream).lines();
        let mut got = Vec::new();
        for word in ["hello", "green", "sockets"] {
            writeln!(w, "{word}").expect("write");
            got.push(answers.next().expect("answer").expect("line"));
            green::sleep(Duration::from_millis(5));
        }
        got
    });
    for answer in client.join() {
        println!("  client got: {answer}");
    }
    ticker.kill();
    server.join();
    println!(
        "meanwhile another green thread on the same hub ticked {} times: socket waits park only their green thread",
        ticks.get()
    );
}

fn protocols_and_green_transports() {
    section("Twisted-style protocols, and green threads on top of them");
    use filature::net::{
        self, GreenClientCreator, LineTransport, Protocol, SpawnFactory, Transport,
    };
    // A callback-style protocol: no green thread per connection, just callbacks on the hub.
    struct Shout(Option<Transport>);
    impl Protocol for Shout {
        fn connection_made(&mut self, t: Transport) {
            self.0 = Some(t);
        }
        fn data_received(&mut self, data: &[u8]) {
            self.0
                .as_ref()
                .expect("made")
                .write(&data.to_ascii_uppercase());
        }
    }
    let shout = net::listen_tcp("127.0.0.1:0".parse().expect("addr"), |_| {
        Some(Box::new(Shout(None)) as Box<dyn Protocol>)
    })
    .expect("listen");
    // A green thread talks to it through a GreenTransport: blocking-looking reads and writes.
    let c = GreenClientCreator::new()
        .connect_tcp(shout.local_addr())
        .expect("connect");
    c.write(b"protocols").expect("write");
    let back = c.read(9).expect("read");
    println!(
        "  a Protocol on {} answered {:?} to a GreenTransport client",
        shout.local_addr(),
        String::from_utf8_lossy(&back)
    );
    // SpawnFactory: a green thread per connection, reading lines.
    let lines = SpawnFactory::new(|t| {
        let mut t = LineTransport::new(t);
        while let Ok(Some(line)) = t.read_line() {
            let _ = t.send_line(format!("{} bytes", line.len()).as_bytes());
        }
    });
    let port =
        net::listen_tcp("127.0.0.1:0".parse().expect("addr"), lines.clone()).expect("listen");
    let mut client = LineTransport::new(
        GreenClientCreator::new()
            .connect_tcp(port.local_addr())
            .expect("connect"),
    );
    client.send_line(b"hello, line protocol").expect("send");
    let answer = client.read_line().expect("read").expect("a line");
    println!(
        "  a SpawnFactory handler answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(client);
    drop(c);
    lines.join_all();
    let _ = green::block_on(shout.stop_listening());
    let _ = green::block_on(port.stop_listening());
    println!("  both ports stopped; every handler has returned");
}

fn named_threads() {
    section("named threads (ThreadManager)");
    let tm = filature::threads::ThreadManager::new();
    let path = std::env::temp_dir().join(format!("filature-tour-{}.cfg", std::process::id()));
    let saved = Event::new();
    for (i, line) in ["volume=7", "codec=opus"].into_iter().enumerate() {
        let (p, s) = (path.clone(), saved.clone());
        tm.call_in_thread("config", move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap();
            writeln!(f, "{line}").unwrap();
            if i == 1 {
                let who = std::thread::current().name().unwrap_or("?").to_owned();
                s.send(who).unwrap();
            }
        })
        .unwrap();
    }
    println!("posted two saves to the 'config' thread; main() is free meanwhile");
    let who = saved
        .wait_timeout(Duration::from_secs(5))
        .expect("saved")
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    println!(
        "saved serially on thread {who:?}: {:?}",
        text.lines().collect::<Vec<_>>()
    );
    let _ = std::fs::remove_file(&path);
    // Jobs run in the thread's main context, as the SIP SIMPLE SDK's did: a job may block on
    // filature's waits (here tpool), and the thread's hub keeps running meanwhile.
    let answer = Event::new();
    let a = answer.clone();
    tm.call_in_thread("config", move || {
        let parsed = filature::tpool::execute(|| "codec=opus".split('=').nth(1).map(str::len));
        a.send(parsed).unwrap();
    })
    .unwrap();
    println!(
        "a job that waited for tpool::execute got {:?}",
        answer
            .wait_timeout(Duration::from_secs(5))
            .expect("answered")
            .unwrap()
    );
    tm.stop_timeout(Duration::from_secs(5)).unwrap();
    println!(
        "stopped: posting now says {}",
        tm.call_in_thread("config", || ()).unwrap_err()
    );
}

fn thread_exit() {
    section("a thread ends while a green thread is parked over its thread-locals");
    thread_local! { static SETTINGS: Vec<u32> = vec![1, 2, 3]; }
    struct Noisy(Arc<AtomicUsize>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let unwound = Arc::new(AtomicUsize::new(0));
    let u = unwound.clone();
    std::thread::spawn(move || {
        hub::scope(move || {
            green::spawn(move || {
                let _noisy = Noisy(u);
                SETTINGS.with(|s| loop {
                    green::sleep(Duration::from_millis(5)); // parked, borrowing SETTINGS
                    assert_eq!(s.len(), 3);
                })
            });
            green::sleep(Duration::from_millis(20));
        }) // the green thread is killed and unwound here, while SETTINGS is alive
    })
    .join()
    .unwrap();
    println!(
        "the thread ended; its green thread was unwound first ({} destructor ran)",
        unwound.load(Ordering::SeqCst)
    );
}

/// Saves one line of configuration, slowly, on the "config" named thread: callers from any thread
/// return at once and the saves happen one after another, in the order they were posted.
#[filature::run_in_thread("config")]
fn save_setting(path: std::path::PathBuf, line: &'static str, done: Option<Event<String>>) {
    use std::io::Write;
    std::thread::sleep(Duration::from_millis(20)); // a slow disk
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
    if let Some(done) = done {
        let who = std::thread::current().name().unwrap_or("?").to_owned();
        done.send(who).unwrap();
    }
}

/// Counts reactor ticks in a green thread on the reactor until `stop` is set.
#[filature::run_in_green_thread]
fn tick(ticks: Arc<AtomicUsize>, stop: Arc<std::sync::atomic::AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        green::sleep(Duration::from_millis(2));
        ticks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads the file back in a green thread on the reactor; the caller gets a `JoinHandle`.
#[filature::run_in_waitable_green_thread]
fn read_back(path: std::path::PathBuf) -> Vec<String> {
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines().map(str::to_owned).collect()
}

fn attribute_macros() {
    section("attribute macros: #[run_in_thread], #[run_in_green_thread], #[run_in_waitable_green_thread]");
    let path =
        std::env::temp_dir().join(format!("filature-tour-macros-{}.cfg", std::process::id()));
    let ticks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tick(ticks.clone(), stop.clone());
    let saved = Event::new();
    let t = Instant::now();
    save_setting(path.clone(), "volume=7", None);
    save_setting(path.clone(), "codec=opus", None);
    save_setting(path.clone(), "ring=classic", Some(saved.clone()));
    println!("main() posted three saves in {:?}", t.elapsed());
    let who = saved
        .wait_timeout(Duration::from_secs(5))
        .expect("saved")
        .unwrap();
    let during = ticks.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    println!(
        "saved serially on thread {who:?} in {:?}; the reactor ticked {during} times meanwhile",
        t.elapsed()
    );
    let lines = read_back(path.clone())
        .join_timeout(Duration::from_secs(5))
        .ok()
        .unwrap();
    println!("read back in a waitable green thread on the reactor: {lines:?}");
    let _ = std::fs::remove_file(&path);
    filature::threads::ThreadManager::global()
        .stop_timeout(Duration::from_secs(5))
        .unwrap();
}

fn the_reactor() {
    section("the reactor (Twisted-style, on its own thread here)");
    use filature::reactor;
    let d = reactor::defer_to_green_thread(|| {
        green::sleep(Duration::from_millis(5));
        reactor::is_reactor_thread()
    });
    let on_reactor = green::block_on(&d).unwrap();
    println!("defer_to_green_thread ran on the reactor thread: {on_reactor}");
    let v = reactor::blocking_call_from_thread(|| 6 * 7).unwrap();
    println!("blocking_call_from_thread(|| 6 * 7) from main() -> {v}");
    let d2 = reactor::blocking_call_from_thread_deferred(|| {
        let d = Deferred::new();
        let d2 = d.clone();
        hub::call_later(Duration::from_millis(5), move || {
            d2.callback("fired later").unwrap()
        });
        d
    })
    .unwrap();
    println!("... and waited for a Deferred the reactor fired later: {d2:?}");
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..1000 {
        let c = calls.clone();
        reactor::call_from_thread(move || {
            c.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    reactor::blocking_call_from_thread(|| ()).unwrap(); // runs after the 1000 (FIFO)
    println!(
        "1000 call_from_thread calls ran: {}",
        calls.load(Ordering::Relaxed)
    );
    reactor::stop().unwrap();
    // Calls posted while the reactor shuts down still run (it drains its inbox); a blocking call
    // would wait on a reactor that is going away, so it fails at once.
    println!(
        "reactor stopping; blocking_call_from_thread now says: {}",
        reactor::blocking_call_from_thread(|| ()).unwrap_err()
    );
}
