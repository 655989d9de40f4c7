//! The `tokio` feature across real processes: async senders that must wait for room
//! (a full pipe, FIFO, Unix socket, TCP socket and shm ring, drained by a child process
//! only once told to), a reader killed while the sender waits (`Disconnected`, never a
//! hang), and an awaited shm receiver whose producer is killed.
//!
//! Every child runs under the support watchdog; the parent's awaits run under a tokio
//! timeout of the same length, so a lost wake-up fails the test instead of hanging it.
#![cfg(feature = "tokio")]

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use interproc::ipc::channel::shm::{RingNotifier, ShmRing};
use interproc::ipc::channel::{BytesReceiver, BytesSender, StreamSink, StreamSource};
use interproc::ipc::fifo::Fifo;
use interproc::ipc::pipe::{self, PipeReader, PipeWriter};
use interproc::ipc::reactor::tokio::{AsyncBytesReceiver, AsyncBytesSender};
use interproc::ipc::socket::UnixStream;
use interproc::ipc::tcp::{TcpListener, TcpStream};
use interproc::ipc::Error;

/// Payload bytes per message on streams: a few per pipe buffer, so frames straddle it.
const STREAM_MSG: usize = 20_000;
/// Payload bytes per message on the ring.
const RING_MSG: usize = 200;
/// The ring's capacity: a handful of messages.
const RING_CAP: usize = 4096;
/// Messages sent by `send().await` after the transport was found full.
const EXTRA: u64 = 40;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().unwrap()
}

fn msg(seq: u64, len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    for (k, b) in m[8..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(k as u8);
    }
    m
}

#[derive(Clone, Copy, Debug)]
enum Wire {
    Pipe,
    Fifo,
    Unix,
    Tcp,
    Shm,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Pipe => "pipe",
            Wire::Fifo => "fifo",
            Wire::Unix => "unix",
            Wire::Tcp => "tcp",
            Wire::Shm => "shm",
        }
    }

    fn msg_len(self) -> usize {
        match self {
            Wire::Shm => RING_MSG,
            _ => STREAM_MSG,
        }
    }
}

/// The fds a child reads from, and the parent's sender, made once the child's pid is
/// known (a ring's sender names it as its expected peer).
struct Made {
    fds: Vec<OwnedFd>,
    finish: Box<dyn FnOnce(u32) -> BytesSender>,
    _dir: Option<support::TempDir>,
}

fn make(wire: Wire) -> Made {
    let stream = |fd: OwnedFd, w: OwnedFd| Made {
        fds: vec![fd],
        finish: Box::new(move |_| BytesSender::new(Box::new(StreamSink::new(w).unwrap()))),
        _dir: None,
    };
    match wire {
        Wire::Pipe => {
            let (r, w) = pipe::pipe().unwrap();
            stream(r.into(), w.into())
        }
        Wire::Fifo => {
            let dir = support::TempDir::new();
            let fifo = Fifo::create(dir.join("f")).unwrap();
            let r = fifo.open_reader_nonblocking().unwrap();
            let w = fifo.open_writer().unwrap();
            let mut m = stream(r.into(), w.into());
            drop(fifo);
            m._dir = Some(dir);
            m
        }
        Wire::Unix => {
            let (a, b) = UnixStream::pair().unwrap();
            stream(b.into(), a.into())
        }
        Wire::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let s = l.accept().unwrap();
            stream(OwnedFd::from(s.into_std()), OwnedFd::from(c.into_std()))
        }
        Wire::Shm => {
            let ring = ShmRing::anonymous_with_notifier(RING_CAP).unwrap();
            let n = ring.notifier().unwrap();
            let fds = vec![
                ring.as_fd().try_clone_to_owned().unwrap(),
                n.data_fd().try_clone_to_owned().unwrap(),
                n.room_fd().try_clone_to_owned().unwrap(),
            ];
            Made {
                fds,
                finish: Box::new(move |pid| {
                    let mut sink = ring.sink().unwrap();
                    sink.expect_peer(pid).unwrap();
                    BytesSender::new(Box::new(sink))
                }),
                _dir: None,
            }
        }
    }
}

