//! `interproc bench`: latency and throughput of every transport across two real
//! processes, next to raw syscall loops, ipc-channel, and the machine's own limits.
//!
//! # Method
//!
//! For each (transport, size) the parent creates the channel objects (FIFOs, socket
//! files, queues) and forks **one** peer process, outside every timed loop. Then:
//!
//! - **Latency**: ping-pong. The parent stamps a message, sends it, and waits for the
//!   peer's reply of the same size, which the peer stamps itself. Each round trip is
//!   timed on `CLOCK_MONOTONIC` ([`Instant`]); one-way latency is half of it. p50 and
//!   p99 come from the sorted per-iteration timings, after a warm-up of 10%.
//! - **Throughput**: the parent sends N messages one way; the peer receives and checks
//!   each one, then confirms the count, the byte total and its CPU time on a separate
//!   control pipe. The clock runs from the first send to the confirmation.
//! - **Payload**: the sender writes a sequence stamp into every 64-byte cache line of
//!   each message (and its last 8 bytes); the receiver reads every stamp back and
//!   checks it, and checks that the message has exactly the size sent. So every row
//!   moves real data through the caches, and a split or clamped message is an error,
//!   never a quietly faster row. A size the kernel cannot carry in one message
//!   (msgq above `kernel.msgmax`) is a row marked "not possible", not clamped.
//! - **CPU time per message**: over the throughput phase, the CPU time (user + system)
//!   of the parent's sending thread (`CLOCK_THREAD_CPUTIME_ID`) plus that of the whole
//!   peer process (`CLOCK_PROCESS_CPUTIME_ID`, read by the peer), divided by N.
//! - **Pinning**: when the process may run on two CPUs or more, the parent pins itself
//!   to the first allowed CPU and each peer to the second (`sched_setaffinity`); the
//!   JSON and the table header say which.
//! - **Limits**: memcpy bandwidth at each size (one buffer copied into another, same
//!   process), and the one-way latency of a cache-line ping-pong between two processes
//!   over a `MAP_SHARED` anonymous mapping, both sides *spinning* (like the rows of mode
//!   `spin`; the others block in the kernel or poll). Both ping-pongs are timed like the
//!   rows: one clock read per round trip, whose cost is measured and shown.
//! - **References** (not limits), measured in the same run: a two-line ping-pong (a data
//!   word, then a flag in another line: what a ring whose reader waits on an index and then
//!   reads the record must cross at least), and the copying sender's own work at each size
//!   (stamp a buffer, copy it into a ring-sized destination, one process).
//! - **Peers**: ipc-channel, the shared_memory crate (`shared_memory-spin`), and, in a
//!   build with the `bench-iceoryx2` feature, iceoryx2 (`iceoryx2`, copy in and out, and
//!   `iceoryx2-loan`, written and read in place): see `bench_iceoryx2.rs`. Asking for an
//!   iceoryx2 row in a build without the feature is an error that names it.
//!
//! # Interrupts
//!
//! Peers are forked one at a time while the run goes on, so `interproc bench` never
//! starts a thread (see [`Children::spawn`]): no signal thread, and a progress bar
//! without a ticker. SIGINT/SIGTERM/SIGHUP stay blocked in the parent and are checked
//! between rows and inside spin loops: Ctrl-C in a terminal
//! ends the peer at once (it unblocks them), the parent's current row fails on the dead
//! peer, and the parent stops, prints what it measured, and removes every named object
//! it created.

use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use interproc::ipc::channel::shm::{ShmRing, ShmSink};
use interproc::ipc::channel::{
    BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender, StreamSink, StreamSource,
};
use interproc::ipc::fifo::{self, Fifo};
use interproc::ipc::msgq::{self, MessageQueue, MsgqSink, MsgqSource, PeerWatch, Select};
use interproc::ipc::names;
use interproc::ipc::pipe::{self, PipeWriter};
use interproc::ipc::socket::{
    SeqpacketListener, SeqpacketSink, SeqpacketSource, UnixAddr, UnixListener, UnixSeqpacket,
    UnixStream,
};
use interproc::ipc::tcp::{TcpListener, TcpStream};
use interproc::sync::ring::RingError;
use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender, IpcReceiver, IpcSender};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

#[path = "bench_shared_memory.rs"]
mod shared_memory_peer;

#[cfg(feature = "bench-iceoryx2")]
#[path = "bench_iceoryx2.rs"]
mod iceoryx2_peer;

/// What to say when an iceoryx2 row is asked for in a build without it.
const NO_ICEORYX2: &str = "the iceoryx2 rows need a build with the `bench-iceoryx2` feature \
(about 50 more crates): cargo build --release -p interproc-demos --features bench-iceoryx2";

use crate::procs::Children;

/// The rows `interproc bench` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Kind {
    /// Plain `write`/`read` on a pipe, no framing: the baseline for pipe rows.
    RawPipe,
    /// Plain `write`/`read` on two FIFOs, no framing: the baseline for FIFO rows (a FIFO
    /// takes a slower kernel path than an anonymous pipe: it updates its inode's times).
    RawFifo,
    /// Plain `write`/`read` on a Unix stream socketpair: the baseline for unix rows.
    RawUnix,
    /// Plain blocking `msgsnd`/`msgrcv` on a System V queue: the baseline for msgq rows.
    RawMsgq,
    /// interproc raw-bytes channel over two anonymous pipes.
    Pipe,
    /// interproc raw-bytes channel over two FIFOs.
    Fifo,
    /// interproc raw-bytes channel over a Unix stream socket (through a listener).
    Unix,
    /// interproc raw-bytes channel over a Unix seqpacket socket (through a listener).
    Seqpacket,
    /// interproc raw-bytes channel over TCP loopback (TCP_NODELAY, interproc's default).
    Tcp,
    /// interproc raw-bytes channel over one System V queue (type 1 out, type 2 back),
    /// blocking in msgsnd/msgrcv.
    Msgq,
    /// The same with a peer watch on both ends: interproc then polls with IPC_NOWAIT,
    /// yields 8 times, then naps from 50 µs to 5 ms on the peer's pidfd.
    MsgqWatched,
    /// interproc typed channel (`Sender<ByteBuf>`, postcard) over two pipes.
    TypedPipe,
    /// interproc typed channel (`Sender<ByteBuf>`, postcard) over a Unix stream socket.
    TypedUnix,
    /// ipc-channel `IpcSender<Vec<u8>>` (serde), channels made before the fork.
    IpcChannel,
    /// ipc-channel `IpcBytesSender`, channels made before the fork.
    IpcChannelBytes,
    /// interproc shared-memory ring (`channel::shm`), raw-bytes channel: the sender copies
    /// the message in, the receiver reads it in place; spins briefly, then sleeps on a
    /// futex.
    Shm,
    /// The same ring, zero-copy on the sending side too: the sender loans room in the
    /// ring and writes the stamps in place, then commits.
    ShmZeroCopy,
    /// The copy path with both sides spinning (up to 2^20 checks before they sleep).
    ShmSpin,
    /// The shared_memory crate with the simplest SPSC ring (fixed slots, copy in, copy
    /// out), both sides spinning: it has nothing to sleep on.
    #[value(name = "shared_memory-spin")]
    SharedMemorySpin,
    /// iceoryx2 publish-subscribe (feature `bench-iceoryx2`): the sender copies the
    /// message into a loaned sample, the receiver copies it out; both sides spin.
    Iceoryx2,
    /// iceoryx2's zero-copy mode (feature `bench-iceoryx2`): the sender writes the stamps
    /// in a loaned sample in place, the receiver reads the sample in place; both spin.
    Iceoryx2Loan,
}

