//! What every transport bench shares: the sizes, the criterion settings, a forked peer
//! process, and the two measurements, so that every file reports the same groups:
//!
//! - `latency/<size>`: ping-pong with the peer, a message of `size` bytes each way;
//!   reported as one-way time, half the round trip (`iter_custom`).
//! - `throughput/<size>`: `n` messages of `size` bytes streamed to the peer, which
//!   answers the last one; reported with `Throughput::Bytes(size)` per message.
//!
//! A row is named `<mechanism>/<variant>` (`pipe/raw`, `pipe/bytes`, `pipe/typed`, ...),
//! so one criterion report (`target/criterion/latency_64/...`) holds every mechanism at
//! one size. The peer process is forked once per row and size, outside the timed loops,
//! and serves both measurements.
//!
//! Protocol: every message is `size` bytes; its first byte says what the peer does
//! with it ([`ECHO`]: send a message back, [`ACK`]: send a message back, [`QUIET`]:
//! nothing, [`QUIT`]: exit). The receiver reads every message whole (the kernel copies
//! it into the receiver's buffer).
#![allow(dead_code)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use interproc::ipc::channel::{
    BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender,
};
use serde_bytes::ByteBuf;

/// Message sizes, in bytes.
pub const SIZES: [usize; 4] = [64, 1024, 65536, 1 << 20];

/// The peer sends a message back.
pub const ECHO: u8 = 1;
/// The peer sends a message back (the end of a throughput batch).
pub const ACK: u8 = 2;
/// The peer only reads.
pub const QUIET: u8 = 0;
/// The peer exits.
pub const QUIT: u8 = 3;

/// Criterion settings for the cross-process benches: few samples and short windows, so
/// that a full `cargo bench` of every transport stays within about ten minutes.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args()
}

/// One side of a two-way message link between the bench and its peer.
pub trait Link {
    /// Sends one message.
    fn send(&mut self, msg: &[u8]);
    /// Receives one message whole; its first byte, or `None` once the other side is gone.
    fn recv(&mut self) -> Option<u8>;
}

/// Serves the bench from the peer process: answers [`ECHO`] and [`ACK`] messages with
/// a message of `size` bytes, until [`QUIT`] or the link closes.
fn serve(link: &mut dyn Link, size: usize) {
    let reply = message(size, QUIET);
    while let Some(flag) = link.recv() {
        match flag {
            ECHO | ACK => link.send(&reply),
            QUIT => return,
            _ => {}
        }
    }
}

/// A message of `size` bytes whose first byte is `flag`.
pub fn message(size: usize, flag: u8) -> Vec<u8> {
    let mut m = vec![0xa5u8; size];
    m[0] = flag;
    m
}

/// A forked peer process serving one link; it is told to quit and reaped on drop.
pub struct Peer {
    pid: nix::unistd::Pid,
    link: Box<dyn Link>,
    size: usize,
}

impl Peer {
    /// Forks a peer for messages of `size` bytes. The child calls `theirs` and serves
    /// the link it returns; this process calls `ours` and keeps that link. Whatever
    /// each closure owns (the other side's fds) is dropped in the process that does
    /// not call it (in the child, after `theirs` ran), so each side holds only its own
    /// ends.
    pub fn fork(
        size: usize,
        theirs: impl FnOnce() -> Box<dyn Link>,
        ours: impl FnOnce() -> Box<dyn Link>,
    ) -> Peer {
        // SAFETY: the bench is single-threaded when it forks (criterion measures on the
        // main thread), so the child may run ordinary Rust code; it leaves with
        // `_exit`, running no destructor of the parent's state.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                // SAFETY: prctl(PR_SET_PDEATHSIG) reads no memory; it makes the kernel
                // kill this peer if the bench dies, so no peer outlives its bench.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                // Set up first, then drop the parent's side: that side may own what the
                // set-up needs (ipc-channel's one-shot server removes its socket
                // directory when dropped).
                let mut link = theirs();
                drop(ours);
                serve(&mut *link, size);
                drop(link);
                // SAFETY: `_exit` ends the process at once; nothing else runs after it.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(theirs);
                Peer { pid: child, link: ours(), size }
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.link.send(&message(self.size, QUIT));
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// Measures one row, `name` at `size`, in both groups: `ours` here, `theirs` served
/// by a forked peer.
pub fn row(c: &mut Criterion, name: &str, size: usize, ours: Box<dyn Link>, theirs: Box<dyn Link>) {
    row_with(c, name, size, Peer::fork(size, move || theirs, move || ours));
}

/// Measures one row, `name` at `size`, in both groups against `peer`.
pub fn row_with(c: &mut Criterion, name: &str, size: usize, mut peer: Peer) {
    latency(c, name, size, &mut peer);
    throughput(c, name, size, &mut peer);
}

/// Measures one row, `name` at `size`, in the `latency` group only (for a link that
/// cannot stream: a one-word mailbox).
pub fn latency_row_with(c: &mut Criterion, name: &str, size: usize, mut peer: Peer) {
    latency(c, name, size, &mut peer);
}

fn latency(c: &mut Criterion, name: &str, size: usize, peer: &mut Peer) {
    let ping = message(size, ECHO);
    let mut g = c.benchmark_group(format!("latency/{size}"));
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                peer.link.send(black_box(&ping));
                peer.link.recv().expect("peer answered");
            }
            // One way: half the round trip.
            start.elapsed() / 2
        })
    });
    g.finish();
}

