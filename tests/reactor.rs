//! The reactor: one conformance suite run against every backend (epoll, poll, select),
//! then backend specifics (select's FD_SETSIZE, epoll's edge-triggered draining of a
//! channel).
//!
//! Each scenario is a function of the [`Backend`]; [`reactor_conformance!`] makes a
//! `#[test]` of each for one backend. A mode the backend cannot honour (edge-triggered
//! or exclusive on poll/select) must be refused with `Error::Unsupported`: the scenario
//! checks the refusal there, and the behaviour on epoll. Scenarios that cross a process
//! boundary spawn this test binary as a child (see `support`), under the watchdog.
//!
//! No test asserts how long anything took: "nothing is ready" is asserted as
//! `Err(Timeout)` from a short wait, and every wait for an expected event is bounded
//! by [`LONG`], so a missing event fails the test instead of hanging it.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use interproc::ipc::channel::shm::{RingNotifier, ShmRing};
use interproc::ipc::channel::{BytesReceiver, BytesSender, StreamSink, StreamSource};
use interproc::ipc::fifo::{self, Fifo};
use interproc::ipc::pipe::{self, PipeReader, PipeWriter};
use interproc::ipc::reactor::{
    raise_fd_limit, Backend, Event, Events, Interest, Mode, Poller, Signal, Signals, Timer, Token,
    Trigger, Waker,
};
use interproc::ipc::socket::{UnixAddr, UnixListener, UnixStream};
use interproc::ipc::Error;

use support::conformance::{check_msg, make_msg};

/// How long a wait for an event that must come may take before the test fails.
const LONG: Duration = Duration::from_secs(20);
/// How long a wait for an event that must *not* come lasts.
const SHORT: Duration = Duration::from_millis(50);

fn events(p: &mut Poller, cap: usize) -> Vec<Event> {
    let mut ev = Events::with_capacity(cap);
    p.wait(&mut ev, Some(LONG))
        .unwrap_or_else(|e| panic!("{}: expected an event: {e}", p.backend()));
    ev.iter().copied().collect()
}

fn assert_idle(p: &mut Poller) {
    let mut ev = Events::with_capacity(8);
    match p.wait(&mut ev, Some(SHORT)) {
        Err(Error::Timeout) => {}
        r => panic!("{}: expected Timeout, got {r:?} with {:?}", p.backend(), ev),
    }
}

fn tokens(ev: &[Event]) -> Vec<Token> {
    let mut t: Vec<_> = ev.iter().map(|e| e.token()).collect();
    t.sort();
    t
}

fn nonblocking_pipe() -> (PipeReader, PipeWriter) {
    let (r, w) = pipe::pipe().unwrap();
    r.set_nonblocking(true).unwrap();
    w.set_nonblocking(true).unwrap();
    (r, w)
}

fn is_unsupported<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Unsupported { .. }))
}

// ---- the scenarios ----

/// A wait with nothing ready returns `Timeout`; a zero timeout checks without blocking.
pub fn idle_wait_times_out(b: Backend) {
    let (r, _w) = nonblocking_pipe();
    let mut p = Poller::new(b).unwrap();
    p.register(&r, Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    let mut ev = Events::with_capacity(1);
    assert!(matches!(p.wait(&mut ev, Some(Duration::ZERO)), Err(Error::Timeout)));
    assert!(ev.is_empty());
}

/// Data makes a read end readable, reported with its token; a pipe with room makes the
/// write end writable.
pub fn readiness_with_tokens(b: Backend) {
    let (r, mut w) = nonblocking_pipe();
    let mut p = Poller::new(b).unwrap();
    p.register(&r, Token(10), Interest::READABLE, Mode::LEVEL).unwrap();
    p.register(&w, Token(20), Interest::WRITABLE, Mode::LEVEL).unwrap();
    assert_eq!(p.len(), 2);
    let ev = events(&mut p, 8);
    assert_eq!(tokens(&ev), [Token(20)]);
    assert!(ev[0].is_writable() && !ev[0].is_readable());
    w.write_all(b"x").unwrap();
    let ev = events(&mut p, 8);
    assert_eq!(tokens(&ev), [Token(10), Token(20)]);
    let rd = ev.iter().find(|e| e.token() == Token(10)).unwrap();
    assert!(rd.is_readable() && !rd.is_writable());
}

/// Level-triggered: a partly read fd is reported again on every wait until drained.
pub fn level_triggered_repeats(b: Backend) {
    let (mut r, mut w) = nonblocking_pipe();
    let mut p = Poller::new(b).unwrap();
    p.register(&r, Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
    w.write_all(&[7u8; 3]).unwrap();
    let mut one = [0u8; 1];
    for _ in 0..3 {
        assert_eq!(tokens(&events(&mut p, 4)), [Token(1)]);
        r.read_exact(&mut one).unwrap();
    }
    assert_idle(&mut p);
}

/// Edge-triggered: one event per arrival, none for bytes left unread. poll and select
/// refuse the mode.
pub fn edge_triggered(b: Backend) {
    let (mut r, mut w) = nonblocking_pipe();
    let mut p = Poller::new(b).unwrap();
    let res = p.register(&r, Token(1), Interest::READABLE, Mode::EDGE);
    if !b.supports_edge() {
        assert!(is_unsupported(res), "{b}: edge-triggered must be refused");
        assert!(p.is_empty(), "a refused registration registers nothing");
        return;
    }
    res.unwrap();
    w.write_all(b"abc").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(1)]);
    let mut one = [0u8; 1];
    r.read_exact(&mut one).unwrap();
    // Two bytes are still there, but nothing new arrived: no event.
    assert_idle(&mut p);
    w.write_all(b"d").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(1)]);
    let mut rest = [0u8; 8];
    assert_eq!(r.read(&mut rest).unwrap(), 3);
    assert_eq!(r.read(&mut rest).map_err(|e| e.kind()), Err(std::io::ErrorKind::WouldBlock));
}

