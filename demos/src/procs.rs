//! Child processes for the demos: fork, wait, and interrupt handling.
//!
//! SIGINT, SIGTERM and SIGHUP are blocked in the parent before the first fork and taken
//! by a `sigwait` thread, which SIGKILLs the children that are still running. The parent's
//! own code then sees its children gone, finishes, and its destructors remove every
//! named object it created. Children unblock the three signals, whose action is still the
//! default (the parent only blocks them, it installs no handler), so Ctrl-C in a terminal
//! ends them at once.
//!
//! If the parent itself is killed outright (SIGKILL), it cannot clean up: its children
//! get SIGKILL too (`PR_SET_PDEATHSIG`), so none lives on blocked on a peer that is gone,
//! and none keeps the parent's owner records locked. `interproc clean` then removes what
//! the parent left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn stop_signals() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGINT);
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGHUP);
    s
}

/// The children of this process that have not been reaped yet.
#[derive(Clone, Default)]
pub struct Children(Arc<Mutex<Vec<Pid>>>);

impl Children {
    /// Blocks SIGINT/SIGTERM in this (still single-threaded) process. Call before the
    /// first fork; then [`Children::watch_signals`] once the forks are done.
    pub fn new() -> Children {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&stop_signals()), None);
        Children::default()
    }

    /// Forks a child that runs `f` and exits with the status it returns (101 if it
    /// panics). The child dies with SIGKILL if this process dies first.
    ///
    /// # Safety
    ///
    /// This process must have a single thread: the child then may use anything, the
    /// allocator included. (Call [`Children::watch_signals`], which starts a thread, only
    /// after the last `spawn`.)
    pub unsafe fn spawn(&self, f: impl FnOnce() -> i32) -> Pid {
        let parent = std::process::id();
        // SAFETY: the caller guarantees that this process has a single thread, so the
        // child's copy of the address space holds no lock that another thread held at
        // the fork.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Parent { child } => {
                self.0.lock().unwrap().push(child);
                child
            }
            ForkResult::Child => {
                // Die with the parent. If it died before this took effect, we were
                // re-parented already: leave at once.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(1);
                }
                let _ = nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_UNBLOCK,
                    Some(&stop_signals()),
                    None,
                );
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
                // Leave without running the parent's destructors, which this child
                // inherited: the objects they would remove belong to the parent.
                std::process::exit(code)
            }
        }
    }

    /// Starts the thread that turns SIGINT/SIGTERM/SIGHUP into SIGKILL for every child.
    pub fn watch_signals(&self) {
        let kids = self.0.clone();
        std::thread::spawn(move || {
            if stop_signals().wait().is_ok() {
                INTERRUPTED.store(true, Ordering::SeqCst);
                // Holding the lock: a listed pid is not reaped yet, so it cannot have
                // been recycled.
                for &pid in kids.lock().unwrap().iter() {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
        });
    }

    /// SIGKILLs every child not reaped yet.
    pub fn kill_all(&self) {
        for &pid in self.0.lock().unwrap().iter() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    /// Waits for `pid` and reaps it; returns its exit code (128 + signal if killed).
    pub fn wait(&self, pid: Pid) -> i32 {
        // Wait without reaping, then reap under the lock, so the signal thread never
        // signals a pid that might have been reused.
        while let Err(nix::errno::Errno::EINTR) =
            waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
        let mut kids = self.0.lock().unwrap();
        let status = waitpid(pid, None);
        kids.retain(|&p| p != pid);
        match status {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            _ => 1,
        }
    }
}
