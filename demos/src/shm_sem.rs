//! `demo pc --transport shm-sem`: the classic bounded buffer, 信号量+共享内存.
//!
//! A ring of fixed-size slots lives in a shared-memory segment (`/dev/shm/<name>`), guarded
//! by three System V semaphores, as in every operating-systems textbook:
//!
//! | semaphore | counts | `SEM_UNDO` |
//! |---|---|---|
//! | `EMPTY` | free slots (starts at the slot count) | no: a producer takes, a consumer gives |
//! | `FULL` | filled slots (starts at 0) | no: a consumer takes, a producer gives |
//! | `MUTEX` | the ring's indices (starts at 1) | yes: a process killed inside gives it back |
//!
//! A producer does `P(EMPTY) P(MUTEX)`, writes the slot at `tail`, `V(MUTEX) V(FULL)`; a
//! consumer mirrors it with `FULL`, `head` and `EMPTY`. System V applies several operations
//! on one set atomically, so each pair is one `semop` call: two system calls per message,
//! and no process ever holds `MUTEX` while it waits for a slot.
//!
//! `EMPTY` and `FULL` must not use `SEM_UNDO`: they are given by one process and taken by
//! another, and an undo at exit would take a finished producer's items back out of `FULL`.
//! Only `MUTEX` is a lock. The slots are copied in and out through raw pointers under it:
//! no `&[u8]` ever points into memory that another process may be writing.
//!
//! What a crash costs, and why the demo stops the run on one: `SEM_UNDO` gives `MUTEX`
//! back, but a producer killed between `P(EMPTY)` and `V(FULL)` has used a free slot for
//! good (the ring has one slot fewer; after as many such deaths as slots, producers block
//! forever), and one killed after moving `tail` but before `V(FULL)` leaves a written slot
//! that is never counted. The textbook pattern has no answer to either: for a buffer that
//! survives crashes, use the shm ring (`--transport shm`), which publishes a message with
//! one index store and reports a dead peer as `Disconnected`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use interproc::ipc::channel::{FrameSink, FrameSource};
use interproc::ipc::sem::{Key, SemOp, SemSet};
use interproc::ipc::shm::{Segment, SegmentOptions, ShmSafe};
use interproc::ipc::{names, Error};

/// Semaphore numbers in the set.
const EMPTY: u16 = 0;
const FULL: u16 = 1;
const MUTEX: u16 = 2;

/// Slots in the ring.
pub const SLOTS: u64 = 64;

/// Bytes in front of each slot's payload: its length (u32), padded to 8.
const SLOT_HEADER: usize = 8;

/// The ring's bookkeeping, at the start of the segment. `head` and `tail` are only
/// touched under `MUTEX`; they are atomics (Relaxed) only so that the type is `ShmSafe`
/// without an `UnsafeCell` (the semaphore's system calls order the accesses).
#[repr(C)]
pub struct Ring {
    /// The key and id of the semaphore set, so a process needs only the segment's name.
    sem_key: i32,
    sem_id: i32,
    /// Largest payload a slot holds.
    slot_size: u64,
    /// Bytes from one slot to the next (header plus payload, rounded up to 64).
    stride: u64,
    slots: u64,
    /// Next slot to read.
    head: AtomicU64,
    /// Next slot to write.
    tail: AtomicU64,
}

// SAFETY: `#[repr(C)]`, integers and atomics, no pointers, no Drop; every bit pattern is a
// valid value (a corrupted index is reduced modulo `slots` before use).
unsafe impl ShmSafe for Ring {}

/// The bounded buffer: the segment and its semaphore set.
pub struct Buffer {
    seg: Segment<Ring>,
    sems: SemSet,
}

impl Buffer {
    /// Creates the buffer for payloads of up to `slot_size` bytes: the semaphore set
    /// (under a fresh key, with an owner record) and the segment (a fresh name). This
    /// process owns both: dropping the buffer removes them.
    pub fn create(slot_size: usize) -> Result<Buffer, Error> {
        let sems = SemSet::create_unique(&[SLOTS as u16, 0, 1])?;
        let stride = (SLOT_HEADER + slot_size).div_ceil(64) * 64;
        let ring = Ring {
            sem_key: sems.key().as_raw(),
            sem_id: sems.id(),
            slot_size: slot_size as u64,
            stride: stride as u64,
            slots: SLOTS,
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
        };
        let opts = SegmentOptions::default().with_extra(stride * SLOTS as usize);
        let seg = Segment::create_with(&names::unique_name("pc-shm-sem"), ring, &opts)?;
        Ok(Buffer { seg, sems })
    }

