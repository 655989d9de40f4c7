//! `interproc demo multiplex` end to end, with small fd counts: every backend gets a
//! figure for every count it can hold, and select is "not possible" (with the reason)
//! past FD_SETSIZE instead of failing or corrupting memory.

use std::process::Output;

mod common;

use common::last_json;

fn run(args: &[&str]) -> Output {
    common::run(None, args)
}

#[test]
fn every_backend_gets_a_figure() {
    let out = run(&["demo", "multiplex", "--fds", "10,100", "--millis", "20", "--json"]);
    assert!(out.status.success(), "{:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let j = last_json(&out);
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for fds in [10, 100] {
        for b in ["select", "poll", "epoll"] {
            let r = rows.iter().find(|r| r["backend"] == b && r["fds"] == fds).unwrap();
            assert!(r["ns_per_wakeup"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r.get("reason").is_none(), "{r}");
        }
    }
}

#[test]
fn select_is_not_possible_past_fd_setsize() {
    let out = run(&["demo", "multiplex", "--fds", "1100", "--millis", "5", "--json"]);
    assert!(out.status.success(), "{:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let j = last_json(&out);
    let hard = j["rlimit_nofile_hard"].as_u64().unwrap();
    let rows = j["rows"].as_array().unwrap();
    let select = rows.iter().find(|r| r["backend"] == "select").unwrap();
    assert!(select["ns_per_wakeup"].is_null(), "{select}");
    let reason = select["reason"].as_str().unwrap();
    if hard >= 1100 + 64 {
        assert!(reason.contains("FD_SETSIZE"), "{reason}");
        for b in ["poll", "epoll"] {
            let r = rows.iter().find(|r| r["backend"] == b).unwrap();
            assert!(r["ns_per_wakeup"].as_f64().unwrap() > 0.0, "{r}");
        }
    } else {
        // The fds themselves are out of reach: every row says so.
        assert!(reason.contains("RLIMIT_NOFILE"), "{reason}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not possible"), "{stdout}");
}
