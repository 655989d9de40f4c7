//! loom models of `Mutex`: the production algorithm, run over the modelled futex
//! (`ModelPark`, which wakes spuriously and times out at any point).
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_mutex`
#![cfg(interproc_loom)]

use std::time::Duration;

use interproc_sync::{LockError, Mutex};
use loom::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use loom::sync::Arc;
use loom::thread;

/// Two lockers never overlap, and each sees the other's write (the data is a plain `u32`
/// in loom's `UnsafeCell`, which also reports any unordered access as a data race). The
/// `inside` counter is Relaxed on purpose: it must not add the ordering the lock provides.
#[test]
fn mutual_exclusion() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let inside = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                thread::spawn(move || {
                    let mut g = m.lock().unwrap();
                    assert_eq!(inside.fetch_add(1, Relaxed), 0, "two threads inside");
                    let v = *g;
                    *g = v + 1;
                    inside.fetch_sub(1, Relaxed);
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 2);
    });
}

/// Three lockers, so that at least one parks with the word at 2: every unlock that must wake
/// someone does, or loom reports the parked thread as a deadlock.
#[test]
fn no_lost_wakeup_three_lockers() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || *m.lock().unwrap() += 1)
            })
            .collect();
        *m.lock().unwrap() += 1;
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 3);
    });
}

/// `try_lock` never blocks, and when it succeeds it excludes the other holder.
#[test]
fn try_lock_excludes_and_never_blocks() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let t = {
            let m = m.clone();
            thread::spawn(move || *m.lock().unwrap() += 1)
        };
        match m.try_lock() {
            Ok(mut g) => {
                let v = *g;
                assert!(v <= 1);
                *g = v + 10;
            }
            Err(LockError::WouldBlock) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        t.join().unwrap();
        let v = *m.lock().unwrap();
        assert!(v == 1 || v == 11, "lost an update: {v}");
    });
}

/// A `lock_timeout` either gets the lock (and excludes the holder) or returns `Timeout`
/// having changed nothing; the lock stays usable afterwards either way.
#[test]
fn lock_timeout_excludes_or_times_out_cleanly() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let g = m.lock().unwrap();
        let t = {
            let m = m.clone();
            thread::spawn(move || match m.lock_timeout(Duration::from_millis(10)) {
                Ok(mut g) => {
                    *g += 1;
                    true
                }
                Err(LockError::Timeout) => false,
                Err(e) => panic!("unexpected {e:?}"),
            })
        };
        drop(g);
        let got = t.join().unwrap();
        assert_eq!(*m.lock().unwrap(), u32::from(got));
        assert!(m.try_lock().is_ok(), "the lock is left free");
    });
}

/// A waiter that times out must not take the wake-up meant for a blocking waiter: with
/// one timed and one untimed locker queued behind the holder, both always finish.
#[test]
fn timed_out_waiter_does_not_strand_another() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let g = m.lock().unwrap();
        let timed = {
            let m = m.clone();
            thread::spawn(move || {
                if let Ok(mut g) = m.lock_timeout(Duration::from_millis(10)) {
                    *g += 1;
                }
            })
        };
        let blocking = {
            let m = m.clone();
            thread::spawn(move || *m.lock().unwrap() += 100)
        };
        drop(g);
        timed.join().unwrap();
        blocking.join().unwrap();
        assert!(*m.lock().unwrap() >= 100);
    });
}
