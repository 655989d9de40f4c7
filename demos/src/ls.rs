//! `interproc ls`: the owner records in the runtime directory, and the System V queues in
//! interproc's key space that have none.

use clap::Args;
use interproc::ipc::{msgq, names, shm};

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
    // A queue can exist without a record: its creator died between msgget and writing
    // the record, or registered it in another runtime directory.
    let unrecorded: Vec<msgq::QueueEntry> = match msgq::list_interproc() {
        Ok(qs) => qs
            .into_iter()
            .filter(|q| {
                let key = q.key.to_string();
                !entries
                    .iter()
                    .any(|e| e.record.kind == names::Kind::MsgQueue && e.record.name == key)
            })
            .collect(),
        Err(e) => {
            eprintln!("interproc ls: cannot read /proc/sysvipc/msg: {e}");
            Vec::new()
        }
    };
    // POSIX segments keep their owner in their header, not in a record.
    let segments = shm::list_named().unwrap_or_else(|e| {
        eprintln!("interproc ls: cannot read {}: {e}", shm::SHM_DIR);
        Vec::new()
    });
    if args.json {
        let mut objects: Vec<_> = entries
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
        objects.extend(unrecorded.iter().map(|q| {
            serde_json::json!({
                "kind": "msgq",
                "name": q.key.to_string(),
                "owner_pid": null,
                "owner_alive": null,
                "messages": q.messages,
            })
        }));
        objects.extend(segments.iter().map(|g| {
            serde_json::json!({
                "kind": "shm",
                "name": g.name,
                "owner_pid": g.owner.map(|o| o.id),
                "owner_alive": g.owner_alive,
                "bytes": g.size,
            })
        }));
        println!("{}", serde_json::json!({ "objects": objects }));
    } else if entries.is_empty() && unrecorded.is_empty() && segments.is_empty() {
        println!("no interproc objects");
    } else {
        println!("{:<7} {:>8} {:<7} name", "kind", "owner", "alive");
        for e in &entries {
            let alive = if e.alive { "yes" } else { "DEAD" };
            println!(
                "{:<7} {:>8} {:<7} {}",
                e.record.kind.as_str(),
                e.record.pid,
                alive,
                e.record.name
            );
        }
        for g in &segments {
            let (owner, alive) = match (g.owner, g.owner_alive) {
                (Some(o), Some(true)) => (o.id.to_string(), "yes"),
                (Some(o), _) => (o.id.to_string(), "DEAD"),
                (None, _) => ("-".to_string(), "-"),
            };
            println!(
                "{:<7} {:>8} {:<7} {} ({} bytes in {})",
                "shm",
                owner,
                alive,
                g.name,
                g.size,
                shm::SHM_DIR
            );
        }
        for q in &unrecorded {
            println!(
                "{:<7} {:>8} {:<7} {} (no owner record; `ipcrm -Q {}` removes it)",
                "msgq", "?", "?", q.key, q.key
            );
        }
    }
    0
}
