#!/usr/bin/env python3
"""The originals as peers: eventlet and Twisted on CPython, measured on the
scenarios they share with filature-bench, with the same metric names and the
same semantics as the Rust scenarios in ``bench/src/scenarios/*.rs``.

    python originals.py [--quick] [--scenario NAME]...

prints one JSON object per line, the filature-bench contract:

    {"scenario": "...", "system": "eventlet"|"twisted", "metric": "...",
     "value": <number>, "note": "..."}

Scenarios (what is timed is what the Rust scenario of that name times):

  switch         eventlet: two greenthreads each calling ``eventlet.sleep(0)``
                 n times, so a round trip A->B->A goes through eventlet's hub,
                 as a filature round trip goes through its hub (``round_trip_ns``).
                 Also ``greenlet_round_trip_ns``: A switching to greenlet B
                 and B straight back, no hub (eventlet's floor, like corosensei's).
  spawn          eventlet: ``eventlet.spawn(f).wait()`` from the main greenlet
                 (``spawn_join_ns``).
  offload        eventlet ``tpool.execute(noop)`` (20 threads, its default) from
                 greenthreads; Twisted ``threads.deferToThread(noop)`` (reactor
                 pool sized 20) from ``inlineCallbacks`` callers on the reactor:
                 ``p50_us`` of one caller's round trips, ``calls_per_sec`` of 20
                 concurrent callers.
  call           Twisted ``reactor.callFromThread`` from 1 and 4 producer
                 threads into a reactor running on its own thread, timed from the
                 producers' start until the reactor has run the last call
                 (``calls_per_sec_1p``, ``calls_per_sec_4p``).
  blocking_call  Twisted ``threads.blockingCallFromThread(reactor, f)`` from a
                 plain thread, each round trip timed (``p50_us``, ``p99_us``).
  deferred       Twisted: chains of 1,000 ``addCallback``s fired with
                 ``callback(0)`` (``ns_per_callback``, building and firing), and a
                 100,000-deep tower of Deferreds each of whose callback returns
                 the next (``nested_depth_ok``: the innermost value seen by the
                 outermost callback, 100,000 when it completes, 0 when it fails).

Each (scenario, system) runs in a child process of its own (the Twisted
reactor cannot be restarted; eventlet and Twisted never share a process).
Counts are smaller than the Rust ones where a Python round trip costs
microseconds (each note gives the count); every figure is per operation, so
it compares directly. Throughputs and per-operation times are the median of
3 (``--quick``) or 7 samples after one warm-up, as in the Rust harness;
latencies are nearest-rank percentiles of individually timed round trips
after a tenth as many warm-up ones. Nothing is hard-coded.
"""

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
import warnings

CALLERS = 20
CHAIN = 1_000
NESTED_DEPTH = 100_000

# scenario -> the systems measured for it, in report order.
SCENARIOS = {
    "switch": ["eventlet"],
    "spawn": ["eventlet"],
    "offload": ["eventlet", "twisted"],
    "call": ["twisted"],
    "blocking_call": ["twisted"],
    "deferred": ["twisted"],
}

QUICK = False


def pick(quick, full):
    return quick if QUICK else full


def samples():
    return pick(3, 7)


def cpython():
    return f"{platform.python_implementation()} {platform.python_version()}"


def emit(scenario, system, metric, value, note):
    print(
        json.dumps(
            {
                "scenario": scenario,
                "system": system,
                "metric": metric,
                "value": value,
                "note": note,
            }
        ),
        flush=True,
    )


# ---------------------------------------------------------------------------
# Timing, as in bench/src/harness.rs


