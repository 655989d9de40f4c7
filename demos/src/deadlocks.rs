//! `interproc deadlocks`: the cross-process wait-for graph, read from outside.
//!
//! Reads the registry in shared memory where threads blocked on process-shared locks
//! (`interproc::sync::process::Mutex`, `Monitor`) record what they wait for and who holds
//! it (`interproc::sync::deadlock::shared`): `/dev/shm/interproc-deadlocks-<uid>`, or the
//! segment named by `--registry` or `$INTERPROC_DEADLOCKS`. Prints every blocked thread
//! (pid, tid, name), the lock it waits on (label or shared-memory key), where, for how
//! long, and the owner's state (blocked, running, or died: "owner died", never a
//! deadlock); then every wait-for cycle, each confirmed by looking twice (`--settle-ms`
//! apart), as a deadlock report; then the lock-order table beside the registry (the
//! order in which processes nested process-shared locks) and its inversions. `--json`
//! prints the same as one JSON object: `registry`, `waits`, `cycles` (the report fields:
//! `kind`, `parties`, each with `thread`, `waits_for`, `waiting_at`, `waited_us`,
//! `held_by`) and `order` (`edges`, `inversions`, `processes`).
//!
//! Reading also frees the entries of dead threads, and removes the registry when nothing
//! is left in it, and the lock-order table when no live process is attached to it. Exit
//! status 0 with no wait-for cycle (inversions are potential deadlocks only), 1 with a
//! cycle, 2 when the registry cannot be read (or this build lacks the feature
//! `deadlock-detection`).

use clap::Args;

/// Options of `interproc deadlocks`.
#[derive(Args, Debug)]
pub struct DeadlocksArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The registry segment's name (default: `$INTERPROC_DEADLOCKS`, else
    /// `interproc-deadlocks-<uid>`).
    #[arg(long)]
    registry: Option<String>,
    /// How long to wait between the two looks that confirm a cycle, in milliseconds (at
    /// least the 100 ms longest poll of a waiter).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    settle_ms: u64,
}

#[cfg(feature = "deadlock-detection")]
pub fn run(a: DeadlocksArgs) -> i32 {
    use interproc::sync::deadlock::shared;
    let settle = std::time::Duration::from_millis(a.settle_ms);
    let graph = match &a.registry {
        Some(name) => shared::read_wait_graph(name, settle),
        None => shared::wait_graph(settle),
    };
    match graph {
        Ok(g) => {
            if a.json {
                println!("{}", g.to_json());
            } else {
                println!("{g}");
            }
            i32::from(!g.cycles.is_empty())
        }
        Err(e) => {
            eprintln!("interproc deadlocks: cannot read the registry: {e}");
            2
        }
    }
}

#[cfg(not(feature = "deadlock-detection"))]
pub fn run(a: DeadlocksArgs) -> i32 {
    let _ = a;
    eprintln!(
        "interproc deadlocks needs deadlock detection, which this build lacks: rebuild with \
         `--features deadlock-detection`"
    );
    2
}