/// Oneshot: one event, then silence although the fd stays ready, until `modify`
/// re-arms it (native on epoll, emulated on poll and select).
pub fn oneshot_until_rearmed(b: Backend) {
    let (r, mut w) = nonblocking_pipe();
    let mut p = Poller::new(b).unwrap();
    p.register(&r, Token(1), Interest::READABLE, Mode::LEVEL.oneshot()).unwrap();
    w.write_all(b"x").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(1)]);
    assert_idle(&mut p);
    assert_idle(&mut p);
    p.modify(&r, Token(2), Interest::READABLE, Mode::LEVEL.oneshot()).unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(2)]);
    assert_idle(&mut p);
    // A disarmed fd is still registered: deregistering it works once.
    p.deregister(&r).unwrap();
    assert!(matches!(p.deregister(&r), Err(Error::NotFound { .. })));
}

/// `modify` changes token and interest; `deregister` stops reports; registering twice,
/// and modifying or deregistering an unknown fd, are typed errors.
pub fn modify_and_deregister(b: Backend) {
    let (r, mut w) = nonblocking_pipe();
    let mut p = Poller::new(b).unwrap();
    assert!(matches!(
        p.modify(&r, Token(1), Interest::READABLE, Mode::LEVEL),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(p.deregister(&r), Err(Error::NotFound { .. })));
    p.register(&w, Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
    assert!(matches!(
        p.register(&w, Token(1), Interest::READABLE, Mode::LEVEL),
        Err(Error::AlreadyExists { .. })
    ));
    // A write end is never readable.
    assert_idle(&mut p);
    p.modify(&w, Token(5), Interest::WRITABLE, Mode::LEVEL).unwrap();
    let ev = events(&mut p, 4);
    assert_eq!(tokens(&ev), [Token(5)]);
    assert!(ev[0].is_writable());
    p.deregister(&w).unwrap();
    p.register(&r, Token(6), Interest::BOTH, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    w.write_all(b"x").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(6)]);
    p.deregister(&r).unwrap();
    assert!(p.is_empty());
    // Nothing registered: a wait times out although data is waiting.
    assert_idle(&mut p);
}

/// One ready fd among 200 idle ones is reported alone, with its token.
///
/// eventfds (one fd each) keep this test's fd numbers low: the select variant runs in
/// parallel with the other tests and needs every fd below FD_SETSIZE.
pub fn one_ready_among_many(b: Backend) {
    let idle: Vec<Waker> = (0..200).map(|_| Waker::new().unwrap()).collect();
    let mut p = Poller::new(b).unwrap();
    for (i, w) in idle.iter().enumerate() {
        p.register(w, Token(i), Interest::READABLE, Mode::LEVEL).unwrap();
    }
    assert_idle(&mut p);
    idle[117].wake().unwrap();
    let ev = events(&mut p, 16);
    assert_eq!(tokens(&ev), [Token(117)]);
    assert!(ev[0].is_readable());
    assert!(idle[117].reset().unwrap());
    assert_idle(&mut p);
}

/// A wait reports at most `capacity` events; the others stay ready for the next wait.
pub fn capacity_bounds_a_wait(b: Backend) {
    let pipes: Vec<_> = (0..5).map(|_| nonblocking_pipe()).collect();
    let mut p = Poller::new(b).unwrap();
    for (i, (r, w)) in pipes.iter().enumerate() {
        p.register(r, Token(i), Interest::READABLE, Mode::LEVEL.oneshot()).unwrap();
        w.try_clone_fd().write_all(b"x").unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let ev = events(&mut p, 2);
        assert!(ev.len() <= 2, "{b}: {} events in a buffer of 2", ev.len());
        seen.extend(tokens(&ev));
    }
    seen.sort();
    assert_eq!(seen, (0..5).map(Token).collect::<Vec<_>>());
    assert_idle(&mut p);
}

/// A waker woken from another thread wakes a blocked wait; wakes coalesce; reset clears.
pub fn waker_from_another_thread(b: Backend) {
    let waker = Arc::new(Waker::new().unwrap());
    let mut p = Poller::new(b).unwrap();
    p.register(&*waker, Token(99), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    let w = waker.clone();
    let t = std::thread::spawn(move || {
        w.wake().unwrap();
        w.wake().unwrap();
    });
    assert_eq!(tokens(&events(&mut p, 4)), [Token(99)]);
    t.join().unwrap();
    assert!(waker.reset().unwrap());
    assert!(!waker.reset().unwrap());
    assert_idle(&mut p);
}

/// A one-shot timer fires once; an interval timer keeps firing; a cancelled one is quiet.
pub fn timers(b: Backend) {
    let t = Timer::new().unwrap();
    let mut p = Poller::new(b).unwrap();
    p.register(&t, Token(3), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_eq!(t.expirations().unwrap(), 0);
    assert_idle(&mut p);
    t.set_after(Duration::from_millis(1)).unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(3)]);
    assert_eq!(t.expirations().unwrap(), 1);
    assert_idle(&mut p);
    t.set_interval(Duration::from_millis(1)).unwrap();
    let mut total = 0;
    while total < 3 {
        events(&mut p, 4);
        total += t.expirations().unwrap();
    }
    t.cancel().unwrap();
    let _ = t.expirations().unwrap();
    assert_idle(&mut p);
    assert!(matches!(t.set_interval(Duration::ZERO), Err(Error::Os { .. })));
}

/// A signal raised at this thread, blocked by `Signals::new`, arrives as an event.
pub fn signals(b: Backend) {
    // Thread-directed (raise), so it stays with this thread whatever the test harness's
    // other threads block.
    let s = Signals::new(&[Signal::SIGUSR2]).unwrap();
    let mut p = Poller::new(b).unwrap();
    p.register(&s, Token(4), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    assert_eq!(s.next_signal().unwrap(), None);
    nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(4)]);
    assert_eq!(s.next_signal().unwrap(), Some(Signal::SIGUSR2));
    assert_eq!(s.next_signal().unwrap(), None);
    assert_idle(&mut p);
}

