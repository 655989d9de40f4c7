//! `interproc clean`: removes the objects whose owner died, and their owner records.

use clap::Args;
use interproc::ipc::names::{self, Removal};
use interproc::ipc::shm;

/// Options of `interproc clean`.
#[derive(Args)]
pub struct CleanArgs {
    /// Print one JSON object instead of lines of text.
    #[arg(long)]
    json: bool,
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `interproc clean`; returns the exit status (1 if anything could not be read or
/// removed).
pub fn clean(args: CleanArgs) -> i32 {
    let entries = match names::list() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("interproc clean: cannot read the owner records: {e}");
            return 1;
        }
    };
    let mut removed = Vec::new();
    let mut skipped = Vec::new();
    let mut kept_alive = 0usize;
    let mut failed = false;
    for entry in &entries {
        let r = &entry.record;
        let outcome = if args.dry_run {
            // `list()` just checked the lock; `remove_stale` checks it again when it runs.
            Ok(match (entry.alive, names::can_remove(r.kind)) {
                (true, _) => Removal::OwnerAlive,
                (false, true) => Removal::Removed,
                (false, false) => Removal::Skipped,
            })
        } else {
            names::remove_stale(entry)
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                eprintln!("interproc clean: {} {}: {e}", r.kind, r.name);
                failed = true;
                continue;
            }
        };
        let item = serde_json::json!({
            "kind": r.kind.as_str(),
            "name": r.name,
            "owner_pid": r.pid,
            "object": outcome.as_str(),
        });
        match outcome {
            Removal::OwnerAlive => kept_alive += 1,
            Removal::Skipped => skipped.push(item),
            // Already gone or replaced: the record was stale all the same, and went.
            _ => removed.push(item),
        }
    }
    // POSIX segments keep their owner in their header, not in a record; they are
    // machine-wide (`/dev/shm`), not per runtime directory, so they are counted apart.
    let mut segments_kept = 0usize;
    match shm::list_named() {
        Ok(segments) => {
            for seg in segments {
                let owner_pid = seg.owner.map(|o| o.id);
                match seg.owner_alive {
                    None | Some(true) => {
                        segments_kept += 1;
                        continue;
                    }
                    Some(false) => {}
                }
                let gone = args.dry_run
                    || match shm::remove_if_owner_dead(&seg.name) {
                        Ok(gone) => gone,
                        Err(e) => {
                            eprintln!("interproc clean: shm {}: {e}", seg.name);
                            failed = true;
                            continue;
                        }
                    };
                if gone {
                    removed.push(serde_json::json!({
                        "kind": "shm",
                        "name": seg.name,
                        "owner_pid": owner_pid,
                        "object": Removal::Removed.as_str(),
                    }));
                } else {
                    segments_kept += 1;
                }
            }
        }
        Err(e) => {
            eprintln!("interproc clean: cannot read {}: {e}", shm::SHM_DIR);
            failed = true;
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "dry_run": args.dry_run,
                "removed": removed,
                "kept_alive": kept_alive,
                "segments_kept": segments_kept,
                "skipped": skipped,
            })
        );
    } else {
        let verb = if args.dry_run { "would remove" } else { "removed" };
        for item in &removed {
            let note = match item["object"].as_str() {
                Some("already_gone") => " (object already gone; record only)",
                Some("replaced") => " (path now holds something else, left alone; record only)",
                _ => "",
            };
            println!(
                "{verb} {} {} (owner pid {} is dead){note}",
                item["kind"].as_str().unwrap_or("?"),
                item["name"].as_str().unwrap_or("?"),
                item["owner_pid"]
            );
        }
        for item in &skipped {
            println!(
                "skipped {} {} (owner pid {} is dead, but this build cannot remove a {})",
                item["kind"].as_str().unwrap_or("?"),
                item["name"].as_str().unwrap_or("?"),
                item["owner_pid"],
                item["kind"].as_str().unwrap_or("?"),
            );
        }
        println!(
            "{} {verb}, {kept_alive} kept (owner alive), {} skipped, {segments_kept} shared-memory \
             segments kept (owner alive, or none)",
            removed.len(),
            skipped.len()
        );
    }
    i32::from(failed)
}
