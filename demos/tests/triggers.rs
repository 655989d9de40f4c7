//! `interproc demo triggers` end to end: level-triggered readers are woken once per
//! record on every backend; an edge-triggered reader that does not drain is woken once
//! and stalls (reported through a timed-out wait, not a hang); the draining one reads
//! everything from one wake-up.

use std::process::Output;

use serde_json::Value;

mod common;

fn run(args: &[&str]) -> Output {
    common::run(None, args)
}

#[test]
fn edge_triggered_reader_that_does_not_drain_stalls() {
    let out = run(&[
        "demo",
        "triggers",
        "--records",
        "5",
        "--record-bytes",
        "100",
        "--stall-ms",
        "100",
        "--json",
    ]);
    assert!(out.status.success(), "{:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let j: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(j["records"], 5);
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for r in rows {
        assert_eq!(r["as_expected"], true, "{r}");
    }
    for b in ["epoll", "poll", "select"] {
        let lt = rows.iter().find(|r| r["trigger"] == "lt" && r["backend"] == b).unwrap();
        assert_eq!(
            (lt["wakeups"].as_u64(), lt["records_read"].as_u64()),
            (Some(5), Some(5)),
            "{lt}"
        );
        assert_eq!(lt["stalled"], false);
    }
    let et = rows.iter().find(|r| r["trigger"] == "et" && r["drains"] == false).unwrap();
    assert_eq!((et["wakeups"].as_u64(), et["records_read"].as_u64()), (Some(1), Some(1)), "{et}");
    assert_eq!(et["stalled"], true);
    let drain = rows.iter().find(|r| r["trigger"] == "et" && r["drains"] == true).unwrap();
    assert_eq!(
        (drain["wakeups"].as_u64(), drain["records_read"].as_u64()),
        (Some(1), Some(5)),
        "{drain}"
    );
    assert_eq!(drain["stalled"], false);
}

#[test]
fn input_over_pipe_buf_is_refused() {
    let out = run(&["demo", "triggers", "--records", "64", "--record-bytes", "100"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PIPE_BUF"));
}
