//! `Semaphore` between real threads: the permit bound, `acquire_many`, timeouts.
//!
//! No test asserts how long anything takes: timeouts are checked by their result only.
#![cfg(not(interproc_loom))] // real threads and futexes; the models are in loom_*.rs
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real threads and counters

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use interproc_sync::{Error, Semaphore};

const LONG: Duration = Duration::from_secs(60);
/// Iterations per thread: fewer under Miri, which runs the same tests far slower.
const ITERS: u32 = if cfg!(miri) { 10 } else { 2_000 };

/// Eight threads, three permits: the number of holders, recorded by the holders, never
/// exceeds three, and every permit comes back.
#[test]
fn holders_never_exceed_permits() {
    let sem = Arc::new(Semaphore::new(3));
    let inside = Arc::new(AtomicU32::new(0));
    let max = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (sem, inside, max) = (sem.clone(), inside.clone(), max.clone());
            thread::spawn(move || {
                for _ in 0..ITERS {
                    let _p = sem.acquire();
                    let now = inside.fetch_add(1, SeqCst) + 1;
                    max.fetch_max(now, SeqCst);
                    inside.fetch_sub(1, SeqCst);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(max.load(SeqCst) <= 3, "{} holders of 3 permits", max.load(SeqCst));
    assert_eq!(sem.available_permits(), 3);
}

/// Mixed `acquire_many(1..=3)` and timed acquires against four permits: the permits held
/// at once never exceed four, and the count is whole at the end.
#[test]
fn acquire_many_and_timeouts_under_contention_conserve_permits() {
    let sem = Arc::new(Semaphore::new(4));
    let held = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (1..=6u32)
        .map(|i| {
            let (sem, held) = (sem.clone(), held.clone());
            thread::spawn(move || {
                let n = i % 3 + 1;
                for _ in 0..ITERS / 2 {
                    let p = if i % 2 == 0 {
                        sem.acquire_many(n)
                    } else {
                        match sem.acquire_many_timeout(n, Duration::from_micros(50)) {
                            Ok(p) => p,
                            Err(e) => {
                                assert_eq!(e, Error::Timeout);
                                continue;
                            }
                        }
                    };
                    assert_eq!(p.count(), n);
                    assert!(held.fetch_add(n, SeqCst) + n <= 4, "more than 4 permits held");
                    held.fetch_sub(n, SeqCst);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(sem.available_permits(), 4);
}

#[test]
fn empty_semaphore_would_block_and_times_out() {
    let sem = Semaphore::new(0);
    assert_eq!(sem.try_acquire().unwrap_err(), Error::WouldBlock);
    assert_eq!(sem.acquire_timeout(Duration::from_millis(20)).unwrap_err(), Error::Timeout);
    assert_eq!(sem.acquire_timeout(Duration::ZERO).unwrap_err(), Error::Timeout);
    sem.release(1);
    assert_eq!(sem.try_acquire_many(2).unwrap_err(), Error::WouldBlock);
    assert_eq!(sem.acquire_many_timeout(2, Duration::ZERO).unwrap_err(), Error::Timeout);
    assert_eq!(sem.available_permits(), 1, "failed attempts took nothing");
    let io: std::io::Error = Error::Timeout.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    let io: std::io::Error = Error::WouldBlock.into();
    assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
}

#[test]
fn a_release_wakes_a_parked_acquirer() {
    let sem = Arc::new(Semaphore::new(0));
    let (ready_tx, ready_rx) = mpsc::channel();
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let (sem, ready_tx) = (sem.clone(), ready_tx.clone());
            thread::spawn(move || {
                ready_tx.send(()).unwrap();
                if i == 0 {
                    sem.acquire().forget()
                } else {
                    sem.acquire_timeout(LONG).unwrap().forget()
                }
            })
        })
        .collect();
    ready_rx.recv().unwrap();
    ready_rx.recv().unwrap();
    thread::sleep(Duration::from_millis(10)); // let them park (not required for correctness)
    sem.release(2);
    let got: u32 = waiters.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(got, 2);
    assert_eq!(sem.available_permits(), 0);
}

#[test]
fn acquire_many_waits_for_all_of_them() {
    let sem = Arc::new(Semaphore::new(1));
    let waiter = {
        let sem = sem.clone();
        thread::spawn(move || sem.acquire_many(3).forget())
    };
    sem.release(1);
    sem.release(1);
    assert_eq!(waiter.join().unwrap(), 3);
    assert_eq!(sem.available_permits(), 0);
}

#[test]
fn permits_go_back_on_drop_unless_forgotten() {
    let sem = Semaphore::new(5);
    {
        let p = sem.acquire_many(3);
        assert_eq!(sem.available_permits(), 2);
        assert_eq!(format!("{p:?}"), "Permit { count: 3 }");
    }
    assert_eq!(sem.available_permits(), 5);
    assert_eq!(sem.acquire_many(2).forget(), 2);
    assert_eq!(sem.available_permits(), 3);
    let none = sem.acquire_many(0);
    assert_eq!(none.count(), 0);
    drop(none);
    assert_eq!(sem.available_permits(), 3);
    assert_eq!(format!("{sem:?}"), "Semaphore { available: 3 }");
}

#[test]
#[should_panic(expected = "at most")]
fn too_many_initial_permits_panics() {
    let _ = Semaphore::new(Semaphore::<interproc_sync::DefaultPark>::MAX_PERMITS + 1);
}

#[test]
fn release_past_the_maximum_panics_and_changes_nothing() {
    let sem = Semaphore::new(Semaphore::<interproc_sync::DefaultPark>::MAX_PERMITS - 1);
    let r = std::panic::catch_unwind(|| sem.release(2));
    assert!(r.is_err());
    assert_eq!(sem.available_permits(), (1 << 31) - 2);
}

/// The waiter frees the semaphore as soon as it gets its permit, while the releaser may
/// still be inside `release`: `release` must not touch the semaphore after the store that
/// lets the waiter through (the futex wake only uses the address). Under Miri
/// (`cargo +nightly miri test -p interproc-sync`) a later access is a use after free.
#[test]
fn the_acquirer_may_free_the_semaphore_right_after_release() {
    struct SendPtr(*mut Semaphore);
    // SAFETY: the pointer is only a handle; the protocol below decides who touches what.
    unsafe impl Send for SendPtr {}

    for _ in 0..if cfg!(miri) { 20 } else { 200 } {
        let ptr = Box::into_raw(Box::new(Semaphore::new(0)));
        let handle = SendPtr(ptr);
        let waiter = thread::spawn(move || {
            let handle = handle;
            // SAFETY: `handle.0` came from `Box::into_raw` above and is freed only here.
            unsafe { &*handle.0 }.acquire().forget();
            // SAFETY: the releaser's last access to the semaphore was the store that let
            // `acquire` return; nothing else refers to it. This is the point of the test.
            drop(unsafe { Box::from_raw(handle.0) });
        });
        // SAFETY: the semaphore lives until the waiter has acquired, which needs this
        // release; after its store, `release` must not touch it (what the test checks).
        unsafe { &*ptr }.release(1);
        waiter.join().unwrap();
    }
}
