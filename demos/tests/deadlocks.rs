//! `interproc deadlocks` end to end: two forked processes deadlock on two process-shared
//! mutexes (ABBA, under the `Report` policy, so they stay stuck); `interproc deadlocks
//! --json`, run from outside, finds the cycle naming both pids and both locks. Then the
//! test kills both (a watchdog kills them, and fails the test, if the cycle never shows)
//! and a second read cleans their entries and removes the registry. The ABBA order shows
//! in the lock-order table beside it, as an inversion naming both pids; that table goes
//! with the second read too (its processes are dead).
#![cfg(feature = "deadlock-detection")]
#![allow(clippy::disallowed_types)] // test bookkeeping in shared memory uses std's atomics

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use interproc::sync::deadlock::shared;
use interproc::sync::process::Mutex;
use interproc::sync::shm::{Segment, ShmSafe};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::Value;

mod common;

#[repr(C)]
struct Pair {
    a: Mutex<u32>,
    b: Mutex<u32>,
    holding: AtomicU32,
}

// SAFETY: `#[repr(C)]`; process-shared mutexes and an atomic, no pointers.
unsafe impl ShmSafe for Pair {}

/// Kills the children when dropped (also when the test fails).
struct Kids(Vec<Pid>);

impl Drop for Kids {
    fn drop(&mut self) {
        for &p in &self.0 {
            let _ = kill(p, Signal::SIGKILL);
            let _ = waitpid(p, None);
        }
    }
}

/// Removes the registry segment if a failed test left it.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
        let _ = std::fs::remove_file(format!("/dev/shm/{}", shared::order_table_name(&self.0)));
    }
}

fn child(reg: &str, f: impl FnOnce()) -> Pid {
    // SAFETY: the child only uses inherited memory, futexes, `/proc` reads, shm calls and
    // glibc's malloc (safe after fork), then `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            shared::use_registry(reg);
            interproc::sync::deadlock::set_logging(false);
            f();
            // SAFETY: ends the child at once, without the parent's handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn deadlocks(reg: &str) -> (std::process::Output, Value) {
    let out = common::run(None, &["deadlocks", "--json", "--registry", reg]);
    let j = common::last_json(&out);
    (out, j)
}

#[test]
fn deadlocks_finds_a_cycle_between_two_processes() {
    let reg = format!("interproc-test-deadlocks-cli-{}", std::process::id());
    let _unlink = Unlink(reg.clone());
    let pair =
        Segment::anonymous(Pair { a: Mutex::new(0), b: Mutex::new(0), holding: AtomicU32::new(0) })
            .unwrap();
    pair.a.set_label("lock A");
    pair.b.set_label("lock B");
    let p = &pair;
    let abba = |first: &'static str| {
        move || {
            let (x, y) = if first == "a" { (&p.a, &p.b) } else { (&p.b, &p.a) };
            let _x = x.lock().unwrap();
            p.holding.fetch_add(1, SeqCst);
            while p.holding.load(SeqCst) < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _y = y.lock(); // the Report policy: stuck for good
        }
    };
    let kids = Kids(vec![child(&reg, abba("a")), child(&reg, abba("b"))]);
    let pids: Vec<u64> = kids.0.iter().map(|p| p.as_raw() as u64).collect();

    let give_up = Instant::now() + common::WATCHDOG;
    let (out, j) = loop {
        let (out, j) = deadlocks(&reg);
        if !j["cycles"].as_array().unwrap().is_empty() {
            break (out, j);
        }
        assert!(Instant::now() < give_up, "watchdog: no cycle found: {j}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(out.status.code(), Some(1), "a cycle exits 1");
    assert_eq!(j["registry"], reg);
    let cycles = j["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 1, "{j}");
    let c = &cycles[0];
    assert_eq!(c["kind"], "wait_cycle");
    let parties = c["parties"].as_array().unwrap();
    let mut got_pids: Vec<u64> =
        parties.iter().map(|p| p["thread"]["pid"].as_u64().unwrap()).collect();
    got_pids.sort_unstable();
    let mut want = pids.clone();
    want.sort_unstable();
    assert_eq!(got_pids, want, "{j}");
    let mut locks: Vec<&str> =
        parties.iter().map(|p| p["waits_for"]["label"].as_str().unwrap()).collect();
    locks.sort_unstable();
    assert_eq!(locks, ["lock A", "lock B"], "{j}");
    for p in parties {
        assert_eq!(p["waits_for"]["kind"], "mutex");
        let holder = p["held_by"][0]["thread"]["pid"].as_u64().unwrap();
        assert_ne!(holder, p["thread"]["pid"].as_u64().unwrap(), "each waits for the other");
        assert!(p["waiting_at"].as_str().unwrap().contains("deadlocks.rs"), "{p}");
    }
    let waits = j["waits"].as_array().unwrap();
    assert_eq!(waits.len(), 2);
    assert!(waits.iter().all(|w| w["owner"] == "blocked"), "{j}");
    // The ABBA order is also in the lock-order table, as an inversion between both pids.
    let inversions = j["order"]["inversions"].as_array().unwrap();
    assert_eq!(inversions.len(), 1, "{j}");
    assert_eq!(inversions[0]["kind"], "lock_order_inversion");
    let mut edge_pids: Vec<u64> = inversions[0]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["thread"]["pid"].as_u64().unwrap())
        .collect();
    edge_pids.sort_unstable();
    assert_eq!(edge_pids, want, "{j}");

    // The text form says the same.
    let text = common::run(None, &["deadlocks", "--registry", &reg]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("wait for each other in a cycle"), "{text}");
    assert!(text.contains("\"lock A\"") && text.contains("\"lock B\""), "{text}");
    assert!(text.contains("lock-order table: 2 edge(s)"), "{text}");

    drop(kids);
    // Their entries outlived them: this read frees them and removes the registry.
    let (out, j) = deadlocks(&reg);
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert!(j["waits"].as_array().unwrap().is_empty(), "{j}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{reg}")).exists());
    let table = format!("/dev/shm/{}", shared::order_table_name(&reg));
    assert!(!std::path::Path::new(&table).exists(), "the table of dead processes is removed");
}
