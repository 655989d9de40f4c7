//! The multi-producer, multi-consumer form of the ring: the same byte ring (records,
//! padding, indices) with producers serialised by one robust lock and consumers by
//! another, and a table of attached processes on each side, so that a crashed producer or
//! consumer never wedges the others and the last one gone is [`MpmcError::Disconnected`].
//!
//! # Design
//!
//! The SPSC ring ([`super::Producer`]/[`super::Consumer`]) already commits a record whole:
//! the producer writes it past `head` and publishes it with one store of `head`. With many
//! producers, the ones that are not writing simply wait their turn on a robust process-shared
//! lock (the futex lock of [`process::Mutex`](crate::process::Mutex), whose word holds the
//! owner's tid). Consumers likewise take turns on a second lock. Inside the lock, each side
//! runs the SPSC algorithm unchanged, with its side's index read from the header instead of
//! a handle (any of the processes may have moved it last).
//!
//! What a death leaves behind:
//! - a producer killed while it holds the producer lock has not published its record
//!   (`head` is stored only at commit). The next producer gets `OwnerDied`, reads `head`
//!   from the header (which excludes the dead one's half-written bytes), calls
//!   `make_consistent` and writes over the abandoned reservation. Nothing to repair.
//! - a consumer killed while it holds the consumer lock has not advanced `tail`: the next
//!   consumer reads the same record again. So a message is delivered *exactly once to the
//!   live consumers*; one that a consumer had read but not released when it was killed goes
//!   to another consumer (it was never acknowledged).
//! - a process killed between its index store and its wake-up call leaves a sleeper
//!   unwoken: sleepers therefore wake every poll period (1 ms doubling to 100 ms) to look.
//!
//! A Vyukov slot ring (one sequence number per slot) would let producers write in parallel,
//! but a producer that dies after claiming a slot leaves a hole that blocks every consumer
//! until someone decides it is dead and fills it, and messages would have to fit a slot
//! (or take a size class). The locked byte ring keeps variable-size records, the zero-copy
//! loans and the SPSC record format, and a death costs nothing to clean up.
//!
//! # Who is attached
//!
//! The header holds a table per side of [`MAX_PEERS`] slots, each the packed [`TaskId`]
//! (pid and start stamp) of an attached handle's process, or 0. Attaching takes a free
//! slot, dropping the handle clears it and wakes the other side. A process killed outright
//! clears nothing: a side that waits checks, each poll period, whether the processes in
//! the other side's table still live (`/proc/<pid>/stat`, the stamp guarding against a
//! recycled pid), and clears the slots of dead ones. The consumers get `Disconnected` once
//! a producer has attached, none is left, and the ring is drained; the producers get it
//! once a consumer has attached, none is left, and they must wait for room (until then,
//! sends are accepted into the ring, as a pipe accepts them into its buffer).
//!
//! A process that will attach later can be *expected* ([`MpmcHeader::expect_producer`]):
//! its slot is reserved for its pid, so that its death before it attaches still counts
//! (the other side does not wait for a producer that never comes).
//!
//! # Example
//!
//! Two producers and two consumers, threads of one process (processes map a shared
//! segment instead). Consumers see `Disconnected` as soon as every producer that attached
//! has left, so attach all producers before any can finish (between processes,
//! `expect_producer` reserves a place for one that has not attached yet):
//!
//! ```
//! use interproc_sync::ring::mpmc::{self, MpmcError, MpmcHeapMemory};
//!
//! let mem = MpmcHeapMemory::new(4096);
//! let got = std::sync::Mutex::new(Vec::new());
//! let producers: Vec<_> =
//!     (0..2).map(|_| mpmc::MpmcProducer::attach(mem.clone()).unwrap()).collect();
//! std::thread::scope(|s| {
//!     for (p, mut tx) in (0..2u8).zip(producers) {
//!         s.spawn(move || {
//!             for i in 0..100u8 {
//!                 tx.send(&[p, i], None).unwrap();
//!             }
//!         });
//!     }
//!     for _ in 0..2 {
//!         let (mem, got) = (mem.clone(), &got);
//!         s.spawn(move || {
//!             let mut rx = mpmc::MpmcConsumer::attach(mem).unwrap();
//!             let mut buf = Vec::new();
//!             loop {
//!                 match rx.recv(&mut buf, None) {
//!                     Ok(()) => got.lock().unwrap().push((buf[0], buf[1])),
//!                     Err(MpmcError::Disconnected) => break,
//!                     Err(e) => panic!("{e}"),
//!                 }
//!             }
//!         });
//!     }
//! });
//! let mut got = got.into_inner().unwrap();
//! got.sort();
//! assert_eq!(got.len(), 200);
//! got.dedup();
//! assert_eq!(got.len(), 200); // every message once
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{self, read_record, record_size, write_message_header, Found, Record};
use super::{DataArea, HeapMemory, RECORD_HEADER};
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::loom::time::passed;
use crate::loom::{death_point, hint};
use crate::park::{DefaultSharedPark, Park, ParkResult, RobustPark, TaskId};
use crate::robust::{Acquired, RawRobust};

