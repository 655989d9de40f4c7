//! What the detector reports: [`Report`], as text ([`Display`](fmt::Display)) and as JSON
//! ([`Report::to_json`], through serde).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// What a [`Report`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReportKind {
    /// Threads wait for each other in a cycle: none of them can ever go on. A real deadlock.
    WaitCycle,
    /// A thread waits for a notify (monitor condition) or for permits nobody holds, and
    /// every party attached to that monitor or semaphore is blocked: nobody is left to
    /// signal. A real deadlock.
    NobodyLeftToSignal,
    /// Lock classes were taken in orders that form a cycle (A then B somewhere, B then A
    /// elsewhere): a *potential* deadlock, although none happened this time.
    LockOrderInversion,
    /// A thread waits on a monitor condition while holding another lock: the thread that
    /// would notify may need that lock. A hazard.
    WaitWhileHolding,
    /// The cross-process registry (see `deadlock::shared`) had no free slot: this
    /// process's waits on process-shared locks went unchecked; or its lock-order table was
    /// full: this process's further edges there went unrecorded (`held` says which).
    /// Reported once per process (each).
    RegistryFull,
}

impl ReportKind {
    /// Whether threads are really stuck (as opposed to a potential deadlock or a hazard).
    pub fn is_deadlock(self) -> bool {
        matches!(self, ReportKind::WaitCycle | ReportKind::NobodyLeftToSignal)
    }
}

/// Which primitive a lock is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// [`Mutex`](crate::Mutex).
    Mutex,
    /// [`Monitor`](crate::Monitor).
    Monitor,
    /// [`Semaphore`](crate::Semaphore).
    Semaphore,
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockKind::Mutex => "mutex",
            LockKind::Monitor => "monitor",
            LockKind::Semaphore => "semaphore",
        })
    }
}

/// A thread, as the operating system knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ThreadInfo {
    /// The process id.
    pub pid: u32,
    /// The kernel thread id (`gettid`).
    pub tid: i32,
    /// The thread's name, if it has one.
    pub name: Option<String>,
}

impl fmt::Display for ThreadInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "thread \"{n}\" (pid {}, tid {})", self.pid, self.tid),
            None => write!(f, "unnamed thread (pid {}, tid {})", self.pid, self.tid),
        }
    }
}

/// A lock (mutex, monitor or semaphore) named in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockInfo {
    /// Its label (see `Mutex::labelled`), or else its creation site `file:line:column`.
    /// This is also its lock class, for lock-order checks.
    pub label: String,
    /// Whether `label` is a user label (rather than the creation site).
    pub labelled: bool,
    /// What it is.
    pub kind: LockKind,
    /// Where it was created.
    pub created_at: String,
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labelled {
            write!(f, "{} \"{}\" (created at {})", self.kind, self.label, self.created_at)
        } else {
            write!(f, "{} created at {}", self.kind, self.created_at)
        }
    }
}

/// What a blocked thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    /// The lock of a mutex or monitor.
    Lock,
    /// This many permits of a semaphore.
    Permits(u32),
    /// A notify on this condition of a monitor.
    Condition(usize),
}

/// One holder of a lock: its owner, or one holder of a semaphore's permits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Holding {
    /// Who holds it.
    pub thread: ThreadInfo,
    /// How many permits (1 for a mutex or monitor).
    pub permits: u32,
    /// Where it took them (the `lock`/`enter`/`acquire` call).
    pub acquired_at: String,
}

/// One blocked thread in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Party {
    /// The blocked thread.
    pub thread: ThreadInfo,
    /// The lock it waits on.
    pub waits_for: LockInfo,
    /// What it waits for there.
    pub wait: WaitFor,
    /// Where it called `lock`/`enter`/`acquire`/`wait`.
    pub waiting_at: String,
    /// How long it had waited when the report was made, in microseconds.
    pub waited_us: u64,
    /// Who holds what it waits for (the lock's owner, the semaphore's permit holders).
    pub held_by: Vec<Holding>,
}

impl Party {
    /// How long it had waited when the report was made.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.waited_us)
    }
}

/// One lock-order edge: a thread took `to` while it held `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OrderEdge {
    /// The class held (a label or a creation site).
    pub from: String,
    /// The class taken while holding `from`.
    pub to: String,
    /// The thread that did it (the first time).
    pub thread: ThreadInfo,
    /// Where it took `to`.
    pub at: String,
    /// Where it had taken `from`.
    pub holding_since: String,
}

