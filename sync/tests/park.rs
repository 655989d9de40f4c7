//! The futex backends on their own: `PrivateFutex` between threads, `SharedFutex` on a
//! `MAP_SHARED` mapping between threads and between real processes (fork, under a
//! watchdog).
//!
//! No test asserts how long anything takes: timeouts are checked by their result only.
#![cfg(not(interproc_loom))] // real threads and futexes; the models are in loom_*.rs
#![allow(clippy::disallowed_methods)] // std::thread: these tests run real threads

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::SeqCst;
use std::thread;
use std::time::{Duration, Instant};

use interproc_sync::park::AtomicU32;
use interproc_sync::{Mutex, Park, ParkResult, PrivateFutex, SharedFutex};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

fn basics<P: Park>(word: &AtomicU32) {
    word.store(7, SeqCst);
    assert_eq!(P::wait(word, 8, None), ParkResult::Changed);
    assert_eq!(P::wait(word, 7, Some(Instant::now())), ParkResult::TimedOut);
    assert_eq!(
        P::wait(word, 7, Some(Instant::now() + Duration::from_millis(5))),
        ParkResult::TimedOut
    );
    assert_eq!(P::wake(word, 1), 0, "nobody waits");
}

/// A waiter parks until the word changes; the waker changes it, then wakes.
fn wakes<P: Park>(word: &AtomicU32) {
    word.store(0, SeqCst);
    thread::scope(|s| {
        s.spawn(|| {
            while word.load(SeqCst) == 0 {
                P::wait(word, 0, None);
            }
        });
        thread::sleep(Duration::from_millis(10)); // let it park (not required for correctness)
        word.store(1, SeqCst);
        P::wake(word, u32::MAX);
    });
}

#[test]
fn private_futex() {
    let word = AtomicU32::new(0);
    basics::<PrivateFutex>(&word);
    wakes::<PrivateFutex>(&word);
}

/// An anonymous `MAP_SHARED` mapping: shared with children after fork.
struct SharedPage(NonNull<std::ffi::c_void>);

impl SharedPage {
    fn new() -> Self {
        // SAFETY: a fresh anonymous mapping aliases nothing; it is unmapped in Drop.
        let p = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(4096).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .unwrap();
        Self(p)
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping came from mmap_anonymous with this length, and every reference
        // into it is gone (they borrow `self`).
        unsafe { munmap(self.0, 4096) }.unwrap();
    }
}

#[test]
#[cfg_attr(miri, ignore = "Miri has no MAP_SHARED mappings")]
fn shared_futex_between_threads() {
    let page = SharedPage::new();
    // SAFETY: the page is zeroed, page-aligned and lives until `page` drops; a zeroed
    // AtomicU32 is a valid 0.
    let word = unsafe { page.0.cast::<AtomicU32>().as_ref() };
    basics::<SharedFutex>(word);
    wakes::<SharedFutex>(word);
}

/// Waits for `pid` with a generous watchdog: a child that hangs is killed and fails the
/// test instead of hanging it.
fn wait_with_watchdog(pid: nix::unistd::Pid) -> i32 {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive if Instant::now() < give_up => {
                thread::sleep(Duration::from_millis(5))
            }
            WaitStatus::StillAlive => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                panic!("watchdog: child {pid} hung and was killed");
            }
            WaitStatus::Exited(_, code) => return code,
            other => panic!("child {pid} ended abnormally: {other:?}"),
        }
    }
}

/// `Mutex<_, SharedFutex>` in a `MAP_SHARED` page, used by 4 forked processes × 10,000
/// increments: the count is exact. (A check of the shared backend across processes; the
/// process-shared flavours with their versioned header and owner-death recovery are not
/// built yet.)
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn shared_futex_mutex_between_processes() {
    type Shared = Mutex<u64, SharedFutex>;
    const PROCS: u64 = 4;
    const ITERS: u64 = 10_000;
    let page = SharedPage::new();
    let m = page.0.cast::<Shared>().as_ptr();
    // SAFETY: the page is large enough and aligned for `Shared`, and nothing else refers to
    // it yet.
    unsafe { m.write(Mutex::with_park(0, false)) };
    // SAFETY: initialised just above; the page outlives every use (children exit first).
    let m = unsafe { &*m };
    let mut children = Vec::new();
    for _ in 0..PROCS {
        // SAFETY: the child only runs atomics, futex syscalls and `_exit`, all
        // async-signal-safe, so forking a multi-threaded test process is sound.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                for _ in 0..ITERS {
                    if let Ok(mut g) = m.lock() {
                        *g += 1;
                    }
                }
                // SAFETY: `_exit` skips the test harness's atexit handlers and unwinding,
                // which must not run in a forked child.
                unsafe { libc::_exit(0) };
            }
            ForkResult::Parent { child } => children.push(child),
        }
    }
    for c in children {
        assert_eq!(wait_with_watchdog(c), 0);
    }
    assert_eq!(*m.lock().unwrap(), PROCS * ITERS);
}
