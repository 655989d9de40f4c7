//! Pipes: the transport conformance suite across real processes, plus pipe specifics.

mod support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use interproc::ipc::channel::{BytesReceiver, BytesSender, StreamSink, StreamSource};
use interproc::ipc::pipe::{self, PipeReader, PipeWriter};
use support::conformance::{Setup, Transport};

struct Pipe;

impl Transport for Pipe {
    const NAME: &'static str = "pipe";

    fn to_parent() -> Setup<BytesReceiver> {
        let (r, w) = pipe::pipe().unwrap();
        Setup {
            fds: vec![w.into()],
            arg: String::new(),
            finish: Box::new(move |_| BytesReceiver::new(Box::new(StreamSource::new(r).unwrap()))),
        }
    }

    fn to_child() -> Setup<BytesSender> {
        let (r, w) = pipe::pipe().unwrap();
        Setup {
            fds: vec![r.into()],
            arg: String::new(),
            finish: Box::new(move |_| BytesSender::new(Box::new(StreamSink::new(w).unwrap()))),
        }
    }

    fn child_sender(mut fds: Vec<OwnedFd>, _: &str) -> BytesSender {
        let w = PipeWriter::from(fds.remove(0));
        BytesSender::new(Box::new(StreamSink::new(w).unwrap()))
    }

    fn child_receiver(mut fds: Vec<OwnedFd>, _: &str) -> BytesReceiver {
        let r = PipeReader::from(fds.remove(0));
        BytesReceiver::new(Box::new(StreamSource::new(r).unwrap()))
    }
}

conformance!(conformance, Pipe);

#[test]
fn child_entry() {
    support::child_entry(|role, arg| {
        assert!(support::conformance::child_dispatch::<Pipe>(role, arg), "unknown role {role}");
    });
}

#[test]
fn ends_are_cloexec() {
    let (r, w) = pipe::pipe().unwrap();
    for fd in [
        nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETFD).unwrap(),
        nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_GETFD).unwrap(),
    ] {
        assert_ne!(fd & libc::FD_CLOEXEC, 0);
    }
}

