//! Support for multi-process tests: child processes and the transport conformance suite.
//!
//! A child is this same test binary, re-executed to run one test (`child_entry`) with a
//! role in the environment, so every child runs the code under test in a real, separate
//! process. Fds are handed to it as fd 3, 4, ... Every child is waited for under a
//! watchdog: if it does not finish in time it is killed and the test fails. A `Child`
//! that is dropped early (a failing assertion) is killed and reaped, never left behind.
#![allow(dead_code)]

pub mod conformance;

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming a child's role.
pub const ROLE_ENV: &str = "INTERPROC_TEST_ROLE";
/// The environment variable carrying a child's argument.
pub const ARG_ENV: &str = "INTERPROC_TEST_ARG";
/// How many fds a child was given.
pub const NFDS_ENV: &str = "INTERPROC_TEST_NFDS";
/// The longest a child may run before the watchdog kills it.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs the child side, if this process is a child: call it from a `#[test] fn
/// child_entry()` in every test file that spawns children. In the parent it does nothing.
/// The child exits with status 0 if `run` returns, and 101 if it panics.
pub fn child_entry(run: impl FnOnce(&str, &str)) {
    let Ok(role) = std::env::var(ROLE_ENV) else { return };
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&role, &arg)));
    // Exit at once: libtest must not go on to print or run anything in the child.
    std::process::exit(if r.is_ok() { 0 } else { 101 });
}

/// The fds a child was given, in order (fd 3, 4, ...). Call once.
pub fn inherited_fds() -> Vec<OwnedFd> {
    let n: i32 = std::env::var(NFDS_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: the parent placed exactly `n` open fds at 3..3+n for this process (see
    // `spawn`), and nothing else in the child owns them.
    (0..n).map(|i| unsafe { OwnedFd::from_raw_fd(3 + i) }).collect()
}

/// A child process under a watchdog.
pub struct Child {
    inner: Option<std::process::Child>,
    what: String,
}

/// Spawns this test binary as a child running `entry` (a test name, normally
/// `"child_entry"`) with `role`, `arg`, and `fds` at fd 3, 4, ...
pub fn spawn(entry: &str, role: &str, arg: &str, fds: &[BorrowedFd<'_>]) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    // Move the fds out of the 3..3+n range first (as CLOEXEC copies), so the dup2s in
    // the child cannot overwrite a source that is still to be moved.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100)).map_or_else(
                |e| panic!("dup: {e}"),
                // SAFETY: F_DUPFD_CLOEXEC returned a new fd that only we own.
                |raw| unsafe { OwnedFd::from_raw_fd(raw) },
            )
        })
        .collect();
    let raw: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(ARG_ENV, arg)
        .env(NFDS_ENV, raw.len().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and calls only dup2,
    // which is async-signal-safe; it touches no memory but the captured `raw` Vec,
    // which the fork copied and nobody else mutates.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &fd) in raw.iter().enumerate() {
                // dup2 clears FD_CLOEXEC on the new fd, so it survives exec.
                if libc::dup2(fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn child {role}: {e}"));
    drop(high);
    Child { inner: Some(child), what: format!("child {role} {arg}") }
}

impl Child {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.inner.as_ref().expect("child").id()
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) {
        if let Some(c) = self.inner.as_mut() {
            let _ = c.kill();
        }
    }

    /// Waits for the child; kills it and panics if the watchdog expires first.
    pub fn wait(mut self) -> ExitStatus {
        let mut c = self.inner.take().expect("child");
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(st) = c.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("watchdog: {} did not finish within {WATCHDOG:?}; killed it", self.what);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits and asserts that the child exited with status 0.
    pub fn wait_success(self) {
        let what = self.what.clone();
        let st = self.wait();
        assert!(st.success(), "{what} failed: {st:?}");
    }

    /// Kills the child and reaps it; returns its status (killed by SIGKILL unless it had
    /// already exited).
    pub fn kill_and_wait(mut self) -> ExitStatus {
        self.kill();
        self.wait()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut c) = self.inner.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for a `fork`ed child (not a spawned [`Child`]) under the watchdog; returns its exit
/// status. A child that hangs is killed, reaped, and the test fails.
pub fn wait_forked(child: nix::unistd::Pid) -> i32 {
    wait_forked_within(child, WATCHDOG)
}

/// [`wait_forked`] with a given watchdog: a child still running after `limit` is killed and
/// reaped, then this panics. A child killed by a signal also fails the test.
pub fn wait_forked_within(child: nix::unistd::Pid, limit: Duration) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::Exited(_, code) => return code,
            WaitStatus::StillAlive if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            WaitStatus::StillAlive => {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(child, None);
                panic!("watchdog: forked child {child} did not finish within {limit:?}; killed it");
            }
            other => {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(child, None);
                panic!("forked child {child} ended as {other:?}");
            }
        }
    }
}

/// True if `st` says the process was killed by SIGKILL.
pub fn was_killed(st: &ExitStatus) -> bool {
    st.signal() == Some(libc::SIGKILL)
}

/// A fresh private temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates `/tmp/interproc-test-<pid>-<n>`.
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(interproc::ipc::names::unique_name("test"));
        std::fs::create_dir(&p).expect("create temp dir");
        TempDir(p)
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
