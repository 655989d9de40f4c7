//! The MPMC shared-memory ring (`sync::ring::mpmc`) against the SPSC ring it extends:
//! 64-byte messages, N producer threads × M consumer threads over one ring in process
//! memory (the same code and the same shared-futex waits as between processes; threads
//! keep the bench simple and the comparison fair, since both rings run the same way).
//!
//! - `throughput/spsc`: the SPSC ring, 1 × 1.
//! - `throughput/mpmc_1x1`, `mpmc_2x2`, `mpmc_4x4`: the MPMC ring; producers and consumers
//!   take turns on their side's robust lock.
//!
//! - `processes/spsc_1x1`, `processes/mpmc_2x2`: the same between real processes, over an
//!   anonymous memfd segment: forked producer and consumer processes attach their ends,
//!   report ready, and start together; the clock runs from the start signal until every
//!   consumer process has seen `Disconnected` and exited. Both receive with the copy API
//!   (`recv` into a reused buffer).
//!
//! Each measurement sends `iters` messages in all and ends when every consumer has seen
//! `Disconnected` (all producers dropped and the ring drained).
//!
//! Run: `cargo bench --bench shm_ring_mpmc` (short: `-- --warm-up-time 1
//! --measurement-time 3`).
#![allow(clippy::disallowed_methods)] // std::thread: the bench runs real threads

use std::time::{Duration, Instant};

use std::os::fd::OwnedFd;

use criterion::{BenchmarkId, Criterion, Throughput};
use interproc::ipc::channel::shm::ShmRing;
use interproc::ipc::channel::shm_mpmc::MpmcRing;
use interproc::sync::ring::mpmc::{MpmcConsumer, MpmcError, MpmcHeapMemory, MpmcProducer};
use interproc::sync::ring::{self, Consumer, HeapMemory, Producer, RingError};
use interproc::sync::SharedFutex;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

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

/// How long a child process waits for anything before it gives up (a bench that hangs
/// helps nobody): it exits with a failure the parent reports.
const CHILD_PATIENCE: Duration = Duration::from_secs(60);

/// A forked child that runs `f`; `f`'s code is its exit status.
fn spawn_child(f: impl FnOnce() -> i32) -> Pid {
    // SAFETY: the bench is single-threaded when it forks (criterion measures on the main
    // thread; the thread rows' scopes have ended), so the child may run ordinary Rust
    // code; it leaves with `_exit`, running no destructor of the parent's state.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) reads no memory; no child outlives the bench.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let code = f();
            // SAFETY: `_exit` ends the process at once; nothing else runs after it.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// In a child: says "ready" (one byte), then waits for its byte of the start signal.
fn ready_then_wait(ready: &OwnedFd, go: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    nix::unistd::write(ready, b"r") == Ok(1) && nix::unistd::read(go, &mut b) == Ok(1)
}

/// A child's work: it sets up (attaches its end), calls `start` (which returns once every
/// child is set up, `false` if the start failed), then runs; its result is its exit status.
type ChildFn<'a> = Box<dyn FnOnce(&dyn Fn() -> bool) -> i32 + 'a>;

/// Runs `children` (each set up before the start, and started together) and times them
/// from the start signal until all have exited with status 0.
fn run_processes(children: Vec<ChildFn<'_>>) -> Duration {
    let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
    let (go_r, go_w) = nix::unistd::pipe().unwrap();
    let n = children.len();
    let pids: Vec<Pid> = children
        .into_iter()
        .map(|f| {
            spawn_child(|| {
                let started = std::cell::Cell::new(false);
                let code = f(&|| {
                    started.set(true);
                    ready_then_wait(&ready_w, &go_r)
                });
                if !started.get() {
                    // Failed before the start: say so, or the parent would wait for it.
                    let _ = nix::unistd::write(&ready_w, b"f");
                }
                code
            })
        })
        .collect();
    drop((ready_w, go_r));
    let mut b = [0u8; 1];
    for _ in 0..n {
        assert_eq!(nix::unistd::read(&ready_r, &mut b), Ok(1), "no word from a child");
        assert_eq!(&b, b"r", "a child failed to set up");
    }
    let start = Instant::now();
    // One byte per child (every child holds a copy of `go_w`, so closing it would never
    // reach them as EOF).
    assert_eq!(nix::unistd::write(&go_w, &vec![b'g'; n]), Ok(n), "start signal");
    for pid in pids {
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0), "child failed");
    }
    start.elapsed()
}

