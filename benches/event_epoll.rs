//! The reactor's wake-up cost against raw `epoll_wait`, with 10 and 10,000 idle fds
//! beside one ready fd (an eventfd woken once and never read, so it stays readable).
//!
//! Goals (issue 6): epoll at 10,000 idle fds within 1.2x of epoll at 10, and the
//! reactor within 1.3x of raw `epoll_wait`. `interproc demo multiplex` gives the same
//! figure for select and poll.
//!
//! Then, between two real processes, a 64-byte ping-pong over a pair of shared-memory
//! rings, in the shared groups `latency/64` and `throughput/64` (see `common`): how much
//! waking a receiver that waits in a reactor through the ring's notifier fd costs, next
//! to the ring's own futex sleep:
//!
//! - `shm_notifier/reactor`: rings made with notifiers; each side drains its ring with
//!   non-blocking receives and, once one finds it empty (which arms the notifier), waits
//!   in an epoll `Poller` on the notifier fd;
//! - `shm_futex/sleep`: plain rings; each side blocks in `recv`, which sleeps on the
//!   ring's futex at once (no spinning, like the reactor side);
//! - `shm_futex/spin100`: the same with the ring's default of 100 re-checks before the
//!   sleep.
//!
//! Run: `cargo bench --bench event_epoll` (only the ring rows:
//! `cargo bench --bench event_epoll -- 'latency/64|throughput/64'`).

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{Bytes, Link, Peer};
use criterion::{BenchmarkId, Criterion};
use interproc::ipc::channel::shm::{ShmRing, ShmSink, ShmSource};
use interproc::ipc::channel::{BytesReceiver, BytesSender};
use interproc::ipc::reactor::{
    raise_fd_limit, Backend, Events, Interest, Mode, Poller, Token, Waker,
};
use interproc::ipc::Error;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

const IDLE: [usize; 2] = [10, 10_000];

fn wakeup(c: &mut Criterion) {
    let (soft, _) = raise_fd_limit(IDLE[1] as u64 + 64).unwrap();
    let mut g = c.benchmark_group("event_epoll");
    for n in IDLE {
        if (soft as usize) < n + 64 {
            eprintln!("event_epoll: RLIMIT_NOFILE {soft} is too low for {n} idle fds; skipped");
            continue;
        }
        let idle: Vec<Waker> = (0..n).map(|_| Waker::new().unwrap()).collect();
        let ready = Waker::new().unwrap();
        ready.wake().unwrap();

        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        for (i, w) in idle.iter().enumerate() {
            ep.add(w, EpollEvent::new(EpollFlags::EPOLLIN, i as u64)).unwrap();
        }
        ep.add(&ready, EpollEvent::new(EpollFlags::EPOLLIN, n as u64)).unwrap();
        let mut buf = [EpollEvent::empty(); 64];
        g.bench_with_input(BenchmarkId::new("raw_epoll_wait", n), &n, |b, _| {
            b.iter(|| {
                let k = ep.wait(&mut buf, EpollTimeout::NONE).unwrap();
                assert_eq!(k, 1);
                black_box(buf[0].data())
            })
        });

        let mut p = Poller::new(Backend::Epoll).unwrap();
        for (i, w) in idle.iter().enumerate() {
            p.register(w, Token(i), Interest::READABLE, Mode::LEVEL).unwrap();
        }
        p.register(&ready, Token(n), Interest::READABLE, Mode::LEVEL).unwrap();
        let mut events = Events::with_capacity(64);
        g.bench_with_input(BenchmarkId::new("reactor_epoll", n), &n, |b, _| {
            b.iter(|| {
                let k = p.wait(&mut events, None).unwrap();
                assert_eq!(k, 1);
                black_box(events.iter().next().map(|e| e.token()))
            })
        });
    }
    g.finish();
}

/// Ring capacity: a few 64-byte messages in flight at most.
const RING: usize = 64 << 10;

/// Both directions' rings, made before the fork; each process attaches its own ends.
struct Rings {
    fwd: ShmRing,
    back: ShmRing,
}

impl Rings {
    fn new(notifier: bool) -> Rings {
        let make = if notifier { ShmRing::anonymous_with_notifier } else { ShmRing::anonymous };
        Rings { fwd: make(RING).unwrap(), back: make(RING).unwrap() }
    }

    /// (sink on `fwd`, source on `back`) for the bench; the reverse for the peer.
    fn ends(&self, ours: bool, spin: u32) -> (ShmSink, ShmSource) {
        let (tx, rx) = if ours {
            (self.fwd.sink().unwrap(), self.back.source().unwrap())
        } else {
            (self.back.sink().unwrap(), self.fwd.source().unwrap())
        };
        let (mut tx, mut rx) = (tx, rx);
        tx.set_spin(spin);
        rx.set_spin(spin);
        (tx, rx)
    }
}

/// A receiver waiting in a reactor on the ring's notifier fd.
struct ReactorLink {
    tx: BytesSender<ShmSink>,
    rx: BytesReceiver<ShmSource>,
    poller: Poller,
    events: Events,
    /// A deadline already past: a receive that does not wait.
    past: Instant,
}

impl ReactorLink {
    fn boxed(rings: &Rings, ours: bool) -> Box<dyn Link> {
        let (tx, rx) = rings.ends(ours, 0);
        let rx = BytesReceiver::new(rx);
        let mut poller = Poller::new(Backend::Epoll).unwrap();
        poller.register(rx.fd().unwrap(), Token(0), Interest::READABLE, Mode::LEVEL).unwrap();
        Box::new(ReactorLink {
            tx: BytesSender::new(tx),
            rx,
            poller,
            events: Events::with_capacity(4),
            past: Instant::now(),
        })
    }
}

impl Link for ReactorLink {
    fn send(&mut self, msg: &[u8]) {
        self.tx.send(msg).expect("send");
    }

    fn recv(&mut self) -> Option<u8> {
        loop {
            // Non-blocking: a Timeout means empty, and the notifier is armed.
            match self.rx.recv_ref(Some(self.past)) {
                Ok(m) => return Some(black_box(m)[0]),
                Err(Error::Timeout) => {}
                Err(_) => return None,
            }
            self.poller.wait(&mut self.events, None).expect("poller wait");
        }
    }
}

fn shm_wake_rows(c: &mut Criterion) {
    const SIZE: usize = 64;
    let rings = Rings::new(true);
    let peer =
        Peer::fork(SIZE, || ReactorLink::boxed(&rings, false), || ReactorLink::boxed(&rings, true));
    common::row_with(c, "shm_notifier/reactor", SIZE, peer);
    for (name, spin) in [("shm_futex/sleep", 0), ("shm_futex/spin100", 100)] {
        let rings = Rings::new(false);
        let link = |ours: bool| {
            let (tx, rx) = rings.ends(ours, spin);
            Bytes::boxed(BytesSender::new(tx), BytesReceiver::new(rx))
        };
        let peer = Peer::fork(SIZE, || link(false), || link(true));
        common::row_with(c, name, SIZE, peer);
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    wakeup(&mut c);
    let mut c = common::criterion();
    shm_wake_rows(&mut c);
    c.final_summary();
}