/// Exclusive wake-up: epoll honours it (and refuses it with oneshot or in `modify`, as
/// epoll_ctl(2) does); poll and select refuse it.
pub fn exclusive(b: Backend) {
    let (r, mut w) = nonblocking_pipe();
    let mut p = Poller::new(b).unwrap();
    if !b.supports_exclusive() {
        assert!(is_unsupported(p.register(
            &r,
            Token(1),
            Interest::READABLE,
            Mode::LEVEL.exclusive()
        )));
        assert!(p.is_empty());
        return;
    }
    assert!(is_unsupported(p.register(
        &r,
        Token(1),
        Interest::READABLE,
        Mode::LEVEL.exclusive().oneshot()
    )));
    // Two pollers (as two worker processes would have) share the fd exclusively.
    let mut q = Poller::new(b).unwrap();
    p.register(&r, Token(1), Interest::READABLE, Mode::LEVEL.exclusive()).unwrap();
    q.register(&r, Token(2), Interest::READABLE, Mode::LEVEL.exclusive()).unwrap();
    assert!(is_unsupported(p.modify(&r, Token(1), Interest::READABLE, Mode::LEVEL.exclusive())));
    w.write_all(b"x").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(1)]);
    assert_eq!(tokens(&events(&mut q, 4)), [Token(2)]);
}

/// A child process writes into a pipe and is then killed: the parent sees the data,
/// then the end of the stream (a hang-up, or readable with EOF on select).
pub fn child_writes_then_is_killed(b: Backend) {
    let (mut r, w) = nonblocking_pipe();
    let child = support::spawn("child_entry", "write_then_sleep", "", &[w.as_fd()]);
    drop(w);
    let mut p = Poller::new(b).unwrap();
    p.register(&r, Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
    let ev = events(&mut p, 4);
    assert!(ev[0].is_readable());
    let mut buf = [0u8; 5];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_idle(&mut p);
    assert!(support::was_killed(&child.kill_and_wait()));
    let ev = events(&mut p, 4);
    assert!(ev[0].is_hangup() || ev[0].is_readable(), "{b}: {ev:?}");
    assert_eq!(r.read(&mut buf).unwrap(), 0, "EOF after the writer died");
}

/// A listening Unix socket is readable when a child connects; the accepted stream is
/// readable when the child's frames arrive, and the receiver drains them all.
pub fn unix_listener_and_stream_from_child(b: Backend) {
    let dir = support::TempDir::new();
    let addr = UnixAddr::path(dir.join("s.sock")).unwrap();
    let listener = UnixListener::bind(&addr).unwrap();
    let mut p = Poller::new(b).unwrap();
    p.register(&listener, Token(0), Interest::READABLE, Mode::LEVEL).unwrap();
    let child = support::spawn("child_entry", "connect_and_send", &addr_arg(&dir), &[]);
    assert_eq!(tokens(&events(&mut p, 4)), [Token(0)]);
    let conn = listener.try_accept().unwrap().expect("a pending connection");
    let mut rx = BytesReceiver::new(StreamSource::new(conn).unwrap());
    p.register(rx.fd().unwrap(), Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
    let mut got = Vec::new();
    let mut ended = false;
    while !ended {
        let ev = events(&mut p, 4);
        assert_eq!(tokens(&ev), [Token(1)]);
        loop {
            match rx.try_recv() {
                Ok(m) => got.push(m),
                Err(Error::Empty) => break,
                Err(Error::Disconnected) => {
                    ended = true;
                    break;
                }
                Err(e) => panic!("{b}: {e}"),
            }
        }
    }
    assert_eq!(got, (0..5u8).map(|i| vec![i; 100 * i as usize + 1]).collect::<Vec<_>>());
    p.deregister(rx.fd().unwrap()).unwrap();
    child.wait_success();
}

/// A FIFO read end (opened non-blocking before any writer) is readable when a child
/// opens the FIFO and writes.
pub fn fifo_from_child(b: Backend) {
    let dir = support::TempDir::new();
    let f = Fifo::create(dir.join("f")).unwrap();
    let mut r = f.open_reader_nonblocking().unwrap();
    let mut p = Poller::new(b).unwrap();
    p.register(&r, Token(8), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    let child = support::spawn("child_entry", "fifo_write", f.path().to_str().unwrap(), &[]);
    assert_eq!(tokens(&events(&mut p, 4)), [Token(8)]);
    child.wait_success();
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "through the fifo");
}

/// The other socket kinds register like any fd: a TCP listener is readable with a
/// pending connection, a TCP stream whose peer closed reports a hang-up (readable EOF
/// on select), and a Unix seqpacket or datagram socket is readable while a packet waits.
pub fn tcp_seqpacket_and_datagram(b: Backend) {
    use interproc::ipc::socket::{UnixDatagram, UnixSeqpacket};
    use interproc::ipc::tcp::{TcpListener, TcpStream};
    let mut p = Poller::new(b).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    p.register(&listener, Token(0), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(0)]);
    let server = listener.try_accept().unwrap().expect("a pending connection");
    p.deregister(&listener).unwrap();
    p.register(&server, Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    drop(client);
    let ev = events(&mut p, 4);
    assert_eq!(tokens(&ev), [Token(1)]);
    assert!(ev[0].is_hangup() || ev[0].is_readable(), "{b}: {ev:?}");
    p.deregister(&server).unwrap();

    let (a, z) = UnixSeqpacket::pair().unwrap();
    p.register(&z, Token(2), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    a.send(b"packet").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(2)]);
    let mut buf = [0u8; 16];
    assert_eq!(z.recv(&mut buf).unwrap(), 6);
    assert_idle(&mut p);
    p.deregister(&z).unwrap();

    let (d1, d2) = UnixDatagram::pair().unwrap();
    p.register(&d2, Token(3), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    d1.send(b"dgram").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(3)]);
    assert_eq!(d2.recv(&mut buf).unwrap(), 5);
    assert_idle(&mut p);
}

