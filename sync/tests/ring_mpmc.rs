//! The MPMC ring (`interproc_sync::ring::mpmc`) with real threads and real processes:
//! exactly-once delivery with 4 producers × 4 consumers, the typed errors, and processes
//! that die holding a side's lock in the middle of a send or a receive (forked children
//! over a memfd segment, under a watchdog).
//!
//! No test asserts how long anything takes.
#![cfg(not(interproc_loom))]
#![allow(clippy::disallowed_methods)] // std::thread: these tests run real threads

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use interproc_sync::ring::mpmc::{
    MpmcConsumer, MpmcError, MpmcHeader, MpmcHeapMemory, MpmcProducer, MAX_PEERS,
};
use interproc_sync::shm::{Segment, SegmentOptions};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

fn deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(60))
}

fn msg(p: u64, seq: u64) -> Vec<u8> {
    let len = 8 + (seq as usize * 53) % 400;
    let mut v = ((p << 32) | seq).to_le_bytes().to_vec();
    v.extend((0..len - 8).map(|i| (seq as u8).wrapping_mul(7).wrapping_add(i as u8)));
    v
}

fn check(m: &[u8]) -> (u64, u64) {
    let id = u64::from_le_bytes(m[..8].try_into().unwrap());
    let (p, seq) = (id >> 32, id & 0xffff_ffff);
    assert_eq!(m, msg(p, seq), "message {p}/{seq} corrupt or partial");
    (p, seq)
}

/// 4 producer threads × 4 consumer threads, 5,000 messages each, through a 4 KiB ring:
/// every message exactly once, in each producer's order at each consumer; all consumers
/// end with `Disconnected`.
#[test]
fn four_by_four_exactly_once() {
    const N: u64 = 5_000;
    let mem = MpmcHeapMemory::new(4096);
    // The producers attach before any consumer runs, so that no consumer takes "the first
    // producers finished" for "all gone" while another has not attached yet.
    let got = Mutex::new(Vec::new());
    let txs: Vec<_> = (0..4).map(|_| MpmcProducer::attach(mem.clone()).unwrap()).collect();
    thread::scope(|s| {
        for (p, mut tx) in txs.into_iter().enumerate() {
            s.spawn(move || {
                for seq in 0..N {
                    tx.send(&msg(p as u64, seq), deadline()).unwrap();
                }
            });
        }
        for _ in 0..4 {
            let (mem, got) = (mem.clone(), &got);
            s.spawn(move || {
                let mut rx = MpmcConsumer::attach(mem).unwrap();
                let mut buf = Vec::new();
                let mut mine = Vec::new();
                let mut last = [None::<u64>; 4];
                loop {
                    match rx.recv(&mut buf, deadline()) {
                        Ok(()) => {
                            let (p, seq) = check(&buf);
                            assert!(last[p as usize].is_none_or(|l| seq > l), "out of order");
                            last[p as usize] = Some(seq);
                            mine.push((p, seq));
                        }
                        Err(MpmcError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                got.lock().unwrap().extend(mine);
            });
        }
    });
    let mut got = got.into_inner().unwrap();
    got.sort_unstable();
    let want: Vec<_> = (0..4).flat_map(|p| (0..N).map(move |s| (p, s))).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "a message lost or duplicated");
}

#[test]
fn typed_errors() {
    let mem = MpmcHeapMemory::new(64);
    let mut tx = MpmcProducer::attach(mem.clone()).unwrap();
    assert_eq!(tx.send(&[0; 57], None), Err(MpmcError::TooLarge { size: 57, max: 56 }));
    // Full: a past deadline is Timeout, and nothing is sent.
    tx.send(&[1; 56], None).unwrap();
    assert_eq!(tx.send(&[2; 8], Some(Instant::now())), Err(MpmcError::Timeout));
    let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
    let mut buf = Vec::new();
    rx.recv(&mut buf, None).unwrap();
    assert_eq!(buf, [1; 56]);
    assert_eq!(rx.recv(&mut buf, Some(Instant::now())), Err(MpmcError::Timeout));
    // The slots of one side are limited.
    let more: Vec<_> = (1..MAX_PEERS).map(|_| MpmcProducer::attach(mem.clone()).unwrap()).collect();
    assert_eq!(
        MpmcProducer::attach(mem.clone()).unwrap_err(),
        MpmcError::TooManyPeers { side: "producer", max: MAX_PEERS }
    );
    drop(more);
    // A consumer dropped: a producer that must wait for room gets Disconnected.
    drop(rx);
    tx.send(&[3; 56], None).unwrap();
    assert_eq!(tx.send(&[4; 56], None), Err(MpmcError::Disconnected));
    // A wrong capacity or magic is Invalid.
    assert!(matches!(MpmcHeader::new(64).validate(32), Err(MpmcError::Invalid { .. })));
}

type Shared = Arc<Segment<MpmcHeader>>;

fn segment(capacity: usize) -> Shared {
    let opts = SegmentOptions::default().with_extra(capacity);
    Arc::new(Segment::anonymous_with(MpmcHeader::new(capacity), &opts).unwrap())
}

/// Runs `f` in a forked child that then `_exit`s with `f`'s code, without unwinding or
/// destructors (as a process killed at that point).
fn fork_child(f: impl FnOnce() -> i32) -> Pid {
    // SAFETY: the child only runs the ring (atomics, copies, futex syscalls, a /proc
    // read) and `_exit`s: no unwinding or harness code runs in it.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = f();
            // SAFETY: `_exit` skips atexit handlers and destructors, which must not run
            // in a forked child (and a killed process runs none).
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn reap(child: Pid) -> WaitStatus {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive if Instant::now() < until => {
                thread::sleep(Duration::from_millis(2))
            }
            WaitStatus::StillAlive => {
                let _ = kill(child, Signal::SIGKILL);
                panic!("watchdog: child {child} hung; killed it");
            }
            st => return st,
        }
    }
}

/// Handles attached by this process, copied into a forked child: there they refuse with
/// `ForkedCopy` (the slots and the ring are the parent's), and dropping them detaches
/// nothing, so the parent's producer and consumer go on.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn fork_copies_of_the_handles_refuse() {
    let mem = segment(4096);
    let mut tx = MpmcProducer::attach(mem.clone()).unwrap();
    let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
    tx.send(&msg(0, 0), None).unwrap();
    let parent = std::process::id();
    // SAFETY: the child only runs the ring on the copies and `_exit`s: no unwinding or
    // harness code runs in it.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            let me = std::process::id();
            let sent = tx.send(&msg(9, 0), None);
            let mut buf = Vec::new();
            let got = rx.recv(&mut buf, Some(Instant::now()));
            let code = match (sent, got) {
                (Ok(()), _) => 1,
                (_, Ok(())) => 2,
                (
                    Err(MpmcError::ForkedCopy { side: "producer", owner: o1, pid: p1 }),
                    Err(MpmcError::ForkedCopy { side: "consumer", owner: o2, pid: p2 }),
                ) if o1 == parent && o2 == parent && p1 == me && p2 == me => 0,
                _ => 3,
            };
            drop((tx, rx));
            // SAFETY: `_exit` skips atexit handlers and destructors, which must not run in
            // a forked child.
            unsafe { libc::_exit(code) }
        }
    };
    assert_eq!(
        reap(child),
        WaitStatus::Exited(child, 0),
        "the child's copies did not refuse with ForkedCopy (1: sent, 2: received, 3: another \
         error)"
    );
    assert_eq!((mem.producers(), mem.consumers()), (1, 1), "the child's drop detached a handle");
    let mut buf = Vec::new();
    rx.recv(&mut buf, deadline()).unwrap();
    assert_eq!(check(&buf), (0, 0));
    tx.send(&msg(0, 1), None).unwrap();
    rx.recv(&mut buf, deadline()).unwrap();
    assert_eq!(check(&buf), (0, 1));
    assert_eq!(rx.recv(&mut buf, Some(Instant::now())), Err(MpmcError::Timeout));
}