/// The child's receiver, over the fds `make` gave it.
fn child_receiver(wire: Wire, fds: &mut Vec<OwnedFd>) -> BytesReceiver {
    match wire {
        Wire::Shm => {
            let (seg, data, room) = (fds.remove(0), fds.remove(0), fds.remove(0));
            let ring =
                ShmRing::from_fd_with_notifier(seg, RingNotifier::from_fds(data, room)).unwrap();
            BytesReceiver::new(Box::new(ring.source().unwrap()))
        }
        _ => BytesReceiver::new(Box::new(StreamSource::new(fds.remove(0)).unwrap())),
    }
}

fn wire_named(name: &str) -> Wire {
    [Wire::Pipe, Wire::Fifo, Wire::Unix, Wire::Tcp, Wire::Shm]
        .into_iter()
        .find(|w| w.name() == name)
        .unwrap_or_else(|| panic!("unknown wire {name}"))
}

#[test]
fn child_entry() {
    support::child_entry(|role, arg| {
        let mut fds = support::inherited_fds();
        match role {
            // fds: the transport's, then the "go" pipe's read end, then the report pipe's
            // write end. Attach, wait for "go", read and check every message until the
            // sender is gone, report how many.
            "reader" => {
                let wire = wire_named(arg);
                let mut rx = child_receiver(wire, &mut fds);
                let mut go = PipeReader::from(fds.remove(0));
                let mut report = PipeWriter::from(fds.remove(0));
                let mut b = [0u8; 1];
                assert_eq!(go.read(&mut b).unwrap(), 1, "the parent hung up before \"go\"");
                let mut n = 0u64;
                loop {
                    match rx.recv() {
                        Ok(m) => {
                            assert_eq!(m, msg(n, wire.msg_len()), "message {n}");
                            n += 1;
                        }
                        Err(Error::Disconnected) => break,
                        Err(e) => panic!("receiving message {n}: {e}"),
                    }
                }
                report.write_all(&n.to_le_bytes()).unwrap();
            }
            // fds: a notifier ring's three. Send `arg` messages, then die by SIGKILL.
            "shm-producer-dies" => {
                let (seg, data, room) = (fds.remove(0), fds.remove(0), fds.remove(0));
                let ring = ShmRing::from_fd_with_notifier(seg, RingNotifier::from_fds(data, room))
                    .unwrap();
                let mut tx = BytesSender::new(ring.sink().unwrap());
                let n: u64 = arg.parse().unwrap();
                for i in 0..n {
                    tx.send(&msg(i, RING_MSG)).unwrap();
                }
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Fills `wire` with `try_send` until `Full` while the child does not read, then sends
/// `EXTRA` more with `send().await` from a task, which must wait. Then either tells the
/// child to read (`kill` false: every message arrives, in order) or kills it (`kill`
/// true: the waiting send ends with `Disconnected`).
fn sender_waits_for_room(wire: Wire, kill: bool) {
    let made = make(wire);
    let (go_r, mut go_w) = pipe::pipe().unwrap();
    let (mut rep_r, rep_w) = pipe::pipe().unwrap();
    let mut fds: Vec<BorrowedFd<'_>> = made.fds.iter().map(|f| f.as_fd()).collect();
    fds.push(go_r.as_fd());
    fds.push(rep_w.as_fd());
    let mut child = support::spawn("child_entry", "reader", wire.name(), &fds);
    drop(fds);
    let Made { fds, finish, _dir } = made;
    drop((fds, go_r, rep_w));
    let tx = finish(child.pid());
    let len = wire.msg_len();

    let rt = runtime();
    let outcome = rt.block_on(async {
        tokio::time::timeout(support::WATCHDOG, async {
            let mut tx = AsyncBytesSender::new(tx).unwrap();
            let mut sent = 0u64;
            loop {
                match tx.try_send(&msg(sent, len)) {
                    Ok(()) => sent += 1,
                    Err(Error::Full) => break,
                    Err(e) => panic!("{wire:?}: filling: {e}"),
                }
            }
            assert!(sent > 0, "{wire:?}: nothing fitted");
            let task = tokio::spawn(async move {
                for _ in 0..EXTRA {
                    tx.send(&msg(sent, len)).await?;
                    sent += 1;
                }
                Ok::<_, Error>((tx, sent))
            });
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(!task.is_finished(), "{wire:?}: a send into a full transport did not wait");
            if kill {
                child.kill();
            } else {
                go_w.write_all(b"g").unwrap();
            }
            task.await.expect("sender task")
        })
        .await
    });
    let outcome = outcome.unwrap_or_else(|_| panic!("{wire:?}: watchdog: the sender hung"));
    if kill {
        match outcome {
            Err(Error::Disconnected) => {}
            Err(e) => panic!("{wire:?}: a dead reader gave {e}, not Disconnected"),
            Ok((_, n)) => panic!("{wire:?}: {n} messages sent to a dead reader"),
        }
        assert!(support::was_killed(&child.wait()));
    } else {
        let (tx, sent) = outcome.unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        drop(rt);
        drop(tx);
        let mut n = [0u8; 8];
        rep_r.read_exact(&mut n).unwrap();
        assert_eq!(u64::from_le_bytes(n), sent, "{wire:?}: the child got another count");
        child.wait_success();
    }
}

#[test]
fn a_full_pipe_makes_the_async_sender_wait() {
    sender_waits_for_room(Wire::Pipe, false);
}

#[test]
fn a_full_fifo_makes_the_async_sender_wait() {
    sender_waits_for_room(Wire::Fifo, false);
}

#[test]
fn a_full_unix_socket_makes_the_async_sender_wait() {
    sender_waits_for_room(Wire::Unix, false);
}

#[test]
fn a_full_tcp_socket_makes_the_async_sender_wait() {
    sender_waits_for_room(Wire::Tcp, false);
}

#[test]
fn a_full_shm_ring_makes_the_async_sender_wait() {
    sender_waits_for_room(Wire::Shm, false);
}

#[test]
fn a_pipe_reader_killed_while_the_sender_waits_is_disconnected() {
    sender_waits_for_room(Wire::Pipe, true);
}

#[test]
fn a_fifo_reader_killed_while_the_sender_waits_is_disconnected() {
    sender_waits_for_room(Wire::Fifo, true);
}

#[test]
fn a_tcp_reader_killed_while_the_sender_waits_is_disconnected() {
    sender_waits_for_room(Wire::Tcp, true);
}

#[test]
fn a_unix_reader_killed_while_the_sender_waits_is_disconnected() {
    sender_waits_for_room(Wire::Unix, true);
}

#[test]
fn a_shm_reader_killed_while_the_sender_waits_is_disconnected() {
    sender_waits_for_room(Wire::Shm, true);
}

/// A producer process killed after sending: the awaiting task gets every message it
/// committed, then `Disconnected` (its pidfd is in the ring's notifier set).
#[test]
fn a_killed_shm_producer_wakes_the_awaiting_receiver() {
    const N: u64 = 100;
    let ring = ShmRing::anonymous_with_notifier(64 << 10).unwrap();
    let mut src = ring.source().unwrap();
    let n = ring.notifier().unwrap();
    let fds = [ring.as_fd(), n.data_fd(), n.room_fd()];
    let child = support::spawn("child_entry", "shm-producer-dies", &N.to_string(), &fds);
    src.expect_peer(child.pid()).unwrap();
    let rx = BytesReceiver::new(src);
    let rt = runtime();
    let got = rt.block_on(async {
        tokio::time::timeout(support::WATCHDOG, async {
            let mut rx = AsyncBytesReceiver::new(rx).unwrap();
            let mut got = 0u64;
            loop {
                match rx.recv().await {
                    Ok(m) => {
                        assert_eq!(m, msg(got, RING_MSG));
                        got += 1;
                    }
                    Err(Error::Disconnected) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .expect("watchdog: the receiver hung after its producer died")
    });
    assert_eq!(got, N);
    assert!(support::was_killed(&child.wait()));
}
