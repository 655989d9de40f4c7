//! How a thread blocks: the [`Park`] trait and its backends.
//!
//! The primitives in this crate are state machines on 32-bit atomic words. When a thread
//! must wait for a word to change it *parks* on that word, and the thread that changes it
//! *wakes* parked threads. That is all the algorithms need from the operating system, so
//! they are generic over [`Park`]:
//!
//! | backend | use | blocks with |
//! |---|---|---|
//! | [`PrivateFutex`] | threads of one process (the default) | `FUTEX_WAIT_BITSET_PRIVATE` / `FUTEX_WAKE_PRIVATE` |
//! | [`SharedFutex`] | words in `MAP_SHARED` memory used by several processes | `FUTEX_WAIT_BITSET` / `FUTEX_WAKE` |
//! | `ModelPark` (only under `--cfg interproc_loom`) | loom models | a modelled futex queue |
//!
//! [`DefaultPark`] is [`PrivateFutex`], or the model under `--cfg interproc_loom`.

use std::time::Instant;

/// The word type a [`Park`] backend waits on: std's `AtomicU32` (behind a transparent
/// newtype that derefs to it), or loom's under `--cfg interproc_loom`.
pub use crate::loom::atomic::AtomicU32;

/// How a [`Park::wait`] ended. Callers must treat every result as a hint and re-check
/// their word: a futex may return early for reasons of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkResult {
    /// A [`Park::wake`] ended the wait, or the wait returned spuriously.
    Woken,
    /// The word did not hold the expected value, so the thread never slept.
    Changed,
    /// The deadline passed before a wake-up reached this thread.
    TimedOut,
}

/// Blocking on a 32-bit atomic word: the futex contract.
///
/// Implementors guarantee the property every futex algorithm relies on: the comparison of
/// the word with `expected` in [`wait`](Park::wait) and the enqueueing of the thread are
/// atomic with respect to [`wake`](Park::wake) on the same word. So a waker that changes
/// the word *before* calling `wake` either finds the waiter enqueued, or the waiter sees
/// the new value and does not sleep. No wake-up is lost.
///
/// A backend is a type, not a value (the futex backends hold no state; the kernel keeps
/// its wait queues keyed by address), so the primitives carry it as a type parameter at no
/// cost in size.
pub trait Park {
    /// Blocks the calling thread while `word` holds `expected`, until a [`wake`](Park::wake)
    /// on the same word reaches it, or until `deadline` (if any) passes. May return early
    /// ([`ParkResult::Woken`] without a wake).
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult;

    /// Wakes up to `n` threads parked on `word` (`u32::MAX`: all of them); returns how many
    /// it woke.
    ///
    /// `word` is taken as a raw pointer because it is only an identity: implementations
    /// must not dereference it. A primitive calls `wake` *after* the store that lets a
    /// waiter proceed, and that waiter may already have freed or unmapped the word.
    fn wake(word: *const AtomicU32, n: u32) -> usize;
}

/// Private futex (`FUTEX_PRIVATE_FLAG`): for words that only threads of this process use.
///
/// The kernel keys private futexes by (address space, address), which skips the page lookup
/// that shared futexes need.
#[cfg(not(interproc_loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivateFutex;

#[cfg(not(interproc_loom))]
impl Park for PrivateFutex {
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult {
        crate::sys::futex_wait(word, expected, deadline, false).into()
    }

    fn wake(word: *const AtomicU32, n: u32) -> usize {
        crate::sys::futex_wake(word, n, false)
    }
}

/// Shared futex (no `FUTEX_PRIVATE_FLAG`): for words in `MAP_SHARED` memory (a memfd or
/// POSIX shared memory mapping) waited on by several processes.
///
/// The kernel keys shared futexes by the backing page and offset, so two processes that map
/// the same object at different addresses still meet on the same queue. It also works for
/// threads, at the cost of that page lookup.
#[cfg(not(interproc_loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedFutex;

#[cfg(not(interproc_loom))]
impl Park for SharedFutex {
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult {
        crate::sys::futex_wait(word, expected, deadline, true).into()
    }

    fn wake(word: *const AtomicU32, n: u32) -> usize {
        crate::sys::futex_wake(word, n, true)
    }
}

#[cfg(not(interproc_loom))]
impl From<crate::sys::Wait> for ParkResult {
    fn from(w: crate::sys::Wait) -> Self {
        match w {
            crate::sys::Wait::Woken => ParkResult::Woken,
            crate::sys::Wait::Changed => ParkResult::Changed,
            crate::sys::Wait::TimedOut => ParkResult::TimedOut,
        }
    }
}

