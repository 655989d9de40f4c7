//! [`Semaphore`]: the process-shared counting semaphore that takes back the permits of dead
//! processes.

use std::fmt;
use std::time::{Duration, Instant};

use super::{Header, Kind};
use crate::deadlock::{caller, LockKind, SharedWait};
#[cfg(feature = "deadlock-detection")]
use crate::deadlock::{Deadlock, Policy};
use crate::error::Error;
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::loom::death_point;
use crate::park::{DefaultSharedPark, ParkResult, RobustPark, TaskId};
use crate::robust::{Acquired, RawRobust, POLL_FIRST, POLL_MAX};

/// How many processes can hold permits of one semaphore at the same time.
pub const MAX_HOLDERS: usize = 32;

/// One row of the ledger: a process and how many permits it holds through [`Permit`]s.
#[repr(C)]
struct Holder {
    /// The process's packed [`TaskId`]; 0 for a free row.
    owner: AtomicU64,
    held: AtomicU32,
    _pad: u32,
}

/// The undo record of the change in progress: a process killed half-way through a change
/// of the count and one ledger row leaves this behind, and the next to take the internal
/// lock puts both back as they were.
#[repr(C)]
struct Undo {
    active: AtomicU32,
    row: AtomicU32,
    count: AtomicU32,
    held: AtomicU32,
    owner: AtomicU64,
}

/// A counting semaphore for several processes that gives back the permits of a process
/// that dies holding them, as System V's `SEM_UNDO` does.
///
/// Permits taken with [`acquire`](Semaphore::acquire) and friends come as a [`Permit`],
/// which gives them back when dropped. Every holding process has a row in a ledger inside
/// the semaphore (up to [`MAX_HOLDERS`] processes at once). A waiter that has waited a
/// poll period checks the ledger, and returns the permits of every dead holder to the pool.
/// [`Permit::forget`] *consumes* the permits (they leave the ledger and are not given back,
/// the way a consumer takes an item), and [`release`](Semaphore::release) adds permits
/// that nobody held (the way a producer signals one): with those two a semaphore is a
/// cross-process signal, and a crash never creates or destroys a signal.
///
/// # How it works
///
/// The count, the ledger and an undo record sit behind an internal robust lock (the one
/// under [`Mutex`](super::Mutex)), held for a few stores only. Each change writes the undo
/// record first; if its process is killed half-way, the next process to take the lock
/// gets `OwnerDied` from it and rolls the change back before anything else. Waiting for
/// permits is a shared futex on a sequence word that every release bumps. An uncontended
/// acquire or release makes no syscall.
///
/// # Deadlock detection
///
/// With the cargo feature `deadlock-detection`, a thread that parks for permits without a
/// timeout registers in the cross-process registry (see the `deadlock::shared` module) as
/// waiting on the processes the ledger lists as holders, so `interproc deadlocks` shows the
/// wait and a wait-for cycle through the semaphore and other process-shared locks is
/// reported. The policy is the global one, or the one this process gave the semaphore
/// (`set_deadlock_policy`); under `Policy::Error`, `acquire_checked` and
/// `acquire_many_checked` return `AcquireError::Deadlock` instead of waiting forever.
///
/// # Example
///
/// ```
/// use interproc_sync::process::Semaphore;
/// use interproc_sync::shm::Segment;
///
/// let seats = Segment::anonymous(Semaphore::new(2)).unwrap();
/// let a = seats.acquire().unwrap();
/// let b = seats.try_acquire().unwrap();
/// assert!(seats.try_acquire().is_err());
/// drop((a, b));
/// assert_eq!(seats.available_permits(), 2);
/// ```
#[repr(C)]
pub struct Semaphore<P: RobustPark = DefaultSharedPark> {
    header: Header,
    lock: RawRobust<P>,
    /// Free permits. Changed under `lock`; read without it only as a snapshot.
    count: AtomicU32,
    /// Bumped whenever permits come back; waiters park on it.
    seq: AtomicU32,
    /// Threads between "about to park" and "back under the lock".
    waiters: AtomicU32,
    _pad: u32,
    undo: Undo,
    holders: [Holder; MAX_HOLDERS],
}

