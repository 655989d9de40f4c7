//! Lock-order inversions of the process-shared locks (feature `deadlock-detection`): in
//! one process (also mixed with thread locks), and across processes through the lock-order
//! table in shared memory, which is gone from `/dev/shm` afterwards.
//!
//! The one-process scenarios run in a re-executed copy of this test binary (so that each
//! has the detector's process-wide graph to itself, and exits normally: its `atexit` hook
//! runs); the cross-process tests fork children. Every child runs under a watchdog that
//! kills it and fails the test if it hangs. Each test uses its own registry name
//! (`INTERPROC_DEADLOCKS`), which also names the lock-order table.
#![cfg(all(feature = "deadlock-detection", not(interproc_loom)))]
#![cfg_attr(miri, allow(unused))]
#![allow(clippy::disallowed_types)] // test bookkeeping in shared memory uses std's atomics
#![allow(clippy::disallowed_methods)] // the watchdogs time by the real clock

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use interproc_sync::deadlock::{self, shared, Report, ReportKind};
use interproc_sync::process::{Monitor, Mutex};
use interproc_sync::shm::{Segment, ShmSafe};
use nix::unistd::Pid;

mod deadlock_common;

use deadlock_common::{child, registry, wait_ok, WATCHDOG};
const SCENARIO_ENV: &str = "INTERPROC_ORDER_SCENARIO";

/// Locks shared by the parent and its children.
#[repr(C)]
struct Locks {
    m: [Mutex<u32>; 3],
    mon: Monitor<u32>,
    /// Children that are done with their first part.
    done: AtomicU32,
    /// Children whose checks failed.
    bad: AtomicU32,
    /// Lock-order inversion reports the children got.
    inversions: AtomicU32,
    go: AtomicU32,
}

// SAFETY: `#[repr(C)]`; process-shared primitives and atomics, no pointers.
unsafe impl ShmSafe for Locks {}

fn locks(labelled: bool) -> Segment<Locks> {
    let s = Segment::anonymous(Locks {
        m: [Mutex::new(0), Mutex::new(0), Mutex::new(0)],
        mon: Monitor::new(0),
        done: AtomicU32::new(0),
        bad: AtomicU32::new(0),
        inversions: AtomicU32::new(0),
        go: AtomicU32::new(0),
    })
    .unwrap();
    if labelled {
        for (i, m) in s.m.iter().enumerate() {
            m.set_label(&format!("L{i}"));
        }
        s.mon.set_label("MON");
    }
    s
}

