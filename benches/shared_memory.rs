//! The shared_memory crate between two processes, as a peer to compare interproc with:
//! the simplest correct single-producer/single-consumer ring over one `ShmemConf`
//! segment, in the shared groups `latency/<size>` and `throughput/<size>` (see `common`).
//!
//! The row is named `shared_memory/spin` because both sides wait by spinning (with a
//! `sched_yield` every [`YIELD_EVERY`] spins, so that a peer sharing the core still runs):
//! the shared_memory crate gives a mapping and nothing to wait on, and spinning is what a
//! user of it writes first. It is the spinning variant; interproc's blocking rows sleep.
//!
//! The segment holds two rings, one per direction. A ring is fixed slots of `size`
//! bytes and two monotonic counters on their own cache lines: the sender spins while the
//! ring is full, copies the payload into slot `head % slots` and publishes `head + 1`
//! (release); the receiver spins while it is empty, copies the slot out into its own
//! buffer (acquire), and publishes `tail + 1` (release). Every payload is written by the
//! sender and read by the receiver, like every other row.
//!
//! The bench creates the segment (and, as its owner, unlinks it when the row ends); the
//! forked peer opens it by its os id, as a separate program would.

mod common;

use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Link, Peer};
use criterion::Criterion;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use shared_memory::{Shmem, ShmemConf};

/// Spins between two `sched_yield`s while waiting.
const YIELD_EVERY: u32 = 1024;
/// Yields between two checks that the peer is still alive (bench side only).
const CHECK_EVERY: u32 = 1024;
/// Bytes of slots per ring (at least 4 and at most 1024 slots).
const RING_BYTES: usize = 4 << 20;

/// One counter on its own cache line.
#[repr(C, align(64))]
struct Counter(AtomicU64);

/// The control block of one ring, at the start of its part of the segment.
#[repr(C)]
struct RingHeader {
    /// Messages published by the sender.
    head: Counter,
    /// Messages consumed by the receiver.
    tail: Counter,
}

/// The segment: two ring headers, the peer's pid, then the slots of both rings.
#[repr(C)]
struct SegmentHeader {
    to_peer: RingHeader,
    to_bench: RingHeader,
    peer_pid: Counter,
}

fn slots_for(size: usize) -> usize {
    (RING_BYTES / size).clamp(4, 1024)
}

fn segment_len(size: usize) -> usize {
    std::mem::size_of::<SegmentHeader>() + 2 * slots_for(size) * size
}

/// One side of the two rings in a mapped segment.
struct Side {
    /// Keeps the mapping alive (and, on the bench side, unlinks it last).
    _shm: Rc<Shmem>,
    tx: *const RingHeader,
    tx_slots: *mut u8,
    rx: *const RingHeader,
    rx_slots: *const u8,
    slots: u64,
    size: usize,
    /// The sender's cached copy of the receiver's `tail`.
    tx_tail: u64,
    tx_head: u64,
    /// The receiver's cached copy of the sender's `head`.
    rx_head: u64,
    rx_tail: u64,
    buf: Vec<u8>,
    /// The bench side checks that this peer is alive while it waits.
    peer: Option<Pid>,
}

impl Side {
    fn new(shm: Rc<Shmem>, size: usize, bench: bool) -> Side {
        assert!(shm.len() >= segment_len(size), "segment too small");
        let slots = slots_for(size);
        let base = shm.as_ptr();
        let hdr = base.cast::<SegmentHeader>();
        // SAFETY: the mapping is at least `segment_len(size)` bytes (checked above), page
        // aligned, and starts with a `SegmentHeader`; the two slot areas follow it and
        // do not overlap. Pointers into it stay valid while `_shm` keeps it mapped.
        let (to_peer, to_bench, slots_peer, slots_bench) = unsafe {
            let data = base.add(std::mem::size_of::<SegmentHeader>());
            (
                std::ptr::addr_of!((*hdr).to_peer),
                std::ptr::addr_of!((*hdr).to_bench),
                data,
                data.add(slots * size),
            )
        };
        let (tx, tx_slots, rx, rx_slots) = if bench {
            (to_peer, slots_peer, to_bench, slots_bench)
        } else {
            (to_bench, slots_bench, to_peer, slots_peer)
        };
        // SAFETY: `hdr` points at the initialised (zero-filled by ftruncate) header; the
        // counter is an `AtomicU64`, valid for any bit pattern, shared with the peer.
        let pid_word = unsafe { &(*hdr).peer_pid.0 };
        if !bench {
            pid_word.store(std::process::id().into(), Ordering::Release);
        }
        Side {
            _shm: shm,
            tx,
            tx_slots,
            rx,
            rx_slots,
            slots: slots as u64,
            size,
            tx_tail: 0,
            tx_head: 0,
            rx_head: 0,
            rx_tail: 0,
            buf: vec![0; size],
            peer: None,
        }
    }

