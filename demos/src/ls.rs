//! `interproc ls`: the owner records in the runtime directory.

use clap::Args;
use interproc::ipc::names;

/// Options of `interproc ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `interproc ls`; returns the exit status.
pub fn ls(args: LsArgs) -> i32 {
    let entries = match names::list() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("interproc ls: cannot read the owner records: {e}");
            return 1;
        }
    };
    if args.json {
        let objects: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "kind": e.record.kind.as_str(),
                    "name": e.record.name,
                    "owner_pid": e.record.pid,
                    "owner_alive": e.alive,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "objects": objects }));
    } else if entries.is_empty() {
        println!("no interproc objects");
    } else {
        println!("{:<7} {:>8} {:<6} name", "kind", "owner", "alive");
        for e in &entries {
            let alive = if e.alive { "yes" } else { "DEAD" };
            println!("{:<7} {:>8} {:<6} {}", e.record.kind, e.record.pid, alive, e.record.name);
        }
    }
    0
}