const ALL: [Kind; 21] = [
    Kind::RawPipe,
    Kind::RawFifo,
    Kind::RawUnix,
    Kind::RawMsgq,
    Kind::IpcChannel,
    Kind::IpcChannelBytes,
    Kind::Pipe,
    Kind::Fifo,
    Kind::Unix,
    Kind::Seqpacket,
    Kind::Tcp,
    Kind::Msgq,
    Kind::MsgqWatched,
    Kind::TypedPipe,
    Kind::TypedUnix,
    Kind::Shm,
    Kind::ShmZeroCopy,
    Kind::ShmSpin,
    Kind::SharedMemorySpin,
    Kind::Iceoryx2,
    Kind::Iceoryx2Loan,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RawPipe => "raw-pipe",
            Kind::RawFifo => "raw-fifo",
            Kind::RawUnix => "raw-unix",
            Kind::RawMsgq => "raw-msgq",
            Kind::Pipe => "pipe",
            Kind::Fifo => "fifo",
            Kind::Unix => "unix",
            Kind::Seqpacket => "seqpacket",
            Kind::Tcp => "tcp",
            Kind::Msgq => "msgq",
            Kind::MsgqWatched => "msgq-watched",
            Kind::TypedPipe => "typed-pipe",
            Kind::TypedUnix => "typed-unix",
            Kind::IpcChannel => "ipc-channel",
            Kind::IpcChannelBytes => "ipc-channel-bytes",
            Kind::Shm => "shm",
            Kind::ShmZeroCopy => "shm-zero-copy",
            Kind::ShmSpin => "shm-spin",
            Kind::SharedMemorySpin => "shared_memory-spin",
            Kind::Iceoryx2 => "iceoryx2",
            Kind::Iceoryx2Loan => "iceoryx2-loan",
        }
    }

    /// How the row waits for its peer.
    fn mode(self) -> &'static str {
        match self {
            Kind::MsgqWatched => "poll",
            Kind::ShmSpin | Kind::SharedMemorySpin | Kind::Iceoryx2 | Kind::Iceoryx2Loan => "spin",
            _ => "block",
        }
    }

    /// The raw syscall loop on the same kernel object, if there is one.
    fn is_iceoryx2(self) -> bool {
        matches!(self, Kind::Iceoryx2 | Kind::Iceoryx2Loan)
    }

    fn baseline(self) -> Option<Kind> {
        match self {
            Kind::Pipe | Kind::TypedPipe => Some(Kind::RawPipe),
            Kind::Fifo => Some(Kind::RawFifo),
            Kind::Unix | Kind::TypedUnix => Some(Kind::RawUnix),
            Kind::Msgq | Kind::MsgqWatched => Some(Kind::RawMsgq),
            _ => None,
        }
    }
}

/// Options of `interproc bench`.
#[derive(Args, Debug)]
#[command(after_long_help = "Ratios: vs_raw = msgs/s over the raw syscall loop on the same \
kernel object (pipe rows vs raw-pipe, FIFO rows vs raw-fifo, unix rows vs raw-unix, msgq rows vs raw-msgq); vs_ipc_channel = msgs/s \
over ipc-channel's at the same size; vs_limit = MB/s over memcpy's at the same size; \
p50/pingpong = one-way p50 over the spinning cache-line ping-pong. A ratio is empty when its \
reference row was not run (see --transports).")]
pub struct BenchArgs {
    /// Fewer iterations, and sizes 64 and 65536 unless --sizes: under a minute.
    #[arg(long)]
    quick: bool,
    /// Message sizes in bytes, comma-separated, each at least 8 (a message carries
    /// 8-byte sequence stamps). Default: 64,1024,65536,1048576.
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Rows to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    transports: Vec<Kind>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG plot of throughput vs size per transport to FILE.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n: usize = s.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    if !(8..=(64 << 20)).contains(&n) {
        return Err(format!("{n}: sizes go from 8 bytes to 64 MiB"));
    }
    Ok(n)
}

/// How much work each measurement does.
#[derive(Clone, Copy)]
struct Budget {
    /// Latency iterations: at most this many, and at most `lat_bytes / size`.
    lat_max: u64,
    lat_bytes: u64,
    /// Throughput messages: at most this many, and at most `tput_bytes / size`.
    tput_max: u64,
    tput_bytes: u64,
    /// The least iterations of either.
    min: u64,
    /// Bytes copied per memcpy measurement.
    memcpy_bytes: u64,
    /// Cache-line ping-pong round trips.
    pingpong: u64,
}

const FULL: Budget = Budget {
    lat_max: 20_000,
    lat_bytes: 256 << 20,
    tput_max: 200_000,
    tput_bytes: 1 << 30,
    min: 100,
    memcpy_bytes: 2 << 30,
    pingpong: 200_000,
};

const QUICK: Budget = Budget {
    lat_max: 5_000,
    lat_bytes: 32 << 20,
    tput_max: 50_000,
    tput_bytes: 128 << 20,
    min: 20,
    memcpy_bytes: 256 << 20,
    pingpong: 50_000,
};

impl Budget {
    fn latency_iters(&self, size: usize) -> u64 {
        (self.lat_bytes / size as u64).clamp(self.min, self.lat_max)
    }
    fn messages(&self, size: usize) -> u64 {
        (self.tput_bytes / size as u64).clamp(self.min, self.tput_max)
    }
}

// ---------------------------------------------------------------------------------
// Payload stamps

/// Offsets of the 8-byte stamps: one per 64-byte cache line, and the last 8 bytes.
fn stamp_offsets(len: usize) -> impl Iterator<Item = usize> {
    (0..len.saturating_sub(7)).step_by(64).chain(std::iter::once(len - 8))
}

fn stamp(buf: &mut [u8], seq: u64) {
    let s = seq.to_le_bytes();
    for o in stamp_offsets(buf.len()) {
        buf[o..o + 8].copy_from_slice(&s);
    }
}

/// [`stamp`] into memory that is written in place (a loan), not through a `&mut [u8]`.
fn stamp_uninit(buf: &mut [std::mem::MaybeUninit<u8>], seq: u64) {
    let s = seq.to_le_bytes();
    for o in stamp_offsets(buf.len()) {
        for (d, b) in buf[o..o + 8].iter_mut().zip(s) {
            d.write(b);
        }
    }
}

/// Whether `msg` has `size` bytes and carries `seq` in every stamp.
fn check(msg: &[u8], size: usize, seq: u64) -> bool {
    let s = seq.to_le_bytes();
    msg.len() == size && stamp_offsets(size).all(|o| msg[o..o + 8] == s)
}

// ---------------------------------------------------------------------------------
// The ends of one direction, whatever the transport

enum Tx {
    /// A queue id, the message type, and the `struct msgbuf` (mtype, then the text).
    RawMsgq(i32, Vec<u8>),
    Bytes(BytesSender),
    Typed(Sender<ByteBuf>),
    Raw(File),
    Ipc(IpcSender<Vec<u8>>),
    IpcBytes(IpcBytesSender),
    /// A shared-memory ring's sink, written in place through loans.
    ShmLoan(ShmSink),
    /// An iceoryx2 publisher; `true`: written in place through loans.
    #[cfg(feature = "bench-iceoryx2")]
    Ice(iceoryx2_peer::Sink, bool),
}

impl Tx {
    /// Stamps message `seq` and sends it: into `out` and then through the transport, or,
    /// for the zero-copy ring, straight into the ring's memory (`out` is not touched).
    fn send_stamped(&mut self, out: &mut [u8], seq: u64) -> Result<(), String> {
        if let Tx::ShmLoan(sink) = self {
            let len = out.len();
            // First a try (a deadline already passed: no clock read while there is room,
            // as the copying rows read none), then waits of SLICE while the ring is full.
            let mut deadline = *ONE_PAST;
            loop {
                let mut loan = match sink.producer().loan(len, Some(deadline)) {
                    Ok(l) => l,
                    Err(RingError::Timeout) => {
                        // Full for a while: is the receiver still there?
                        if deadline != *ONE_PAST && !sink.peer_alive().map_err(err)? {
                            return Err("shm ring: the receiver is gone".into());
                        }
                        deadline = Instant::now() + SLICE;
                        continue;
                    }
                    Err(e) => return Err(format!("shm ring: {e}")),
                };
                stamp_uninit(loan.as_uninit_mut(), seq);
                loan.commit();
                return Ok(());
            }
        }
        #[cfg(feature = "bench-iceoryx2")]
        if let Tx::Ice(sink, true) = self {
            return sink.send_in_place(|buf| stamp_uninit(buf, seq));
        }
        stamp(out, seq);
        self.send(out)
    }

    /// Sends `msg` as one message. The typed and serde rows build an owned `Vec`, as
    /// their users would.
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        match self {
            Tx::RawMsgq(id, buf) => {
                // msgsnd takes the type and the text in one buffer: the copy is the API's.
                buf.truncate(8);
                buf.extend_from_slice(msg);
                loop {
                    // SAFETY: `buf` holds the 8-byte mtype followed by msg.len() bytes of
                    // text, as msgsnd reads them.
                    let r = unsafe { libc::msgsnd(*id, buf.as_ptr().cast(), msg.len(), 0) };
                    match nix::errno::Errno::result(r) {
                        Ok(_) => return Ok(()),
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => return Err(format!("msgsnd: {e}")),
                    }
                }
            }
            Tx::Bytes(s) => s.send(msg).map_err(|e| e.to_string()),
            Tx::Typed(s) => s.send(ByteBuf::from(msg)).map_err(|e| e.error.to_string()),
            Tx::Raw(f) => f.write_all(msg).map_err(|e| format!("write: {e}")),
            Tx::Ipc(s) => s.send(msg.to_vec()).map_err(|e| format!("{e:?}")),
            Tx::IpcBytes(s) => s.send(msg).map_err(|e| e.to_string()),
            Tx::ShmLoan(s) => s.send(msg, None).map_err(|e| e.to_string()),
            #[cfg(feature = "bench-iceoryx2")]
            Tx::Ice(s, _) => s.send(msg),
        }
    }
}