/// `producers` × `consumers` processes over an anonymous memfd MPMC ring.
fn mpmc_processes(iters: u64, producers: u64, consumers: u64) -> Duration {
    let ring = MpmcRing::anonymous(CAPACITY).unwrap();
    let seg = ring.segment().clone();
    let mut children: Vec<ChildFn<'_>> = Vec::new();
    for i in 0..producers {
        let n = iters / producers + u64::from(i < iters % producers);
        let seg = seg.clone();
        children.push(Box::new(move |start| {
            let Ok(mut tx) = MpmcProducer::attach(seg) else { return 2 };
            if !start() {
                return 90;
            }
            let msg = [7u8; SIZE];
            for _ in 0..n {
                if tx.send(&msg, Some(Instant::now() + CHILD_PATIENCE)).is_err() {
                    return 3;
                }
            }
            0
        }));
    }
    for _ in 0..consumers {
        let seg = seg.clone();
        children.push(Box::new(move |start| {
            let Ok(mut rx) = MpmcConsumer::attach(seg) else { return 4 };
            if !start() {
                return 90;
            }
            let mut buf = Vec::with_capacity(SIZE);
            loop {
                match rx.recv(&mut buf, Some(Instant::now() + CHILD_PATIENCE)) {
                    Ok(()) => {}
                    Err(MpmcError::Disconnected) => return 0,
                    Err(_) => return 5,
                }
            }
        }));
    }
    // Every producer attaches before the start, so no consumer takes the first one's
    // exit for "all gone".
    let t = run_processes(children);
    assert_eq!(ring.producers() + ring.consumers(), 0, "a child did not detach");
    t
}

/// One producer process and one consumer process over an anonymous memfd SPSC ring.
fn spsc_processes(iters: u64) -> Duration {
    let ring = ShmRing::anonymous(CAPACITY).unwrap();
    let (seg_tx, seg_rx) = (ring.segment().clone(), ring.segment().clone());
    let children: Vec<ChildFn<'_>> = vec![
        Box::new(move |start| {
            let pid = std::process::id();
            let Ok(mut tx) = Producer::<_, SharedFutex>::attach(seg_tx, pid) else { return 2 };
            if !start() {
                return 90;
            }
            let msg = [7u8; SIZE];
            for _ in 0..iters {
                if tx.send(&msg, Some(Instant::now() + CHILD_PATIENCE)).is_err() {
                    return 3;
                }
            }
            0
        }),
        Box::new(move |start| {
            let pid = std::process::id();
            let Ok(mut rx) = Consumer::<_, SharedFutex>::attach(seg_rx, pid) else { return 4 };
            if !start() {
                return 90;
            }
            let mut buf = Vec::with_capacity(SIZE);
            let mut n = 0u64;
            loop {
                match rx.recv(&mut buf, Some(Instant::now() + CHILD_PATIENCE)) {
                    Ok(()) => n += 1,
                    Err(RingError::Disconnected) if n == iters => return 0,
                    Err(_) => return 5,
                }
            }
        }),
    ];
    run_processes(children)
}

fn processes(c: &mut Criterion) {
    let mut g = c.benchmark_group("processes");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("spsc_1x1", SIZE), |b| b.iter_custom(spsc_processes));
    g.bench_function(BenchmarkId::new("mpmc_2x2", SIZE), |b| {
        b.iter_custom(|iters| mpmc_processes(iters, 2, 2))
    });
    g.finish();
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

criterion::criterion_group!(benches, throughput, processes);
criterion::criterion_main!(benches);
