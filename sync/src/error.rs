//! Errors: variants a caller can act on.

use std::fmt;

/// Why an acquire that does not wait forever gave up.
///
/// Returned by [`Semaphore`](crate::Semaphore) and [`Monitor`](crate::Monitor) calls; the
/// [`Mutex`](crate::Mutex) calls, which can also report poisoning, use [`LockError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `try_` call found the primitive unavailable.
    #[error("the operation would block")]
    WouldBlock,
    /// A `_timeout` call's deadline passed first.
    #[error("timed out")]
    Timeout,
    /// A process-shared [`Semaphore`](crate::process::Semaphore)'s ledger is full: `max`
    /// other processes hold permits. Release some, or use fewer processes.
    #[error("{max} processes already hold permits of this semaphore (its ledger is full): release some first")]
    TooManyHolders {
        /// The size of the ledger.
        max: usize,
    },
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e {
            Error::WouldBlock => std::io::ErrorKind::WouldBlock,
            Error::Timeout => std::io::ErrorKind::TimedOut,
            Error::TooManyHolders { .. } => std::io::ErrorKind::QuotaExceeded,
        };
        std::io::Error::new(kind, e)
    }
}

/// The lock was taken, but a thread panicked while holding it before, so the data may be
/// half-updated. The guard is inside: [`into_inner`](PoisonError::into_inner) takes it
/// anyway.
///
/// Only mutexes built with [`Mutex::new`](crate::Mutex::new) poison;
/// [`Mutex::new_unpoisoned`](crate::Mutex::new_unpoisoned) never does.
pub struct PoisonError<G> {
    guard: G,
}

impl<G> PoisonError<G> {
    pub(crate) fn new(guard: G) -> Self {
        Self { guard }
    }

    /// The guard, to use the data despite the poisoning.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoisonError").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("poisoned lock: another thread panicked while holding it")
    }
}

impl<G> std::error::Error for PoisonError<G> {}

impl<G> From<PoisonError<G>> for std::io::Error {
    fn from(e: PoisonError<G>) -> Self {
        std::io::Error::other(e.to_string())
    }
}

/// Why [`Mutex::try_lock`](crate::Mutex::try_lock) or
/// [`Mutex::lock_timeout`](crate::Mutex::lock_timeout) did not return a plain guard.
pub enum LockError<G> {
    /// The lock was taken but is poisoned; the guard is inside.
    Poisoned(PoisonError<G>),
    /// `try_lock` only: another thread holds the lock.
    WouldBlock,
    /// `lock_timeout` only: the timeout passed before the lock was free.
    Timeout,
}

impl<G> From<PoisonError<G>> for LockError<G> {
    fn from(e: PoisonError<G>) -> Self {
        LockError::Poisoned(e)
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Poisoned(e) => f.debug_tuple("Poisoned").field(e).finish(),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Poisoned(e) => e.fmt(f),
            LockError::WouldBlock => Error::WouldBlock.fmt(f),
            LockError::Timeout => Error::Timeout.fmt(f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

impl<G> From<LockError<G>> for std::io::Error {
    fn from(e: LockError<G>) -> Self {
        match e {
            LockError::Poisoned(p) => p.into(),
            LockError::WouldBlock => Error::WouldBlock.into(),
            LockError::Timeout => Error::Timeout.into(),
        }
    }
}
