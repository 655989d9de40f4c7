//! [`Semaphore`]: a counting semaphore on one futex word.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::deadlock::{self, BlockError, HolderTag, LockKind, LockMeta, Site, WaitKind};
use crate::error::Error;
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::park::{DefaultPark, Park, ParkResult};

/// Bit 31 of the word: threads may be parked on it. Bits 0..31 count the free permits.
const WAITERS: u32 = 1 << 31;
const COUNT: u32 = WAITERS - 1;

/// The order of a take's compare-and-swap: Acquire, paired with a release's Release. With
/// deadlock detection also Release, so that a thread that sees the count taken sees the
/// taker's claim in its record (`LockMeta::claim`), which comes before (free on x86).
const TAKE: Ordering =
    if cfg!(feature = "deadlock-detection") { Ordering::AcqRel } else { Ordering::Acquire };

/// A counting semaphore: a pool of permits that threads take and give back.
///
/// [`acquire`](Semaphore::acquire) takes one permit and
/// [`acquire_many`](Semaphore::acquire_many) takes `n` at once (all or nothing); both wait
/// while too few are free, and return a [`Permit`] that gives them back when dropped.
/// [`release`](Semaphore::release) adds permits without a `Permit`, so a semaphore created
/// with zero permits works as a signal from one thread to another.
///
/// # How it works
///
/// The whole state is one 32-bit word: the number of free permits (up to
/// [`Semaphore::MAX_PERMITS`]) and a "waiters" bit, set by a thread before it parks. An
/// uncontended acquire or release is one compare-and-swap and no syscall. A release that
/// finds the waiters bit clears it and wakes *every* parked thread, which re-check: with
/// `acquire_many`, waking only one could pick a thread that needs more permits than are
/// free while one that needs fewer stays asleep.
///
/// `release` never touches the semaphore after the compare-and-swap that adds the permits:
/// that store may let a waiter through, and the waiter may free the semaphore (or unmap the
/// memory that holds it) at once. So `release` takes the word's address before the store and
/// afterwards only hands that address to [`Park::wake`], which must not dereference it
/// (a futex wake uses the address as a key; see [`Park`]).
///
/// # Deadlock detection
///
/// With the cargo feature `deadlock-detection` (see the `deadlock` module), the
/// semaphore keeps a ledger of who holds how many permits, and a thread that blocks for
/// permits waits on those holders: if they are all stuck waiting on it (or, when nobody
/// holds permits, every thread attached to the semaphore is blocked), the wait is reported.
/// Permits are charged to the thread that took them, also after their [`Permit`] was sent
/// to another thread: so a thread waiting for permits of a semaphore it holds itself is
/// never reported (they may be in a running thread's hands), and a moved permit whose
/// taker is blocked in a cycle with a waiter can make that waiter's report false (see the
/// `deadlock` module's limits).
///
/// # Example
///
/// At most two of four workers are ever inside the section:
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::thread;
/// use interproc_sync::Semaphore;
///
/// let slots = Semaphore::new(2);
/// let inside = AtomicU32::new(0);
/// thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             let _permit = slots.acquire();
///             assert!(inside.fetch_add(1, Ordering::SeqCst) < 2);
///             inside.fetch_sub(1, Ordering::SeqCst);
///         }); // the permit goes back here
///     }
/// });
/// assert_eq!(slots.available_permits(), 2);
/// ```
pub struct Semaphore<P: Park = DefaultPark> {
    word: AtomicU32,
    /// Deadlock detection's state (the ledger): zero-sized without the feature.
    meta: LockMeta,
    _park: PhantomData<fn() -> P>,
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn new(permits: u32) -> Self {
        Self::with_park(permits)
    }
}

impl<P: Park> Semaphore<P> {
    /// The most permits a semaphore can hold: 2³¹ − 1 (bit 31 of the word is the waiters
    /// flag).
    pub const MAX_PERMITS: u32 = COUNT;