#[test]
fn nonblocking_read_would_block() {
    let (mut r, mut w) = pipe::pipe().unwrap();
    assert!(!r.is_nonblocking().unwrap());
    r.set_nonblocking(true).unwrap();
    assert!(r.is_nonblocking().unwrap());
    let mut buf = [0u8; 8];
    assert_eq!(r.read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    w.write_all(b"abc").unwrap();
    assert_eq!(r.read(&mut buf).unwrap(), 3);
    drop(w);
    assert_eq!(r.read(&mut buf).unwrap(), 0, "EOF once the writer is gone");
}

#[test]
fn malformed_frame_is_an_error_on_that_receiver() {
    let (r, mut w) = pipe::pipe().unwrap();
    let mut rx = r.into_receiver::<u32>().unwrap();
    w.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    match rx.recv() {
        Err(interproc::ipc::Error::Malformed { reason }) => {
            assert!(reason.contains("magic"), "{reason}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // The stream cannot be resynchronised: it stays broken.
    assert!(matches!(rx.recv(), Err(interproc::ipc::Error::Malformed { .. })));
}

#[test]
fn truncated_frame_is_reported() {
    let (r, mut w) = pipe::pipe().unwrap();
    let mut rx = r.into_receiver::<Vec<u8>>().unwrap();
    // A header announcing 100 bytes, then only 10, then EOF.
    let mut frame = vec![b'I', b'P', 1, 0];
    frame.extend_from_slice(&100u32.to_le_bytes());
    frame.extend_from_slice(&[0; 10]);
    w.write_all(&frame).unwrap();
    drop(w);
    match rx.recv() {
        Err(interproc::ipc::Error::Truncated { expected: 108, got: 18 }) => {}
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn decode_error_is_reported_and_the_stream_goes_on() {
    let (tx, rx) = pipe::bytes_channel().unwrap();
    let mut tx = tx;
    let mut rx: interproc::ipc::channel::Receiver<String, _> =
        interproc::ipc::channel::Receiver::new(rx.into_inner());
    tx.send(&[0xff, 0xff, 0xff]).unwrap(); // not a postcard string
    tx.send(&[2, b'o', b'k']).unwrap();
    assert!(matches!(rx.recv(), Err(interproc::ipc::Error::Decode(_))));
    assert_eq!(rx.recv().unwrap(), "ok");
}

/// Regression: a sender whose deadline cut a frame short (the rest kept pending) must not
/// block in `drop` while the peer lives but does not read. Dropping never waits.
#[test]
fn dropping_a_sender_with_a_pending_frame_does_not_block() {
    let (tx, rx) = pipe::bytes_channel().unwrap();
    let mut tx = tx;
    let msg = vec![7u8; 10_000]; // over PIPE_BUF: a frame can be cut short
    while tx.try_send(&msg).is_ok() {}
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(tx);
        let _ = done_tx.send(());
    });
    // The receiver is alive and never reads: a blocking flush would wait forever.
    assert!(
        done_rx.recv_timeout(support::WATCHDOG).is_ok(),
        "drop blocked flushing a pending frame to a live peer that does not read"
    );
    drop(rx);
}

/// `flush` with a deadline finishes a cut-short frame once the peer reads.
#[test]
fn flush_finishes_a_pending_frame() {
    use std::time::{Duration, Instant};
    let (tx, rx) = pipe::bytes_channel().unwrap();
    let (mut tx, mut rx) = (tx, rx);
    let big = vec![9u8; 100_000];
    // Fill the pipe so that the big frame is cut short by try_send.
    let mut sent = 0;
    while tx.try_send(&big).is_ok() {
        sent += 1;
    }
    assert!(sent >= 1);
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        while let Ok(m) = rx.recv_timeout(support::WATCHDOG) {
            assert_eq!(m, vec![9u8; 100_000]);
            n += 1;
        }
        n
    });
    tx.flush(Some(Instant::now() + Duration::from_secs(60))).unwrap();
    drop(tx);
    assert_eq!(reader.join().unwrap(), sent, "every accepted frame arrives whole");
}

/// Runs `f` on a thread; fails the test if it has not returned within the watchdog
/// time (a call that should have timed out hung instead).
fn must_return<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(support::WATCHDOG).unwrap_or_else(|_| panic!("{what} hung"))
}

/// The channel leaves its fds in blocking mode, so `send` and `recv` sleep in the kernel
/// (one syscall per message, as a raw loop), yet a call with a deadline never sleeps
/// past it: each of its reads and writes is non-blocking by itself (`RWF_NOWAIT`), so
/// the deadline holds whatever `O_NONBLOCK` says, even when another holder of the open
/// file description flips it.
#[test]
fn deadlines_hold_whatever_o_nonblock_says() {
    use interproc::ipc::Error;
    use std::os::fd::AsFd;
    use std::time::Duration;
    let (r, w) = pipe::pipe().unwrap();
    r.set_nonblocking(true).unwrap();
    w.set_nonblocking(true).unwrap();
    // Second fds on the same open file descriptions, as a forked child would hold.
    let r_dup = PipeReader::from(r.as_fd().try_clone_to_owned().unwrap());
    let w_dup = PipeWriter::from(w.as_fd().try_clone_to_owned().unwrap());
    let (mut tx, mut rx) = (w.into_bytes_sender().unwrap(), r.into_bytes_receiver().unwrap());
    assert!(!r_dup.is_nonblocking().unwrap(), "the receiver's fd is blocking");
    assert!(!w_dup.is_nonblocking().unwrap(), "the sender's fd is blocking");
    let short = Duration::from_millis(20);
    let (mut rx, r_dup) = must_return("an empty receive with a deadline", move || {
        for nonblocking in [false, true, false] {
            r_dup.set_nonblocking(nonblocking).unwrap();
            assert!(matches!(rx.try_recv(), Err(Error::Empty)));
            assert!(matches!(rx.recv_timeout(short), Err(Error::Timeout)));
        }
        (rx, r_dup)
    });
    let (mut tx, w_dup) = must_return("a send into a full pipe with a deadline", move || {
        let msg = vec![1u8; 1000];
        while tx.try_send(&msg).is_ok() {}
        for nonblocking in [false, true, false] {
            w_dup.set_nonblocking(nonblocking).unwrap();
            assert!(matches!(tx.try_send(&msg), Err(Error::Full)));
            assert!(matches!(tx.send_timeout(&msg, short), Err(Error::Timeout)));
        }
        (tx, w_dup)
    });
    // Blocking calls still work, whichever way the flag was left.
    w_dup.set_nonblocking(true).unwrap();
    r_dup.set_nonblocking(true).unwrap();
    let n = must_return("draining", move || {
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        tx.send(b"blocking send").unwrap();
        assert_eq!(rx.recv().unwrap(), b"blocking send");
        n
    });
    assert!(n > 0);
}
