//! `interproc demo philosophers` end to end, each run under the watchdog of `common`: the
//! certain deadlock is detected with a cycle of every fork and broken (the program ends);
//! the ordered and waiter fixes eat every meal. Without the `deadlock-detection` feature,
//! deadlock mode refuses to run instead of hanging.

use serde_json::Value;

mod common;

fn run_json(args: &[&str]) -> (std::process::Output, Value) {
    let mut all = vec!["demo", "philosophers"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = common::run(None, &all);
    let j = common::last_json(&out);
    (out, j)
}

#[cfg(feature = "deadlock-detection")]
#[test]
fn deadlock_mode_detects_a_cycle_of_every_fork_and_ends() {
    for n in ["5", "2", "7"] {
        let (out, j) = run_json(&["--philosophers", n, "--mode", "deadlock"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{:?}\n{stdout}", out.status);
        let n: usize = n.parse().unwrap();
        assert_eq!(j["mode"], "deadlock");
        assert_eq!(j["philosophers"], n);
        assert_eq!(j["processes"], false);
        assert_eq!(j["deadlock_detected"], true);
        let mut cycle: Vec<String> =
            j["cycle"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        assert_eq!(cycle.len(), n, "{j}");
        cycle.sort();
        let mut forks: Vec<String> = (0..n).map(|i| format!("fork {i}")).collect();
        forks.sort();
        assert_eq!(cycle, forks);
        // The one who closed the cycle left hungry; everyone else ate.
        assert_eq!(j["meals"], n - 1);
        let parties = j["report"]["parties"].as_array().unwrap();
        assert_eq!(parties.len(), n);
        for p in parties {
            assert!(p["thread"]["name"].as_str().unwrap().starts_with("philosopher "), "{p}");
            assert_eq!(p["held_by"].as_array().unwrap().len(), 1, "{p}");
        }
        assert!(stdout.contains("deadlock detected: a cycle of"), "{stdout}");
    }
}

#[cfg(not(feature = "deadlock-detection"))]
#[test]
fn deadlock_mode_refuses_to_run_without_detection() {
    let out = common::run(None, &["demo", "philosophers", "--mode", "deadlock"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features deadlock-detection"));
}

#[test]
fn ordered_and_waiter_modes_eat_every_meal() {
    for mode in ["ordered", "waiter"] {
        let (out, j) = run_json(&["--philosophers", "5", "--mode", mode, "--rounds", "200"]);
        assert!(
            out.status.success(),
            "{mode}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(j["mode"], mode);
        assert_eq!(j["deadlock_detected"], false);
        assert_eq!(j["cycle"].as_array().unwrap().len(), 0);
        assert_eq!(j["meals"], 1000);
        assert_eq!(j["expected_meals"], 1000);
        // Ordered forks never form a lock-order cycle; the waiter's forks do (the seats
        // are what prevents the deadlock), which detection reports as a potential one.
        let expected_potential =
            usize::from(mode == "waiter" && cfg!(feature = "deadlock-detection"));
        assert_eq!(j["potential_deadlocks"], expected_potential, "{j}");
    }
}

/// `--processes`, with a registry of this test's own (removed when empty; checked).
fn run_processes(args: &[&str], tag: &str) -> (std::process::Output, Value) {
    let reg = format!("interproc-test-philosophers-{tag}-{}", std::process::id());
    let mut all = vec!["demo", "philosophers", "--processes"];
    all.extend_from_slice(args);
    all.push("--json");
    let mut c = common::command(None, &all);
    c.env("INTERPROC_DEADLOCKS", &reg);
    let out = common::finish(c.spawn().unwrap());
    for path in [format!("/dev/shm/{reg}"), format!("/dev/shm/{reg}-order")] {
        let left = std::path::Path::new(&path).exists();
        let _ = std::fs::remove_file(&path);
        assert!(!left, "{path} was left behind");
    }
    let j = common::last_json(&out);
    (out, j)
}

#[cfg(feature = "deadlock-detection")]
#[test]
fn processes_deadlock_mode_detects_the_cycle_across_processes_and_ends() {
    for n in ["5", "2"] {
        let (out, j) = run_processes(&["--philosophers", n, "--mode", "deadlock"], "dl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{:?}\n{stdout}", out.status);
        let n: usize = n.parse().unwrap();
        assert_eq!(j["processes"], true);
        assert_eq!(j["deadlock_detected"], true);
        let mut cycle: Vec<String> =
            j["cycle"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        cycle.sort();
        let mut forks: Vec<String> = (0..n).map(|i| format!("fork {i}")).collect();
        forks.sort();
        assert_eq!(cycle, forks, "{j}");
        assert_eq!(j["meals"], n - 1);
        let parties = j["report"]["parties"].as_array().unwrap();
        let mut pids: Vec<u64> =
            parties.iter().map(|p| p["thread"]["pid"].as_u64().unwrap()).collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), n, "one process per philosopher: {j}");
        for p in parties {
            assert!(p["thread"]["name"].as_str().unwrap().starts_with("philosopher "), "{p}");
        }
        // The circular fork order is also a lock-order inversion across the processes.
        assert_eq!(j["potential_deadlocks"], 1, "{j}");
        assert!(stdout.contains("potential deadlock: lock-order inversion"), "{stdout}");
    }
}

#[test]
fn processes_ordered_and_waiter_modes_eat_every_meal() {
    for mode in ["ordered", "waiter"] {
        let (out, j) =
            run_processes(&["--philosophers", "5", "--mode", mode, "--rounds", "200"], mode);
        assert!(out.status.success(), "{mode}: {:?}", out.status);
        assert_eq!(j["processes"], true);
        assert_eq!(j["deadlock_detected"], false);
        assert_eq!(j["meals"], 1000);
        assert_eq!(j["expected_meals"], 1000);
        // As with threads: only the waiter's fork order is circular.
        let expected_potential =
            usize::from(mode == "waiter" && cfg!(feature = "deadlock-detection"));
        assert_eq!(j["potential_deadlocks"], expected_potential, "{j}");
    }
}
