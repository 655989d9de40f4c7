//! The ipc-channel crate between two processes, as a peer to compare interproc with:
//! `IpcSender<Vec<u8>>` (serde) and `IpcBytesSender` (raw bytes), in the shared groups
//! `latency/<size>` and `throughput/<size>` (see `common`).
//!
//! The peer is forked and connects back through an `IpcOneShotServer`, as a separate
//! program would: it sends the bench the sender of a channel it created, and keeps the
//! sender half of the bench's channel.

mod common;

use std::hint::black_box;

use common::{Link, Peer};
use criterion::Criterion;
use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
};

struct Typed(IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>);

impl Link for Typed {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg.to_vec()).expect("send");
    }
    fn recv(&mut self) -> Option<u8> {
        let m = self.1.recv().ok()?;
        Some(black_box(m)[0])
    }
}

struct Bytes(IpcBytesSender, IpcBytesReceiver);

impl Link for Bytes {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg).expect("send");
    }
    fn recv(&mut self) -> Option<u8> {
        let m = self.1.recv().ok()?;
        Some(black_box(m)[0])
    }
}

fn typed_peer(size: usize) -> Peer {
    let (server, name) = IpcOneShotServer::<IpcSender<Vec<u8>>>::new().unwrap();
    let (back_tx, back_rx) = ipc::channel::<Vec<u8>>().unwrap();
    Peer::fork(
        size,
        move || {
            let (tx, rx) = ipc::channel::<Vec<u8>>().unwrap();
            IpcSender::connect(name).unwrap().send(tx).unwrap();
            Box::new(Typed(back_tx, rx))
        },
        move || {
            let (_, to_peer) = server.accept().unwrap();
            Box::new(Typed(to_peer, back_rx))
        },
    )
}

fn bytes_peer(size: usize) -> Peer {
    let (server, name) = IpcOneShotServer::<IpcBytesSender>::new().unwrap();
    let (back_tx, back_rx) = ipc::bytes_channel().unwrap();
    Peer::fork(
        size,
        move || {
            let (tx, rx) = ipc::bytes_channel().unwrap();
            IpcSender::connect(name).unwrap().send(tx).unwrap();
            Box::new(Bytes(back_tx, rx))
        },
        move || {
            let (_, to_peer) = server.accept().unwrap();
            Box::new(Bytes(to_peer, back_rx))
        },
    )
}

fn bench(c: &mut Criterion) {
    for size in common::SIZES {
        common::row_with(c, "ipc-channel/typed", size, typed_peer(size));
        common::row_with(c, "ipc-channel/bytes", size, bytes_peer(size));
    }
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