fn inversions(reports: &[Report]) -> Vec<&Report> {
    reports.iter().filter(|r| r.kind == ReportKind::LockOrderInversion).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn table_path(reg: &str) -> String {
    format!("/dev/shm/{}", shared::order_table_name(reg))
}

/// In the re-executed child (the environment names this scenario), runs `body` with the
/// registry `reg`; in the parent, runs this test alone in a child process under the
/// watchdog, checks that it passed, and that it left no lock-order table behind.
fn scenario(name: &str, body: impl FnOnce(&str)) {
    if std::env::var(SCENARIO_ENV).as_deref() == Ok(name) {
        deadlock::set_logging(false);
        body(&shared::registry_name().expect("the parent names the registry"));
        return;
    }
    let reg = format!("interproc-test-order-{}-{name}", std::process::id());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(SCENARIO_ENV, name)
        .env(shared::REGISTRY_ENV, &reg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let give_up = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= give_up {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(table_path(&reg));
            panic!("watchdog: scenario {name} hung and was killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child.wait_with_output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let left = Path::new(&table_path(&reg)).exists();
    let _ = std::fs::remove_file(table_path(&reg));
    assert!(status.success(), "scenario {name} failed: {status:?}\n{out}\n{err}");
    assert!(out.contains("1 passed"), "scenario {name} did not run:\n{out}\n{err}");
    assert!(!left, "scenario {name} left its lock-order table in /dev/shm");
}

/// One thread takes process locks A then B, later B then A: one inversion, named by the
/// labels, with no deadlock; the cross-process table does not report it a second time.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn an_inversion_between_process_locks_in_one_thread() {
    scenario("an_inversion_between_process_locks_in_one_thread", |reg| {
        let l = locks(true);
        {
            let _a = l.m[0].lock().unwrap();
            let _b = l.m[1].lock().unwrap();
        }
        assert!(deadlock::take_reports().is_empty());
        assert!(Path::new(&table_path(reg)).exists(), "the edge went to the table");
        {
            let _b = l.m[1].lock().unwrap();
            let _a = l.m[0].lock_checked().unwrap();
        }
        let reports = deadlock::take_reports();
        let inv = inversions(&reports);
        assert_eq!(inv.len(), 1, "{reports:?}");
        assert_eq!(sorted(inv[0].locks()), ["L0", "L1"]);
        assert!(inv[0].edges.iter().all(|e| e.thread.pid == std::process::id()));
        assert!(inv[0].to_string().contains("deadlock_order.rs"), "{}", inv[0]);
        // The table has both edges, and their cycle.
        let g = shared::read_order_table(reg).unwrap();
        assert_eq!(g.edges.len(), 2, "{g:?}");
        assert_eq!(g.inversions.len(), 1, "{g:?}");
        assert_eq!(g.processes, [std::process::id()]);
        assert!(Path::new(&table_path(reg)).exists(), "a reader keeps a table in use");
        // At exit, this process detaches and removes the table (checked by the parent).
    });
}

/// More edges than the table holds: one `RegistryFull` report, no hang, and the edges
/// that fit are kept.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn a_full_table_is_reported_once() {
    scenario("a_full_table_is_reported_once", |reg| {
        const N: usize = 24; // 276 ordered pairs
        let seg =
            Segment::anonymous(std::array::from_fn::<Mutex<u32>, N, _>(|_| Mutex::new(0))).unwrap();
        for i in 0..N {
            for j in i + 1..N {
                let _a = seg[i].lock().unwrap();
                let _b = seg[j].lock().unwrap();
            }
        }
        const { assert!(N * (N - 1) / 2 > shared::ORDER_EDGES) };
        let reports = deadlock::take_reports();
        let full: Vec<&Report> =
            reports.iter().filter(|r| r.kind == ReportKind::RegistryFull).collect();
        assert_eq!(full.len(), 1, "{reports:?}");
        assert!(full[0].to_string().contains("lock-order table"), "{}", full[0]);
        assert_eq!(reports.len(), 1, "a consistent order: nothing else: {reports:?}");
        let g = shared::read_order_table(reg).unwrap();
        assert_eq!(g.edges.len(), shared::ORDER_EDGES);
        assert!(g.inversions.is_empty());
    });
}

/// A thread lock and a process lock nested both ways: the in-process graph has both kinds.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn mixed_nesting_of_thread_and_process_locks_is_checked() {
    scenario("mixed_nesting_of_thread_and_process_locks_is_checked", |reg| {
        let l = locks(true);
        let t = interproc_sync::Mutex::new(0).labelled("T");
        {
            let _t = t.lock().unwrap();
            let _p = l.m[0].lock().unwrap();
        }
        assert!(deadlock::take_reports().is_empty());
        {
            let _p = l.m[0].lock().unwrap();
            let _t = t.lock().unwrap();
        }
        let reports = deadlock::take_reports();
        let inv = inversions(&reports);
        assert_eq!(inv.len(), 1, "{reports:?}");
        assert_eq!(sorted(inv[0].locks()), ["L0", "T"]);
        // Only edges between two process locks go to the table: none here.
        assert!(!Path::new(&table_path(reg)).exists());
    });
}

/// `try_lock` and `lock_timeout` add no edge, but the lock they took is held: an edge
/// from it is recorded. A monitor's entry is ordered like a mutex.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn try_lock_adds_no_edge_but_holds_and_monitors_are_ordered() {
    scenario("try_lock_adds_no_edge_but_holds_and_monitors_are_ordered", |_| {
        let l = locks(true);
        {
            let _a = l.m[0].try_lock().unwrap();
            let _b = l.m[1].lock().unwrap(); // L0 -> L1: L0 is held
        }
        {
            let _b = l.m[1].lock().unwrap();
            let a = l.m[0].try_lock().unwrap(); // no edge
            drop(a);
            let _a = l.m[0].lock_timeout(Duration::from_secs(5)).unwrap(); // no edge
        }
        assert!(deadlock::take_reports().is_empty(), "a try or a timed lock added an edge");
        {
            let _b = l.m[1].lock().unwrap();
            let _a = l.m[0].lock().unwrap(); // L1 -> L0 closes the cycle
        }
        let reports = deadlock::take_reports();
        assert_eq!(inversions(&reports).len(), 1, "{reports:?}");
        {
            let _m = l.mon.enter().unwrap();
            let _c = l.m[2].lock().unwrap();
        }
        {
            let _c = l.m[2].lock().unwrap();
            let _m = l.mon.try_enter().unwrap(); // no edge
        }
        assert!(deadlock::take_reports().is_empty());
        {
            let _c = l.m[2].lock().unwrap();
            let _m = l.mon.enter().unwrap();
        }
        let reports = deadlock::take_reports();
        let inv = inversions(&reports);
        assert_eq!(inv.len(), 1, "{reports:?}");
        assert_eq!(sorted(inv[0].locks()), ["L2", "MON"]);
    });
}

