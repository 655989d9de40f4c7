//! Process-shared, robust flavours of the primitives: [`Mutex`], [`Semaphore`] and
//! [`Monitor`], to place in memory that several processes map.
//!
//! Each is `#[repr(C)]`, holds no pointers (only atomic words, indices and the user's
//! [`ShmSafe`](crate::shm::ShmSafe) data), starts with a [`Header`] (magic number, layout
//! version, kind), and blocks on shared futexes ([`SharedFutex`](crate::SharedFutex)), so
//! processes that map the same memory at different addresses meet on the same words.
//!
//! # Robust to the death of a process
//!
//! A process killed while it holds a lock (SIGKILL, a crash, the OOM killer) runs no
//! destructor. The thread flavours would then hang every later locker; these do not:
//!
//! - **Mutex and Monitor.** The next locker gets [`LockError::OwnerDied`] with the guard
//!   inside: it holds the lock, and the data may be half-updated. It repairs the data and
//!   calls `make_consistent()`, after which the lock is normal again. If it drops the guard
//!   without doing so, the lock becomes *not recoverable*: every later lock returns
//!   [`LockError::NotRecoverable`] (as with POSIX robust mutexes). Threads that were already
//!   waiting when the owner died wake up and see the same.
//! - **Semaphore.** Permits held (through a [`Permit`]) by a process that has died go back
//!   to the semaphore, as with System V's `SEM_UNDO`.
//!
//! The kernel's robust-futex list is taken by glibc, so death is detected by the waiters:
//! the lock word holds the owner's tid, the owner publishes its start time beside it (so a
//! recycled tid is not mistaken for the owner), and a waiter parks for a bounded time only
//! (250 µs, doubling up to 100 ms) and then checks `/proc/<tid>/stat`. An uncontended lock
//! makes no syscall and checks nothing; a `try_lock` that finds the lock held reads `/proc`
//! once (so that it, too, can take over from a dead owner).
//!
//! # Limits
//!
//! - **exec.** A process that calls `execve` while holding a lock keeps its pid and start
//!   time, so it looks alive until the new program exits (pthread's robust mutexes are
//!   released by the kernel at exec). Release locks before exec.
//! - **Namespaces.** Tids and start times are read in the reader's pid namespace: all the
//!   processes sharing a primitive must be in the same pid namespace (and see each other in
//!   `/proc`; with `hidepid`, share only between processes of one user).
//! - **Guards across fork.** A guard copied into a `fork()`ed child does nothing when the
//!   child drops it (the lock belongs to the parent's thread); likewise a [`Permit`].
//!
//! # Placing them in shared memory
//!
//! Put them in a [`Segment`](crate::shm::Segment) (a named POSIX segment or an anonymous
//! memfd), alone or inside your own `#[repr(C)]` struct. A segment publishes its contents
//! whole, so another process never sees a half-initialised primitive.
//!
//! All processes must run builds of the same version of this crate: the header's magic and
//! layout version are checked on every lock, and a mismatch panics rather than corrupt the
//! lock.

mod monitor;
mod mutex;
mod semaphore;

use std::fmt;

pub use monitor::{Monitor, MonitorGuard};
pub use mutex::{Mutex, MutexGuard};
#[cfg(feature = "deadlock-detection")]
pub use semaphore::AcquireError;
pub use semaphore::{Permit, Semaphore, MAX_HOLDERS};

/// The first bytes of every process-shared primitive.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    magic: u32,
    version: u16,
    kind: u16,
}

/// `"IPsy"`, little-endian.
const MAGIC: u32 = u32::from_le_bytes(*b"IPsy");
/// Bumped whenever the layout of any process-shared primitive changes.
const LAYOUT_VERSION: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
enum Kind {
    Mutex = 1,
    Semaphore = 2,
    Monitor = 3,
}

impl Header {
    const fn new(kind: Kind) -> Self {
        Header { magic: MAGIC, version: LAYOUT_VERSION, kind: kind as u16 }
    }

    /// Panics unless this is an initialised header of `kind` in this crate's layout.
    #[inline]
    fn check(&self, kind: Kind) {
        if *self != Header::new(kind) {
            self.mismatch(kind);
        }
    }

