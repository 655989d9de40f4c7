//! The `shared_memory-spin` row of `interproc bench`: the shared_memory crate with the
//! simplest correct SPSC ring (the same one as `benches/shared_memory.rs`), as a
//! [`FrameSink`]/[`FrameSource`] pair so that it runs through the bench's bytes path.
//!
//! One segment per direction, made by the bench (its owner, which unlinks it when the
//! row ends) and opened by os id on both sides after the fork. A ring is fixed slots of
//! an 8-byte length and up to `max` bytes, and two monotonic counters on their own cache
//! lines. The sender copies the message into a slot and publishes it (release); the
//! receiver copies it out into its own buffer (acquire) and frees the slot. The crate gives
//! nothing to sleep on, so both sides spin, yielding the CPU every 1024 spins; the bench
//! side checks the peer (`waitid` with `WNOWAIT`) while it waits, so a dead peer is
//! `Disconnected`, not a hang.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use interproc::ipc::channel::{FrameSink, FrameSource};
use interproc::ipc::{Error, Result};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use shared_memory::{Shmem, ShmemConf};

/// Spins between two `sched_yield`s.
const YIELD_EVERY: u32 = 1024;
/// Bytes of slots per ring (between 4 and 1024 slots).
const RING_BYTES: usize = 4 << 20;
/// The length word before each slot's payload.
const LEN: usize = 8;

/// One counter on its own cache line.
#[repr(C, align(64))]
struct Counter(AtomicU64);

/// The start of a ring's segment; the slots follow.
#[repr(C)]
struct Header {
    head: Counter,
    tail: Counter,
}

fn slots_for(max: usize) -> usize {
    (RING_BYTES / (max + LEN)).clamp(4, 1024)
}

fn segment_len(max: usize) -> usize {
    std::mem::size_of::<Header>() + slots_for(max) * (max + LEN)
}

/// Creates one ring's segment for messages of up to `max` bytes; the caller owns it (it
/// unlinks the segment when dropped) and hands its os id to both sides.
pub fn create(max: usize) -> std::result::Result<(Shmem, String), String> {
    let shm = ShmemConf::new()
        .size(segment_len(max))
        .create()
        .map_err(|e| format!("shared_memory: {e}"))?;
    let id = shm.get_os_id().to_string();
    Ok((shm, id))
}

/// One side's mapping of a ring.
struct Ring {
    shm: Shmem,
    slots: u64,
    /// The payload room of a slot, fixed at creation.
    cap: usize,
    /// The largest message accepted (at most `cap`).
    max: usize,
    /// The peer to check while waiting (the bench side only).
    peer: Option<Pid>,
}

// SAFETY: `Shmem` is not `Send` only because it holds the mapping's raw pointer. A `Ring`
// owns its mapping alone (it is opened per side, never shared within a process), the
// mapping is valid from any thread until dropped, and every access goes through `&self`
// or `&mut self` of the one `Ring`, so moving it to another thread is sound.
unsafe impl Send for Ring {}

