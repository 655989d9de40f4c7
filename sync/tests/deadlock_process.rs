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
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

mod deadlock_common;

use deadlock_common::{child, registry, wait_all, WATCHDOG};
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
                let (first, taken_at) = (r.locks[i].lock().unwrap(), line!());
                // Where every owner took its lock: the owner's registry slot lists it.
                let taken_at = format!("{}:{taken_at}:", file!());
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
                            && rep.parties.iter().all(|p| {
                                p.held_by.len() == 1
                                    && p.held_by[0].acquired_at.starts_with(&taken_at)
                            })
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

// ---------------------------------------------------------------------------------------
// Per-lock policies (`set_deadlock_policy`) and the semaphore's checked acquire. Each test
// orders the two parties: A blocks first (the parent waits until the registry shows it),
// then B closes the cycle, so B is the party that reports, and the lock B waits on is the
// one whose policy (in B's process) decides.

/// What a party's blocking call ended with.
const OK: u32 = 1;
const DEADLOCK: u32 = 2;
const OWNER_DIED: u32 = 3;
const PANICKED: u32 = 4;
const BAD: u32 = 5;

/// Shared by the parent and the two parties of a policy test.
#[repr(C)]
struct Pair {
    m: [Mutex<u32>; 2],
    mon: interproc_sync::process::Monitor<u32>,
    sem: interproc_sync::process::Semaphore,
    /// 1: A holds its first lock; 2: B holds its own; 3: A is blocked, B may go on.
    stage: AtomicU32,
    /// B saw its own report (the `Report` policy test), or the holder pid its semaphore
    /// report names (the semaphore tests).
    reported: AtomicU32,
    /// A's and B's results (`OK`, `DEADLOCK`, ...).
    outcome: [AtomicU32; 2],
}

// SAFETY: `#[repr(C)]`; process-shared primitives and atomics, no pointers.
unsafe impl ShmSafe for Pair {}

fn pair(permits: u32) -> Segment<Pair> {
    Segment::anonymous(Pair {
        m: [Mutex::new(0), Mutex::new(0)],
        mon: interproc_sync::process::Monitor::new(0),
        sem: interproc_sync::process::Semaphore::new(permits),
        stage: AtomicU32::new(0),
        reported: AtomicU32::new(0),
        outcome: [AtomicU32::new(0), AtomicU32::new(0)],
    })
    .unwrap()
}

/// Labels the pair's locks in this process (each child labels its own view).
fn label(r: &Pair) {
    r.m[0].set_label("M0");
    r.m[1].set_label("M1");
    r.mon.set_label("MON");
    r.sem.set_label("S");
}

