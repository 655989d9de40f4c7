//! A single-producer, single-consumer byte ring for shared memory: variable-size messages,
//! committed whole, with a futex-backed wait that costs no syscall while neither side sleeps.
//!
//! This is the algorithm under `interproc_ipc::channel::shm`; it lives here, next to the
//! other state machines, so that the loom models (`tests/loom_ring.rs`) drive the very code
//! that runs between processes.
//!
//! # Layout
//!
//! The memory is a [`RingHeader`] (`#[repr(C)]`, no pointers, one cache line per word that
//! a side writes often) followed by a data area of `capacity` bytes, a power of two. The
//! header holds:
//!
//! | line | written by | what |
//! |---|---|---|
//! | 0 | the creator, once | magic, layout version, capacity, flags ([`FLAG_NOTIFIER`]) |
//! | 1 | producer | `head`: bytes committed so far (wrapping `u32`) |
//! | 2 | consumer | `tail`: bytes released so far (wrapping `u32`) |
//! | 3 | consumer (set), producer (clear) | "consumer asleep": bit 0 futex sleep, bit 1 event-loop wait |
//! | 4 | producer (set), consumer (clear) | "producer asleep": the same bits |
//! | 5 | both, rarely | closed flags, producer and consumer pids |
//!
//! Each side keeps its own index and a cached copy of the other's in its handle (process
//! memory), and reloads the shared one only when the cached value says "full" or "empty".
//! So in a steady stream each side reads the other's line once per lap, not once per
//! message.
//!
//! # Records and wrap-around
//!
//! A message is a record: an 8-byte header (`u32` length, `u32` tag) and the payload,
//! rounded up to 8 bytes. Records are contiguous: one that does not fit before the end of
//! the area is preceded by a *padding record* that fills the rest, and starts at offset 0.
//! Contiguity is what makes the zero-copy API possible (a loan is one slice). The cost is
//! the padding, at most one record's worth per lap; the largest message is
//! `capacity - 8` bytes.
//!
//! # Commit
//!
//! The producer writes the record header and payload into space the consumer has released,
//! then publishes it by storing the new `head`. The consumer reads nothing past the `head`
//! it loaded, so a producer killed in the middle of a write leaves a record nobody sees.
//! The consumer releases a record by storing the new `tail`, after it has finished reading.
//! Both stores are (at least) `Release` and the loads that read them `Acquire`, so the
//! payload written before a `head` store is visible after the load that sees it, and a
//! region is never rewritten before the read of it finished.
//!
//! # Waiting without lost wake-ups
//!
//! A side that finds the ring empty (consumer) or full (producer) spins a little, re-reading
//! the other index, then *announces* itself by swapping its "asleep" word to 1, re-checks
//! the index, and only then sleeps on that word with [`Park::wait`](crate::Park::wait) (a futex wait that
//! returns at once if the word is no longer 1). The other side, after each index store,
//! swaps the word to 0 and wakes the sleeper only if it read 1. Both are read-modify-writes
//! of the same word (`AcqRel`), so they are totally ordered: if the waker's comes first,
//! the sleeper's swap synchronizes with it and its re-check sees the new index; if the
//! sleeper's comes first, the waker reads 1 and wakes it. Either way no wake-up is lost
//! (`tests/loom_ring.rs` checks it, and fails if the waker merely *loads* the word first).
//! A plain store + `SeqCst` fence on each side would also do on hardware, but loom 0.7 does
//! not model that pairing faithfully, and an RMW on a line only the waker writes (until
//! the other side sleeps) costs about the same as the fence. In the uncontended path there
//! is no syscall.
//!
//! # Waiting in an event loop: notifiers
//!
//! A side that would rather block in an event loop (epoll, tokio) than on the futex needs
//! a fd that turns readable, so a ring created [`with_notifier`](RingHeader::with_notifier)
//! gives each end a [`Notify`] for its peer (in `interproc_ipc::channel::shm`, an
//! eventfd). The protocol is the futex one with another bit in the same word:
//!
//! 1. The waiting side found the ring empty (full). It *resets* its eventfd, then calls
//!    [`Consumer::arm`] ([`Producer::arm`]): `fetch_or` of the notifier bit, then a
//!    re-check of the other index and the closed flag. If the re-check finds work, `arm`
//!    withdraws the bit and says "do not block". The caller then makes its eventfd
//!    readable again (it reset it in step 1): a level-triggered reader that takes one
//!    message per event returns to its loop before it sees "empty", and must be called
//!    again (`level_triggered_reader_one_message_per_event` fails without this).
//! 2. Otherwise it blocks in its event loop on the eventfd.
//! 3. The other side, after each index or closed-flag store, swaps the word to 0 as
//!    before; if it read the notifier bit, it calls [`Notify::notify`] (writes the
//!    eventfd), and if it read the futex bit, it wakes the futex.
//!
//! The argument is the futex one: the announcement and the swap are RMWs of one word, so
//! either the swap reads the bit (and signals), or the re-check sees the store. The reset
//! must come *before* the announcement: a signal that answers it then stays pending
//! until the wait. The signal comes once per announcement, so the waiter must go back to
//! "empty" (drain) before it can expect another; that is the edge-triggered contract of a
//! socket read to `EAGAIN`. The loom models in `tests/loom_ring.rs` model the eventfd as
//! a counter with a futex queue (`notify` adds and wakes; the wait blocks while it is 0;
//! the reset takes it to 0), and fail if the reset follows the announcement.
//!
//! Both bits may be set at once (a side that armed its notifier, then made a blocking
//! call): the futex sleep sets and clears only its own bit, so the announcement survives.
//! Each end must attach with its peer's notifier when the ring has them, and may not when
//! it has none ([`RingError::Invalid`] otherwise): a producer without the consumer's
//! eventfd could never signal it. An end that attaches wakes its peer (futex and
//! notifier), so a peer already waiting learns its pid, to watch its liveness.
//!
//! A closed flag is set the same way (store, then wake if announced), so a sleeper also
//! wakes for a peer that dropped its end. A peer that *dies* sets nothing; callers that
//! must notice that wait with a deadline and check the peer's pid ([`Consumer::peer_pid`]),
//! as `interproc_ipc::channel::shm` does.
//!
//! # Example
//!
//! Two threads over a heap ring (processes use a shared segment instead):
//!
//! ```
//! use interproc_sync::ring::{self, HeapMemory};
//! use interproc_sync::SharedFutex;
//!
//! let mem = HeapMemory::new(4096);
//! let (mut tx, mut rx) = ring::pair::<_, SharedFutex>(mem, 1).unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(move || {
//!         for i in 0..1000u32 {
//!             tx.send(&i.to_le_bytes(), None).unwrap();
//!         }
//!         // Zero-copy: write in place, then commit.
//!         let mut loan = tx.loan(5, None).unwrap();
//!         loan.write_at(0, b"hello");
//!         loan.commit();
//!     });
//!     let mut buf = Vec::new();
//!     for i in 0..1000u32 {
//!         rx.recv(&mut buf, None).unwrap();
//!         assert_eq!(buf, i.to_le_bytes());
//!     }
//!     let n = rx.recv_in_place(None, |m| m.len()).unwrap();
//!     assert_eq!(n, 5);
//!     // The producer dropped its end: the ring reports it once drained.
//!     assert_eq!(rx.recv(&mut buf, None), Err(ring::RingError::Disconnected));
//! });
//! ```