/// A deadlock, a potential deadlock or a hazard, with everything needed to fix it.
///
/// For a [`WaitCycle`](ReportKind::WaitCycle), `parties` lists the threads around the
/// cycle in order: each waits for a lock held by the next, and the last waits for one held
/// by the first. For a [`LockOrderInversion`](ReportKind::LockOrderInversion), `edges`
/// lists the lock-order edges around the cycle, the newest last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// What happened.
    pub kind: ReportKind,
    /// The blocked threads (deadlocks, hazards).
    pub parties: Vec<Party>,
    /// The lock-order edges (inversions).
    pub edges: Vec<OrderEdge>,
    /// The other locks a thread held (hazards); what was full (`RegistryFull`).
    pub held: Vec<String>,
}

impl Report {
    /// The labels (or creation sites) of the locks involved, in cycle order: what each
    /// party waits for, or the classes around an inversion.
    pub fn locks(&self) -> Vec<String> {
        if self.kind == ReportKind::LockOrderInversion {
            self.edges.iter().map(|e| e.from.clone()).collect()
        } else {
            self.parties.iter().map(|p| p.waits_for.label.clone()).collect()
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ReportKind::WaitCycle => writeln!(
                f,
                "deadlock: {} thread(s) wait for each other in a cycle; each waits for what the next holds",
                self.parties.len()
            )?,
            ReportKind::NobodyLeftToSignal => writeln!(
                f,
                "deadlock: nobody left to signal: every party attached to {} is blocked",
                self.parties.first().map_or_else(String::new, |p| p.waits_for.to_string())
            )?,
            ReportKind::LockOrderInversion => writeln!(
                f,
                "potential deadlock: lock-order inversion between {} lock classes (no deadlock happened this time)",
                self.edges.len()
            )?,
            ReportKind::WaitWhileHolding => writeln!(
                f,
                "hazard: a monitor wait while holding other locks, which the notifier may need"
            )?,
            ReportKind::RegistryFull => writeln!(
                f,
                "deadlock detection across processes is off for this process: the registry is full"
            )?,
        }
        for (i, p) in self.parties.iter().enumerate() {
            let what = match p.wait {
                WaitFor::Lock => "the lock of".to_string(),
                WaitFor::Permits(n) => format!("{n} permit(s) of"),
                WaitFor::Condition(c) => format!("a notify on condition {c} of"),
            };
            writeln!(
                f,
                "  {}. {} has waited {:?} at {} for {what} {}",
                i + 1,
                p.thread,
                p.waited(),
                p.waiting_at,
                p.waits_for
            )?;
            if p.held_by.is_empty() {
                writeln!(f, "       held by nobody")?;
            }
            for h in &p.held_by {
                if p.waits_for.kind == LockKind::Semaphore {
                    writeln!(
                        f,
                        "       {} permit(s) held by {}, acquired at {}",
                        h.permits, h.thread, h.acquired_at
                    )?;
                } else {
                    writeln!(f, "       held by {}, acquired at {}", h.thread, h.acquired_at)?;
                }
            }
        }
        for e in &self.edges {
            writeln!(
                f,
                "  \"{}\" -> \"{}\": {} took \"{}\" at {} while holding \"{}\" (taken at {})",
                e.from, e.to, e.thread, e.to, e.at, e.from, e.holding_since
            )?;
        }
        if self.kind == ReportKind::RegistryFull {
            for line in &self.held {
                writeln!(f, "  {line}")?;
            }
        } else if !self.held.is_empty() {
            writeln!(f, "  held meanwhile: {}", self.held.join(", "))?;
        }
        let fix = match self.kind {
            ReportKind::WaitCycle | ReportKind::LockOrderInversion => {
                "fix: take these locks in one global order everywhere (or limit who may hold them at once)"
            }
            ReportKind::NobodyLeftToSignal => {
                "fix: make sure a thread that can notify or release stays outside the wait"
            }
            ReportKind::WaitWhileHolding => {
                "fix: release the other locks before waiting, or make sure the notifier never needs them"
            }
            ReportKind::RegistryFull => {
                "fix: fewer threads blocked at once on process-shared locks (or fewer lock-order edges between them), or a registry of your own (INTERPROC_DEADLOCKS)"
            }
        };
        write!(f, "  {fix}")
    }
}
