//! Deadlock detection across processes (feature `deadlock-detection`): wait-for cycles
//! between forked processes on process-shared mutexes, found through the registry in
//! shared memory; an owner that died is "owner died", never a deadlock; dead entries are
//! cleaned.
//!
//! Every child runs under a watchdog: a deadlock that goes undetected hangs, the watchdog
//! kills the children and the test fails. Each test uses its own registry segment
//! (`deadlock::shared::use_registry`, called in the children) and checks that nothing is
//! left of it in `/dev/shm`.
#![cfg(all(feature = "deadlock-detection", not(interproc_loom)))]
#![cfg_attr(miri, allow(unused))]
#![allow(clippy::disallowed_types)] // test bookkeeping in shared memory uses std's atomics
#![allow(clippy::disallowed_methods)] // the tests time their watchdogs by the real clock

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use interproc_sync::deadlock::{self, shared, Policy, ReportKind};
use interproc_sync::process::{LockError, Mutex};
use interproc_sync::shm::{Segment, ShmSafe};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

const WATCHDOG: Duration = Duration::from_secs(60);
const MAX: usize = 3;

/// Shared by the parent and its children.
#[repr(C)]
struct Ring {
    locks: [Mutex<u32>; MAX],
    /// Children that hold their first lock.
    holding: AtomicU32,
    /// Children that got `Err(Deadlock)` with a report naming every pid and lock.
    errors: AtomicU32,
    /// Children that got their second lock.
    oks: AtomicU32,
    /// Children whose result was anything else.
    bad: AtomicU32,
    pids: [AtomicU32; MAX],
    go: AtomicU32,
}

// SAFETY: `#[repr(C)]`; process-shared mutexes and atomics, no pointers.
unsafe impl ShmSafe for Ring {}

fn ring() -> Segment<Ring> {
    let r = Segment::anonymous(Ring {
        locks: [Mutex::new(0), Mutex::new(0), Mutex::new(0)],
        holding: AtomicU32::new(0),
        errors: AtomicU32::new(0),
        oks: AtomicU32::new(0),
        bad: AtomicU32::new(0),
        pids: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
        go: AtomicU32::new(0),
    })
    .unwrap();
    for (i, l) in r.locks.iter().enumerate() {
        l.set_label(&format!("L{i}"));
    }
    r
}

/// The tests run one at a time: a fork while another test thread holds a process-wide
/// lock of the detector (the label map) would leave it locked in the child.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This test's registry name; the guard serialises the tests and removes the segment if
/// a failed test left it.
fn registry(test: &str) -> (String, Cleanup) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("interproc-test-deadlocks-{}-{test}", std::process::id());
    (name.clone(), Cleanup(name, serial))
}

struct Cleanup(String, #[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
        let _ = std::fs::remove_file(format!("/dev/shm/{}", shared::order_table_name(&self.0)));
    }
}

/// Forks a child that uses registry `reg`, runs `f` and exits 0 (101 on a panic).
fn child(reg: &str, f: impl FnOnce()) -> Pid {
    // SAFETY: the child only uses memory it inherited, futexes, `/proc` reads, shm calls
    // and glibc's malloc (safe in a fork child), then `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shared::use_registry(reg);
                deadlock::set_logging(false);
                f();
            }))
            .is_ok();
            // SAFETY: ends the child at once, without the parent's handlers.
            unsafe { libc::_exit(if ok { 0 } else { 101 }) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Waits for all `pids` under the watchdog (killing all of them if one hangs).
fn wait_all(pids: &[Pid]) -> Vec<WaitStatus> {
    let give_up = Instant::now() + WATCHDOG;
    pids.iter()
        .map(|&pid| loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
                WaitStatus::StillAlive if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                WaitStatus::StillAlive => {
                    for &p in pids {
                        let _ = kill(p, Signal::SIGKILL);
                    }
                    panic!("watchdog: child {pid} hung for {WATCHDOG:?}: deadlock not detected");
                }
                s => break s,
            }
        })
        .collect()
}

