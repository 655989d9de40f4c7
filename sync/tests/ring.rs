//! The shared-memory ring (`interproc_sync::ring`) with real threads and real processes:
//! order and integrity through many laps, the zero-copy loans, every error, and a producer
//! in a forked child over a `MAP_SHARED` mapping (under a watchdog).
//!
//! No test asserts how long anything takes.
#![cfg(not(interproc_loom))] // real threads and futexes; the models are in loom_ring.rs
#![allow(clippy::disallowed_methods)] // std::thread: these tests run real threads

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use interproc_sync::ring::{
    self, Consumer, DataArea, HeapMemory, Producer, RingError, RingHeader, RingMemory,
};
use interproc_sync::SharedFutex;
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

type Heap = Arc<HeapMemory>;

fn msg(seq: u64, len: usize, out: &mut [u8]) {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in &mut out[..len] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    if len >= 8 {
        out[..8].copy_from_slice(&seq.to_le_bytes());
    }
}

fn len_of(seq: u64) -> usize {
    (seq as usize * 37) % 700
}

fn check(seq: u64, got: &[u8]) {
    let mut want = vec![0u8; len_of(seq)];
    msg(seq, want.len(), &mut want);
    assert_eq!(got.len(), want.len(), "message {seq}: length");
    assert!(got == want.as_slice(), "message {seq} is corrupt");
}

/// 100,000 messages of 0..700 bytes through a 2 KiB ring (hundreds of laps, padding at
/// every wrap), alternating the copy and zero-copy paths on both sides.
#[test]
fn order_and_integrity_between_threads() {
    const N: u64 = 100_000;
    let (mut tx, mut rx) = ring::pair::<Heap, SharedFutex>(HeapMemory::new(2048), 1).unwrap();
    thread::scope(|s| {
        s.spawn(move || {
            let mut buf = [0u8; 700];
            for seq in 0..N {
                let len = len_of(seq);
                msg(seq, len, &mut buf);
                if seq % 2 == 0 {
                    tx.send(&buf[..len], None).unwrap();
                } else {
                    let mut loan = tx.loan(len, None).unwrap();
                    for (d, s) in loan.as_uninit_mut().iter_mut().zip(&buf[..len]) {
                        d.write(*s);
                    }
                    loan.commit();
                }
            }
        });
        let mut buf = Vec::new();
        for seq in 0..N {
            match seq % 3 {
                0 => {
                    rx.recv(&mut buf, None).unwrap();
                    check(seq, &buf);
                }
                1 => rx.recv_in_place(None, |m| check(seq, m)).unwrap(),
                _ => check(seq, rx.hold(None).unwrap()),
            }
        }
        assert_eq!(rx.recv(&mut buf, None), Err(RingError::Disconnected));
    });
}

#[test]
fn errors() {
    assert!(matches!(RingHeader::check_capacity(100), Err(RingError::Invalid { .. })));
    assert!(matches!(RingHeader::check_capacity(8), Err(RingError::Invalid { .. })));
    assert_eq!(RingHeader::capacity_for(100), Some(128));
    assert_eq!(RingHeader::capacity_for(120), Some(128));
    assert_eq!(RingHeader::capacity_for(121), Some(256));
    let mem = HeapMemory::new(64);
    let (mut tx, mut rx) = ring::pair::<Heap, SharedFutex>(mem.clone(), 7).unwrap();
    assert_eq!(
        Producer::<Heap, SharedFutex>::attach(mem.clone(), 8).unwrap_err(),
        RingError::Busy { side: "producer", pid: 7 }
    );
    assert_eq!(
        Consumer::<Heap, SharedFutex>::attach(mem.clone(), 8).unwrap_err(),
        RingError::Busy { side: "consumer", pid: 7 }
    );
    assert_eq!(tx.max_message(), 56);
    assert_eq!(tx.send(&[0; 57], None), Err(RingError::TooLarge { size: 57, max: 56 }));
    let now = || Some(Instant::now());
    let mut buf = Vec::new();
    assert_eq!(rx.recv(&mut buf, now()), Err(RingError::Timeout), "empty");
    assert_eq!(
        rx.recv(&mut buf, Some(Instant::now() + Duration::from_millis(20))),
        Err(RingError::Timeout)
    );
    tx.send(&[1; 56], None).unwrap();
    assert_eq!(tx.send(&[2], now()), Err(RingError::Timeout), "full");
    assert_eq!(
        tx.send(&[2], Some(Instant::now() + Duration::from_millis(20))),
        Err(RingError::Timeout)
    );
    // A loan dropped uncommitted sends nothing.
    rx.recv(&mut buf, None).unwrap();
    assert_eq!(buf, [1; 56]);
    let abandoned = tx.loan(10, None).unwrap();
    let _ = abandoned;
    assert_eq!(rx.recv(&mut buf, now()), Err(RingError::Timeout));
    // commit_prefix sends the first bytes only.
    let mut loan = tx.loan(10, None).unwrap();
    loan.write_at(0, b"abcdefghij");
    loan.commit_prefix(3);
    rx.recv(&mut buf, None).unwrap();
    assert_eq!(buf, b"abc");
    // Closing either end.
    drop(rx);
    assert_eq!(tx.send(b"x", None), Err(RingError::Disconnected));
    let (mut tx, mut rx) = ring::pair::<Heap, SharedFutex>(HeapMemory::new(64), 1).unwrap();
    tx.send(b"last", None).unwrap();
    drop(tx);
    rx.recv(&mut buf, None).unwrap();
    assert_eq!(buf, b"last", "committed messages outlive the producer");
    assert_eq!(rx.recv(&mut buf, None), Err(RingError::Disconnected));
}

