//! The shared-memory ring (`ipc::channel::shm`) across two real processes, against a FIFO
//! pair carrying the same raw-bytes channel.
//!
//! - `latency/<size>`: one round trip (send, the peer echoes, receive); half of it is the
//!   one-way latency.
//! - `throughput/<size>`: `iters` messages one way, then a 1-byte request that the peer
//!   acknowledges once it has received everything before it.
//!
//! Rows: `shm` (copy in, read in place), `shm_zero_copy` (loan, write the first 8 bytes of
//! every 64 in place, commit; read in place), `fifo` (the raw-bytes channel over two FIFOs).
//!
//! The peer is this bench binary re-executed with `INTERPROC_BENCH_PEER` set; it opens the
//! rings or FIFOs by name, and is killed if the bench ends early. Named objects are removed
//! by their owner here.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use interproc::ipc::channel::shm::{self, ShmSink, ShmSource};
use interproc::ipc::channel::{
    BytesReceiver, BytesSender, FrameSink, FrameSource, StreamSink, StreamSource,
};
use interproc::ipc::fifo::{self, Fifo};
use interproc::ipc::names;

const PEER_ENV: &str = "INTERPROC_BENCH_PEER";
const SIZES: [usize; 3] = [64, 4096, 1 << 20];
const OPEN: Duration = Duration::from_secs(30);

/// One direction's ends, whatever the row.
enum Tx {
    Copy(ShmSink),
    Loan(ShmSink),
    Fifo(BytesSender),
}

enum Rx {
    Shm(ShmSource),
    Fifo(BytesReceiver),
}

impl Tx {
    fn send(&mut self, msg: &[u8]) {
        match self {
            Tx::Copy(s) => s.send(msg, None).unwrap(),
            Tx::Fifo(s) => s.send(msg).unwrap(),
            Tx::Loan(s) => {
                let mut loan = s.producer().loan(msg.len(), None).unwrap();
                let buf = loan.as_uninit_mut();
                for o in (0..msg.len().saturating_sub(7)).step_by(64) {
                    for (d, b) in buf[o..o + 8].iter_mut().zip(&msg[o..o + 8]) {
                        d.write(*b);
                    }
                }
                loan.commit();
            }
        }
    }
}

impl Rx {
    /// Receives one message in place; returns its length and first byte.
    fn recv(&mut self) -> (usize, u8) {
        let m = match self {
            Rx::Shm(s) => s.recv(None).unwrap(),
            Rx::Fifo(r) => r.recv_ref(None).unwrap(),
        };
        (m.len(), m.first().copied().unwrap_or(0))
    }
}

/// The objects of one row: rings or FIFOs, owned (and removed) here.
struct Row {
    kind: &'static str,
    fwd: String,
    back: String,
    _owners: Vec<Box<dyn std::any::Any>>,
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(names::unique_name("bench-shm"));
    std::fs::create_dir(&d).unwrap();
    d
}

struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl Row {
    fn new(kind: &'static str, size: usize) -> Row {
        if kind == "fifo" {
            let d = dir();
            let fwd = Fifo::create(d.join("fwd")).unwrap();
            let back = Fifo::create(d.join("back")).unwrap();
            let (f, b) = (fwd.path().display().to_string(), back.path().display().to_string());
            let owners: Vec<Box<dyn std::any::Any>> =
                vec![Box::new(DirGuard(d)), Box::new(fwd), Box::new(back)];
            return Row { kind, fwd: f, back: b, _owners: owners.into_iter().rev().collect() };
        }
        let cap = (4 * size.next_power_of_two()).max(256 << 10);
        let (f, b) = (names::unique_name("bench-fwd"), names::unique_name("bench-back"));
        let fwd = shm::create(&f, cap).unwrap();
        let back = shm::create(&b, cap).unwrap();
        Row { kind, fwd: f, back: b, _owners: vec![Box::new(fwd), Box::new(back)] }
    }

    /// This side's ends: sends on `out`, receives on `inn`.
    fn ends(kind: &str, out: &str, inn: &str, parent: bool) -> (Tx, Rx) {
        if kind == "fifo" {
            // Both sides open fwd first, then back: the blocking opens pair up.
            let (tx, rx) = if parent {
                let w = fifo::open_writer_timeout(out, OPEN).unwrap();
                let r = fifo::open_reader_timeout(inn, OPEN).unwrap();
                (w, r)
            } else {
                let r = fifo::open_reader_timeout(inn, OPEN).unwrap();
                let w = fifo::open_writer_timeout(out, OPEN).unwrap();
                (w, r)
            };
            let sink = StreamSink::new(tx).unwrap();
            let src = StreamSource::new(rx).unwrap();
            let tx = BytesSender::new(Box::new(sink) as Box<dyn FrameSink>).with_max_frame(2 << 20);
            let rx =
                BytesReceiver::new(Box::new(src) as Box<dyn FrameSource>).with_max_frame(2 << 20);
            return (Tx::Fifo(tx), Rx::Fifo(rx));
        }
        let sink = shm::open(out).unwrap().sink().unwrap();
        let src = shm::open(inn).unwrap().source().unwrap();
        let tx = if kind == "shm_zero_copy" { Tx::Loan(sink) } else { Tx::Copy(sink) };
        (tx, Rx::Shm(src))
    }

    fn spawn(&self, mode: &str, size: usize) -> (KillOnDrop, Tx, Rx) {
        let exe = std::env::current_exe().unwrap();
        let role = format!("{mode}:{}:{size}:{}:{}", self.kind, self.fwd, self.back);
        let child = Command::new(exe)
            .env(PEER_ENV, role)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let child = KillOnDrop(child);
        let (tx, rx) = Row::ends(self.kind, &self.fwd, &self.back, true);
        (child, tx, rx)
    }
}

/// The peer process, killed and reaped when the row ends (or the bench panics).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The peer: `echo` sends every message back; `sink` answers a 1-byte request with a
/// 1-byte acknowledgement. It ends when the parent's end goes away.
fn peer(role: &str) {
    let mut parts = role.splitn(5, ':');
    let (mode, kind) = (parts.next().unwrap(), parts.next().unwrap());
    let size: usize = parts.next().unwrap().parse().unwrap();
    let (fwd, back) = (parts.next().unwrap(), parts.next().unwrap());
    let (mut tx, mut rx) = Row::ends(kind, back, fwd, false);
    let msg = vec![0x5au8; size];
    loop {
        let m = match &mut rx {
            Rx::Shm(s) => s.recv(None).map(<[u8]>::len),
            Rx::Fifo(r) => r.recv_ref(None).map(<[u8]>::len),
        };
        let Ok(len) = m else { return };
        if len == 1 {
            tx.send(&[1]);
        } else if mode == "echo" {
            tx.send(&msg[..len]);
        }
    }
}

fn bench(c: &mut Criterion) {
    for size in SIZES {
        let msg = vec![0xa5u8; size];
        let mut g = c.benchmark_group(format!("latency/{size}"));
        if size >= 1 << 20 {
            g.sample_size(20);
        }
        for kind in ["shm", "shm_zero_copy", "fifo"] {
            let row = Row::new(kind, size);
            let (_peer, mut tx, mut rx) = row.spawn("echo", size);
            g.bench_function(BenchmarkId::new(kind, size), |b| {
                b.iter(|| {
                    tx.send(black_box(&msg));
                    black_box(rx.recv());
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("throughput/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            g.sample_size(20);
        }
        for kind in ["shm", "shm_zero_copy", "fifo"] {
            let row = Row::new(kind, size);
            let (_peer, mut tx, mut rx) = row.spawn("sink", size);
            g.bench_function(BenchmarkId::new(kind, size), |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        tx.send(black_box(&msg));
                    }
                    tx.send(&[0]);
                    assert_eq!(rx.recv().0, 1, "the peer acknowledges");
                    t.elapsed()
                })
            });
        }
        g.finish();
    }
}

fn main() {
    if let Ok(role) = std::env::var(PEER_ENV) {
        peer(&role);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