def percentile(values, p):
    """The p-th percentile, nearest rank (harness::percentile)."""
    values = sorted(values)
    rank = -(-p * len(values) // 100)  # ceil
    rank = min(max(int(rank), 1), len(values))
    return values[rank - 1]


def median_of(sample):
    """One warm-up call, then `samples()` timed ones; their median."""
    sample()
    return percentile([sample() for _ in range(samples())], 50)


def latencies_us(rounds, one):
    """`rounds // 10` warm-up round trips, then `rounds` timed ones, in µs."""
    for _ in range(rounds // 10):
        one()
    clock = time.perf_counter_ns
    out = []
    for _ in range(rounds):
        start = clock()
        one()
        out.append((clock() - start) / 1000)
    return out


def fmt(n):
    return f"{n:,}"


# ---------------------------------------------------------------------------
# eventlet


def import_eventlet():
    # eventlet warns at import that it is in bugfix-only mode; said once in the README.
    warnings.filterwarnings("ignore", message=r"(?s)\s*Eventlet is deprecated")
    import eventlet
    import greenlet

    return eventlet, f"eventlet {eventlet.__version__} (greenlet {greenlet.__version__})"


def eventlet_switch():
    eventlet, version = import_eventlet()
    from greenlet import GreenletExit, getcurrent, greenlet

    n = pick(2_000, 20_000)
    clock = time.perf_counter_ns

    def loop():
        for _ in range(n):
            eventlet.sleep(0)

    def sample():
        start = clock()
        a = eventlet.spawn(loop)
        b = eventlet.spawn(loop)
        a.wait()
        b.wait()
        return (clock() - start) / n

    emit(
        "switch",
        "eventlet",
        "round_trip_ns",
        median_of(sample),
        f"{cpython()}, {version}: two greenthreads each eventlet.sleep(0) {fmt(n)} times "
        f"(A->hub->B->hub->A per round trip), median of {samples()}",
    )

    def raw_sample():
        main = getcurrent()

        def other():
            while True:
                main.switch()

        b = greenlet(other)
        start = clock()
        for _ in range(n * 10):
            b.switch()
        elapsed = clock() - start
        b.throw(GreenletExit)
        return elapsed / (n * 10)

    emit(
        "switch",
        "eventlet",
        "greenlet_round_trip_ns",
        median_of(raw_sample),
        f"{cpython()}, {version}: main greenlet switches to greenlet B, B straight back, "
        f"no hub (the floor under eventlet, as corosensei is under filature), "
        f"{fmt(n * 10)} round trips, median of {samples()}",
    )


def eventlet_spawn():
    eventlet, version = import_eventlet()
    n = pick(2_000, 10_000)
    clock = time.perf_counter_ns

    def noop():
        return None

    def sample():
        start = clock()
        for _ in range(n):
            eventlet.spawn(noop).wait()
        return (clock() - start) / n

    emit(
        "spawn",
        "eventlet",
        "spawn_join_ns",
        median_of(sample),
        f"{cpython()}, {version}: eventlet.spawn(f).wait() from the main greenlet, "
        f"{fmt(n)} per sample, median of {samples()}",
    )


def eventlet_offload():
    eventlet, version = import_eventlet()
    from eventlet import tpool

    rounds = pick(1_000, 10_000)
    per = pick(100, 1_000)
    clock = time.perf_counter_ns

    def noop():
        return None

    def one():
        tpool.execute(noop)

    lat = eventlet.spawn(latencies_us, rounds, one).wait()

    def caller():
        for _ in range(per):
            tpool.execute(noop)

    def sample():
        start = clock()
        callers = [eventlet.spawn(caller) for _ in range(CALLERS)]
        for c in callers:
            c.wait()
        return CALLERS * per / ((clock() - start) / 1e9)

    threads = tpool._nthreads
    emit(
        "offload",
        "eventlet",
        "p50_us",
        percentile(lat, 50),
        f"{cpython()}, {version}: tpool.execute(noop) from a greenthread, "
        f"{threads} pool threads, {fmt(rounds)} timed round trips",
    )
    emit(
        "offload",
        "eventlet",
        "calls_per_sec",
        median_of(sample),
        f"{cpython()}, {version}: {CALLERS} greenthreads x {fmt(per)} tpool.execute(noop), "
        f"median of {samples()}",
    )


# ---------------------------------------------------------------------------
# Twisted


def import_twisted():
    import twisted

    return f"Twisted {twisted.__version__}"


def reactor_name(reactor):
    return type(reactor).__name__


def twisted_offload():
    version = import_twisted()
    from twisted.internet import defer, reactor, threads

    reactor.suggestThreadPoolSize(CALLERS)
    rounds = pick(1_000, 10_000)
    per = pick(100, 1_000)
    clock = time.perf_counter_ns
    out = {}

    def noop():
        return None

    @defer.inlineCallbacks
    def caller(n):
        for _ in range(n):
            yield threads.deferToThread(noop)

    @defer.inlineCallbacks
    def measure():
        try:
            for _ in range(rounds // 10):
                yield threads.deferToThread(noop)
            lat = []
            for _ in range(rounds):
                start = clock()
                yield threads.deferToThread(noop)
                lat.append((clock() - start) / 1000)
            out["lat"] = lat
            rates = []
            for _ in range(samples() + 1):  # the first is the warm-up
                start = clock()
                yield defer.gatherResults([caller(per) for _ in range(CALLERS)])
                rates.append(CALLERS * per / ((clock() - start) / 1e9))
            out["rate"] = percentile(rates[1:], 50)
        except BaseException as e:  # reported below, after the reactor stops
            out["error"] = repr(e)
        finally:
            reactor.stop()

    reactor.callWhenRunning(measure)
    reactor.run(installSignalHandlers=False)
    if "error" in out:
        raise RuntimeError(out["error"])
    where = f"{cpython()}, {version} ({reactor_name(reactor)})"
    emit(
        "offload",
        "twisted",
        "p50_us",
        percentile(out["lat"], 50),
        f"{where}: deferToThread(noop) awaited by an inlineCallbacks caller on the "
        f"reactor, pool sized {CALLERS}, {fmt(rounds)} timed round trips",
    )
    emit(
        "offload",
        "twisted",
        "calls_per_sec",
        out["rate"],
        f"{where}: {CALLERS} inlineCallbacks callers x {fmt(per)} deferToThread(noop), "
        f"median of {samples()}",
    )


def reactor_thread():
    """Starts the global reactor on a thread of its own; returns (reactor, thread)."""
    from twisted.internet import reactor

    running = threading.Event()
    reactor.callWhenRunning(running.set)
    t = threading.Thread(
        target=reactor.run,
        kwargs={"installSignalHandlers": False},
        name="bench-twisted-reactor",
        daemon=True,
    )
    t.start()
    if not running.wait(30):
        raise RuntimeError("the Twisted reactor did not start")
    return reactor, t


def stop_reactor(reactor, t):
    reactor.callFromThread(reactor.stop)
    t.join(30)


class Countdown:
    """Counts finished calls (all run on the reactor thread) and wakes the waiter."""

    def __init__(self, total):
        self.left = total
        self.done = threading.Event()

    def tick(self):
        self.left -= 1
        if self.left == 0:
            self.done.set()


def producer_throughput(producers, total, post):
    """harness::producer_throughput: `producers` threads post their share of
    `total` calls; calls per second from the start until the last has run."""
    countdown = Countdown(total)
    gate = threading.Barrier(producers + 1)
    share = total // producers

    def produce(mine):
        gate.wait()
        tick = countdown.tick
        for _ in range(mine):
            post(tick)

    threads = []
    for p in range(producers):
        mine = total - share * (producers - 1) if p + 1 == producers else share
        t = threading.Thread(target=produce, args=(mine,), name=f"bench-call-producer-{p}")
        t.start()
        threads.append(t)
    gate.wait()
    start = time.perf_counter_ns()
    countdown.done.wait()
    elapsed = time.perf_counter_ns() - start
    for t in threads:
        t.join()
    return total / (elapsed / 1e9)


def twisted_call():
    version = import_twisted()
    reactor, t = reactor_thread()
    total = pick(20_000, 200_000)
    where = f"{cpython()}, {version} ({reactor_name(reactor)})"
    try:
        for producers, name in ((1, "calls_per_sec_1p"), (4, "calls_per_sec_4p")):
            rate = median_of(lambda: producer_throughput(producers, total, reactor.callFromThread))
            emit(
                "call",
                "twisted",
                name,
                rate,
                f"{where}: reactor.callFromThread from {producers} producer thread(s) into "
                f"the reactor on its own thread, {fmt(total)} calls, median of {samples()}",
            )
    finally:
        stop_reactor(reactor, t)


def twisted_blocking_call():
    version = import_twisted()
    from twisted.internet import threads

    reactor, t = reactor_thread()
    rounds = pick(1_000, 10_000)
    state = [0]

    def inc(i):
        return i + 1

    def one():
        state[0] = threads.blockingCallFromThread(reactor, inc, state[0])

    try:
        lat = latencies_us(rounds, one)
    finally:
        stop_reactor(reactor, t)
    where = f"{cpython()}, {version} ({reactor_name(reactor)})"
    note = (
        f"{where}: threads.blockingCallFromThread(reactor, f) from a plain thread, "
        f"{fmt(rounds)} timed round trips"
    )
    emit("blocking_call", "twisted", "p50_us", percentile(lat, 50), note)
    emit("blocking_call", "twisted", "p99_us", percentile(lat, 99), note)


def twisted_deferred():
    version = import_twisted()
    from twisted.internet.defer import Deferred

    chains = pick(20, 200)
    clock = time.perf_counter_ns

    def sample():
        start = clock()
        for _ in range(chains):
            d = Deferred()
            for _ in range(CHAIN):
                d.addCallback(lambda v: v + 1)
            d.callback(0)
        return (clock() - start) / (chains * CHAIN)

    emit(
        "deferred",
        "twisted",
        "ns_per_callback",
        median_of(sample),
        f"{cpython()}, {version}: {fmt(chains)} chains of {fmt(CHAIN)} addCallback(lambda v: v + 1), "
        f"each fired with callback(0); building and firing, median of {samples()}",
    )

    try:
        seen, how = nested_chain(NESTED_DEPTH), "completes"
    except RecursionError as e:  # the tower did not unwind
        seen, how = 0, f"fails: {e!r}"
    emit(
        "deferred",
        "twisted",
        "nested_depth_ok",
        seen,
        f"{cpython()}, {version}: a {fmt(NESTED_DEPTH)}-deep tower (each callback returns "
        f"the next Deferred, the innermost fired last) {how}",
    )


def nested_chain(depth):
    """deferred.rs's nested_chain: Deferred i's callback returns Deferred i + 1;
    all are fired, the innermost last; returns what the outermost callback saw."""
    from twisted.internet.defer import Deferred

    tower = [Deferred() for _ in range(depth)]
    for i in range(depth - 1):
        tower[i].addCallback(lambda _, inner=tower[i + 1]: inner)
    seen = [0]

    def record(v):
        seen[0] = v
        return v

    tower[0].addCallback(record)
    for d in tower[: depth - 1]:
        d.callback(0)
    tower[depth - 1].callback(depth)
    return seen[0]


CHILDREN = {
    ("switch", "eventlet"): eventlet_switch,
    ("spawn", "eventlet"): eventlet_spawn,
    ("offload", "eventlet"): eventlet_offload,
    ("offload", "twisted"): twisted_offload,
    ("call", "twisted"): twisted_call,
    ("blocking_call", "twisted"): twisted_blocking_call,
    ("deferred", "twisted"): twisted_deferred,
}


def main():
    global QUICK
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "SYSTEM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    QUICK = args.quick
    if args.child:
        CHILDREN[tuple(args.child)]()
        return 0
    failed = []
    for scenario in args.scenario or list(SCENARIOS):
        for system in SCENARIOS[scenario]:
            cmd = [sys.executable, __file__, "--child", scenario, system]
            if QUICK:
                cmd.append("--quick")
            # The child's lines pass straight through; its stderr goes to ours.
            code = subprocess.run(cmd, stdout=sys.stdout, check=False).returncode
            if code != 0:
                print(f"originals.py: {system} {scenario} failed (exit {code})", file=sys.stderr)
                failed.append(f"{system} {scenario}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
