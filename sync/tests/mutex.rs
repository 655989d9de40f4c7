//! `Mutex` between real threads: contention, timeouts, poisoning.
//!
//! No test asserts how long anything takes: timeouts are checked by their result only.
#![cfg(not(interproc_loom))] // real threads and futexes; the models are in loom_*.rs
#![allow(clippy::disallowed_methods)] // std::thread: these tests run real threads

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use interproc_sync::{LockError, Mutex};

const LONG: Duration = Duration::from_secs(60);
/// Iterations per thread: fewer under Miri, which runs the same tests far slower.
const ITERS: u64 = if cfg!(miri) { 20 } else { 10_000 };

#[test]
fn contended_increments_are_exact() {
    for m in [Mutex::new(0u64), Mutex::new_unpoisoned(0u64)] {
        let m = Arc::new(m);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    for _ in 0..ITERS {
                        let mut g = m.lock().unwrap();
                        // Read and write in two steps, so a broken lock loses updates.
                        let v = *g;
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(*m.lock().unwrap(), 4 * ITERS);
    }
}

#[test]
fn timed_and_blocking_lockers_under_contention_count_exactly() {
    let m = Arc::new(Mutex::new(0u64));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let m = m.clone();
            thread::spawn(move || {
                let mut done = 0u64;
                for _ in 0..ITERS / 2 {
                    if i % 2 == 0 {
                        *m.lock().unwrap() += 1;
                        done += 1;
                    } else if let Ok(mut g) = m.lock_timeout(Duration::from_micros(50)) {
                        *g += 1;
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let done: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(*m.lock().unwrap(), done);
    assert!(done >= ITERS, "the blocking lockers always succeed");
}

/// Runs `f` while another thread holds `m`, then lets it go.
fn while_held_elsewhere<T: Send + 'static>(m: &Arc<Mutex<T>>, f: impl FnOnce()) {
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = {
        let m = m.clone();
        thread::spawn(move || {
            let _g = m.lock().unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
    };
    held_rx.recv().unwrap();
    f();
    release_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn try_lock_would_block_while_held() {
    let m = Arc::new(Mutex::new(1));
    while_held_elsewhere(&m, || assert!(matches!(m.try_lock(), Err(LockError::WouldBlock))));
    assert_eq!(*m.try_lock().unwrap(), 1);
}

#[test]
fn try_lock_in_the_holding_thread_would_block() {
    let m = Mutex::new(());
    let _g = m.lock().unwrap();
    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)), "not reentrant");
}

#[test]
fn lock_timeout_times_out_while_held() {
    let m = Arc::new(Mutex::new(1));
    while_held_elsewhere(&m, || {
        assert!(matches!(m.lock_timeout(Duration::from_millis(20)), Err(LockError::Timeout)));
        assert!(matches!(m.lock_timeout(Duration::ZERO), Err(LockError::Timeout)));
    });
    // The timed-out attempts left the lock usable.
    assert_eq!(*m.lock_timeout(Duration::ZERO).unwrap(), 1);
}

#[test]
fn lock_timeout_gets_a_lock_released_meanwhile() {
    let m = Arc::new(Mutex::new(0));
    let start = Arc::new(Barrier::new(2));
    let g = m.lock().unwrap();
    let waiter = {
        let (m, start) = (m.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            *m.lock_timeout(LONG).unwrap() += 1;
        })
    };
    start.wait();
    thread::sleep(Duration::from_millis(10)); // let it park (not required for correctness)
    drop(g);
    waiter.join().unwrap();
    assert_eq!(*m.lock().unwrap(), 1);
}

#[test]
fn a_panic_while_holding_poisons() {
    let m = Arc::new(Mutex::new(5));
    let r = {
        let m = m.clone();
        thread::spawn(move || {
            let mut g = m.lock().unwrap();
            *g = 6;
            panic!("boom");
        })
        .join()
    };
    assert!(r.is_err());
    assert!(m.is_poisoned());
    let err = m.lock().unwrap_err();
    assert_eq!(**err.get_ref(), 6, "the data is still reachable");
    drop(err);
    assert!(matches!(m.try_lock(), Err(LockError::Poisoned(_))));
    assert!(matches!(m.lock_timeout(LONG), Err(LockError::Poisoned(_))));
    m.clear_poison();
    assert_eq!(*m.lock().unwrap(), 6);
    let io: std::io::Error = LockError::<()>::Timeout.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn an_unpoisoned_mutex_ignores_panics() {
    let m = Arc::new(Mutex::new_unpoisoned(5));
    let r = {
        let m = m.clone();
        thread::spawn(move || {
            let _g = m.lock().unwrap();
            panic!("boom");
        })
        .join()
    };
    assert!(r.is_err());
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock().unwrap(), 5);
}

#[test]
fn locking_during_an_unwind_that_started_outside_does_not_poison() {
    struct LockOnDrop<'a>(&'a Mutex<i32>);
    impl Drop for LockOnDrop<'_> {
        fn drop(&mut self) {
            *self.0.lock().unwrap() += 1;
        }
    }
    let m = Mutex::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _d = LockOnDrop(&m);
        panic!("boom");
    }));
    assert!(r.is_err());
    assert!(!m.is_poisoned(), "the panic began before the lock was taken");
    assert_eq!(m.into_inner().unwrap(), 1);
}

#[test]
fn into_inner_and_get_mut_report_poison() {
    let mut m = Mutex::new(vec![1]);
    m.get_mut().unwrap().push(2);
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let _g = m.lock().unwrap();
        panic!("boom");
    }));
    assert_eq!(*m.get_mut().unwrap_err().into_inner(), [1, 2]);
    assert_eq!(m.into_inner().unwrap_err().into_inner(), [1, 2]);
}

#[test]
fn debug_shows_state_not_data() {
    let m = Mutex::new(7);
    assert_eq!(format!("{m:?}"), "Mutex { locked: false, poisoned: false, .. }");
    let g = m.lock().unwrap();
    assert_eq!(format!("{g:?}"), "7");
    assert_eq!(format!("{m:?}"), "Mutex { locked: true, poisoned: false, .. }");
}