/// The park backend of the MPMC ring: shared futexes (the loom model under
/// `--cfg interproc_loom`).
type P = DefaultSharedPark;

/// `"MPRG"`: the first word of an [`MpmcHeader`].
pub const MPMC_MAGIC: u32 = 0x4752_504d;
/// The layout version of [`MpmcHeader`].
pub const MPMC_VERSION: u32 = 1;
/// How many handles of each side (producers, consumers) can be attached at once.
#[cfg(not(interproc_loom))]
pub const MAX_PEERS: usize = 32;
/// How many handles of each side can be attached at once (few in the model, whose every
/// atomic access is a branch point).
#[cfg(interproc_loom)]
pub const MAX_PEERS: usize = 2;

/// A slot reserved for a process that has not attached yet (bit 63: no pid has it).
const RESERVED: u64 = 1 << 63;

/// The first poll period of a sleeping side; it doubles up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(1);
/// The longest poll period: a dead peer is noticed within about this long.
const POLL_MAX: Duration = Duration::from_millis(100);

/// Why an MPMC ring operation did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MpmcError {
    /// The deadline passed first (for a `try_` call, a deadline in the past: the ring was
    /// full or empty, or another handle of this side held the ring).
    #[error("timed out")]
    Timeout,
    /// Every handle of the other side has gone (closed, or its process died), and for a
    /// consumer everything committed was read.
    #[error("every peer on the other side of the ring has gone")]
    Disconnected,
    /// The message can never fit: the ring's largest message is `max`.
    #[error("message of {size} bytes does not fit in the ring: the largest is {max} bytes (capacity - 8); create a larger ring")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The largest message this ring carries.
        max: usize,
    },
    /// All [`MAX_PEERS`] slots of this side are taken by live processes.
    #[error("all {max} {side} slots of the ring are taken by live processes; drop a {side} first")]
    TooManyPeers {
        /// `"producer"` or `"consumer"`.
        side: &'static str,
        /// [`MAX_PEERS`].
        max: usize,
    },
    /// The memory is not an MPMC ring of this layout, or its capacity does not match the
    /// data area.
    #[error("not a valid MPMC ring: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
    /// This handle was attached by another process: it is a copy that a `fork`ed child
    /// inherited (its slot is the parent's). Attach a fresh handle in the child, and drop
    /// the copy: dropping it leaves the parent's slot alone.
    #[error("this MPMC ring {side} was attached by process {owner}, and this is process {pid}: a copy a fork child inherited cannot use the parent's handle; attach a fresh {side} in this process")]
    ForkedCopy {
        /// `"producer"` or `"consumer"`.
        side: &'static str,
        /// The process that attached the handle.
        owner: u32,
        /// The calling process.
        pid: u32,
    },
    /// The ring breaks the format (a bad record, impossible indices, or a lock left not
    /// recoverable): memory corruption, or a process that is not this code. Drop the ring.
    #[error("corrupt MPMC ring: {reason}")]
    Corrupt {
        /// What was wrong.
        reason: String,
    },
}

/// One word on its own cache line.
#[repr(C, align(64))]
struct Line {
    word: AtomicU32,
}

/// A side's lock and its cached copy of the other side's index, on one line: only the
/// lock holder touches the cache.
#[repr(C, align(64))]
struct LockLine {
    lock: RawRobust<P>,
    /// The other side's index as some holder last loaded it (a lower bound of it).
    cached: AtomicU32,
}

/// The processes attached as one side.
#[repr(C, align(64))]
struct Table {
    /// Set when the first handle attaches (or is expected): from then on an empty table
    /// means "all gone", not "not yet".
    ever: AtomicU32,
    _pad: u32,
    /// Packed [`TaskId`]s; 0 is free; [`RESERVED`] marks an expected process.
    slots: [AtomicU64; MAX_PEERS],
}

