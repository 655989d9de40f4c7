//! loom models of the process-shared, robust primitives (`process::{Mutex, Monitor,
//! Semaphore}`): the production algorithms over the modelled futex, with the death of a
//! process injected at every step of their protocols.
//!
//! A model thread stands for a process. `die_at(k)` makes it "die" at its k-th death point
//! (the points between the steps of lock, unlock and the semaphore's ledger changes): it is
//! marked dead and unwinds straight out of the primitive, leaving the shared words exactly
//! as a SIGKILL would. The model then does what the kernel does for a real death: waiters
//! see it at their next liveness poll (the modelled poll is a timed wait, which loom lets
//! time out at any point), and what the dead thread wrote happens-before the poll that
//! finds it dead (as exit and `/proc` do).
//!
//! Each death model loops over k, from a death before the first step to no death at all.
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_process`
#![cfg(interproc_loom)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use interproc_sync::park::model::{die_at, died, mark_dead};
use interproc_sync::process::{LockError, Monitor, MonitorGuard, Mutex, Semaphore};
use interproc_sync::{Condition, Error};
use loom::sync::atomic::{AtomicU32, Ordering::Relaxed};
use loom::sync::Arc;
use loom::thread;

/// More than the death points on any path of one lock + unlock or acquire + release, so
/// the last values of k mean "no death".
const STEPS: usize = 7;

/// Runs `f` as a process that may die at its k-th death point; returns whether it died.
fn may_die(k: usize, f: impl FnOnce()) -> bool {
    die_at(k);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => {
            die_at(usize::MAX); // disarm
            false
        }
        Err(e) if died(&*e) => true,
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// Locks, repairing after a dead owner: returns the guard and whether the owner had died.
fn lock_repair<T>(m: &Mutex<T>) -> (interproc_sync::process::MutexGuard<'_, T>, bool) {
    match m.lock() {
        Ok(g) => (g, false),
        Err(LockError::OwnerDied(mut g)) => {
            g.make_consistent();
            (g, true)
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}

/// An `enter` or a wait on a monitor, repaired after a dead owner: returns the guard and
/// whether the owner had died (after `make_consistent`).
fn repaired<'a, T, const C: usize>(
    r: Result<MonitorGuard<'a, T, C>, LockError<MonitorGuard<'a, T, C>>>,
) -> (MonitorGuard<'a, T, C>, bool) {
    match r {
        Ok(g) => (g, false),
        Err(LockError::OwnerDied(mut g)) => {
            g.make_consistent();
            (g, true)
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[macro_use]
mod mutex_models;

// `mutual_exclusion` and `no_lost_wakeup_three_lockers`, as for the thread mutex.
mutex_models!(Mutex);

/// The owner dies at every step of lock and unlock while another thread wants the lock:
/// the other always gets it (with `OwnerDied` at most once, and only if the victim died),
/// and after `make_consistent` the lock is normal.
#[test]
fn owner_death_at_every_step_of_lock_and_unlock() {
    for k in 1..=STEPS {
        loom::model(move || {
            let m = Arc::new(Mutex::new(0u32));
            let victim = {
                let m = m.clone();
                thread::spawn(move || may_die(k, || *m.lock().unwrap() += 1))
            };
            let (mut g, owner_died) = lock_repair(&m);
            *g += 10;
            drop(g);
            let victim_died = victim.join().unwrap();
            // The victim may also have locked (and died) after this thread's turn.
            let (g, died_later) = lock_repair(&m);
            assert!(!(owner_died && died_later), "two OwnerDied for one death");
            assert!(!(owner_died || died_later) || victim_died, "OwnerDied although nobody died");
            assert!(*g == 10 || *g == 11, "k={k}: {}", *g);
            drop(g);
            assert!(m.lock().is_ok(), "normal after make_consistent");
        });
    }
}

/// The owner dies inside its critical section with two threads waiting: exactly one of
/// them gets `OwnerDied`, and the other is still woken afterwards (the take-over keeps the
/// waiters bit).
#[test]
fn death_inside_wakes_both_waiters_one_sees_owner_died() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let held = m.lock().unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    let (mut g, died) = lock_repair(&m);
                    *g += 1;
                    died
                })
            })
            .collect();
        // This thread "is killed" while inside: its guard never unlocks.
        std::mem::forget(held);
        mark_dead();
        let saw: Vec<bool> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(saw.iter().filter(|d| **d).count(), 1, "exactly one OwnerDied: {saw:?}");
    });
}

/// Dropping an `OwnerDied` guard without `make_consistent` makes the lock not recoverable,
/// for a thread already waiting and for every later locker.
#[test]
fn unrepaired_lock_becomes_not_recoverable() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let dead = {
            let m = m.clone();
            thread::spawn(move || {
                std::mem::forget(m.lock().unwrap());
                mark_dead();
            })
        };
        dead.join().unwrap();
        let waiter = {
            let m = m.clone();
            thread::spawn(move || match m.lock() {
                Err(LockError::OwnerDied(g)) => drop(g), // no repair
                Err(LockError::NotRecoverable) => {}
                other => panic!("expected OwnerDied or NotRecoverable, got {other:?}"),
            })
        };
        let mine = match m.lock() {
            Err(LockError::OwnerDied(g)) => {
                drop(g);
                true
            }
            Err(LockError::NotRecoverable) => false,
            other => panic!("expected OwnerDied or NotRecoverable, got {other:?}"),
        };
        waiter.join().unwrap();
        let _ = mine;
        assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(m.try_lock(), Err(LockError::NotRecoverable)));
    });
}

/// A timed lock either gets the lock or times out, and never strands a parked locker.
#[test]
fn lock_timeout_excludes_or_times_out_cleanly() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let t = {
            let m = m.clone();
            thread::spawn(move || match m.lock_timeout(Duration::from_millis(1)) {
                Ok(mut g) => *g += 1,
                Err(LockError::Timeout) => {}
                Err(e) => panic!("{e:?}"),
            })
        };
        *m.lock().unwrap() += 1;
        t.join().unwrap();
        assert!(*m.lock().unwrap() >= 1);
    });
}

/// A holder of the only permit dies at every step of acquire and release while another
/// thread waits: the permit always comes back, exactly once.
#[test]
fn semaphore_permits_of_a_dead_holder_come_back() {
    for k in 1..=STEPS * 2 {
        loom::model(move || {
            let sem = Arc::new(Semaphore::new(1));
            let victim = {
                let sem = sem.clone();
                thread::spawn(move || may_die(k, || drop(sem.acquire().unwrap())))
            };
            let p = sem.acquire().unwrap();
            assert_eq!(sem.available_permits(), 0);
            drop(p);
            victim.join().unwrap();
            // A dead holder's permit comes back when someone needs it.
            let p = sem.try_acquire().unwrap_or_else(|e| {
                panic!(
                    "k={k}: permit lost: {e} {sem:?} held {:?}",
                    (0..4).map(|i| sem.held_by(i)).collect::<Vec<_>>()
                )
            });
            assert_eq!(sem.available_permits(), 0);
            drop(p);
            assert_eq!(sem.available_permits(), 1, "k={k}: permits not conserved");
        });
    }
}

/// Permits are conserved across timed-out acquires, and `forget` consumes.
#[test]
fn semaphore_permits_conserved_across_timeouts_and_forget() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let t = {
            let sem = sem.clone();
            thread::spawn(move || match sem.acquire_timeout(Duration::from_millis(1)) {
                Ok(p) => drop(p),
                Err(Error::Timeout) => {}
                Err(e) => panic!("{e:?}"),
            })
        };
        let p = sem.acquire().unwrap();
        drop(p);
        t.join().unwrap();
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(sem.acquire().unwrap().forget(), 1);
        assert_eq!(sem.available_permits(), 0);
        sem.release(1);
        assert_eq!(sem.available_permits(), 1);
    });
}

const READY: Condition = Condition::new(0);

/// notify vs wait across "processes": the waiter is never stranded.
#[test]
fn monitor_no_lost_notify() {
    loom::model(|| {
        let mon = Arc::new(Monitor::<u32, 1>::new(0));
        let waiter = {
            let mon = mon.clone();
            thread::spawn(move || {
                let g = mon.enter().unwrap().wait_while(READY, |v| *v == 0).unwrap();
                assert_eq!(*g, 1);
            })
        };
        let mut g = mon.enter().unwrap();
        *g = 1;
        g.notify_one(READY);
        drop(g);
        waiter.join().unwrap();
    });
}

/// The thread inside the monitor dies at every step of enter and leave while a waiter
/// waits for its state change: the waiter either sees the change or enters with
/// `OwnerDied`, repairs, and goes on; it never hangs.
#[test]
fn monitor_owner_death_at_every_step() {
    for k in 1..=STEPS {
        loom::model(move || {
            let mon = Arc::new(Monitor::<u32, 1>::new(0));
            let victim = {
                let mon = mon.clone();
                thread::spawn(move || {
                    may_die(k, || {
                        let mut g = mon.enter().unwrap();
                        *g = 1;
                        g.notify_all(READY);
                    })
                })
            };
            let (mut g, died) = repaired(mon.enter());
            if died {
                *g = 1; // the repair: finish the dead thread's update
            }
            let (mut g, died) = repaired(g.wait_while(READY, |v| *v == 0));
            if died {
                *g = 1;
            }
            assert_eq!(*g, 1);
            drop(g);
            victim.join().unwrap();
        });
    }
}

/// With one permit and two contenders, at most one holds it at a time, and a release that
/// must wake a parked waiter does (nobody dies, so a lost wake-up is a deadlock). (Three
/// contenders take minutes under loom: the internal lock multiplies the interleavings.)
#[test]
fn semaphore_one_permit_excludes_and_wakes() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let inside = Arc::new(AtomicU32::new(0));
        let run = |sem: &Semaphore, inside: &AtomicU32| {
            let _p = sem.acquire().unwrap();
            assert_eq!(inside.fetch_add(1, Relaxed), 0, "two holders of one permit");
            inside.fetch_sub(1, Relaxed);
        };
        let worker = {
            let (sem, inside) = (sem.clone(), inside.clone());
            thread::spawn(move || run(&sem, &inside))
        };
        run(&sem, &inside);
        worker.join().unwrap();
        assert_eq!(sem.available_permits(), 1);
    });
}

/// `acquire_many(2)` and `acquire()` on two permits both finish, whatever the order.
#[test]
fn semaphore_acquire_many_and_acquire_both_finish() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(2));
        let t = {
            let sem = sem.clone();
            thread::spawn(move || drop(sem.acquire_many(2).unwrap()))
        };
        drop(sem.acquire().unwrap());
        t.join().unwrap();
        assert_eq!(sem.available_permits(), 2);
    });
}

/// A process killed while it holds a permit (its `Permit` never dropped) gives it back to
/// a waiter; `try_acquire` takes back a dead holder's permit too.
#[test]
fn semaphore_holder_killed_while_holding() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let victim = {
            let sem = sem.clone();
            thread::spawn(move || {
                std::mem::forget(sem.acquire().unwrap());
                mark_dead();
            })
        };
        let p = sem.acquire().expect("the dead holder's permit comes back");
        drop(p);
        victim.join().unwrap();
        // The victim may have taken the permit after this thread's turn: it comes back.
        let p = sem.try_acquire().expect("a dead holder's permit comes back");
        assert_eq!(sem.held_by(1) + sem.held_by(2), 1, "only the live holder's row is left");
        assert_eq!(p.forget(), 1);
        assert_eq!(sem.held_by(1) + sem.held_by(2), 0);
        assert_eq!(sem.available_permits(), 0);
    });
}

#[test]
fn monitor_mutual_exclusion() {
    loom::model(|| {
        let mon = Arc::new(Monitor::<u32, 1>::new(0));
        let t = {
            let mon = mon.clone();
            thread::spawn(move || *mon.enter().unwrap() += 1)
        };
        *mon.enter().unwrap() += 1;
        t.join().unwrap();
        assert_eq!(*mon.enter().unwrap(), 2);
    });
}

const TAKEN: Condition = Condition::new(1);

/// One token and one `notify_one` let exactly one of two waiters through; the second token
/// lets the other through. Nobody consumes twice, nobody stays asleep. Three threads on
/// the robust lock: explored with one preemption, which keeps it to seconds.
#[test]
fn monitor_notify_one_lets_exactly_one_through() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(model.preemption_bound.unwrap_or(1).min(1));
    model.check(|| {
        // (tokens, consumed)
        let m = Arc::new(Monitor::<(u32, u32), 2>::new((0, 0)));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    let mut g = m.enter().unwrap().wait_while(READY, |(t, _)| *t == 0).unwrap();
                    g.0 -= 1;
                    g.1 += 1;
                    g.notify_one(TAKEN);
                })
            })
            .collect();
        let mut g = m.enter().unwrap();
        g.0 += 1;
        g.notify_one(READY);
        let mut g = g.wait_while(TAKEN, |(_, consumed)| *consumed == 0).unwrap();
        assert_eq!(*g, (0, 1), "one token let exactly one waiter through");
        g.0 += 1;
        g.notify_one(READY);
        drop(g);
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(*m.enter().unwrap(), (0, 2));
    });
}

/// A timed wait either sees the notify or times out, and never loses a notify meant for
/// it: with the state set, it returns with the state seen.
#[test]
fn monitor_wait_timeout_never_loses_a_notify() {
    loom::model(|| {
        let m = Arc::new(Monitor::<bool, 1>::new(false));
        let t = {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.enter().unwrap();
                while !*g {
                    let (next, timed_out) =
                        g.wait_timeout(READY, Duration::from_millis(1)).unwrap();
                    g = next;
                    if timed_out {
                        break;
                    }
                }
            })
        };
        let mut g = m.enter().unwrap();
        *g = true;
        g.notify_one(READY);
        drop(g);
        t.join().unwrap();
    });
}

/// Spawns a thread that enters `m` and waits on `READY` until the value is not 0,
/// repairing after a dead owner at either step. With `only_death`, nobody sets the value,
/// so the wait may end only with `OwnerDied`.
fn spawn_condition_waiter(m: &Arc<Monitor<u32, 1>>, only_death: bool) -> thread::JoinHandle<()> {
    let m = m.clone();
    thread::spawn(move || {
        let (g, died) = repaired(m.enter());
        if !died {
            let (g, died) = repaired(g.wait_while(READY, |v| *v == 0));
            assert!(died || !only_death, "nobody sets the state, yet the wait ended with {}", *g);
        }
    })
}

/// A thread dies inside the monitor while another waits on a condition it would have
/// notified: the waiter wakes at its liveness poll and re-enters with `OwnerDied`.
#[test]
fn monitor_condition_waiter_sees_death_inside() {
    loom::model(|| {
        let m = Arc::new(Monitor::<u32, 1>::new(0));
        let waiter = spawn_condition_waiter(&m, true);
        let g = m.enter().unwrap();
        std::mem::forget(g);
        mark_dead();
        waiter.join().unwrap();
    });
}

/// (From the review.) The thread inside sets the state and dies before notifying; the next
/// thread takes over, finds nothing to repair, makes it consistent and leaves. The
/// condition waiter must still get through: entering after a death wakes every condition.
#[test]
fn monitor_repair_without_notify_wakes_condition_waiter() {
    loom::model(|| {
        let m = Arc::new(Monitor::<u32, 1>::new(0));
        let waiter = spawn_condition_waiter(&m, false);
        let victim = {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.enter().unwrap();
                *g = 1;
                std::mem::forget(g);
                mark_dead();
            })
        };
        victim.join().unwrap();
        drop(repaired(m.enter()));
        waiter.join().unwrap();
    });
}

/// A chain of deaths: the owner dies inside, and the thread that takes over from it dies
/// at every step of its take-over, repair and release; the last thread always gets the lock
/// (repairing after whichever deaths it finds), and the lock is normal afterwards.
#[test]
fn the_taker_dies_at_every_step_of_its_take_over() {
    for k in 1..=STEPS {
        loom::model(move || {
            let m = Arc::new(Mutex::new(0u32));
            std::mem::forget(m.lock().unwrap());
            mark_dead(); // the main thread "dies" inside; the others take over
            let taker = {
                let m = m.clone();
                thread::spawn(move || {
                    may_die(k, || {
                        let (mut g, _) = lock_repair(&m);
                        *g += 1;
                    })
                })
            };
            let last = {
                let m = m.clone();
                thread::spawn(move || {
                    let (mut g, _) = lock_repair(&m);
                    *g += 10;
                })
            };
            taker.join().unwrap();
            last.join().unwrap();
            // The taker may also have locked (and died) after the last thread's turn.
            let (g, _) = lock_repair(&m);
            assert!(*g == 10 || *g == 11, "k={k}: {}", *g);
            drop(g);
            assert!(m.lock().is_ok(), "k={k}: not normal after the repairs");
        });
    }
}
