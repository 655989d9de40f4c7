//! The shared-memory ring (`ipc::channel::shm`) between two real processes, in the shared
//! groups `latency/<size>` and `throughput/<size>` (see `common`), against the baselines
//! issue 4 sets its goals by, measured in the same run:
//!
//! - `shm/bytes`: the raw-bytes channel over the ring (copy in; the receiver reads in
//!   place with `recv_ref`), default waiting (spin briefly, then sleep on a futex);
//! - `shm/spin`: the same, spinning instead of sleeping (one busy core per side);
//! - `shm/typed`: the typed channel (`Vec<u8>`, postcard) over the ring (the receiver
//!   decodes a private copy of each message);
//! - `shm/zero_copy`: loan a slot, write the payload in place (8 bytes of every 64-byte
//!   line, so that every cache line is written), commit; the receiver reads in place;
//! - `raw_spin_ring/raw`: the baseline, a minimal fixed-slot SPSC ring written here:
//!   `memcpy` in, `memcpy` out, spin-waiting, no framing, no liveness checks;
//! - `raw_futex_ring/raw`: the same ring, sleeping on a futex when empty or full and
//!   waking the other side after every message (a raw futex ping-pong at 1 slot);
//! - `cacheline/spin` (64 B only): a one-slot spinning mailbox: the raw ring above with one
//!   slot, so each message loads the reader's tail, copies 64 bytes into the slot and
//!   stores the head, and the reader copies the slot out and stores the tail (three lines
//!   per direction). It is **not** the one-word cache-line ping-pong of `interproc bench`
//!   (one shared 64-bit word, one line), which is faster: a ratio against this row is not
//!   the same ratio as `interproc bench`'s `p50/pp` (see docs/BENCHMARKS.md);
//! - `cacheline/word` (latency at 64 B only): that one-word ping-pong: each side stores a
//!   counter (and the message's flag byte) into its own 64-bit word of one shared cache
//!   line and spins on the other's, so one line crosses per one-way trip. The payload is
//!   not moved: it is the hardware floor that `interproc bench`'s `p50/pp` divides by;
//! - `pipe/raw`: plain `write`/`read` on two pipes;
//! - `memcpy/in_process` (throughput only): copying `size` bytes within one process, the
//!   bandwidth bound for the copy API.
//!
//! Peers are not pinned to cores. Run: `cargo bench --bench ipc_shm_ring`.

mod common;

use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use common::{Bytes, Link, Peer, RawStream, Typed};
use criterion::{BenchmarkId, Criterion, Throughput};
use interproc::ipc::channel::shm::{ShmRing, ShmSink, ShmSource};
use interproc::ipc::channel::{BytesReceiver, BytesSender, Receiver, Sender};
use interproc::ipc::pipe;

/// A ring comfortably larger than the biggest message (1 MiB + framing).
const RING: usize = 4 << 20;

/// Both directions' anonymous rings, made before the fork; each process attaches its ends.
struct Rings {
    fwd: ShmRing,
    back: ShmRing,
}

impl Rings {
    fn new() -> Rings {
        Rings { fwd: ShmRing::anonymous(RING).unwrap(), back: ShmRing::anonymous(RING).unwrap() }
    }

    /// The bench's ends: sends on `fwd`, receives on `back`.
    fn ours(&self, spin: u32) -> (ShmSink, ShmSource) {
        let (mut tx, mut rx) = (self.fwd.sink().unwrap(), self.back.source().unwrap());
        tx.set_spin(spin);
        rx.set_spin(spin);
        (tx, rx)
    }

    /// The peer's ends: sends on `back`, receives on `fwd`.
    fn theirs(&self, spin: u32) -> (ShmSink, ShmSource) {
        let (mut tx, mut rx) = (self.back.sink().unwrap(), self.fwd.source().unwrap());
        tx.set_spin(spin);
        rx.set_spin(spin);
        (tx, rx)
    }
}

/// The zero-copy API: loan, write in place, commit; read in place.
struct ZeroCopy(ShmSink, ShmSource);

impl Link for ZeroCopy {
    fn send(&mut self, msg: &[u8]) {
        let mut loan = self.0.producer().loan(msg.len(), None).unwrap();
        let buf = loan.as_uninit_mut();
        buf[0].write(msg[0]);
        for o in (8..msg.len().saturating_sub(7)).step_by(64) {
            for (d, b) in buf[o..o + 8].iter_mut().zip(&msg[o..o + 8]) {
                d.write(*b);
            }
        }
        loan.commit();
    }