fn addr_arg(dir: &support::TempDir) -> String {
    dir.join("s.sock").to_str().unwrap().to_string()
}

/// A pipe write end's second handle, for tests that write through a shared reference.
trait CloneFd {
    fn try_clone_fd(&self) -> PipeWriter;
}

impl CloneFd for PipeWriter {
    fn try_clone_fd(&self) -> PipeWriter {
        PipeWriter::from(self.as_fd().try_clone_to_owned().unwrap())
    }
}

// ---- the shm ring's notifier in the event loop ----

/// Message `seq` of the ring scenarios: 8 bytes to ~3 KiB.
fn ring_msg_len(seq: u64) -> usize {
    8 + (seq as usize * 977) % 3000
}

/// The mode the ring scenarios register with: edge-triggered where the backend has it
/// (the stricter test of the drain-to-empty rule), level elsewhere.
fn ring_mode(b: Backend) -> Mode {
    if b.supports_edge() {
        Mode::EDGE
    } else {
        Mode::LEVEL
    }
}

/// A 16 KiB notifier ring and the fds a child needs to attach to it: segment, data, room.
fn notifier_ring() -> ShmRing {
    ShmRing::anonymous_with_notifier(16 << 10).unwrap()
}

fn ring_fds(ring: &ShmRing) -> [std::os::fd::BorrowedFd<'_>; 3] {
    let n = ring.notifier().unwrap();
    [ring.as_fd(), n.data_fd(), n.room_fd()]
}

fn notifier_ring_from(fds: Vec<OwnedFd>) -> ShmRing {
    let [seg, data, room]: [OwnedFd; 3] = fds.try_into().unwrap();
    ShmRing::from_fd_with_notifier(seg, RingNotifier::from_fds(data, room)).unwrap()
}

/// One process multiplexes a shm ring (through its notifier) and a pipe, each fed by a
/// child process: every message arrives, in order, once, then each source reports
/// `Disconnected`. The reader drains each source to `Empty` on every event.
fn shm_ring_and_pipe_from_two_processes(b: Backend) {
    const N: u64 = 2000;
    let ring = notifier_ring();
    let mut source = ring.source().unwrap();
    let (r, w) = pipe::pipe().unwrap();
    let pipe_rx: BytesReceiver = BytesReceiver::new(Box::new(StreamSource::new(r).unwrap()));
    let ring_child = support::spawn("child_entry", "ring_send", &N.to_string(), &ring_fds(&ring));
    let pipe_child = support::spawn("child_entry", "pipe_send", &N.to_string(), &[w.as_fd()]);
    drop(w);
    // Its death before it attaches is then `Disconnected` too, not a wait for ever.
    source.expect_peer(ring_child.pid()).unwrap();
    let ring_rx: BytesReceiver = BytesReceiver::new(Box::new(source));
    let mut rxs = [ring_rx, pipe_rx];
    let mut p = Poller::new(b).unwrap();
    for (i, rx) in rxs.iter().enumerate() {
        p.register(rx.fd().unwrap(), Token(i), Interest::READABLE, ring_mode(b)).unwrap();
    }
    let mut next = [0u64; 2];
    let mut open = [true; 2];
    while open.iter().any(|&o| o) {
        for ev in events(&mut p, 4) {
            let i = ev.token().0;
            let rx = &mut rxs[i];
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        assert_eq!(check_msg(&m), next[i], "{b}: source {i}: order");
                        assert_eq!(m.len(), ring_msg_len(next[i]));
                        next[i] += 1;
                    }
                    Err(Error::Empty) => break,
                    Err(Error::Disconnected) => {
                        p.deregister(rx.fd().unwrap()).unwrap();
                        open[i] = false;
                        break;
                    }
                    Err(e) => panic!("{b}: source {i}: {e}"),
                }
            }
        }
    }
    assert_eq!(next, [N, N], "{b}: every message from both processes");
    ring_child.wait_success();
    pipe_child.wait_success();
}

