//! Unix seqpacket sockets between two processes: one `send`/`recv` per message (the raw
//! syscall loop) vs interproc's raw-bytes channel vs its typed channel, in the shared
//! groups `latency/<size>` and `throughput/<size>` (see `common`).
//!
//! A packet must fit in the sender's socket buffer (`SO_SNDBUF - 32`, capped by
//! `net.core.wmem_max`): sizes above that are skipped, and the bench says so.

mod common;

use std::hint::black_box;

use common::{Bytes, Link, Typed};
use criterion::Criterion;
use interproc::ipc::socket::UnixSeqpacket;

/// One packet per message, with plain `send`/`recv`.
struct Raw(UnixSeqpacket, Vec<u8>);

impl Link for Raw {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg).expect("send");
    }
    fn recv(&mut self) -> Option<u8> {
        match self.0.recv(&mut self.1) {
            Ok(n) if n > 0 => Some(black_box(&self.1)[0]),
            _ => None,
        }
    }
}

fn bench(c: &mut Criterion) {
    let max = UnixSeqpacket::pair().unwrap().0.max_packet().unwrap();
    for size in common::SIZES {
        // The channels add a tag byte, the typed one a length prefix too.
        if size + 16 > max {
            eprintln!(
                "seqpacket: {size}-byte messages skipped: a packet holds at most {max} bytes \
                 here (SO_SNDBUF - 32; raise net.core.wmem_max)"
            );
            continue;
        }
        let (a, b) = UnixSeqpacket::pair().unwrap();
        let ours = Box::new(Raw(a, vec![0; size]));
        common::row(c, "seqpacket/raw", size, ours, Box::new(Raw(b, vec![0; size])));

        let (a, b) = UnixSeqpacket::pair().unwrap();
        let (tx1, rx1) = a.into_bytes_channel().unwrap();
        let (tx2, rx2) = b.into_bytes_channel().unwrap();
        common::row(c, "seqpacket/bytes", size, Bytes::boxed(tx1, rx1), Bytes::boxed(tx2, rx2));

        let (a, b) = UnixSeqpacket::pair().unwrap();
        let (tx1, rx1) = a.into_channel().unwrap();
        let (tx2, rx2) = b.into_channel().unwrap();
        common::row(c, "seqpacket/typed", size, Typed::boxed(tx1, rx1), Typed::boxed(tx2, rx2));
    }
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
