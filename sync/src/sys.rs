//! The only place in `interproc-sync` that makes syscalls: futex(2) and the monotonic clock.
//!
//! # Contract
//!
//! - [`futex_wait`] blocks only while the word still holds `expected` (the kernel compares
//!   and enqueues atomically with respect to [`futex_wake`] on the same word). It retries
//!   `EINTR` itself against the same *absolute* `CLOCK_MONOTONIC` deadline, so a signal
//!   neither shortens nor stretches a timed wait.
//! - [`futex_wake`] never dereferences the address: for a private futex the kernel uses it
//!   only as a hash key; for a shared futex it looks up the page but does not read or write
//!   the word. So it may be called after the object holding the word has been freed or
//!   unmapped by another thread (at worst it returns `EFAULT`, or wakes waiters of a word
//!   that reused the address, which every futex user must tolerate as a spurious wake-up).
//! - Neither ever panics on an errno; an unexpected one is reported as a (spurious) wake-up,
//!   which every caller handles by re-checking its word.
//!
//! Only built for the real backends: under `--cfg interproc_loom` the words are loom's
//! atomics, which have no address the kernel could wait on.

use std::time::Instant;

use crate::loom::atomic::AtomicU32;
use crate::park::TaskId;

/// How a futex wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// `FUTEX_WAKE` (or a spurious return).
    Woken,
    /// The word did not hold `expected` (`EAGAIN`).
    Changed,
    /// The absolute deadline passed (`ETIMEDOUT`).
    TimedOut,
}

/// Converts `deadline` to an absolute `CLOCK_MONOTONIC` timespec.
///
/// std's `Instant` is `CLOCK_MONOTONIC` on Linux but does not expose its timespec, so the
/// remaining duration is added to a fresh reading of the clock, once per wait; the EINTR
/// retries then reuse the same absolute value.
fn monotonic_deadline(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(crate::loom::time::now());
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, and
    // CLOCK_MONOTONIC is always supported on Linux (clock_gettime(2)).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    let mut sec = now.tv_sec.saturating_add(left.as_secs().try_into().unwrap_or(libc::time_t::MAX));
    let mut nsec = now.tv_nsec + libc::c_long::from(left.subsec_nanos());
    if nsec >= 1_000_000_000 {
        nsec -= 1_000_000_000;
        sec = sec.saturating_add(1);
    }
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

/// `FUTEX_WAIT_BITSET` while `*word == expected`, until woken or until the absolute
/// `CLOCK_MONOTONIC` `deadline` (futex(2): with `FUTEX_WAIT_BITSET` the timeout is absolute,
/// measured against CLOCK_MONOTONIC unless `FUTEX_CLOCK_REALTIME` is given).
///
/// `shared == false` adds `FUTEX_PRIVATE_FLAG`: cheaper, but only valid when every waiter
/// and waker is in this process (a private mapping). Words in `MAP_SHARED` memory that other
/// processes use need `shared == true`.
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Instant>,
    shared: bool,
) -> Wait {
    let op = libc::FUTEX_WAIT_BITSET | if shared { 0 } else { libc::FUTEX_PRIVATE_FLAG };
    let ts = deadline.map(monotonic_deadline);
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    loop {
        // `FUTEX_BITSET_MATCH_ANY` as val3 makes this a plain wait that any FUTEX_WAKE ends.
        // SAFETY: `word` is a live `&AtomicU32`: valid, 4-byte aligned, readable for the call
        // (the kernel only compares it). `ts_ptr` is null or points at `ts`, which outlives it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if rc == 0 {
            return Wait::Woken;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Wait::Changed,
            Some(libc::ETIMEDOUT) => return Wait::TimedOut,
            _ => return Wait::Woken,
        }
    }
}

/// `FUTEX_WAKE` up to `n` waiters of the word at `word` (clamped to `i32::MAX`, which the
/// kernel reads as "all"). Returns how many were woken.
///
/// `word` is never dereferenced (see the module contract), so it may dangle.
pub(crate) fn futex_wake(word: *const AtomicU32, n: u32, shared: bool) -> usize {
    let op = libc::FUTEX_WAKE | if shared { 0 } else { libc::FUTEX_PRIVATE_FLAG };
    let n = n.min(i32::MAX as u32) as i32;
    // SAFETY: FUTEX_WAKE neither reads nor writes user memory at `word`; the address is only
    // a key (private) or a page lookup that fails with EFAULT if unmapped (shared). No other
    // pointer argument is used by FUTEX_WAKE.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word, op, n, 0usize, 0usize, 0u32) };
    usize::try_from(rc).unwrap_or(0)
}

/// The calling thread's kernel id (gettid(2)), for deadlock reports.
#[cfg(feature = "deadlock-detection")]
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::gettid() }
}

/// What `/proc/<id>/stat` says about a task: whether it still runs, and its start stamp.
enum Task {
    Gone,
    /// A zombie: the task has exited. For a thread-group leader, other threads of the
    /// process may still run (`threads` > 1): the *thread* is dead, the *process* is not.
    Zombie {
        threads: u64,
    },
    Running {
        stamp: u32,
    },
}

/// Reads the state and start time of task `id` (a tid or pid; `/proc/<tid>` exists for
/// every thread, though only thread-group leaders are listed) or of `self_path`.
fn task(path: &str) -> Option<Task> {
    let stat = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Task::Gone),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Some(Task::Gone),
        Err(_) => return None,
    };
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are
    // counted from the last ')'. After it, field 3 (state) is the first, field 20
    // (num_threads) the 18th and field 22 (starttime) the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let state = *fields.first()?;
    if state == "Z" || state == "X" || state == "x" {
        let threads = fields.get(17).and_then(|t| t.parse().ok()).unwrap_or(1);
        return Some(Task::Zombie { threads });
    }
    let start: u64 = fields.get(19)?.parse().ok()?;
    Some(Task::Running { stamp: start as u32 })
}

