//! The shared-memory ring channel (`ipc::channel::shm`): the transport conformance suite
//! across real processes (named rings one way, memfd rings passed as an fd the other), then
//! what only the ring does: zero-copy loans, typed errors on open, one end of each kind,
//! and SIGKILL of either side at random points.
//!
//! Every named ring has a unique name and is removed by its creator's drop, so the suite
//! leaves nothing in /dev/shm.

mod support;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use interproc::ipc::channel::shm::{self, ShmRing, ShmSink, ShmSource};
use interproc::ipc::channel::{BytesReceiver, BytesSender, FrameSink, FrameSource};
use interproc::ipc::{names, Error};
use interproc::sync::shm::ShmError;
use support::conformance::{check_msg, make_msg, Setup, Transport};

// ---- the conformance suite ----

/// 256 KiB: room for the suite's 64 KiB messages, small enough to fill quickly.
const CAPACITY: usize = 256 << 10;

/// Child to parent over a named ring (the child opens it by name); parent to child over
/// a memfd ring (the child maps the inherited fd).
struct Ring;

/// Waits for the child to attach its end, so that its death is seen even if it dies
/// before touching the ring again. A child that already came and went is fine too.
fn await_child(r: Result<u32, Error>) {
    if let Err(e @ Error::Timeout) = r {
        panic!("the child never attached to the ring: {e}");
    }
}

impl Transport for Ring {
    const NAME: &'static str = "shm";

    fn to_parent() -> Setup<BytesReceiver> {
        let name = names::unique_name("ring");
        let ring = shm::create(&name, CAPACITY).unwrap();
        Setup {
            fds: vec![],
            arg: name,
            finish: Box::new(move |_pid| {
                let mut src = ring.source().unwrap();
                await_child(src.wait_peer(Some(Instant::now() + support::WATCHDOG)));
                BytesReceiver::new(Box::new(src))
            }),
        }
    }

    fn to_child() -> Setup<BytesSender> {
        let ring = ShmRing::anonymous(CAPACITY).unwrap();
        let fd = std::os::fd::AsFd::as_fd(&ring).try_clone_to_owned().unwrap();
        Setup {
            fds: vec![fd],
            arg: String::new(),
            finish: Box::new(move |_pid| {
                let mut sink = ring.sink().unwrap();
                await_child(sink.wait_peer(Some(Instant::now() + support::WATCHDOG)));
                BytesSender::new(Box::new(sink))
            }),
        }
    }

    fn child_sender(_: Vec<OwnedFd>, arg: &str) -> BytesSender {
        BytesSender::new(Box::new(shm::open(arg).unwrap().sink().unwrap()))
    }

    fn child_receiver(mut fds: Vec<OwnedFd>, _: &str) -> BytesReceiver {
        BytesReceiver::new(Box::new(ShmRing::from_fd(fds.remove(0)).unwrap().source().unwrap()))
    }
}

conformance!(conformance, Ring);

// ---- children for the ring-specific tests ----

/// Message `seq` of the kill trials: 1 byte to ~6 KiB, so records straddle the end of the
/// ring in every position.
fn trial_len(seq: u64) -> usize {
    8 + (seq as usize * 1021) % 6000
}

