//! Deadlock detection (cargo feature `deadlock-detection`): wait-for cycles found when they
//! happen, lock-order inversions found before they happen, and semaphore and monitor waits
//! that nobody is left to end.
//!
//! Without the feature none of this is compiled: the hooks in the primitives are empty
//! inline functions on zero-sized types (see `benches/sync_deadlock.rs` for the cost with
//! and without it, and `tests/deadlock_off.rs` for the symbol check).
//!
//! # What is checked
//!
//! - **Wait-for cycles, at run time.** A thread that must block (after its spin phase: the
//!   uncontended path only records the owner) registers "I wait for X" and checks whether
//!   it can ever go on: X's owner (a mutex or monitor), X's permit holders (a semaphore:
//!   each thread records the permits it takes in a book of its own, which a blocking
//!   thread scans), or the parties attached to X (a
//!   monitor condition, or a semaphore whose permits nobody holds) must include a thread
//!   that is not itself stuck. If not, the thread reports a [`ReportKind::WaitCycle`]
//!   through itself, or [`ReportKind::NobodyLeftToSignal`].
//! - **Lock-order inversions, like lockdep.** Taking lock B (blocking: `lock`, `enter`, not
//!   `try_lock`) while holding lock A records the edge A → B between lock *classes*; an
//!   edge that closes a cycle in that graph is a [`ReportKind::LockOrderInversion`], a
//!   potential deadlock even if none happened. A class is the lock's label
//!   ([`Mutex::labelled`](crate::Mutex::labelled)) or else its creation site
//!   (`#[track_caller]`). Nesting two locks of one class is not checked (lockdep would
//!   need subclasses): label them apart to have their order checked.
//! - **Monitor hazards.** A monitor wait while holding another lock is reported once per
//!   pair of classes as [`ReportKind::WaitWhileHolding`] (a thread monitor's or a
//!   process-shared one's).
//!
//! # Policy
//!
//! What happens on a deadlock is a [`Policy`], global ([`set_policy`]) or per lock
//! (`deadlock_policy` on [`Mutex`](crate::Mutex::deadlock_policy),
//! [`Semaphore`](crate::Semaphore::deadlock_policy),
//! [`Monitor`](crate::Monitor::deadlock_policy); `set_deadlock_policy` on the
//! process-shared [`process::Mutex`](crate::process::Mutex::set_deadlock_policy),
//! [`process::Semaphore`](crate::process::Semaphore::set_deadlock_policy) and
//! [`process::Monitor`](crate::process::Monitor::set_deadlock_policy), where it belongs to
//! the process that sets it, like their labels); the lock the closing thread waits on
//! decides. Under [`Policy::Error`] the thread that closed the cycle gets
//! `Err(`[`Deadlock`]`)` from the `_checked` calls ([`Mutex::lock_checked`](crate::Mutex::lock_checked),
//! [`Semaphore::acquire_checked`](crate::Semaphore::acquire_checked),
//! [`Monitor::enter_checked`](crate::Monitor::enter_checked),
//! [`MonitorGuard::wait_checked`](crate::MonitorGuard::wait_checked), and the
//! process-shared ones below); it releases nothing by itself: dropping its guards is what
//! lets the others go on. The plain calls cannot
//! return the error, so under `Error` they report and keep waiting. Inversions and hazards
//! are never errors (nothing is blocked): `Error` reports them.
//!
//! Every report is logged to stderr (unless [`set_logging`]`(false)`) and kept for
//! [`take_reports`].
//!
//! # Across processes
//!
//! The process-shared [`process::Mutex`](crate::process::Mutex),
//! [`process::Monitor`](crate::process::Monitor) (entry and condition waits) and
//! [`process::Semaphore`](crate::process::Semaphore) register a thread that has to park
//! in a registry in shared memory, and find wait-for cycles across processes: see
//! [`shared`] for where it lives, how it is cleaned and bounded, and how a cycle is
//! confirmed. Under [`Policy::Error`] (the lock's own, set by this process, or else the
//! global one), `lock_checked` / `enter_checked` return
//! [`process::LockError::Deadlock`](crate::process::LockError::Deadlock), and
//! `acquire_checked` / `acquire_many_checked` return
//! [`process::AcquireError::Deadlock`](crate::process::AcquireError::Deadlock).
//!
//! Their lock order is checked too. A process mutex or monitor goes on the thread's held
//! stack like a thread lock (a blocking `lock` / `enter` records edges, `try_lock` and
//! `lock_timeout` do not), so nesting process locks, or thread and process locks, is
//! checked in the process; its class is its label in this process, or else its
//! shared-memory key. An edge between two process locks is also written to a lock-order
//! table in shared memory beside the registry, keyed by the locks' (device, inode,
//! offset), so an order taken in one process and its inverse in another (even after the
//! first has exited) is a [`ReportKind::LockOrderInversion`] naming each edge's process,
//! thread and call sites: see [`shared`] for the table and its lifetime.
//!
//! # Limits (this release)
//!
//! Across processes, condition waits are listed but never in a cycle (and have no
//! `_checked` call); a semaphore's
//! holders are listed per process (at most 8 per wait; more counts as live). The
//! lock-order table keeps [`shared::ORDER_EDGES`] edges, which live as long as some
//! process attached to it (one that wrote an edge) is alive (when full, those of exited
//! processes make room). An unlabelled process-shared lock in private memory (the heap, a
//! stack) is not ordered: label it to have its order checked. A process-shared lock's
//! label, policy and class are this process's, kept by the address it is mapped at:
//! another process applies its own (the one whose thread closes the cycle decides), and
//! they are dropped when a [`Segment`](crate::shm::Segment) is unmapped there (memory
//! unmapped by other means keeps them, so a lock mapped later at that address inherits
//! them until they are set again). Threads that wait outside
//! these primitives (`join`, I/O, std's locks) count as able to make progress, so they
//! never cause a report. "Attached" parties of a monitor or semaphore are its creator and
//! every thread that entered, acquired, released or waited on it.
//!
//! Semaphore permits are charged to the thread that took them, even after the
//! [`Permit`](crate::Permit) moved to another thread (it is `Send`). So a thread that waits
//! for permits of a semaphore it holds itself is never reported (its own permits may have
//! moved to a running thread that will give them back), not even when it really waits for
//! itself. And for any other waiter, a moved permit still counts as held by its taker: if
//! the taker is blocked elsewhere, in a cycle with that waiter, the waiter is reported
//! although the permit's actual holder may be running (a false report). A semaphore
//! waiter counts as able to go on as soon as the semaphore's word moves after it parked
//! (a release may have woken it): a wait for several permits that goes on after other
//! threads took some of the free ones, without a release, is not reported.
//!
//! # Example
//!
//! ```
//! use std::sync::Barrier;
//! use interproc_sync::deadlock::{self, Policy, ReportKind};
//! use interproc_sync::Mutex;
//!
//! deadlock::set_logging(false);
//! let a = Mutex::new(0).labelled("A").deadlock_policy(Policy::Error);
//! let b = Mutex::new(0).labelled("B").deadlock_policy(Policy::Error);
//! let both_hold_one = Barrier::new(2);
//! let errors: usize = std::thread::scope(|s| {
//!     let t1 = s.spawn(|| {
//!         let _a = a.lock().unwrap();
//!         both_hold_one.wait();
//!         b.lock_checked().is_err() as usize // A, then B
//!     });
//!     let t2 = s.spawn(|| {
//!         let _b = b.lock().unwrap();
//!         both_hold_one.wait();
//!         a.lock_checked().is_err() as usize // B, then A: one of the two gets the error
//!     });
//!     t1.join().unwrap() + t2.join().unwrap()
//! });
//! assert_eq!(errors, 1);
//! let reports = deadlock::take_reports();
//! assert!(reports.iter().any(|r| r.kind == ReportKind::WaitCycle && r.locks().len() == 2));
//! ```