/// A producer SIGKILLed while it streams: the event-loop consumer gets what it committed,
/// in order, then `Disconnected` (the notifier set watches the producer's pidfd), never a
/// hang: every wait is bounded, and a missing event fails the test.
fn shm_ring_producer_killed_mid_stream(b: Backend) {
    let ring = notifier_ring();
    let mut source = ring.source().unwrap();
    let mut child = support::spawn("child_entry", "ring_stream_forever", "", &ring_fds(&ring));
    source.expect_peer(child.pid()).unwrap();
    let mut rx = BytesReceiver::new(source);
    let mut p = Poller::new(b).unwrap();
    p.register(rx.fd().unwrap(), Token(0), Interest::READABLE, ring_mode(b)).unwrap();
    let mut got = 0u64;
    let mut killed = None;
    loop {
        events(&mut p, 4);
        let disconnected = loop {
            match rx.try_recv() {
                Ok(m) => {
                    assert_eq!(check_msg(&m), got, "{b}: a gap or a duplicate");
                    assert_eq!(m.len(), ring_msg_len(got), "{b}: a partial message");
                    got += 1;
                }
                Err(Error::Empty) => break false,
                Err(Error::Disconnected) => break true,
                Err(e) => panic!("{b}: {e}"),
            }
        };
        if disconnected {
            break;
        }
        if got >= 300 && killed.is_none() {
            child.kill();
            killed = Some(());
        }
    }
    assert!(killed.is_some(), "{b}: Disconnected before the kill, after {got} messages");
    let st = child.wait();
    assert!(support::was_killed(&st), "{b}: {st:?}");
}

/// Back-pressure in the event loop: the sender finds the ring full (`Full`), waits for its
/// notifier (room) in the poller, and sends every message to a slow child consumer.
fn shm_ring_sender_waits_for_room_in_the_loop(b: Backend) {
    const N: u64 = 1000;
    let ring = notifier_ring();
    let mut tx = BytesSender::new(ring.sink().unwrap());
    let child = support::spawn("child_entry", "ring_recv", &N.to_string(), &ring_fds(&ring));
    let mut p = Poller::new(b).unwrap();
    p.register(tx.fd().unwrap(), Token(0), Interest::READABLE, ring_mode(b)).unwrap();
    let mut seq = 0u64;
    let mut fulls = 0u64;
    while seq < N {
        events(&mut p, 4);
        while seq < N {
            match tx.try_send(&make_msg(seq, ring_msg_len(seq))) {
                Ok(()) => seq += 1,
                Err(Error::Full) => {
                    fulls += 1;
                    break;
                }
                Err(e) => panic!("{b}: message {seq}: {e}"),
            }
        }
    }
    assert!(fulls > 0, "{b}: the ring never filled: the test did not test back-pressure");
    drop(tx);
    child.wait_success();
}

/// Instantiates every scenario for one backend, as `#[test]`s in module `$m`.
macro_rules! reactor_conformance {
    ($m:ident, $b:expr) => {
        mod $m {
            use super::*;
            const B: Backend = $b;
            #[test]
            fn idle_wait_times_out() {
                super::idle_wait_times_out(B)
            }
            #[test]
            fn readiness_with_tokens() {
                super::readiness_with_tokens(B)
            }
            #[test]
            fn level_triggered_repeats() {
                super::level_triggered_repeats(B)
            }
            #[test]
            fn edge_triggered() {
                super::edge_triggered(B)
            }
            #[test]
            fn oneshot_until_rearmed() {
                super::oneshot_until_rearmed(B)
            }
            #[test]
            fn modify_and_deregister() {
                super::modify_and_deregister(B)
            }
            #[test]
            fn one_ready_among_many() {
                super::one_ready_among_many(B)
            }
            #[test]
            fn capacity_bounds_a_wait() {
                super::capacity_bounds_a_wait(B)
            }
            #[test]
            fn waker_from_another_thread() {
                super::waker_from_another_thread(B)
            }
            #[test]
            fn shm_ring_and_pipe_from_two_processes() {
                super::shm_ring_and_pipe_from_two_processes(B)
            }
            #[test]
            fn shm_ring_producer_killed_mid_stream() {
                super::shm_ring_producer_killed_mid_stream(B)
            }
            #[test]
            fn shm_ring_sender_waits_for_room_in_the_loop() {
                super::shm_ring_sender_waits_for_room_in_the_loop(B)
            }
            #[test]
            fn timers() {
                super::timers(B)
            }
            #[test]
            fn signals() {
                super::signals(B)
            }
            #[test]
            fn exclusive() {
                super::exclusive(B)
            }
            #[test]
            fn child_writes_then_is_killed() {
                super::child_writes_then_is_killed(B)
            }
            #[test]
            fn unix_listener_and_stream_from_child() {
                super::unix_listener_and_stream_from_child(B)
            }
            #[test]
            fn fifo_from_child() {
                super::fifo_from_child(B)
            }
            #[test]
            fn tcp_seqpacket_and_datagram() {
                super::tcp_seqpacket_and_datagram(B)
            }
        }
    };
}