#[test]
fn child_entry() {
    support::child_entry(|role, arg| {
        if support::conformance::child_dispatch::<Ring>(role, arg) {
            return;
        }
        let ring = || ShmRing::from_fd(support::inherited_fds().remove(0)).unwrap();
        match role {
            // Streams messages until killed, alternating the copy path and the zero-copy
            // loan (written in small pieces, so a kill often lands mid-write).
            "stream_forever" => {
                let mut tx = ring().sink().unwrap();
                for seq in 0.. {
                    let m = make_msg(seq, trial_len(seq));
                    if seq % 2 == 0 {
                        tx.send(&m, None).unwrap();
                    } else {
                        let mut loan = tx.producer().loan(m.len(), None).unwrap();
                        for (i, chunk) in m.chunks(64).enumerate() {
                            loan.write_at(i * 64, chunk);
                        }
                        loan.commit();
                    }
                }
            }
            // Commits one message, then starts a second and stops half-way, until killed.
            "half_written" => {
                let mut tx = ring().sink().unwrap();
                tx.send(&make_msg(0, 100), None).unwrap();
                let m = make_msg(1, 1000);
                let mut loan = tx.producer().loan(m.len(), None).unwrap();
                loan.write_at(0, &m[..500]);
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            // Never attaches: sleeps until killed.
            "never_attach" => loop {
                let _ring = &ring;
                std::thread::sleep(Duration::from_secs(1));
            },
            // Opens the named notifier ring `arg` with the two eventfds it was given,
            // sends 500 messages, and closes.
            "named_notifier_send" => {
                let [data, room]: [OwnedFd; 2] = support::inherited_fds().try_into().unwrap();
                let n = shm::RingNotifier::from_fds(data, room);
                let mut tx = ShmRing::open_with_notifier(arg, n).unwrap().sink().unwrap();
                for seq in 0..500 {
                    tx.send(&make_msg(seq, trial_len(seq)), None).unwrap();
                }
            }
            // Receives and checks messages until killed.
            "drain_forever" => {
                let mut rx = ring().source().unwrap();
                loop {
                    check_msg(rx.recv(None).unwrap());
                }
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn spawn_with_ring(role: &str, ring: &ShmRing) -> support::Child {
    support::spawn("child_entry", role, "", &[std::os::fd::AsFd::as_fd(ring)])
}

/// A little deterministic randomness for the kill points.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

// ---- the tests ----

/// A producer SIGKILLed at random points, 200 trials: the consumer gets every message the
/// producer committed, in order, each once and intact, then `Disconnected`; never a partial
/// message, never a hang.
#[test]
fn producer_killed_at_random_points() {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for trial in 0..200 {
        let ring = ShmRing::anonymous(16 << 10).unwrap();
        let mut rx = ring.source().unwrap();
        let mut child = spawn_with_ring("stream_forever", &ring);
        // The child may be killed before it attaches (kill_after 0): name it, so that its
        // death is still `Disconnected`, not a wait for a producer that never comes.
        rx.expect_peer(child.pid()).unwrap();
        let kill_after = xorshift(&mut rng) % 200;
        let mut got = 0u64;
        let deadline = || Some(Instant::now() + support::WATCHDOG);
        while got < kill_after {
            let m = rx.recv(deadline()).unwrap_or_else(|e| panic!("trial {trial}: {e}"));
            assert_eq!(check_msg(m), got, "trial {trial}");
            assert_eq!(m.len(), trial_len(got));
            got += 1;
        }
        // Sometimes let it run on a little, so it is killed while the ring is full or
        // in the middle of a write rather than right after a receive.
        if xorshift(&mut rng) % 2 == 0 {
            std::thread::sleep(Duration::from_micros(xorshift(&mut rng) % 2000));
        }
        child.kill();
        let st = child.wait();
        assert!(support::was_killed(&st), "trial {trial}: {st:?}");
        loop {
            match rx.recv(deadline()) {
                Ok(m) => {
                    assert_eq!(check_msg(m), got, "trial {trial}: a gap or a duplicate");
                    assert_eq!(m.len(), trial_len(got), "trial {trial}: a partial message");
                    got += 1;
                }
                Err(Error::Disconnected) => break,
                Err(e) => panic!("trial {trial}: after the kill: {e}"),
            }
        }
    }
}

/// A child killed before it attached its end: without `expect_peer` the receiver cannot
/// tell it from one that has not started yet (it times out); with it, `Disconnected`.
/// (Regression: the random-kill trials once waited out their watchdog when the kill came
/// before the child attached.)
#[test]
fn peer_killed_before_attaching() {
    let ring = ShmRing::anonymous(4096).unwrap();
    let mut rx = ring.source().unwrap();
    let child = spawn_with_ring("never_attach", &ring);
    let pid = child.pid();
    let mut watched = ShmRing::anonymous(4096).unwrap().source().unwrap();
    watched.expect_peer(pid).unwrap();
    assert!(matches!(watched.recv(Some(Instant::now())), Err(Error::Timeout)), "alive: empty");
    let st = child.kill_and_wait();
    assert!(support::was_killed(&st), "{st:?}");
    let soon = || Some(Instant::now() + Duration::from_millis(200));
    assert!(matches!(rx.recv(soon()), Err(Error::Timeout)), "unnamed: still waiting");
    assert!(matches!(watched.recv(soon()), Err(Error::Disconnected)));
}

/// A producer killed in the middle of writing a message: the consumer sees the message
/// committed before it, never the half-written one, then `Disconnected`.
#[test]
fn half_written_message_is_never_seen() {
    let ring = ShmRing::anonymous(64 << 10).unwrap();
    let mut rx = ring.source().unwrap();
    let child = spawn_with_ring("half_written", &ring);
    let deadline = Some(Instant::now() + support::WATCHDOG);
    assert_eq!(check_msg(rx.recv(deadline).unwrap()), 0);
    // The child is now writing message 1 (or about to): wait until its loan is surely
    // taken, then kill it.
    std::thread::sleep(Duration::from_millis(100));
    let st = child.kill_and_wait();
    assert!(support::was_killed(&st), "{st:?}");
    assert!(matches!(rx.recv(deadline), Err(Error::Disconnected)));
}

/// A consumer SIGKILLed at random points, 20 trials: the producer either carries on or
/// gets `Disconnected` once the ring is full; it never hangs.
#[test]
fn consumer_killed_at_random_points() {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for trial in 0..20 {
        let ring = ShmRing::anonymous(16 << 10).unwrap();
        let mut tx = ring.sink().unwrap();
        let mut child = spawn_with_ring("drain_forever", &ring);
        tx.wait_peer(Some(Instant::now() + support::WATCHDOG)).unwrap();
        let kill_after = xorshift(&mut rng) % 300;
        let mut seq = 0;
        let deadline = || Some(Instant::now() + support::WATCHDOG);
        while seq < kill_after {
            tx.send(&make_msg(seq, trial_len(seq)), deadline()).unwrap();
            seq += 1;
        }
        child.kill();
        let st = child.wait();
        assert!(support::was_killed(&st) || st.success(), "trial {trial}: {st:?}");
        loop {
            match tx.send(&make_msg(seq, trial_len(seq)), deadline()) {
                Ok(()) => seq += 1,
                Err(Error::Disconnected) => break,
                Err(e) => panic!("trial {trial}: after the kill: {e}"),
            }
        }
    }
}

/// The zero-copy paths and the copy path carry the same messages, between threads.
#[test]
fn zero_copy_loans() {
    let (mut tx, mut rx) = shm::pair(4096).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            for seq in 0..10_000u64 {
                let m = make_msg(seq, 8 + (seq as usize % 500));
                let mut loan = tx.producer().loan(m.len(), None).unwrap();
                for (d, b) in loan.as_uninit_mut().iter_mut().zip(&m) {
                    d.write(*b);
                }
                loan.commit();
            }
        });
        for seq in 0..10_000u64 {
            let n = rx.consumer().recv_in_place(None, |m| (check_msg(m), m.len())).unwrap();
            assert_eq!(n, (seq, 8 + (seq as usize % 500)));
        }
    });
}

/// Typed values over a named ring, both ends here; the creator removes the name.
#[test]
fn typed_over_named_ring_and_cleanup() {
    let name = names::unique_name("ring");
    let ring = shm::create(&name, 1000).unwrap();
    assert_eq!(ring.capacity(), 1024, "rounded up to a power of two");
    assert_eq!(ring.max_message(), 1016);
    assert_eq!(ring.name(), Some(name.as_str()));
    assert!(matches!(shm::create(&name, 1000), Err(Error::Shm(ShmError::AlreadyExists { .. }))));
    let opened = shm::open(&name).unwrap();
    let mut tx = ring.sender::<(u32, String)>().unwrap();
    let mut rx = opened.receiver::<(u32, String)>().unwrap();
    tx.send((7, "seven".into())).unwrap();
    assert_eq!(rx.recv().unwrap(), (7, "seven".to_string()));
    assert!(std::path::Path::new("/dev/shm").join(&name).exists());
    drop((tx, rx, opened, ring));
    assert!(!std::path::Path::new("/dev/shm").join(&name).exists(), "the creator removed it");
    assert!(matches!(shm::open(&name), Err(Error::Shm(ShmError::NotFound { .. }))));
}

/// Reaps a forked child under the watchdog: one that does not finish in time is killed
/// and the test fails.
fn reap(child: nix::unistd::Pid) -> nix::sys::wait::WaitStatus {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let give_up = Instant::now() + support::WATCHDOG;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(5))
            }
            WaitStatus::StillAlive => {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(child, None);
                panic!(
                    "watchdog: child {child} did not finish within {:?}; killed it",
                    support::WATCHDOG
                );
            }
            st => return st,
        }
    }
}

