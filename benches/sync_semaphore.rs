//! Semaphore: interproc's one-word futex semaphore against the textbook one built from
//! `std::sync::Mutex` + `Condvar`.
//!
//! - `semaphore_uncontended`: acquire one permit and give it back, on one thread.
//! - `semaphore_contended_2_threads`: one permit, two threads each doing `iters` acquire +
//!   release; the time per iteration covers one operation on each thread.

use std::hint::black_box;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use interproc::sync::Semaphore;

/// The textbook counting semaphore: a count under a mutex, and a condvar to wait on.
struct CondvarSemaphore {
    count: Mutex<u32>,
    freed: Condvar,
}

impl CondvarSemaphore {
    fn new(permits: u32) -> Self {
        Self { count: Mutex::new(permits), freed: Condvar::new() }
    }

    fn acquire(&self) {
        let mut n = self.freed.wait_while(self.count.lock().unwrap(), |n| *n == 0).unwrap();
        *n -= 1;
    }

    fn release(&self) {
        *self.count.lock().unwrap() += 1;
        self.freed.notify_one();
    }
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("semaphore_uncontended");
    let s = Semaphore::new(1);
    g.bench_function("interproc", |b| b.iter(|| drop(black_box(&s).acquire())));
    let s = CondvarSemaphore::new(1);
    g.bench_function("mutex_condvar", |b| {
        b.iter(|| {
            black_box(&s).acquire();
            s.release();
        })
    });
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
    let mut g = c.benchmark_group("semaphore_contended_2_threads");
    let s = Semaphore::new(1);
    g.bench_function("interproc", |b| {
        b.iter_custom(|iters| two_threads(iters, || drop(s.acquire())))
    });
    let s = CondvarSemaphore::new(1);
    g.bench_function("mutex_condvar", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                s.acquire();
                s.release();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