reactor_conformance!(epoll, Backend::Epoll);
reactor_conformance!(poll, Backend::Poll);
reactor_conformance!(select, Backend::Select);

// ---- backend specifics ----

/// select refuses a fd at or above FD_SETSIZE with a typed error that names the limit;
/// poll and epoll take the same fd.
#[test]
fn select_refuses_fd_at_or_above_fd_setsize() {
    let (soft, hard) = raise_fd_limit(1100).unwrap();
    assert!(soft >= 1100.min(hard));
    if soft < 1100 {
        eprintln!("skipped: RLIMIT_NOFILE hard limit {hard} < 1100, cannot open fd 1024");
        return;
    }
    let (r, _w) = nonblocking_pipe();
    let raw = nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(1024)).unwrap();
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    let high = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    assert!(high.as_raw_fd() >= 1024);
    let mut s = Poller::new(Backend::Select).unwrap();
    match s.register(&high, Token(1), Interest::READABLE, Mode::LEVEL) {
        Err(e @ Error::FdTooLarge { fd, fd_setsize: 1024 }) => {
            assert_eq!(fd, high.as_raw_fd());
            let msg = e.to_string();
            assert!(msg.contains("FD_SETSIZE") && msg.contains("poll or epoll"), "{msg}");
        }
        r => panic!("expected FdTooLarge, got {r:?}"),
    }
    assert!(s.is_empty());
    assert_eq!(Backend::Select.max_fd(), Some(1023));
    for b in [Backend::Poll, Backend::Epoll] {
        let mut p = Poller::new(b).unwrap();
        p.register(&high, Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
        assert_idle(&mut p);
    }
}

/// Edge-triggered with a channel: one event for several frames that arrived together,
/// and all of them come out of `try_recv` before `Empty` (the receiver buffers them).
#[test]
fn edge_triggered_channel_is_drained_until_empty() {
    let (r, w) = pipe::pipe().unwrap();
    let mut rx = r.into_bytes_receiver().unwrap();
    let mut tx = w.into_bytes_sender().unwrap();
    let mut p = Poller::new(Backend::Epoll).unwrap();
    p.register(rx.fd().unwrap(), Token(1), Interest::READABLE, Mode::EDGE).unwrap();
    for i in 0..10u8 {
        tx.send(&[i; 32]).unwrap();
    }
    assert_eq!(tokens(&events(&mut p, 4)), [Token(1)]);
    let mut got = 0u8;
    loop {
        match rx.try_recv() {
            Ok(m) => {
                assert_eq!(m, [got; 32]);
                got += 1;
            }
            Err(Error::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 10);
    assert_idle(&mut p);
}

#[test]
fn backend_names_round_trip() {
    for b in Backend::ALL {
        assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        assert_eq!(b.to_string(), b.name());
    }
    assert!("kqueue".parse::<Backend>().is_err());
    assert_eq!(Mode::default(), Mode::LEVEL);
    assert_eq!(Mode::EDGE.trigger, Trigger::Edge);
}

#[test]
fn child_entry() {
    support::child_entry(|role, arg| match role {
        // Sends `arg` messages into a notifier ring (fds: segment, data, room), with
        // blocking sends (the futex side of the ring), then exits.
        "ring_send" => {
            let mut tx = notifier_ring_from(support::inherited_fds()).sink().unwrap();
            for seq in 0..arg.parse::<u64>().unwrap() {
                tx.send(&make_msg(seq, ring_msg_len(seq)), None).unwrap();
            }
        }
        // Streams messages into a notifier ring until killed.
        "ring_stream_forever" => {
            let mut tx = notifier_ring_from(support::inherited_fds()).sink().unwrap();
            for seq in 0.. {
                tx.send(&make_msg(seq, ring_msg_len(seq)), None).unwrap();
            }
        }
        // Receives `arg` messages from a notifier ring, slowly at first, so that the
        // sender finds it full.
        "ring_recv" => {
            let mut rx = notifier_ring_from(support::inherited_fds()).source().unwrap();
            for seq in 0..arg.parse::<u64>().unwrap() {
                if seq < 20 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let m = rx.recv(Some(std::time::Instant::now() + LONG)).unwrap();
                assert_eq!(check_msg(m), seq);
            }
            assert!(matches!(
                rx.recv(Some(std::time::Instant::now() + LONG)),
                Err(Error::Disconnected)
            ));
        }
        // Sends `arg` messages down a pipe (fd 3), then exits.
        "pipe_send" => {
            let w = PipeWriter::from(support::inherited_fds().remove(0));
            let mut tx = BytesSender::new(StreamSink::new(w).unwrap());
            for seq in 0..arg.parse::<u64>().unwrap() {
                tx.send(&make_msg(seq, ring_msg_len(seq))).unwrap();
            }
        }
        "write_then_sleep" => {
            let mut w = PipeWriter::from(support::inherited_fds().remove(0));
            w.write_all(b"hello").unwrap();
            // Killed by the parent; the watchdog bounds this if the parent dies.
            std::thread::sleep(support::WATCHDOG);
        }
        "connect_and_send" => {
            let addr = UnixAddr::path(arg).unwrap();
            let (mut tx, _rx) = UnixStream::connect(&addr).unwrap().into_bytes_channel().unwrap();
            for i in 0..5u8 {
                tx.send(&vec![i; 100 * i as usize + 1]).unwrap();
            }
        }
        "fifo_write" => {
            let mut w = fifo::open_writer_timeout(arg, LONG).unwrap();
            w.write_all(b"through the fifo").unwrap();
        }
        "msgq_send" => {
            use interproc::ipc::msgq::{Key, MessageQueue};
            let q = MessageQueue::open(Key::from_raw(arg.parse().unwrap())).unwrap();
            for i in 1..=20i64 {
                q.send(i, &vec![i as u8; i as usize * 10]).unwrap();
            }
        }
        "signals_without_fds" => {
            // With no fd number left below RLIMIT_NOFILE, signalfd(2) fails (EMFILE):
            // `Signals::new` must fail and leave this thread's mask as it was.
            use nix::sys::resource::{setrlimit, Resource};
            use nix::sys::signal::{SigSet, SigmaskHow};
            let lowest_free = nix::unistd::dup(std::io::stdin()).unwrap();
            let n = lowest_free.as_raw_fd() as u64;
            drop(lowest_free);
            let (_, hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE).unwrap();
            setrlimit(Resource::RLIMIT_NOFILE, n, hard).unwrap();
            let before = SigSet::thread_get_mask().unwrap();
            assert!(!before.contains(Signal::SIGUSR1));
            let r = Signals::new(&[Signal::SIGUSR1]);
            assert!(r.is_err(), "signalfd succeeded with no fd free: {r:?}");
            let mut after = SigSet::empty();
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut after))
                .unwrap();
            assert!(!after.contains(Signal::SIGUSR1), "a failed Signals::new left SIGUSR1 blocked");
        }
        r => panic!("unknown role {r}"),
    });
}