/// The pipes a [`PauseAfter`] uses to hand over to the peer in the middle of a decode:
/// "go" to the peer, then wait for "done".
static PAUSE: std::sync::OnceLock<(OwnedFd, OwnedFd)> = std::sync::OnceLock::new();

/// A byte whose decoding, once read, pauses the receiver until the peer process has done
/// its worst to the ring: the rest of the value is decoded after that.
#[derive(Debug, PartialEq)]
struct PauseAfter(u8);

impl serde::Serialize for PauseAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PauseAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = <u8 as serde::Deserialize>::deserialize(d)?;
        if let Some((go, done)) = PAUSE.get() {
            assert_eq!(nix::unistd::write(go, b"g"), Ok(1), "go");
            let mut x = [0u8; 1];
            assert_eq!(nix::unistd::read(done, &mut x), Ok(1), "the peer did not rewrite the ring");
        }
        Ok(PauseAfter(b))
    }
}

/// The typed receiver decodes a private copy of each message, never the shared memory the
/// peer can write: a producer process sends a value, then turns malicious and rewrites the
/// whole data area (the committed message included) while the receiver is half-way
/// through decoding it. The value still decodes as sent.
#[test]
fn typed_receiver_decodes_a_private_copy() {
    let ring = ShmRing::anonymous(4096).unwrap();
    let mut rx = ring.receiver::<(PauseAfter, String)>().unwrap();
    let (go_r, go_w) = nix::unistd::pipe().unwrap();
    let (done_r, done_w) = nix::unistd::pipe().unwrap();
    let text = "the rest of the value, decoded after the peer rewrote the ring".to_string();
    // SAFETY: the child runs only the ring, pipe calls and raw writes, and `_exit`s.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Parent { child } => child,
        nix::unistd::ForkResult::Child => {
            let code = (|| {
                let Ok(mut tx) = ring.sender::<(PauseAfter, String)>() else { return 2 };
                if tx.send((PauseAfter(7), text.clone())).is_err() {
                    return 3;
                }
                let mut b = [0u8; 1];
                if nix::unistd::read(&go_r, &mut b) != Ok(1) {
                    return 4;
                }
                let seg = ring.segment();
                // SAFETY: the extra area is `extra_len` mapped bytes; this is the
                // misbehaving peer the test stands for, writing the ring's data behind the
                // protocol's back (raw writes, no reference to the memory).
                unsafe { std::ptr::write_bytes(seg.extra_ptr(), 0xaa, seg.extra_len()) };
                if nix::unistd::write(&done_w, b"d") != Ok(1) {
                    return 5;
                }
                std::mem::forget(tx);
                0
            })();
            // SAFETY: `_exit` skips the harness's atexit handlers and destructors, which
            // must not run in a forked child.
            unsafe { libc::_exit(code) }
        }
    };
    drop((go_r, done_w));
    PAUSE.set((go_w, done_r)).unwrap();
    let got = rx.recv_deadline(Some(Instant::now() + support::WATCHDOG));
    assert_eq!(reap(child), nix::sys::wait::WaitStatus::Exited(child, 0));
    let got = got.expect("the value decoded from the ring the peer rewrote mid-decode");
    assert_eq!(got, (PauseAfter(7), text), "decoded from the shared memory the peer rewrote");
}