/// A condition wait on a process-shared monitor while holding another lock (a process
/// mutex or a thread mutex) is reported as a hazard, once per pair of classes; a wait
/// holding nothing else is not.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn a_process_monitor_wait_while_holding_is_a_hazard() {
    scenario("a_process_monitor_wait_while_holding_is_a_hazard", |_| {
        let l = locks(true);
        let nap = Duration::from_millis(1);
        let wait =
            || drop(l.mon.enter().unwrap().wait_timeout(interproc_sync::Condition::new(0), nap));
        wait();
        assert!(deadlock::take_reports().is_empty(), "a wait holding nothing is no hazard");
        let held = l.m[0].lock().unwrap();
        wait();
        wait(); // the same pair again: reported once
        drop(held);
        let t = interproc_sync::Mutex::new(()).labelled("T");
        let held = t.lock().unwrap();
        wait();
        drop(held);
        let reports = deadlock::take_reports();
        let hazards: Vec<&Report> =
            reports.iter().filter(|r| r.kind == ReportKind::WaitWhileHolding).collect();
        assert_eq!(hazards.len(), 2, "{reports:?}");
        assert_eq!(hazards[0].parties[0].waits_for.label, "MON");
        assert!(hazards[0].held[0].contains("\"L0\""), "{}", hazards[0]);
        assert!(hazards[1].held[0].contains("\"T\""), "{}", hazards[1]);
    });
}

/// Unlabelled process locks are named by their shared-memory key.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn unlabelled_process_locks_are_named_by_their_key() {
    scenario("unlabelled_process_locks_are_named_by_their_key", |_| {
        let l = locks(false);
        for (x, y) in [(0, 1), (1, 0)] {
            let _x = l.m[x].lock().unwrap();
            let _y = l.m[y].lock().unwrap();
        }
        let reports = deadlock::take_reports();
        let inv = inversions(&reports);
        assert_eq!(inv.len(), 1, "{reports:?}");
        assert!(inv[0].locks().iter().all(|c| c.contains("inode")), "{}", inv[0]);
    });
}

