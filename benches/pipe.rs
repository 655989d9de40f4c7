//! Pipe transport: the cost of interproc's framing over a raw `write`/`read` pair.
//!
//! Both ends live in this process (the cross-process ping-pong benches arrive with
//! `interproc bench`); what is measured here is the wrapper: raw syscalls vs the
//! raw-bytes channel vs the typed channel, for one message written and read back.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use interproc::ipc::pipe;

fn roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_same_process");
    for size in common::SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let (r, w) = pipe::pipe().unwrap();
        common::raw_row(&mut g, size, w, r);
        common::bytes_row(&mut g, size, pipe::bytes_channel().unwrap());
        common::typed_row(&mut g, size, pipe::channel().unwrap());
    }
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
