//! TCP over loopback: the cost of interproc's framing over raw socket syscalls.
//!
//! Both ends live in this process (the cross-process ping-pong benches arrive with
//! `interproc bench`); what is measured here is the wrapper: raw syscalls vs the
//! raw-bytes channel vs the typed channel, for one message sent and received back.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use interproc::ipc::tcp::{TcpListener, TcpStream};

fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (c, listener.accept().unwrap())
}

fn roundtrip(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut g = c.benchmark_group("tcp_same_process");
    for size in common::SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let (a, b) = pair(&listener);
        common::raw_row(&mut g, size, a, b);
        let (a, b) = pair(&listener);
        common::bytes_row(
            &mut g,
            size,
            (a.into_bytes_channel().unwrap().0, b.into_bytes_channel().unwrap().1),
        );
        let (a, b) = pair(&listener);
        common::typed_row(&mut g, size, (a.into_sender().unwrap(), b.into_receiver().unwrap()));
    }
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
