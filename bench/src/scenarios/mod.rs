//! The scenarios, one module each. A module exposes `systems()` (filature's
//! entry first, then the peers) and one function
//! per system that returns that system's measured metrics.

pub(crate) mod blocking_call;
pub(crate) mod call;
pub(crate) mod deferred;
pub(crate) mod http;
pub(crate) mod named;
pub(crate) mod offload;
pub(crate) mod park;
pub(crate) mod pool;
pub(crate) mod sockets;
pub(crate) mod spawn;
pub(crate) mod switch;
pub(crate) mod wake;

use crate::Scenario;

/// Every scenario, in the order `all` runs them.
pub(crate) fn registry() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "switch",
            about: "two tasks on one thread alternating with yield: A->B->A",
            floor: Some("corosensei"),
            systems: switch::systems,
        },
        Scenario {
            name: "spawn",
            about: "spawn and join an empty task, sequentially",
            floor: None,
            systems: spawn::systems,
        },
        Scenario {
            name: "park",
            about: "N tasks parked on one event, released, joined (child process each)",
            floor: None,
            systems: park::systems,
        },
        Scenario {
            name: "wake",
            about: "an OS thread wakes a waiting task, which answers back",
            floor: None,
            systems: wake::systems,
        },
        Scenario {
            name: "call",
            about: "call_from_thread throughput from 1 and 4 producers",
            floor: Some("crossbeam"),
            systems: call::systems,
        },
        Scenario {
            name: "blocking_call",
            about: "blocking_call_from_thread round trip",
            floor: None,
            systems: blocking_call::systems,
        },
        Scenario {
            name: "deferred",
            about: "a chain of 1,000 callbacks; a 100,000-deep nested chain",
            floor: None,
            systems: deferred::systems,
        },
        Scenario {
            name: "offload",
            about: "a no-op on a blocking pool from tasks on one thread",
            floor: None,
            systems: offload::systems,
        },
        Scenario {
            name: "pool",
            about: "tiny jobs through a 2-worker thread pool",
            floor: Some("crossbeam"),
            systems: pool::systems,
        },
        Scenario {
            name: "named",
            about: "calls from 1 and 4 producers into one serial worker thread",
            floor: None,
            systems: named::systems,
        },
        Scenario {
            name: "http",
            about: "a keep-alive HTTP/1.1 hello server under wrk -t2, 100 and 1000 connections, 1 and 2 workers (child process each)",
            floor: None,
            systems: http::systems,
        },
        Scenario {
            name: "echo",
            about: "1,000 connections x 1,000 64-byte echoes through one server thread (child process each)",
            floor: None,
            systems: sockets::echo_systems,
        },
        Scenario {
            name: "connect_rate",
            about: "20,000 short connections (connect, one round trip, close), 100 at a time",
            floor: None,
            systems: sockets::connect_rate_systems,
        },
        Scenario {
            name: "conns",
            about: "50,000 idle connections held by one server thread, 4 KiB buffer each",
            floor: None,
            systems: sockets::conns_systems,
        },
        Scenario {
            name: "protocol_echo",
            about: "echo's load against filature's Protocol and GreenTransport echo servers (child process each)",
            floor: None,
            systems: sockets::protocol_echo_systems,
        },
        Scenario {
            name: "protocol_http",
            about: "http's wrk load against the HTTP core written as a filature Protocol (1 hub)",
            floor: None,
            systems: http::protocol_systems,
        },
    ]
}

/// may's scheduler is configured once per process, before its first use:
/// one worker, so its coroutines share a thread like the other systems' tasks.
pub(crate) fn may_single_worker() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        may::config().set_workers(1);
    });
}

/// A tokio current-thread runtime whose threads carry `name`.
pub(crate) fn tokio_current_thread(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .expect("build a tokio current-thread runtime")
}
