//! Unix socket transports: the cost of interproc's framing over raw socket syscalls.
//!
//! Both ends live in this process (the cross-process ping-pong benches arrive with
//! `interproc bench`); what is measured here is the wrapper: raw syscalls vs the
//! raw-bytes channel vs the typed channel, for one message sent and received back, over
//! a stream pair (length-prefixed frames) and a seqpacket pair (one packet per frame).

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use interproc::ipc::socket::{UnixSeqpacket, UnixStream};

const SIZES: [usize; 2] = [64, 1024];

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("unix_stream_same_process");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0xa5u8; size];

        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut buf = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("raw_syscalls", size), &size, |bch, _| {
            bch.iter(|| {
                a.write_all(black_box(&msg)).unwrap();
                b.read_exact(&mut buf).unwrap();
                black_box(&buf);
            })
        });

        let (a, b) = UnixStream::pair().unwrap();
        let (mut tx, _keep_a) = a.into_bytes_channel().unwrap();
        let (_keep_b, mut rx) = b.into_bytes_channel().unwrap();
        g.bench_with_input(BenchmarkId::new("bytes_channel", size), &size, |bch, _| {
            bch.iter(|| {
                tx.send(black_box(&msg)).unwrap();
                black_box(rx.recv_ref(None).unwrap());
            })
        });

        let (a, b) = UnixStream::pair().unwrap();
        let (mut tx, _keep_a) = a.into_channel::<Vec<u8>, ()>().unwrap();
        let (_keep_b, mut rx) = b.into_channel::<(), Vec<u8>>().unwrap();
        g.bench_with_input(BenchmarkId::new("typed_channel", size), &size, |bch, _| {
            bch.iter(|| {
                tx.send(black_box(msg.clone())).unwrap();
                black_box(rx.recv().unwrap());
            })
        });
    }
    g.finish();
}

fn seqpacket(c: &mut Criterion) {
    let mut g = c.benchmark_group("unix_seqpacket_same_process");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0xa5u8; size];

        let (a, b) = UnixSeqpacket::pair().unwrap();
        let mut buf = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("raw_syscalls", size), &size, |bch, _| {
            bch.iter(|| {
                a.send(black_box(&msg)).unwrap();
                black_box(b.recv(&mut buf).unwrap());
            })
        });

        let (a, b) = UnixSeqpacket::pair().unwrap();
        let (mut tx, _keep_a) = a.into_bytes_channel().unwrap();
        let (_keep_b, mut rx) = b.into_bytes_channel().unwrap();
        g.bench_with_input(BenchmarkId::new("bytes_channel", size), &size, |bch, _| {
            bch.iter(|| {
                tx.send(black_box(&msg)).unwrap();
                black_box(rx.recv_ref(None).unwrap());
            })
        });

        let (a, b) = UnixSeqpacket::pair().unwrap();
        let (mut tx, _keep_a) = a.into_channel::<Vec<u8>, ()>().unwrap();
        let (_keep_b, mut rx) = b.into_channel::<(), Vec<u8>>().unwrap();
        g.bench_with_input(BenchmarkId::new("typed_channel", size), &size, |bch, _| {
            bch.iter(|| {
                tx.send(black_box(msg.clone())).unwrap();
                black_box(rx.recv().unwrap());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stream, seqpacket);
criterion_main!(benches);
