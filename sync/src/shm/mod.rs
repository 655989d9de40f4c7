//! Shared memory: what may be placed in it.
//!
//! A value in a `MAP_SHARED` mapping is seen by every process that maps it, each at its own
//! address, and may be written by any of them. [`ShmSafe`] marks the types for which that
//! is sound: the process-shared primitives of this crate implement it, and so do plain
//! integers, atomics and arrays of them.
//!
//! [`Segment<T>`] places one such value in a POSIX shared-memory segment (`/dev/shm`) or
//! a memfd, behind a versioned header that every opener checks against `T`; see its docs
//! for the example. `interproc::ipc::shm` re-exports it, and adds System V segments and
//! semaphore-guarded segments.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use interproc_sync::shm::Segment;
//!
//! // A memfd segment: a `fork`ed child shares it, or pass its fd over a Unix socket.
//! let hits = Segment::anonymous(AtomicU64::new(0))?;
//! hits.fetch_add(1, Ordering::Relaxed);
//! assert_eq!(hits.load(Ordering::Relaxed), 1);
//! # Ok::<(), interproc_sync::shm::ShmError>(())
//! ```

// std's atomics are named here only to implement the marker for users' data; the
// crate's own algorithms still take theirs from the loom facade.
#![allow(clippy::disallowed_types)]

#[cfg(not(interproc_loom))]
mod error;
#[cfg(not(interproc_loom))]
pub mod layout;
#[cfg(not(interproc_loom))]
mod segment;
#[cfg(not(interproc_loom))]
mod stale;
#[cfg(not(interproc_loom))]
mod sys;

#[cfg(not(interproc_loom))]
pub use error::ShmError;
#[cfg(not(interproc_loom))]
pub use layout::LAYOUT_VERSION;
#[cfg(not(interproc_loom))]
pub use segment::{Segment, SegmentOptions, SHM_DIR};
#[cfg(not(interproc_loom))]
pub use stale::{list_named, remove_if_owner_dead, NamedSegment};

/// Which one a create-or-open call did (`Segment::create_or_open`, and every
/// `create_or_open` of `interproc::ipc`, which uses this same type as
/// `interproc::ipc::names::Origin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The object did not exist; this call created it, and the returned handle owns it
    /// (removes it on drop).
    Created,
    /// The object existed; this call opened it, and someone else owns it.
    Opened,
}

/// Data that may live in memory shared between processes.
///
/// # Safety
///
/// Implement this only for a type that:
/// - has a layout fixed by the language (`#[repr(C)]`, `#[repr(transparent)]`, a primitive
///   or an array of such), so that two builds of the same code agree on it;
/// - holds no pointer, reference, `Box`, `Vec`, `String`, file descriptor or other handle
///   whose meaning is private to one process (each process maps the memory at its own
///   address, and owns its own descriptors);
/// - needs no `Drop` (nothing runs it when the last process unmaps the memory);
/// - is `Sync`, and is mutated by several processes only through atomics or under a lock
///   that is itself in the shared memory;
/// - stays valid for every bit pattern that a cooperating process running the same code may
///   leave in it, including a process killed half-way through an update (a `bool` is fine:
///   it is written with one store; an enum whose discriminant another process may observe
///   mid-write is not).
pub unsafe trait ShmSafe: Sync {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => {
        // SAFETY: primitives and std's atomics have a fixed layout, hold no pointers, need
        // no `Drop`, and every value a process stores in them with one store is valid.
        $(unsafe impl ShmSafe for $t {})*
    };
}

shm_safe!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, ());
shm_safe!(
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
    std::sync::atomic::AtomicBool,
);

// SAFETY: an array has the layout of `N` consecutive `T`s and adds no pointers; each
// element is `ShmSafe`.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
