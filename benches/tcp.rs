//! TCP over loopback between two processes: plain `write`/`read` (the raw syscall loop)
//! vs interproc's raw-bytes channel vs its typed channel, in the shared groups
//! `latency/<size>` and `throughput/<size>` (see `common`). Both connections are made
//! before the peer is forked; interproc's TCP streams set `TCP_NODELAY`.

mod common;

use common::{Bytes, RawStream, Typed};
use criterion::Criterion;
use interproc::ipc::tcp::{TcpListener, TcpStream};

fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (c, listener.accept().unwrap())
}

fn bench(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for size in common::SIZES {
        let (a, b) = pair(&listener);
        let ours = RawStream::boxed(a.try_clone().unwrap(), a, size);
        let theirs = RawStream::boxed(b.try_clone().unwrap(), b, size);
        common::row(c, "tcp/raw", size, ours, theirs);

        let (a, b) = pair(&listener);
        let (tx1, rx1) = a.into_bytes_channel().unwrap();
        let (tx2, rx2) = b.into_bytes_channel().unwrap();
        common::row(c, "tcp/bytes", size, Bytes::boxed(tx1, rx1), Bytes::boxed(tx2, rx2));

        let (a, b) = pair(&listener);
        let (tx1, rx1) = a.into_channel().unwrap();
        let (tx2, rx2) = b.into_channel().unwrap();
        common::row(c, "tcp/typed", size, Typed::boxed(tx1, rx1), Typed::boxed(tx2, rx2));
    }
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
