//! # interproc-sync
//!
//! Futex-based synchronisation primitives, model-checked with loom.
//!
//! | type | what it is |
//! |---|---|
//! | [`Mutex<T>`] | a lock around a value, with `try_lock`, `lock_timeout` and optional poisoning |
//! | [`Semaphore`] | counting permits: `acquire`, `acquire_many`, `try_acquire`, `acquire_timeout`, RAII [`Permit`] |
//! | [`Monitor<T>`] | a lock around a value plus named [`Condition`]s, Mesa semantics |
//! | [`process::Mutex`], [`process::Semaphore`], [`process::Monitor`] | the same, placed in shared memory for several processes, robust to the death of a holder |
//! | [`ring`] | a single-producer, single-consumer byte ring for shared memory, with zero-copy loans |
//! | [`ring::mpmc`] | the same ring for many producer and consumer processes, each side serialised by a robust lock, so a crashed process never wedges the others |
//! | [`shm::Segment<T>`] | a typed value in shared memory (`/dev/shm` or a memfd) behind a checked header |
//!
//! ## One algorithm, three ways to block
//!
//! Each primitive is a state machine on 32-bit atomic words, kept apart from how a thread
//! sleeps: that is the [`Park`] trait (wait while a word holds a value, with an optional
//! deadline; wake `n` waiters). The backends are [`PrivateFutex`] (threads, the default),
//! [`SharedFutex`] (words in `MAP_SHARED` memory) and, under `--cfg interproc_loom`, a loom
//! model of a futex that wakes spuriously and times out at any point. Every atomic and cell
//! comes from one facade module, so the loom models in `tests/loom_*.rs` check the very
//! code that runs in production:
//!
//! ```sh
//! RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p interproc-sync --release --test 'loom_*'
//! ```
//!
//! (`.ci/loom` runs exactly that, and fails if no model ran.)
//!
//! ## Examples
//!
//! A counter shared by threads:
//!
//! ```
//! use interproc_sync::Mutex;
//!
//! let hits = Mutex::new(0);
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         s.spawn(|| *hits.lock().unwrap() += 1);
//!     }
//! });
//! assert_eq!(hits.into_inner().unwrap(), 4);
//! ```
//!
//! A semaphore as a one-shot signal, with a timeout:
//!
//! ```
//! use std::time::Duration;
//! use interproc_sync::{Error, Semaphore};
//!
//! let done = Semaphore::new(0);
//! assert_eq!(done.acquire_timeout(Duration::from_millis(1)).unwrap_err(), Error::Timeout);
//! std::thread::scope(|s| {
//!     s.spawn(|| done.release(1));
//!     done.acquire().forget(); // waits for the worker's release
//! });
//! ```
//!
//! A monitor: see [`Monitor`] for the bounded buffer, the reference example.
//!
//! ## Deadlock detection
//!
//! With the cargo feature `deadlock-detection`, the `deadlock` module finds wait-for
//! cycles between threads when they happen (and breaks them under its `Error` policy),
//! lock-order inversions before they happen, and monitor or semaphore waits that nobody is
//! left to end. Without the feature it costs nothing: no detector code is compiled in.
//! Locks can be labelled either way ([`Mutex::labelled`]), so reports name them.
//!
//! Across processes, [`process::Mutex`], [`process::Monitor`] and [`process::Semaphore`]
//! register their blocked waiters in a registry in shared memory (`deadlock::shared`, read
//! from outside by `interproc deadlocks`), so a wait-for cycle between processes is found
//! too, under the global policy or each lock's own (`set_deadlock_policy`).
//!
//! ## Between processes, robust to a crash
//!
//! [`process::Mutex`], [`process::Semaphore`] and [`process::Monitor`] are the same
//! algorithms for memory shared by several processes ([`shm::Segment`]): `#[repr(C)]`,
//! pointer-free, behind a checked header, blocking on shared futexes. If a process dies
//! holding one, the next locker gets [`process::LockError::OwnerDied`] (and repairs, then
//! calls `make_consistent()`), and the permits it held go back to the semaphore. See
//! [`process`] for how death is detected without the kernel's robust list, and
//! `tests/loom_process.rs` for the models that kill a thread at every step.
//!
//! ```
//! use interproc_sync::process::Mutex;
//! use interproc_sync::shm::Segment;
//!
//! let counter = Segment::anonymous(Mutex::new(0u64))?; // inherited by fork()ed children
//! *counter.lock().unwrap() += 1;
//! # Ok::<(), interproc_sync::shm::ShmError>(())
//! ```

#[cfg(all(feature = "deadlock-detection", interproc_loom))]
compile_error!(
    "the loom models check the primitives without the deadlock detector: run them without the `deadlock-detection` feature"
);

#[cfg(feature = "deadlock-detection")]
pub mod deadlock;
#[cfg(not(feature = "deadlock-detection"))]
#[path = "deadlock/off.rs"]
mod deadlock;
mod error;
mod loom;
mod monitor;
mod mutex;
pub mod park;
pub mod process;
mod raw;
pub mod ring;
mod robust;
mod semaphore;
pub mod shm;
#[cfg(not(interproc_loom))]
mod sys;

pub use error::{Error, LockError, PoisonError};
pub use monitor::{Condition, Monitor, MonitorGuard};
pub use mutex::{Mutex, MutexGuard};
#[cfg(interproc_loom)]
pub use park::ModelPark;
pub use park::{DefaultPark, DefaultSharedPark, Park, ParkResult, RobustPark, TaskId};
#[cfg(not(interproc_loom))]
pub use park::{PrivateFutex, SharedFutex};
pub use semaphore::{Permit, Semaphore};