/// A producer process commits one message, then dies holding the producer lock in the
/// middle of a second (half written): another producer takes the lock over and goes on;
/// the consumer gets the committed message and the other's, never the partial one; once
/// the other producer drops, the dead one's slot is reaped and the consumer gets
/// `Disconnected`.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn producer_dies_holding_the_lock_mid_write() {
    let mem = segment(4096);
    let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
    let child = fork_child(|| {
        let Ok(mut tx) = MpmcProducer::attach(mem.clone()) else { return 2 };
        if tx.send(&msg(9, 0), None).is_err() {
            return 3;
        }
        let m = msg(9, 1);
        let Ok(mut loan) = tx.loan(m.len(), None) else { return 4 };
        loan.write_at(0, &m[..m.len() / 2]);
        std::mem::forget(loan); // the lock stays held, the record unpublished
        std::mem::forget(tx);
        0
    });
    assert_eq!(reap(child), WaitStatus::Exited(child, 0));
    let mut tx = MpmcProducer::attach(mem.clone()).unwrap();
    tx.send(&msg(1, 0), deadline()).unwrap();
    let mut buf = Vec::new();
    rx.recv(&mut buf, deadline()).unwrap();
    assert_eq!(check(&buf), (9, 0));
    rx.recv(&mut buf, deadline()).unwrap();
    assert_eq!(check(&buf), (1, 0), "the dead producer's partial message was exposed");
    drop(tx);
    assert_eq!(rx.recv(&mut buf, deadline()), Err(MpmcError::Disconnected));
    assert_eq!(mem.producers(), 0, "the dead producer's slot was not reaped");
}

/// A consumer process dies holding the consumer lock in the middle of a zero-copy read:
/// the message was never released, so the next consumer takes the lock over and gets it.
#[test]
#[cfg_attr(miri, ignore = "Miri cannot fork")]
fn consumer_dies_holding_the_lock_mid_read() {
    let mem = segment(4096);
    let mut tx = MpmcProducer::attach(mem.clone()).unwrap();
    tx.send(&msg(0, 0), None).unwrap();
    tx.send(&msg(0, 1), None).unwrap();
    let child = fork_child(|| {
        let Ok(mut rx) = MpmcConsumer::attach(mem.clone()) else { return 2 };
        let Ok(loan) = rx.recv_loan(None) else { return 3 };
        let ok = check(&loan) == (0, 0);
        std::mem::forget(loan); // dies holding the lock, the record unreleased
        std::mem::forget(rx);
        if ok {
            0
        } else {
            4
        }
    });
    assert_eq!(reap(child), WaitStatus::Exited(child, 0));
    let mut rx = MpmcConsumer::attach(mem.clone()).unwrap();
    let mut buf = Vec::new();
    rx.recv(&mut buf, deadline()).unwrap();
    assert_eq!(check(&buf), (0, 0), "the unreleased message is delivered again");
    rx.recv(&mut buf, deadline()).unwrap();
    assert_eq!(check(&buf), (0, 1));
    // The dead consumer's slot is reaped when a producer must wait: drop ours, fill the
    // ring, and the producer gets Disconnected rather than a hang.
    drop(rx);
    let r = (0..100).try_for_each(|s| tx.send(&msg(0, s), deadline()));
    assert_eq!(r, Err(MpmcError::Disconnected));
}
