//! `interproc demo philosophers`: the dining philosophers, with deadlock detection.
//!
//! N philosophers sit at a round table with one fork between each pair; philosopher `i`
//! needs fork `i` (left) and fork `(i + 1) % N` (right) to eat. The forks are
//! `interproc::sync::Mutex`es labelled `fork 0` … `fork N-1`; each philosopher is a thread.
//!
//! - **`deadlock`**: everyone takes the left fork, waits at a barrier until all hold one
//!   (so the deadlock is certain, not a matter of luck), then reaches for the right fork.
//!   The fork mutexes use the `Error` deadlock policy, so the philosopher whose wait closes
//!   the cycle gets the report from `lock_checked`, puts its left fork down and leaves
//!   hungry; the others then eat and the program ends. Needs the cargo feature
//!   `deadlock-detection`: without it this mode would hang, so it refuses to run.
//! - **`ordered`**: forks are taken in one global order (the lower number first), which
//!   breaks the circular wait; everyone eats every round.
//! - **`waiter`**: a semaphore of N-1 seats (the classic waiter) lets at most N-1 sit, so
//!   at least one seated philosopher can take both forks; everyone eats every round. (The
//!   lock order is still circular, which the detector reports as a potential deadlock.)
//!
//! Exit status 0 when the mode behaved as designed (the deadlock was found in `deadlock`
//! mode with a cycle of all N forks; every meal eaten in the others), 1 otherwise, 2 when
//! the mode cannot run in this build.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::thread;

use clap::{Args, ValueEnum};
use interproc::sync::{Mutex, Semaphore};
use serde::Serialize;

/// How the philosophers take their forks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Left fork, then right: a certain deadlock, detected and broken.
    Deadlock,
    /// The lower-numbered fork first: no circular wait.
    Ordered,
    /// At most N-1 seated (a semaphore): no circular wait can close.
    Waiter,
}

/// Options of `interproc demo philosophers`.
#[derive(Args, Debug)]
pub struct PhilosophersArgs {
    /// How many philosophers (and forks).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=64))]
    philosophers: u32,
    /// How they take their forks.
    #[arg(long, value_enum, default_value_t = Mode::Deadlock)]
    mode: Mode,
    /// Rounds of meals (`ordered` and `waiter`; `deadlock` runs one round).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rounds: u32,
    /// Print a single JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Each philosopher is its own OS process; the forks are process-shared robust
    /// mutexes (and the waiter's seats a process-shared semaphore) in a shared segment.
    #[arg(long)]
    processes: bool,
}

#[derive(Serialize)]
struct Summary {
    mode: Mode,
    philosophers: u32,
    /// Philosophers are processes (`--processes`), not threads.
    processes: bool,
    rounds: u32,
    /// A wait-for cycle was found at run time.
    deadlock_detected: bool,
    /// The labels of the forks in the cycle, in cycle order.
    cycle: Vec<String>,
    meals: u64,
    expected_meals: u64,
    /// Lock-order inversions the detector reported (potential deadlocks).
    potential_deadlocks: usize,
    /// Whether this build has deadlock detection.
    detection: bool,
    /// The deadlock report, as the detector's JSON.
    report: Option<serde_json::Value>,
}

/// What one run found.
#[derive(Default)]
struct Outcome {
    meals: u64,
    /// The report a philosopher got from `lock_checked`: (text, JSON, cycle labels).
    deadlock: Option<(String, serde_json::Value, Vec<String>)>,
    potential: Vec<String>,
}