fn await_stage(r: &Pair, stage: u32) {
    while r.stage.load(SeqCst) < stage {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the registry shows `pid` blocked on the lock labelled `lock`.
fn await_blocked(reg: &str, pid: Pid, lock: &str) {
    let give_up = Instant::now() + WATCHDOG;
    loop {
        let g = shared::read_wait_graph(reg, Duration::ZERO).unwrap();
        if g.waits.iter().any(|w| w.thread.pid == pid.as_raw() as u32 && w.lock.label == lock) {
            return;
        }
        assert!(Instant::now() < give_up, "watchdog: {pid} never showed up blocked on {lock}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `d` reports the two-party cycle between A and B through `locks` (sorted).
fn names_the_cycle(d: &deadlock::Deadlock, locks: &[&str]) -> bool {
    let rep = d.report();
    let mut named = rep.locks();
    named.sort();
    let ok = rep.kind == ReportKind::WaitCycle && rep.parties.len() == 2 && named == locks;
    if !ok {
        eprintln!("the report does not name the cycle through {locks:?}: {rep}");
    }
    ok
}

/// The lock-result code of a `lock_checked` / `enter_checked` call.
fn code<G>(got: Result<G, LockError<G>>, locks: &[&str]) -> u32 {
    match got {
        Ok(_) => OK,
        Err(LockError::Deadlock(d)) if names_the_cycle(&d, locks) => DEADLOCK,
        Err(LockError::OwnerDied(_)) => OWNER_DIED,
        Err(e) => {
            eprintln!("unexpected: {e}");
            BAD
        }
    }
}

/// Party A of the mutex and monitor tests: holds `first` (taken by `hold`), then blocks
/// on M1 with `lock_checked` once B holds it, under the global policy `global`.
fn party_a<'a, G>(reg: &str, r: &'a Pair, global: Policy, hold: impl FnOnce(&'a Pair) -> G) -> Pid {
    child(reg, move || {
        label(r);
        deadlock::set_policy(global);
        let first = hold(r);
        r.stage.store(1, SeqCst);
        await_stage(r, 2);
        let got = code(r.m[1].lock_checked(), &[]);
        r.outcome[0].store(got, SeqCst);
        drop(first);
    })
}

/// Forks A (holding `a_holds`), then B, which takes M1, waits until A is blocked on it,
/// and closes the cycle with `b_blocks` (returning its outcome code). Returns (A, B).
fn two_party_cycle<'a, G>(
    reg: &str,
    r: &'a Pair,
    global: Policy,
    a_holds: impl FnOnce(&'a Pair) -> G,
    b_blocks: impl FnOnce(&'a Pair) -> u32,
) -> (Pid, Pid) {
    let a = party_a(reg, r, global, a_holds);
    await_stage(r, 1);
    let b = child(reg, move || {
        label(r);
        deadlock::set_policy(global);
        let _m1 = r.m[1].lock().unwrap();
        r.stage.store(2, SeqCst);
        await_stage(r, 3);
        let got = b_blocks(r);
        r.outcome[1].store(got, SeqCst);
    });
    await_blocked(reg, a, "M1");
    r.stage.store(3, SeqCst);
    (a, b)
}

/// The global policy is `Report`, but B's process gave M0 the `Error` policy: B, which
/// closes the cycle waiting on M0, gets `LockError::Deadlock`; dropping M1 lets A finish.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_mutex_policy_of_error_overrides_a_global_report() {
    let (reg, _cleanup) = registry("policy-error");
    let r = pair(1);
    let (a, b) = two_party_cycle(
        &reg,
        &r,
        Policy::Report,
        |r| r.m[0].lock().unwrap(),
        |r| {
            r.m[0].set_deadlock_policy(Policy::Error);
            code(r.m[0].lock_checked(), &["M0", "M1"])
        },
    );
    assert_eq!(wait_all(&[a, b]), [WaitStatus::Exited(a, 0), WaitStatus::Exited(b, 0)]);
    assert_eq!([r.outcome[0].load(SeqCst), r.outcome[1].load(SeqCst)], [OK, DEADLOCK]);
    assert!(gone(&reg), "the registry is removed when its last entry goes");
}

/// As above with a monitor: B closes the cycle entering a monitor that A is inside, and
/// the monitor's own `Error` policy gives B `LockError::Deadlock` from `enter_checked`.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_monitor_policy_of_error_overrides_a_global_report() {
    let (reg, _cleanup) = registry("policy-monitor");
    let r = pair(1);
    let (a, b) = two_party_cycle(
        &reg,
        &r,
        Policy::Report,
        |r| r.mon.enter().unwrap(),
        |r| {
            r.mon.set_deadlock_policy(Policy::Error);
            code(r.mon.enter_checked(), &["M1", "MON"])
        },
    );
    assert_eq!(wait_all(&[a, b]), [WaitStatus::Exited(a, 0), WaitStatus::Exited(b, 0)]);
    assert_eq!([r.outcome[0].load(SeqCst), r.outcome[1].load(SeqCst)], [OK, DEADLOCK]);
    assert!(gone(&reg), "the registry is removed when its last entry goes");
}

/// The global policy is `Error`, but M0's is `Panic` (in B's process): B panics with the
/// report out of `lock_checked` instead of getting the error; the unwinding drops M1 and A
/// finishes.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_mutex_policy_of_panic_overrides_a_global_error() {
    let (reg, _cleanup) = registry("policy-panic");
    let r = pair(1);
    let (a, b) = two_party_cycle(
        &reg,
        &r,
        Policy::Error,
        |r| r.m[0].lock().unwrap(),
        |r| {
            r.m[0].set_deadlock_policy(Policy::Panic);
            std::panic::set_hook(Box::new(|_| {})); // the message is checked below
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                code(r.m[0].lock_checked(), &[])
            }));
            let _ = std::panic::take_hook();
            match got {
                Ok(code) => code,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| p.downcast_ref::<&str>().copied())
                        .unwrap_or("");
                    if msg.contains("wait for each other in a cycle") {
                        PANICKED
                    } else {
                        eprintln!("unexpected panic: {msg}");
                        BAD
                    }
                }
            }
        },
    );
    assert_eq!(wait_all(&[a, b]), [WaitStatus::Exited(a, 0), WaitStatus::Exited(b, 0)]);
    assert_eq!([r.outcome[0].load(SeqCst), r.outcome[1].load(SeqCst)], [OK, PANICKED]);
    assert!(gone(&reg), "the registry is removed when its last entry goes");
}

