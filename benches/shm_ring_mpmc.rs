//! The MPMC shared-memory ring (`sync::ring::mpmc`) against the SPSC ring it extends:
//! 64-byte messages, N producer threads × M consumer threads over one ring in process
//! memory (the same code and the same shared-futex waits as between processes; threads
//! keep the bench simple and the comparison fair, since both rings run the same way).
//!
//! - `throughput/spsc`: the SPSC ring, 1 × 1.
//! - `throughput/mpmc_1x1`, `mpmc_2x2`, `mpmc_4x4`: the MPMC ring; producers and consumers
//!   take turns on their side's robust lock.
//!
//! Each measurement sends `iters` messages in all and ends when every consumer has seen
//! `Disconnected` (all producers dropped and the ring drained).
#![allow(clippy::disallowed_methods)] // std::thread: the bench runs real threads

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use interproc::sync::ring::mpmc::{MpmcConsumer, MpmcError, MpmcHeapMemory, MpmcProducer};
use interproc::sync::ring::{self, HeapMemory, RingError};
use interproc::sync::SharedFutex;

const SIZE: usize = 64;
const CAPACITY: usize = 64 << 10;

fn spsc(iters: u64) -> Duration {
    let (mut tx, mut rx) = ring::pair::<_, SharedFutex>(HeapMemory::new(CAPACITY), 1).unwrap();
    let msg = [7u8; SIZE];
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            for _ in 0..iters {
                tx.send(&msg, None).unwrap();
            }
        });
        let mut n = 0u64;
        loop {
            match rx.recv_in_place(None, |m| m.len()) {
                Ok(len) => n += len as u64 / SIZE as u64,
                Err(RingError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(n, iters);
    });
    start.elapsed()
}

fn mpmc(iters: u64, producers: u64, consumers: usize) -> Duration {
    let mem = MpmcHeapMemory::new(CAPACITY);
    let txs: Vec<_> = (0..producers).map(|_| MpmcProducer::attach(mem.clone()).unwrap()).collect();
    let msg = [7u8; SIZE];
    let start = Instant::now();
    std::thread::scope(|s| {
        for (i, mut tx) in txs.into_iter().enumerate() {
            let n = iters / producers + u64::from((i as u64) < iters % producers);
            s.spawn(move || {
                for _ in 0..n {
                    tx.send(&msg, None).unwrap();
                }
            });
        }
        let rxs: Vec<_> = (0..consumers)
            .map(|_| {
                let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
                s.spawn(move || {
                    let mut buf = Vec::with_capacity(SIZE);
                    let mut n = 0u64;
                    loop {
                        match rx.recv(&mut buf, None) {
                            Ok(()) => n += 1,
                            Err(MpmcError::Disconnected) => return n,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let total: u64 = rxs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, iters);
    });
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("spsc", SIZE), |b| b.iter_custom(spsc));
    for (p, m) in [(1, 1), (2, 2), (4, 4)] {
        g.bench_function(BenchmarkId::new(format!("mpmc_{p}x{m}"), SIZE), |b| {
            b.iter_custom(|iters| mpmc(iters, p, m))
        });
    }
    g.finish();
}

criterion::criterion_group!(benches, throughput);
criterion::criterion_main!(benches);
