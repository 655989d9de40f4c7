//! loom models of `Semaphore`: the production algorithm over the modelled futex
//! (`ModelPark`, which wakes spuriously and times out at any point).
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_semaphore`
#![cfg(interproc_loom)]

use std::time::Duration;

use interproc_sync::{Error, Semaphore};
use loom::sync::atomic::{AtomicU32, Ordering::Relaxed};
use loom::sync::Arc;
use loom::thread;

/// With one permit and three contenders, at most one holds it at a time, and every release
/// that must wake a parked thread does (a lost wake-up shows as a loom deadlock).
#[test]
fn one_permit_excludes_and_wakes() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let inside = Arc::new(AtomicU32::new(0));
        let run = |sem: &Semaphore, inside: &AtomicU32| {
            let _p = sem.acquire();
            // Relaxed: the check must not add the ordering the semaphore provides.
            assert_eq!(inside.fetch_add(1, Relaxed), 0, "two holders of one permit");
            inside.fetch_sub(1, Relaxed);
        };
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (sem, inside) = (sem.clone(), inside.clone());
                thread::spawn(move || run(&sem, &inside))
            })
            .collect();
        run(&sem, &inside);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(sem.available_permits(), 1);
    });
}

/// `acquire_many(2)` and `acquire()` wait together for permits released one by one: both
/// finish (a release wakes every waiter, so the one that cannot proceed yet does not
/// swallow the wake-up of the one that can), and all permits come back.
#[test]
fn acquire_many_and_acquire_both_finish() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let many = {
            let sem = sem.clone();
            thread::spawn(move || drop(sem.acquire_many(2)))
        };
        let one = {
            let sem = sem.clone();
            thread::spawn(move || drop(sem.acquire()))
        };
        sem.release(1);
        sem.release(1);
        many.join().unwrap();
        one.join().unwrap();
        assert_eq!(sem.available_permits(), 2);
    });
}

/// A timed acquire racing with a release either holds the permit or times out holding
/// nothing: the permit count is conserved either way.
#[test]
fn permits_conserved_across_timeouts() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let t = {
            let sem = sem.clone();
            thread::spawn(move || match sem.acquire_timeout(Duration::from_millis(10)) {
                Ok(p) => p.forget(),
                Err(Error::Timeout) => 0,
                Err(e) => panic!("unexpected {e:?}"),
            })
        };
        sem.release(1);
        let held = t.join().unwrap();
        assert_eq!(sem.available_permits() + held, 1);
    });
}

/// A waiter that times out does not take the wake-up a blocking waiter needs: with one
/// timed and one untimed acquirer and a single release, both always finish.
#[test]
fn timed_out_acquire_does_not_strand_another() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let timed = {
            let sem = sem.clone();
            thread::spawn(move || drop(sem.acquire_timeout(Duration::from_millis(10))))
        };
        let blocking = {
            let sem = sem.clone();
            thread::spawn(move || drop(sem.acquire()))
        };
        sem.release(1);
        timed.join().unwrap();
        blocking.join().unwrap();
        assert_eq!(sem.available_permits(), 1);
    });
}

/// A cancelled `acquire_many_timeout(2)` never keeps a part of what it needed: with one
/// permit free and one more released concurrently, it gets both or none.
#[test]
fn cancelled_acquire_many_takes_nothing() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let t = {
            let sem = sem.clone();
            thread::spawn(move || match sem.acquire_many_timeout(2, Duration::from_millis(10)) {
                Ok(p) => p.forget(),
                Err(Error::Timeout) => 0,
                Err(e) => panic!("unexpected {e:?}"),
            })
        };
        sem.release(1);
        let held = t.join().unwrap();
        assert!(held == 0 || held == 2);
        assert_eq!(sem.available_permits() + held, 2);
    });
}

/// `try_acquire` racing with a release never blocks and never duplicates or loses a permit.
#[test]
fn try_acquire_conserves_permits() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let t = {
            let sem = sem.clone();
            thread::spawn(move || sem.try_acquire().map_or(0, |p| p.forget()))
        };
        sem.release(1);
        let held = t.join().unwrap();
        assert_eq!(sem.available_permits() + held, 1);
    });
}