enum Rx {
    /// A queue id and the message type to take.
    RawMsgq(i32, i64),
    Bytes(BytesReceiver),
    Typed(Receiver<ByteBuf>),
    /// A raw stream has no message boundaries: it reads exactly one message's size.
    Raw(File),
    Ipc(IpcReceiver<Vec<u8>>),
    IpcBytes(IpcBytesReceiver),
    /// An iceoryx2 subscriber (it copies out, or hands out the sample in loan mode).
    #[cfg(feature = "bench-iceoryx2")]
    Ice(iceoryx2_peer::Source),
}

struct RxEnd {
    rx: Rx,
    buf: Vec<u8>,
}

impl RxEnd {
    fn new(rx: Rx, size: usize) -> RxEnd {
        let buf = match rx {
            Rx::Raw(_) => vec![0; size],
            // The mtype, then room for one byte more than a message: a longer one would
            // show as a wrong size instead of E2BIG.
            Rx::RawMsgq(..) => vec![0; 8 + size + 1],
            _ => Vec::new(),
        };
        RxEnd { rx, buf }
    }

    /// Receives one message. The bytes path is copy-free (`recv_ref`); the others
    /// return the `Vec` their API hands out.
    fn recv(&mut self) -> Result<&[u8], String> {
        let RxEnd { rx, buf } = self;
        match rx {
            Rx::RawMsgq(id, mtype) => loop {
                let cap = buf.len() - 8;
                // SAFETY: `buf` has room for the 8-byte mtype and `cap` bytes of text.
                let r = unsafe { libc::msgrcv(*id, buf.as_mut_ptr().cast(), cap, *mtype, 0) };
                match nix::errno::Errno::result(r) {
                    Ok(n) => return Ok(&buf[8..8 + n as usize]),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("msgrcv: {e}")),
                }
            },
            Rx::Bytes(r) => r.recv_ref(None).map_err(|e| e.to_string()),
            Rx::Typed(r) => {
                *buf = r.recv().map_err(|e| e.to_string())?.into_vec();
                Ok(buf)
            }
            Rx::Raw(f) => {
                f.read_exact(buf).map_err(|e| format!("read: {e}"))?;
                Ok(buf)
            }
            Rx::Ipc(r) => {
                *buf = r.recv().map_err(|e| format!("{e:?}"))?;
                Ok(buf)
            }
            Rx::IpcBytes(r) => {
                *buf = r.recv().map_err(|e| format!("{e:?}"))?;
                Ok(buf)
            }
            #[cfg(feature = "bench-iceoryx2")]
            Rx::Ice(r) => r.recv(),
        }
    }
}

type Ends = (Tx, RxEnd);
type MakeEnds = Box<dyn FnOnce() -> Result<Ends, String>>;
type MakeParentEnds = Box<dyn FnOnce(Pid) -> Result<Ends, String>>;

fn frames(sink: Box<dyn FrameSink>, src: Box<dyn FrameSource>, typed: bool, size: usize) -> Ends {
    if typed {
        (Tx::Typed(Sender::new(sink)), RxEnd::new(Rx::Typed(Receiver::new(src)), size))
    } else {
        (Tx::Bytes(BytesSender::new(sink)), RxEnd::new(Rx::Bytes(BytesReceiver::new(src)), size))
    }
}

fn streams(
    w: impl AsFd + Send + 'static,
    r: impl AsFd + Send + 'static,
    typed: bool,
    size: usize,
) -> Result<Ends, String> {
    let sink = StreamSink::new(w).map_err(|e| e.to_string())?;
    let src = StreamSource::new(r).map_err(|e| e.to_string())?;
    Ok(frames(Box::new(sink), Box::new(src), typed, size))
}

fn raw(w: impl Into<OwnedFd>, r: impl Into<OwnedFd>, size: usize) -> Ends {
    (Tx::Raw(File::from(w.into())), RxEnd::new(Rx::Raw(File::from(r.into())), size))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// How long a zero-copy sender waits for room before it checks that the receiver lives.
const SLICE: Duration = Duration::from_millis(50);

/// A moment already past, for a loan that must not wait (read once).
static ONE_PAST: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// How long an open or accept waits for the peer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The channel objects of one row, made by the parent before the fork.
///
/// `child` and `parent` make each side's ends. The child runs `child`, drops `parent`
/// (closing the parent's fds in the child) and forgets `owners`; the parent does the
/// opposite and drops `owners` (which removes FIFOs, socket files and queues) once
/// the peer is gone. Nothing a closure captures removes a named object when dropped.
struct Plan {
    child: MakeEnds,
    parent: MakeParentEnds,
    owners: Vec<Box<dyn std::any::Any>>,
}

/// Removes the row's directory, after what is in it (owners drop in push order).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn bench_dir() -> Result<(PathBuf, DirGuard), String> {
    let rt = names::runtime_dir().map_err(|e| format!("the runtime directory: {e}"))?;
    let dir = rt.join(names::unique_name("bench"));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((dir.clone(), DirGuard(dir)))
}