    fn header(&self, ring: *const RingHeader) -> &RingHeader {
        // SAFETY: `ring` points into the mapping that `_shm` keeps alive; its fields
        // are atomics, so the peer's concurrent accesses are fine.
        unsafe { &*ring }
    }

    /// Waits, spinning, until `ready` holds; `false` if the peer died meanwhile.
    fn wait(&mut self, mut ready: impl FnMut(&mut Side) -> bool) -> bool {
        let mut spins = 0u32;
        let mut yields = 0u32;
        while !ready(self) {
            std::hint::spin_loop();
            spins += 1;
            if spins == YIELD_EVERY {
                spins = 0;
                std::thread::yield_now();
                yields += 1;
                if yields == CHECK_EVERY {
                    yields = 0;
                    if !self.peer_alive() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Whether the peer still runs (the peer itself dies with the bench: PDEATHSIG).
    fn peer_alive(&mut self) -> bool {
        if self.peer.is_none() {
            // SAFETY: as in `new`: the header lives while `_shm` keeps the mapping.
            let pid = unsafe { &*self._shm.as_ptr().cast::<SegmentHeader>() }
                .peer_pid
                .0
                .load(Ordering::Acquire);
            if pid == 0 || pid == u64::from(std::process::id()) {
                return true;
            }
            self.peer = Some(Pid::from_raw(pid as i32));
        }
        let pid = self.peer.expect("set above");
        matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive))
    }
}

impl Link for Side {
    fn send(&mut self, msg: &[u8]) {
        assert_eq!(msg.len(), self.size, "one slot per message");
        let (slots, head) = (self.slots, self.tx_head);
        if head - self.tx_tail == slots {
            let tx = self.tx;
            let alive = self.wait(|s| {
                s.tx_tail = s.header(tx).tail.0.load(Ordering::Acquire);
                head - s.tx_tail < slots
            });
            assert!(alive, "the peer died");
        }
        let off = (head % slots) as usize * self.size;
        // SAFETY: slot `head % slots` lies inside this ring's slot area; the receiver
        // does not read it until `head + 1` is published below, and has released it
        // (its `tail` passed it, acquired above), so no one else accesses it now.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.tx_slots.add(off), msg.len()) };
        self.tx_head = head + 1;
        self.header(self.tx).head.0.store(head + 1, Ordering::Release);
    }

    fn recv(&mut self) -> Option<u8> {
        let tail = self.rx_tail;
        if tail == self.rx_head {
            let rx = self.rx;
            if !self.wait(|s| {
                s.rx_head = s.header(rx).head.0.load(Ordering::Acquire);
                s.rx_head != tail
            }) {
                return None;
            }
        }
        let off = (tail % self.slots) as usize * self.size;
        // SAFETY: the sender published slot `tail % slots` (its `head` passed it,
        // acquired above) and does not write it again until `tail + 1` is published
        // below; `buf` is our own `size`-byte buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.rx_slots.add(off), self.buf.as_mut_ptr(), self.size)
        };
        self.rx_tail = tail + 1;
        self.header(self.rx).tail.0.store(tail + 1, Ordering::Release);
        Some(black_box(&self.buf)[0])
    }
}

fn peer(size: usize) -> Peer {
    let shm = ShmemConf::new()
        .os_id(format!("/interproc-bench-shmcrate-{}-{size}", std::process::id()))
        .size(segment_len(size))
        .create()
        .expect("create the segment");
    let id = shm.get_os_id().to_string();
    let shm = Rc::new(shm);
    let ours = Rc::clone(&shm);
    Peer::fork(
        size,
        move || {
            let shm = ShmemConf::new().os_id(id).open().expect("open the segment");
            Box::new(Side::new(Rc::new(shm), size, false))
        },
        // In the child this closure is dropped unrun: it drops one `Rc`, and `shm` below
        // is never dropped there (the child leaves with `_exit`), so only the bench
        // unlinks the segment.
        move || Box::new(Side::new(ours, size, true)),
    )
}

fn bench(c: &mut Criterion) {
    for size in common::SIZES {
        common::row_with(c, "shared_memory/spin", size, peer(size));
    }
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
