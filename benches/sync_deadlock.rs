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
    // The process-shared mutex: its hook (the cross-process registry) runs only when a
    // waiter parks, so uncontended it only sets up and drops an empty wait record.
    let p = interproc::sync::shm::Segment::anonymous(interproc::sync::process::Mutex::new(0u64))
        .expect("an anonymous segment");
    g.bench_function("process_mutex", |b| b.iter(|| *black_box(&*p).lock().unwrap() += 1));
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
    g.finish();
}

criterion_group!(benches, uncontended, nested);
criterion_main!(benches);