pub fn run(a: PhilosophersArgs) -> i32 {
    let n = a.philosophers as usize;
    let rounds = if a.mode == Mode::Deadlock { 1 } else { a.rounds };
    if a.mode == Mode::Deadlock && !cfg!(feature = "deadlock-detection") {
        eprintln!(
            "interproc demo philosophers --mode deadlock needs deadlock detection, which this \
             build lacks (it would hang): rebuild with `--features deadlock-detection`"
        );
        return 2;
    }
    #[cfg(feature = "deadlock-detection")]
    {
        // The demo prints the report itself.
        interproc::sync::deadlock::set_logging(false);
        let _ = interproc::sync::deadlock::take_reports();
    }
    let mut outcome = if a.processes {
        match processes::dine(n, a.mode, rounds) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("interproc demo philosophers --processes: {e}");
                return 1;
            }
        }
    } else {
        threads(n, a.mode, rounds)
    };
    collect_reports(&mut outcome);

    let expected =
        if a.mode == Mode::Deadlock { n as u64 - 1 } else { n as u64 * u64::from(rounds) };
    let ok = match a.mode {
        Mode::Deadlock => outcome.deadlock.as_ref().is_some_and(|d| d.2.len() == n),
        Mode::Ordered | Mode::Waiter => outcome.meals == expected && outcome.deadlock.is_none(),
    };
    let summary = Summary {
        mode: a.mode,
        philosophers: a.philosophers,
        processes: a.processes,
        rounds,
        deadlock_detected: outcome.deadlock.is_some(),
        cycle: outcome.deadlock.as_ref().map(|d| d.2.clone()).unwrap_or_default(),
        meals: outcome.meals,
        expected_meals: expected,
        potential_deadlocks: outcome.potential.len(),
        detection: cfg!(feature = "deadlock-detection"),
        report: outcome.deadlock.as_ref().map(|d| d.1.clone()),
    };
    print_text(&summary, &outcome, ok);
    if a.json {
        println!("{}", serde_json::to_string(&summary).expect("the summary serialises"));
    }
    i32::from(!ok)
}

/// Philosophers as threads of this process.
fn threads(n: usize, mode: Mode, rounds: u32) -> Outcome {
    let forks: Vec<Mutex<u64>> = (0..n).map(|i| fork(i, mode)).collect();
    let meals = AtomicU64::new(0);
    let mut outcome = match mode {
        Mode::Deadlock => deadlock_round(&forks, &meals),
        Mode::Ordered | Mode::Waiter => {
            let seats = Semaphore::new(n as u32 - 1).labelled("seats");
            let seats = (mode == Mode::Waiter).then_some(&seats);
            dine(&forks, seats, rounds, &meals);
            Outcome::default()
        }
    };
    outcome.meals = meals.load(Ordering::Relaxed);
    outcome
}

/// Fork `i`, labelled for the reports; in `deadlock` mode the philosopher whose wait closes
/// the cycle gets the report back from `lock_checked`.
fn fork(i: usize, mode: Mode) -> Mutex<u64> {
    let m = Mutex::new(0).labelled(format!("fork {i}"));
    #[cfg(feature = "deadlock-detection")]
    let m = if mode == Mode::Deadlock {
        m.deadlock_policy(interproc::sync::deadlock::Policy::Error)
    } else {
        m
    };
    #[cfg(not(feature = "deadlock-detection"))]
    let _ = mode;
    m
}

fn spawn_named<'s, T: Send + 's>(
    s: &'s thread::Scope<'s, '_>,
    i: usize,
    f: impl FnOnce() -> T + Send + 's,
) -> thread::ScopedJoinHandle<'s, T> {
    thread::Builder::new()
        .name(format!("philosopher {i}"))
        .spawn_scoped(s, f)
        .expect("spawn a philosopher thread")
}