/// The ends this process attached, copied into a forked child: there they refuse with
/// `ForkedCopy` (naming both processes and what to do), and dropping them leaves the
/// parent's ends open, so the parent's channel goes on.
#[test]
fn fork_copies_of_the_ends_refuse_and_leave_the_ring_open() {
    let ring = ShmRing::anonymous(4096).unwrap();
    let mut tx = ring.sender::<String>().unwrap();
    let mut rx = ring.receiver::<String>().unwrap();
    tx.send("before".into()).unwrap();
    let parent = std::process::id();
    // SAFETY: the child runs only the ring's ends and `_exit`s: no unwinding, destructors
    // or harness code run in it.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Parent { child } => child,
        nix::unistd::ForkResult::Child => {
            let me = std::process::id();
            let forked = |e: &Error, what: &str| match e {
                Error::ForkedCopy { what: w, owner, pid } => {
                    *w == what
                        && *owner == parent
                        && *pid == me
                        && e.to_string().contains("attach a fresh end in this process")
                }
                _ => false,
            };
            let sent = tx.send("from the child".into());
            let got = rx.try_recv();
            let code = match (&sent, &got) {
                (Ok(()), _) => 1,
                (_, Ok(_)) => 2,
                (Err(s), Err(r))
                    if forked(&s.error, "shm ring producer") && forked(r, "shm ring consumer") =>
                {
                    0
                }
                _ => 3,
            };
            // The copies' drops must not close the parent's ends.
            drop((tx, rx));
            // SAFETY: `_exit` skips the harness's atexit handlers and destructors, which
            // must not run in a forked child.
            unsafe { libc::_exit(code) }
        }
    };
    assert_eq!(
        reap(child),
        nix::sys::wait::WaitStatus::Exited(child, 0),
        "the child's copies did not refuse with ForkedCopy (1: sent, 2: received, 3: another \
         error)"
    );
    assert!(!ring.segment().producer_closed() && !ring.segment().consumer_closed());
    assert_eq!(rx.recv().unwrap(), "before");
    tx.send("after".into()).unwrap();
    assert_eq!(rx.recv().unwrap(), "after");
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