fn gone(reg: &str) -> bool {
    !Path::new(&format!("/dev/shm/{reg}")).exists()
}

/// `n` processes in a ring: process i holds lock i, then asks for lock i+1 with
/// `lock_checked` under `Policy::Error`. Exactly one gets `Err(Deadlock)`, whose report
/// names every pid and every lock; it drops its lock and the others finish.
fn ring_deadlock(n: usize, test: &str) {
    let (reg, _cleanup) = registry(test);
    let r = ring();
    let kids: Vec<Pid> = (0..n)
        .map(|i| {
            let r = &r;
            child(&reg, move || {
                deadlock::set_policy(Policy::Error);
                r.pids[i].store(std::process::id(), SeqCst);
                let first = r.locks[i].lock().unwrap();
                r.holding.fetch_add(1, SeqCst);
                while r.holding.load(SeqCst) < n as u32 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                match r.locks[(i + 1) % n].lock_checked() {
                    Ok(_second) => {
                        r.oks.fetch_add(1, SeqCst);
                    }
                    Err(LockError::Deadlock(d)) => {
                        let rep = d.report();
                        let mut pids: Vec<u32> = rep.parties.iter().map(|p| p.thread.pid).collect();
                        pids.sort_unstable();
                        let mut want: Vec<u32> = (0..n).map(|k| r.pids[k].load(SeqCst)).collect();
                        want.sort_unstable();
                        let mut locks = rep.locks();
                        locks.sort();
                        let want_locks: Vec<String> = (0..n).map(|k| format!("L{k}")).collect();
                        let named = rep.kind == ReportKind::WaitCycle
                            && pids == want
                            && locks == want_locks
                            && rep.parties.iter().all(|p| p.held_by.len() == 1)
                            && rep.to_json().contains("\"wait_cycle\"");
                        if named {
                            r.errors.fetch_add(1, SeqCst);
                        } else {
                            eprintln!("report does not name the cycle: {rep}");
                            r.bad.fetch_add(1, SeqCst);
                        }
                    }
                    Err(e) => {
                        eprintln!("unexpected: {e}");
                        r.bad.fetch_add(1, SeqCst);
                    }
                }
                drop(first);
            })
        })
        .collect();
    let statuses = wait_all(&kids);
    for (pid, s) in kids.iter().zip(statuses) {
        assert_eq!(s, WaitStatus::Exited(*pid, 0), "child {pid} failed");
    }
    assert_eq!(r.bad.load(SeqCst), 0);
    assert_eq!(r.errors.load(SeqCst), 1, "exactly one process gets Err(Deadlock)");
    assert_eq!(r.oks.load(SeqCst), n as u32 - 1, "the others finish");
    assert!(gone(&reg), "the registry is removed when its last entry goes");
    // The ring's lock order is circular too: the lock-order table has the inversion. The
    // children ended with `_exit` (no atexit hook): reading the graph removes the table.
    let g = shared::read_wait_graph(&reg, Duration::ZERO).unwrap();
    assert_eq!((g.order.edges.len(), g.order.inversions.len()), (n, 1), "{g}");
    assert!(gone(&shared::order_table_name(&reg)), "the table of dead processes is removed");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn abba_across_two_processes_one_gets_the_error() {
    ring_deadlock(2, "abba");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn three_process_cycle_is_found_and_named() {
    ring_deadlock(3, "ring3");
}

/// A process killed while it holds B and waits for A: the next locker of B gets
/// `OwnerDied` (under `Policy::Error`, not `Deadlock`), and the dead entry is cleaned from
/// the registry, which goes away once empty.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn owner_died_is_not_a_deadlock_and_dead_entries_are_cleaned() {
    let (reg, _cleanup) = registry("died");
    let r = ring();
    // Child 1 holds L0 until told to take L1.
    let c1 = child(&reg, || {
        deadlock::set_policy(Policy::Error);
        let _a = r.locks[0].lock().unwrap();
        r.holding.fetch_add(1, SeqCst);
        while r.go.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        match r.locks[1].lock_checked() {
            Err(LockError::OwnerDied(mut g)) => {
                g.make_consistent();
                r.oks.fetch_add(1, SeqCst);
            }
            Err(LockError::Deadlock(d)) => {
                eprintln!("owner died reported as a deadlock: {d}");
                r.bad.fetch_add(1, SeqCst);
            }
            other => {
                eprintln!("unexpected: {:?}", other.map(|_| ()));
                r.bad.fetch_add(1, SeqCst);
            }
        }
    });
    while r.holding.load(SeqCst) < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Child 2 holds L1, then blocks on L0 (registered in the registry).
    let c2 = child(&reg, || {
        let _b = r.locks[1].lock().unwrap();
        let _a = r.locks[0].lock();
    });
    let give_up = Instant::now() + WATCHDOG;
    loop {
        let g = shared::read_wait_graph(&reg, Duration::ZERO).unwrap();
        if g.waits.iter().any(|w| w.thread.pid == c2.as_raw() as u32 && w.lock.label == "L0") {
            break;
        }
        assert!(Instant::now() < give_up, "child 2 never showed up as blocked on L0");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(c2, Signal::SIGKILL).unwrap();
    assert_eq!(wait_all(&[c2])[0], WaitStatus::Signaled(c2, Signal::SIGKILL, false));
    r.go.store(1, SeqCst);
    assert_eq!(wait_all(&[c1])[0], WaitStatus::Exited(c1, 0));
    assert_eq!(r.bad.load(SeqCst), 0);
    assert_eq!(r.oks.load(SeqCst), 1, "child 1 got OwnerDied");
    // Child 2's entry outlived it; reading the registry frees it and removes the segment.
    let g = shared::read_wait_graph(&reg, Duration::ZERO).unwrap();
    assert!(g.waits.is_empty(), "dead entries are cleaned: {g}");
    assert!(g.cycles.is_empty());
    assert!(gone(&reg), "the emptied registry is removed");
    assert!(gone(&shared::order_table_name(&reg)), "the table of dead processes is removed");
}

/// A process blocked on a lock whose owner was killed shows in the graph as waiting for
/// an owner that died, not in a cycle.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn the_graph_shows_owner_died() {
    let (reg, _cleanup) = registry("graph");
    let r = ring();
    // The owner: takes L0 and stays until killed.
    let owner = child(&reg, || {
        let _a = r.locks[0].lock().unwrap();
        r.holding.fetch_add(1, SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    while r.holding.load(SeqCst) < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The waiter: blocks on L0 until the owner dies, then holds it until told to go.
    let waiter = child(&reg, || {
        let mut g = r.locks[0].lock().err().and_then(LockError::into_owner_died).unwrap();
        g.make_consistent();
        while r.go.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let give_up = Instant::now() + WATCHDOG;
    while !shared::read_wait_graph(&reg, Duration::ZERO)
        .unwrap()
        .waits
        .iter()
        .any(|w| w.thread.pid == waiter.as_raw() as u32)
    {
        assert!(Instant::now() < give_up, "the waiter never showed up");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Stop the waiter so that it cannot take the lock over before we look.
    kill(waiter, Signal::SIGSTOP).unwrap();
    kill(owner, Signal::SIGKILL).unwrap();
    assert_eq!(wait_all(&[owner])[0], WaitStatus::Signaled(owner, Signal::SIGKILL, false));
    let g = shared::read_wait_graph(&reg, Duration::from_millis(300)).unwrap();
    kill(waiter, Signal::SIGCONT).unwrap();
    let w = g.waits.iter().find(|w| w.thread.pid == waiter.as_raw() as u32).expect("the waiter");
    assert_eq!(w.owner, shared::OwnerState::Died, "{g}");
    assert!(g.cycles.is_empty(), "{g}");
    assert!(g.to_string().contains("owner died"), "{g}");
    r.go.store(1, SeqCst);
    assert_eq!(wait_all(&[waiter])[0], WaitStatus::Exited(waiter, 0));
    assert!(gone(&reg), "the registry is removed when its last entry goes");
}

/// A waiter killed while blocked leaves its entry behind; the last live waiter to leave
/// frees it and removes the registry, with no reader coming afterwards (a test suite that
/// kills blocked children must not leave the registry in `/dev/shm`).
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn the_last_live_waiter_removes_dead_entries_and_the_registry() {
    let (reg, _cleanup) = registry("leave");
    let r = ring();
    // The owner: holds L0 until told to go.
    let owner = child(&reg, || {
        let _a = r.locks[0].lock().unwrap();
        r.holding.fetch_add(1, SeqCst);
        while r.go.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    while r.holding.load(SeqCst) < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Two waiters on L0: one to be killed, one to outlive it.
    let doomed = child(&reg, || {
        let _a = r.locks[0].lock();
    });
    let survivor = child(&reg, || {
        if r.locks[0].lock().is_ok() {
            r.oks.fetch_add(1, SeqCst);
        } else {
            r.bad.fetch_add(1, SeqCst);
        }
    });
    let give_up = Instant::now() + WATCHDOG;
    loop {
        let g = shared::read_wait_graph(&reg, Duration::ZERO).unwrap();
        let blocked = |p: Pid| g.waits.iter().any(|w| w.thread.pid == p.as_raw() as u32);
        if blocked(doomed) && blocked(survivor) {
            break;
        }
        assert!(Instant::now() < give_up, "the waiters never showed up: {g}");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(doomed, Signal::SIGKILL).unwrap();
    assert_eq!(wait_all(&[doomed])[0], WaitStatus::Signaled(doomed, Signal::SIGKILL, false));
    // No reader from here on: only the survivor's leaving can clean up.
    r.go.store(1, SeqCst);
    assert_eq!(
        wait_all(&[owner, survivor]),
        [WaitStatus::Exited(owner, 0), WaitStatus::Exited(survivor, 0)]
    );
    assert_eq!((r.oks.load(SeqCst), r.bad.load(SeqCst)), (1, 0));
    assert!(gone(&reg), "the last live waiter removed the registry");
}

/// Kills and reaps the children it names when dropped (a failed assertion leaves none).
struct Reap(Vec<Pid>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &p in &self.0 {
            let _ = kill(p, Signal::SIGKILL);
            let _ = waitpid(p, None);
        }
    }
}

/// Shared by the parent and the children of the semaphore and condition tests.
#[repr(C)]
struct SemRing {
    sem: interproc_sync::process::Semaphore,
    m: Mutex<u32>,
    mon: interproc_sync::process::Monitor<u32>,
    holding: AtomicU32,
}

// SAFETY: `#[repr(C)]`; process-shared primitives and atomics, no pointers.
unsafe impl ShmSafe for SemRing {}

fn sem_ring() -> Segment<SemRing> {
    let r = Segment::anonymous(SemRing {
        sem: interproc_sync::process::Semaphore::new(1),
        m: Mutex::new(0),
        mon: interproc_sync::process::Monitor::new(0),
        holding: AtomicU32::new(0),
    })
    .unwrap();
    r.m.set_label("M");
    r
}

/// A cycle through a process-shared semaphore: process A holds its only permit and waits
/// for mutex M; process B holds M and waits for a permit. Both register in the registry
/// (B as waiting on the ledger's holders), and a reader finds the cycle, naming both
/// processes, the semaphore wait and its holder.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_cycle_through_a_semaphore_across_processes_is_found() {
    let (reg, _cleanup) = registry("sem");
    let r = sem_ring();
    let a = child(&reg, || {
        let _permit = r.sem.acquire().unwrap();
        r.holding.fetch_add(1, SeqCst);
        while r.holding.load(SeqCst) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _m = r.m.lock(); // blocks for good: B holds M
    });
    let b = child(&reg, || {
        let _m = r.m.lock().unwrap();
        r.holding.fetch_add(1, SeqCst);
        while r.holding.load(SeqCst) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _permit = r.sem.acquire(); // blocks for good: A holds the permit
    });
    let kids = Reap(vec![a, b]);
    let (pa, pb) = (a.as_raw() as u32, b.as_raw() as u32);
    let give_up = Instant::now() + WATCHDOG;
    let g = loop {
        let g = shared::read_wait_graph(&reg, Duration::from_millis(300)).unwrap();
        if !g.cycles.is_empty() {
            break g;
        }
        assert!(Instant::now() < give_up, "watchdog: no cycle found in {WATCHDOG:?}: {g}");
    };
    let c = &g.cycles[0];
    assert_eq!(c.kind, ReportKind::WaitCycle, "{g}");
    let mut pids: Vec<u32> = c.parties.iter().map(|p| p.thread.pid).collect();
    pids.sort_unstable();
    let mut want = vec![pa, pb];
    want.sort_unstable();
    assert_eq!(pids, want, "{g}");
    let on_sem = c.parties.iter().find(|p| p.thread.pid == pb).expect("B is a party");
    assert_eq!(on_sem.waits_for.kind, deadlock::LockKind::Semaphore, "{g}");
    assert_eq!(on_sem.wait, deadlock::WaitFor::Permits(1), "{g}");
    assert_eq!(on_sem.held_by.len(), 1, "{g}");
    assert_eq!((on_sem.held_by[0].thread.pid, on_sem.held_by[0].permits), (pa, 1), "{g}");
    let on_m = c.parties.iter().find(|p| p.thread.pid == pa).expect("A is a party");
    assert_eq!(on_m.waits_for.label, "M", "{g}");
    let edge = g.waits.iter().find(|w| w.thread.pid == pb).expect("B's wait is listed");
    assert_eq!((edge.holders.clone(), edge.owner), (vec![pa], shared::OwnerState::Blocked));
    assert!(g.to_string().contains("1 permit(s) of"), "{g}");
    drop(kids);
    // Both are dead: reading frees their entries and removes the registry.
    let g = shared::read_wait_graph(&reg, Duration::ZERO).unwrap();
    assert!(g.waits.is_empty(), "{g}");
    assert!(gone(&reg), "the emptied registry is removed");
}

/// A wait on a process-shared monitor's condition that outlasts its first poll shows in
/// the registry, with no single owner (any process may notify), and never as a cycle;
/// the notify ends it and the registry goes away.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_condition_wait_shows_in_the_graph() {
    let (reg, _cleanup) = registry("cond");
    let r = sem_ring();
    let waiter = child(&reg, || {
        let g = r.mon.enter().unwrap();
        let _g = g.wait_while(interproc_sync::Condition::new(0), |v| *v == 0).unwrap();
    });
    let kids = Reap(vec![waiter]);
    let give_up = Instant::now() + WATCHDOG;
    let edge = loop {
        let g = shared::read_wait_graph(&reg, Duration::ZERO).unwrap();
        if let Some(w) = g.waits.iter().find(|w| w.thread.pid == waiter.as_raw() as u32) {
            assert!(g.cycles.is_empty(), "{g}");
            break w.clone();
        }
        assert!(Instant::now() < give_up, "watchdog: the condition wait never showed up");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(edge.wait, deadlock::WaitFor::Condition(0));
    assert_eq!(edge.owner, shared::OwnerState::Anyone);
    assert_eq!(edge.lock.kind, deadlock::LockKind::Monitor);
    {
        let mut g = r.mon.enter().unwrap();
        *g = 1;
        g.notify_all(interproc_sync::Condition::new(0));
    }
    assert_eq!(wait_all(&[waiter])[0], WaitStatus::Exited(waiter, 0));
    std::mem::forget(kids); // reaped
    assert!(gone(&reg), "the registry is removed when the wait ends");
}