impl Table {
    fn new() -> Self {
        Table {
            ever: AtomicU32::new(0),
            _pad: 0,
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Takes a slot for `me`: the one reserved for its pid, else a free one.
    fn attach(&self, me: TaskId, side: &'static str) -> Result<usize, MpmcError> {
        let value = me.pack();
        for (i, s) in self.slots.iter().enumerate() {
            let v = s.load(Ordering::Relaxed);
            if v & RESERVED != 0
                && TaskId::unpack(v & !RESERVED).id == me.id
                && s.compare_exchange(v, value, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                self.ever.store(1, Ordering::Release);
                return Ok(i);
            }
        }
        for _pass in 0..2 {
            for (i, s) in self.slots.iter().enumerate() {
                if s.compare_exchange(0, value, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    self.ever.store(1, Ordering::Release);
                    return Ok(i);
                }
            }
            // Full: make room from processes that died without detaching, then retry.
            self.reap();
        }
        Err(MpmcError::TooManyPeers { side, max: MAX_PEERS })
    }

    fn reserve(&self, who: TaskId, side: &'static str) -> Result<(), MpmcError> {
        let value = who.pack() | RESERVED;
        for _pass in 0..2 {
            for s in &self.slots {
                if s.compare_exchange(0, value, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    self.ever.store(1, Ordering::Release);
                    return Ok(());
                }
            }
            self.reap();
        }
        Err(MpmcError::TooManyPeers { side, max: MAX_PEERS })
    }

    /// Clears the slots of processes that have died (or, reserved, died before attaching).
    fn reap(&self) {
        for s in &self.slots {
            let v = s.load(Ordering::Acquire);
            if v != 0 && P::is_process_dead(TaskId::unpack(v & !RESERVED)) {
                let _ = s.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Whether some process is (or is expected to be) attached, or none ever was.
    fn present(&self) -> bool {
        self.ever.load(Ordering::Acquire) == 0
            || self.slots.iter().any(|s| s.load(Ordering::Acquire) != 0)
    }

    fn count(&self) -> usize {
        self.slots.iter().filter(|s| s.load(Ordering::Relaxed) & !RESERVED != 0).count()
    }
}

/// The shared part of an MPMC ring: the two locks, the indices, the futex words and the
/// tables of attached processes. The data area follows it (see [`MpmcMemory`]).
///
/// `#[repr(C)]` and pointer-free: every process maps it at its own address.
#[repr(C)]
pub struct MpmcHeader {
    magic: u32,
    version: u32,
    capacity: u32,
    _reserved: u32,
    _pad: [u8; 48],
    producer_lock: LockLine,
    head: Line,
    consumer_lock: LockLine,
    tail: Line,
    consumer_asleep: Line,
    producer_asleep: Line,
    producers: Table,
    consumers: Table,
}

// SAFETY: `MpmcHeader` is `#[repr(C)]` with fixed-size fields (integers, padding bytes,
// atomics, and `RawRobust`, itself `#[repr(C)]` atomics plus a zero-sized marker), holds no
// pointers or handles, needs no `Drop`, and is `Sync`: after creation every shared field is
// an atomic. Every bit pattern is a valid value; attach validates the constants and the
// ends treat impossible indices and records as corruption, never as UB.
unsafe impl crate::shm::ShmSafe for MpmcHeader {}

impl MpmcHeader {
    /// A fresh header for a data area of `capacity` bytes: empty, nobody attached.
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two in `16..=1 GiB` (see
    /// [`RingHeader::check_capacity`](super::RingHeader::check_capacity)).
    pub fn new(capacity: usize) -> Self {
        if let Err(e) = check_capacity(capacity) {
            panic!("{e}");
        }
        MpmcHeader {
            magic: MPMC_MAGIC,
            version: MPMC_VERSION,
            capacity: capacity as u32,
            _reserved: 0,
            _pad: [0; 48],
            producer_lock: LockLine { lock: RawRobust::new(), cached: AtomicU32::new(0) },
            head: Line { word: AtomicU32::new(0) },
            consumer_lock: LockLine { lock: RawRobust::new(), cached: AtomicU32::new(0) },
            tail: Line { word: AtomicU32::new(0) },
            consumer_asleep: Line { word: AtomicU32::new(0) },
            producer_asleep: Line { word: AtomicU32::new(0) },
            producers: Table::new(),
            consumers: Table::new(),
        }
    }

    /// The data area's size in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The largest message: `capacity - 8`.
    pub fn max_message(&self) -> usize {
        self.capacity() - RECORD_HEADER
    }

    /// Checks magic, version and capacity against a data area of `data_len` bytes.
    pub fn validate(&self, data_len: usize) -> Result<(), MpmcError> {
        let invalid = |reason: String| Err(MpmcError::Invalid { reason });
        if self.magic != MPMC_MAGIC {
            return invalid(format!("magic {:#x}, expected {MPMC_MAGIC:#x}", self.magic));
        }
        if self.version != MPMC_VERSION {
            return invalid(format!(
                "layout version {}, this code speaks {MPMC_VERSION}",
                self.version
            ));
        }
        check_capacity(self.capacity())?;
        if data_len < self.capacity() {
            return invalid(format!(
                "the header says {} bytes of data but the area has {data_len}",
                self.capacity()
            ));
        }
        Ok(())
    }

    /// Reserves a producer slot for process `who` (say, a child just spawned, with
    /// `stamp` 0 if unknown), so that its death before it attaches counts as a producer
    /// gone: consumers then get `Disconnected` instead of waiting for it. Its attach
    /// takes the reserved slot.
    pub fn expect_producer(&self, who: TaskId) -> Result<(), MpmcError> {
        self.producers.reserve(who, "producer")
    }

    /// Reserves a consumer slot for process `who`; see [`expect_producer`](Self::expect_producer).
    pub fn expect_consumer(&self, who: TaskId) -> Result<(), MpmcError> {
        self.consumers.reserve(who, "consumer")
    }

    /// How many producer handles are attached (a snapshot; a dead process counts until a
    /// waiting consumer notices).
    pub fn producers(&self) -> usize {
        self.producers.count()
    }

    /// How many consumer handles are attached (a snapshot).
    pub fn consumers(&self) -> usize {
        self.consumers.count()
    }
}

fn check_capacity(capacity: usize) -> Result<(), MpmcError> {
    match record::capacity_problem(capacity) {
        Some(reason) => Err(MpmcError::Invalid { reason }),
        None => Ok(()),
    }
}

impl fmt::Debug for MpmcHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcHeader")
            .field("capacity", &self.capacity)
            .field("head", &self.head.word.load(Ordering::Relaxed))
            .field("tail", &self.tail.word.load(Ordering::Relaxed))
            .field("producers", &self.producers())
            .field("consumers", &self.consumers())
            .finish()
    }
}

/// Memory that holds an MPMC ring: an [`MpmcHeader`] and, after it, a data area of at
/// least `header().capacity()` bytes.
///
/// # Safety
///
/// As for [`RingMemory`](super::RingMemory): `header` and `data` return the same memory
/// every time, valid while `self` lives (clones refer to the same memory); the data area
/// overlaps nothing Rust accesses through references; other processes that map it do so
/// `MAP_SHARED` and use it only through this module's handles.
pub unsafe trait MpmcMemory: Send + Sync {
    /// The header.
    fn header(&self) -> &MpmcHeader;
    /// The data area.
    fn data(&self) -> DataArea<'_>;
}

// SAFETY: an `Arc` derefs to the same `T` for its whole life, and every clone to the same
// `T`; the contract is `T`'s.
unsafe impl<T: MpmcMemory + ?Sized> MpmcMemory for Arc<T> {
    fn header(&self) -> &MpmcHeader {
        (**self).header()
    }
    fn data(&self) -> DataArea<'_> {
        (**self).data()
    }
}

// SAFETY: the value (the header) and the extra area are disjoint parts of one mapping,
// fixed for the segment's life; the extra area is zero-filled when created and reached only
// through the `DataArea`. Other processes map it `MAP_SHARED` and use it through the ring.
#[cfg(not(interproc_loom))]
unsafe impl MpmcMemory for crate::shm::Segment<MpmcHeader> {
    fn header(&self) -> &MpmcHeader {
        self
    }

    fn data(&self) -> DataArea<'_> {
        // SAFETY: `extra_ptr()..+extra_len()` is mapped, initialised and valid while the
        // segment lives, and no `&[u8]` over it exists (Segment hands out only the pointer).
        unsafe { DataArea::from_raw(self.extra_ptr(), self.extra_len()) }
    }
}

/// An MPMC ring in process memory: for threads of one process, examples and the loom
/// models. The data area is borrowed from a [`HeapMemory`] (whose own SPSC header is
/// unused).
pub struct MpmcHeapMemory {
    header: MpmcHeader,
    area: Arc<HeapMemory>,
}

impl MpmcHeapMemory {
    /// A fresh ring with a data area of `capacity` bytes.
    ///
    /// # Panics
    ///
    /// If `capacity` is not a valid ring capacity.
    pub fn new(capacity: usize) -> Arc<Self> {
        let header = MpmcHeader::new(capacity);
        Arc::new(MpmcHeapMemory { header, area: HeapMemory::new(capacity) })
    }
}

// SAFETY: the header is a field of `self` and the data area that of the `HeapMemory` it
// owns (whose own contract covers it), both fixed for `self`'s life and disjoint; only this
// module's handles touch the area, and never through the `HeapMemory`'s SPSC header.
unsafe impl MpmcMemory for MpmcHeapMemory {
    fn header(&self) -> &MpmcHeader {
        &self.header
    }

    fn data(&self) -> DataArea<'_> {
        super::RingMemory::data(&*self.area)
    }
}

/// Whether a handle attached by `me` is used in another process: a copy that a `fork`ed
/// child inherited. (Never in the loom models, whose threads stand for processes and
/// attach their own handles.)
fn forked(me: TaskId) -> bool {
    #[cfg(not(interproc_loom))]
    return P::current_process().id != me.id;
    #[cfg(interproc_loom)]
    {
        let _ = me;
        false
    }
}

fn check_owner(me: TaskId, side: &'static str) -> Result<(), MpmcError> {
    if forked(me) {
        return Err(MpmcError::ForkedCopy { side, owner: me.id, pid: P::current_process().id });
    }
    Ok(())
}

/// Announces a sleeper on `asleep`, re-checks `ready`, and parks for at most `poll` (or
/// until the deadline or a wake-up); the caller re-checks in every case. `Err(Timeout)`
/// only for the caller's deadline. The wake-up protocol is the SPSC ring's (see
/// [`super`]): the announcement and the waker's check are RMWs of the same word.
///
/// A deadline that has passed (a `try_` call) never announces, so the other side pays no
/// wake-up for a sleeper that is not there.
fn sleep_once(
    asleep: &AtomicU32,
    deadline: Option<Instant>,
    poll: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), MpmcError> {
    if passed(deadline) {
        return if ready() { Ok(()) } else { Err(MpmcError::Timeout) };
    }
    asleep.swap(1, Ordering::AcqRel);
    if ready() {
        asleep.swap(0, Ordering::AcqRel);
        return Ok(());
    }
    let r = P::poll_wait(asleep, 1, deadline, poll, None);
    asleep.swap(0, Ordering::AcqRel);
    if r == ParkResult::TimedOut && !ready() {
        return Err(MpmcError::Timeout);
    }
    Ok(())
}

fn wake_if_asleep(asleep: &AtomicU32) {
    if asleep.swap(0, Ordering::AcqRel) != 0 {
        P::wake(asleep, 1);
    }
}

/// A held side lock; unlocks on drop (not when a model thread unwinds out of its death:
/// the robust lock checks that).
struct SideLock<'a> {
    raw: &'a RawRobust<P>,
}