impl Plan {
    fn new(kind: Kind, size: usize) -> Result<Plan, String> {
        let mut owners: Vec<Box<dyn std::any::Any>> = Vec::new();
        let (child, parent): (MakeEnds, MakeParentEnds) = match kind {
            Kind::RawPipe => {
                let (fr, fw) = pipe::pipe().map_err(err)?;
                let (br, bw) = pipe::pipe().map_err(err)?;
                (Box::new(move || Ok(raw(bw, fr, size))), Box::new(move |_| Ok(raw(fw, br, size))))
            }
            Kind::RawUnix => {
                let (a, b) = std::os::unix::net::UnixStream::pair().map_err(err)?;
                let (a2, b2) = (a.try_clone().map_err(err)?, b.try_clone().map_err(err)?);
                (Box::new(move || Ok(raw(b, b2, size))), Box::new(move |_| Ok(raw(a, a2, size))))
            }
            Kind::Pipe | Kind::TypedPipe => {
                let typed = kind == Kind::TypedPipe;
                let (fr, fw) = pipe::pipe().map_err(err)?;
                let (br, bw) = pipe::pipe().map_err(err)?;
                (
                    Box::new(move || streams(bw, fr, typed, size)),
                    Box::new(move |_| streams(fw, br, typed, size)),
                )
            }
            Kind::Fifo | Kind::RawFifo => {
                let framed = kind == Kind::Fifo;
                let (dir, guard) = bench_dir()?;
                let fwd = Fifo::create(dir.join("fwd")).map_err(err)?;
                let back = Fifo::create(dir.join("back")).map_err(err)?;
                let (f, b) = (fwd.path().to_path_buf(), back.path().to_path_buf());
                let (f2, b2) = (f.clone(), b.clone());
                owners.extend([Box::new(fwd) as Box<dyn std::any::Any>, Box::new(back)]);
                owners.push(Box::new(guard));
                // Both sides open fwd first, then back: the blocking opens pair up.
                (
                    Box::new(move || {
                        let r = fifo::open_reader_timeout(&f, OPEN_TIMEOUT).map_err(err)?;
                        let w = fifo::open_writer_timeout(&b, OPEN_TIMEOUT).map_err(err)?;
                        if framed {
                            streams(w, r, false, size)
                        } else {
                            Ok(raw(w, r, size))
                        }
                    }),
                    Box::new(move |_| {
                        let w = fifo::open_writer_timeout(&f2, OPEN_TIMEOUT).map_err(err)?;
                        let r = fifo::open_reader_timeout(&b2, OPEN_TIMEOUT).map_err(err)?;
                        if framed {
                            streams(w, r, false, size)
                        } else {
                            Ok(raw(w, r, size))
                        }
                    }),
                )
            }
            Kind::Unix | Kind::TypedUnix | Kind::Seqpacket => {
                let (dir, guard) = bench_dir()?;
                let addr = UnixAddr::path(dir.join("s.sock")).map_err(err)?;
                let typed = kind == Kind::TypedUnix;
                let plan: (MakeEnds, MakeParentEnds) = if kind == Kind::Seqpacket {
                    let l = Rc::new(SeqpacketListener::bind(&addr).map_err(err)?);
                    owners.push(Box::new(l.clone()));
                    let pair = move |s: UnixSeqpacket| -> Result<Ends, String> {
                        let s2 = s.try_clone().map_err(err)?;
                        let sink = SeqpacketSink::new(s).map_err(err)?;
                        Ok(frames(Box::new(sink), Box::new(SeqpacketSource::new(s2)), false, size))
                    };
                    (
                        Box::new(move || pair(UnixSeqpacket::connect(&addr).map_err(err)?)),
                        Box::new(move |_| pair(l.accept_timeout(OPEN_TIMEOUT).map_err(err)?)),
                    )
                } else {
                    let l = Rc::new(UnixListener::bind(&addr).map_err(err)?);
                    owners.push(Box::new(l.clone()));
                    let pair = move |s: UnixStream| -> Result<Ends, String> {
                        let s2 = s.try_clone().map_err(err)?;
                        streams(s, s2, typed, size)
                    };
                    (
                        Box::new(move || pair(UnixStream::connect(&addr).map_err(err)?)),
                        Box::new(move |_| pair(l.accept_timeout(OPEN_TIMEOUT).map_err(err)?)),
                    )
                };
                // The listener (and its socket file) goes before the directory.
                owners.push(Box::new(guard));
                plan
            }
            Kind::Tcp => {
                let l = TcpListener::bind("127.0.0.1:0").map_err(err)?;
                let addr = l.local_addr().map_err(err)?;
                let pair = move |s: TcpStream| -> Result<Ends, String> {
                    let s2 = s.try_clone().map_err(err)?;
                    streams(s, s2, false, size)
                };
                (
                    Box::new(move || {
                        pair(TcpStream::connect_timeout(&addr, OPEN_TIMEOUT).map_err(err)?)
                    }),
                    Box::new(move |_| pair(l.accept_timeout(OPEN_TIMEOUT).map_err(err)?)),
                )
            }
            Kind::RawMsgq => {
                let q = MessageQueue::create_unique().map_err(err)?;
                let id = q.id();
                owners.push(Box::new(q));
                let ends = move |out: i64, back: i64| {
                    let mut head = out.to_ne_bytes().to_vec();
                    head.reserve(size);
                    (Tx::RawMsgq(id, head), RxEnd::new(Rx::RawMsgq(id, back), size))
                };
                // A dead peer: see msgq below.
                (
                    Box::new(move || Ok(ends(2, 1))),
                    Box::new(move |_| {
                        QUEUE_TO_REMOVE_ON_SIGCHLD.store(id, Ordering::SeqCst);
                        Ok(ends(1, 2))
                    }),
                )
            }
            Kind::Msgq | Kind::MsgqWatched => {
                let q = Arc::new(MessageQueue::create_unique().map_err(err)?);
                let key = q.key();
                owners.push(Box::new(q.clone()));
                // A queue has no EOF. msgq-watched: each side watches the other through
                // a pidfd (interproc then polls). msgq blocks in the kernel: the peer
                // dies with the parent (`Children::spawn` sets PR_SET_PDEATHSIG), and the
                // parent's SIGCHLD
                // handler removes the queue, which fails its blocked call (EIDRM).
                let watched = kind == Kind::MsgqWatched;
                let ends =
                    move |q: Arc<MessageQueue>, out: i64, back: i64, watch: Option<PeerWatch>| {
                        let mut sink = MsgqSink::new(q.clone(), out).map_err(err)?;
                        let mut src = MsgqSource::new(q, Select::Exact(back)).map_err(err)?;
                        if let Some(w) = watch {
                            src = src.with_peer_watch(w.try_clone().map_err(err)?);
                            sink = sink.with_peer_watch(w);
                        }
                        Ok::<_, String>(frames(Box::new(sink), Box::new(src), false, size))
                    };
                (
                    Box::new(move || {
                        let q = Arc::new(MessageQueue::open(key).map_err(err)?);
                        let w =
                            if watched { Some(PeerWatch::parent().map_err(err)?) } else { None };
                        ends(q, 2, 1, w)
                    }),
                    Box::new(move |pid| {
                        let w = if watched {
                            Some(PeerWatch::new(pid.as_raw() as u32).map_err(err)?)
                        } else {
                            QUEUE_TO_REMOVE_ON_SIGCHLD.store(q.id(), Ordering::SeqCst);
                            None
                        };
                        ends(q, 1, 2, w)
                    }),
                )
            }
            Kind::Shm | Kind::ShmZeroCopy | Kind::ShmSpin => {
                // One ring each way (memfds, shared by the fork); each side attaches its
                // ends after the fork, so each records its own pid.
                let cap = shm_capacity(size);
                let fwd = ShmRing::anonymous(cap).map_err(err)?;
                let back = ShmRing::anonymous(cap).map_err(err)?;
                let (fwd2, back2) = (fwd.clone(), back.clone());
                let ends = move |out: &ShmRing, inn: &ShmRing| -> Result<Ends, String> {
                    let mut sink = out.sink().map_err(err)?;
                    let mut src = inn.source().map_err(err)?;
                    if kind == Kind::ShmSpin {
                        sink.set_spin(1 << 20);
                        src.set_spin(1 << 20);
                    }
                    let rx = RxEnd::new(Rx::Bytes(BytesReceiver::new(Box::new(src))), size);
                    let tx = if kind == Kind::ShmZeroCopy {
                        Tx::ShmLoan(sink)
                    } else {
                        Tx::Bytes(BytesSender::new(Box::new(sink)))
                    };
                    Ok((tx, rx))
                };
                (Box::new(move || ends(&back2, &fwd2)), Box::new(move |_| ends(&fwd, &back)))
            }
            Kind::SharedMemorySpin => {
                // One segment each way, owned (and unlinked) by the parent; both sides open
                // them by os id after the fork.
                let (fwd, fwd_id) = shared_memory_peer::create(size)?;
                let (back, back_id) = shared_memory_peer::create(size)?;
                owners.push(Box::new(fwd));
                owners.push(Box::new(back));
                let ends = move |out: &str, inn: &str, peer: Option<Pid>| -> Result<Ends, String> {
                    let sink = shared_memory_peer::sink(out, size, peer)?;
                    let src = shared_memory_peer::source(inn, size, peer)?;
                    let rx = RxEnd::new(Rx::Bytes(BytesReceiver::new(Box::new(src))), size);
                    Ok((Tx::Bytes(BytesSender::new(Box::new(sink))), rx))
                };
                let (fwd2, back2) = (fwd_id.clone(), back_id.clone());
                (
                    Box::new(move || ends(&back2, &fwd2, None)),
                    Box::new(move |pid| ends(&fwd_id, &back_id, Some(pid))),
                )
            }
            #[cfg(feature = "bench-iceoryx2")]
            Kind::Iceoryx2 | Kind::Iceoryx2Loan => {
                // Each side makes its node, services and ports after the fork, on services
                // named after this row; the bench side waits for the peer's ports.
                let loan = kind == Kind::Iceoryx2Loan;
                let base = names::unique_name("bench-iceoryx2");
                let theirs = base.clone();
                let ends =
                    move |base: &str, bench: bool, peer: Option<Pid>| -> Result<Ends, String> {
                        let (sink, src) = iceoryx2_peer::ends(base, bench, size, loan, peer)?;
                        Ok((Tx::Ice(sink, loan), RxEnd::new(Rx::Ice(src), size)))
                    };
                (
                    Box::new(move || ends(&theirs, false, None)),
                    Box::new(move |pid| ends(&base, true, Some(pid))),
                )
            }
            #[cfg(not(feature = "bench-iceoryx2"))]
            Kind::Iceoryx2 | Kind::Iceoryx2Loan => return Err(NO_ICEORYX2.into()),
            Kind::IpcChannel => {
                let (ft, fr) = ipc_channel::ipc::channel::<Vec<u8>>().map_err(err)?;
                let (bt, br) = ipc_channel::ipc::channel::<Vec<u8>>().map_err(err)?;
                (
                    Box::new(move || Ok((Tx::Ipc(bt), RxEnd::new(Rx::Ipc(fr), size)))),
                    Box::new(move |_| Ok((Tx::Ipc(ft), RxEnd::new(Rx::Ipc(br), size)))),
                )
            }
            Kind::IpcChannelBytes => {
                let (ft, fr) = ipc_channel::ipc::bytes_channel().map_err(err)?;
                let (bt, br) = ipc_channel::ipc::bytes_channel().map_err(err)?;
                (
                    Box::new(move || Ok((Tx::IpcBytes(bt), RxEnd::new(Rx::IpcBytes(fr), size)))),
                    Box::new(move |_| Ok((Tx::IpcBytes(ft), RxEnd::new(Rx::IpcBytes(br), size)))),
                )
            }
        };
        Ok(Plan { child, parent, owners })
    }
}

