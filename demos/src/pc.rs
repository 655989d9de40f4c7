//! `interproc demo pc`: producers and consumers in separate processes.
//!
//! Each producer sends `--messages` messages. Message `seq` of producer `p` goes to
//! consumer `seq % consumers`. A message is `[producer u32][seq u64][checksum u64]` then
//! `--size` payload bytes; the checksum covers the payload. After its last message a
//! producer sends an empty frame, the end-of-stream marker, to every consumer, so a
//! consumer can tell a producer that finished from one that died (a stream that ends
//! without the marker is an error).
//!
//! Fan-out on byte streams: a stream has no message boundaries that two readers could
//! share, and writes over `PIPE_BUF` from two writers interleave. So pipe, FIFO, Unix
//! and TCP use one stream per (producer, consumer) pair, and each consumer polls its
//! streams. A System V queue is shared by everyone: consumer `c` receives only message
//! type `c + 1`, a selective receive that no stream offers. Shared memory (`shm`) uses one
//! ring per (producer, consumer) pair, like the pipes: a ring is single-producer,
//! single-consumer. A ring has no fd to poll, so a consumer with several rings takes from
//! each in turn without waiting, and when a whole round finds nothing it waits on one of
//! them (in turn) for at most a millisecond.
//! `shm-sem` is the classic
//! bounded buffer: one ring in a shared-memory segment, guarded by System V semaphores
//! (`empty`/`full`/`mutex`, see [`crate::shm_sem`]); any consumer takes the next message.
//! `shm-mpmc` is one multi-producer, multi-consumer ring (`channel::shm_mpmc`) that every
//! producer sends to and every consumer takes from; there are no end markers: a consumer
//! stops at `Disconnected`, which the ring reports once every producer has gone and it is
//! drained (the parent holds one producer end until the producers have exited, so that a
//! consumer does not stop while a late producer has yet to attach).
//!
//! Each consumer reports what it received over a pipe, as a typed interproc channel; the
//! parent checks that every (producer, seq) arrived exactly once and intact.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use interproc::ipc::channel::shm::ShmRing;
use interproc::ipc::channel::shm_mpmc::{MpmcRing, MpmcSink, MAX_PEERS};
use interproc::ipc::channel::{BytesReceiver, BytesSender, FrameSink, StreamSink, StreamSource};
use interproc::ipc::fifo::{self, Fifo};
use interproc::ipc::msgq::{self, Key, MessageQueue, MsgqSink, MsgqSource, PeerWatch, Select};
use interproc::ipc::pipe::{self, PipeReader, PipeReceiver, PipeWriter};
use interproc::ipc::socket::{
    SeqpacketListener, SeqpacketSink, SeqpacketSource, UnixAddr, UnixListener, UnixSeqpacket,
    UnixStream,
};
use interproc::ipc::tcp::{TcpListener, TcpStream};
use interproc::ipc::{names, reactor, Error};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use crate::procs::{self, Children};
use crate::shm_sem;

/// The transports `demo pc` runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Anonymous pipes, one per (producer, consumer) pair.
    Pipe,
    /// Named pipes (FIFOs), one per (producer, consumer) pair.
    Fifo,
    /// Unix stream sockets: one listener per consumer, one connection per producer.
    Unix,
    /// Unix seqpacket sockets (one packet per message), connected like `unix`.
    Seqpacket,
    /// TCP over loopback, connected like `unix`, with the same framing.
    Tcp,
    /// One System V message queue; consumer c receives message type c+1.
    Msgq,
    /// Shared-memory rings (memfd segments), one per (producer, consumer) pair.
    Shm,
    /// The classic bounded buffer: a ring in a shared-memory segment, guarded by System V
    /// semaphores (empty/full/mutex).
    ShmSem,
    /// One multi-producer, multi-consumer shared-memory ring (a memfd) for everyone.
    ShmMpmc,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Fifo => "fifo",
            Transport::Unix => "unix",
            Transport::Seqpacket => "seqpacket",
            Transport::Tcp => "tcp",
            Transport::Msgq => "msgq",
            Transport::Shm => "shm",
            Transport::ShmSem => "shm-sem",
            Transport::ShmMpmc => "shm-mpmc",
        }
    }
}

