//! loom models of the multi-producer, multi-consumer ring (`interproc_sync::ring::mpmc`):
//! the production code over a heap ring whose bytes are loom cells and the modelled futex,
//! with the death of a producer injected at every step of its send (`die_at`).
//!
//! A model thread stands for a process (the model's process identity is the thread's), so
//! each handle attaches in the thread that uses it. Messages are a byte or two: every byte
//! is a loom cell, and the models must stay small enough to run in seconds.
//!
//! Run with `.ci/loom`, or:
//! `RUSTFLAGS="--cfg interproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p interproc-sync --release --test loom_ring_mpmc`
#![cfg(interproc_loom)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use interproc_sync::park::model::{self, die_at, died};
use interproc_sync::ring::mpmc::{MpmcConsumer, MpmcError, MpmcHeapMemory, MpmcProducer};
use loom::thread;

type Mem = Arc<MpmcHeapMemory>;

/// Receives what is there without waiting (after the producers were joined, everything
/// they committed is visible).
fn take_all(rx: &mut MpmcConsumer<Mem>) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    loop {
        match rx.recv(&mut buf, Some(model::now())) {
            Ok(()) => got.push(buf.clone()),
            Err(MpmcError::Timeout) => return got,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

/// Two producers, one consumer, one message each through a ring that holds one record at
/// a time (16 bytes): one producer waits for the lock while the other waits for room,
/// and the consumer's releases wake them in turn (a lost wake-up is a loom deadlock).
/// Both messages arrive, once and intact.
#[test]
fn two_producers_one_consumer_every_message_once() {
    loom::model(|| {
        let mem = MpmcHeapMemory::new(16);
        let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let mem = mem.clone();
                thread::spawn(move || {
                    let mut tx = MpmcProducer::attach(mem).unwrap();
                    tx.send(&[p, p + 10], None).unwrap();
                    tx // kept attached: the consumer does not wait for Disconnected here
                })
            })
            .collect();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in 0..2 {
            rx.recv(&mut buf, None).unwrap();
            got.push(buf.clone());
        }
        got.sort();
        assert_eq!(got, vec![vec![0, 10], vec![1, 11]]);
        for p in producers {
            std::mem::forget(p.join().unwrap());
        }
    });
}

/// The last producer's drop wakes a consumer sleeping on the empty ring, which gets the
/// message, then `Disconnected`.
#[test]
fn last_producer_gone_is_disconnected() {
    loom::model(|| {
        let mem = MpmcHeapMemory::new(32);
        let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
        let t = thread::spawn(move || {
            let mut tx = MpmcProducer::attach(mem).unwrap();
            tx.send(&[7], None).unwrap();
        });
        let mut buf = Vec::new();
        rx.recv(&mut buf, None).unwrap();
        assert_eq!(buf, [7]);
        assert_eq!(rx.recv(&mut buf, None), Err(MpmcError::Disconnected));
        t.join().unwrap();
    });
}

/// Two consumers, one producer, two messages: each message goes to exactly one consumer,
/// intact.
#[test]
fn two_consumers_each_message_to_one() {
    loom::model(|| {
        let mem = MpmcHeapMemory::new(64);
        let mut tx = MpmcProducer::attach(mem.clone()).unwrap();
        let other = {
            let mem = mem.clone();
            thread::spawn(move || {
                let mut rx = MpmcConsumer::attach(mem).unwrap();
                let mut buf = Vec::new();
                rx.recv(&mut buf, None).unwrap();
                std::mem::forget(rx);
                buf
            })
        };
        let mut rx = MpmcConsumer::attach(mem).unwrap();
        tx.send(&[1], None).unwrap();
        tx.send(&[2], None).unwrap();
        let mut buf = Vec::new();
        rx.recv(&mut buf, None).unwrap();
        let mut got = vec![buf.clone(), other.join().unwrap()];
        got.sort();
        assert_eq!(got, vec![vec![1], vec![2]]);
    });
}

/// More than the death points on one send (lock, write, header, publish, unlock).
const STEPS: usize = 8;