mod memory;
pub mod mpmc;
mod record;
mod spsc;

pub use self::memory::{DataArea, HeapMemory, RingMemory};
pub use self::spsc::{pair, Consumer, Pair, Producer, ReadLoan, WriteLoan};

/// How a ring end wakes its peer's *event loop* (an eventfd the peer watches with
/// epoll, in `interproc_ipc::channel::shm`), as opposed to its futex.
///
/// The ring calls [`notify`](Notify::notify) only when the peer announced (with
/// [`Consumer::arm`]/[`Producer::arm`]) that it is about to block in its event loop, and
/// at most once per announcement. `notify` must not block, and must make the peer's
/// wait return even if it is called before the peer blocks (an eventfd's counter does).
pub trait Notify: Send + Sync {
    /// Wakes the peer's event loop.
    fn notify(&self);
}

/// A shared [`Notify`].
pub type Notifier = std::sync::Arc<dyn Notify>;

use std::fmt;

use crate::loom::atomic::AtomicU32;

/// `"RING"`: the first word of a [`RingHeader`].
pub const RING_MAGIC: u32 = 0x474e_4952;
/// The layout version of [`RingHeader`] and of the records.
pub const RING_VERSION: u32 = 1;
/// [`RingHeader`] flag: the ends signal each other's [`Notify`] (see
/// [`RingHeader::with_notifier`]).
pub const FLAG_NOTIFIER: u32 = 1;
/// Bytes of a record header; a message of `n` bytes takes `8 + round_up(n, 8)` bytes.
pub const RECORD_HEADER: usize = 8;
/// The smallest capacity: two record headers.
pub const MIN_CAPACITY: usize = 16;
/// The largest capacity: 1 GiB (indices are wrapping `u32`s and the capacity must divide
/// 2³²).
pub const MAX_CAPACITY: usize = 1 << 30;