impl Drop for SideLock<'_> {
    fn drop(&mut self) {
        // SAFETY: a `SideLock` exists only while this thread holds the lock (see `lock`).
        unsafe { self.raw.unlock() };
    }
}

/// Takes a side lock, repairing after a dead holder: a holder's work becomes visible only
/// through the single index store at its end, so there is nothing to undo.
fn lock(raw: &RawRobust<P>, deadline: Option<Instant>) -> Result<SideLock<'_>, MpmcError> {
    let got = if passed(deadline) { raw.try_lock() } else { raw.lock_until(deadline) };
    match got {
        Acquired::Locked => Ok(SideLock { raw }),
        Acquired::OwnerDied => {
            raw.make_consistent();
            Ok(SideLock { raw })
        }
        Acquired::Busy => Err(MpmcError::Timeout),
        Acquired::NotRecoverable => Err(MpmcError::Corrupt {
            reason: "a side lock was left not recoverable (not by this code)".into(),
        }),
    }
}

/// A sending end of an MPMC ring; any number (up to [`MAX_PEERS`]) per ring.
///
/// Dropping it detaches it; when the last producer has gone, consumers get
/// [`MpmcError::Disconnected`] once they have read everything.
pub struct MpmcProducer<M: MpmcMemory> {
    mem: M,
    cap: u32,
    slot: usize,
    me: TaskId,
    spin: u32,
}

