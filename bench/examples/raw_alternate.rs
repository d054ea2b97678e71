//! A reference for the `switch` scenario: raw corosensei, no hub. Prints the round trip of two
//! coroutines taken in turn from a `VecDeque` (moved out and back in, as a naive scheduler
//! would), of two coroutines resumed directly in turn, and the resume of one coroutine (the
//! scenario's floor). See "Why the switch was 40 × the floor" in `bench/README.md`.
//!
//! ```text
//! cargo run --release -p filature-bench --example raw_alternate [N]
//! ```

use std::collections::VecDeque;
use std::time::Instant;

use corosensei::Coroutine;

fn per_op(start: Instant, n: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(2_000_000, |s| s.parse().expect("N"));
    let make = || {
        Coroutine::<(), (), ()>::new(|y, ()| loop {
            y.suspend(());
        })
    };
    let mut queue: VecDeque<Coroutine<(), (), ()>> = VecDeque::from([make(), make()]);
    let start = Instant::now();
    for _ in 0..2 * n {
        let mut c = queue.pop_front().expect("two coroutines");
        c.resume(());
        queue.push_back(c);
    }
    println!(
        "two through a VecDeque: {:.2} ns per round trip",
        per_op(start, n)
    );
    let (mut a, mut b) = (make(), make());
    let start = Instant::now();
    for _ in 0..n {
        a.resume(());
        b.resume(());
    }
    println!(
        "two resumed directly: {:.2} ns per round trip",
        per_op(start, n)
    );
    let start = Instant::now();
    for _ in 0..n {
        a.resume(());
    }
    println!("one coroutine: {:.2} ns per resume", per_op(start, n));
}