/// Why a ring operation did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The deadline passed first (for a `try_` call, a deadline in the past: the ring was
    /// full, or empty).
    #[error("timed out")]
    Timeout,
    /// The peer closed its end (for the consumer: and everything it committed was read).
    #[error("the peer closed its end of the ring")]
    Disconnected,
    /// The message can never fit: the ring's largest message is `max`.
    #[error("message of {size} bytes does not fit in the ring: the largest is {max} bytes (capacity - 8); create a larger ring")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The largest message this ring carries.
        max: usize,
    },
    /// The memory is not a ring of this layout, or its capacity does not match the data
    /// area.
    #[error("not a valid ring: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
    /// Another process already attached as this side (the ring is single-producer,
    /// single-consumer).
    #[error("the ring already has a {side} (pid {pid}); it is single-producer, single-consumer")]
    Busy {
        /// `"producer"` or `"consumer"`.
        side: &'static str,
        /// The pid recorded by the side that attached first.
        pid: u32,
    },
    /// This end was attached by another process: it is a copy that a `fork`ed child
    /// inherited, and using it would break the ring's single-producer, single-consumer
    /// state (the parent's end goes on using it). Attach a fresh end in the child (if the
    /// parent has none of that side), and drop the copy: dropping it leaves the parent's
    /// end open.
    #[error("this ring {side} was attached by process {owner}, and this is process {pid}: a copy a fork child inherited cannot use the parent's end; attach a fresh {side} in this process")]
    ForkedCopy {
        /// `"producer"` or `"consumer"`.
        side: &'static str,
        /// The process that attached the end.
        owner: u32,
        /// The calling process.
        pid: u32,
    },
    /// The peer wrote a record that breaks the format (a bad tag or an impossible length):
    /// memory corruption, or a peer that is not this code. Drop the ring.
    #[error("corrupt record in the ring: {reason}")]
    Corrupt {
        /// What was wrong.
        reason: String,
    },
}

/// One word on its own cache line, so that the two sides do not false-share.
#[repr(C, align(64))]
struct Line {
    word: AtomicU32,
}

impl Line {
    fn new(v: u32) -> Self {
        Line { word: AtomicU32::new(v) }
    }
}

/// The words both sides rarely write: closed flags and pids.
#[repr(C, align(64))]
struct Peers {
    producer_closed: AtomicU32,
    consumer_closed: AtomicU32,
    /// 0 until a producer attaches.
    producer_pid: AtomicU32,
    /// 0 until a consumer attaches.
    consumer_pid: AtomicU32,
}

/// The shared part of a ring: indices, futex words, closed flags and pids. The data area
/// follows it in the same segment (see [`RingMemory`]).
///
/// `#[repr(C)]` and pointer-free: every process maps it at its own address.
#[repr(C)]
pub struct RingHeader {
    magic: u32,
    version: u32,
    capacity: u32,
    /// [`FLAG_NOTIFIER`] or 0; written once by the creator (it was a reserved zero before
    /// notifiers existed, so older rings read as "no notifier").
    flags: u32,
    _pad: [u8; 48],
    head: Line,
    tail: Line,
    consumer_asleep: Line,
    producer_asleep: Line,
    peers: Peers,
}

// SAFETY: `RingHeader` is `#[repr(C)]` with fixed-size fields (integers, padding bytes and
// `#[repr(transparent)]` atomics), holds no pointers or handles, needs no `Drop`, and is
// `Sync`: after creation every shared field is an atomic. Every bit pattern is a valid
// value; `Producer`/`Consumer::attach` validate the constants and treat impossible indices
// as corruption, never as UB.
unsafe impl crate::shm::ShmSafe for RingHeader {}