/// Why `size` cannot go through `kind` as one message, if it cannot.
fn impossible(kind: Kind, size: usize) -> Option<String> {
    match kind {
        Kind::Msgq | Kind::MsgqWatched | Kind::RawMsgq => match msgq::limits() {
            Ok(l) if size > l.msgmax => Some(format!("not possible: kernel.msgmax = {}", l.msgmax)),
            Ok(l) if size > l.msgmnb => Some(format!("not possible: kernel.msgmnb = {}", l.msgmnb)),
            Ok(_) => None,
            Err(e) => Some(format!("not possible: {e}")),
        },
        Kind::Seqpacket => {
            // A probe pair: the sink clamps its maximum to what the kernel can carry.
            let max = UnixSeqpacket::pair()
                .and_then(|(a, _b)| SeqpacketSink::new(a))
                .map(|s| s.max_frame());
            match max {
                Ok(max) if size > max => Some(format!(
                    "not possible: one packet carries at most {max} bytes (2 × net.core.wmem_max)"
                )),
                Ok(_) => None,
                Err(e) => Some(format!("not possible: {e}")),
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// Clocks, signals, pinning

/// The queue of the running blocking-msgq row (-1: none): removed when a child exits.
static QUEUE_TO_REMOVE_ON_SIGCHLD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn remove_queue_on_sigchld(_: libc::c_int) {
    let id = QUEUE_TO_REMOVE_ON_SIGCHLD.load(Ordering::SeqCst);
    if id >= 0 {
        // The interrupted code may be about to read errno: keep it.
        let saved = nix::errno::Errno::last_raw();
        // SAFETY: msgctl is async-signal-safe; IPC_RMID takes no buffer. A queue that is
        // already gone only makes it fail.
        unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        nix::errno::Errno::set_raw(saved);
    }
}

/// Installs (or, with `false`, removes) the SIGCHLD handler that ends a blocking-msgq
/// row whose peer died: the parent's msgsnd/msgrcv then fail with EIDRM.
fn sigchld_removes_queue(on: bool) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, Signal};
    let handler =
        if on { SigHandler::Handler(remove_queue_on_sigchld) } else { SigHandler::SigDfl };
    if !on {
        QUEUE_TO_REMOVE_ON_SIGCHLD.store(-1, Ordering::SeqCst);
    }
    let action = SigAction::new(handler, SaFlags::SA_NOCLDSTOP, nix::sys::signal::SigSet::empty());
    // SAFETY: the handler only reads an atomic and makes one async-signal-safe call.
    let _ = unsafe { sigaction(Signal::SIGCHLD, &action) };
}

fn cpu_ns(clock: ClockId) -> u64 {
    clock_gettime(clock).map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// Whether SIGINT, SIGTERM or SIGHUP is pending (all stay blocked in the parent:
/// [`Children::new`]).
fn stop_requested() -> bool {
    // SAFETY: `set` is a plain bitmask; sigemptyset initialises it before sigpending
    // fills it, and sigismember only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigpending(&mut set) == 0
            && [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
                .iter()
                .any(|&sig| libc::sigismember(&set, sig) == 1)
    }
}

fn get_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bitmask, valid when zeroed; the kernel writes at
    // most `size_of::<cpu_set_t>()` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: `set` is a valid, initialised cpu_set_t of the size passed; the call
    // only reads it and changes the calling thread's affinity.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

fn allowed_cpus(set: &libc::cpu_set_t) -> Vec<usize> {
    // SAFETY: CPU_ISSET reads bit `c` of a valid cpu_set_t, and c < CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, set) }).collect()
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> bool {
    // SAFETY: as in get_affinity, a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of a valid cpu_set_t; it ignores a cpu at or above
    // CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(&set)
}

// ---------------------------------------------------------------------------------
// The machine and its limits

/// The machine the run measured, recorded in the JSON.
#[derive(Serialize, Debug)]
struct Machine {
    kernel: String,
    cpu_model: String,
    cores: usize,
    allowed_cpus: Vec<usize>,
    pinning: String,
    msgmax: Option<usize>,
    msgmnb: Option<usize>,
    msgmni: Option<usize>,
    pipe_max_size: Option<u64>,
    wmem_max: Option<u64>,
    rmem_max: Option<u64>,
    page_size: Option<u64>,
    loadavg_at_start: String,
    build: &'static str,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn read_num(path: &str) -> Option<u64> {
    read_trim(path).parse().ok()
}

fn machine(allowed: Vec<usize>, pinning: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let lim = msgq::limits().ok();
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Machine {
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        cpu_model,
        cores,
        allowed_cpus: allowed,
        pinning,
        msgmax: lim.as_ref().map(|l| l.msgmax),
        msgmnb: lim.as_ref().map(|l| l.msgmnb),
        msgmni: lim.as_ref().map(|l| l.msgmni),
        pipe_max_size: read_num("/proc/sys/fs/pipe-max-size"),
        wmem_max: read_num("/proc/sys/net/core/wmem_max"),
        rmem_max: read_num("/proc/sys/net/core/rmem_max"),
        page_size: u64::try_from(page).ok(),
        loadavg_at_start: read_trim("/proc/loadavg"),
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
    }
}

/// memcpy bandwidth at `size`, in GB/s (1e9 bytes per second).
fn memcpy_gbps(size: usize, budget: u64) -> f64 {
    let src = vec![0x5au8; size];
    let mut dst = vec![0u8; size];
    let n = (budget / size as u64).clamp(16, 50_000_000);
    dst.copy_from_slice(&src);
    let t = Instant::now();
    for _ in 0..n {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    }
    (size as u64 * n) as f64 / t.elapsed().as_nanos().max(1) as f64
}

/// The capacity of each of the shm rows' rings for `size`-byte messages.
fn shm_capacity(size: usize) -> usize {
    (4 * size.next_power_of_two()).max(256 << 10)
}

/// The copy rows' sending work alone, in GB/s: [`stamp`] a `size`-byte buffer, then copy
/// it into the next `size` bytes of a destination as large as an shm row's ring (so the
/// copy lands where the ring's would), in one process, with no peer. Not a physical limit:
/// the reference for what the harness makes every copying sender do.
fn stamp_copy_gbps(size: usize, budget: u64) -> f64 {
    // Non-zero fills: every page is touched (faulted in) before the clock starts.
    let mut out = vec![1u8; size];
    let mut dst = vec![1u8; shm_capacity(size)];
    let slots = dst.len() / size;
    let n = (budget / size as u64).clamp(16, 50_000_000);
    let t = Instant::now();
    for i in 0..n {
        stamp(&mut out, i);
        let at = (i as usize % slots) * size;
        dst[at..at + size].copy_from_slice(black_box(&out));
        black_box(&mut dst);
    }
    (size as u64 * n) as f64 / t.elapsed().as_nanos().max(1) as f64
}

/// What one clock read adds to a timed sample: the median gap between two consecutive
/// reads of [`Instant::now`], in ns.
fn clock_read_ns() -> f64 {
    let mut gaps: Vec<f64> = (0..10_001)
        .map(|_| {
            let a = Instant::now();
            let b = Instant::now();
            (b - a).as_nanos() as f64
        })
        .collect();
    percentiles(&mut gaps).0
}

/// The cache-line ping-pong's outcome: one-way p50 and p99, in ns.
struct Pingpong {
    p50: f64,
    p99: f64,
}

/// Which ping-pong: one word in one shared line, or a data word and a flag in two lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    /// Both sides write and spin on one 64-bit word: one line crosses per one-way trip.
    One,
    /// Each direction has a data line and a flag line: the writer stores the data word,
    /// then the flag (Release); the reader spins on the flag (Acquire), then reads the data
    /// word and checks it. Two lines cross, one after the other: the floor of any ring
    /// whose reader waits on an index and then reads the record it publishes.
    Two,
}

/// Spins until `word` holds `want`. Every 2^16 spins, checks that the peer is alive
/// and that no stop was asked for; yields the CPU when both sides share one.
fn spin_until(word: &AtomicU64, want: u64, alive: &mut dyn FnMut() -> bool, yield_: bool) -> bool {
    let mut spins = 0u32;
    while word.load(Ordering::Acquire) != want {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if yield_ {
            std::thread::yield_now();
        }
        if spins % (1 << 16) == 0 && !alive() {
            return false;
        }
    }
    true
}

/// The words of one direction of a ping-pong: the flag the reader spins on, and for
/// [`Lines::Two`] the data word in a line of its own.
struct Way<'a> {
    flag: &'a AtomicU64,
    data: Option<&'a AtomicU64>,
}

impl Way<'_> {
    fn send(&self, v: u64) {
        if let Some(d) = self.data {
            d.store(v, Ordering::Relaxed);
        }
        self.flag.store(v, Ordering::Release);
    }

    /// Waits for `v`, then reads the data word: `false` if the peer died or the data word
    /// did not hold `v`.
    fn recv(&self, v: u64, alive: &mut dyn FnMut() -> bool, yield_: bool) -> bool {
        spin_until(self.flag, v, alive, yield_)
            && self.data.is_none_or(|d| d.load(Ordering::Relaxed) == v)
    }
}

fn pingpong(
    children: &Children,
    iters: u64,
    peer_cpu: Option<usize>,
    lines: Lines,
) -> Result<Pingpong, String> {
    let len = NonZeroUsize::new(4096).expect("nonzero");
    use nix::sys::mman::{MapFlags, ProtFlags};
    // SAFETY: a fresh anonymous mapping with no address hint overlaps nothing.
    let ptr = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )
    }
    .map_err(|e| format!("mmap: {e}"))?;
    // SAFETY: the mapping is page-aligned, zero-filled (valid AtomicU64s), and holds 512
    // of them; it stays mapped until the munmap below, after the peer has been reaped.
    // Both processes touch it only through atomic operations.
    let words: &[AtomicU64] = unsafe { std::slice::from_raw_parts(ptr.cast().as_ptr(), 512) };
    // One line: both directions use word 0. Two lines: parent-to-peer data in line 0 and
    // flag in line 1, peer-to-parent data in line 2 and flag in line 3.
    let (fwd, back) = match lines {
        Lines::One => (Way { flag: &words[0], data: None }, Way { flag: &words[0], data: None }),
        Lines::Two => (
            Way { flag: &words[8], data: Some(&words[0]) },
            Way { flag: &words[24], data: Some(&words[16]) },
        ),
    };
    let yield_ = peer_cpu.is_none();
    let warm = iters / 10;
    let parent = nix::unistd::getpid();
    // The values: odd from the parent, even from the peer (one word serves both ways).
    // SAFETY: `interproc bench` never starts a thread (see the module docs).
    let pid = unsafe {
        children.spawn(|| {
            if let Some(c) = peer_cpu {
                pin(c);
            }
            let mut alive = || nix::unistd::getppid() == parent;
            for i in 0..warm + iters {
                if !fwd.recv(2 * i + 1, &mut alive, yield_) {
                    return 1;
                }
                back.send(2 * i + 2);
            }
            0
        })
    };
    let watch = PeerWatch::new(pid.as_raw() as u32).ok();
    let mut alive =
        || !stop_requested() && watch.as_ref().is_none_or(|w| !w.has_exited().unwrap_or(true));
    let mut times = Vec::with_capacity(iters as usize);
    let mut ok = true;
    for i in 0..warm + iters {
        let t = Instant::now();
        fwd.send(2 * i + 1);
        if !back.recv(2 * i + 2, &mut alive, yield_) {
            ok = false;
            break;
        }
        if i >= warm {
            times.push(t.elapsed().as_nanos() as f64 / 2.0);
        }
    }
    if !ok {
        children.kill_all();
    }
    let code = children.wait(pid);
    // SAFETY: the peer is reaped, so no process uses the mapping any more, and `words`
    // is not used after this point.
    unsafe { nix::sys::mman::munmap(ptr, len.get()) }.map_err(|e| format!("munmap: {e}"))?;
    if !ok || code != 0 {
        return Err(format!("ping-pong peer stopped, or a data word was wrong (status {code})"));
    }
    let (p50, p99) = percentiles(&mut times);
    Ok(Pingpong { p50, p99 })
}