/// Regression: a failed `Signals::new` restores the signal mask it changed. Runs in a
/// child process, which lowers its own fd limit so that signalfd(2) fails.
#[test]
fn failed_signals_new_restores_the_mask() {
    support::spawn("child_entry", "signals_without_fds", "", &[]).wait_success();
}

/// Regression: epoll refuses `EPOLL_CTL_MOD` on a registration made with
/// `EPOLLEXCLUSIVE` (EINVAL); `modify` says so with `Unsupported`, whatever mode it is
/// asked for, and the registration still works.
#[test]
fn modifying_an_exclusive_registration_is_unsupported() {
    let (r, mut w) = nonblocking_pipe();
    let mut p = Poller::new(Backend::Epoll).unwrap();
    p.register(&r, Token(1), Interest::READABLE, Mode::LEVEL.exclusive()).unwrap();
    for mode in [Mode::LEVEL, Mode::EDGE, Mode::LEVEL.oneshot()] {
        match p.modify(&r, Token(2), Interest::READABLE, mode) {
            Err(Error::Unsupported { what, hint, .. }) => {
                assert!(what.contains("exclusive"), "{what}");
                assert!(hint.contains("deregister"), "{hint}");
            }
            r => panic!("modify({mode:?}) of an exclusive registration gave {r:?}"),
        }
    }
    w.write_all(b"x").unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(1)]);
    // Delete + add is the way to change it.
    p.deregister(&r).unwrap();
    p.register(&r, Token(3), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(3)]);
    p.modify(&r, Token(4), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_eq!(tokens(&events(&mut p, 4)), [Token(4)]);
}

/// Regression: `len()` counts the fds registered now. A registered fd whose file was
/// closed (here replaced by dup2(2) under the same number) is forgotten by epoll;
/// registering the new file under that number is one registration, not two.
#[test]
fn len_counts_each_fd_number_once() {
    for b in Backend::ALL {
        let (r, _w) = nonblocking_pipe();
        let (r2, _w2) = nonblocking_pipe();
        let mut fd = OwnedFd::from(r);
        let mut p = Poller::new(b).unwrap();
        p.register(&fd, Token(1), Interest::READABLE, Mode::LEVEL).unwrap();
        assert_eq!(p.len(), 1, "{b}");
        // Closes the first pipe's read end and puts the second's under the same number.
        nix::unistd::dup2(&r2, &mut fd).unwrap();
        match p.register(&fd, Token(2), Interest::READABLE, Mode::LEVEL) {
            Ok(()) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("{b}: {e}"),
        }
        assert_eq!(p.len(), 1, "{b}: one fd number is registered");
        p.deregister(&fd).unwrap();
        assert_eq!(p.len(), 0, "{b}");
        assert!(p.is_empty(), "{b}");
    }
}