    /// Opens the buffer `name` and the semaphore set named inside it.
    pub fn open(name: &str) -> Result<Buffer, Error> {
        let seg = Segment::<Ring>::open(name)?;
        let sems = SemSet::open(Key::from_raw(seg.sem_key))?;
        let fits = seg.slots > 0
            && (seg.stride as usize).checked_mul(seg.slots as usize).is_some_and(|n| {
                n <= seg.extra_len() && seg.slot_size as usize + SLOT_HEADER <= seg.stride as usize
            });
        if sems.id() != seg.sem_id || sems.len() != 3 || !fits {
            return Err(Error::Malformed {
                reason: format!("{name}: its semaphore set or slot layout does not match"),
            });
        }
        Ok(Buffer { seg, sems })
    }

    /// The segment's name, to hand to the other processes.
    pub fn name(&self) -> &str {
        self.seg.name().expect("a named segment")
    }

    /// A pointer to slot `i`.
    fn slot(&self, i: u64) -> *mut u8 {
        let off = (i % self.seg.slots) as usize * self.seg.stride as usize;
        // SAFETY: `off + stride <= slots * stride <= extra_len` (checked when opened, true
        // by construction when created), so the slot is inside the extra area.
        unsafe { self.seg.extra_ptr().add(off) }
    }

    /// Puts one message in the ring, waiting until `deadline` for a free slot.
    pub fn put(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), Error> {
        let max = self.seg.slot_size as usize;
        if payload.len() > max {
            return Err(Error::MessageTooLarge { size: payload.len(), max });
        }
        // P(EMPTY) P(MUTEX), atomically.
        self.sems
            .op_deadline(&[SemOp::wait(EMPTY).without_undo(), SemOp::wait(MUTEX)], deadline)?;
        let tail = self.seg.tail.load(Ordering::Relaxed);
        let p = self.slot(tail);
        // SAFETY: `p` is a slot of `stride >= SLOT_HEADER + slot_size` bytes in the
        // mapping; `MUTEX` makes this process its only user; `payload` is local memory,
        // so the ranges cannot overlap.
        unsafe {
            p.cast::<u32>().write(payload.len() as u32);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), p.add(SLOT_HEADER), payload.len());
        }
        self.seg.tail.store(tail.wrapping_add(1), Ordering::Relaxed);
        // V(MUTEX) V(FULL), atomically.
        self.sems.op(&[SemOp::post(MUTEX), SemOp::post(FULL).without_undo()])
    }

    /// Takes one message from the ring into `buf`, waiting until `deadline` for one.
    pub fn take(&self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), Error> {
        // P(FULL) P(MUTEX), atomically.
        self.sems.op_deadline(&[SemOp::wait(FULL).without_undo(), SemOp::wait(MUTEX)], deadline)?;
        let head = self.seg.head.load(Ordering::Relaxed);
        let p = self.slot(head);
        // SAFETY: as in `put`: a slot inside the mapping, this process its only user under
        // `MUTEX`. The length is read first and checked before the copy.
        let len = unsafe { p.cast::<u32>().read() } as usize;
        let bad = len > self.seg.slot_size as usize;
        if !bad {
            buf.resize(len, 0);
            // SAFETY: `len <= slot_size` (checked), so the source is inside the slot; the
            // destination is `buf`, which has `len` bytes and is local memory.
            unsafe { std::ptr::copy_nonoverlapping(p.add(SLOT_HEADER), buf.as_mut_ptr(), len) };
        }
        self.seg.head.store(head.wrapping_add(1), Ordering::Relaxed);
        // V(MUTEX) V(EMPTY), atomically.
        self.sems.op(&[SemOp::post(MUTEX), SemOp::post(EMPTY).without_undo()])?;
        if bad {
            return Err(Error::Malformed { reason: format!("a slot announces {len} bytes") });
        }
        Ok(())
    }
}

/// The producer side as a frame sink.
pub struct ShmSemSink(pub Buffer);

impl FrameSink for ShmSemSink {
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<(), Error> {
        self.0.put(payload, deadline)
    }

    fn max_frame(&self) -> usize {
        self.0.seg.slot_size as usize
    }

    fn set_max_frame(&mut self, _max: usize) {
        // Fixed by the slot size the buffer was created with.
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

/// The consumer side as a frame source.
pub struct ShmSemSource {
    buffer: Buffer,
    buf: Vec<u8>,
}

impl ShmSemSource {
    /// Receives from `buffer`.
    pub fn new(buffer: Buffer) -> ShmSemSource {
        let cap = buffer.seg.slot_size as usize;
        ShmSemSource { buffer, buf: Vec::with_capacity(cap) }
    }
}

impl FrameSource for ShmSemSource {
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8], Error> {
        self.buffer.take(&mut self.buf, deadline)?;
        Ok(&self.buf)
    }

    fn max_frame(&self) -> usize {
        self.buffer.seg.slot_size as usize
    }

    fn set_max_frame(&mut self, _max: usize) {}

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}