/// Each capacity error names the limit the capacity breaks: the smallest ring, the
/// largest, or the power of two.
#[test]
fn capacity_errors_name_the_limit_broken() {
    let reason = |cap: usize| match RingHeader::check_capacity(cap) {
        Err(RingError::Invalid { reason }) => reason,
        other => panic!("capacity {cap}: expected Invalid, got {other:?}"),
    };
    let small = reason(8);
    assert!(small.contains("below the smallest ring of 16 bytes"), "{small}");
    let large = reason(1 << 31);
    assert!(large.contains(&format!("above the largest ring of {} bytes", 1 << 30)), "{large}");
    let odd = reason(100);
    assert!(odd.contains("not a power of two"), "{odd}");
    assert!(!odd.contains("smallest") && !odd.contains("largest"), "{odd}");
    assert_eq!(RingHeader::check_capacity(16), Ok(()));
    assert_eq!(RingHeader::check_capacity(1 << 30), Ok(()));
}

/// The ends attached by this process, copied into a forked child (as `fork` copies
/// everything): there they refuse to send or receive with `ForkedCopy`, naming the
/// process that attached them, and dropping them leaves the parent's ends open. The
/// parent then goes on with the ring as if the child had never touched it.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn fork_copies_of_the_ends_refuse_and_leave_the_ring_open() {
    let mem = Mapped::new(4096);
    let me = std::process::id();
    let mut tx = Producer::<_, SharedFutex>::attach(mem.clone(), me).unwrap();
    let mut rx = Consumer::<_, SharedFutex>::attach(mem.clone(), me).unwrap();
    tx.send(b"before", None).unwrap();
    assert!(tx.is_owned() && rx.is_owned());
    // SAFETY: the child only runs the ring on the copies (atomics, a /proc read for its
    // identity) and `_exit`s: no unwinding or harness code runs in it.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let child = std::process::id();
            let sent = tx.send(b"from the child", None);
            let got = rx.recv_in_place(Some(Instant::now()), |m| m.len());
            let code = match (sent, got) {
                (Ok(()), _) => 1, // the copy sent into the parent's ring
                (_, Ok(_)) => 2,  // the copy took the parent's message
                (
                    Err(RingError::ForkedCopy { side: "producer", owner: o1, pid: p1 }),
                    Err(RingError::ForkedCopy { side: "consumer", owner: o2, pid: p2 }),
                ) if o1 == me && o2 == me && p1 == child && p2 == child => 0,
                _ => 3, // another error, or the wrong processes named
            };
            let code = if code == 0 && (tx.is_owned() || rx.is_owned()) { 4 } else { code };
            // The copies' drops must not close the parent's ends.
            drop(tx);
            drop(rx);
            // SAFETY: `_exit` skips the harness's atexit handlers and unwinding, which must
            // not run in a forked child.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            let st = reap(child);
            assert_eq!(
                st,
                WaitStatus::Exited(child, 0),
                "the child's copies did not refuse with ForkedCopy (1: sent, 2: received, 3: \
                 another error, 4: is_owned)"
            );
            let h = mem.header();
            assert!(!h.producer_closed(), "the child's copy closed the parent's producer");
            assert!(!h.consumer_closed(), "the child's copy closed the parent's consumer");
            let mut buf = Vec::new();
            let deadline = Some(Instant::now() + Duration::from_secs(60));
            rx.recv(&mut buf, deadline).unwrap();
            assert_eq!(buf, b"before");
            tx.send(b"after", None).unwrap();
            rx.recv(&mut buf, deadline).unwrap();
            assert_eq!(buf, b"after");
            assert_eq!(rx.recv(&mut buf, Some(Instant::now())), Err(RingError::Timeout));
        }
    }
}

