//! The cost of deadlock detection on the paths that never block: one uncontended
//! lock + increment + unlock, and a nested pair (lock A, lock B, unlock both, in a fixed
//! order: the lock-order check runs on every inner lock). Run it twice and compare:
//!
//! ```sh
//! cargo bench --bench sync_deadlock                                  # detection off
//! cargo bench --bench sync_deadlock --features deadlock-detection    # detection on
//! ```
//!
//! The group name says which build ran (`deadlock_off` / `deadlock_on`); `std` is in both
//! as the yardstick for the machine's noise between the two runs.
//!
//! The peers with their own detection on, parking_lot (`deadlock_detection`: a thread-local
//! list of held locks, cycles found by polling) and tracing-mutex (lock-order graph), are
//! rows of the same groups under the feature `bench-deadlock-peers`, which is kept apart
//! because parking_lot's detection would also slow the parking_lot rows of other benches:
//!
//! ```sh
//! cargo bench --bench sync_deadlock --features deadlock-detection,bench-deadlock-peers
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

const GROUP: &str =
    if cfg!(feature = "deadlock-detection") { "deadlock_on" } else { "deadlock_off" };

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("{GROUP}/uncontended"));
    let m = interproc::sync::Mutex::new_unpoisoned(0u64).labelled("bench");
    g.bench_function("interproc_mutex", |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    let m = std::sync::Mutex::new(0u64);
    g.bench_function("std_mutex", |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    let s = interproc::sync::Semaphore::new(1);
    g.bench_function("interproc_semaphore", |b| b.iter(|| drop(black_box(&s).acquire())));
    // The process-shared mutex: uncontended, its hooks push it on the held stack and pop
    // it (its lock class is cached per address); the cross-process registry's wait record
    // is made only when a waiter parks.
    let p = interproc::sync::shm::Segment::anonymous(interproc::sync::process::Mutex::new(0u64))
        .expect("an anonymous segment");
    g.bench_function("process_mutex", |b| b.iter(|| *black_box(&*p).lock().unwrap() += 1));
    #[cfg(feature = "bench-deadlock-peers")]
    {
        let m = parking_lot::Mutex::new(0u64);
        g.bench_function("parking_lot_deadlock_detection", |b| {
            b.iter(|| *black_box(&m).lock() += 1)
        });
        let m = tracing_mutex::stdsync::tracing::Mutex::new(0u64);
        g.bench_function("tracing_mutex", |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    }
    g.finish();
}

fn nested(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("{GROUP}/nested_pair"));
    let a = interproc::sync::Mutex::new_unpoisoned(0u64).labelled("A");
    let b = interproc::sync::Mutex::new_unpoisoned(0u64).labelled("B");
    g.bench_function("interproc_mutex", |bench| {
        bench.iter(|| {
            let mut x = black_box(&a).lock().unwrap();
            let mut y = black_box(&b).lock().unwrap();
            *x += 1;
            *y += 1;
        })
    });
    let a = std::sync::Mutex::new(0u64);
    let b = std::sync::Mutex::new(0u64);
    g.bench_function("std_mutex", |bench| {
        bench.iter(|| {
            let mut x = black_box(&a).lock().unwrap();
            let mut y = black_box(&b).lock().unwrap();
            *x += 1;
            *y += 1;
        })
    });
    #[cfg(feature = "bench-deadlock-peers")]
    {
        let a = parking_lot::Mutex::new(0u64);
        let b = parking_lot::Mutex::new(0u64);
        g.bench_function("parking_lot_deadlock_detection", |bench| {
            bench.iter(|| {
                let mut x = black_box(&a).lock();
                let mut y = black_box(&b).lock();
                *x += 1;
                *y += 1;
            })
        });
        let a = tracing_mutex::stdsync::tracing::Mutex::new(0u64);
        let b = tracing_mutex::stdsync::tracing::Mutex::new(0u64);
        g.bench_function("tracing_mutex", |bench| {
            bench.iter(|| {
                let mut x = black_box(&a).lock().unwrap();
                let mut y = black_box(&b).lock().unwrap();
                *x += 1;
                *y += 1;
            })
        });
    }
    g.finish();
}

criterion_group!(benches, uncontended, nested);
criterion_main!(benches);
