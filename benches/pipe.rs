//! Pipe transport: the cost of interproc's framing over a raw `write`/`read` pair.
//!
//! Both ends live in this process (the cross-process ping-pong benches arrive with
//! `interproc bench`); what is measured here is the wrapper: raw syscalls vs the
//! raw-bytes channel vs the typed channel, for one message written and read back.

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use interproc::ipc::channel::{BytesReceiver, BytesSender, StreamSink, StreamSource};
use interproc::ipc::pipe;

const SIZES: [usize; 2] = [64, 1024];

fn roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_same_process");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0xa5u8; size];

        let (mut r, mut w) = pipe::pipe().unwrap();
        let mut buf = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("raw_syscalls", size), &size, |b, _| {
            b.iter(|| {
                w.write_all(black_box(&msg)).unwrap();
                r.read_exact(&mut buf).unwrap();
                black_box(&buf);
            })
        });

        let (r, w) = pipe::pipe().unwrap();
        let mut tx = BytesSender::new(StreamSink::new(w).unwrap());
        let mut rx = BytesReceiver::new(StreamSource::new(r).unwrap());
        g.bench_with_input(BenchmarkId::new("bytes_channel", size), &size, |b, _| {
            b.iter(|| {
                tx.send(black_box(&msg)).unwrap();
                black_box(rx.recv_ref(None).unwrap());
            })
        });

        let (mut tx, mut rx) = pipe::channel::<Vec<u8>>().unwrap();
        g.bench_with_input(BenchmarkId::new("typed_channel", size), &size, |b, _| {
            b.iter(|| {
                tx.send(black_box(msg.clone())).unwrap();
                black_box(rx.recv().unwrap());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
