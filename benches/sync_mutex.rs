//! Mutex: interproc's futex mutex against `std::sync::Mutex` and `parking_lot::Mutex`.
//!
//! - `mutex_uncontended`: one lock + increment + unlock on one thread, the common case; the
//!   goal in issue 3 is interproc within 1.1x of std.
//! - `mutex_contended_2_threads`: two threads each do `iters` lock + increment + unlock on
//!   one mutex; the time reported per iteration covers one operation on each thread.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_uncontended");
    let m = interproc::sync::Mutex::new(0u64);
    g.bench_function("interproc", |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    let m = interproc::sync::Mutex::new_unpoisoned(0u64);
    g.bench_function("interproc_unpoisoned", |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    let m = std::sync::Mutex::new(0u64);
    g.bench_function("std", |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    let m = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&m).lock() += 1));
    g.finish();
}

/// Runs `op` `iters` times on each of two threads at once; returns the wall time.
fn two_threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| (0..iters).for_each(|_| op()));
        }
    });
    start.elapsed()
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_contended_2_threads");
    let m = interproc::sync::Mutex::new(0u64);
    g.bench_function("interproc", |b| {
        b.iter_custom(|iters| two_threads(iters, || *m.lock().unwrap() += 1))
    });
    let m = std::sync::Mutex::new(0u64);
    g.bench_function("std", |b| {
        b.iter_custom(|iters| two_threads(iters, || *m.lock().unwrap() += 1))
    });
    let m = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| {
        b.iter_custom(|iters| two_threads(iters, || *m.lock() += 1))
    });
    g.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
