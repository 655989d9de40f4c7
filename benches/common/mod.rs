//! What every same-process transport bench shares: the sizes, and the two channel rows
//! (raw-bytes and typed) measured the same way over any pair of channel ends.
#![allow(dead_code)]

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use interproc::ipc::channel::{
    BytesReceiver, BytesSender, FrameSink, FrameSource, Receiver, Sender,
};

/// Message sizes, in bytes.
pub const SIZES: [usize; 2] = [64, 1024];

/// The message every row sends.
pub fn message(size: usize) -> Vec<u8> {
    vec![0xa5u8; size]
}

/// One message sent and received back through a raw-bytes channel.
pub fn bytes_row<S: FrameSink, R: FrameSource>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    size: usize,
    (mut tx, mut rx): (BytesSender<S>, BytesReceiver<R>),
) {
    let msg = message(size);
    g.bench_with_input(BenchmarkId::new("bytes_channel", size), &size, |b, _| {
        b.iter(|| {
            tx.send(black_box(&msg)).unwrap();
            black_box(rx.recv_ref(None).unwrap());
        })
    });
}

/// One `Vec<u8>` sent and received back through a typed channel.
pub fn typed_row<S: FrameSink, R: FrameSource>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    size: usize,
    (mut tx, mut rx): (Sender<Vec<u8>, S>, Receiver<Vec<u8>, R>),
) {
    let msg = message(size);
    g.bench_with_input(BenchmarkId::new("typed_channel", size), &size, |b, _| {
        b.iter(|| {
            tx.send(black_box(msg.clone())).unwrap();
            black_box(rx.recv().unwrap());
        })
    });
}

/// One message written and read back with plain `write`/`read` on two fds.
pub fn raw_row(
    g: &mut BenchmarkGroup<'_, WallTime>,
    size: usize,
    mut w: impl std::io::Write,
    mut r: impl std::io::Read,
) {
    let msg = message(size);
    let mut buf = vec![0u8; size];
    g.bench_with_input(BenchmarkId::new("raw_syscalls", size), &size, |b, _| {
        b.iter(|| {
            w.write_all(black_box(&msg)).unwrap();
            r.read_exact(&mut buf).unwrap();
            black_box(&buf);
        })
    });
}