fn throughput(c: &mut Criterion, name: &str, size: usize, peer: &mut Peer) {
    let quiet = message(size, QUIET);
    let last = message(size, ACK);
    let mut g = c.benchmark_group(format!("throughput/{size}"));
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 1..iters {
                peer.link.send(black_box(&quiet));
            }
            peer.link.send(&last);
            peer.link.recv().expect("peer acknowledged");
            start.elapsed()
        })
    });
    g.finish();
}

/// Plain `write`/`read` of `size`-byte messages on two byte streams.
pub struct RawStream<R, W> {
    r: R,
    w: W,
    buf: Vec<u8>,
}

impl<R: Read, W: Write> RawStream<R, W> {
    /// A link that reads `size`-byte messages from `r` and writes to `w`.
    pub fn boxed(r: R, w: W, size: usize) -> Box<dyn Link>
    where
        R: 'static,
        W: 'static,
    {
        Box::new(RawStream { r, w, buf: vec![0; size] })
    }
}

impl<R: Read, W: Write> Link for RawStream<R, W> {
    fn send(&mut self, msg: &[u8]) {
        self.w.write_all(msg).expect("write");
    }
    fn recv(&mut self) -> Option<u8> {
        self.r.read_exact(&mut self.buf).ok()?;
        Some(black_box(&self.buf)[0])
    }
}

/// interproc's raw-bytes channel.
pub struct Bytes<S: FrameSink, R: FrameSource>(pub BytesSender<S>, pub BytesReceiver<R>);

impl<S: FrameSink + 'static, R: FrameSource + 'static> Bytes<S, R> {
    /// Boxed.
    pub fn boxed(tx: BytesSender<S>, rx: BytesReceiver<R>) -> Box<dyn Link> {
        Box::new(Bytes(tx, rx))
    }
}

impl<S: FrameSink, R: FrameSource> Link for Bytes<S, R> {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg).expect("send");
    }
    fn recv(&mut self) -> Option<u8> {
        let m = self.1.recv_ref(None).ok()?;
        Some(black_box(m)[0])
    }
}

/// interproc's typed channel of byte buffers, the way a user should send bytes through
/// serde: `serde_bytes::ByteBuf` (or `#[serde(with = "serde_bytes")]` on a `Vec<u8>`
/// field), which postcard encodes as a length and one copy of the bytes.
pub struct Typed<S: FrameSink, R: FrameSource>(pub Sender<ByteBuf, S>, pub Receiver<ByteBuf, R>);

impl<S: FrameSink + 'static, R: FrameSource + 'static> Typed<S, R> {
    /// Boxed.
    pub fn boxed(tx: Sender<ByteBuf, S>, rx: Receiver<ByteBuf, R>) -> Box<dyn Link> {
        Box::new(Typed(tx, rx))
    }
}

impl<S: FrameSink, R: FrameSource> Link for Typed<S, R> {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(ByteBuf::from(msg)).map_err(|e| e.error).expect("send");
    }
    fn recv(&mut self) -> Option<u8> {
        let m = self.1.recv().ok()?;
        Some(black_box(m)[0])
    }
}

/// interproc's typed channel of plain `Vec<u8>`: serde sees a sequence, so postcard
/// encodes and decodes it one element at a time (the slow way, kept to show the cost).
pub struct TypedVec<S: FrameSink, R: FrameSource>(pub Sender<Vec<u8>, S>, pub Receiver<Vec<u8>, R>);

impl<S: FrameSink + 'static, R: FrameSource + 'static> TypedVec<S, R> {
    /// Boxed.
    pub fn boxed(tx: Sender<Vec<u8>, S>, rx: Receiver<Vec<u8>, R>) -> Box<dyn Link> {
        Box::new(TypedVec(tx, rx))
    }
}

impl<S: FrameSink, R: FrameSource> Link for TypedVec<S, R> {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg.to_vec()).map_err(|e| e.error).expect("send");
    }
    fn recv(&mut self) -> Option<u8> {
        let m = self.1.recv().ok()?;
        Some(black_box(m)[0])
    }
}
