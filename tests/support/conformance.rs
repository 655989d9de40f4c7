//! One conformance suite for every transport.
//!
//! A transport implements [`Transport`]: how to set up a channel whose other end lives in
//! a child process, and how the child builds its end. The [`conformance!`] macro then
//! instantiates every scenario as a `#[test]`, and [`child_dispatch`] runs the child's side.
//!
//! Every scenario crosses a real process boundary. What each one proves:
//! - `order_and_exactly_once`: 2,000 messages of varying sizes arrive in order, each once
//!   and intact, then `Disconnected`.
//! - `typed_values`: serde values round-trip through `Sender<T>`/`Receiver<T>`.
//! - `sender_max_size`: a message over the sender's maximum is `MessageTooLarge` and
//!   nothing is sent; one at the maximum goes through.
//! - `receiver_max_size`: a frame over the receiver's maximum is `Malformed`, never a
//!   silently cut message.
//! - `timeouts_then_kill`: `try_recv` is `Empty`, `recv_timeout` is `Timeout` while the
//!   peer lives; a SIGKILL of the peer then gives `Disconnected`, not a hang.
//! - `peer_exit_while_receiving`: the peer exits normally: messages then `Disconnected`.
//! - `full_then_disconnected`: a peer that does not read fills the channel: `try_send`
//!   gives `Full` with the value handed back; after the peer is killed, sends give
//!   `Disconnected`.
//!
//! The parent never blocks without a bound: every receive waits at most
//! [`super::WATCHDOG`], so a hang is reported as `Timeout` and fails the test.
//! - `killed_mid_stream`: the sender is SIGKILLed while streaming 64 KiB messages: every
//!   message received is intact, and the end is `Disconnected` or `Truncated`, never a
//!   hang and never a corrupt message.
#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use interproc::ipc::channel::{BytesReceiver, BytesSender, Receiver, Sender};
use interproc::ipc::Error;
use serde::{Deserialize, Serialize};

/// One side of a channel to set up in the parent: fds and an argument for the child,
/// and what the parent does once the child runs (accept a connection, open the other
/// end of a FIFO, watch the child's pid...).
pub struct Setup<E> {
    /// Handed to the child as fd 3, 4, ...; the parent's copies close after the spawn.
    pub fds: Vec<OwnedFd>,
    /// Handed to the child in its environment (a path, a key, a port).
    pub arg: String,
    /// Finishes the parent's end, given the child's pid.
    pub finish: Box<dyn FnOnce(u32) -> E>,
}

/// A transport under test.
pub trait Transport {
    /// A short name, used in child roles.
    const NAME: &'static str;
    /// The largest message the transport can carry at all (System V queues: the
    /// kernel's msgmax); scenarios cap their message sizes at it.
    const MAX_MESSAGE: usize = usize::MAX;
    /// A channel the child sends on and the parent receives from.
    fn to_parent() -> Setup<BytesReceiver>;
    /// A channel the parent sends on and the child receives from.
    fn to_child() -> Setup<BytesSender>;
    /// In the child: its sending end, from the inherited fds and the argument.
    fn child_sender(fds: Vec<OwnedFd>, arg: &str) -> BytesSender;
    /// In the child: its receiving end.
    fn child_receiver(fds: Vec<OwnedFd>, arg: &str) -> BytesReceiver;
}

fn spawn_with<E>(name: &str, scenario: &str, setup: Setup<E>) -> (super::Child, E) {
    let borrowed: Vec<_> = setup.fds.iter().map(|f| f.as_fd()).collect();
    let child = super::spawn("child_entry", &format!("{name}:{scenario}"), &setup.arg, &borrowed);
    drop(borrowed);
    drop(setup.fds);
    let end = (setup.finish)(child.pid());
    (child, end)
}

/// A message whose content is a function of its sequence number, so the receiver can
/// check it: 8 bytes of `seq`, then `len - 8` bytes of a pattern seeded by `seq`.
pub fn make_msg(seq: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(8));
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// Checks a message made by [`make_msg`]; returns its sequence number.
pub fn check_msg(m: &[u8]) -> u64 {
    assert!(m.len() >= 8, "message of {} bytes is too short", m.len());
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert!(m == make_msg(seq, m.len()).as_slice(), "message {seq} is corrupt");
    seq
}

const ORDER_N: u64 = 2000;

fn order_len(seq: u64) -> usize {
    // 8 bytes to ~3 KiB, and every 100th message 20 KiB, crossing pipe and socket
    // buffer boundaries.
    if seq % 100 == 99 {
        20 << 10
    } else {
        8 + (seq as usize * 37) % 3000
    }
}