impl<M: MpmcMemory> MpmcProducer<M> {
    /// Attaches the calling process as a producer of the ring in `mem`.
    ///
    /// [`MpmcError::Invalid`] if the header does not describe a ring of this layout that
    /// fits the data area; [`MpmcError::TooManyPeers`] if all slots are taken.
    pub fn attach(mem: M) -> Result<Self, MpmcError> {
        let h = mem.header();
        h.validate(mem.data().len())?;
        let me = P::current_process();
        let slot = h.producers.attach(me, "producer")?;
        let cap = h.capacity;
        Ok(MpmcProducer { mem, cap, slot, me, spin: hint::SPIN_LIMIT })
    }

    /// The shared header.
    pub fn header(&self) -> &MpmcHeader {
        self.mem.header()
    }

    /// The memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The largest message: `capacity - 8`.
    pub fn max_message(&self) -> usize {
        self.cap as usize - RECORD_HEADER
    }

    /// How many times a full ring is re-checked before the producer sleeps (default 100).
    pub fn set_spin(&mut self, spins: u32) {
        self.spin = spins;
    }

    /// Sends `msg` as one message, waiting for the producer lock and for room until
    /// `deadline` (`None`: forever; a deadline in the past: do not wait).
    pub fn send(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), MpmcError> {
        let mut loan = self.loan(msg.len(), deadline)?;
        loan.write_at(0, msg);
        death_point();
        loan.commit();
        Ok(())
    }