impl RingHeader {
    /// A fresh header for a data area of `capacity` bytes: empty, nobody attached.
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two in [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`]
    /// (use [`RingHeader::check_capacity`] first to get an error instead).
    pub fn new(capacity: usize) -> Self {
        if let Err(e) = Self::check_capacity(capacity) {
            panic!("{e}");
        }
        RingHeader {
            magic: RING_MAGIC,
            version: RING_VERSION,
            capacity: capacity as u32,
            flags: 0,
            _pad: [0; 48],
            head: Line::new(0),
            tail: Line::new(0),
            consumer_asleep: Line::new(0),
            producer_asleep: Line::new(0),
            peers: Peers {
                producer_closed: AtomicU32::new(0),
                consumer_closed: AtomicU32::new(0),
                producer_pid: AtomicU32::new(0),
                consumer_pid: AtomicU32::new(0),
            },
        }
    }

    /// This header, for a ring whose ends signal each other's event-loop notifiers
    /// ([`Notify`]): every end must then attach with one
    /// ([`Producer::attach_with`]/[`Consumer::attach_with`]), and either end may
    /// [`arm`](Consumer::arm) its notifier instead of sleeping on the futex.
    pub fn with_notifier(mut self) -> Self {
        self.flags |= FLAG_NOTIFIER;
        self
    }

    /// Whether the ring was created [`with_notifier`](RingHeader::with_notifier).
    #[inline]
    pub fn has_notifier(&self) -> bool {
        self.flags & FLAG_NOTIFIER != 0
    }

    /// Checks that `capacity` is a power of two in [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`];
    /// the error names the limit it breaks.
    pub fn check_capacity(capacity: usize) -> Result<(), RingError> {
        match record::capacity_problem(capacity) {
            Some(reason) => Err(RingError::Invalid { reason }),
            None => Ok(()),
        }
    }

    /// The smallest valid capacity that carries messages of `max_message` bytes, or `None`
    /// if none does.
    pub fn capacity_for(max_message: usize) -> Option<usize> {
        let need = max_message.checked_add(RECORD_HEADER + 7)? & !7;
        let cap = need.checked_next_power_of_two()?.max(MIN_CAPACITY);
        (cap <= MAX_CAPACITY).then_some(cap)
    }

    /// The data area's size in bytes, as recorded at creation.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The largest message: `capacity - 8`.
    #[inline]
    pub fn max_message(&self) -> usize {
        self.capacity() - RECORD_HEADER
    }

    /// Checks magic, version and capacity against a data area of `data_len` bytes.
    pub fn validate(&self, data_len: usize) -> Result<(), RingError> {
        let invalid = |reason: String| Err(RingError::Invalid { reason });
        if self.magic != RING_MAGIC {
            return invalid(format!("magic {:#x}, expected {RING_MAGIC:#x}", self.magic));
        }
        if self.version != RING_VERSION {
            return invalid(format!(
                "layout version {}, this code speaks {RING_VERSION}",
                self.version
            ));
        }
        if self.flags & !FLAG_NOTIFIER != 0 {
            return invalid(format!("unknown flags {:#x}", self.flags));
        }
        Self::check_capacity(self.capacity())?;
        if data_len < self.capacity() {
            return invalid(format!(
                "the header says {} bytes of data but the area has {data_len}",
                self.capacity()
            ));
        }
        Ok(())
    }

    /// The pid the producer recorded when it attached (0: none yet).
    #[inline]
    pub fn producer_pid(&self) -> u32 {
        self.peers.producer_pid.load(crate::loom::atomic::Ordering::Acquire)
    }

    /// The pid the consumer recorded when it attached (0: none yet).
    #[inline]
    pub fn consumer_pid(&self) -> u32 {
        self.peers.consumer_pid.load(crate::loom::atomic::Ordering::Acquire)
    }

    /// Whether the producer closed its end.
    #[inline]
    pub fn producer_closed(&self) -> bool {
        self.peers.producer_closed.load(crate::loom::atomic::Ordering::Acquire) != 0
    }

    /// Whether the consumer closed its end.
    #[inline]
    pub fn consumer_closed(&self) -> bool {
        self.peers.consumer_closed.load(crate::loom::atomic::Ordering::Acquire) != 0
    }
}

impl fmt::Debug for RingHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::loom::atomic::Ordering::Relaxed;
        f.debug_struct("RingHeader")
            .field("capacity", &self.capacity)
            .field("head", &self.head.word.load(Relaxed))
            .field("tail", &self.tail.word.load(Relaxed))
            .field("consumer_asleep", &self.consumer_asleep.word.load(Relaxed))
            .field("producer_asleep", &self.producer_asleep.word.load(Relaxed))
            .field("producer_pid", &self.peers.producer_pid.load(Relaxed))
            .field("consumer_pid", &self.peers.consumer_pid.load(Relaxed))
            .field("producer_closed", &self.producer_closed())
            .field("consumer_closed", &self.consumer_closed())
            .finish()
    }
}
