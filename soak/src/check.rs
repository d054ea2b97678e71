//! What the soak counts and checks: violations, per-kind tallies of posted calls, drop-counted
//! values, injected panics and the ERROR/WARN events they may produce.
//!
//! Exactly-once accounting: every posted call carries a [`Token`]. Making one counts it
//! `created`; the poster then counts it `accepted` or `refused` from the post's result; running
//! the call consumes the token (`ran`); dropping it unrun counts `dropped`. At the end, per kind,
//! `ran == accepted` and `dropped == refused` (timers: `dropped == cancelled`), so an accepted
//! call that never ran, a refused one that ran anyway, and a refusal that lost the call without an
//! `Err` all show.

use std::fmt::{self, Write as _};
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// What every injected panic's message starts with.
pub(crate) const MARKER: &str = "soak-injected";

static FAILED: AtomicBool = AtomicBool::new(false);
static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static VIOLATION_COUNT: AtomicU64 = AtomicU64::new(0);

/// Records a violated invariant (printed at once; the run fails).
pub(crate) fn violation(msg: impl fmt::Display) {
    let msg = msg.to_string();
    eprintln!("soak: VIOLATION: {msg}");
    FAILED.store(true, Relaxed);
    VIOLATION_COUNT.fetch_add(1, Relaxed);
    let mut v = VIOLATIONS.lock().unwrap_or_else(|e| e.into_inner());
    if v.len() < 100 {
        v.push(msg);
    }
}

pub(crate) fn failed() -> bool {
    FAILED.load(Relaxed)
}

pub(crate) fn violation_count() -> u64 {
    VIOLATION_COUNT.load(Relaxed)
}

/// Checks `cond`, recording `msg` as a violation when it is false.
pub(crate) fn ensure(cond: bool, msg: impl FnOnce() -> String) {
    if !cond {
        violation(msg());
    }
}

/// Kinds of posted work, each tallied on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `HubHandle::call` to a runner's or a driver's hub.
    HubCall,
    /// `reactor::call_from_thread`.
    ReactorCall,
    /// `ThreadPool::call_in_thread`.
    PoolJob,
    /// `ThreadManager::call_in_thread` / `schedule_in_thread`.
    NamedJob,
    /// `tpool::spawn`.
    TpoolSpawn,
    /// `hub::call_later` on a hub that outlives it (a driver before it retires, the reactor).
    StableTimer,
    /// `hub::call_later` on a hub that may shut down first (its timers are then dropped).
    UnstableTimer,
    /// `reactor::call_later`.
    ReactorTimer,
    /// The last step of a Deferred chain (must run once the Deferred fired or was cancelled).
    DeferredEnd,
}

pub(crate) const KINDS: [Kind; 9] = [
    Kind::HubCall,
    Kind::ReactorCall,
    Kind::PoolJob,
    Kind::NamedJob,
    Kind::TpoolSpawn,
    Kind::StableTimer,
    Kind::UnstableTimer,
    Kind::ReactorTimer,
    Kind::DeferredEnd,
];

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) created: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) ran: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) cancelled: AtomicU64,
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            created: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            ran: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }
}

static TALLIES: [Tally; KINDS.len()] = [const { Tally::new() }; KINDS.len()];

pub(crate) fn tally(kind: Kind) -> &'static Tally {
    &TALLIES[kind as usize]
}

/// Counts the post that carried a token as accepted or refused.
pub(crate) fn posted<E>(kind: Kind, r: &Result<(), E>) -> bool {
    let t = tally(kind);
    match r {
        Ok(()) => t.accepted.fetch_add(1, Relaxed),
        Err(_) => t.refused.fetch_add(1, Relaxed),
    };
    r.is_ok()
}

/// Travels inside a posted call; see the module docs.
pub(crate) struct Token {
    kind: Kind,
    ran: bool,
    cancelled: Option<Arc<AtomicBool>>,
}

impl Token {
    pub(crate) fn new(kind: Kind) -> Token {
        tally(kind).created.fetch_add(1, Relaxed);
        Token {
            kind,
            ran: false,
            cancelled: None,
        }
    }

    /// A token whose call must not run once `flag` is set (a cancelled timer).
    pub(crate) fn cancellable(kind: Kind, flag: Arc<AtomicBool>) -> Token {
        let mut t = Token::new(kind);
        t.cancelled = Some(flag);
        t
    }

