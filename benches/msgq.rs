//! System V message queues between two processes: raw `msgsnd`/`msgrcv` (the raw syscall
//! loop) vs interproc's raw-bytes channel vs its typed channel, in the shared groups
//! `latency/<size>` and `throughput/<size>` (see `common`). One private queue per row;
//! the bench sends type 1 and receives type 2, the peer the other way round.
//!
//! A message holds at most `kernel.msgmax` bytes (8192 here by default), so the sizes
//! are 64, 1024 and msgmax instead of 64 KiB and 1 MiB, and the typed row, whose
//! encoding adds a length prefix, stops below msgmax. The bench prints what it skips.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::{Bytes, Link, Typed};
use criterion::Criterion;
use interproc::ipc::msgq::{self, MessageQueue, Select};

/// Plain `msgsnd`/`msgrcv` on one queue: send `out` type, receive `inb` type.
struct Raw {
    id: i32,
    send_type: libc::c_long,
    recv_type: libc::c_long,
    /// A `struct msgbuf`: `long mtype`, then the text; `Vec<c_long>` keeps it aligned.
    out: Vec<libc::c_long>,
    inb: Vec<libc::c_long>,
}

const WORD: usize = std::mem::size_of::<libc::c_long>();

impl Raw {
    fn boxed(q: &MessageQueue, send_type: i64, recv_type: i64, size: usize) -> Box<dyn Link> {
        let words = 1 + size.div_ceil(WORD);
        Box::new(Raw {
            id: q.id(),
            send_type: send_type as libc::c_long,
            recv_type: recv_type as libc::c_long,
            out: vec![0; words],
            inb: vec![0; words],
        })
    }

    fn text_capacity(&self) -> usize {
        (self.out.len() - 1) * WORD
    }
}

impl Link for Raw {
    fn send(&mut self, msg: &[u8]) {
        assert!(msg.len() <= self.text_capacity());
        self.out[0] = self.send_type;
        // SAFETY: `out` holds `WORD + text_capacity()` bytes and `msg` fits after the
        // type word (asserted); the regions do not overlap.
        unsafe {
            let dst = self.out.as_mut_ptr().cast::<u8>().add(WORD);
            std::ptr::copy_nonoverlapping(msg.as_ptr(), dst, msg.len());
        }
        // SAFETY: `out` is a `struct msgbuf` whose text holds `msg.len()` bytes; the
        // kernel reads it during the call only.
        let r = unsafe { libc::msgsnd(self.id, self.out.as_ptr().cast(), msg.len(), 0) };
        assert_eq!(r, 0, "msgsnd: {}", std::io::Error::last_os_error());
    }

    fn recv(&mut self) -> Option<u8> {
        let cap = self.text_capacity();
        // SAFETY: `inb` is a writable `struct msgbuf` with `cap` bytes of text; msgrcv
        // writes at most that.
        let n =
            unsafe { libc::msgrcv(self.id, self.inb.as_mut_ptr().cast(), cap, self.recv_type, 0) };
        if n < 1 {
            return None;
        }
        // The first text byte is the low byte of word 1 on little-endian machines, the
        // high one on big-endian: read it through a byte view either way.
        // SAFETY: `inb` holds at least `WORD + 1` initialised bytes (n >= 1).
        Some(unsafe { *black_box(&self.inb).as_ptr().cast::<u8>().add(WORD) })
    }
}

fn bench(c: &mut Criterion) {
    let msgmax = msgq::limits().unwrap().msgmax;
    let sizes: Vec<usize> = common::SIZES.iter().map(|&s| s.min(msgmax)).collect();
    let mut done = Vec::new();
    for size in sizes {
        if done.contains(&size) {
            continue;
        }
        done.push(size);
        eprintln!("msgq: {size}-byte messages (kernel.msgmax = {msgmax} caps larger sizes)");

        let q = MessageQueue::private().unwrap();
        let (ours, theirs) = (Raw::boxed(&q, 1, 2, size), Raw::boxed(&q, 2, 1, size));
        common::row(c, "msgq/raw", size, ours, theirs);
        drop(q);

        let q = Arc::new(MessageQueue::private().unwrap());
        let ours = Bytes::boxed(
            msgq::bytes_sender(q.clone(), 1).unwrap(),
            msgq::bytes_receiver(q.clone(), Select::Exact(2)).unwrap(),
        );
        let theirs = Bytes::boxed(
            msgq::bytes_sender(q.clone(), 2).unwrap(),
            msgq::bytes_receiver(q.clone(), Select::Exact(1)).unwrap(),
        );
        common::row(c, "msgq/bytes", size, ours, theirs);
        drop(q);

        // postcard puts a varint length in front of a Vec<u8>.
        if size + 8 > msgmax {
            eprintln!("msgq: typed row at {size} bytes skipped: the encoding exceeds msgmax");
            continue;
        }
        let q = Arc::new(MessageQueue::private().unwrap());
        let ours = Typed::boxed(
            msgq::sender(q.clone(), 1).unwrap(),
            msgq::receiver(q.clone(), Select::Exact(2)).unwrap(),
        );
        let theirs = Typed::boxed(
            msgq::sender(q.clone(), 2).unwrap(),
            msgq::receiver(q.clone(), Select::Exact(1)).unwrap(),
        );
        common::row(c, "msgq/typed", size, ours, theirs);
    }
}

fn main() {
    let mut c = common::criterion();
    bench(&mut c);
    c.final_summary();
}