    #[cold]
    #[inline(never)]
    fn mismatch(&self, kind: Kind) -> ! {
        if self.magic != MAGIC {
            panic!(
                "not an initialised interproc process::{kind:?} (magic {:#010x}, expected \
                 {MAGIC:#010x}): the shared memory was not set up by a constructor, or was \
                 overwritten",
                self.magic
            );
        }
        panic!(
            "interproc process::{kind:?} layout mismatch: found version {} kind {}, this \
             build has version {LAYOUT_VERSION} kind {}; every process must use the same \
             version of interproc-sync",
            self.version, self.kind, kind as u16
        );
    }
}

/// Why a lock of a process-shared [`Mutex`] or [`Monitor`] did not return a plain guard.
pub enum LockError<G> {
    /// The lock was taken, but its previous owner died holding it: the data may be
    /// half-updated. The guard is inside. Repair the data, then call `make_consistent()` on
    /// the guard; dropping the guard without that makes the lock not recoverable.
    OwnerDied(G),
    /// A previous owner died, and the process that took over dropped the guard without
    /// `make_consistent()`: the lock is lost for good. Recreate the object.
    NotRecoverable,
    /// `try_` calls only: another thread or process holds the lock.
    WouldBlock,
    /// `_timeout` calls only: the lock stayed held until the timeout passed.
    Timeout,
    /// `_checked` calls only (feature `deadlock-detection`), under
    /// [`Policy::Error`](crate::deadlock::Policy::Error): the calling thread closed a
    /// wait-for cycle across processes. It holds no new lock; the report names every
    /// party (pid, tid, thread name) and lock.
    #[cfg(feature = "deadlock-detection")]
    Deadlock(crate::deadlock::Deadlock),
}

impl<G> LockError<G> {
    /// The guard of an [`OwnerDied`](LockError::OwnerDied), if that is what this is.
    pub fn into_owner_died(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// The same error with the guard mapped by `f`.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::NotRecoverable => LockError::NotRecoverable,
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            #[cfg(feature = "deadlock-detection")]
            LockError::Deadlock(d) => LockError::Deadlock(d),
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied(_) => "OwnerDied(..)",
            LockError::NotRecoverable => "NotRecoverable",
            LockError::WouldBlock => "WouldBlock",
            LockError::Timeout => "Timeout",
            #[cfg(feature = "deadlock-detection")]
            LockError::Deadlock(d) => return f.debug_tuple("Deadlock").field(d).finish(),
        })
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::OwnerDied(_) => {
                "the previous owner died holding the lock: repair the data, then call make_consistent()"
            }
            LockError::NotRecoverable => {
                "the lock is not recoverable: an owner died and the data was never marked consistent; recreate it"
            }
            LockError::WouldBlock => "the lock is held by another thread or process",
            LockError::Timeout => "timed out waiting for the lock",
            #[cfg(feature = "deadlock-detection")]
            LockError::Deadlock(d) => return d.fmt(f),
        })
    }
}

impl<G> std::error::Error for LockError<G> {}

impl<G> From<LockError<G>> for std::io::Error {
    fn from(e: LockError<G>) -> Self {
        let kind = match e {
            LockError::WouldBlock => std::io::ErrorKind::WouldBlock,
            LockError::Timeout => std::io::ErrorKind::TimedOut,
            LockError::OwnerDied(_) | LockError::NotRecoverable => std::io::ErrorKind::Other,
            #[cfg(feature = "deadlock-detection")]
            LockError::Deadlock(_) => std::io::ErrorKind::Deadlock,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

/// Turns a robust acquisition into a guard or a [`LockError`].
fn guard_or<G>(
    got: crate::robust::Acquired,
    busy: LockError<G>,
    guard: impl FnOnce() -> G,
) -> Result<G, LockError<G>> {
    use crate::robust::Acquired;
    match got {
        Acquired::Locked => Ok(guard()),
        Acquired::OwnerDied => Err(LockError::OwnerDied(guard())),
        Acquired::NotRecoverable => Err(LockError::NotRecoverable),
        Acquired::Busy => Err(busy),
    }
}
