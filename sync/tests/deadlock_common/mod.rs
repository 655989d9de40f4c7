//! Helpers of the cross-process deadlock tests (`deadlock_process.rs`,
//! `deadlock_order.rs`): a registry of each test's own, forked children that use it, and
//! a watchdog over them.
#![allow(dead_code)] // each test file uses its part

use std::time::{Duration, Instant};

use interproc_sync::deadlock::{self, shared};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// How long a child may run before the watchdog kills it and fails the test.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// The forking tests run one at a time: a fork while another test thread holds a
/// process-wide lock of the detector (the label map) would leave it locked in the child.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This test's registry name; the guard serialises the tests and removes the registry
/// and its lock-order table if a failed test left them.
pub fn registry(test: &str) -> (String, Cleanup) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("interproc-test-deadlocks-{}-{test}", std::process::id());
    (name.clone(), Cleanup(name, serial))
}

pub struct Cleanup(String, #[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
        let _ = std::fs::remove_file(format!("/dev/shm/{}", shared::order_table_name(&self.0)));
    }
}

/// Forks a child that uses registry `reg`, runs `f` and `_exit`s 0 (101 on a panic).
pub fn child(reg: &str, f: impl FnOnce()) -> Pid {
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

/// Waits for all `pids` under the watchdog (killing all of them if one hangs); their
/// statuses.
pub fn wait_all(pids: &[Pid]) -> Vec<WaitStatus> {
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
                        let _ = waitpid(p, None);
                    }
                    panic!("watchdog: child {pid} hung for {WATCHDOG:?}: deadlock not detected?");
                }
                s => break s,
            }
        })
        .collect()
}

/// [`wait_all`], checking that each child exited 0.
pub fn wait_ok(pids: &[Pid]) {
    for (&pid, status) in pids.iter().zip(wait_all(pids)) {
        assert_eq!(status, WaitStatus::Exited(pid, 0), "child {pid} failed");
    }
}