impl Ring {
    fn open(id: &str, max: usize, peer: Option<Pid>) -> std::result::Result<Ring, String> {
        let shm = ShmemConf::new().os_id(id).open().map_err(|e| format!("shared_memory: {e}"))?;
        if shm.len() < segment_len(max) {
            return Err(format!("shared_memory: segment {id} is too small"));
        }
        Ok(Ring { shm, slots: slots_for(max) as u64, cap: max, max, peer })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is page aligned, at least `segment_len(max)` bytes (checked
        // in `open`) and starts with a zero-filled `Header` of atomics, valid for any bit
        // pattern; it stays mapped while `self.shm` lives.
        unsafe { &*self.shm.as_ptr().cast::<Header>() }
    }

    /// The start of slot `n % slots`: its length word, then `cap` bytes.
    fn slot(&self, n: u64) -> *mut u8 {
        let off = std::mem::size_of::<Header>() + (n % self.slots) as usize * (self.cap + LEN);
        // SAFETY: `off + cap + LEN <= segment_len(cap) <= shm.len()` (checked in `open`),
        // so the pointer stays inside the mapping.
        unsafe { self.shm.as_ptr().add(off) }
    }

    /// Spins until `ready` or the deadline; `Timeout`, or `Disconnected` if the peer died.
    fn wait(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> Result<()> {
        let mut spins = 0u32;
        while !ready() {
            std::hint::spin_loop();
            spins += 1;
            if spins == YIELD_EVERY {
                spins = 0;
                std::thread::yield_now();
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::Timeout);
                }
                if let Some(pid) = self.peer {
                    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
                    if !matches!(waitid(Id::Pid(pid), flags), Ok(WaitStatus::StillAlive)) {
                        return Err(Error::Disconnected);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The sending side of a ring.
pub struct Sink {
    ring: Ring,
    head: u64,
    tail: u64,
}

/// The receiving side of a ring.
pub struct Source {
    ring: Ring,
    head: u64,
    tail: u64,
    buf: Vec<u8>,
}

/// Opens the sending side of ring `id`; `peer` is checked while waiting, if given.
pub fn sink(id: &str, max: usize, peer: Option<Pid>) -> std::result::Result<Sink, String> {
    Ok(Sink { ring: Ring::open(id, max, peer)?, head: 0, tail: 0 })
}

/// Opens the receiving side of ring `id`; `peer` is checked while waiting, if given.
pub fn source(id: &str, max: usize, peer: Option<Pid>) -> std::result::Result<Source, String> {
    Ok(Source { ring: Ring::open(id, max, peer)?, head: 0, tail: 0, buf: Vec::new() })
}

impl FrameSink for Sink {
    fn send_frame(&mut self, payload: &[u8], deadline: Option<Instant>) -> Result<()> {
        if payload.len() > self.ring.max {
            return Err(Error::MessageTooLarge { size: payload.len(), max: self.ring.max });
        }
        let (head, slots) = (self.head, self.ring.slots);
        if head - self.tail == slots {
            let mut tail = self.tail;
            self.ring.wait(deadline, || {
                tail = self.ring.header().tail.0.load(Ordering::Acquire);
                head - tail < slots
            })?;
            self.tail = tail;
        }
        let slot = self.ring.slot(head);
        // SAFETY: the slot holds LEN + cap bytes and `payload.len() <= max <= cap`; the receiver
        // released it (its tail passed it, acquired above) and reads it only after `head +
        // 1` is published below, so nothing else touches it now.
        unsafe {
            slot.cast::<u64>().write_unaligned(payload.len() as u64);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), slot.add(LEN), payload.len());
        }
        self.head = head + 1;
        self.ring.header().head.0.store(head + 1, Ordering::Release);
        Ok(())
    }

    fn max_frame(&self) -> usize {
        self.ring.max
    }

    fn set_max_frame(&mut self, max: usize) {
        // The slots are fixed at creation: only a smaller maximum is possible.
        self.ring.max = self.ring.max.min(max);
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl FrameSource for Source {
    fn recv_frame(&mut self, deadline: Option<Instant>) -> Result<&[u8]> {
        let tail = self.tail;
        if tail == self.head {
            let mut head = self.head;
            self.ring.wait(deadline, || {
                head = self.ring.header().head.0.load(Ordering::Acquire);
                head != tail
            })?;
            self.head = head;
        }
        let slot = self.ring.slot(tail);
        // SAFETY: the sender published this slot (its head passed it, acquired above) and
        // writes it again only after `tail + 1` is published below.
        let len = unsafe { slot.cast::<u64>().read_unaligned() } as usize;
        if len > self.ring.max {
            let reason = format!(
                "a shared_memory ring slot says {len} bytes, more than its {}",
                self.ring.max
            );
            return Err(Error::Malformed { reason });
        }
        self.buf.resize(len, 0);
        // SAFETY: as above; `len <= max` bytes of payload follow the length word, and
        // `buf` is our own buffer of `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(slot.add(LEN), self.buf.as_mut_ptr(), len) };
        self.tail = tail + 1;
        self.ring.header().tail.0.store(tail + 1, Ordering::Release);
        Ok(&self.buf)
    }

    fn max_frame(&self) -> usize {
        self.ring.max
    }

    fn set_max_frame(&mut self, max: usize) {
        self.ring.max = self.ring.max.min(max);
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}
