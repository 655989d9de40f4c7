//! Anonymous pipes between two processes: plain `write`/`read` (the raw syscall loop)
//! vs interproc's raw-bytes channel vs its typed channel (`serde_bytes::ByteBuf`, and
//! plain `Vec<u8>` as `pipe/typed-vec` to show what it costs), in the shared groups
//! `latency/<size>` and `throughput/<size>` (see `common`). Two pipes, one per
//! direction; the peer is forked once per row and size.

mod common;

use common::{Bytes, RawStream, Typed, TypedVec};
use criterion::Criterion;
use interproc::ipc::pipe;

fn pipes(c: &mut Criterion) {
    for size in common::SIZES {
        let ((r1, w1), (r2, w2)) = (pipe::pipe().unwrap(), pipe::pipe().unwrap());
        let ours = RawStream::boxed(r2, w1, size);
        common::row(c, "pipe/raw", size, ours, RawStream::boxed(r1, w2, size));

        let ((tx1, rx1), (tx2, rx2)) =
            (pipe::bytes_channel().unwrap(), pipe::bytes_channel().unwrap());
        common::row(c, "pipe/bytes", size, Bytes::boxed(tx1, rx2), Bytes::boxed(tx2, rx1));

        let ((tx1, rx1), (tx2, rx2)) = (pipe::channel().unwrap(), pipe::channel().unwrap());
        common::row(c, "pipe/typed", size, Typed::boxed(tx1, rx2), Typed::boxed(tx2, rx1));

        let ((tx1, rx1), (tx2, rx2)) = (pipe::channel().unwrap(), pipe::channel().unwrap());
        let (ours, theirs) = (TypedVec::boxed(tx1, rx2), TypedVec::boxed(tx2, rx1));
        common::row(c, "pipe/typed-vec", size, ours, theirs);
    }
}

fn main() {
    let mut c = common::criterion();
    pipes(&mut c);
    c.final_summary();
}
