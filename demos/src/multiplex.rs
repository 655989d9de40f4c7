//! `interproc demo multiplex`: select vs poll vs epoll as the number of idle fds grows.
//!
//! For each N in `--fds`, the demo opens N idle eventfds and one ready eventfd (woken
//! once and never read, so it stays readable under level-triggered mode), registers all
//! N+1 with each backend, and times many waits: each wait returns exactly that one ready
//! fd. The ready fd is opened last, so it has the highest number: poll and select scan
//! every entry below it on every call, while epoll hands back its ready list.
//!
//! select cannot hold a fd at or above FD_SETSIZE (1024): its rows past that are "not
//! possible", with the library's error as the reason. N fds need RLIMIT_NOFILE above N:
//! the demo raises the soft limit up to the hard limit and says so, and a row that still
//! cannot get its fds is "not possible" with that reason.

use std::time::{Duration, Instant};

use clap::Args;
use interproc::ipc::reactor::{self, Backend, Events, Interest, Mode, Poller, Token, Waker};
use interproc::ipc::Error;
use serde::Serialize;

/// Options of `interproc demo multiplex`.
#[derive(Args, Debug)]
pub struct MultiplexArgs {
    /// Idle fd counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    fds: Vec<u32>,
    /// Time spent measuring each (backend, fds) row, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    millis: u64,
    /// Print a single JSON object as the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Debug)]
struct Row {
    backend: &'static str,
    fds: u32,
    /// `None` when the row is not possible.
    ns_per_wakeup: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct Summary {
    rows: Vec<Row>,
    rlimit_nofile_soft: u64,
    rlimit_nofile_hard: u64,
}

/// Fds a run needs besides the idle ones: the ready one, an epoll fd, stdio, slack.
const SPARE_FDS: u64 = 64;

/// Times waits on `poller`, which must report exactly the ready fd each time.
fn measure(poller: &mut Poller, ready: Token, budget: Duration) -> Result<f64, String> {
    let mut events = Events::with_capacity(8);
    let check = |events: &Events| {
        let toks: Vec<Token> = events.iter().map(|e| e.token()).collect();
        if toks != [ready] {
            return Err(format!("expected only the ready fd, got {toks:?}"));
        }
        Ok(())
    };
    let err = |e: Error| format!("wait: {e}");
    // Warm up: page in the structures, settle the caches.
    for _ in 0..16 {
        poller.wait(&mut events, Some(Duration::from_secs(5))).map_err(err)?;
        check(&events)?;
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        for _ in 0..32 {
            poller.wait(&mut events, Some(Duration::from_secs(5))).map_err(err)?;
        }
        n += 32;
        check(&events)?;
        let el = start.elapsed();
        if el >= budget {
            return Ok(el.as_nanos() as f64 / n as f64);
        }
    }
}

/// Registers `idle` then `ready` with a new poller of `backend`.
fn poller_for(backend: Backend, idle: &[Waker], ready: &Waker) -> Result<Poller, Error> {
    let mut p = Poller::new(backend)?;
    for (i, w) in idle.iter().enumerate() {
        p.register(w, Token(i), Interest::READABLE, Mode::LEVEL)?;
    }
    p.register(ready, Token(idle.len()), Interest::READABLE, Mode::LEVEL)?;
    Ok(p)
}

/// Opens `n` eventfds; an `EMFILE` becomes a reason naming the limit.
fn open_idle(n: u32, soft: u64) -> Result<Vec<Waker>, String> {
    let mut v = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match Waker::new() {
            Ok(w) => v.push(w),
            Err(Error::Os { errno: nix::errno::Errno::EMFILE, .. }) => {
                return Err(format!(
                    "{n} idle fds do not fit under the RLIMIT_NOFILE soft limit {soft} (raised \
                     as far as the hard limit allows; root can raise that with `ulimit -Hn`)"
                ))
            }
            Err(e) => return Err(format!("opening {n} eventfds: {e}")),
        }
    }
    Ok(v)
}

/// Runs the demo; returns the exit status.
pub fn run(args: MultiplexArgs) -> i32 {
    let max = args.fds.iter().copied().max().unwrap_or(0) as u64;
    let (soft0, _) = match reactor::raise_fd_limit(0) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("interproc demo multiplex: getrlimit: {e}");
            return 2;
        }
    };
    let (soft, hard) = match reactor::raise_fd_limit(max + SPARE_FDS) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("interproc demo multiplex: setrlimit(RLIMIT_NOFILE): {e}");
            return 2;
        }
    };
    if soft > soft0 {
        println!("raised the RLIMIT_NOFILE soft limit from {soft0} to {soft} (hard limit {hard})");
    }
    if soft < max + SPARE_FDS {
        println!(
            "RLIMIT_NOFILE: {} fds wanted, hard limit is {hard}; larger rows will not be possible",
            max + SPARE_FDS
        );
    }
    let budget = Duration::from_millis(args.millis);
    println!(
        "one wake-up with N idle fds + 1 ready fd (eventfds, level-triggered), {} ms per row",
        args.millis
    );
    let mut rows = Vec::new();
    for &n in &args.fds {
        let idle = match open_idle(n, soft) {
            Ok(v) => v,
            Err(reason) => {
                for b in Backend::ALL {
                    rows.push(Row {
                        backend: b.name(),
                        fds: n,
                        ns_per_wakeup: None,
                        reason: Some(reason.clone()),
                    });
                }
                continue;
            }
        };
        let ready = match Waker::new().and_then(|w| w.wake().map(|()| w)) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("interproc demo multiplex: ready eventfd: {e}");
                return 2;
            }
        };
        for b in Backend::ALL {
            let row = match poller_for(b, &idle, &ready) {
                Ok(mut p) => match measure(&mut p, Token(idle.len()), budget) {
                    Ok(ns) => Row {
                        backend: b.name(),
                        fds: n,
                        ns_per_wakeup: Some(ns.round()),
                        reason: None,
                    },
                    Err(e) => {
                        eprintln!("interproc demo multiplex: {b} with {n} fds: {e}");
                        return 1;
                    }
                },
                Err(e @ Error::FdTooLarge { .. }) => Row {
                    backend: b.name(),
                    fds: n,
                    ns_per_wakeup: None,
                    reason: Some(e.to_string()),
                },
                Err(e) => {
                    eprintln!("interproc demo multiplex: {b} with {n} fds: {e}");
                    return 1;
                }
            };
            match (row.ns_per_wakeup, &row.reason) {
                (Some(ns), _) => {
                    println!("{:>7} {:>7} fds {:>12.0} ns/wake-up", row.backend, n, ns)
                }
                (None, Some(r)) => println!("{:>7} {:>7} fds  not possible: {r}", row.backend, n),
                (None, None) => unreachable!("a row has a figure or a reason"),
            }
            rows.push(row);
        }
    }
    // The claim under test: select/poll cost grows with all fds, epoll's with ready ones.
    let (lo, hi) = (args.fds.iter().min(), args.fds.iter().max());
    if let (Some(&lo), Some(&hi)) = (lo, hi) {
        if hi > lo {
            for b in Backend::ALL {
                let at = |n| {
                    rows.iter()
                        .find(|r| r.backend == b.name() && r.fds == n)
                        .and_then(|r| r.ns_per_wakeup)
                };
                if let (Some(a), Some(z)) = (at(lo), at(hi)) {
                    println!("{b}: {hi} idle fds cost {:.1}x what {lo} do", z / a);
                }
            }
        }
    }
    if args.json {
        let s = Summary { rows, rlimit_nofile_soft: soft, rlimit_nofile_hard: hard };
        println!("{}", serde_json::to_string(&s).expect("summary serialises"));
    }
    0
}
