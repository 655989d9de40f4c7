//! A peer that scribbles over the ring's indices (a buggy or hostile process with write
//! access) gets `Corrupt`, never an out-of-bounds access: here the data area ends at a
//! PROT_NONE guard page. And the index arithmetic across the u32 wrap. (From the review of
//! the ring; the first test failed with an out-of-bounds write before its fix.)
#![cfg(not(interproc_loom))]
#![allow(clippy::disallowed_methods)]

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

use interproc_sync::ring::{Consumer, DataArea, Producer, RingError, RingHeader, RingMemory};
use interproc_sync::SharedFutex;
use nix::sys::mman::{mmap_anonymous, mprotect, MapFlags, ProtFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

const PAGE: usize = 4096;
const HEAD_AT: usize = 64;
const TAIL_AT: usize = 128;

/// Header on page 0, data = the last `cap` bytes of page 1, page 2 PROT_NONE (guard).
struct Guarded {
    base: NonNull<std::ffi::c_void>,
    cap: usize,
}
impl Guarded {
    fn new(cap: usize) -> Arc<Self> {
        // SAFETY: fresh mapping.
        let base = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(3 * PAGE).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .unwrap();
        // SAFETY: page 2 of our own mapping.
        unsafe {
            mprotect(
                NonNull::new(base.as_ptr().cast::<u8>().add(2 * PAGE).cast()).unwrap(),
                PAGE,
                ProtFlags::PROT_NONE,
            )
        }
        .unwrap();
        // SAFETY: page-aligned, large enough.
        unsafe { base.cast::<RingHeader>().as_ptr().write(RingHeader::new(cap)) };
        Arc::new(Guarded { base, cap })
    }
    fn poke(&self, at: usize, v: u32) {
        // SAFETY: an index word in the header; what a misbehaving peer does.
        unsafe { self.base.as_ptr().cast::<u8>().add(at).cast::<u32>().write_volatile(v) }
    }
}
// SAFETY: test mapping (leaked).
unsafe impl RingMemory for Guarded {
    fn header(&self) -> &RingHeader {
        // SAFETY: initialised in new.
        unsafe { self.base.cast::<RingHeader>().as_ref() }
    }
    fn data(&self) -> DataArea<'_> {
        // SAFETY: the last `cap` bytes of page 1.
        unsafe {
            DataArea::from_raw(self.base.as_ptr().cast::<u8>().add(2 * PAGE - self.cap), self.cap)
        }
    }
}
// SAFETY: test.
unsafe impl Send for Guarded {}
// SAFETY: test.
unsafe impl Sync for Guarded {}

/// A consumer (attached first) scribbles an unaligned head/tail (used = 0, so not "too far
/// behind") before the producer attaches. The producer's first send must be `Corrupt`.
#[test]
fn unaligned_head_at_attach_is_corrupt_not_oob() {
    let mem = Guarded::new(64);
    let _rx = Consumer::<_, SharedFutex>::attach(mem.clone(), 1).unwrap();
    mem.poke(HEAD_AT, 60);
    mem.poke(TAIL_AT, 60);
    // SAFETY: the child only runs the ring and _exits.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = match std::panic::catch_unwind(|| {
                let mut tx = Producer::<_, SharedFutex>::attach(mem.clone(), 2)?;
                tx.send(&[7; 8], Some(Instant::now()))
            }) {
                Ok(Err(RingError::Corrupt { .. })) => 0,
                Ok(Ok(())) => 3,
                Ok(Err(_)) => 4,
                Err(_) => 5, // panicked
            };
            // SAFETY: forked child.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            let st = waitpid(child, None).unwrap();
            assert_eq!(st, WaitStatus::Exited(child, 0), "3=Ok 4=other error 5=panic, signal=OOB");
        }
    }
}

/// Indices preset near u32::MAX: traffic across the u32 wrap, with 0-byte messages and
/// records that exactly fill the tail.
#[test]
fn u32_index_wrap() {
    let mem = Guarded::new(2048);
    mem.poke(HEAD_AT, 0xFFFF_F000);
    mem.poke(TAIL_AT, 0xFFFF_F000);
    let mut tx = Producer::<_, SharedFutex>::attach(mem.clone(), 1).unwrap();
    let mut rx = Consumer::<_, SharedFutex>::attach(mem.clone(), 1).unwrap();
    let lens = |i: u32| match i % 5 {
        0 => 0,
        1 => 2040,
        2 => 1,
        3 => (i as usize * 37) % 700,
        _ => 2032,
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..20_000u32 {
                let l = lens(i);
                let m: Vec<u8> = (0..l).map(|k| (k as u32 ^ i) as u8).collect();
                tx.send(&m, None).unwrap();
            }
        });
        let mut buf = Vec::new();
        for i in 0..20_000u32 {
            rx.recv(&mut buf, None).unwrap();
            let l = lens(i);
            assert_eq!(buf.len(), l, "msg {i}");
            assert!(buf.iter().enumerate().all(|(k, b)| *b == (k as u32 ^ i) as u8), "msg {i}");
        }
        assert_eq!(rx.recv(&mut buf, None), Err(RingError::Disconnected));
    });
}