// SAFETY: `#[repr(C)]`: plain header, atomic words and arrays of them, no pointers (`P` is
// a zero-sized marker).
#[cfg(not(interproc_loom))]
unsafe impl<P: RobustPark> crate::shm::ShmSafe for Semaphore<P> {}

/// The internal lock, held: the count and ledger may be changed through it.
struct Inside<'a, P: RobustPark> {
    sem: &'a Semaphore<P>,
}

impl<P: RobustPark> Drop for Inside<'_, P> {
    fn drop(&mut self) {
        // SAFETY: an `Inside` exists only while this thread holds the internal lock.
        unsafe { self.sem.lock.unlock() };
    }
}

impl<P: RobustPark> Inside<'_, P> {
    fn count(&self) -> u32 {
        self.sem.count.load(Ordering::Relaxed)
    }

    /// The row of `who`, or a free row claimed for it; `None` if the ledger is full.
    fn row_of(&self, who: TaskId) -> Option<usize> {
        let rows = &self.sem.holders;
        rows.iter()
            .position(|h| {
                let o = h.owner.load(Ordering::Relaxed);
                o != 0 && TaskId::unpack(o).id == who.id
            })
            .or_else(|| rows.iter().position(|h| h.owner.load(Ordering::Relaxed) == 0))
    }

    /// Changes the count by `dc` and row `row` to (`owner`, held + `dh`), undo-logged.
    fn change(&self, row: usize, owner: TaskId, dc: i64, dh: i64) {
        let (sem, h) = (self.sem, &self.sem.holders[row]);
        let u = &sem.undo;
        let (count, held) = (sem.count.load(Ordering::Relaxed), h.held.load(Ordering::Relaxed));
        // Computed (and checked) before the undo record is written: a panic here leaves
        // nothing half-done for a later `roll_back` to misapply.
        let new_held = u32::try_from(i64::from(held) + dh).expect("ledger row within range");
        let new_count = u32::try_from(i64::from(count) + dc).expect("count within range");
        u.row.store(row as u32, Ordering::Relaxed);
        u.count.store(count, Ordering::Relaxed);
        u.held.store(held, Ordering::Relaxed);
        u.owner.store(h.owner.load(Ordering::Relaxed), Ordering::Relaxed);
        u.active.store(1, Ordering::Relaxed);
        death_point();
        sem.count.store(new_count, Ordering::Relaxed);
        death_point();
        h.owner.store(if new_held == 0 { 0 } else { owner.pack() }, Ordering::Relaxed);
        h.held.store(new_held, Ordering::Relaxed);
        death_point();
        u.active.store(0, Ordering::Relaxed);
    }

    /// Rolls back the change a dead process left half-done.
    fn roll_back(&self) {
        let (sem, u) = (self.sem, &self.sem.undo);
        if u.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        let h = &sem.holders[u.row.load(Ordering::Relaxed) as usize];
        sem.count.store(u.count.load(Ordering::Relaxed), Ordering::Relaxed);
        h.owner.store(u.owner.load(Ordering::Relaxed), Ordering::Relaxed);
        h.held.store(u.held.load(Ordering::Relaxed), Ordering::Relaxed);
        death_point();
        u.active.store(0, Ordering::Relaxed);
    }

    /// Returns the permits of every dead holder to the pool; returns how many.
    fn reclaim_dead(&self) -> u32 {
        let mut back = 0;
        for (row, h) in self.sem.holders.iter().enumerate() {
            let owner = h.owner.load(Ordering::Relaxed);
            let held = h.held.load(Ordering::Relaxed);
            if owner != 0 && held > 0 && P::is_process_dead(TaskId::unpack(owner)) {
                self.change(row, TaskId::default(), i64::from(held), -i64::from(held));
                back += held;
            }
        }
        back
    }

    /// Bumps the sequence word, leaves, and wakes the waiters if any.
    fn publish_and_leave(self) {
        let sem = self.sem;
        sem.seq.fetch_add(1, Ordering::Relaxed);
        let waiters = sem.waiters.load(Ordering::Relaxed);
        drop(self);
        if waiters > 0 {
            P::wake(&sem.seq, u32::MAX);
        }
    }
}