/// Fills `queue` through a running `bridge` until it stays full: every message the
/// bridge will take has been taken. Returns how many were sent.
fn fill_through_bridge(queue: &interproc::ipc::msgq::MessageQueue, size: usize) -> usize {
    let mut sent = 0;
    let mut fulls = 0;
    let give_up = std::time::Instant::now() + LONG;
    while fulls < 20 {
        assert!(std::time::Instant::now() < give_up, "the queue never stayed full");
        match queue.try_send(1, &vec![sent as u8; size]) {
            Ok(()) => {
                sent += 1;
                fulls = 0;
            }
            Err(Error::Full) => {
                fulls += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
    sent
}

/// Runs `f` on a thread and fails the test if it has not returned within [`LONG`]
/// (the thread is leaked then: it hangs).
fn must_return(what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(LONG).unwrap_or_else(|_| panic!("{what} hung"));
}

/// Regression: dropping a bridge whose reader is not keeping up returns, even while
/// another copy of its fd is open (a dup registered elsewhere, or a forked child's).
#[test]
fn dropping_a_backed_up_bridge_does_not_hang() {
    use interproc::ipc::msgq::{MessageQueue, Select};
    use interproc::ipc::reactor::MsgqBridge;
    let queue = Arc::new(MessageQueue::create_unique().unwrap());
    let bridge = MsgqBridge::new(queue.clone(), Select::Any).unwrap();
    let dup = bridge.fd().try_clone_to_owned().unwrap();
    fill_through_bridge(&queue, 4000);
    must_return("dropping the bridge", move || drop(bridge));
    drop(dup);
}

/// Regression: a message the bridge took from the queue but did not hand over is not
/// lost when the bridge goes: `close` hands it back, and a plain drop puts it back into
/// the queue. Every message sent is received exactly once.
#[test]
fn a_bridge_never_loses_a_message_it_received() {
    use interproc::ipc::msgq::{MessageQueue, Select};
    use interproc::ipc::reactor::MsgqBridge;
    for close in [false, true] {
        let queue = Arc::new(MessageQueue::create_unique().unwrap());
        let mut bridge = MsgqBridge::new(queue.clone(), Select::Any).unwrap();
        let mut p = Poller::new(Backend::Epoll).unwrap();
        p.register(bridge.fd(), Token(0), Interest::READABLE, Mode::LEVEL).unwrap();
        let sent = fill_through_bridge(&queue, 1000);
        // Take one, so the bridge is busy again, then let it go with messages in hand.
        events(&mut p, 4);
        let mut got = vec![bridge.try_recv().unwrap().1];
        events(&mut p, 4);
        drop(p);
        if close {
            let held = bridge.close().unwrap();
            got.extend(held.map(|(_, m)| m));
        } else {
            must_return("dropping the bridge", move || drop(bridge));
        }
        while let Ok((_, m)) = queue.try_recv_vec(Select::Any) {
            got.push(m);
        }
        let mut firsts: Vec<u8> = got.iter().map(|m| m[0]).collect();
        firsts.sort();
        assert_eq!(firsts, (0..sent as u8).collect::<Vec<_>>(), "close: {close}");
    }
}

/// A System V queue, made pollable by the bridge: messages a child process sends wake
/// the poller and come out with their types, in order; removing the queue ends the
/// bridge with `Disconnected` after the messages already forwarded.
#[test]
fn msgq_bridge_makes_a_queue_pollable() {
    use interproc::ipc::msgq::{MessageQueue, Select};
    use interproc::ipc::reactor::MsgqBridge;
    let queue = Arc::new(MessageQueue::create_unique().unwrap());
    let mut bridge = MsgqBridge::new(queue.clone(), Select::Any).unwrap();
    let mut p = Poller::new(Backend::Epoll).unwrap();
    p.register(bridge.fd(), Token(5), Interest::READABLE, Mode::LEVEL).unwrap();
    assert_idle(&mut p);
    assert!(matches!(bridge.try_recv(), Err(Error::Empty)));
    let key = queue.key();
    let child = support::spawn("child_entry", "msgq_send", &key.as_raw().to_string(), &[]);
    let mut got = Vec::new();
    while got.len() < 20 {
        assert_eq!(tokens(&events(&mut p, 4)), [Token(5)]);
        loop {
            match bridge.try_recv() {
                Ok(m) => got.push(m),
                Err(Error::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    child.wait_success();
    let want: Vec<(i64, Vec<u8>)> =
        (1..=20i64).map(|i| (i, vec![i as u8; i as usize * 10])).collect();
    assert_eq!(got, want);
    // One more message is forwarded, then the queue is removed (the bridge's thread
    // holds an `Arc` of it, so dropping ours would not remove it).
    queue.send(3, b"last").unwrap();
    events(&mut p, 4);
    interproc::ipc::msgq::remove_by_key(key).unwrap();
    assert_eq!(bridge.try_recv().unwrap(), (3, b"last".to_vec()));
    loop {
        events(&mut p, 4);
        match bridge.try_recv() {
            Err(Error::Disconnected) => break,
            Err(Error::Empty) => continue,
            r => panic!("expected Disconnected, got {r:?}"),
        }
    }
}

/// Regression: a timeout too large to add to the clock means "forever", not a panic.
#[test]
fn a_huge_timeout_waits_without_panicking() {
    use std::io::Write;
    let (r, mut w) = interproc::ipc::pipe::pipe().unwrap();
    w.write_all(b"x").unwrap();
    let mut poller =
        interproc::ipc::reactor::Poller::new(interproc::ipc::reactor::Backend::Epoll).unwrap();
    poller
        .register(
            &r,
            interproc::ipc::reactor::Token(7),
            interproc::ipc::reactor::Interest::READABLE,
            interproc::ipc::reactor::Mode::LEVEL,
        )
        .unwrap();
    let mut events = interproc::ipc::reactor::Events::with_capacity(4);
    assert_eq!(poller.wait(&mut events, Some(Duration::MAX)).unwrap(), 1);
}