/// Regression (found in review): a consumer copied into a forked child while it held a
/// message let the child read that message (`held`, `copy_held`, `held_len`) although the
/// parent may release it and the producer rewrite it at any time. The copy holds nothing:
/// it refuses like every other call, and the parent still holds its message.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn a_fork_copy_does_not_read_the_parents_held_message() {
    let mem = Mapped::new(4096);
    let me = std::process::id();
    let mut tx = Producer::<_, SharedFutex>::attach(mem.clone(), me).unwrap();
    let mut rx = Consumer::<_, SharedFutex>::attach(mem.clone(), me).unwrap();
    tx.send(b"aaaa", None).unwrap();
    tx.send(b"bbbb", None).unwrap();
    assert_eq!(rx.hold(None).unwrap(), b"aaaa");
    // SAFETY: the child only calls the ring's accessors on its copy and `_exit`s: no
    // unwinding or harness code runs in it.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let mut buf = Vec::new();
            let code = if rx.held().is_some() {
                1
            } else if rx.held_len().is_some() {
                2
            } else if rx.copy_held(&mut buf) {
                3
            } else {
                0
            };
            // SAFETY: `_exit` skips the harness's atexit handlers and unwinding, which must
            // not run in a forked child.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            let st = reap(child);
            assert_eq!(
                st,
                WaitStatus::Exited(child, 0),
                "the child's copy read the parent's held message (1: held, 2: held_len, \
                 3: copy_held)"
            );
            assert_eq!(rx.held(), Some(&b"aaaa"[..]));
            assert_eq!(rx.hold(None).unwrap(), b"bbbb");
        }
    }
}

#[test]
#[should_panic(expected = "past the end")]
fn loan_write_out_of_bounds_panics() {
    let (mut tx, _rx) = ring::pair::<Heap, SharedFutex>(HeapMemory::new(64), 1).unwrap();
    tx.loan(4, None).unwrap().write_at(2, b"xyz");
}

/// A ring in an anonymous `MAP_SHARED` mapping: header, then data at offset `DATA_AT`.
struct Mapped {
    base: NonNull<std::ffi::c_void>,
    len: usize,
    cap: usize,
}

const DATA_AT: usize = 1024;

impl Mapped {
    fn new(cap: usize) -> Arc<Self> {
        assert!(std::mem::size_of::<RingHeader>() <= DATA_AT);
        let len = DATA_AT + cap;
        // SAFETY: a fresh anonymous mapping aliases nothing; it is unmapped in Drop.
        let base = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(len).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .unwrap();
        // SAFETY: the mapping is page-aligned and large enough for the header, which
        // nothing refers to yet.
        unsafe { base.cast::<RingHeader>().as_ptr().write(RingHeader::new(cap)) };
        Arc::new(Mapped { base, len, cap })
    }
}

// SAFETY: the header and data area are disjoint parts of one mapping that lives as long as
// `self`; the data area is reached only through `DataArea`.
unsafe impl RingMemory for Mapped {
    fn header(&self) -> &RingHeader {
        // SAFETY: initialised in `new`, aligned, and mapped while `self` lives.
        unsafe { self.base.cast::<RingHeader>().as_ref() }
    }
    fn data(&self) -> DataArea<'_> {
        // SAFETY: `DATA_AT..DATA_AT + cap` is mapped (zero-filled, so initialised) while
        // `self` lives, and only the ring touches it.
        unsafe { DataArea::from_raw(self.base.as_ptr().cast::<u8>().add(DATA_AT), self.cap) }
    }
}