impl Semaphore {
    /// A semaphore with `permits` free permits. Move it into shared memory before another
    /// process can see it (a [`Segment`](crate::shm::Segment) does).
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    pub fn new(permits: u32) -> Self {
        Self::with_park(permits)
    }
}

impl<P: RobustPark> Semaphore<P> {
    /// The most permits a semaphore can hold: 2³¹ − 1.
    pub const MAX_PERMITS: u32 = i32::MAX as u32;

    /// A semaphore that parks with the backend `P`.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    pub fn with_park(permits: u32) -> Self {
        assert!(
            permits <= Self::MAX_PERMITS,
            "a semaphore holds at most {} permits",
            Self::MAX_PERMITS
        );
        Self {
            header: Header::new(Kind::Semaphore),
            lock: RawRobust::new(),
            count: AtomicU32::new(permits),
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            _pad: 0,
            undo: Undo {
                active: AtomicU32::new(0),
                row: AtomicU32::new(0),
                count: AtomicU32::new(0),
                held: AtomicU32::new(0),
                owner: AtomicU64::new(0),
            },
            holders: std::array::from_fn(|_| Holder {
                owner: AtomicU64::new(0),
                held: AtomicU32::new(0),
                _pad: 0,
            }),
        }
    }

    /// Takes the internal lock, rolling back what a dead holder of it left half-done.
    fn inside(&self) -> Inside<'_, P> {
        self.header.check(Kind::Semaphore);
        match self.lock.lock_until(None) {
            Acquired::Locked => Inside { sem: self },
            Acquired::OwnerDied => {
                let inside = Inside { sem: self };
                inside.roll_back();
                self.lock.make_consistent();
                inside
            }
            // Never released inconsistent: `make_consistent` follows every take-over, and
            // a taker that dies before it is taken over in turn.
            Acquired::NotRecoverable | Acquired::Busy => {
                unreachable!("the semaphore's internal lock is always made consistent")
            }
        }
    }

    /// The number of free permits: a snapshot that may be stale at once.
    pub fn available_permits(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// Permits held through [`Permit`]s by the process `pid` (a snapshot, for diagnostics).
    pub fn held_by(&self, pid: u32) -> u32 {
        self.holders
            .iter()
            .filter(|h| TaskId::unpack(h.owner.load(Ordering::Relaxed)).id == pid)
            .map(|h| h.held.load(Ordering::Relaxed))
            .sum()
    }

    /// Takes one permit, waiting as long as none is free.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if [`MAX_HOLDERS`] other processes hold permits.
    ///
    /// With the feature `deadlock-detection`, a caller that has to park is registered in
    /// the cross-process registry and a wait-for cycle through it is reported (it keeps
    /// waiting; see [`acquire_checked`](Semaphore::acquire_checked) for the error).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn acquire(&self) -> Result<Permit<'_, P>, Error> {
        self.acquire_many(1)
    }

    /// Takes `n` permits at once, waiting as long as fewer than `n` are free.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Semaphore::acquire).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn acquire_many(&self, n: u32) -> Result<Permit<'_, P>, Error> {
        self.acquire_unchecked(n, None)
    }

    /// Takes one permit like [`acquire`](Semaphore::acquire), but under
    /// [`Policy::Error`](crate::deadlock::Policy::Error) a caller whose wait for the
    /// permit closes a wait-for cycle across processes gets [`AcquireError::Deadlock`]
    /// instead of waiting forever. It takes no permit; dropping the guards and permits it
    /// holds lets the others go on.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Deadlock`] as above; [`AcquireError::TooManyHolders`] as
    /// [`Error::TooManyHolders`] for `acquire`.
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn acquire_checked(&self) -> Result<Permit<'_, P>, AcquireError> {
        self.acquire_many_checked(1)
    }

    /// Takes `n` permits at once like [`acquire_many`](Semaphore::acquire_many), with the
    /// deadlock check of [`acquire_checked`](Semaphore::acquire_checked).
    ///
    /// # Errors
    ///
    /// As [`acquire_checked`](Semaphore::acquire_checked).
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn acquire_many_checked(&self, n: u32) -> Result<Permit<'_, P>, AcquireError> {
        let mut wait = SharedWait::new(self.addr(), LockKind::Semaphore, caller(), true);
        match self.acquire_until(n, None, &mut wait) {
            Ok(Some(permit)) => Ok(permit),
            Ok(None) => Err(AcquireError::Deadlock(
                wait.take_deadlock().expect("a checked wait gives up only on a deadlock"),
            )),
            Err(Error::TooManyHolders { max }) => Err(AcquireError::TooManyHolders { max }),
            Err(e @ (Error::WouldBlock | Error::Timeout)) => {
                unreachable!("an acquire without deadline waits instead of failing with {e}")
            }
        }
    }

    /// Names this semaphore in deadlock reports and in `interproc deadlocks` (feature
    /// `deadlock-detection`; otherwise this does nothing). The label belongs to this
    /// process (and to children it forks afterwards), as for
    /// [`Mutex::set_label`](super::Mutex::set_label).
    pub fn set_label(&self, label: &str) {
        crate::deadlock::shared::set_label(self.addr(), label);
    }

    /// What a wait-for cycle found by a thread of this process waiting for permits of this
    /// semaphore does, instead of the global [`deadlock::policy`](crate::deadlock::policy):
    /// under [`Policy::Error`], [`acquire_checked`](Semaphore::acquire_checked) returns
    /// [`AcquireError::Deadlock`]. As for
    /// [`Mutex::set_deadlock_policy`](super::Mutex::set_deadlock_policy), the policy
    /// belongs to this process, keyed by the semaphore's address here.
    #[cfg(feature = "deadlock-detection")]
    pub fn set_deadlock_policy(&self, policy: Policy) {
        crate::deadlock::shared::set_policy(self.addr(), policy);
    }

    fn addr(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Takes one permit if one is free (after taking back the permits of dead holders),
    /// without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] if none is free; [`Error::TooManyHolders`] as for `acquire`.
    pub fn try_acquire(&self) -> Result<Permit<'_, P>, Error> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if that many are free, without waiting.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Semaphore::try_acquire).
    pub fn try_acquire_many(&self, n: u32) -> Result<Permit<'_, P>, Error> {
        let me = P::current_process();
        let inside = self.inside();
        if inside.count() < n && inside.reclaim_dead() == 0 {
            return Err(Error::WouldBlock);
        }
        self.take(inside, me, n)
    }

    /// Takes one permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if none came free in time; [`Error::TooManyHolders`] as for
    /// `acquire`.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_, P>, Error> {
        self.acquire_many_timeout(1, timeout)
    }

    /// Takes `n` permits at once, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Semaphore::acquire_timeout).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn acquire_many_timeout(&self, n: u32, timeout: Duration) -> Result<Permit<'_, P>, Error> {
        self.acquire_unchecked(n, crate::loom::time::now().checked_add(timeout))
    }

    /// Adds `n` permits that nobody held, and wakes the waiters.
    ///
    /// # Panics
    ///
    /// If the count would exceed [`Semaphore::MAX_PERMITS`]; the count is then unchanged.
    pub fn release(&self, n: u32) {
        let inside = self.inside();
        let count = inside.count().checked_add(n).filter(|c| *c <= Self::MAX_PERMITS);
        let Some(count) = count else {
            drop(inside);
            panic!("process::Semaphore::release: more than {} permits", Self::MAX_PERMITS);
        };
        // One store: no ledger row changes, so nothing to undo.
        self.count.store(count, Ordering::Relaxed);
        inside.publish_and_leave();
    }

    /// Takes `n` permits, which `inside` has checked are free, for `me`.
    fn take<'a>(
        &'a self,
        inside: Inside<'a, P>,
        me: TaskId,
        n: u32,
    ) -> Result<Permit<'a, P>, Error> {
        if inside.count() < n {
            return Err(Error::WouldBlock);
        }
        let row = inside.row_of(me).ok_or(Error::TooManyHolders { max: MAX_HOLDERS })?;
        inside.change(row, me, -i64::from(n), i64::from(n));
        Ok(Permit { sem: self, row, owner: me, n })
    }

    /// The processes holding permits, as (pid, permits): a snapshot read without the
    /// internal lock, for deadlock detection.
    fn holders_snapshot(&self) -> Vec<(u32, u32)> {
        self.holders
            .iter()
            .filter_map(|h| {
                let owner = h.owner.load(Ordering::Relaxed);
                let held = h.held.load(Ordering::Relaxed);
                (owner != 0 && held > 0).then(|| (TaskId::unpack(owner).id, held))
            })
            .collect()
    }

    /// [`acquire_until`](Self::acquire_until) with a wait that reports and never gives up.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    fn acquire_unchecked(&self, n: u32, deadline: Option<Instant>) -> Result<Permit<'_, P>, Error> {
        let mut wait = SharedWait::new(self.addr(), LockKind::Semaphore, caller(), false);
        let permit = self.acquire_until(n, deadline, &mut wait)?;
        Ok(permit.expect("an unchecked wait never gives up"))
    }

    /// Takes `n` permits, waiting until `deadline` (`None`: as long as it takes). A thread
    /// that parks without a deadline registers through `wait` in the cross-process
    /// registry as waiting on the holders (zero-sized and empty without the feature).
    /// `Ok(None)`: `wait` gave up (a checked wait that closed a wait-for cycle under the
    /// `Error` policy; the deadlock is in `wait`).
    fn acquire_until(
        &self,
        n: u32,
        deadline: Option<Instant>,
        wait: &mut SharedWait,
    ) -> Result<Option<Permit<'_, P>>, Error> {
        assert!(n <= Self::MAX_PERMITS, "cannot acquire more than {} permits", Self::MAX_PERMITS);
        let me = P::current_process();
        let mut poll = POLL_FIRST;
        let mut last_check = crate::loom::time::now();
        let mut inside = self.inside();
        loop {
            if inside.count() >= n {
                return self.take(inside, me, n).map(Some);
            }
            if crate::loom::time::passed(deadline) {
                return Err(Error::Timeout);
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            let seq = self.seq.load(Ordering::Relaxed);
            drop(inside);
            // A timed wait does not register (as `process::Mutex::lock_timeout`): it ends by
            // itself, so it is no party to a deadlock, and a report (or the Panic policy)
            // would be wrong about it. `false` only for a checked wait under the Error
            // policy: it leaves without taking anything.
            // Under the Panic policy the hook panics: the guard takes this thread out of
            // `waiters` again while unwinding.
            let leave = LeaveOnUnwind(self);
            let go_on = deadline.is_some() || wait.parked_permits(n, || self.holders_snapshot());
            std::mem::forget(leave);
            if !go_on {
                let inside = self.inside();
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                drop(inside);
                return Ok(None);
            }
            let r = P::poll_wait(&self.seq, seq, deadline, poll, None);
            inside = self.inside();
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            match r {
                ParkResult::TimedOut => {
                    inside.reclaim_dead();
                    return self.take(inside, me, n).map(Some).map_err(|_| Error::Timeout);
                }
                // A poll period has passed since the last check (whether or not other
                // permits came and went meanwhile: under churn the sequence word keeps
                // changing, and the permits this thread needs may be a dead holder's).
                _ if crate::loom::time::now().saturating_duration_since(last_check) >= poll => {
                    inside.reclaim_dead();
                    last_check = crate::loom::time::now();
                    poll = (poll * 2).min(POLL_MAX);
                }
                // A spurious return with nothing changed: check now.
                ParkResult::Woken if self.seq.load(Ordering::Relaxed) == seq => {
                    inside.reclaim_dead();
                    last_check = crate::loom::time::now();
                }
                _ => {}
            }
        }
    }
}