    pub(crate) fn run(mut self) {
        self.ran = true;
        tally(self.kind).ran.fetch_add(1, Relaxed);
        if self.cancelled.as_ref().is_some_and(|c| c.load(Relaxed)) {
            violation(format!(
                "a {:?} ran after its cancel returned Ok",
                self.kind
            ));
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if !self.ran {
            tally(self.kind).dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The end-of-run check of one kind's tally.
pub(crate) fn tally_balanced(kind: Kind) -> Result<(), String> {
    let t = tally(kind);
    let [created, accepted, refused, ran, dropped, cancelled] = [
        &t.created,
        &t.accepted,
        &t.refused,
        &t.ran,
        &t.dropped,
        &t.cancelled,
    ]
    .map(|a| a.load(Relaxed));
    let ok = match kind {
        Kind::StableTimer | Kind::ReactorTimer => {
            accepted == created && ran + dropped == created && dropped == cancelled
        }
        // Dropped when its hub shuts down first, so only: never run once cancelled.
        Kind::UnstableTimer => {
            accepted == created && ran + dropped == created && dropped >= cancelled
        }
        Kind::DeferredEnd => ran == created,
        _ => accepted + refused == created && ran == accepted && dropped == refused,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind:?}: created {created}, accepted {accepted}, refused {refused}, ran {ran}, \
             dropped unrun {dropped}, cancelled {cancelled}"
        ))
    }
}

pub(crate) fn tally_line() -> String {
    let mut s = String::new();
    for k in KINDS {
        let t = tally(k);
        let _ = write!(
            s,
            "{k:?} {}/{}/{} ",
            t.accepted.load(Relaxed),
            t.ran.load(Relaxed),
            t.refused.load(Relaxed)
        );
    }
    s
}

/// Values that must not outlive their caller: counted while alive.
static LIVE: AtomicI64 = AtomicI64::new(0);
static MADE: AtomicU64 = AtomicU64::new(0);

/// A drop-counted value, passed through blocking calls, lends, events, queues and Deferreds.
#[derive(Debug)]
pub(crate) struct Tracked {
    /// Where it was made (for a debugger).
    _tag: u64,
}

impl Tracked {
    pub(crate) fn new(tag: u64) -> Tracked {
        LIVE.fetch_add(1, Relaxed);
        MADE.fetch_add(1, Relaxed);
        Tracked { _tag: tag }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Relaxed);
    }
}

pub(crate) fn live_tracked() -> i64 {
    LIVE.load(Relaxed)
}

pub(crate) fn made_tracked() -> u64 {
    MADE.load(Relaxed)
}

/// Where a panic is injected; each site's panics produce a known number of log events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Site {
    /// A green thread's body (logged only when nobody joins or links it).
    Green,
    /// A hub callback: a posted call, a timer (logged once each).
    Callback,
    /// A `ThreadPool` job (logged once each).
    PoolJob,
    /// A named thread's queued job (logged once each).
    NamedJob,
    /// A Deferred callback (a failure down the chain; logged only if left unhandled).
    Deferred,
    /// A link listener (logged once each).
    Link,
    /// A `tpool::execute` job (re-raised in the caller; never logged).
    Lend,
    /// A function run by `blocking_call_from_thread` (comes back as the failure; never logged).
    Blocking,
    /// A `Protocol` callback (logged once each, with the peer's address; the connection closes).
    Protocol,
}

pub(crate) const SITES: [Site; 9] = [
    Site::Green,
    Site::Callback,
    Site::PoolJob,
    Site::NamedJob,
    Site::Deferred,
    Site::Link,
    Site::Lend,
    Site::Blocking,
    Site::Protocol,
];

impl Site {
    fn tag(self) -> &'static str {
        match self {
            Site::Green => "green",
            Site::Callback => "callback",
            Site::PoolJob => "pool-job",
            Site::NamedJob => "named-job",
            Site::Deferred => "deferred",
            Site::Link => "link",
            Site::Lend => "lend",
            Site::Blocking => "blocking",
            Site::Protocol => "protocol",
        }
    }
}

static INJECTED: [AtomicU64; SITES.len()] = [const { AtomicU64::new(0) }; SITES.len()];
static EXPECTED_LOGS: [AtomicU64; SITES.len()] = [const { AtomicU64::new(0) }; SITES.len()];
static LOGGED: [AtomicU64; SITES.len()] = [const { AtomicU64::new(0) }; SITES.len()];
static UNEXPECTED_LOGS: AtomicU64 = AtomicU64::new(0);

/// Panics with the marker, counting the injection at `site`.
pub(crate) fn inject(site: Site) -> ! {
    INJECTED[site as usize].fetch_add(1, Relaxed);
    panic!("{MARKER} {} panic", site.tag())
}

/// One more ERROR event expected from `site`.
pub(crate) fn expect_log(site: Site) {
    EXPECTED_LOGS[site as usize].fetch_add(1, Relaxed);
}

pub(crate) fn injected_total() -> u64 {
    INJECTED.iter().map(|a| a.load(Relaxed)).sum()
}

