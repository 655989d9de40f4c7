//! loom models of the shared-memory ring (`interproc_sync::ring`): the production
//! producer/consumer over a heap ring whose bytes are loom cells (so every payload access is
//! checked for races) and the modelled futex (`ModelPark`, which wakes spuriously and
//! times out at any point).
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_ring`
#![cfg(interproc_loom)]

use std::time::Instant;

use interproc_sync::ring::{self, HeapMemory, RingError};
use interproc_sync::ModelPark;
use loom::thread;

type Ring = std::sync::Arc<HeapMemory>;
type Producer = ring::Producer<Ring, ModelPark>;
type Consumer = ring::Consumer<Ring, ModelPark>;

fn pair(capacity: usize) -> (Producer, Consumer) {
    ring::pair(HeapMemory::new(capacity), 1).unwrap()
}

fn msg(seq: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seq.wrapping_mul(31).wrapping_add(i as u8)).collect()
}

/// A consumer that finds the ring empty sleeps, and the producer's commit wakes it (a lost
/// wake-up would leave it asleep: loom reports that as a deadlock). Then the producer's drop
/// wakes it again, for `Disconnected`.
#[test]
fn sleeping_consumer_is_woken() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(32);
        let t = thread::spawn(move || {
            tx.send(&msg(1, 3), None).unwrap();
        });
        let mut buf = Vec::new();
        rx.recv(&mut buf, None).unwrap();
        assert_eq!(buf, msg(1, 3));
        assert_eq!(rx.recv(&mut buf, None), Err(RingError::Disconnected));
        t.join().unwrap();
    });
}

/// A producer that finds the ring full sleeps, and the consumer's release wakes it: two
/// messages that each fill the 16-byte ring.
#[test]
fn sleeping_producer_is_woken() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(16);
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            for seq in 0..2 {
                rx.recv(&mut buf, None).unwrap();
                assert_eq!(buf, msg(seq, 8));
            }
        });
        for seq in 0..2 {
            tx.send(&msg(seq, 8), None).unwrap();
        }
        t.join().unwrap();
    });
}

/// Messages of 5, 12 and 3 bytes (records of 16, 24 and 16 bytes) through a 32-byte ring:
/// the second does not fit before the end, so it follows a padding record at offset 0.
/// Each arrives whole and in order, and loom checks that no byte is read while written.
#[test]
fn integrity_through_wrap_around() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(32);
        let sizes = [5usize, 12, 3];
        let t = thread::spawn(move || {
            for (seq, &len) in sizes.iter().enumerate() {
                // Zero-copy for one of them: the loan path commits the same way.
                if seq == 1 {
                    let mut loan = tx.loan(len, None).unwrap();
                    loan.write_at(0, &msg(seq as u8, len));
                    loan.commit();
                } else {
                    tx.send(&msg(seq as u8, len), None).unwrap();
                }
            }
        });
        let mut buf = Vec::new();
        for (seq, &len) in sizes.iter().enumerate() {
            let loan = rx.recv_loan(None).unwrap();
            loan.copy_to(&mut buf);
            drop(loan);
            assert_eq!(buf, msg(seq as u8, len), "message {seq}");
        }
        t.join().unwrap();
    });
}

/// `try_send` (a deadline already past) on a full ring is `Timeout` and sends nothing;
/// racing with the consumer, it either fits or not, and the consumer sees exactly what was
/// accepted.
#[test]
fn try_send_on_full_ring() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(16);
        tx.send(&msg(0, 8), None).unwrap();
        let t = thread::spawn(move || {
            let mut buf = Vec::new();
            rx.recv(&mut buf, None).unwrap();
            assert_eq!(buf, msg(0, 8));
            match rx.recv(&mut buf, None) {
                Ok(()) => {
                    assert_eq!(buf, msg(1, 8));
                    1
                }
                Err(RingError::Disconnected) => 0,
                Err(e) => panic!("unexpected {e:?}"),
            }
        });
        let sent = match tx.send(&msg(1, 8), Some(Instant::now())) {
            Ok(()) => 1,
            Err(RingError::Timeout) => 0,
            Err(e) => panic!("unexpected {e:?}"),
        };
        drop(tx);
        assert_eq!(t.join().unwrap(), sent);
    });
}

/// A consumer that drops its end wakes a producer sleeping on a full ring, which then gets
/// `Disconnected`.
#[test]
fn consumer_close_disconnects_sleeping_producer() {
    loom::model(|| {
        let (mut tx, rx) = pair(16);
        tx.send(&msg(0, 8), None).unwrap();
        let t = thread::spawn(move || drop(rx));
        assert_eq!(tx.send(&msg(1, 8), None), Err(RingError::Disconnected));
        t.join().unwrap();
    });
}

/// A timed receive racing with a commit (the modelled futex times out at any point): it
/// either gets the message or times out, and then the message is still there for the next
/// receive. A timeout never swallows a message or a wake-up.
#[test]
fn timed_receive_never_loses_a_message() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(32);
        let t = thread::spawn(move || {
            tx.send(&msg(4, 6), None).unwrap();
            tx
        });
        let mut buf = Vec::new();
        let deadline = Some(Instant::now() + std::time::Duration::from_secs(3600));
        match rx.recv(&mut buf, deadline) {
            Ok(()) => {}
            Err(RingError::Timeout) => rx.recv(&mut buf, None).unwrap(),
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(buf, msg(4, 6));
        drop(t.join().unwrap());
        assert_eq!(rx.recv(&mut buf, None), Err(RingError::Disconnected));
    });
}