/// Counts a waiter out of the semaphore's `waiters` (under the internal lock) when dropped: a
/// guard over the deadlock hook, forgotten once the hook returned, dropped only if it
/// panicked (the `Panic` policy), so that the count stays right.
struct LeaveOnUnwind<'a, P: RobustPark>(&'a Semaphore<P>);

impl<P: RobustPark> Drop for LeaveOnUnwind<'_, P> {
    fn drop(&mut self) {
        let inside = self.0.inside();
        self.0.waiters.fetch_sub(1, Ordering::Relaxed);
        drop(inside);
    }
}

impl<P: RobustPark> fmt::Debug for Semaphore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("process::Semaphore")
            .field("available", &self.available_permits())
            .finish_non_exhaustive()
    }
}

/// Why [`Semaphore::acquire_checked`] or [`Semaphore::acquire_many_checked`] took no
/// permits (feature `deadlock-detection`).
#[cfg(feature = "deadlock-detection")]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireError {
    /// `max` other processes hold permits (the ledger is full), as
    /// [`Error::TooManyHolders`]: release some, or use fewer processes.
    TooManyHolders {
        /// The size of the ledger.
        max: usize,
    },
    /// Under [`Policy::Error`]: the calling thread's wait for permits closed a wait-for
    /// cycle across processes. It holds no new permit; the report names every party
    /// (pid, tid, thread name) and lock, and the processes holding the permits.
    Deadlock(Deadlock),
}