    /// Reserves room for a message of `len` bytes, waiting until `deadline`; write it
    /// through the loan and [`commit`](MpmcWriteLoan::commit) it. The loan holds the
    /// producer lock: other producers wait until it is committed or dropped (which sends
    /// nothing).
    pub fn loan(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<MpmcWriteLoan<'_, M>, MpmcError> {
        check_owner(self.me, "producer")?;
        let max = self.max_message();
        if len > max {
            return Err(MpmcError::TooLarge { size: len, max });
        }
        let size = record_size(len) as u32;
        let this = &*self;
        let h = this.mem.header();
        let guard = lock(&h.producer_lock.lock, deadline)?;
        let cap = self.cap;
        let mut poll = POLL_FIRST;
        loop {
            // Under the lock only producers store `head`, and the lock orders them.
            let head = h.head.word.load(Ordering::Acquire);
            let (off, to_end, need) = record::placement(cap, head, size)
                .map_err(|bad| MpmcError::Corrupt { reason: bad.reason() })?;
            let mut tail = h.producer_lock.cached.load(Ordering::Relaxed);
            if cap.checked_sub(head.wrapping_sub(tail)).is_none_or(|free| free < need) {
                tail = h.tail.word.load(Ordering::Acquire);
                h.producer_lock.cached.store(tail, Ordering::Relaxed);
                let used = head.wrapping_sub(tail);
                if used > cap {
                    return Err(MpmcError::Corrupt {
                        reason: format!(
                            "the tail {tail} is {used} bytes behind head {head} in a {cap}-byte ring"
                        ),
                    });
                }
                if cap - used < need {
                    this.wait_room(head, need, deadline, &mut poll)?;
                    continue;
                }
            }
            if size <= to_end {
                return Ok(MpmcWriteLoan { producer: this, guard, off: off as usize, len, head });
            }
            // SAFETY: `off` is 8-aligned with `to_end >= 8` (offsets are multiples of 8, the
            // capacity a power of two >= 16), and `off..cap` is free: consumers released it
            // and read nothing past `head`, which only we (holding the lock) move.
            unsafe { record::write_padding(this.mem.data(), off, to_end) };
            death_point();
            publish(h, head.wrapping_add(to_end));
        }
    }

    /// Waits (holding the producer lock) until `need` bytes are free after `head`, all
    /// consumers have gone (`Disconnected`), or the deadline passes.
    fn wait_room(
        &self,
        head: u32,
        need: u32,
        deadline: Option<Instant>,
        poll: &mut Duration,
    ) -> Result<(), MpmcError> {
        let h = self.mem.header();
        let cap = self.cap;
        let room = || {
            let tail = h.tail.word.load(Ordering::Acquire);
            // An impossible tail counts as ready: `loan` then reports it.
            cap.checked_sub(head.wrapping_sub(tail)).is_none_or(|free| free >= need)
        };
        if !passed(deadline) {
            for _ in 0..self.spin {
                hint::spin_loop();
                if room() {
                    return Ok(());
                }
            }
        }
        if !h.consumers.present() {
            return Err(MpmcError::Disconnected);
        }
        sleep_once(&h.producer_asleep.word, deadline, *poll, || room() || !h.consumers.present())?;
        if !room() {
            // Woken without room: perhaps a poll period ran out; look for dead consumers.
            h.consumers.reap();
            *poll = (*poll * 2).min(POLL_MAX);
        }
        Ok(())
    }

    /// Gives back the memory without detaching: for a copy of this end that a `fork`ed
    /// child inherited.
    pub fn leave_open(self) -> M {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so `mem` is moved out exactly
        // once; the other fields need no drop.
        unsafe { std::ptr::read(&this.mem) }
    }
}

/// Stores a new `head` and wakes a sleeping consumer.
fn publish(h: &MpmcHeader, head: u32) {
    h.head.word.store(head, Ordering::Release);
    death_point();
    wake_if_asleep(&h.consumer_asleep.word);
}

fn detach(table: &Table, slot: usize, me: TaskId, other_asleep: &AtomicU32) {
    if crate::loom::dying() {
        return; // a model thread "killed": a killed process runs no destructor
    }
    if P::current_process().id != me.id {
        return; // a fork child's copy: the slot belongs to the parent
    }
    let _ = table.slots[slot].compare_exchange(me.pack(), 0, Ordering::AcqRel, Ordering::Relaxed);
    wake_if_asleep(other_asleep);
}

impl<M: MpmcMemory> Drop for MpmcProducer<M> {
    fn drop(&mut self) {
        let h = self.mem.header();
        detach(&h.producers, self.slot, self.me, &h.consumer_asleep.word);
    }
}

impl<M: MpmcMemory> fmt::Debug for MpmcProducer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcProducer")
            .field("slot", &self.slot)
            .field("ring", self.header())
            .finish()
    }
}

/// Room for one message, reserved while holding the producer lock: write it, then
/// [`commit`](MpmcWriteLoan::commit).
///
/// The region lies past the committed `head`, which only the lock holder moves, so no other
/// thread or process reads or writes it until the commit: that is why the loan may hand out
/// `&mut` over shared memory.
#[must_use = "a loan sends nothing until it is committed"]
pub struct MpmcWriteLoan<'a, M: MpmcMemory> {
    producer: &'a MpmcProducer<M>,
    guard: SideLock<'a>,
    off: usize,
    len: usize,
    head: u32,
}