fn percentiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v[(v.len() * q / 100).min(v.len() - 1)];
    (at(50), at(99))
}

// ---------------------------------------------------------------------------------
// One row

/// The control messages from the peer, on a pipe of their own.
#[derive(Serialize, Deserialize, Debug)]
enum Ctl {
    /// The peer has its ends.
    Ready,
    /// The throughput phase is over.
    Done { received: u64, bytes: u64, bad: u64, cpu_ns: u64 },
    /// The peer failed.
    Failed(String),
}

/// What the peer does, fixed before the fork.
#[derive(Clone, Copy)]
struct Params {
    size: usize,
    warm: u64,
    iters: u64,
    messages: u64,
    cpu: Option<usize>,
}

/// The peer: echoes the latency phase, then receives and checks the stream.
fn peer(make: MakeEnds, ctl: PipeWriter, p: Params) -> i32 {
    if let Some(c) = p.cpu {
        pin(c);
    }
    let Ok(mut ctl) = ctl.into_sender::<Ctl>() else { return 2 };
    let (mut tx, mut rx) = match make() {
        Ok(e) => e,
        Err(e) => {
            let _ = ctl.send(Ctl::Failed(format!("peer setup: {e}")));
            return 2;
        }
    };
    if ctl.send(Ctl::Ready).is_err() {
        return 2;
    }
    let mut out = vec![0u8; p.size];
    let mut bad = 0u64;
    let mut run = || -> Result<Ctl, String> {
        for i in 0..p.warm + p.iters {
            let m = rx.recv()?;
            bad += u64::from(!check(m, p.size, i));
            tx.send_stamped(&mut out, i)?;
        }
        let c0 = cpu_ns(ClockId::CLOCK_PROCESS_CPUTIME_ID);
        let (mut received, mut bytes) = (0, 0);
        for i in 0..p.messages {
            let m = rx.recv()?;
            bad += u64::from(!check(m, p.size, i));
            received += 1;
            bytes += m.len() as u64;
        }
        let cpu_ns = cpu_ns(ClockId::CLOCK_PROCESS_CPUTIME_ID) - c0;
        Ok(Ctl::Done { received, bytes, bad, cpu_ns })
    };
    let (msg, code) = match run() {
        Ok(done) => (done, 0),
        Err(e) => (Ctl::Failed(format!("peer: {e}")), 1),
    };
    if ctl.send(msg).is_err() {
        return 2;
    }
    code
}

/// One row of the table and of the JSON.
#[derive(Serialize, Clone, Debug)]
struct Row {
    transport: &'static str,
    size: usize,
    /// "block": sleeps in the kernel while it waits; "poll": polls, yields and naps.
    mode: &'static str,
    msgs_per_sec: Option<f64>,
    mb_per_sec: Option<f64>,
    p50_ns: Option<f64>,
    p99_ns: Option<f64>,
    cpu_ns_per_msg: Option<f64>,
    vs_raw: Option<f64>,
    vs_ipc_channel: Option<f64>,
    vs_limit: Option<f64>,
    p50_vs_pingpong: Option<f64>,
    /// p50 over the two-line ping-pong's p50.
    p50_vs_pingpong_2line: Option<f64>,
    /// MB/s over the stamp-and-copy reference's MB/s at the same size.
    vs_stamp_copy: Option<f64>,
    /// The raw row `vs_raw` refers to.
    raw_baseline: Option<&'static str>,
    latency_iterations: u64,
    messages: u64,
    note: String,
    #[serde(skip)]
    failed: bool,
}

impl Row {
    fn empty(kind: Kind, size: usize, note: String, failed: bool) -> Row {
        Row {
            transport: kind.name(),
            size,
            mode: kind.mode(),
            msgs_per_sec: None,
            mb_per_sec: None,
            p50_ns: None,
            p99_ns: None,
            cpu_ns_per_msg: None,
            vs_raw: None,
            vs_ipc_channel: None,
            vs_limit: None,
            p50_vs_pingpong: None,
            p50_vs_pingpong_2line: None,
            vs_stamp_copy: None,
            raw_baseline: kind.baseline().map(Kind::name),
            latency_iterations: 0,
            messages: 0,
            note,
            failed,
        }
    }
}