    fn recv(&mut self) -> Option<u8> {
        let m = self.1.recv(None).ok()?;
        // Touch every cache line, as the writer did.
        let mut x = m[0];
        for o in (8..m.len()).step_by(64) {
            x ^= black_box(m[o]);
        }
        black_box(x);
        Some(m[0])
    }
}

/// A minimal fixed-slot SPSC ring in `MAP_SHARED` memory: the baseline.
///
/// Layout: `head` (written by the producer) and `tail` (by the consumer) on cache lines of
/// their own, then `slots` slots of `size` bytes. Every message is exactly `size` bytes.
struct RawRing {
    base: NonNull<u8>,
    slots: u32,
    size: usize,
}

// SAFETY: the mapping is shared memory used through atomics and by one producer and one
// consumer, which the protocol keeps off each other's slots.
unsafe impl Send for RawRing {}

const LINE: usize = 64;

impl RawRing {
    /// A ring for `size`-byte messages, in a new anonymous shared mapping that fork() keeps.
    fn new(size: usize) -> RawRing {
        let slots = ((RING / size).clamp(1, 256)) as u32;
        let len = 2 * LINE + slots as usize * size;
        // SAFETY: an anonymous shared mapping, no fd, no address hint; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        RawRing { base: NonNull::new(p.cast()).unwrap(), slots, size }
    }

    fn head(&self) -> &AtomicU32 {
        // SAFETY: the mapping starts with the head word, zeroed by mmap, and lives as long
        // as the process (it is never unmapped).
        unsafe { self.base.cast::<AtomicU32>().as_ref() }
    }

    fn tail(&self) -> &AtomicU32 {
        // SAFETY: the tail word sits one cache line in; same lifetime as `head`.
        unsafe { self.base.as_ptr().add(LINE).cast::<AtomicU32>().as_ref().unwrap() }
    }

    fn slot(&self, i: u32) -> *mut u8 {
        // SAFETY: `i % slots` is within the mapping's slot area.
        unsafe { self.base.as_ptr().add(2 * LINE + (i % self.slots) as usize * self.size) }
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: a plain FUTEX_WAIT on a live, aligned word of a shared mapping; no timeout.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, 0usize);
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0usize);
    }
}

/// One side of two raw rings: sends on `tx`, receives on `rx`.
struct Raw {
    tx: RawRing,
    rx: RawRing,
    futex: bool,
    buf: Vec<u8>,
}

impl Raw {
    /// Waits while `word` holds `value`.
    fn wait_while(&self, word: &AtomicU32, value: u32) {
        let mut spins = 0u32;
        while word.load(Ordering::Acquire) == value {
            if self.futex && spins >= 100 {
                futex_wait(word, value);
            } else {
                spins += 1;
                std::hint::spin_loop();
            }
        }
    }
}

impl Link for Raw {
    fn send(&mut self, msg: &[u8]) {
        let r = &self.tx;
        let head = r.head().load(Ordering::Relaxed);
        loop {
            let tail = r.tail().load(Ordering::Acquire);
            if head.wrapping_sub(tail) < r.slots {
                break;
            }
            self.wait_while(r.tail(), tail);
        }
        // SAFETY: the slot is free (head - tail < slots) and only the producer writes it
        // until the head store below publishes it.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), r.slot(head), r.size) };
        r.head().store(head.wrapping_add(1), Ordering::Release);
        if self.futex {
            futex_wake(r.head());
        }
    }

    fn recv(&mut self) -> Option<u8> {
        let r = &self.rx;
        let tail = r.tail().load(Ordering::Relaxed);
        self.wait_while(r.head(), tail);
        // SAFETY: the slot was published by the producer's Release store of head, which
        // the Acquire load in `wait_while` saw; the producer does not reuse it until the
        // tail store below.
        unsafe { std::ptr::copy_nonoverlapping(r.slot(tail), self.buf.as_mut_ptr(), r.size) };
        r.tail().store(tail.wrapping_add(1), Ordering::Release);
        if self.futex {
            futex_wake(r.tail());
        }
        Some(black_box(&self.buf)[0])
    }
}

/// One side of the one-word ping-pong: it writes word `mine` of one shared cache line and
/// spins on word `theirs`. Each value is a counter shifted left by 8 with the message's
/// flag byte below, so every send is a new value.
struct Word {
    base: NonNull<AtomicU64>,
    mine: usize,
    theirs: usize,
    sent: u64,
    seen: u64,
}

// SAFETY: the mapping is shared memory used only through atomics.
unsafe impl Send for Word {}

impl Word {
    fn word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: words 0 and 1 lie in the first line of the live, never unmapped mapping
        // made in `word_pair`, zeroed by mmap.
        unsafe { self.base.add(i).as_ref() }
    }
}