/// Options of `interproc demo pc`.
#[derive(Args, Debug)]
#[command(after_long_help = "Byte streams (pipe, fifo, unix, tcp) fan out with one stream per \
(producer, consumer) pair: a stream cannot be shared by two readers without splitting \
messages. msgq shares one System V queue: consumer c receives message type c+1. shm-sem \
shares one bounded buffer in shared memory, guarded by System V semaphores (empty/full/mutex). \
shm-mpmc shares one multi-producer, multi-consumer ring in shared memory.")]
pub struct PcArgs {
    /// The IPC mechanism.
    #[arg(long, value_enum, default_value_t = Transport::Pipe)]
    transport: Transport,
    /// Producer processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    producers: u32,
    /// Consumer processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    consumers: u32,
    /// Messages per producer.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Payload bytes per message (plus a 20-byte header).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Print a single JSON object as the last line.
    #[arg(long)]
    json: bool,
}

const HEADER: usize = 20;

type ReportReceiver = PipeReceiver<Report>;

/// What one consumer saw, sent to the parent in chunks.
#[derive(Serialize, Deserialize, Debug)]
enum Report {
    /// (producer, seq) pairs received intact.
    Seen(Vec<(u32, u64)>),
    /// Totals, sent last.
    Done { corrupted: u64, errors: Vec<String> },
}

