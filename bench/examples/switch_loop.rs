//! A profiling aid for the `switch` scenario: two green threads on this thread's hub, each yielding
//! N times (N from the first argument, default 100000). Count instructions per round trip with
//! callgrind at two values of N and divide the difference, which cancels setup and teardown:
//!
//! ```text
//! cargo build --release -p filature-bench --example switch_loop
//! valgrind --tool=callgrind target/release/examples/switch_loop 100000
//! valgrind --tool=callgrind target/release/examples/switch_loop 200000
//! ```

use filature::green;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().expect("N"));
    let start = std::time::Instant::now();
    let a = green::spawn(move || (0..n).for_each(|_| green::yield_now()));
    let b = green::spawn(move || (0..n).for_each(|_| green::yield_now()));
    a.join();
    b.join();
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{n} round trips, {ns:.1} ns each");
}