impl<M: MpmcMemory> MpmcWriteLoan<'_, M> {
    /// The message size reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the reserved message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` into the message at byte `at`.
    ///
    /// # Panics
    ///
    /// If `at + src.len()` exceeds [`len`](MpmcWriteLoan::len).
    pub fn write_at(&mut self, at: usize, src: &[u8]) {
        // SAFETY: the record fits before the end of the area and is owned by this loan
        // (see the type's documentation).
        unsafe { record::write_payload(self.producer.mem.data(), self.off, self.len, at, src) };
    }

    /// The reserved bytes, to write in place (they hold garbage from earlier messages).
    #[cfg(not(interproc_loom))]
    pub fn as_uninit_mut(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        // SAFETY: the record lies in the data area and only this loan accesses it until it
        // commits (see the type's documentation); the borrow of `self` keeps the loan, and
        // so the reservation and the lock, alive.
        unsafe { record::payload_mut(self.producer.mem.data(), self.off, self.len) }
    }

    /// Publishes the message and releases the producer lock.
    pub fn commit(self) {
        if forked(self.producer.me) {
            // A loan taken before a fork, committed in the child: the ring and the lock
            // are the parent's; publish nothing, unlock nothing.
            std::mem::forget(self.guard);
            return;
        }
        // SAFETY: the record starts the reservation.
        unsafe { write_message_header(self.producer.mem.data(), self.off, self.len) };
        death_point();
        let next = self.head.wrapping_add(record_size(self.len) as u32);
        publish(self.producer.mem.header(), next);
        death_point();
        drop(self.guard);
    }

    /// Publishes only the first `len` bytes.
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit_prefix(mut self, len: usize) {
        assert!(len <= self.len, "commit of {len} bytes from a {}-byte loan", self.len);
        self.len = len;
        self.commit()
    }
}

/// A receiving end of an MPMC ring; any number (up to [`MAX_PEERS`]) per ring. Each
/// message goes to one consumer.
///
/// Dropping it detaches it; when the last consumer has gone, producers that must wait for
/// room get [`MpmcError::Disconnected`].
pub struct MpmcConsumer<M: MpmcMemory> {
    mem: M,
    cap: u32,
    slot: usize,
    me: TaskId,
    spin: u32,
}

impl<M: MpmcMemory> MpmcConsumer<M> {
    /// Attaches the calling process as a consumer of the ring in `mem`; errors as
    /// [`MpmcProducer::attach`].
    pub fn attach(mem: M) -> Result<Self, MpmcError> {
        let h = mem.header();
        h.validate(mem.data().len())?;
        let me = P::current_process();
        let slot = h.consumers.attach(me, "consumer")?;
        let cap = h.capacity;
        Ok(MpmcConsumer { mem, cap, slot, me, spin: hint::SPIN_LIMIT })
    }

    /// The shared header.
    pub fn header(&self) -> &MpmcHeader {
        self.mem.header()
    }

    /// The memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The largest message: `capacity - 8`.
    pub fn max_message(&self) -> usize {
        self.cap as usize - RECORD_HEADER
    }

    /// How many times an empty ring is re-checked before the consumer sleeps (default 100).
    pub fn set_spin(&mut self, spins: u32) {
        self.spin = spins;
    }

    /// Receives the next message into `buf` (cleared first), waiting until `deadline`.
    /// The consumer lock is held only for the copy. The bytes are copied out of the shared
    /// memory through a raw pointer before anything reads them: the safe way to take a
    /// message from a producer you do not trust. `buf` is reused (no allocation once it
    /// has grown to the message size).
    pub fn recv(&mut self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), MpmcError> {
        let (guard, rec) = self.next_record(deadline)?;
        // SAFETY: the record is committed (before the `head` loaded with Acquire) and not
        // released, so no producer writes it during the copy; we hold the consumer lock.
        unsafe { record::copy_out(self.mem.data(), rec, buf) };
        death_point();
        release(self.mem.header(), rec.next);
        drop(guard);
        Ok(())
    }

    /// Waits until `deadline` for the next message and lends it in place; dropping the
    /// loan releases it. The loan holds the consumer lock: other consumers wait until it
    /// is dropped.
    ///
    /// The loan derefs to a `&[u8]` over the ring's shared memory, which a conforming
    /// producer does not write until it is released, but which a buggy or malicious peer
    /// process could: with a peer you do not trust, [`copy_to`](MpmcReadLoan::copy_to)
    /// (or [`recv`](MpmcConsumer::recv)) and decode the copy.
    pub fn recv_loan(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<MpmcReadLoan<'_, M>, MpmcError> {
        let (guard, rec) = self.next_record(deadline)?;
        Ok(MpmcReadLoan { consumer: self, guard: Some(guard), rec })
    }

