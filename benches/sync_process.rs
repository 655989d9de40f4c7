//! The process-shared, robust mutex against a pthread `PTHREAD_PROCESS_SHARED` +
//! `PTHREAD_MUTEX_ROBUST` mutex in the same kind of shared memory (an anonymous memfd
//! segment), and std's mutex as the in-process reference.
//!
//! - `process_mutex_uncontended`: lock + increment + unlock on one thread.
//! - `process_mutex_contended_2_processes`: a forked child and the parent each do `iters`
//!   lock + increment + unlock at once; the time per iteration covers one operation in
//!   each process.
//! - `process_mutex_recovery`: a child locks and is SIGKILLed; the time from the `kill`
//!   to the parent holding the lock with `OwnerDied` (`EOWNERDEAD` for pthread). pthread's
//!   clean-up is the kernel's robust list, run at exit; interproc's is a waiter's liveness
//!   poll (see `interproc::sync::process`), so this is the price of not owning that list.
//!
//! The goal in issue 3: the robust process-shared mutex no slower than pthread's.
//! Run: `cargo bench --bench sync_process`.

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use interproc::sync::process::{LockError, Mutex};
use interproc::sync::shm::{Segment, ShmSafe};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult, Pid};

/// A pthread robust, process-shared mutex around a counter.
#[repr(C)]
struct PthreadRobust {
    m: UnsafeCell<libc::pthread_mutex_t>,
    value: UnsafeCell<u64>,
}
// SAFETY: `#[repr(C)]`; a process-shared pthread mutex is designed to live in shared
// memory, and `value` is only touched under it.
unsafe impl ShmSafe for PthreadRobust {}
// SAFETY: as above: all access goes through the mutex.
unsafe impl Sync for PthreadRobust {}

impl PthreadRobust {
    /// A robust, process-shared pthread mutex, initialised in place in a new segment.
    fn segment() -> Segment<PthreadRobust> {
        let seg = Segment::anonymous(PthreadRobust {
            // SAFETY: an all-zero pthread_mutex_t is only storage here; it is initialised
            // in place below, at its final (shared) address, before any use.
            m: UnsafeCell::new(unsafe { std::mem::zeroed() }),
            value: UnsafeCell::new(0),
        })
        .expect("segment");
        // SAFETY: the attribute object is initialised before use and destroyed after; the
        // mutex is initialised at its final address in the shared mapping, once, before
        // any process uses it.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST), 0);
            assert_eq!(libc::pthread_mutex_init(seg.m.get(), &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        seg
    }

    /// Locks; returns whether the previous owner died (`EOWNERDEAD`), after marking it
    /// consistent.
    fn lock(&self) -> bool {
        // SAFETY: the mutex was initialised in place by `segment`.
        match unsafe { libc::pthread_mutex_lock(self.m.get()) } {
            0 => false,
            libc::EOWNERDEAD => {
                // SAFETY: this thread holds the mutex (EOWNERDEAD means it was acquired).
                assert_eq!(unsafe { libc::pthread_mutex_consistent(self.m.get()) }, 0);
                true
            }
            e => panic!("pthread_mutex_lock: {e}"),
        }
    }

    fn unlock(&self) {
        // SAFETY: called only by the holder, after `lock`.
        assert_eq!(unsafe { libc::pthread_mutex_unlock(self.m.get()) }, 0);
    }

    fn increment(&self) {
        self.lock();
        // SAFETY: the mutex is held.
        unsafe { *self.value.get() += 1 };
        self.unlock();
    }
}

/// Forks a child that runs `f` and `_exit`s.
fn child(f: impl FnOnce()) -> Pid {
    // SAFETY: the bench is single-threaded at this point (criterion runs benchmarks on the
    // main thread); the child runs `f` and `_exit`s without returning into criterion.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            f();
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_mutex_uncontended");
    let m = Segment::anonymous(Mutex::new(0u64)).unwrap();
    g.bench_function("interproc_robust", |b| b.iter(|| *black_box(&*m).lock().unwrap() += 1));
    let p = PthreadRobust::segment();
    g.bench_function("pthread_robust", |b| b.iter(|| black_box(&*p).increment()));
    let s = std::sync::Mutex::new(0u64);
    g.bench_function("std_in_process", |b| b.iter(|| *black_box(&s).lock().unwrap() += 1));
    g.finish();
}

/// A start flag in shared memory, so that parent and child begin together.
fn two_processes(iters: u64, op: impl Fn(), go: &AtomicU32) -> Duration {
    go.store(0, SeqCst);
    let kid = child(|| {
        while go.load(SeqCst) == 0 {
            std::hint::spin_loop();
        }
        (0..iters).for_each(|_| op());
    });
    let start = Instant::now();
    go.store(1, SeqCst);
    (0..iters).for_each(|_| op());
    waitpid(kid, None).expect("waitpid");
    start.elapsed()
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_mutex_contended_2_processes");
    g.measurement_time(Duration::from_secs(3)).sample_size(20);
    let go = Segment::anonymous(AtomicU32::new(0)).unwrap();
    let m = Segment::anonymous(Mutex::new(0u64)).unwrap();
    g.bench_function("interproc_robust", |b| {
        b.iter_custom(|iters| two_processes(iters, || *m.lock().unwrap() += 1, &go))
    });
    let p = PthreadRobust::segment();
    g.bench_function("pthread_robust", |b| {
        b.iter_custom(|iters| two_processes(iters, || p.increment(), &go))
    });
    g.finish();
}

/// One crash and recovery: a child locks, says so, and is SIGKILLed; returns the time from
/// the kill to the parent holding the lock, and checks the parent saw the death.
fn crash_once(lock_in_child: impl FnOnce(), lock_after_death: impl FnOnce() -> bool) -> Duration {
    let (rx, tx): (OwnedFd, OwnedFd) = pipe().unwrap();
    let (mut rx, mut tx) = (std::fs::File::from(rx), std::fs::File::from(tx));
    let kid = child(|| {
        lock_in_child();
        tx.write_all(b"!").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    rx.read_exact(&mut [0u8]).unwrap();
    let start = Instant::now();
    kill(kid, Signal::SIGKILL).unwrap();
    assert!(lock_after_death(), "the death was not reported");
    let took = start.elapsed();
    waitpid(kid, None).unwrap();
    took
}

fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_mutex_recovery");
    g.measurement_time(Duration::from_secs(3)).sample_size(10);
    let m = Segment::anonymous(Mutex::new(0u64)).unwrap();
    g.bench_function("interproc_robust", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    crash_once(
                        || std::mem::forget(m.lock().unwrap()),
                        || match m.lock() {
                            Err(LockError::OwnerDied(mut g)) => {
                                g.make_consistent();
                                true
                            }
                            _ => false,
                        },
                    )
                })
                .sum()
        })
    });
    let p = PthreadRobust::segment();
    g.bench_function("pthread_robust", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    crash_once(
                        || {
                            p.lock();
                        },
                        || {
                            let died = p.lock();
                            p.unlock();
                            died
                        },
                    )
                })
                .sum()
        })
    });
    g.finish();
}

criterion_group!(benches, uncontended, contended, recovery);
criterion_main!(benches);