/// True if a caught panic payload is one of ours.
pub(crate) fn is_injected(payload: &(dyn std::any::Any + Send)) -> bool {
    panic_text(payload).is_some_and(|m| m.starts_with(MARKER))
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// True if a failure carries one of our panics.
pub(crate) fn is_injected_failure(f: &filature::Failure) -> bool {
    f.panic_message().is_some_and(|m| m.starts_with(MARKER))
}

/// The end-of-run check of injected panics against the log events they produced.
pub(crate) fn logs_balanced() -> Vec<String> {
    let mut bad = vec![];
    for s in SITES {
        let (inj, exp, got) = (
            INJECTED[s as usize].load(Relaxed),
            EXPECTED_LOGS[s as usize].load(Relaxed),
            LOGGED[s as usize].load(Relaxed),
        );
        let exp = match s {
            Site::Callback | Site::PoolJob | Site::NamedJob | Site::Link => inj,
            _ => exp,
        };
        if exp != got {
            bad.push(format!(
                "{}: {inj} panics injected, {exp} log events expected, {got} seen",
                s.tag()
            ));
        }
    }
    let u = UNEXPECTED_LOGS.load(Relaxed);
    if u != 0 {
        bad.push(format!("{u} unexpected ERROR/WARN events"));
    }
    bad
}

pub(crate) fn injection_line() -> String {
    let mut s = String::new();
    for site in SITES {
        let _ = write!(
            s,
            "{} {}/{} ",
            site.tag(),
            INJECTED[site as usize].load(Relaxed),
            LOGGED[site as usize].load(Relaxed)
        );
    }
    s
}

/// Counts ERROR and WARN events: ours (an injected panic's marker in a field) by site, any other
/// as a violation.
struct LogCounter;

#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, "{}={value} ", field.name());
    }
}

impl<S: Subscriber> Layer<S> for LogCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level != Level::ERROR && level != Level::WARN {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let site = f.0.find(MARKER).and_then(|at| {
            let rest = &f.0[at + MARKER.len()..];
            SITES
                .into_iter()
                .find(|s| rest.trim_start().starts_with(&format!("{} panic", s.tag())))
        });
        match site {
            Some(s) => {
                LOGGED[s as usize].fetch_add(1, Relaxed);
            }
            None => {
                UNEXPECTED_LOGS.fetch_add(1, Relaxed);
                violation(format!(
                    "unexpected {level} event from {}: {}",
                    event.metadata().target(),
                    f.0
                ));
            }
        }
    }
}

/// Installs the log counter and a panic hook that keeps injected panics quiet and reports any
/// other panic as a violation.
pub(crate) fn install() {
    let subscriber = tracing_subscriber::registry().with(LogCounter);
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if is_injected(info.payload()) {
            return;
        }
        violation(format!(
            "unexpected panic on thread '{}': {info}",
            std::thread::current().name().unwrap_or("?")
        ));
        default(info);
    }));
}

/// Operations, counted for the summary lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Spawn,
    Join,
    Kill,
    Call,
    Timer,
    Pool,
    Named,
    Deferred,
    Queue,
    Sem,
    Sleep,
    Timeout,
    Event,
    Lend,
    Blocking,
    Tpool,
    Killall,
    Short,
    Restart,
    Net,
}

pub(crate) const OPS: [Op; 20] = [
    Op::Spawn,
    Op::Join,
    Op::Kill,
    Op::Call,
    Op::Timer,
    Op::Pool,
    Op::Named,
    Op::Deferred,
    Op::Queue,
    Op::Sem,
    Op::Sleep,
    Op::Timeout,
    Op::Event,
    Op::Lend,
    Op::Blocking,
    Op::Tpool,
    Op::Killall,
    Op::Short,
    Op::Restart,
    Op::Net,
];

static OP_COUNTS: [AtomicU64; OPS.len()] = [const { AtomicU64::new(0) }; OPS.len()];

pub(crate) fn bump(op: Op) {
    OP_COUNTS[op as usize].fetch_add(1, Relaxed);
}

pub(crate) fn op_line() -> String {
    let mut s = String::new();
    for op in OPS {
        let _ = write!(
            s,
            "{}={} ",
            format!("{op:?}").to_lowercase(),
            OP_COUNTS[op as usize].load(Relaxed)
        );
    }
    s.pop();
    s
}

/// Checks that a wait that gave up after `limit` waited at least that long.
pub(crate) fn early(start: std::time::Instant, limit: std::time::Duration, what: &str) {
    let waited = start.elapsed();
    ensure(waited >= limit, || {
        format!("{what} gave up after {waited:?}, before its {limit:?}")
    });
}
