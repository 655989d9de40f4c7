//! System V message queue transport: the cost of interproc's wrapper and channels over
//! a raw `msgsnd`/`msgrcv` pair.
//!
//! Both ends live in this process, as in `benches/pipe.rs` (the cross-process
//! benches arrive with `interproc bench`): raw syscalls vs `MessageQueue::send`/`recv`
//! vs the raw-bytes channel vs the typed channel, for one message sent and received.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use interproc::ipc::msgq::{self, MessageQueue, Select};

/// `struct msgbuf` with room for the largest size benchmarked.
#[repr(C)]
struct RawMsg {
    mtype: libc::c_long,
    mtext: [u8; 1024],
}

fn roundtrip(c: &mut Criterion) {
    let mut g = c.benchmark_group("msgq_same_process");
    for size in common::SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0xa5u8; size];

        let q = MessageQueue::private().unwrap();
        let out = RawMsg { mtype: 1, mtext: [0xa5; 1024] };
        let mut inb = RawMsg { mtype: 0, mtext: [0; 1024] };
        g.bench_with_input(BenchmarkId::new("raw_syscalls", size), &size, |b, _| {
            b.iter(|| {
                let p: *const RawMsg = black_box(&out);
                // SAFETY: `p` points to a live `struct msgbuf` whose mtext holds 1024 >=
                // `size` bytes; the kernel reads it during the call only.
                let r = unsafe { libc::msgsnd(q.id(), p.cast(), size, 0) };
                assert_eq!(r, 0);
                // SAFETY: `inb` is a writable `struct msgbuf` with 1024 bytes of mtext;
                // msgrcv writes at most that (msgsz = 1024).
                let n = unsafe { libc::msgrcv(q.id(), (&raw mut inb).cast(), 1024, 0, 0) };
                assert_eq!(n, size as isize);
                black_box(&inb);
            })
        });

        let mut buf = vec![0u8; size];
        g.bench_with_input(BenchmarkId::new("queue_methods", size), &size, |b, _| {
            b.iter(|| {
                q.send(1, black_box(&msg)).unwrap();
                black_box(q.recv(Select::Any, &mut buf).unwrap());
            })
        });
        drop(q);

        let q = Arc::new(MessageQueue::private().unwrap());
        common::bytes_row(
            &mut g,
            size,
            (
                msgq::bytes_sender(q.clone(), 1).unwrap(),
                msgq::bytes_receiver(q, Select::Any).unwrap(),
            ),
        );
        common::typed_row(&mut g, size, msgq::channel().unwrap());
    }
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