impl Link for Word {
    fn send(&mut self, msg: &[u8]) {
        self.sent += 1;
        self.word(self.mine).store(self.sent << 8 | u64::from(msg[0]), Ordering::Release);
    }

    fn recv(&mut self) -> Option<u8> {
        loop {
            let v = self.word(self.theirs).load(Ordering::Acquire);
            if v != self.seen {
                self.seen = v;
                return Some(v as u8);
            }
            std::hint::spin_loop();
        }
    }
}

/// The one-word ping-pong's two sides, over one line of a new shared mapping: (ours, theirs).
fn word_pair() -> (Word, Word) {
    // SAFETY: an anonymous shared mapping, no fd, no address hint; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    let base = NonNull::new(p.cast()).unwrap();
    let side = |mine, theirs| Word { base, mine, theirs, sent: 0, seen: 0 };
    (side(0, 1), side(1, 0))
}

/// A raw ring pair for `size`-byte messages: (ours, theirs).
fn raw_pair(size: usize, futex: bool, one_slot: bool) -> (Raw, Raw) {
    let ring = |size| {
        let mut r = RawRing::new(size);
        if one_slot {
            r.slots = 1;
        }
        r
    };
    let (fwd, back) = (ring(size), ring(size));
    let alias = |r: &RawRing| RawRing { base: r.base, slots: r.slots, size: r.size };
    let ours = Raw { tx: alias(&fwd), rx: alias(&back), futex, buf: vec![0; size] };
    let theirs = Raw { tx: back, rx: fwd, futex, buf: vec![0; size] };
    (ours, theirs)
}

fn raw_row(c: &mut Criterion, name: &str, size: usize, futex: bool, one_slot: bool) {
    let (ours, theirs) = raw_pair(size, futex, one_slot);
    common::row(c, name, size, Box::new(ours), Box::new(theirs));
}

fn memcpy_row(c: &mut Criterion, size: usize) {
    let (src, mut dst) = (vec![0xa5u8; size], vec![0u8; size]);
    let mut g = c.benchmark_group(format!("throughput/{size}"));
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function(BenchmarkId::from_parameter("memcpy/in_process"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn shm_rows(c: &mut Criterion, size: usize) {
    for (name, spin) in [("shm/bytes", 100), ("shm/spin", u32::MAX)] {
        let rings = Rings::new();
        let peer = Peer::fork(
            size,
            || {
                let (tx, rx) = rings.theirs(spin);
                Bytes::boxed(BytesSender::new(tx), BytesReceiver::new(rx))
            },
            || {
                let (tx, rx) = rings.ours(spin);
                Bytes::boxed(BytesSender::new(tx), BytesReceiver::new(rx))
            },
        );
        common::row_with(c, name, size, peer);
    }
    let rings = Rings::new();
    let peer = Peer::fork(
        size,
        || {
            let (tx, rx) = rings.theirs(100);
            Typed::boxed(Sender::new(tx), Receiver::new(rx))
        },
        || {
            let (tx, rx) = rings.ours(100);
            Typed::boxed(Sender::new(tx), Receiver::new(rx))
        },
    );
    common::row_with(c, "shm/typed", size, peer);
    let rings = Rings::new();
    let peer = Peer::fork(
        size,
        || {
            let (tx, rx) = rings.theirs(100);
            Box::new(ZeroCopy(tx, rx))
        },
        || {
            let (tx, rx) = rings.ours(100);
            Box::new(ZeroCopy(tx, rx))
        },
    );
    common::row_with(c, "shm/zero_copy", size, peer);
}

fn main() {
    let mut c = common::criterion();
    for size in common::SIZES {
        shm_rows(&mut c, size);
        raw_row(&mut c, "raw_spin_ring/raw", size, false, false);
        raw_row(&mut c, "raw_futex_ring/raw", size, true, false);
        if size == 64 {
            raw_row(&mut c, "cacheline/spin", size, false, true);
            let (ours, theirs) = word_pair();
            let peer = Peer::fork(size, move || Box::new(theirs), move || Box::new(ours));
            common::latency_row_with(&mut c, "cacheline/word", size, peer);
        }
        let ((r1, w1), (r2, w2)) = (pipe::pipe().unwrap(), pipe::pipe().unwrap());
        let ours = RawStream::boxed(r2, w1, size);
        common::row(&mut c, "pipe/raw", size, ours, RawStream::boxed(r1, w2, size));
        memcpy_row(&mut c, size);
    }
    c.final_summary();
}