fn checksum(payload: &[u8]) -> u64 {
    // FNV-1a over 8-byte words: cheap, and any changed byte changes it.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = payload.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().unwrap())).wrapping_mul(0x100_0000_01b3);
    }
    for &b in chunks.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn fill_payload(buf: &mut [u8], producer: u32, seq: u64) {
    let mut x = (seq << 8 | producer as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// The channels, made by the parent before any fork.
///
/// `ends` are fds: each child takes the ends it uses and closes all the others, so every
/// stream sees EOF when its writer exits. `owners` are the named objects (FIFOs, socket
/// files, queues): only the parent ever drops them, which removes the objects. A forked
/// child never drops them: it leaves through `process::exit`, which runs no destructors.
struct Plan {
    ends: Ends,
    producers: usize,
    consumers: usize,
    /// Bytes per message: the channels' maximum frame.
    len: usize,
    owners: Owners,
}

/// The named objects the parent owns, dropped last-in first-out: an object goes before
/// the directory it was created in, which was pushed first.
#[derive(Default)]
struct Owners(Vec<Box<dyn std::any::Any>>);

impl Owners {
    fn push(&mut self, o: impl std::any::Any) {
        self.0.push(Box::new(o));
    }

    fn find<T: 'static>(&self) -> Option<&T> {
        self.0.iter().find_map(|o| o.downcast_ref::<T>())
    }
}

impl Drop for Owners {
    fn drop(&mut self) {
        while let Some(o) = self.0.pop() {
            drop(o);
        }
    }
}

enum Ends {
    /// `pipes[p][c]`: producer p to consumer c.
    Pipes(Vec<Vec<Option<(PipeReader, PipeWriter)>>>),
    /// `paths[p][c]`: the FIFO from producer p to consumer c.
    Fifos(Vec<Vec<PathBuf>>),
    /// Consumer c's listener: producers connect, consumer c accepts.
    Listeners(Vec<Listener>),
    /// The queue everyone opens.
    Msgq(Key),
    /// `rings[p][c]`: the ring from producer p to consumer c (each side attaches its end
    /// after the fork).
    Rings(Vec<Vec<ShmRing>>),
    /// The name of the bounded buffer's segment, which everyone opens.
    ShmSem(String),
    /// The one MPMC ring everyone attaches to (inherited across the fork).
    Mpmc(MpmcRing),
    /// Nothing left (the parent after the forks).
    Closed,
}

/// A consumer's listening socket. Only the parent drops it (which removes a socket
/// file); children borrow their copy.
enum Listener {
    Unix(UnixListener, UnixAddr),
    Seqpacket(SeqpacketListener, UnixAddr),
    Tcp(TcpListener, SocketAddr),
}

fn stream_sender(fd: impl AsFd + Send + 'static) -> Result<BytesSender, Error> {
    Ok(BytesSender::new(Box::new(StreamSink::new(fd)?) as _))
}

fn stream_receiver(fd: impl AsFd + Send + 'static) -> Result<BytesReceiver, Error> {
    Ok(BytesReceiver::new(Box::new(StreamSource::new(fd)?) as _))
}

impl Listener {
    fn connect(&self) -> Result<BytesSender, Error> {
        match self {
            Listener::Unix(_, a) => stream_sender(UnixStream::connect(a)?),
            Listener::Seqpacket(_, a) => {
                Ok(BytesSender::new(Box::new(SeqpacketSink::new(UnixSeqpacket::connect(a)?)?) as _))
            }
            Listener::Tcp(_, a) => stream_sender(TcpStream::connect_timeout(a, OPEN_TIMEOUT)?),
        }
    }

    fn accept(&self) -> Result<BytesReceiver, Error> {
        match self {
            Listener::Unix(l, _) => stream_receiver(l.accept_timeout(OPEN_TIMEOUT)?),
            Listener::Seqpacket(l, _) => Ok(BytesReceiver::new(Box::new(SeqpacketSource::new(
                l.accept_timeout(OPEN_TIMEOUT)?,
            )) as _)),
            Listener::Tcp(l, _) => stream_receiver(l.accept_timeout(OPEN_TIMEOUT)?),
        }
    }
}

/// A fresh directory in the runtime directory for the demo's named objects; its guard
/// goes into `owners` first, so that it is dropped after the objects in it.
fn demo_dir(owners: &mut Owners) -> Result<PathBuf, String> {
    let rt = names::runtime_dir().map_err(|e| e.to_string())?;
    let dir = rt.join(names::unique_name("pc"));
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    owners.push(DirGuard(dir.clone()));
    Ok(dir)
}

/// Refuses, before anything is created, a message size the transport cannot carry.
fn check_size(transport: Transport, len: usize) -> Result<(), String> {
    let max = match transport {
        Transport::Msgq => {
            let l = msgq::limits().map_err(|e| e.to_string())?;
            Some((l.msgmax, "kernel.msgmax", "raise it with `sysctl -w kernel.msgmax=N` (root)"))
        }
        Transport::Seqpacket => {
            // What one packet can carry here: the sink clamps its maximum to it.
            let (a, _b) = UnixSeqpacket::pair().map_err(|e| e.to_string())?;
            let mut sink = SeqpacketSink::new(a).map_err(|e| e.to_string())?;
            sink.set_max_frame(len);
            Some((sink.max_frame(), "the socket send buffer", "raise net.core.wmem_max (root)"))
        }
        _ => None,
    };
    match max {
        Some((max, limit, hint)) if len > max => Err(format!(
            "--size {} makes messages of {len} bytes (with the {HEADER}-byte header), over \
             {limit} = {max}: the largest --size for {} is {}; {hint}",
            len - HEADER,
            transport.name(),
            max - HEADER
        )),
        _ => Ok(()),
    }
}

/// The soft limit on open files (after `run` raised it to the hard limit).
fn nofile_limit() -> u64 {
    reactor::raise_fd_limit(0).map_or(0, |(soft, _)| soft)
}

/// How long a child waits in a FIFO open for its peer before giving up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Removes the demo's directory of FIFOs, after the FIFOs (drop order is push order).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl Plan {
    fn new(args: &PcArgs) -> Result<Plan, String> {
        let (np, nc) = (args.producers as usize, args.consumers as usize);
        let len = HEADER + args.size;
        check_size(args.transport, len)?;
        let fd_error = |e: Error| match e {
            Error::Os { errno: nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE, .. } => {
                format!(
                    "out of file descriptors ({e}): {} fans out over {} channels; raise `ulimit -n` \
                     (now {}), use fewer processes, or use msgq (one queue for everyone)",
                    args.transport.name(),
                    np * nc,
                    nofile_limit()
                )
            }
            e => e.to_string(),
        };
        let mut owners = Owners::default();
        let ends = match args.transport {
            Transport::Pipe => {
                let mut pipes = Vec::with_capacity(np);
                for _ in 0..np {
                    let row = (0..nc).map(|_| pipe::pipe().map(Some)).collect::<Result<_, _>>();
                    pipes.push(row.map_err(fd_error)?);
                }
                Ends::Pipes(pipes)
            }
            Transport::Fifo => {
                let dir = demo_dir(&mut owners)?;
                let mut paths = Vec::with_capacity(np);
                for p in 0..np {
                    let mut row = Vec::with_capacity(nc);
                    for c in 0..nc {
                        let fifo =
                            Fifo::create(dir.join(format!("p{p}-c{c}"))).map_err(fd_error)?;
                        row.push(fifo.path().to_path_buf());
                        owners.push(fifo);
                    }
                    paths.push(row);
                }
                Ends::Fifos(paths)
            }
            Transport::Unix | Transport::Seqpacket => {
                let dir = demo_dir(&mut owners)?;
                let mut ls = Vec::with_capacity(nc);
                for c in 0..nc {
                    let addr = UnixAddr::path(dir.join(format!("c{c}.sock"))).map_err(|e| {
                        format!("{e} (the socket files go in the runtime directory: set INTERPROC_RUNTIME_DIR to a shorter path)")
                    })?;
                    let l = if args.transport == Transport::Unix {
                        UnixListener::bind(&addr).map(|l| Listener::Unix(l, addr))
                    } else {
                        SeqpacketListener::bind(&addr).map(|l| Listener::Seqpacket(l, addr))
                    };
                    ls.push(l.map_err(fd_error)?);
                }
                Ends::Listeners(ls)
            }
            Transport::Tcp => {
                let mut ls = Vec::with_capacity(nc);
                for _ in 0..nc {
                    let l = TcpListener::bind("127.0.0.1:0").map_err(fd_error)?;
                    let addr = l.local_addr().map_err(|e| e.to_string())?;
                    ls.push(Listener::Tcp(l, addr));
                }
                Ends::Listeners(ls)
            }
            Transport::Msgq => {
                let q = MessageQueue::create_unique().map_err(|e| e.to_string())?;
                let key = q.key();
                owners.push(q);
                Ends::Msgq(key)
            }
            Transport::Shm => {
                // Room for a few messages in flight, and at least 64 KiB.
                let cap = interproc::sync::ring::RingHeader::capacity_for(len)
                    .and_then(|c| c.checked_mul(4))
                    .filter(|&c| c <= interproc::sync::ring::MAX_CAPACITY)
                    .ok_or_else(|| format!("--size {}: too large for a shm ring", args.size))?
                    .max(64 << 10);
                let mut rings = Vec::with_capacity(np);
                for _ in 0..np {
                    let row = (0..nc).map(|_| ShmRing::anonymous(cap)).collect::<Result<_, _>>();
                    rings.push(row.map_err(fd_error)?);
                }
                Ends::Rings(rings)
            }
            Transport::ShmMpmc => {
                if np >= MAX_PEERS {
                    return Err(format!(
                        "--producers {np}: a shm-mpmc ring takes at most {} producers (it has \
                         {MAX_PEERS} producer slots, and the parent holds one)",
                        MAX_PEERS - 1
                    ));
                }
                if nc > MAX_PEERS {
                    return Err(format!(
                        "--consumers {nc}: a shm-mpmc ring takes at most {MAX_PEERS} consumers"
                    ));
                }
                // Room for several messages of each producer in flight, at least 256 KiB.
                let cap = interproc::sync::ring::RingHeader::capacity_for(len)
                    .and_then(|c| c.checked_mul(4 * np.next_power_of_two()))
                    .filter(|&c| c <= interproc::sync::ring::MAX_CAPACITY)
                    .ok_or_else(|| format!("--size {}: too large for a shm ring", args.size))?
                    .max(256 << 10);
                Ends::Mpmc(MpmcRing::anonymous(cap).map_err(fd_error)?)
            }
            Transport::ShmSem => {
                let b = shm_sem::Buffer::create(len).map_err(|e| e.to_string())?;
                let name = b.name().to_string();
                owners.push(b);
                Ends::ShmSem(name)
            }
        };
        Ok(Plan { ends, producers: np, consumers: nc, len, owners })
    }

    /// Whether producers send the end markers themselves. On a shared queue the parent
    /// sends them once every producer has exited (see [`run`]).
    fn producers_send_markers(transport: Transport) -> bool {
        !matches!(transport, Transport::Msgq | Transport::ShmSem | Transport::ShmMpmc)
    }

    /// In producer `p`: its senders, one per consumer. Closes every other end.
    fn producer_ends(&mut self, p: usize) -> Result<Vec<BytesSender>, Error> {
        let ends = std::mem::replace(&mut self.ends, Ends::Closed);
        let len = self.len;
        let made: Result<Vec<BytesSender>, Error> = match ends {
            Ends::Pipes(mut pipes) => pipes
                .swap_remove(p)
                .into_iter()
                .map(|e| {
                    let (_r, w) = e.expect("pipe end");
                    Ok(BytesSender::new(Box::new(StreamSink::new(w)?) as _))
                })
                .collect(),
            // Producers open in consumer order and consumers in producer order: the
            // rendezvous (p, c) needs only (p, c-1) and (p-1, c) done, so these blocking
            // opens cannot deadlock.
            Ends::Fifos(paths) => paths[p]
                .iter()
                .map(|path| {
                    let w = fifo::open_writer_timeout(path, OPEN_TIMEOUT)?;
                    Ok(BytesSender::new(Box::new(StreamSink::new(w)?) as _))
                })
                .collect(),
            Ends::Listeners(ls) => {
                let senders = ls.iter().map(Listener::connect).collect();
                // This child's copies of the listeners are the parent's objects: leave
                // them to the parent without closing anything shared.
                std::mem::forget(ls);
                senders
            }
            Ends::Msgq(key) => {
                let q = Arc::new(MessageQueue::open(key)?);
                (0..self.consumers)
                    .map(|c| {
                        Ok(BytesSender::new(Box::new(MsgqSink::new(q.clone(), c as i64 + 1)?) as _))
                    })
                    .collect()
            }
            Ends::Rings(mut rings) => rings
                .swap_remove(p)
                .iter()
                .map(|r| Ok(BytesSender::new(Box::new(r.sink()?) as _)))
                .collect(),
            Ends::ShmSem(name) => {
                let sink = shm_sem::ShmSemSink(shm_sem::Buffer::open(&name)?);
                Ok(vec![BytesSender::new(Box::new(sink) as _)])
            }
            Ends::Mpmc(ring) => Ok(vec![BytesSender::new(Box::new(ring.sink()?) as _)]),
            Ends::Closed => unreachable!("ends taken twice"),
        };
        // The channels carry messages of exactly `len` bytes: allow that, however large.
        made.map(|v| v.into_iter().map(|e| e.with_max_frame(len)).collect())
    }

    /// In consumer `c`: its receivers. Closes every other end.
    fn consumer_ends(&mut self, c: usize) -> Result<Vec<BytesReceiver>, Error> {
        let ends = std::mem::replace(&mut self.ends, Ends::Closed);
        let len = self.len;
        let made: Result<Vec<BytesReceiver>, Error> = match ends {
            Ends::Pipes(pipes) => pipes
                .into_iter()
                .map(|mut row| {
                    let (r, _w) = row.swap_remove(c).expect("pipe end");
                    Ok(BytesReceiver::new(Box::new(StreamSource::new(r)?) as _))
                })
                .collect(),
            Ends::Fifos(paths) => paths
                .iter()
                .map(|row| {
                    let r = fifo::open_reader_timeout(&row[c], OPEN_TIMEOUT)?;
                    Ok(BytesReceiver::new(Box::new(StreamSource::new(r)?) as _))
                })
                .collect(),
            Ends::Listeners(ls) => {
                let receivers = (0..self.producers).map(|_| ls[c].accept()).collect();
                std::mem::forget(ls);
                receivers
            }
            Ends::Msgq(key) => {
                let q = MessageQueue::open(key)?;
                let src = MsgqSource::new(q, Select::Exact(c as i64 + 1))?;
                Ok(vec![BytesReceiver::new(Box::new(src) as _)])
            }
            Ends::Rings(rings) => rings
                .iter()
                .map(|row| Ok(BytesReceiver::new(Box::new(row[c].source()?) as _)))
                .collect(),
            Ends::ShmSem(name) => {
                let src = shm_sem::ShmSemSource::new(shm_sem::Buffer::open(&name)?);
                Ok(vec![BytesReceiver::new(Box::new(src) as _)])
            }
            Ends::Mpmc(ring) => Ok(vec![BytesReceiver::new(Box::new(ring.source()?) as _)]),
            Ends::Closed => unreachable!("ends taken twice"),
        };
        // The channels carry messages of exactly `len` bytes: allow that, however large.
        made.map(|v| v.into_iter().map(|e| e.with_max_frame(len)).collect())
    }
}