#[cfg(feature = "deadlock-detection")]
impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::TooManyHolders { max } => Error::TooManyHolders { max: *max }.fmt(f),
            AcquireError::Deadlock(d) => d.fmt(f),
        }
    }
}

#[cfg(feature = "deadlock-detection")]
impl std::error::Error for AcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireError::TooManyHolders { .. } => None,
            AcquireError::Deadlock(d) => Some(d),
        }
    }
}

#[cfg(feature = "deadlock-detection")]
impl From<AcquireError> for std::io::Error {
    fn from(e: AcquireError) -> Self {
        match e {
            AcquireError::TooManyHolders { max } => Error::TooManyHolders { max }.into(),
            AcquireError::Deadlock(d) => d.into(),
        }
    }
}

/// Permits taken from a process-shared [`Semaphore`] and recorded in its ledger; they go
/// back when this is dropped, or when the process dies.
#[must_use = "the permits go back as soon as the Permit is dropped"]
pub struct Permit<'a, P: RobustPark = DefaultSharedPark> {
    sem: &'a Semaphore<P>,
    row: usize,
    owner: TaskId,
    n: u32,
}

impl<P: RobustPark> Permit<'_, P> {
    /// How many permits this holds.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// Consumes the permits: they leave the ledger and do not come back (until someone
    /// calls [`Semaphore::release`]); returns how many.
    pub fn forget(self) -> u32 {
        let n = self.n;
        if P::current_process().id == self.owner.id {
            let inside = self.sem.inside();
            inside.change(self.row, self.owner, 0, -i64::from(n));
        }
        std::mem::forget(self);
        n
    }
}

impl<P: RobustPark> Drop for Permit<'_, P> {
    fn drop(&mut self) {
        // A copy inherited through fork() belongs to the parent's ledger row: the parent
        // gives those permits back, not the child.
        if self.n == 0 || P::current_process().id != self.owner.id {
            return;
        }
        let inside = self.sem.inside();
        inside.change(self.row, self.owner, i64::from(self.n), -i64::from(self.n));
        inside.publish_and_leave();
    }
}

impl<P: RobustPark> fmt::Debug for Permit<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("process::Permit").field("count", &self.n).finish()
    }
}