fn run_row(
    children: &Children,
    kind: Kind,
    size: usize,
    b: &Budget,
    cpus: Option<(usize, usize)>,
) -> Row {
    if let Some(why) = impossible(kind, size) {
        return Row::empty(kind, size, why, false);
    }
    let fail = |e: String| Row::empty(kind, size, format!("failed: {e}"), true);
    let plan = match Plan::new(kind, size) {
        Ok(p) => p,
        Err(e) => return fail(format!("setting up: {e}")),
    };
    let (ctl_r, ctl_w) = match pipe::pipe() {
        Ok(p) => p,
        Err(e) => return fail(format!("control pipe: {e}")),
    };
    let iters = b.latency_iters(size);
    let p = Params {
        size,
        warm: iters / 10,
        iters,
        messages: b.messages(size),
        cpu: cpus.map(|c| c.1),
    };
    let Plan { child, parent, owners } = plan;
    let blocking_queue = matches!(kind, Kind::Msgq | Kind::RawMsgq);
    if blocking_queue {
        sigchld_removes_queue(true);
    }
    let mut ctl_r = Some(ctl_r);
    let mut parent = Some(parent);
    let mut owners = Some(owners);
    // SAFETY: `interproc bench` never starts a thread (see the module docs).
    let pid = unsafe {
        children.spawn(|| {
            drop(ctl_r.take());
            drop(parent.take());
            // The named objects belong to the parent: never remove them from here.
            std::mem::forget(owners.take());
            peer(child, ctl_w, p)
        })
    };
    let (parent, owners) = (parent.expect("parent ends"), owners.expect("owners"));
    let result = measure(parent, pid, ctl_r.expect("control pipe"), p);
    if result.is_err() {
        children.kill_all();
    }
    let code = children.wait(pid);
    if blocking_queue {
        sigchld_removes_queue(false);
    }
    drop(owners);
    let m = match result {
        Ok(m) if code == 0 => m,
        Ok(_) => return fail(format!("peer exited with status {code}")),
        Err(e) => return fail(e),
    };
    let mut row = Row::empty(kind, size, String::new(), false);
    row.msgs_per_sec = Some(m.msgs_per_sec);
    row.mb_per_sec = Some(m.msgs_per_sec * size as f64 / 1e6);
    row.p50_ns = Some(m.p50);
    row.p99_ns = Some(m.p99);
    row.cpu_ns_per_msg = Some(m.cpu_ns_per_msg);
    row.latency_iterations = iters;
    row.messages = p.messages;
    row
}

struct Measured {
    p50: f64,
    p99: f64,
    msgs_per_sec: f64,
    cpu_ns_per_msg: f64,
}

fn measure(
    make: MakeParentEnds,
    pid: Pid,
    ctl: pipe::PipeReader,
    p: Params,
) -> Result<Measured, String> {
    let mut ctl = ctl.into_receiver::<Ctl>().map_err(|e| format!("control pipe: {e}"))?;
    let (mut tx, mut rx) = make(pid).map_err(|e| format!("setting up: {e}"))?;
    match ctl.recv() {
        Ok(Ctl::Ready) => {}
        Ok(Ctl::Failed(e)) => return Err(e),
        Ok(other) => return Err(format!("peer sent {other:?} before Ready")),
        Err(e) => return Err(format!("peer gone before Ready: {e}")),
    }
    // Why the peer stopped, if it said so before its ends closed.
    let mut peer_said = |e: String| match ctl.try_recv() {
        Ok(Ctl::Failed(why)) => format!("{e} ({why})"),
        _ => e,
    };
    let mut out = vec![0u8; p.size];
    let mut times = Vec::with_capacity(p.iters as usize);
    let mut bad = 0u64;
    for i in 0..p.warm + p.iters {
        let t = Instant::now();
        tx.send_stamped(&mut out, i).map_err(&mut peer_said)?;
        let m = rx.recv().map_err(&mut peer_said)?;
        bad += u64::from(!check(m, p.size, i));
        if i >= p.warm {
            times.push(t.elapsed().as_nanos() as f64 / 2.0);
        }
    }
    let c0 = cpu_ns(ClockId::CLOCK_THREAD_CPUTIME_ID);
    let t = Instant::now();
    for i in 0..p.messages {
        tx.send_stamped(&mut out, i).map_err(&mut peer_said)?;
    }
    let done = ctl.recv().map_err(|e| format!("peer gone before its count: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let my_cpu = cpu_ns(ClockId::CLOCK_THREAD_CPUTIME_ID) - c0;
    let (received, bytes, peer_bad, peer_cpu) = match done {
        Ctl::Done { received, bytes, bad, cpu_ns } => (received, bytes, bad, cpu_ns),
        Ctl::Failed(e) => return Err(e),
        Ctl::Ready => return Err("peer sent Ready twice".into()),
    };
    if received != p.messages || bytes != p.messages * p.size as u64 {
        return Err(format!(
            "sent {} messages of {} bytes, the peer counted {received} messages, {bytes} bytes",
            p.messages, p.size
        ));
    }
    if bad + peer_bad > 0 {
        return Err(format!("{} messages arrived with the wrong size or stamps", bad + peer_bad));
    }
    let (p50, p99) = percentiles(&mut times);
    Ok(Measured {
        p50,
        p99,
        msgs_per_sec: p.messages as f64 / secs,
        cpu_ns_per_msg: (my_cpu + peer_cpu) as f64 / p.messages as f64,
    })
}

// ---------------------------------------------------------------------------------
// The run

/// The limits, as in the JSON.
#[derive(Serialize, Debug)]
struct Limits {
    /// memcpy bandwidth in GB/s, by message size.
    memcpy_gbps: BTreeMap<usize, f64>,
    /// One-way p50 of the spinning cache-line ping-pong, in ns.
    pingpong_ns: Option<f64>,
    pingpong_p99_ns: Option<f64>,
    pingpong_mode: String,
    /// One-way p50 and p99 of the two-line ping-pong (a data line, then a flag line), in
    /// ns: the floor of a ring whose reader waits on an index, then reads the record.
    pingpong_2line_ns: Option<f64>,
    pingpong_2line_p99_ns: Option<f64>,
    /// The median cost of one clock read, in ns: every latency sample (the ping-pongs'
    /// and the rows' alike) holds one.
    clock_read_ns: f64,
    /// Not a limit: the copying sender's own work (stamp a buffer, copy it into a
    /// ring-sized destination) in one process, in GB/s, by message size.
    stamp_copy_gbps: BTreeMap<usize, f64>,
}

#[derive(Serialize, Debug)]
struct Output {
    machine: Machine,
    limits: Limits,
    method: BTreeMap<&'static str, &'static str>,
    rows: Vec<Row>,
}

fn method() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("peer", "one peer process per row, forked before any timed loop"),
        (
            "latency",
            "ping-pong of same-size messages; one-way = round trip / 2, per iteration, \
             CLOCK_MONOTONIC; p50/p99 after a 10% warm-up",
        ),
        (
            "throughput",
            "N messages one way; the clock stops when the peer confirms the count and bytes",
        ),
        (
            "payload",
            "sender stamps a sequence number into every 64-byte line and the last 8 bytes; \
             receiver checks every stamp and the exact size",
        ),
        (
            "cpu",
            "throughput phase: parent sending thread (CLOCK_THREAD_CPUTIME_ID) + whole peer \
             process (CLOCK_PROCESS_CPUTIME_ID), user + system, divided by N",
        ),
        (
            "ratios",
            "vs_raw and vs_ipc_channel: msgs/s ratio at the same size; vs_limit: MB/s over \
             memcpy MB/s at the same size; p50_vs_pingpong: p50 over the ping-pong p50",
        ),
        (
            "references",
            "pingpong_2line: a data word, then a flag in another line, both spinning: two \
             dependent line transfers, the floor of a ring whose reader waits on an index; \
             stamp_copy: stamp a buffer and copy it into a ring-sized destination in one \
             process, the sending work of every copy row (vs_stamp_copy: MB/s over it); \
             clock_read_ns: one clock read, inside every latency sample alike",
        ),
    ])
}