/// Everyone takes the left fork, all hold one, everyone reaches right.
#[cfg(feature = "deadlock-detection")]
fn deadlock_round(forks: &[Mutex<u64>], meals: &AtomicU64) -> Outcome {
    use interproc::sync::deadlock::CheckedLockError;
    let n = forks.len();
    let all_hold_left = Barrier::new(n);
    let got: Vec<Option<interproc::sync::deadlock::Report>> = thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let all_hold_left = &all_hold_left;
                spawn_named(s, i, move || {
                    let mut left = forks[i].lock().unwrap_or_else(|e| e.into_inner());
                    all_hold_left.wait();
                    match forks[(i + 1) % n].lock_checked() {
                        Ok(mut right) => {
                            *left += 1;
                            *right += 1;
                            meals.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        // Breaking the deadlock: put the left fork down (by returning), hungry.
                        Err(CheckedLockError::Deadlock(d)) => Some(d.into_report()),
                        Err(CheckedLockError::Poisoned(p)) => panic!("{p}"),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("a philosopher panicked")).collect()
    });
    let mut outcome = Outcome::default();
    if let Some(r) = got.into_iter().flatten().next() {
        let json = serde_json::from_str(&r.to_json()).expect("the report is JSON");
        outcome.deadlock = Some((r.to_string(), json, r.locks()));
    }
    outcome
}

#[cfg(not(feature = "deadlock-detection"))]
fn deadlock_round(_forks: &[Mutex<u64>], _meals: &AtomicU64) -> Outcome {
    unreachable!("deadlock mode refuses to run without detection (checked in `run`)")
}

/// `rounds` rounds in which everyone eats once: forks in global order, or (with `seats`)
/// left then right after taking a seat.
fn dine(forks: &[Mutex<u64>], seats: Option<&Semaphore>, rounds: u32, meals: &AtomicU64) {
    let n = forks.len();
    let round = Barrier::new(n);
    thread::scope(|s| {
        for i in 0..n {
            let round = &round;
            spawn_named(s, i, move || {
                let (left, right) = (i, (i + 1) % n);
                let (first, second) = match seats {
                    Some(_) => (left, right),
                    None => (left.min(right), left.max(right)),
                };
                for _ in 0..rounds {
                    round.wait(); // everyone reaches for forks at once, every round
                    let _seat = seats.map(Semaphore::acquire);
                    let mut a = forks[first].lock().unwrap_or_else(|e| e.into_inner());
                    let mut b = forks[second].lock().unwrap_or_else(|e| e.into_inner());
                    *a += 1;
                    *b += 1;
                    meals.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
}

/// The detector's other findings: inversions (potential deadlocks), and a run-time cycle
/// reported (not returned) in the modes that must not have one.
fn collect_reports(outcome: &mut Outcome) {
    #[cfg(feature = "deadlock-detection")]
    for r in interproc::sync::deadlock::take_reports() {
        use interproc::sync::deadlock::ReportKind;
        match r.kind {
            ReportKind::LockOrderInversion => outcome.potential.push(r.to_string()),
            _ if r.kind.is_deadlock() && outcome.deadlock.is_none() => {
                let json = serde_json::from_str(&r.to_json()).expect("the report is JSON");
                outcome.deadlock = Some((r.to_string(), json, r.locks()));
            }
            _ => {}
        }
    }
    #[cfg(not(feature = "deadlock-detection"))]
    let _ = outcome;
}

fn print_text(s: &Summary, o: &Outcome, ok: bool) {
    println!(
        "{} philosophers, mode {}, {} round(s), {}, deadlock detection {}",
        s.philosophers,
        s.mode.to_possible_value().expect("no skipped variants").get_name(),
        s.rounds,
        if s.processes { "processes" } else { "threads" },
        if s.detection { "on" } else { "off" }
    );
    if let Some((text, _, cycle)) = &o.deadlock {
        println!("deadlock detected: a cycle of {} forks: {}", cycle.len(), cycle.join(" -> "));
        for line in text.lines() {
            println!("  {line}");
        }
        if s.mode == Mode::Deadlock {
            println!(
                "broken: the philosopher that closed the cycle got the report (Error policy), \
                 put its left fork down and left hungry; the others ate"
            );
        }
    }
    for p in &o.potential {
        for line in p.lines() {
            println!("  {line}");
        }
    }
    if s.mode == Mode::Waiter && !o.potential.is_empty() {
        println!("(the lock order is circular; the n-1 seats are what prevents the deadlock)");
    }
    println!(
        "meals: {} of {} expected: {}",
        s.meals,
        s.expected_meals,
        if ok { "as designed" } else { "NOT as designed" }
    );
}

/// `--processes`: each philosopher is a forked process; the forks are process-shared,
/// robust mutexes in one anonymous shared segment, and the waiter's seats a process-shared
/// semaphore. In `deadlock` mode the cycle is found across processes through the registry
/// in shared memory (`interproc::sync::deadlock::shared`; `interproc deadlocks` shows it
/// while it lasts) and broken with the `Error` policy: the philosopher that closed it
/// gets `LockError::Deadlock` from `lock_checked`, sends the report to the parent through
/// a pipe, puts its left fork down and leaves. The order in which the philosophers took
/// their forks goes to the lock-order table beside the registry; the parent reads the
/// inversions there (a circular order in `deadlock` and `waiter` modes, none in `ordered`).
mod processes {
    #![allow(clippy::disallowed_types)] // std's atomics in shared memory, as in `sync`

    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    use interproc::sync::process::{Mutex, Semaphore};
    use interproc::sync::shm::{Segment, ShmSafe};
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, pipe, ForkResult, Pid};

    use super::{Mode, Outcome};

    /// The most philosophers (the `--philosophers` range).
    const MAX: usize = 64;
    /// How long the children may take before the parent kills them and fails.
    const WATCHDOG: Duration = Duration::from_secs(120);

    #[repr(C)]
    struct Table {
        forks: [Mutex<u64>; MAX],
        seats: Semaphore,
        meals: AtomicU64,
        /// Philosophers holding their left fork (deadlock mode) or seated at the table.
        ready: AtomicU32,
    }

    // SAFETY: `#[repr(C)]`; process-shared primitives and atomics, no pointers.
    unsafe impl ShmSafe for Table {}

    pub(super) fn dine(n: usize, mode: Mode, rounds: u32) -> Result<Outcome, String> {
        let table = Segment::anonymous(Table {
            forks: std::array::from_fn(|_| Mutex::new(0)),
            seats: Semaphore::new(n as u32 - 1),
            meals: AtomicU64::new(0),
            ready: AtomicU32::new(0),
        })
        .map_err(|e| format!("cannot create the shared table: {e}"))?;
        for (i, f) in table.forks.iter().take(n).enumerate() {
            f.set_label(&format!("fork {i}"));
        }
        let (rx, tx): (OwnedFd, OwnedFd) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let mut kids = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: this program is single-threaded here; the child uses inherited
            // memory, futexes, `/proc` reads, shm calls and malloc, then `_exit`s.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(rx);
                    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        philosopher(&table, i, n, mode, rounds, tx)
                    }))
                    .unwrap_or(101);
                    // SAFETY: ends the child at once, without the parent's handlers.
                    unsafe { libc::_exit(code) }
                }
                Ok(ForkResult::Parent { child }) => kids.push(child),
                Err(e) => {
                    kill_all(&kids);
                    return Err(format!("fork: {e}"));
                }
            }
        }
        drop(tx);
        let waited = wait_all(&kids);
        // Read (and so removed) even if a philosopher failed: all of them have ended.
        let potential = order_inversions(&kids);
        let failed = waited?;
        let mut sent = String::new();
        std::fs::File::from(rx).read_to_string(&mut sent).map_err(|e| format!("pipe: {e}"))?;
        if failed > 0 {
            return Err(format!("{failed} philosopher process(es) failed"));
        }
        let mut outcome =
            Outcome { meals: table.meals.load(SeqCst), potential, ..Outcome::default() };
        if let Some((json, text)) = sent.split_once('\n') {
            let json: serde_json::Value =
                serde_json::from_str(json).map_err(|e| format!("bad report: {e}"))?;
            let cycle = json["parties"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p["waits_for"]["label"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            outcome.deadlock = Some((text.trim_end().to_owned(), json, cycle));
        }
        Ok(outcome)
    }

    /// Philosopher `i`; the exit status of its process.
    fn philosopher(t: &Table, i: usize, n: usize, mode: Mode, rounds: u32, tx: OwnedFd) -> i32 {
        let name = std::ffi::CString::new(format!("philosopher {i}")).expect("no NUL");
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes (longer
        // ones are truncated by the kernel); `name` lives across the call.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        let (left, right) = (i, (i + 1) % n);
        let lock = |k: usize| match t.forks[k].lock() {
            Ok(g) => g,
            Err(e) => panic!("fork {k}: {e}"),
        };
        match mode {
            Mode::Deadlock => deadlock(t, left, right, n, tx),
            Mode::Ordered | Mode::Waiter => {
                let (first, second) = if mode == Mode::Waiter {
                    (left, right)
                } else {
                    (left.min(right), left.max(right))
                };
                for _ in 0..rounds {
                    let _seat = (mode == Mode::Waiter)
                        .then(|| t.seats.acquire().unwrap_or_else(|e| panic!("seats: {e}")));
                    let mut a = lock(first);
                    let mut b = lock(second);
                    *a += 1;
                    *b += 1;
                    t.meals.fetch_add(1, SeqCst);
                }
                0
            }
        }
    }

    #[cfg(feature = "deadlock-detection")]
    fn deadlock(t: &Table, left: usize, right: usize, n: usize, tx: OwnedFd) -> i32 {
        use std::io::Write;

        use interproc::sync::deadlock::{self, Policy};
        use interproc::sync::process::LockError;
        deadlock::set_policy(Policy::Error);
        let mut l = t.forks[left].lock().unwrap_or_else(|e| panic!("fork {left}: {e}"));
        t.ready.fetch_add(1, SeqCst);
        while t.ready.load(SeqCst) < n as u32 {
            std::thread::sleep(Duration::from_millis(1)); // all hold their left fork
        }
        match t.forks[right].lock_checked() {
            Ok(mut r) => {
                *l += 1;
                *r += 1;
                t.meals.fetch_add(1, SeqCst);
                0
            }
            Err(LockError::Deadlock(d)) => {
                // Breaking the deadlock: report, then put the left fork down, hungry.
                let msg = format!("{}\n{}\n", d.report().to_json(), d.report());
                let _ = std::fs::File::from(tx).write_all(msg.as_bytes());
                0
            }
            Err(e) => panic!("fork {right}: {e}"),
        }
    }

    #[cfg(not(feature = "deadlock-detection"))]
    fn deadlock(_t: &Table, _left: usize, _right: usize, _n: usize, _tx: OwnedFd) -> i32 {
        unreachable!("deadlock mode refuses to run without detection (checked in `run`)")
    }

    /// The lock-order inversions between the philosophers' processes, from the table in
    /// shared memory where each recorded the order it took its forks in (each child's own
    /// report of it stayed in that child). Reading the table also removes it: the children
    /// have exited.
    #[cfg(feature = "deadlock-detection")]
    fn order_inversions(kids: &[Pid]) -> Vec<String> {
        use interproc::sync::deadlock::shared;
        let Some(registry) = shared::registry_name() else { return Vec::new() };
        let pids: Vec<u32> = kids.iter().map(|k| k.as_raw() as u32).collect();
        match shared::read_order_table(&registry) {
            // Only this run's: other programs of the user may share the table.
            Ok(g) => g
                .inversions
                .iter()
                .filter(|r| r.edges.iter().all(|e| pids.contains(&e.thread.pid)))
                .map(ToString::to_string)
                .collect(),
            Err(e) => {
                eprintln!("interproc demo philosophers: cannot read the lock-order table: {e}");
                Vec::new()
            }
        }
    }

    #[cfg(not(feature = "deadlock-detection"))]
    fn order_inversions(_kids: &[Pid]) -> Vec<String> {
        Vec::new()
    }

    fn kill_all(kids: &[Pid]) {
        for &k in kids {
            let _ = kill(k, Signal::SIGKILL);
            let _ = waitpid(k, None);
        }
    }

    /// Waits for every child under the watchdog; how many did not exit 0.
    fn wait_all(kids: &[Pid]) -> Result<usize, String> {
        let give_up = Instant::now() + WATCHDOG;
        let mut failed = 0;
        for &k in kids {
            loop {
                match waitpid(k, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if Instant::now() < give_up => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(WaitStatus::StillAlive) => {
                        kill_all(kids);
                        return Err(format!("watchdog: philosopher {k} hung for {WATCHDOG:?}"));
                    }
                    Ok(WaitStatus::Exited(_, 0)) => break,
                    Ok(_) | Err(_) => {
                        failed += 1;
                        break;
                    }
                }
            }
        }
        Ok(failed)
    }
}