fn produce(plan: &mut Plan, args: &PcArgs, p: u32) -> i32 {
    let mut sinks = match plan.producer_ends(p as usize) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("producer {p}: setting up: {e}");
            return 2;
        }
    };
    let mut msg = vec![0u8; HEADER + args.size];
    for seq in 0..args.messages {
        let (head, payload) = msg.split_at_mut(HEADER);
        fill_payload(payload, p, seq);
        head[0..4].copy_from_slice(&p.to_le_bytes());
        head[4..12].copy_from_slice(&seq.to_le_bytes());
        head[12..20].copy_from_slice(&checksum(payload).to_le_bytes());
        let c = (seq % sinks.len() as u64) as usize;
        if let Err(e) = sinks[c].send(&msg) {
            eprintln!("producer {p}: message {seq} to consumer {c}: {e}");
            return 1;
        }
    }
    if !Plan::producers_send_markers(args.transport) {
        return 0;
    }
    for (c, s) in sinks.iter_mut().enumerate() {
        if let Err(e) = s.send(&[]) {
            eprintln!("producer {p}: end marker to consumer {c}: {e}");
            return 1;
        }
    }
    0
}

/// Receives until every producer's end marker arrived (or its stream failed).
fn consume(plan: &mut Plan, args: &PcArgs, c: u32, report: PipeWriter) -> i32 {
    let mut report = match report.into_sender::<Report>() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("consumer {c}: report channel: {e}");
            return 2;
        }
    };
    let mut sources: Vec<Option<BytesReceiver>> = match plan.consumer_ends(c as usize) {
        Ok(s) => s.into_iter().map(Some).collect(),
        Err(e) => {
            eprintln!("consumer {c}: setting up: {e}");
            return 2;
        }
    };
    let mut markers_left =
        if Plan::producers_send_markers(args.transport) { args.producers as usize } else { 1 };
    let mut seen = Vec::with_capacity(4096);
    let (mut corrupted, mut errors) = (0u64, Vec::new());
    let mut handle = |m: &[u8], seen: &mut Vec<(u32, u64)>| -> bool {
        if m.is_empty() {
            return true;
        }
        if m.len() != HEADER + args.size {
            corrupted += 1;
            return false;
        }
        let p = u32::from_le_bytes(m[0..4].try_into().unwrap());
        let seq = u64::from_le_bytes(m[4..12].try_into().unwrap());
        let sum = u64::from_le_bytes(m[12..20].try_into().unwrap());
        if checksum(&m[HEADER..]) != sum {
            corrupted += 1;
        } else {
            seen.push((p, seq));
        }
        false
    };
    // Rings have no fd: take from each in turn, and wait on one (in turn) only when a
    // whole round found nothing.
    let fdless = sources.len() > 1 && sources.iter().flatten().any(|s| s.fd().is_none());
    let mut turn = 0usize;
    let mut idle_round = false;
    while markers_left > 0 && sources.iter().any(Option::is_some) {
        // With one source (a shared queue), block on it; with several, poll them.
        let ready: Vec<usize> = if sources.len() == 1 {
            vec![0]
        } else if fdless {
            (0..sources.len()).filter(|&i| sources[i].is_some()).collect()
        } else {
            let live: Vec<usize> = (0..sources.len()).filter(|&i| sources[i].is_some()).collect();
            let mut fds: Vec<PollFd> = live
                .iter()
                .map(|&i| {
                    let fd = sources[i].as_ref().and_then(|s| s.fd()).expect("stream fd");
                    PollFd::new(fd, PollFlags::POLLIN)
                })
                .collect();
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    errors.push(format!("poll: {e}"));
                    break;
                }
            }
            let revents: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
            drop(fds);
            live.into_iter().zip(revents).filter(|&(_, r)| r).map(|(i, _)| i).collect()
        };
        let blocking = sources.len() == 1;
        let waiter = if fdless && idle_round && !ready.is_empty() {
            turn = turn.wrapping_add(1);
            Some(ready[turn % ready.len()])
        } else {
            None
        };
        idle_round = fdless;
        for i in ready {
            let mut wait_here = waiter == Some(i);
            // Drain: the buffer may hold several frames behind one readiness event.
            while let Some(src) = sources[i].as_mut() {
                let deadline = if blocking {
                    None
                } else if std::mem::take(&mut wait_here) {
                    Some(Instant::now() + Duration::from_millis(1))
                } else {
                    Some(Instant::now())
                };
                match src.recv_ref(deadline) {
                    Ok(m) => {
                        idle_round = false;
                        if handle(m, &mut seen) {
                            markers_left -= 1;
                            if !blocking {
                                sources[i] = None;
                            }
                        }
                        if seen.len() >= 4096 {
                            if let Err(e) = report.send(Report::Seen(std::mem::take(&mut seen))) {
                                eprintln!("consumer {c}: report: {e}");
                                return 2;
                            }
                        }
                        if blocking && markers_left == 0 {
                            break;
                        }
                    }
                    Err(Error::Timeout) => break,
                    // The MPMC ring's end of stream: every producer gone, the ring drained.
                    Err(Error::Disconnected) if args.transport == Transport::ShmMpmc => {
                        markers_left -= 1;
                        sources[i] = None;
                    }
                    Err(e) => {
                        errors.push(format!("source {i}: {e} before its end marker"));
                        markers_left -= 1;
                        sources[i] = None;
                    }
                }
            }
        }
    }
    let ok = errors.is_empty();
    let sent = report
        .send(Report::Seen(seen))
        .and_then(|()| report.send(Report::Done { corrupted, errors }));
    if let Err(e) = sent {
        eprintln!("consumer {c}: report: {e}");
        return 2;
    }
    if ok {
        0
    } else {
        1
    }
}

