//! loom models of `Mutex`: the production algorithm, run over the modelled futex
//! (`ModelPark`, which wakes spuriously and times out at any point).
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_mutex`
#![cfg(interproc_loom)]

use std::time::Duration;

use interproc_sync::{LockError, Mutex};
use loom::sync::Arc;
use loom::thread;

#[macro_use]
mod mutex_models;

mutex_models!(Mutex);

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

/// One timed and one untimed locker queued behind the holder; `pause` runs in the untimed
/// locker's thread before it locks. Both always finish.
fn timed_and_blocking_lockers(timeout: Duration, pause: impl Fn() + Send + Sync + 'static) {
    let pause = std::sync::Arc::new(pause);
    loom::model(move || {
        let m = Arc::new(Mutex::new(0u32));
        let g = m.lock().unwrap();
        let timed = {
            let m = m.clone();
            thread::spawn(move || {
                if let Ok(mut g) = m.lock_timeout(timeout) {
                    *g += 1;
                }
            })
        };
        let blocking = {
            let (m, pause) = (m.clone(), pause.clone());
            thread::spawn(move || {
                pause();
                *m.lock().unwrap() += 100
            })
        };
        drop(g);
        timed.join().unwrap();
        blocking.join().unwrap();
        assert!(*m.lock().unwrap() >= 100);
    });
}

/// A waiter that times out must not take the wake-up meant for a blocking waiter: with
/// one timed and one untimed locker queued behind the holder, both always finish.
#[test]
fn timed_out_waiter_does_not_strand_another() {
    timed_and_blocking_lockers(Duration::from_millis(10), || {});
}

/// Real time passing during an execution changes nothing in the model: the timed locker's
/// 1 ms deadline passes, by the wall clock, while the other thread sleeps 2 ms (every 16th
/// execution, as a loaded machine might deschedule it). The algorithms read the facade's
/// clock, which stands still in the model; when they read the real one, an execution and
/// its replay took different branches and loom's exploration never ended (a CI run sat in
/// `timed_out_waiter_does_not_strand_another` for over 30 minutes).
#[test]
fn wall_clock_time_does_not_leak_into_the_model() {
    let executions = std::sync::atomic::AtomicU64::new(0);
    timed_and_blocking_lockers(Duration::from_millis(1), move || {
        if executions.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 16 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    });
}