mod detector;
mod order_shared;
mod report;
pub mod shared;

use std::fmt;

pub(crate) use detector::{caller, BlockError, HolderTag, LockMeta, Site, WaitKind};
pub(crate) use order_shared::{unmapped, SharedOrder};
pub use report::{
    Holding, LockInfo, LockKind, OrderEdge, Party, Report, ReportKind, ThreadInfo, WaitFor,
};
pub(crate) use shared::{LazyWait, SharedWait};

use crate::error::PoisonError;

/// What a thread does when it finds a deadlock through itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Log the report and keep waiting (the default).
    #[default]
    Report,
    /// The thread that closed the cycle gets `Err(Deadlock)` from the `_checked` call it
    /// is blocked in. It keeps every lock it holds.
    Error,
    /// The thread that closed the cycle panics with the report.
    Panic,
}

/// Sets the global policy of this process (locks with their own `deadlock_policy`, or a
/// process-shared lock given one by this process's `set_deadlock_policy`, keep theirs).
pub fn set_policy(policy: Policy) {
    detector::set_policy(policy);
}

/// The global policy.
pub fn policy() -> Policy {
    detector::policy()
}

/// Whether reports are also printed to stderr (on by default).
pub fn set_logging(on: bool) {
    detector::set_logging(on);
}

/// The reports made since the last call (the newest 1024 at most), oldest first.
pub fn take_reports() -> Vec<Report> {
    detector::take_reports()
}

/// A deadlock through the calling thread, under [`Policy::Error`]: the report says who
/// waits for what, and who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlock {
    report: Box<Report>,
}

impl Deadlock {
    pub(crate) fn new(report: Report) -> Self {
        Self { report: Box::new(report) }
    }

    /// The report.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report, by value.
    pub fn into_report(self) -> Report {
        *self.report
    }
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.report.fmt(f)
    }
}

impl std::error::Error for Deadlock {}

impl From<Deadlock> for std::io::Error {
    fn from(e: Deadlock) -> Self {
        std::io::Error::new(std::io::ErrorKind::Deadlock, e)
    }
}

/// Why [`Mutex::lock_checked`](crate::Mutex::lock_checked) returned no plain guard.
pub enum CheckedLockError<G> {
    /// The lock was taken but is poisoned; the guard is inside.
    Poisoned(PoisonError<G>),
    /// Waiting would never end: the calling thread closed a wait-for cycle (under
    /// [`Policy::Error`]). It holds no new lock.
    Deadlock(Deadlock),
}

impl<G> From<PoisonError<G>> for CheckedLockError<G> {
    fn from(e: PoisonError<G>) -> Self {
        CheckedLockError::Poisoned(e)
    }
}

impl<G> fmt::Debug for CheckedLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckedLockError::Poisoned(e) => f.debug_tuple("Poisoned").field(e).finish(),
            CheckedLockError::Deadlock(d) => f.debug_tuple("Deadlock").field(d).finish(),
        }
    }
}

impl<G> fmt::Display for CheckedLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckedLockError::Poisoned(e) => e.fmt(f),
            CheckedLockError::Deadlock(d) => d.fmt(f),
        }
    }
}

impl<G> std::error::Error for CheckedLockError<G> {}