/// `kill(id, 0)` says there is no such process (not merely "not yours").
fn no_such_process(id: u32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission checks.
    let rc = unsafe { libc::kill(id as libc::pid_t, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Whether the thread `who` has died (or its tid now names another thread).
///
/// When `/proc` cannot be read, falls back to `kill(id, 0)`, which only tells whether the
/// id exists.
pub(crate) fn is_dead(who: TaskId) -> bool {
    match task(&format!("/proc/{}/stat", who.id)) {
        Some(Task::Gone | Task::Zombie { .. }) => true,
        Some(Task::Running { stamp }) => who.stamp != 0 && stamp != who.stamp,
        None => no_such_process(who.id),
    }
}

/// Whether the process `who` has died (or its pid now names another process). Unlike a
/// thread, a process whose main thread has exited lives on while another thread runs. A
/// missing `/proc` entry is confirmed with `kill(pid, 0)`, since `/proc` mounted with
/// `hidepid` hides other users' live processes.
pub(crate) fn is_process_dead(who: TaskId) -> bool {
    match task(&format!("/proc/{}/stat", who.id)) {
        Some(Task::Gone) | None => no_such_process(who.id),
        Some(Task::Zombie { threads }) => threads <= 1,
        Some(Task::Running { stamp }) => who.stamp != 0 && stamp != who.stamp,
    }
}

fn stamp_of(path: &str) -> u32 {
    match task(path) {
        Some(Task::Running { stamp }) => stamp,
        _ => 0,
    }
}

std::thread_local! {
    /// This thread's packed `TaskId` (0: not yet known). Reset in a fork child, whose only
    /// thread has a new tid.
    static THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// This process's packed `TaskId` (0: not yet known), one for all its threads, so that
/// they all agree on it. Reset in a fork child. Not part of a modelled algorithm, hence
/// std's atomic.
#[allow(clippy::disallowed_types)]
static PROCESS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn forget_identity_after_fork() {
    // Runs in the child, in the thread that called fork, which is the child's only
    // thread: the caches of other threads do not exist there.
    THREAD.with(|c| c.set(0));
    PROCESS.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// 0: the fork handler is not registered; 1: a thread is registering it; 2: registered.
#[allow(clippy::disallowed_types)]
static FORK_HANDLER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Registers the fork handler once. Never blocks: a `std::sync::Once` would, forever, in a
/// child forked while another thread was inside it (the child inherits the "running"
/// state, and the registering thread does not exist there). The handler is normally
/// registered before `main` by [`REGISTER_AT_START`], before any thread could fork.
fn register_fork_handler() {
    use std::sync::atomic::Ordering::{Acquire, Release};
    if FORK_HANDLER.load(Acquire) == 2 {
        return;
    }
    if FORK_HANDLER.compare_exchange(0, 1, Acquire, Acquire).is_ok() {
        // SAFETY: the handler is a plain `extern "C" fn` that only touches a thread-local
        // of the calling thread and an atomic; registering it has no other precondition.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forget_identity_after_fork)) };
        assert_eq!(
            rc, 0,
            "pthread_atfork failed: cannot keep robust lock identities right across fork"
        );
        FORK_HANDLER.store(2, Release);
    }
    // Otherwise another thread is registering it right now; it is in place before that
    // thread returns, which is all the fork handler needs (a fork that raced with the
    // registration copied this thread's cache, which the child of such a fork may keep:
    // the constructor below makes that window happen before `main`, never after).
}

/// Registers the fork handler when the program starts, before `main` and so before any
/// thread exists that could fork in the middle of the registration. (Miri runs no
/// constructors that call `pthread_atfork`; there the first identity lookup registers it.)
#[cfg(all(target_os = "linux", not(miri)))]
#[used]
#[link_section = ".init_array"]
static REGISTER_AT_START: extern "C" fn() = {
    extern "C" fn register_at_start() {
        register_fork_handler();
    }
    register_at_start
};

/// The calling thread's identity: its tid and start stamp, cached after the first call
/// that could read the stamp (a stamp of 0, "unknown", is not cached).
pub(crate) fn current_thread() -> TaskId {
    let cached = THREAD.with(std::cell::Cell::get);
    if cached != 0 {
        return TaskId::unpack(cached);
    }
    register_fork_handler();
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    let me = TaskId { id: tid, stamp: stamp_of("/proc/thread-self/stat") };
    if me.stamp != 0 {
        THREAD.with(|c| c.set(me.pack()));
    }
    me
}

/// The calling process's identity: its pid and start stamp, cached for the whole process
/// after the first call that could read the stamp.
#[inline]
pub(crate) fn current_process() -> TaskId {
    let cached = PROCESS.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return TaskId::unpack(cached);
    }
    first_process_lookup()
}

/// [`current_process`] before the identity is cached: reads and caches it.
#[cold]
#[inline(never)]
fn first_process_lookup() -> TaskId {
    register_fork_handler();
    let me = TaskId { id: std::process::id(), stamp: stamp_of("/proc/self/stat") };
    if me.stamp != 0 {
        PROCESS.store(me.pack(), std::sync::atomic::Ordering::Relaxed);
    }
    me
}

#[cfg(test)]
mod tests {
    /// The fork handler is in place before `main` (a lazy `Once` could deadlock a child
    /// forked while another thread registered it: seen in a test run).
    #[test]
    #[cfg_attr(miri, ignore = "Miri runs no .init_array constructors")]
    fn the_fork_handler_is_registered_before_main() {
        assert_eq!(super::FORK_HANDLER.load(std::sync::atomic::Ordering::Acquire), 2);
    }
}