// ---------------------------------------------------------------------------------------
// Across processes.

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let give_up = Instant::now() + WATCHDOG;
    while !cond() {
        assert!(Instant::now() < give_up, "watchdog: {what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Process 1 takes L0 then L1; process 2 later takes L1 then L0 (no deadlock can happen:
/// process 1 is done, or gone): process 2 gets the inversion, naming both processes.
/// Afterwards reading the table (as `interproc deadlocks` does) removes it.
fn inversion_across_processes(test: &str, first_exits: bool) {
    let (reg, _cleanup) = registry(test);
    let l = locks(true);
    let p1 = child(&reg, || {
        {
            let _a = l.m[0].lock().unwrap();
            let _b = l.m[1].lock().unwrap();
        }
        if !deadlock::take_reports().is_empty() {
            l.bad.fetch_add(1, SeqCst);
        }
        l.done.fetch_add(1, SeqCst);
        while !first_exits && l.go.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    wait_for("process 1's nesting", || l.done.load(SeqCst) == 1);
    if first_exits {
        wait_ok(&[p1]);
    }
    let first = p1.as_raw() as u32;
    let p2 = child(&reg, || {
        {
            let _b = l.m[1].lock().unwrap();
            let _a = l.m[0].lock().unwrap();
        }
        let reports = deadlock::take_reports();
        let inv = inversions(&reports);
        let me = std::process::id();
        let ok = inv.len() == 1
            && sorted(inv[0].locks()) == ["L0", "L1"]
            && inv[0].edges.len() == 2
            && inv[0].edges.iter().any(|e| e.thread.pid == first && e.from == "L0")
            && inv[0].edges.last().is_some_and(|e| e.thread.pid == me && e.from == "L1")
            && inv[0].edges.iter().all(|e| e.at.contains("deadlock_order.rs"));
        if ok {
            l.inversions.fetch_add(1, SeqCst);
        } else {
            eprintln!("the inversion was not reported as expected: {reports:?}");
            l.bad.fetch_add(1, SeqCst);
        }
    });
    wait_ok(&[p2]);
    l.go.store(1, SeqCst);
    if !first_exits {
        wait_ok(&[p1]);
    }
    assert_eq!((l.inversions.load(SeqCst), l.bad.load(SeqCst)), (1, 0));
    // Both children ended with `_exit` (no atexit hook): the table is left with dead
    // processes only, and the reader removes it.
    assert!(Path::new(&table_path(&reg)).exists());
    let g = shared::read_wait_graph(&reg, Duration::ZERO).unwrap();
    assert_eq!(g.order.edges.len(), 2, "{g}");
    assert_eq!(g.order.inversions.len(), 1, "{g}");
    assert!(g.order.processes.is_empty(), "{g}");
    assert!(g.to_string().contains("1 inversion(s)"), "{g}");
    assert!(!Path::new(&table_path(&reg)).exists(), "the table of dead processes is removed");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn an_inversion_across_processes_after_the_first_one_exited() {
    inversion_across_processes("exited", true);
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn an_inversion_across_processes_while_the_first_one_lives() {
    inversion_across_processes("alive", false);
}

/// Three processes nest L0, L1, L2 in one order, many times at once: no inversion, in any
/// of them or in the table.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_consistent_order_across_processes_reports_nothing() {
    let (reg, _cleanup) = registry("ordered");
    let l = locks(true);
    let kids: Vec<Pid> = (0..3)
        .map(|k| {
            let l = &l;
            child(&reg, move || {
                for i in 0..2000 {
                    let (x, y) = [(0, 1), (1, 2), (0, 2)][(i + k) % 3];
                    let mut a = l.m[x].lock().unwrap();
                    let mut b = l.m[y].lock().unwrap();
                    *a += 1;
                    *b += 1;
                }
                if !deadlock::take_reports().is_empty() {
                    l.bad.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    wait_ok(&kids);
    assert_eq!(l.bad.load(SeqCst), 0, "a correct order was reported");
    let g = shared::read_order_table(&reg).unwrap();
    assert_eq!(g.edges.len(), 3, "{g:?}");
    assert!(g.inversions.is_empty(), "{g:?}");
    assert!(!Path::new(&table_path(&reg)).exists(), "the table of dead processes is removed");
}

/// Regression (found in review): two unlabelled process mutexes in private (heap) memory,
/// taken A then B and freed; two new, unrelated ones that the allocator puts at the same
/// addresses, taken D then C, were a false inversion (the address was their class). Such
/// locks are not ordered now.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn reused_private_addresses_are_no_inversion() {
    scenario("reused_private_addresses_are_no_inversion", |_reg| {
        let (pa, pb) = {
            let a = Box::new(Mutex::new(0u32));
            let b = Box::new(Mutex::new(0u32));
            let _ga = a.lock().unwrap();
            let _gb = b.lock().unwrap();
            (std::ptr::from_ref(&*a).addr(), std::ptr::from_ref(&*b).addr())
        };
        assert!(deadlock::take_reports().is_empty());
        let c = Box::new(Mutex::new(0u32));
        let d = Box::new(Mutex::new(0u32));
        let (pc, pd) = (std::ptr::from_ref(&*c).addr(), std::ptr::from_ref(&*d).addr());
        // glibc's allocator hands the freed blocks back (LIFO): the test needs the reuse.
        assert!(sorted_addrs(pa, pb) == sorted_addrs(pc, pd), "the addresses were not reused");
        {
            let _gd = d.lock().unwrap();
            let _gc = c.lock().unwrap();
        }
        let reports = deadlock::take_reports();
        assert!(inversions(&reports).is_empty(), "false inversion: {reports:#?}");
    });
}

/// Regression (found in review): a process that switched registries (`use_registry`)
/// after writing an edge stayed attached to the first lock-order table, and at exit only
/// the second was detached, so the first stayed in /dev/shm. Switching now leaves it.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot spawn processes")]
fn switching_registry_detaches_the_old_table() {
    scenario("switching_registry_detaches_the_old_table", |reg| {
        let l = locks(true);
        {
            let _a = l.m[0].lock().unwrap();
            let _b = l.m[1].lock().unwrap();
        }
        assert!(Path::new(&table_path(reg)).exists());
        shared::use_registry(&format!("{reg}-b"));
        {
            let _b = l.m[1].lock().unwrap();
            let _c = l.m[2].lock().unwrap();
        }
        assert!(Path::new(&table_path(&format!("{reg}-b"))).exists());
    });
}

/// A table full of edges whose writers are gone (exited) makes room for a live process's
/// edge (the dead writers' oldest edges go), instead of a `RegistryFull` report. A keeper
/// process stays attached throughout, so the table itself lives on.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn the_edges_of_exited_processes_make_room() {
    const N: usize = 24; // 276 ordered pairs: more than the table holds
    let (reg, _cleanup) = registry("evict");
    let seg =
        Segment::anonymous(std::array::from_fn::<Mutex<u32>, N, _>(|_| Mutex::new(0))).unwrap();
    let l = locks(true);
    let keeper = child(&reg, || {
        {
            let _a = l.m[0].lock().unwrap();
            let _c = l.m[2].lock().unwrap();
        }
        l.done.fetch_add(1, SeqCst);
        while l.go.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    wait_for("the keeper's edge", || l.done.load(SeqCst) == 1);
    let filler = child(&reg, || {
        for i in 0..N {
            for j in i + 1..N {
                let _a = seg[i].lock().unwrap();
                let _b = seg[j].lock().unwrap();
            }
        }
    });
    wait_ok(&[filler]);
    let live = child(&reg, || {
        {
            let _a = l.m[0].lock().unwrap();
            let _b = l.m[1].lock().unwrap();
        }
        let reports = deadlock::take_reports();
        let g = shared::read_order_table(&shared::registry_name().unwrap()).unwrap();
        let mine = g.edges.iter().any(|e| e.thread.pid == std::process::id());
        if !reports.is_empty() || !mine || g.edges.len() != shared::ORDER_EDGES {
            eprintln!("no room made: {reports:?}, own edge in the table: {mine}");
            l.bad.fetch_add(1, SeqCst);
        }
    });
    wait_ok(&[live]);
    l.go.store(1, SeqCst);
    wait_ok(&[keeper]);
    assert_eq!(l.bad.load(SeqCst), 0);
}

fn sorted_addrs(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}
