//! loom models of `Monitor`: the production algorithm over the modelled futex
//! (`ModelPark`, which wakes spuriously and times out at any point).
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_monitor`
#![cfg(interproc_loom)]

use std::collections::VecDeque;
use std::time::Duration;

use interproc_sync::{Condition, Monitor};
use loom::sync::atomic::{AtomicU32, Ordering::Relaxed};
use loom::sync::Arc;
use loom::thread;

const C0: Condition = Condition::new(0);
const C1: Condition = Condition::new(1);

/// Two threads are never inside at once, and each sees the other's write.
#[test]
fn mutual_exclusion() {
    loom::model(|| {
        let m = Arc::new(Monitor::new(0u32, 1));
        let inside = Arc::new(AtomicU32::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                thread::spawn(move || {
                    let mut g = m.enter();
                    // Relaxed: the check must not add the ordering the monitor provides.
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
        assert_eq!(*m.enter(), 2);
    });
}

/// A state change plus `notify_one` is never lost, whichever of waiter and notifier goes
/// first (a waiter left asleep shows as a loom deadlock).
#[test]
fn no_lost_wakeup() {
    loom::model(|| {
        let m = Arc::new(Monitor::new(false, 1));
        let waiter = {
            let m = m.clone();
            thread::spawn(move || m.enter().wait_while(C0, |ready| !*ready))
        };
        *m.enter() = true;
        m.notify_one(C0);
        waiter.join().unwrap();
    });
}

/// One token and one `notify_one` let exactly one of two waiters through; the second token
/// and `notify_one` let the other through. Nobody consumes twice, nobody stays asleep.
#[test]
fn notify_one_lets_exactly_one_through() {
    loom::model(|| {
        // (tokens, consumed)
        let m = Arc::new(Monitor::new((0u32, 0u32), 2));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    let mut g = m.enter();
                    g.wait_while(C0, |(tokens, _)| *tokens == 0);
                    g.0 -= 1;
                    g.1 += 1;
                    g.notify_one(C1);
                })
            })
            .collect();
        {
            let mut g = m.enter();
            g.0 += 1;
            g.notify_one(C0);
            g.wait_while(C1, |(_, consumed)| *consumed == 0);
            assert_eq!(*g, (0, 1), "one token let exactly one waiter through");
            g.0 += 1;
            g.notify_one(C0);
        }
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(*m.enter(), (0, 2));
    });
}

/// `notify_all` wakes every waiter.
#[test]
fn notify_all_wakes_all() {
    loom::model(|| {
        let m = Arc::new(Monitor::new(false, 1));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || m.enter().wait_while(C0, |go| !*go))
            })
            .collect();
        *m.enter() = true;
        m.notify_all(C0);
        for w in waiters {
            w.join().unwrap();
        }
    });
}

/// A timed waiter never swallows a `notify_one` meant for someone: a timed waiter that
/// gets the token passes it on; one that times out leaves the notify to the untimed waiter.
/// Both always finish.
#[test]
fn wait_timeout_never_loses_a_notify() {
    loom::model(|| {
        let m = Arc::new(Monitor::new(0u32, 1));
        let timed = {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.enter();
                if g.wait_timeout_while(C0, Duration::from_millis(10), |t| *t == 0).is_ok() {
                    // Relay: take the token and give it straight back.
                    *g -= 1;
                    *g += 1;
                    g.notify_one(C0);
                }
            })
        };
        let blocking = {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.enter();
                g.wait_while(C0, |t| *t == 0);
                *g -= 1;
            })
        };
        *m.enter() += 1;
        m.notify_one(C0);
        timed.join().unwrap();
        blocking.join().unwrap();
        assert_eq!(*m.enter(), 0);
    });
}

/// `wait_timeout` racing a notify returns `Ok` or `Timeout`, and either way the waiter is
/// back inside: its write after the wait never races the notifier's write (loom's
/// `UnsafeCell` reports any unordered access).
#[test]
fn wait_timeout_returns_inside_the_monitor() {
    loom::model(|| {
        let m = Arc::new(Monitor::new(0u32, 1));
        let waiter = {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.enter();
                let r = g.wait_timeout(C0, Duration::from_millis(10));
                let v = *g;
                *g = v + 10;
                r.is_ok()
            })
        };
        {
            let mut g = m.enter();
            let v = *g;
            *g = v + 1;
        }
        m.notify_one(C0);
        waiter.join().unwrap();
        assert_eq!(*m.enter(), 11);
    });
}

/// The reference bounded buffer (capacity 1, two conditions): two items pass from a
/// producer to a consumer in order, through full and empty waits.
#[test]
fn bounded_buffer_delivers_in_order() {
    loom::model(|| {
        let m = Arc::new(Monitor::new(VecDeque::<u32>::new(), 2));
        let (not_empty, not_full) = (C0, C1);
        let producer = {
            let m = m.clone();
            thread::spawn(move || {
                for i in 1..=2 {
                    let mut q = m.enter();
                    q.wait_while(not_full, |q| q.len() == 1);
                    q.push_back(i);
                    q.notify_one(not_empty);
                }
            })
        };
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut q = m.enter();
            q.wait_while(not_empty, |q| q.is_empty());
            got.push(q.pop_front().unwrap());
            q.notify_one(not_full);
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2]);
    });
}