/// Runs `f` as a process that may die at its k-th death point; returns whether it died.
/// A killed process runs no destructor, so its handle is forgotten either way.
fn may_die(k: usize, tx: MpmcProducer<Mem>, f: impl FnOnce(&mut MpmcProducer<Mem>)) -> bool {
    let mut tx = tx;
    die_at(k);
    let r = catch_unwind(AssertUnwindSafe(|| f(&mut tx)));
    std::mem::forget(tx);
    match r {
        Ok(()) => {
            die_at(usize::MAX);
            false
        }
        Err(e) if died(&*e) => true,
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// A producer dies at every step of its send while another producer sends: the survivor
/// is never blocked by the dead one (it takes the lock over), the consumer never sees a
/// partial message, gets the survivor's message, and the victim's at most once, and
/// always if the victim lived.
#[test]
fn producer_death_at_every_step_of_send() {
    for k in 1..=STEPS {
        loom::model(move || {
            let mem = MpmcHeapMemory::new(64);
            let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
            let victim = {
                let mem = mem.clone();
                thread::spawn(move || {
                    let tx = MpmcProducer::attach(mem).unwrap();
                    may_die(k, tx, |tx| tx.send(&[7, 7, 7], None).unwrap())
                })
            };
            let survivor = {
                let mem = mem.clone();
                thread::spawn(move || {
                    let mut tx = MpmcProducer::attach(mem).unwrap();
                    tx.send(&[1], None).unwrap();
                    std::mem::forget(tx);
                })
            };
            let victim_died = victim.join().unwrap();
            survivor.join().unwrap();
            let got = take_all(&mut rx);
            assert!(got.contains(&vec![1]), "k={k}: the survivor's message is lost: {got:?}");
            let from_victim = got.iter().filter(|m| **m == [7, 7, 7]).count();
            assert_eq!(got.len(), 1 + from_victim, "k={k}: a partial message: {got:?}");
            assert!(from_victim <= 1, "k={k}: duplicated");
            assert!(victim_died || from_victim == 1, "k={k}: a live producer's message lost");
        });
    }
}

/// The only producer dies at every step of its send while the consumer waits: the
/// consumer gets its message if it was committed, and then `Disconnected` (the dead
/// producer's slot is reaped), never a hang.
#[test]
fn dead_last_producer_is_disconnected() {
    for k in 1..=STEPS {
        loom::model(move || {
            let mem = MpmcHeapMemory::new(32);
            let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
            let victim = thread::spawn(move || {
                let tx = MpmcProducer::attach(mem).unwrap();
                may_die(k, tx, |tx| tx.send(&[5], None).unwrap())
            });
            let mut buf = Vec::new();
            let first = rx.recv(&mut buf, None);
            let died = victim.join().unwrap();
            match first {
                Ok(()) => {
                    assert_eq!(buf, [5], "k={k}");
                }
                Err(MpmcError::Disconnected) => {
                    assert!(died, "k={k}: live producer's message lost")
                }
                Err(e) => panic!("k={k}: {e:?}"),
            }
            if first.is_ok() && !died {
                // It lived and its handle was forgotten (still attached): nothing more.
                return;
            }
            if first.is_ok() {
                assert_eq!(rx.recv(&mut buf, None), Err(MpmcError::Disconnected), "k={k}");
            }
        });
    }
}

/// A consumer dies at every step of its receive while another consumer waits: the other
/// takes the consumer lock over and is never blocked, never gets a partial message, and
/// gets the message unless the victim's receive returned with it (a victim that died
/// after releasing it took it along; one that died before left it). The ring then carries
/// on: a later message reaches the survivor.
#[test]
fn consumer_death_at_every_step_of_recv() {
    for k in 1..=STEPS {
        loom::model(move || {
            let mem = MpmcHeapMemory::new(32);
            let mut tx = MpmcProducer::attach(mem.clone()).unwrap();
            tx.send(&[4, 2], None).unwrap();
            let victim = {
                let mem = mem.clone();
                thread::spawn(move || {
                    let mut rx = MpmcConsumer::attach(mem).unwrap();
                    let mut buf = Vec::new();
                    die_at(k);
                    let r = catch_unwind(AssertUnwindSafe(|| rx.recv(&mut buf, None)));
                    std::mem::forget(rx);
                    match r {
                        Ok(r) => {
                            die_at(usize::MAX);
                            r.unwrap();
                            assert_eq!(buf, [4, 2]);
                            true
                        }
                        Err(e) if died(&*e) => false,
                        Err(e) => std::panic::resume_unwind(e),
                    }
                })
            };
            let mut rx = MpmcConsumer::attach(mem).unwrap();
            let victim_got_it = victim.join().unwrap();
            let got = take_all(&mut rx);
            if victim_got_it {
                assert!(got.is_empty(), "k={k}: delivered twice: {got:?}");
            } else {
                assert!(got.is_empty() || got == [vec![4, 2]], "k={k}: {got:?}");
            }
            tx.send(&[9], None).unwrap();
            assert_eq!(take_all(&mut rx), [vec![9]], "k={k}: the ring is stuck after the death");
            std::mem::forget(tx);
        });
    }
}
