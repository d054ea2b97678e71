//! Cost of building and firing a chain of callbacks. The figure is printed; it is asserted only in
//! release builds (`cargo test --release -p filature --test deferred_speed -- --nocapture`).

use std::hint::black_box;
use std::time::Instant;

use filature::deferred::{Deferred, Outcome};

const CHAIN: usize = 1_000;

fn build_and_fire() -> u64 {
    let d = Deferred::<u64>::new();
    for _ in 0..CHAIN {
        d.add_callback(|v| Outcome::Value(black_box(v) + 1));
    }
    d.callback(0).unwrap();
    d.take_result().unwrap().unwrap()
}

fn add_to_fired() -> u64 {
    let d = Deferred::<u64>::new();
    d.callback(0).unwrap();
    for _ in 0..CHAIN {
        d.add_callback(|v| Outcome::Value(black_box(v) + 1));
    }
    d.take_result().unwrap().unwrap()
}

fn measure(name: &str, f: fn() -> u64) -> f64 {
    for _ in 0..50 {
        assert_eq!(f(), CHAIN as u64);
    }
    let rounds = if cfg!(debug_assertions) { 50 } else { 2_000 };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..rounds {
            black_box(f());
        }
        let ns = start.elapsed().as_nanos() as f64 / (rounds * CHAIN) as f64;
        best = best.min(ns);
    }
    println!("{name}: {best:.1} ns per callback (chain of {CHAIN}, best of 5)");
    best
}

#[test]
fn building_and_firing_a_chain_costs_well_under_100ns_per_callback() {
    let ns = measure("build then fire", build_and_fire);
    if !cfg!(debug_assertions) {
        assert!(ns < 100.0, "{ns:.1} ns per callback");
    }
}

#[test]
fn adding_callbacks_to_a_fired_deferred_is_cheap_too() {
    let ns = measure("add to fired", add_to_fired);
    if !cfg!(debug_assertions) {
        assert!(ns < 200.0, "{ns:.1} ns per callback");
    }
}