// SAFETY: the mapping is process memory shared by the ring protocol, not tied to a thread.
unsafe impl Send for Mapped {}
// SAFETY: as for `Send`: concurrent access goes through the ring's atomics.
unsafe impl Sync for Mapped {}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; every borrow of it is gone.
        unsafe { munmap(self.base, self.len) }.unwrap();
    }
}

fn reap(pid: nix::unistd::Pid) -> WaitStatus {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive if Instant::now() < give_up => {
                thread::sleep(Duration::from_millis(5))
            }
            WaitStatus::StillAlive => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                panic!("watchdog: child {pid} hung and was killed");
            }
            st => return st,
        }
    }
}

/// A forked producer sends 50,000 messages over a 4 KiB ring in `MAP_SHARED` memory,
/// sleeping on the shared futex whenever the ring is full; the parent receives all of them
/// intact, then `Disconnected` when the child's producer drops.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn producer_in_another_process() {
    const N: u64 = 50_000;
    let mem = Mapped::new(4096);
    let mut rx = Consumer::<_, SharedFutex>::attach(mem.clone(), std::process::id()).unwrap();
    // SAFETY: the child only runs the ring (atomics, copies, futex syscalls) on stack
    // buffers and `_exit`s: no allocation, lock or unwinding that fork could break.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = match Producer::<_, SharedFutex>::attach(mem, 2) {
                Ok(mut tx) => {
                    let mut buf = [0u8; 700];
                    let mut code = 0;
                    for seq in 0..N {
                        let len = len_of(seq);
                        msg(seq, len, &mut buf);
                        if tx.send(&buf[..len], None).is_err() {
                            code = 1;
                            break;
                        }
                    }
                    drop(tx);
                    code
                }
                Err(_) => 2,
            };
            // SAFETY: `_exit` skips the harness's atexit handlers and unwinding, which must
            // not run in a forked child.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            let mut buf = Vec::new();
            for seq in 0..N {
                let deadline = Some(Instant::now() + Duration::from_secs(60));
                rx.recv(&mut buf, deadline).unwrap_or_else(|e| {
                    let _ = kill(child, Signal::SIGKILL);
                    panic!("message {seq}: {e}")
                });
                check(seq, &buf);
            }
            let end = rx.recv(&mut buf, Some(Instant::now() + Duration::from_secs(60)));
            assert_eq!(end, Err(RingError::Disconnected));
            assert_eq!(reap(child), WaitStatus::Exited(child, 0));
            assert_eq!(rx.peer_pid(), 2);
        }
    }
}

/// A peer that scribbles over the indices (memory corruption, or not this code) gets a
/// typed error, never a panic or a read out of bounds: a tail too far behind the head on
/// the producer's side, a head too far ahead of the tail on the consumer's.
#[test]
fn corrupt_indices_are_errors() {
    // The header is `#[repr(C)]`: line 0 holds the constants, line 1 `head`, line 2 `tail`.
    const HEAD_AT: usize = 64;
    const TAIL_AT: usize = 128;
    let mem = Mapped::new(64);
    let mut tx = Producer::<_, SharedFutex>::attach(mem.clone(), 1).unwrap();
    let mut rx = Consumer::<_, SharedFutex>::attach(mem.clone(), 1).unwrap();
    let base = mem.base.as_ptr().cast::<u8>();
    let poke = |at: usize, v: u32| {
        // SAFETY: `at` is the offset of an `AtomicU32` index inside the mapped header; a
        // volatile store of a whole aligned word is what a misbehaving peer process does.
        unsafe { base.add(at).cast::<u32>().write_volatile(v) }
    };
    poke(TAIL_AT, 0xdead_0000);
    let mut sent = 0;
    let err = loop {
        match tx.send(&[7; 16], Some(Instant::now())) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10, "a corrupt tail went unnoticed");
    };
    assert!(matches!(err, RingError::Corrupt { .. }), "{err:?}");
    poke(HEAD_AT, 0x0bad_0000);
    let mut buf = Vec::new();
    assert!(matches!(rx.recv(&mut buf, Some(Instant::now())), Err(RingError::Corrupt { .. })));
}