    fn next_record(&self, deadline: Option<Instant>) -> Result<(SideLock<'_>, Record), MpmcError> {
        check_owner(self.me, "consumer")?;
        let h = self.mem.header();
        let guard = lock(&h.consumer_lock.lock, deadline)?;
        let cap = self.cap;
        let mut poll = POLL_FIRST;
        loop {
            let tail = h.tail.word.load(Ordering::Acquire);
            let mut head = h.consumer_lock.cached.load(Ordering::Relaxed);
            if head.wrapping_sub(tail).wrapping_sub(1) >= cap {
                // Empty by the cache (or the cache is behind the tail): reload.
                head = h.head.word.load(Ordering::Acquire);
                h.consumer_lock.cached.store(head, Ordering::Relaxed);
                if head == tail {
                    self.wait_data(tail, deadline, &mut poll)?;
                    continue;
                }
            }
            // SAFETY: the data area holds `cap` bytes, and `tail..head` is committed (`head`
            // loaded with Acquire) and unreleased: no producer writes it, and we hold the
            // consumer lock, so no other consumer releases it.
            let found = unsafe { read_record(self.mem.data(), cap, head, tail) };
            match found.map_err(|bad| MpmcError::Corrupt { reason: bad.reason() })? {
                Found::Padding { next } => release(h, next),
                Found::Message(rec) => return Ok((guard, rec)),
            }
        }
    }

    /// Waits (holding the consumer lock) until `head` moves past `tail`, all producers
    /// have gone with the ring drained (`Disconnected`), or the deadline passes.
    fn wait_data(
        &self,
        tail: u32,
        deadline: Option<Instant>,
        poll: &mut Duration,
    ) -> Result<(), MpmcError> {
        let h = self.mem.header();
        let data = || h.head.word.load(Ordering::Acquire) != tail;
        if !passed(deadline) {
            for _ in 0..self.spin {
                hint::spin_loop();
                if data() {
                    return Ok(());
                }
            }
        }
        if !h.producers.present() {
            // Everything the producers committed before they left is visible now: a
            // clean detach is a Release after the last `head` store, and a death is
            // ordered before the liveness check that cleared the slot.
            return if data() { Ok(()) } else { Err(MpmcError::Disconnected) };
        }
        sleep_once(&h.consumer_asleep.word, deadline, *poll, || data() || !h.producers.present())?;
        if !data() {
            h.producers.reap();
            *poll = (*poll * 2).min(POLL_MAX);
        }
        Ok(())
    }

    /// Gives back the memory without detaching (see [`MpmcProducer::leave_open`]).
    pub fn leave_open(self) -> M {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so `mem` is moved out exactly
        // once; the other fields need no drop.
        unsafe { std::ptr::read(&this.mem) }
    }
}

/// Stores a new `tail` and wakes a sleeping producer.
fn release(h: &MpmcHeader, tail: u32) {
    h.tail.word.store(tail, Ordering::Release);
    death_point();
    wake_if_asleep(&h.producer_asleep.word);
}

impl<M: MpmcMemory> Drop for MpmcConsumer<M> {
    fn drop(&mut self) {
        let h = self.mem.header();
        detach(&h.consumers, self.slot, self.me, &h.producer_asleep.word);
    }
}

impl<M: MpmcMemory> fmt::Debug for MpmcConsumer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpmcConsumer")
            .field("slot", &self.slot)
            .field("ring", self.header())
            .finish()
    }
}

/// A received message, lent in place while holding the consumer lock; dropping the loan
/// releases the message and the lock.
pub struct MpmcReadLoan<'a, M: MpmcMemory> {
    consumer: &'a MpmcConsumer<M>,
    guard: Option<SideLock<'a>>,
    rec: Record,
}

impl<M: MpmcMemory> MpmcReadLoan<'_, M> {
    /// The message size.
    pub fn len(&self) -> usize {
        self.rec.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }

    /// Copies the message into `buf` (cleared first), through a raw pointer: decode the
    /// copy, not the loan, when the peer is not trusted.
    pub fn copy_to(&self, buf: &mut Vec<u8>) {
        // SAFETY: committed and unreleased while the loan lives (see the type's docs).
        unsafe { record::copy_out(self.consumer.mem.data(), self.rec, buf) };
    }
}

#[cfg(not(interproc_loom))]
impl<M: MpmcMemory> std::ops::Deref for MpmcReadLoan<'_, M> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the record lies in the data area, is committed, and stays unreleased
        // while the loan (which the returned borrow keeps alive) lives.
        unsafe { record::payload(self.consumer.mem.data(), self.rec) }
    }
}

impl<M: MpmcMemory> Drop for MpmcReadLoan<'_, M> {
    fn drop(&mut self) {
        if crate::loom::dying() {
            return;
        }
        if forked(self.consumer.me) {
            // A loan taken before a fork, dropped in the child: the message and the lock
            // are the parent's.
            if let Some(g) = self.guard.take() {
                std::mem::forget(g);
            }
            return;
        }
        release(self.consumer.mem.header(), self.rec.next);
        drop(self.guard.take());
    }
}