/// A typed message for `typed_values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Typed {
    /// A sequence number.
    pub seq: u32,
    /// Some text.
    pub text: String,
    /// Some numbers.
    pub values: Vec<i64>,
    /// An optional nested value.
    pub nested: Option<(u8, bool)>,
}

fn typed(seq: u32) -> Typed {
    Typed {
        seq,
        text: format!("message {seq} ✓"),
        values: (0..seq as i64 % 7).map(|i| i * -1000).collect(),
        nested: (seq % 2 == 0).then_some((seq as u8, seq % 4 == 0)),
    }
}

/// The parent's side of each scenario.
pub fn order_and_exactly_once<T: Transport>() {
    let (child, mut rx) = spawn_with(T::NAME, "order", T::to_parent());
    for want in 0..ORDER_N {
        let m = rx.recv_timeout(super::WATCHDOG).unwrap_or_else(|e| panic!("message {want}: {e}"));
        assert_eq!(m.len(), order_len(want).min(T::MAX_MESSAGE));
        assert_eq!(check_msg(&m), want, "out of order");
    }
    child.wait_success();
    assert!(
        matches!(rx.recv_timeout(super::WATCHDOG), Err(Error::Disconnected)),
        "expected Disconnected after the last message"
    );
}

/// Typed serde values across the process boundary.
pub fn typed_values<T: Transport>() {
    let (child, rx) = spawn_with(T::NAME, "typed", T::to_parent());
    let mut rx: Receiver<Typed> = Receiver::new(rx.into_inner());
    for i in 0..100 {
        assert_eq!(rx.recv_timeout(super::WATCHDOG).unwrap(), typed(i));
    }
    child.wait_success();
    assert!(matches!(rx.recv_timeout(super::WATCHDOG), Err(Error::Disconnected)));
}

/// The sender's maximum: over it, `MessageTooLarge` and nothing sent.
pub fn sender_max_size<T: Transport>() {
    let (child, mut rx) = spawn_with(T::NAME, "sender_max", T::to_parent());
    // The child sent 1001 bytes (refused) and then exactly 1000.
    let m = rx.recv_timeout(super::WATCHDOG).unwrap();
    assert_eq!(m.len(), 1000);
    check_msg(&m);
    child.wait_success();
    assert!(matches!(rx.recv_timeout(super::WATCHDOG), Err(Error::Disconnected)));
}

/// The receiver's maximum: a larger frame is `Malformed`.
pub fn receiver_max_size<T: Transport>() {
    let (child, rx) = spawn_with(T::NAME, "receiver_max", T::to_parent());
    let mut rx = rx.with_max_frame(100);
    match rx.recv_timeout(super::WATCHDOG) {
        Err(Error::Malformed { reason }) => assert!(!reason.is_empty()),
        other => {
            panic!("expected Malformed for a 200-byte frame over a 100-byte maximum, got {other:?}")
        }
    }
    child.wait_success();
}

/// Timeouts while the peer lives; `Disconnected` once it is killed.
pub fn timeouts_then_kill<T: Transport>() {
    let (child, mut rx) = spawn_with(T::NAME, "silent", T::to_parent());
    // The child sends one message to show it is up, then waits to be killed.
    check_msg(&rx.recv_timeout(super::WATCHDOG).unwrap());
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    assert!(matches!(rx.recv_timeout(Duration::from_millis(50)), Err(Error::Timeout)));
    let st = child.kill_and_wait();
    assert!(super::was_killed(&st), "{st:?}");
    assert!(matches!(rx.recv_timeout(super::WATCHDOG), Err(Error::Disconnected)));
}

/// The peer exits normally.
pub fn peer_exit_while_receiving<T: Transport>() {
    let (child, mut rx) = spawn_with(T::NAME, "three", T::to_parent());
    for want in 0..3 {
        assert_eq!(check_msg(&rx.recv_timeout(super::WATCHDOG).unwrap()), want);
    }
    assert!(matches!(rx.recv_timeout(super::WATCHDOG), Err(Error::Disconnected)));
    child.wait_success();
}

