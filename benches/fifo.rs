//! FIFOs (named pipes) between two processes: plain `write`/`read` vs interproc's
//! raw-bytes channel vs its typed channel, in the shared groups `latency/<size>` and
//! `throughput/<size>` (see `common`). Two FIFOs, one per direction, opened by path
//! before the peer is forked; the creator removes them when the row is done.

mod common;

use common::{Bytes, RawStream, Typed};
use criterion::Criterion;
use interproc::ipc::fifo::{Fifo, FifoReader, FifoWriter};

/// Two FIFOs and both ends of each: (to the peer, from the peer).
fn fifos(n: &mut u32) -> ((Fifo, Fifo), (FifoReader, FifoWriter), (FifoReader, FifoWriter)) {
    let dir = std::env::temp_dir();
    let mut make = || {
        *n += 1;
        let f =
            Fifo::create(dir.join(format!("interproc-bench-{}-{n}", std::process::id()))).unwrap();
        // A non-blocking open of the read end does not wait for a writer; the write
        // end then opens at once. Back to blocking for the raw loop.
        let r = f.open_reader_nonblocking().unwrap();
        let w = f.open_writer().unwrap();
        r.set_nonblocking(false).unwrap();
        (f, r, w)
    };
    let (f1, r1, w1) = make();
    let (f2, r2, w2) = make();
    ((f1, f2), (r1, w1), (r2, w2))
}

fn bench(c: &mut Criterion) {
    let mut n = 0;
    for size in common::SIZES {
        let (_keep, (r1, w1), (r2, w2)) = fifos(&mut n);
        let ours = RawStream::boxed(r2, w1, size);
        common::row(c, "fifo/raw", size, ours, RawStream::boxed(r1, w2, size));

        let (_keep, (r1, w1), (r2, w2)) = fifos(&mut n);
        let ours = Bytes::boxed(w1.into_bytes_sender().unwrap(), r2.into_bytes_receiver().unwrap());
        let theirs =
            Bytes::boxed(w2.into_bytes_sender().unwrap(), r1.into_bytes_receiver().unwrap());
        common::row(c, "fifo/bytes", size, ours, theirs);

        let (_keep, (r1, w1), (r2, w2)) = fifos(&mut n);
        let ours = Typed::boxed(w1.into_sender().unwrap(), r2.into_receiver().unwrap());
        let theirs = Typed::boxed(w2.into_sender().unwrap(), r1.into_receiver().unwrap());
        common::row(c, "fifo/typed", size, ours, theirs);
    }
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
