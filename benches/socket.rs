//! Unix stream sockets between two processes: plain `write`/`read` on a socketpair (the
//! raw syscall loop) vs interproc's raw-bytes channel vs its typed channel, in the
//! shared groups `latency/<size>` and `throughput/<size>` (see `common`). Seqpacket
//! sockets are in `benches/seqpacket.rs`.

mod common;

use common::{Bytes, RawStream, Typed};
use criterion::Criterion;
use interproc::ipc::socket::UnixStream;

fn bench(c: &mut Criterion) {
    for size in common::SIZES {
        let (a, b) = UnixStream::pair().unwrap();
        let ours = RawStream::boxed(a.try_clone().unwrap(), a, size);
        let theirs = RawStream::boxed(b.try_clone().unwrap(), b, size);
        common::row(c, "unix_stream/raw", size, ours, theirs);

        let (a, b) = UnixStream::pair().unwrap();
        let (tx1, rx1) = a.into_bytes_channel().unwrap();
        let (tx2, rx2) = b.into_bytes_channel().unwrap();
        common::row(c, "unix_stream/bytes", size, Bytes::boxed(tx1, rx1), Bytes::boxed(tx2, rx2));

        let (a, b) = UnixStream::pair().unwrap();
        let (tx1, rx1) = a.into_channel().unwrap();
        let (tx2, rx2) = b.into_channel().unwrap();
        common::row(c, "unix_stream/typed", size, Typed::boxed(tx1, rx1), Typed::boxed(tx2, rx2));
    }
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