/// The backend the primitives use unless told otherwise: [`PrivateFutex`], or the loom
/// model under `--cfg interproc_loom`.
#[cfg(not(interproc_loom))]
pub type DefaultPark = PrivateFutex;

/// The backend the primitives use unless told otherwise: the loom model.
#[cfg(interproc_loom)]
pub type DefaultPark = model::ModelPark;

#[cfg(interproc_loom)]
pub use model::ModelPark;

#[cfg(interproc_loom)]
mod model {
    //! A futex for loom.
    //!
    //! Like the kernel, the model keeps one wait queue per word address (its "futex hash
    //! table" is reset for every loom execution). Each queue sits behind a loom mutex, which
    //! makes "compare the word, then enqueue" atomic with respect to wakers, as in the
    //! kernel.
    //!
    //! Each (thread, word) pair sleeps on its own `loom::sync::Notify`, which loom lets
    //! return once spuriously, so every untimed wait is explored both ways: woken by a
    //! `wake`, and returning early with nobody having woken it.
    //!
    //! A timed wait does not sleep on the `Notify`: after enqueueing it yields, which lets
    //! loom run any other threads for as long as it likes, then it times out unless a
    //! `wake` dequeued it in the meantime. So the timeout fires at every point loom
    //! explores, and a timed waiter can never look like a deadlock. As in the kernel, a
    //! waiter that a `wake` has dequeued reports [`ParkResult::Woken`] even if its timeout
    //! fired too; one that timed out first is no longer queued, so the `wake` goes to
    //! another waiter.
    #![allow(clippy::disallowed_types)]

    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;
    use std::time::Instant;

    use loom::sync::{Arc, Mutex, Notify};
    use loom::thread::ThreadId;

    use super::{Park, ParkResult};
    use crate::loom::atomic::{AtomicU32, Ordering};

    /// The loom model of a futex; see the module documentation of `park`.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct ModelPark;

    #[derive(Default)]
    struct Queue {
        /// Threads enqueued on this word, in arrival order, with their `Notify`.
        waiting: Vec<(ThreadId, Arc<Notify>)>,
        /// One `Notify` per thread that ever waited here (reused, so that loom explores
        /// one spurious wake-up per thread and word, not an unbounded number).
        notifies: Vec<(ThreadId, Arc<Notify>)>,
    }

    type Table = StdMutex<HashMap<usize, Arc<Mutex<Queue>>>>;

    loom::lazy_static! {
        // Keyed by address, like the kernel's futex hash. The std mutex only guards the
        // bookkeeping of this map (loom runs one thread at a time and no loom operation
        // happens while it is held); the modelled lock is the per-word loom mutex.
        static ref TABLE: Table = StdMutex::new(HashMap::new());
    }

    fn queue(word: *const AtomicU32) -> Arc<Mutex<Queue>> {
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        table.entry(word as usize).or_insert_with(|| Arc::new(Mutex::new(Queue::default()))).clone()
    }

    impl Park for ModelPark {
        fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> ParkResult {
            let me = loom::thread::current().id();
            let q = queue(word);
            let notify = {
                let mut g = q.lock().unwrap();
                // SeqCst: the kernel's futex_wait implies a full barrier before the compare.
                if word.load(Ordering::SeqCst) != expected {
                    return ParkResult::Changed;
                }
                let notify = match g.notifies.iter().find(|(t, _)| *t == me) {
                    Some((_, n)) => n.clone(),
                    None => {
                        let n = Arc::new(Notify::new());
                        g.notifies.push((me, n.clone()));
                        n
                    }
                };
                g.waiting.push((me, notify.clone()));
                notify
            };
            if deadline.is_some() {
                loom::thread::yield_now();
            } else {
                notify.wait();
            }
            let mut g = q.lock().unwrap();
            match g.waiting.iter().position(|(t, _)| *t == me) {
                // Dequeued by a `wake`: woken, whatever else happened.
                None => ParkResult::Woken,
                Some(i) => {
                    g.waiting.remove(i);
                    if deadline.is_some() {
                        ParkResult::TimedOut
                    } else {
                        ParkResult::Woken // spurious
                    }
                }
            }
        }

        fn wake(word: *const AtomicU32, n: u32) -> usize {
            let q = queue(word);
            let mut g = q.lock().unwrap();
            let k = (n as usize).min(g.waiting.len());
            for (_, notify) in g.waiting.drain(..k) {
                notify.notify();
            }
            k
        }
    }
}