    /// A semaphore with `permits` free permits that parks with the backend `P`.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn with_park(permits: u32) -> Self {
        assert!(permits <= COUNT, "a semaphore holds at most {COUNT} permits");
        Self {
            word: AtomicU32::new(permits),
            meta: LockMeta::new(LockKind::Semaphore),
            _park: PhantomData,
        }
    }

    /// Names the semaphore for deadlock reports. Without the feature `deadlock-detection`
    /// the label is dropped.
    #[must_use]
    pub fn labelled(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.meta.set_label(label.into());
        self
    }

    /// What a deadlock through a thread blocked on this semaphore does (instead of the
    /// global [`deadlock::policy`]).
    #[cfg(feature = "deadlock-detection")]
    #[must_use]
    pub fn deadlock_policy(self, policy: deadlock::Policy) -> Self {
        self.meta.set_policy(policy);
        self
    }

    /// Takes `n` permits, waiting until `deadline`, with the deadlock hooks (the wait
    /// record and check while blocked, the ledger entry once taken).
    #[inline]
    fn take(
        &self,
        n: u32,
        deadline: Option<Instant>,
        checked: bool,
        at: Site,
    ) -> Result<Option<Permit<'_, P>>, BlockError> {
        // The thread counts as a party that may release, and as a holder, before the count
        // can change hands: attached only once it held the permit, a winner still running
        // was for a moment neither a holder nor attached, and a thread blocking then was
        // told that nobody was left to signal (or, with another holder stuck, that they
        // formed a cycle). Plain stores to the thread's own record.
        let tag = self.meta.claim(n, at);
        let got = self.try_take(n) || self.take_contended(&tag, n, deadline, checked, at)?;
        Ok(got.then(|| {
            self.meta.took(&tag, n, at);
            Permit { sem: self, n, tag }
        }))
    }

    /// The rest of [`take`](Self::take) after a failed first try, out of line: the
    /// uncontended acquire stays small enough to inline, with no wait record or hook
    /// closures to set up.
    #[cold]
    fn take_contended(
        &self,
        tag: &HolderTag,
        n: u32,
        deadline: Option<Instant>,
        checked: bool,
        at: Site,
    ) -> Result<bool, BlockError> {
        assert!(n <= COUNT, "cannot acquire more than {COUNT} permits");
        // The wait record is made at the first park, and it is registered while parked
        // only: a woken thread that takes the permits is never seen blocked while not yet a
        // holder again.
        let slot = std::cell::RefCell::new(None);
        self.acquire_contended(
            n,
            deadline,
            |expected| {
                // Parked, the thread holds nothing it claimed.
                tag.parked();
                let mut slot = slot.borrow_mut();
                let slot = slot
                    .get_or_insert_with(|| self.meta.wait_slot(WaitKind::Permits(n), at, checked));
                // Once the word moves (a release woke the thread), a check by another thread
                // counts this one as able to go on, even before `woken` below.
                slot.parks_on(&self.word, expected);
                // No wait while the word moved or the permits came back (read by a
                // read-modify-write: see `block_unless`).
                slot.block_unless(|| {
                    let s = self.word.fetch_add(0, Ordering::AcqRel);
                    s != expected || s & COUNT >= n
                })
            },
            || {
                if let Some(s) = slot.borrow_mut().as_mut() {
                    s.woken();
                }
                tag.unparked(&self.meta);
            },
        )
    }

    /// Takes `n` permits, waiting as long as needed, unless waiting would never end: under
    /// the [`Error`](deadlock::Policy::Error) policy, a thread whose wait closes a
    /// deadlock gets the report instead. It keeps what it already holds.
    ///
    /// # Errors
    ///
    /// [`deadlock::Deadlock`] as above.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Semaphore::MAX_PERMITS`].
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn acquire_many_checked(&self, n: u32) -> Result<Permit<'_, P>, deadlock::Deadlock> {
        let permit = self.take(n, None, true, deadlock::caller())?;
        Ok(permit.expect("an acquire without deadline cannot time out"))
    }

    /// [`acquire_many_checked`](Semaphore::acquire_many_checked) of one permit.
    ///
    /// # Errors
    ///
    /// [`deadlock::Deadlock`] under the `Error` policy, if waiting would never end.
    #[cfg(feature = "deadlock-detection")]
    #[track_caller]
    pub fn acquire_checked(&self) -> Result<Permit<'_, P>, deadlock::Deadlock> {
        self.acquire_many_checked(1)
    }

    /// The number of free permits: a snapshot that may be stale at once.
    pub fn available_permits(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & COUNT
    }

    /// Takes one permit, waiting as long as none is free.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    #[inline]
    pub fn acquire(&self) -> Permit<'_, P> {
        self.acquire_many(1)
    }

    /// Takes `n` permits at once, waiting as long as fewer than `n` are free. Permits are
    /// not reserved while waiting, so a large `n` may wait behind a stream of small ones.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Semaphore::MAX_PERMITS`] (it could never succeed).
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    #[inline]
    pub fn acquire_many(&self, n: u32) -> Permit<'_, P> {
        match self.take(n, None, false, deadlock::caller()) {
            Ok(Some(permit)) => permit,
            _ => unreachable!("an acquire without deadline or check cannot fail"),
        }
    }

    /// Takes one permit if one is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] if no permit is free.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn try_acquire(&self) -> Result<Permit<'_, P>, Error> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if that many are free, without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] if fewer than `n` are free.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn try_acquire_many(&self, n: u32) -> Result<Permit<'_, P>, Error> {
        let at = deadlock::caller();
        let tag = self.meta.claim(n, at); // before the count changes hands, as in `take`
        if self.try_take(n) {
            self.meta.took(&tag, n, at);
            Ok(Permit { sem: self, n, tag })
        } else {
            Err(Error::WouldBlock)
        }
    }

    /// Takes one permit, waiting at most `timeout` (on `CLOCK_MONOTONIC`).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no permit came free in time. A timed-out acquire holds nothing
    /// and leaves the count as it found it.
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_, P>, Error> {
        self.acquire_many_timeout(1, timeout)
    }

    /// Takes `n` permits at once, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if `n` permits were not free together in time.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`Semaphore::MAX_PERMITS`].
    #[cfg_attr(feature = "deadlock-detection", track_caller)]
    pub fn acquire_many_timeout(&self, n: u32, timeout: Duration) -> Result<Permit<'_, P>, Error> {
        match self.take(n, crate::loom::time::now().checked_add(timeout), false, deadlock::caller())
        {
            Ok(Some(permit)) => Ok(permit),
            _ => Err(Error::Timeout),
        }
    }

    /// Adds `n` permits and wakes the waiters, if any.
    ///
    /// # Panics
    ///
    /// If the count would exceed [`Semaphore::MAX_PERMITS`]; the count is then unchanged.
    pub fn release(&self, n: u32) {
        self.meta.attach();
        self.release_word(n);
    }

    /// The releasing half of [`release`](Semaphore::release), with no hook.
    fn release_word(&self, n: u32) {
        // Taken before the store below: afterwards `self` may be gone (see the type docs).
        let word: *const AtomicU32 = &self.word;
        let mut s = self.word.load(Ordering::Relaxed);
        loop {
            let count = (s & COUNT).checked_add(n).filter(|c| *c <= COUNT);
            let Some(count) = count else {
                panic!("Semaphore::release: more than {COUNT} permits");
            };
            // Release: hands the releaser's writes to the thread that takes these permits.
            // Clearing WAITERS here is what obliges this thread to wake everyone below.
            match self.word.compare_exchange_weak(s, count, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        // From here on, `self` is not touched: only the address goes to the kernel.
        if s & WAITERS != 0 {
            P::wake(word, u32::MAX);
        }
    }

    /// One attempt (retried only on a racing update) to take `n` permits.
    fn try_take(&self, n: u32) -> bool {
        let mut s = self.word.load(Ordering::Relaxed);
        while s & COUNT >= n {
            // Acquire: pairs with the Release in `release`.
            match self.word.compare_exchange_weak(s, s - n, TAKE, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// Takes `n` permits (at most [`COUNT`]), waiting until `deadline`, after a failed
    /// `try_take`. `on_block` runs each time before the thread parks, with the word it
    /// parks on (deadlock detection; without it, a closure with nothing to do); its `Err`
    /// makes the acquire give up like a timeout (a release wakes every waiter, so leaving
    /// strands nobody) and is returned. `on_wake` runs after each park.
    fn acquire_contended<E>(
        &self,
        n: u32,
        deadline: Option<Instant>,
        mut on_block: impl FnMut(u32) -> Result<(), E>,
        mut on_wake: impl FnMut(),
    ) -> Result<bool, E> {
        // Entered after a failed `try_take`, which the loop repeats at its end.
        loop {
            // The futex only times out when it really sleeps; while other threads keep
            // changing the word it returns at once, so the deadline is checked here too.
            // Giving up strands nobody: a release wakes every waiter.
            if crate::loom::time::passed(deadline) {
                return Ok(false);
            }
            let s = self.word.load(Ordering::Relaxed);
            // Unless permits came back meanwhile, or the word moved under the flagging.
            let expected = s | WAITERS;
            if s & COUNT < n
                && (s == expected
                    || self
                        .word
                        .compare_exchange(s, expected, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok())
            {
                on_block(expected)?;
                // Parks only while the word still says "too few, waiters flagged": any
                // release changes it, so the futex compare closes the race with a release.
                let parked = P::wait(&self.word, expected, deadline);
                on_wake();
                if parked == ParkResult::TimedOut {
                    // Every parked thread is woken by a release, so timing out consumes no
                    // wake-up that another thread needed. Permits may have come back since.
                    return Ok(self.try_take(n));
                }
            }
            if self.try_take(n) {
                return Ok(true);
            }
        }
    }
}

impl<P: Park> fmt::Debug for Semaphore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("available", &self.available_permits()).finish()
    }
}

/// Permits taken from a [`Semaphore`]; they go back when this is dropped.
#[must_use = "the permits go back as soon as the Permit is dropped"]
pub struct Permit<'a, P: Park = DefaultPark> {
    sem: &'a Semaphore<P>,
    n: u32,
    /// Who took the permits, for the ledger: zero-sized without deadlock detection.
    tag: HolderTag,
}

impl<P: Park> Permit<'_, P> {
    /// How many permits this holds.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// Keeps the permits out of the semaphore for good (until someone calls
    /// [`Semaphore::release`]); returns how many.
    pub fn forget(self) -> u32 {
        let n = self.n;
        // Forgotten permits have no holder any more: they leave the ledger.
        self.sem.meta.gave_back(&self.tag, n);
        self.tag.clear();
        std::mem::forget(self);
        n
    }
}

impl<P: Park> Drop for Permit<'_, P> {
    fn drop(&mut self) {
        if self.n > 0 {
            // The semaphore's own ledger first: after the release the semaphore may be
            // gone. The holder's record (in the thread's memory) is cleared after, when
            // `tag` is dropped: a holder running is listed a moment too long, never too
            // short.
            self.sem.meta.gave_back(&self.tag, self.n);
            self.sem.release_word(self.n);
        }
    }
}

impl<P: Park> fmt::Debug for Permit<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("count", &self.n).finish()
    }
}