/// A capacity over the largest ring is `CapacityTooLarge`, naming that limit, not a
/// message size.
#[test]
fn capacity_errors_name_the_ring_limit() {
    let max = interproc::sync::ring::MAX_CAPACITY;
    match ShmRing::anonymous(max + 1) {
        Err(e @ Error::CapacityTooLarge { capacity, max: m }) => {
            assert_eq!((capacity, m), (max + 1, max));
            assert!(e.to_string().contains("largest ring"), "{e}");
        }
        other => panic!("expected CapacityTooLarge, got {other:?}"),
    }
    let name = names::unique_name("bigring");
    assert!(matches!(shm::create(&name, usize::MAX), Err(Error::CapacityTooLarge { .. })));
    assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
}

/// Bad input gets typed errors: too large, a second end of a kind, a segment that is not
/// a ring, a receiver maximum below the message.
#[test]
fn typed_errors() {
    let ring = ShmRing::anonymous(64).unwrap();
    let mut sink: ShmSink = ring.sink().unwrap();
    assert_eq!(sink.max_frame(), 56);
    match sink.send(&[0; 57], None) {
        Err(Error::MessageTooLarge { size: 57, max: 56 }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    sink.set_max_frame(1 << 20);
    assert_eq!(sink.max_frame(), 56, "clamped to the ring");
    assert!(matches!(ring.sink(), Err(Error::AlreadyExists { .. })));
    let mut src: ShmSource = ring.source().unwrap();
    assert!(matches!(ring.source(), Err(Error::AlreadyExists { .. })));
    assert!(matches!(src.recv(Some(Instant::now())), Err(Error::Timeout)));
    sink.send(&[1; 40], None).unwrap();
    assert!(matches!(sink.send(&[2; 40], Some(Instant::now())), Err(Error::Timeout)), "full");
    src.set_max_frame(10);
    assert!(matches!(src.recv(None), Err(Error::Malformed { .. })));
    // A segment of another type is refused, not read as a ring.
    let name = names::unique_name("notring");
    let other = interproc::sync::shm::Segment::create(&name, 42u64).unwrap();
    match shm::open(&name) {
        Err(Error::Shm(e @ ShmError::Invalid { .. })) => {
            assert!(e.to_string().contains(&name), "{e}")
        }
        other => panic!("expected ShmError::Invalid, got {other:?}"),
    }
    drop(other);
}

/// A ring made with notifiers refuses an end attached without them (its peer would wait
/// for a signal that never comes), and a plain ring refuses a notifier; a plain ring's
/// ends have no fd.
#[test]
fn notifier_mismatches_are_typed_errors() {
    let ring = ShmRing::anonymous_with_notifier(4096).unwrap();
    let seg = std::os::fd::AsFd::as_fd(&ring).try_clone_to_owned().unwrap();
    let bare = ShmRing::from_fd(seg).unwrap();
    assert!(matches!(bare.source(), Err(Error::Unsupported { .. })));
    assert!(matches!(bare.sink(), Err(Error::Unsupported { .. })));
    let n = ring.notifier().unwrap();
    let fds =
        (n.data_fd().try_clone_to_owned().unwrap(), n.room_fd().try_clone_to_owned().unwrap());
    let plain = ShmRing::anonymous(4096).unwrap();
    let seg = std::os::fd::AsFd::as_fd(&plain).try_clone_to_owned().unwrap();
    let r = ShmRing::from_fd_with_notifier(seg, shm::RingNotifier::from_fds(fds.0, fds.1));
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
    assert!(plain.source().unwrap().notifier_fd().is_none());
    assert!(plain.sink().unwrap().notifier_fd().is_none());
    assert!(ring.source().unwrap().notifier_fd().is_some());
}

/// A named ring with notifiers: the opener gets the eventfds by fd passing (inherited
/// here) and sends from its own process; this process waits in a poller on the source's
/// notifier (level-triggered, one message per event: the fd stays readable until a
/// receive finds the ring empty) and gets every message, then `Disconnected`.
#[test]
fn named_notifier_ring_across_processes() {
    use interproc::ipc::reactor::{Backend, Events, Interest, Mode, Poller, Token};
    let name = names::unique_name("ring-notify");
    let ring = ShmRing::create_with_notifier(&name, 16 << 10).unwrap();
    let mut src = ring.source().unwrap();
    let n = ring.notifier().unwrap();
    let child =
        support::spawn("child_entry", "named_notifier_send", &name, &[n.data_fd(), n.room_fd()]);
    src.expect_peer(child.pid()).unwrap();
    let mut rx = BytesReceiver::new(src);
    let mut p = Poller::new(Backend::Epoll).unwrap();
    p.register(rx.fd().unwrap(), Token(0), Interest::READABLE, Mode::LEVEL).unwrap();
    let mut events = Events::with_capacity(2);
    let mut got = 0u64;
    loop {
        if let Err(e) = p.wait(&mut events, Some(support::WATCHDOG)) {
            panic!("no event after {got} messages: {e}; {:?}", rx.get_ref());
        }
        // One receive per event: level-triggering brings the rest.
        match rx.try_recv() {
            Ok(m) => {
                assert_eq!(check_msg(&m), got);
                got += 1;
            }
            Err(Error::Empty) => {}
            Err(Error::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 500);
    child.wait_success();
}