/// The global policy is `Error`, but M0's is `Report` (in B's process): B reports the
/// cycle (a thread of its own sees the report) and keeps waiting in `lock_checked`, until
/// the parent kills A, who holds M0: B then gets `OwnerDied`, never `Deadlock`.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_mutex_policy_of_report_overrides_a_global_error() {
    let (reg, _cleanup) = registry("policy-report");
    let r = pair(1);
    let (a, b) = two_party_cycle(
        &reg,
        &r,
        Policy::Error,
        |r| r.m[0].lock().unwrap(),
        |r| {
            r.m[0].set_deadlock_policy(Policy::Report);
            std::thread::scope(|s| {
                s.spawn(|| {
                    // Watches this process's reports until B's own shows up.
                    let give_up = Instant::now() + WATCHDOG;
                    while Instant::now() < give_up {
                        let reports = deadlock::take_reports();
                        if reports.iter().any(|rep| {
                            let mut locks = rep.locks();
                            locks.sort();
                            rep.kind == ReportKind::WaitCycle && locks == ["M0", "M1"]
                        }) {
                            r.reported.store(1, SeqCst);
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                });
                match r.m[0].lock_checked() {
                    Err(LockError::OwnerDied(mut g)) => {
                        g.make_consistent();
                        OWNER_DIED
                    }
                    other => code(other, &[]),
                }
            })
        },
    );
    let kids = Reap(vec![a, b]);
    let give_up = Instant::now() + WATCHDOG;
    while r.reported.load(SeqCst) == 0 {
        assert!(Instant::now() < give_up, "watchdog: B never reported the cycle");
        std::thread::sleep(Duration::from_millis(2));
    }
    kill(a, Signal::SIGKILL).unwrap();
    assert_eq!(
        wait_all(&[a, b]),
        [WaitStatus::Signaled(a, Signal::SIGKILL, false), WaitStatus::Exited(b, 0)]
    );
    std::mem::forget(kids); // reaped
    assert_eq!(r.outcome[1].load(SeqCst), OWNER_DIED, "B kept waiting until A died");
    // A's entry outlived it: B's leaving freed it and removed the registry.
    assert!(gone(&reg), "the registry is removed when its last entry goes");
}

/// The semaphore's checked acquire: A holds S's permits and blocks on M0, which B holds;
/// B's `acquire_many_checked(n)` closes the cycle and gets `AcquireError::Deadlock` (its
/// report names A as holding the `n` permits), under `global` and S's own `policy`.
/// Dropping M0 lets A finish.
fn semaphore_cycle(test: &str, n: u32, global: Policy, policy: Option<Policy>) {
    use interproc_sync::process::AcquireError;
    let (reg, _cleanup) = registry(test);
    let r = pair(n);
    let a = child(&reg, || {
        label(&r);
        deadlock::set_policy(global);
        let permits = r.sem.acquire_many(n).unwrap();
        r.stage.store(1, SeqCst);
        await_stage(&r, 2);
        let got = code(r.m[0].lock_checked(), &[]);
        r.outcome[0].store(got, SeqCst);
        drop(permits);
    });
    await_stage(&r, 1);
    let b = child(&reg, || {
        label(&r);
        deadlock::set_policy(global);
        if let Some(p) = policy {
            r.sem.set_deadlock_policy(p);
        }
        let _m0 = r.m[0].lock().unwrap();
        r.stage.store(2, SeqCst);
        await_stage(&r, 3);
        let got = if n == 1 { r.sem.acquire_checked() } else { r.sem.acquire_many_checked(n) };
        let got = match got {
            Ok(_) => OK,
            Err(AcquireError::Deadlock(d)) if names_the_cycle(&d, &["M0", "S"]) => {
                let on_sem = d.report().parties.iter().find(|p| p.waits_for.label == "S");
                match on_sem {
                    Some(p)
                        if p.wait == deadlock::WaitFor::Permits(n)
                            && p.held_by.len() == 1
                            && p.held_by[0].permits == n =>
                    {
                        r.reported.store(p.held_by[0].thread.pid, SeqCst);
                        DEADLOCK
                    }
                    _ => {
                        eprintln!("the semaphore's party is wrong: {d}");
                        BAD
                    }
                }
            }
            Err(e) => {
                eprintln!("unexpected: {e}");
                BAD
            }
        };
        r.outcome[1].store(got, SeqCst);
    });
    await_blocked(&reg, a, "M0");
    r.stage.store(3, SeqCst);
    assert_eq!(wait_all(&[a, b]), [WaitStatus::Exited(a, 0), WaitStatus::Exited(b, 0)]);
    assert_eq!([r.outcome[0].load(SeqCst), r.outcome[1].load(SeqCst)], [OK, DEADLOCK]);
    assert_eq!(r.reported.load(SeqCst), a.as_raw() as u32, "the report names A as the holder");
    assert_eq!(r.sem.available_permits(), n, "B took nothing; A gave its permits back");
    assert!(gone(&reg), "the registry is removed when its last entry goes");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn acquire_checked_gets_the_deadlock_across_processes() {
    semaphore_cycle("sem-checked", 1, Policy::Error, None);
}

/// The semaphore's own `Error` policy, under a global `Report`, with several permits.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn acquire_many_checked_follows_the_semaphores_own_policy() {
    semaphore_cycle("sem-policy", 3, Policy::Report, Some(Policy::Error));
}