/// A peer that does not read: `Full`, then `Disconnected` after it is killed.
pub fn full_then_disconnected<T: Transport>() {
    let (child, tx) = spawn_with(T::NAME, "no_read", T::to_child());
    let mut tx: Sender<Vec<u8>> = Sender::new(tx.into_inner());
    let msg = make_msg(7, 1024);
    let mut sent = 0usize;
    loop {
        match tx.try_send(msg.clone()) {
            Ok(()) => sent += 1,
            Err(e) => {
                assert!(matches!(e.error, Error::Full), "expected Full, got {:?}", e.error);
                assert_eq!(e.value, msg, "the value comes back");
                break;
            }
        }
        assert!(sent < 200_000, "200 MiB accepted by a peer that never reads");
    }
    assert!(sent > 0, "not even one message fitted");
    let st = child.kill_and_wait();
    assert!(super::was_killed(&st), "{st:?}");
    let mut outcome = None;
    for _ in 0..1000 {
        match tx.send_timeout(msg.clone(), Duration::from_secs(5)) {
            Ok(()) => continue,
            Err(e) => {
                outcome = Some(e.error);
                break;
            }
        }
    }
    assert!(matches!(outcome, Some(Error::Disconnected)), "expected Disconnected, got {outcome:?}");
}

/// The sender dies in the middle of a stream of large messages.
pub fn killed_mid_stream<T: Transport>() {
    let (child, mut rx) = spawn_with(T::NAME, "stream", T::to_parent());
    let mut got = 0u64;
    while got < 20 {
        assert_eq!(check_msg(&rx.recv_timeout(super::WATCHDOG).unwrap()), got);
        got += 1;
    }
    let st = child.kill_and_wait();
    assert!(super::was_killed(&st), "{st:?}");
    loop {
        match rx.recv_timeout(super::WATCHDOG) {
            Ok(m) => {
                assert_eq!(check_msg(&m), got);
                got += 1;
            }
            Err(Error::Disconnected | Error::Truncated { .. }) => break,
            Err(e) => panic!("unexpected error after the sender was killed: {e}"),
        }
    }
}

/// Runs the child side of a scenario if `role` names one for `T`; returns whether it did.
pub fn child_dispatch<T: Transport>(role: &str, arg: &str) -> bool {
    let Some(scenario) = role.strip_prefix(T::NAME).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let fds = super::inherited_fds();
    match scenario {
        "order" => {
            let mut tx = T::child_sender(fds, arg);
            for seq in 0..ORDER_N {
                tx.send(&make_msg(seq, order_len(seq).min(T::MAX_MESSAGE))).unwrap();
            }
        }
        "typed" => {
            let mut tx: Sender<Typed> = Sender::new(T::child_sender(fds, arg).into_inner());
            for i in 0..100 {
                tx.send(typed(i)).unwrap();
            }
        }
        "sender_max" => {
            let mut tx = T::child_sender(fds, arg).with_max_frame(1000);
            match tx.send(&make_msg(1, 1001)) {
                Err(Error::MessageTooLarge { size: 1001, max: 1000 }) => {}
                other => panic!("expected MessageTooLarge, got {other:?}"),
            }
            tx.send(&make_msg(2, 1000)).unwrap();
        }
        "receiver_max" => {
            let mut tx = T::child_sender(fds, arg);
            tx.send(&make_msg(3, 200)).unwrap();
            // Stay until the parent has looked at the frame.
            std::thread::sleep(Duration::from_millis(200));
        }
        "silent" => {
            let mut tx = T::child_sender(fds, arg);
            tx.send(&make_msg(0, 16)).unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "three" => {
            let mut tx = T::child_sender(fds, arg);
            for seq in 0..3 {
                tx.send(&make_msg(seq, 100)).unwrap();
            }
        }
        "no_read" => {
            let _rx = T::child_receiver(fds, arg);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "stream" => {
            let mut tx = T::child_sender(fds, arg);
            let mut seq = 0;
            loop {
                tx.send(&make_msg(seq, (64 << 10).min(T::MAX_MESSAGE))).unwrap();
                seq += 1;
            }
        }
        other => panic!("unknown scenario {other}"),
    }
    true
}

/// Instantiates every scenario for a transport, as `#[test]`s in module `$m`.
#[macro_export]
macro_rules! conformance {
    ($m:ident, $t:ty) => {
        mod $m {
            use super::*;
            #[test]
            fn order_and_exactly_once() {
                support::conformance::order_and_exactly_once::<$t>()
            }
            #[test]
            fn typed_values() {
                support::conformance::typed_values::<$t>()
            }
            #[test]
            fn sender_max_size() {
                support::conformance::sender_max_size::<$t>()
            }
            #[test]
            fn receiver_max_size() {
                support::conformance::receiver_max_size::<$t>()
            }
            #[test]
            fn timeouts_then_kill() {
                support::conformance::timeouts_then_kill::<$t>()
            }
            #[test]
            fn peer_exit_while_receiving() {
                support::conformance::peer_exit_while_receiving::<$t>()
            }
            #[test]
            fn full_then_disconnected() {
                support::conformance::full_then_disconnected::<$t>()
            }
            #[test]
            fn killed_mid_stream() {
                support::conformance::killed_mid_stream::<$t>()
            }
        }
    };
}