/// A child process as the parent watches it.
struct Kid {
    role: &'static str,
    i: usize,
    pid: nix::unistd::Pid,
    /// Until the child exits.
    watch: Option<PeerWatch>,
    code: Option<i32>,
}

/// The outcome of a run, as printed.
#[derive(Serialize, Debug)]
struct Summary {
    transport: &'static str,
    producers: u32,
    consumers: u32,
    messages_sent: u64,
    messages_received: u64,
    lost: u64,
    duplicated: u64,
    corrupted: u64,
    bytes: u64,
    seconds: f64,
    msgs_per_sec: f64,
}

/// Runs the demo; returns the exit status.
pub fn run(args: PcArgs) -> i32 {
    // A fan-out of P x C streams needs several fds per stream in the parent.
    let _ = reactor::raise_fd_limit(u64::MAX);
    let children = Children::new();
    let (np, nc) = (args.producers as usize, args.consumers as usize);
    let mut plan = match Plan::new(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("interproc demo pc: setting up {}: {e}", args.transport.name());
            return 2;
        }
    };

    // The MPMC ring: the parent holds a producer end until every producer has exited, so
    // consumers do not take "the producers attached so far are done" for the end.
    let mut keepalive: Option<MpmcSink> = match &plan.ends {
        Ends::Mpmc(ring) => match ring.sink() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("interproc demo pc: setting up shm-mpmc: {e}");
                return 2;
            }
        },
        _ => None,
    };
    let start = Instant::now();
    let mut reports: Vec<PipeReader> = Vec::new();
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    for c in 0..nc {
        let (r, w) = match pipe::pipe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("interproc demo pc: report pipe: {e}");
                return 2;
            }
        };
        let mut r = Some(r);
        // SAFETY: no thread runs yet: the signal thread starts after the last fork.
        consumers.push(unsafe {
            children.spawn(|| {
                reports.clear();
                r.take();
                consume(&mut plan, &args, c as u32, w)
            })
        });
        reports.extend(r);
    }
    for p in 0..np {
        // SAFETY: as above, still a single thread.
        producers.push(unsafe {
            children.spawn(|| {
                reports.clear();
                produce(&mut plan, &args, p as u32)
            })
        });
    }
    // From here on only the children hold channel ends.
    // The parent keeps the listeners (and their socket files) until the end: a producer
    // may connect after a consumer's first accept. Pushed last, they go first, before
    // their directory.
    if let Ends::Listeners(ls) = std::mem::replace(&mut plan.ends, Ends::Closed) {
        plan.owners.push(ls);
    }
    children.watch_signals();

    // One poll loop drains every report pipe as data arrives and watches every child
    // through a pidfd. Reading the reports one after another would let a consumer block
    // on a full report pipe, stop reading, and stall the producers the others wait for.
    // A child that fails ends the run: the others are killed, so nothing waits forever
    // on a peer that is gone (a System V queue has no EOF to tell them).
    let per = args.messages as usize;
    let mut counts = vec![0u8; np * per];
    let (mut corrupted, mut errors) = (0u64, Vec::new());
    let mut rxs: Vec<Option<ReportReceiver>> = Vec::new();
    for (c, r) in reports.into_iter().enumerate() {
        match r.into_receiver::<Report>() {
            Ok(rx) => rxs.push(Some(rx)),
            Err(e) => {
                errors.push(format!("consumer {c}: report channel: {e}"));
                rxs.push(None);
            }
        }
    }
    let mut kids: Vec<Kid> = Vec::new();
    for (role, pids) in [("consumer", &consumers), ("producer", &producers)] {
        for (i, &pid) in pids.iter().enumerate() {
            // The child is not reaped yet, so its pid names it.
            match PeerWatch::new(pid.as_raw() as u32) {
                Ok(w) => kids.push(Kid { role, i, pid, watch: Some(w), code: None }),
                Err(e) => errors.push(format!("{role} {i}: pidfd: {e}")),
            }
        }
    }
    let mut markers_sent = Plan::producers_send_markers(args.transport);
    let mut aborted = false;
    while rxs.iter().any(Option::is_some) || kids.iter().any(|k| k.watch.is_some()) {
        let live: Vec<usize> = (0..rxs.len()).filter(|&c| rxs[c].is_some()).collect();
        let watched: Vec<usize> = (0..kids.len()).filter(|&k| kids[k].watch.is_some()).collect();
        let mut fds: Vec<PollFd> = live
            .iter()
            .map(|&c| rxs[c].as_ref().and_then(|r| r.fd()).expect("pipe fd"))
            .chain(watched.iter().map(|&k| kids[k].watch.as_ref().expect("watch").as_fd()))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        if let Err(e) = nix::poll::poll(&mut fds, PollTimeout::NONE) {
            if e != nix::errno::Errno::EINTR {
                errors.push(format!("poll: {e}"));
                break;
            }
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
        drop(fds);
        let (ready_rx, ready_kids) = ready.split_at(live.len());
        for (&c, _) in live.iter().zip(ready_rx).filter(|(_, &r)| r) {
            while let Some(rx) = rxs[c].as_mut() {
                match rx.try_recv() {
                    Ok(Report::Seen(list)) => {
                        for (p, seq) in list {
                            if (p as usize) < np && (seq as usize) < per {
                                let n = &mut counts[p as usize * per + seq as usize];
                                *n = n.saturating_add(1);
                            } else {
                                corrupted += 1;
                            }
                        }
                    }
                    Ok(Report::Done { corrupted: k, errors: e }) => {
                        corrupted += k;
                        errors.extend(e.into_iter().map(|e| format!("consumer {c}: {e}")));
                        rxs[c] = None;
                    }
                    Err(Error::Empty) => break,
                    Err(e) => {
                        errors.push(format!("consumer {c}: report ended early: {e}"));
                        rxs[c] = None;
                    }
                }
            }
        }
        for (&k, _) in watched.iter().zip(ready_kids).filter(|(_, &r)| r) {
            let kid = &mut kids[k];
            kid.watch = None;
            let code = children.wait(kid.pid);
            kid.code = Some(code);
            // After an interrupt the children were killed on purpose: not an error.
            if code != 0 && !aborted && !procs::interrupted() {
                aborted = true;
                errors.push(format!(
                    "{} {} (pid {}) exited with status {code}: stopping the run",
                    kid.role, kid.i, kid.pid
                ));
                children.kill_all();
            }
        }
        // On a shared queue, the end markers go in once every producer has exited: the
        // queue keeps each type in order, so they land behind all the data.
        let producers_done = kids.iter().filter(|k| k.role == "producer").all(|k| k.code.is_some());
        if !markers_sent && producers_done && !aborted {
            markers_sent = true;
            // The MPMC ring: the last producer end goes, consumers drain and stop.
            drop(keepalive.take());
            if let Some(q) = plan.owners.find::<MessageQueue>() {
                for c in 0..nc {
                    // Bounded: a consumer that stopped reading must not hang the parent.
                    if let Err(e) = q.send_timeout(c as i64 + 1, &[], OPEN_TIMEOUT) {
                        errors.push(format!("end marker to consumer {c}: {e}"));
                    }
                }
            }
            // The bounded buffer: one marker per consumer, behind all the data; each
            // consumer stops at the first it takes.
            if let Some(b) = plan.owners.find::<shm_sem::Buffer>() {
                for c in 0..nc {
                    if let Err(e) = b.put(&[], Some(Instant::now() + OPEN_TIMEOUT)) {
                        errors.push(format!("end marker {c}: {e}"));
                    }
                }
            }
        }
    }
    let failed = kids.iter().filter(|k| k.code != Some(0)).count();
    let seconds = start.elapsed().as_secs_f64();

    let received: u64 = counts.iter().map(|&n| n as u64).sum();
    // Every intact message has the same length; a killed consumer sends no totals.
    let bytes = received * (HEADER + args.size) as u64;
    let lost = counts.iter().filter(|&&n| n == 0).count() as u64;
    let duplicated: u64 = counts.iter().map(|&n| (n as u64).saturating_sub(1)).sum();
    let summary = Summary {
        transport: args.transport.name(),
        producers: args.producers,
        consumers: args.consumers,
        messages_sent: args.producers as u64 * args.messages,
        messages_received: received,
        lost,
        duplicated,
        corrupted,
        bytes,
        seconds,
        msgs_per_sec: received as f64 / seconds,
    };
    let ok = lost == 0 && duplicated == 0 && corrupted == 0 && failed == 0 && errors.is_empty();

    println!(
        "demo pc over {}: {} producer and {} consumer processes, {} messages of {} bytes each",
        summary.transport,
        summary.producers,
        summary.consumers,
        summary.messages_sent,
        HEADER + args.size
    );
    println!(
        "received {} ({} lost, {} duplicated, {} corrupted) in {:.3} s: {:.0} msgs/s, {:.1} MB/s",
        received,
        lost,
        duplicated,
        corrupted,
        seconds,
        summary.msgs_per_sec,
        bytes as f64 / seconds / 1e6
    );
    for e in &errors {
        println!("error: {e}");
    }
    if procs::interrupted() {
        println!(
            "interrupted after {received} of {} messages: children killed, every named object removed",
            summary.messages_sent
        );
    }
    if !procs::interrupted() {
        println!("{}", if ok { "exactly once: OK" } else { "exactly once: FAILED" });
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary).expect("summary serialises"));
    }
    drop(plan);
    if procs::interrupted() {
        130
    } else if ok {
        0
    } else {
        1
    }
}
