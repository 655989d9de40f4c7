//! The `tokio` feature: receivers awaited through AsyncFd.
#![cfg(feature = "tokio")]

use std::sync::Arc;

use interproc_ipc::channel::BytesReceiver;
use interproc_ipc::msgq::{MessageQueue, MsgqSource, Select};
use interproc_ipc::pipe;
use interproc_ipc::reactor::tokio::{AsyncBytesReceiver, AsyncReceiver};
use interproc_ipc::Error;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap()
}

/// Many frames that arrive before the first await all come out: readiness is cleared
/// only after a read hit EAGAIN, so tokio's edge-triggered epoll loses none.
#[test]
fn frames_buffered_together_all_arrive() {
    let rt = runtime();
    let (mut tx, rx) = pipe::channel::<u32>().unwrap();
    for i in 0..500 {
        tx.send(i).unwrap();
    }
    drop(tx);
    let got = rt.block_on(async move {
        let mut rx = AsyncReceiver::new(rx).unwrap();
        let mut got = Vec::new();
        loop {
            match rx.recv().await {
                Ok(v) => got.push(v),
                Err(Error::Disconnected) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

/// A send from another thread, after the task started waiting, wakes it.
#[test]
fn a_later_send_wakes_the_task() {
    let rt = runtime();
    let (mut tx, rx) = pipe::bytes_channel().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx.send(b"late").unwrap();
    });
    let got = rt.block_on(async move { AsyncBytesReceiver::new(rx).unwrap().recv().await });
    assert_eq!(got.unwrap(), b"late");
    t.join().unwrap();
}

/// A transport without an fd is refused with a typed error, not a panic.
#[test]
fn a_queue_without_an_fd_is_unsupported() {
    let rt = runtime();
    let q = Arc::new(MessageQueue::private().unwrap());
    let rx = BytesReceiver::new(MsgqSource::new(q, Select::Any).unwrap());
    let r = rt.block_on(async move { AsyncBytesReceiver::new(rx).map(|_| ()) });
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
}

/// A shared-memory ring with notifiers is awaited through its notifier fd: every message
/// from a thread that sends faster than the task reads, then `Disconnected`.
#[test]
fn a_shm_ring_with_notifiers_is_awaited() {
    use interproc_ipc::channel::shm::ShmRing;
    let rt = runtime();
    let ring = ShmRing::anonymous_with_notifier(4096).unwrap();
    let rx = ring.receiver::<u32>().unwrap();
    let mut tx = ring.sender::<u32>().unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..5000 {
            tx.send(i).unwrap();
        }
    });
    let got = rt.block_on(async move {
        let mut rx = AsyncReceiver::new(rx).unwrap();
        let mut got = Vec::new();
        loop {
            match rx.recv().await {
                Ok(v) => got.push(v),
                Err(Error::Disconnected) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert_eq!(got, (0..5000).collect::<Vec<_>>());
    t.join().unwrap();
}

/// A plain ring (no notifier) has no fd: refused with a typed error.
#[test]
fn a_plain_shm_ring_is_unsupported() {
    let rt = runtime();
    let (_tx, rx) = interproc_ipc::channel::shm::channel::<u32>(4096).unwrap();
    let r = rt.block_on(async move { AsyncReceiver::new(rx).map(|_| ()) });
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
}