/// Runs the benchmark; returns the exit status.
pub fn run(args: BenchArgs) -> i32 {
    let children = Children::new();
    let b = if args.quick { QUICK } else { FULL };
    let mut sizes = if !args.sizes.is_empty() {
        args.sizes.clone()
    } else if args.quick {
        vec![64, 65536]
    } else {
        vec![64, 1024, 65536, 1 << 20]
    };
    sizes.sort_unstable();
    sizes.dedup();
    let kinds: Vec<Kind> = if args.transports.is_empty() {
        // Every row this build has.
        ALL.iter()
            .copied()
            .filter(|k| cfg!(feature = "bench-iceoryx2") || !k.is_iceoryx2())
            .collect()
    } else {
        ALL.iter().copied().filter(|k| args.transports.contains(k)).collect()
    };
    if !cfg!(feature = "bench-iceoryx2") && kinds.iter().any(|k| k.is_iceoryx2()) {
        eprintln!("interproc bench: {NO_ICEORYX2}");
        return 2;
    }
    // Removes what iceoryx2 leaves in /dev/shm, once every row is over.
    #[cfg(feature = "bench-iceoryx2")]
    let iceoryx2_cleanup = kinds.iter().any(|k| k.is_iceoryx2()).then(iceoryx2_peer::Cleanup::new);

    // Pinning: parent on the first allowed CPU, peers on the second.
    let saved = get_affinity();
    let allowed = saved.as_ref().map(allowed_cpus).unwrap_or_default();
    let cpus = match allowed[..] {
        [a, b, ..] if pin(a) => Some((a, b)),
        _ => None,
    };
    let pinning = match cpus {
        Some((a, b)) => format!("parent on cpu {a}, peer on cpu {b} (sched_setaffinity)"),
        None => "none (fewer than two CPUs allowed, or sched_setaffinity failed)".into(),
    };
    let machine = machine(allowed, pinning.clone());

    let steps = sizes.len() as u64 * (kinds.len() as u64 + 1) + 1;
    // No steady tick: a ticker is a thread, and peers are forked all through the run.
    // The bar moves at each measurement.
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let (mut memcpy, mut stamp_copy) = (BTreeMap::new(), BTreeMap::new());
    for &s in &sizes {
        bar.set_message(format!("memcpy {s} B"));
        memcpy.insert(s, memcpy_gbps(s, b.memcpy_bytes));
        stamp_copy.insert(s, stamp_copy_gbps(s, b.memcpy_bytes));
        bar.inc(1);
    }
    bar.set_message("cache-line ping-pong");
    let mut errors = Vec::new();
    let mut pingpong = |lines: Lines, what: &str| match pingpong(
        &children,
        b.pingpong,
        cpus.map(|c| c.1),
        lines,
    ) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(format!("{what}: {e}"));
            None
        }
    };
    let pp = pingpong(Lines::One, "cache-line ping-pong");
    let pp2 = pingpong(Lines::Two, "two-line ping-pong");
    bar.inc(1);
    let limits = Limits {
        memcpy_gbps: memcpy,
        pingpong_ns: pp.as_ref().map(|p| p.p50),
        pingpong_p99_ns: pp.as_ref().map(|p| p.p99),
        pingpong_mode: if cpus.is_some() {
            format!("spinning, {pinning}")
        } else {
            "spinning with sched_yield (one CPU)".into()
        },
        pingpong_2line_ns: pp2.as_ref().map(|p| p.p50),
        pingpong_2line_p99_ns: pp2.as_ref().map(|p| p.p99),
        clock_read_ns: clock_read_ns(),
        stamp_copy_gbps: stamp_copy,
    };

    let mut rows = Vec::new();
    'all: for &size in &sizes {
        for &kind in &kinds {
            if stop_requested() {
                break 'all;
            }
            bar.set_message(format!("{} {size} B", kind.name()));
            rows.push(run_row(&children, kind, size, &b, cpus));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    #[cfg(feature = "bench-iceoryx2")]
    drop(iceoryx2_cleanup);
    if let Some(s) = saved {
        set_affinity(&s);
    }
    let interrupted = stop_requested();
    ratios(&mut rows, &limits);

    print_table(&machine, &limits, &rows);
    for e in &errors {
        println!("error: {e}");
    }
    let failed = rows.iter().filter(|r| r.failed).count();
    let out = Output { machine, limits, method: method(), rows };
    let mut code = if failed > 0 || !errors.is_empty() { 1 } else { 0 };
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&out).expect("results serialise");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("interproc bench: writing {}: {e}", path.display());
            code = 2;
        }
    }
    if let Some(path) = &args.plot {
        if let Err(e) = plot(path, &out) {
            eprintln!("interproc bench: plotting {}: {e}", path.display());
            code = 2;
        }
    }
    if interrupted {
        println!("interrupted: stopped after the row in progress; every named object removed");
        return 130;
    }
    code
}

fn ratios(rows: &mut [Row], limits: &Limits) {
    let find = |rows: &[Row], name: &str, size: usize| {
        rows.iter().find(|r| r.transport == name && r.size == size).and_then(|r| r.msgs_per_sec)
    };
    let snapshot = rows.to_vec();
    for r in rows.iter_mut() {
        let Some(mps) = r.msgs_per_sec else { continue };
        r.vs_raw = r.raw_baseline.and_then(|n| find(&snapshot, n, r.size)).map(|raw| mps / raw);
        r.vs_ipc_channel = find(&snapshot, Kind::IpcChannel.name(), r.size).map(|i| mps / i);
        r.vs_limit = limits
            .memcpy_gbps
            .get(&r.size)
            .zip(r.mb_per_sec)
            .map(|(&gbps, mbps)| mbps / (gbps * 1000.0));
        r.p50_vs_pingpong = limits.pingpong_ns.zip(r.p50_ns).map(|(pp, p50)| p50 / pp);
        r.p50_vs_pingpong_2line = limits.pingpong_2line_ns.zip(r.p50_ns).map(|(pp, p50)| p50 / pp);
        r.vs_stamp_copy = limits
            .stamp_copy_gbps
            .get(&r.size)
            .zip(r.mb_per_sec)
            .map(|(&gbps, mbps)| mbps / (gbps * 1000.0));
    }
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

fn print_table(m: &Machine, l: &Limits, rows: &[Row]) {
    println!(
        "interproc bench: {} ({} cores), kernel {}, {} build; pinning: {}",
        m.cpu_model, m.cores, m.kernel, m.build, m.pinning
    );
    let mc: Vec<String> = l.memcpy_gbps.iter().map(|(s, g)| format!("{s} B {g:.1} GB/s")).collect();
    println!("limits: memcpy {}", mc.join(", "));
    println!(
        "limits: cache-line ping-pong one-way p50 {} ns, p99 {} ns ({}); two lines (data, \
         then flag) p50 {} ns, p99 {} ns",
        fmt_opt(l.pingpong_ns, 0),
        fmt_opt(l.pingpong_p99_ns, 0),
        l.pingpong_mode,
        fmt_opt(l.pingpong_2line_ns, 0),
        fmt_opt(l.pingpong_2line_p99_ns, 0),
    );
    let sc: Vec<String> =
        l.stamp_copy_gbps.iter().map(|(s, g)| format!("{s} B {g:.1} GB/s")).collect();
    println!(
        "reference, not a limit: a copying sender's own work (stamp, then copy into a \
         ring-sized buffer), one process: {}; one clock read (inside every latency sample, \
         ping-pongs included): {:.0} ns",
        sc.join(", "),
        l.clock_read_ns
    );
    println!(
        "{:<18} {:<5} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>7}  note",
        "transport",
        "mode",
        "size",
        "msgs/s",
        "MB/s",
        "p50 ns",
        "p99 ns",
        "cpu ns",
        "vs raw",
        "vs ipc",
        "vs limit",
        "p50/pp"
    );
    for r in rows {
        println!(
            "{:<18} {:<5} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>7}  {}",
            r.transport,
            r.mode,
            r.size,
            fmt_opt(r.msgs_per_sec, 0),
            fmt_opt(r.mb_per_sec, 1),
            fmt_opt(r.p50_ns, 0),
            fmt_opt(r.p99_ns, 0),
            fmt_opt(r.cpu_ns_per_msg, 0),
            fmt_opt(r.vs_raw, 2),
            fmt_opt(r.vs_ipc_channel, 2),
            fmt_opt(r.vs_limit, 3),
            fmt_opt(r.p50_vs_pingpong, 1),
            r.note
        );
    }
    println!(
        "block: sleeps in the kernel while waiting; poll: IPC_NOWAIT, sched_yield, then naps. \
         Every payload is stamped per cache line by the sender and checked by the receiver; \
         one-way latency = round trip / 2; cpu = sender thread + peer process per message"
    );
}

fn plot(path: &Path, out: &Output) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in &out.rows {
        let Some(mbps) = r.mb_per_sec else { continue };
        let pt = (r.size as f64, mbps);
        match series.iter_mut().find(|(n, _)| n == r.transport) {
            Some((_, pts)) => pts.push(pt),
            None => series.push((r.transport.to_string(), vec![pt])),
        }
    }
    let memcpy: Vec<(f64, f64)> =
        out.limits.memcpy_gbps.iter().map(|(&s, &g)| (s as f64, g * 1000.0)).collect();
    series.push(("memcpy (limit)".into(), memcpy));
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err("nothing to plot".into());
    }
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("interproc bench: throughput vs message size", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0 / 2.0..x1 * 2.0).log_scale(), (y0 / 2.0..y1 * 2.0).log_scale())?;
    chart.configure_mesh().x_desc("message size (bytes)").y_desc("throughput (MB/s)").draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
