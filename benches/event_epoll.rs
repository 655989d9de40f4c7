//! The reactor's wake-up cost against raw `epoll_wait`, with 10 and 10,000 idle fds
//! beside one ready fd (an eventfd woken once and never read, so it stays readable).
//!
//! Goals (issue 6): epoll at 10,000 idle fds within 1.2x of epoll at 10, and the
//! reactor within 1.3x of raw `epoll_wait`. `interproc demo multiplex` gives the same
//! figure for select and poll.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use interproc::ipc::reactor::{
    raise_fd_limit, Backend, Events, Interest, Mode, Poller, Token, Waker,
};
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

criterion_group!(benches, wakeup);
criterion_main!(benches);
