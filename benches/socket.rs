//! Unix socket transports: the cost of interproc's framing over raw socket syscalls.
//!
//! Both ends live in this process (the cross-process ping-pong benches arrive with
//! `interproc bench`); what is measured here is the wrapper: raw syscalls vs the
//! raw-bytes channel vs the typed channel, for one message sent and received back, over
//! a stream pair (length-prefixed frames) and a seqpacket pair (one packet per frame).

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use interproc::ipc::socket::{UnixSeqpacket, UnixStream};

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("unix_stream_same_process");
    for size in common::SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let (a, b) = UnixStream::pair().unwrap();
        common::raw_row(&mut g, size, a, b);
        let (a, b) = UnixStream::pair().unwrap();
        common::bytes_row(
            &mut g,
            size,
            (a.into_bytes_channel().unwrap().0, b.into_bytes_channel().unwrap().1),
        );
        let (a, b) = UnixStream::pair().unwrap();
        common::typed_row(&mut g, size, (a.into_sender().unwrap(), b.into_receiver().unwrap()));
    }
    g.finish();
}

fn seqpacket(c: &mut Criterion) {
    let mut g = c.benchmark_group("unix_seqpacket_same_process");
    for size in common::SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = common::message(size);

        // A packet socket has no Read/Write: one send(2) and one recv(2).
        let (a, b) = UnixSeqpacket::pair().unwrap();
        let mut buf = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("raw_syscalls", size), &size, |bch, _| {
            bch.iter(|| {
                a.send(black_box(&msg)).unwrap();
                black_box(b.recv(&mut buf).unwrap());
            })
        });

        let (a, b) = UnixSeqpacket::pair().unwrap();
        common::bytes_row(
            &mut g,
            size,
            (a.into_bytes_channel().unwrap().0, b.into_bytes_channel().unwrap().1),
        );
        let (a, b) = UnixSeqpacket::pair().unwrap();
        common::typed_row(&mut g, size, (a.into_sender().unwrap(), b.into_receiver().unwrap()));
    }
    g.finish();
}

criterion_group!(benches, stream, seqpacket);
criterion_main!(benches);
