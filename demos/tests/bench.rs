//! `interproc bench` end to end, as a user runs it: the JSON has the documented shape,
//! its numbers are positive and agree with each other, a size over a kernel limit is a
//! "not possible" row instead of a clamped one, and nothing is left behind. No test
//! asserts a speed: that belongs to the benchmark itself.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{finish, Scratch};

fn bench(s: &Scratch, args: &[&str]) -> Output {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    common::run(Some(s), &all)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn row<'a>(j: &'a Value, transport: &str, size: u64) -> &'a Value {
    j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["transport"] == transport && r["size"] == size)
        .unwrap_or_else(|| panic!("no row {transport} {size} in {j}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn quick_run_writes_consistent_json_and_plot() {
    let s = Scratch::new("bench-test");
    let (json, svg) = (s.file("out.json"), s.file("out.svg"));
    let out = bench(
        &s,
        &[
            "--quick",
            "--sizes",
            "64",
            "--transports",
            "raw-pipe,pipe,msgq,ipc-channel",
            "--json",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    for t in [
        "raw-pipe",
        "pipe",
        "msgq",
        "ipc-channel",
        "memcpy",
        "ping-pong",
        "two lines",
        "stamp, then copy",
        "clock read",
        "pinning",
    ] {
        assert!(stdout.contains(t), "table lacks {t}:\n{stdout}");
    }

    let j = read_json(&json);
    let m = &j["machine"];
    for k in ["kernel", "cpu_model", "pinning", "build"] {
        assert!(m[k].is_string(), "machine.{k} missing: {m}");
    }
    assert!(num(m, "cores") >= 1.0);
    assert!(num(m, "msgmax") > 0.0 && num(m, "msgmnb") > 0.0);

    let l = &j["limits"];
    assert!(num(&l["memcpy_gbps"], "64") > 0.0, "{l}");
    let pp = num(l, "pingpong_ns");
    assert!(pp > 0.0 && pp <= num(l, "pingpong_p99_ns"), "{l}");
    let pp2 = num(l, "pingpong_2line_ns");
    assert!(pp2 > 0.0 && pp2 <= num(l, "pingpong_2line_p99_ns"), "{l}");
    assert!(num(l, "clock_read_ns") >= 0.0, "{l}");
    let stamp_copy = num(&l["stamp_copy_gbps"], "64");
    assert!(stamp_copy > 0.0, "{l}");

    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{j}");
    for r in rows {
        assert_eq!(r["size"], 64);
        assert_eq!(r["mode"], "block");
        assert_eq!(r["note"], "", "{r}");
        let (mps, mbps) = (num(r, "msgs_per_sec"), num(r, "mb_per_sec"));
        assert!(mps > 0.0 && close(mbps, mps * 64.0 / 1e6), "{r}");
        assert!(num(r, "p50_ns") > 0.0 && num(r, "p50_ns") <= num(r, "p99_ns"), "{r}");
        assert!(num(r, "cpu_ns_per_msg") > 0.0, "{r}");
        assert!(num(r, "messages") > 0.0 && num(r, "latency_iterations") > 0.0, "{r}");
        let limit = mbps / (num(&l["memcpy_gbps"], "64") * 1000.0);
        assert!(close(num(r, "vs_limit"), limit), "{r}");
        assert!(close(num(r, "p50_vs_pingpong"), num(r, "p50_ns") / pp), "{r}");
        assert!(close(num(r, "p50_vs_pingpong_2line"), num(r, "p50_ns") / pp2), "{r}");
        assert!(close(num(r, "vs_stamp_copy"), mbps / (stamp_copy * 1000.0)), "{r}");
        let ipc = num(row(&j, "ipc-channel", 64), "msgs_per_sec");
        assert!(close(num(r, "vs_ipc_channel"), mps / ipc), "{r}");
    }
    // The pipe row refers to the raw pipe loop; msgq's baseline (raw-msgq) was not run.
    let (pipe, raw) = (row(&j, "pipe", 64), row(&j, "raw-pipe", 64));
    assert_eq!(pipe["raw_baseline"], "raw-pipe");
    assert!(close(num(pipe, "vs_raw"), num(pipe, "msgs_per_sec") / num(raw, "msgs_per_sec")));
    assert_eq!(row(&j, "msgq", 64)["raw_baseline"], "raw-msgq");
    assert!(row(&j, "msgq", 64)["vs_raw"].is_null());
    assert!(close(num(row(&j, "ipc-channel", 64), "vs_ipc_channel"), 1.0));

    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("msgq"), "{plot}");
    assert!(s.leftovers().is_empty(), "left behind: {:?}", s.leftovers());
}

#[test]
fn a_size_over_msgmax_is_not_possible_not_clamped() {
    let s = Scratch::new("bench-test");
    let json = s.file("out.json");
    // 64 KiB is over the default msgmax (8192); on a machine where it is not, the row
    // must run instead.
    let out = bench(
        &s,
        &["--quick", "--sizes", "65536", "--transports", "msgq", "--json", json.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    let j = read_json(&json);
    let msgmax = num(&j["machine"], "msgmax");
    let r = row(&j, "msgq", 65536);
    if msgmax < 65536.0 {
        assert_eq!(r["note"], format!("not possible: kernel.msgmax = {msgmax}"), "{r}");
        for k in ["msgs_per_sec", "mb_per_sec", "p50_ns", "p99_ns", "cpu_ns_per_msg", "vs_limit"] {
            assert!(r[k].is_null(), "{k} should be empty: {r}");
        }
    } else {
        assert!(num(r, "msgs_per_sec") > 0.0, "{r}");
    }
    assert!(s.leftovers().is_empty(), "left behind: {:?}", s.leftovers());
}

#[test]
fn a_size_below_the_stamp_is_refused() {
    let s = Scratch::new("bench-test");
    let out = bench(&s, &["--sizes", "4"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("from 8 bytes"));
}

/// The FIFO row is measured against a raw loop over FIFOs, not over anonymous pipes: a
/// FIFO's kernel path costs more (it updates the inode's times), and that is not the
/// channel's cost.
#[test]
fn the_fifo_row_refers_to_the_raw_fifo_loop() {
    let s = Scratch::new("bench-test");
    let json = s.file("out.json");
    let args = ["--quick", "--sizes", "64", "--transports", "raw-fifo,fifo", "--json"];
    let mut args = args.to_vec();
    args.push(json.to_str().unwrap());
    let out = bench(&s, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let j = read_json(&json);
    let (fifo, raw) = (row(&j, "fifo", 64), row(&j, "raw-fifo", 64));
    assert_eq!(fifo["raw_baseline"], "raw-fifo", "{fifo}");
    assert!(raw["raw_baseline"].is_null(), "{raw}");
    assert_eq!(raw["note"], "", "{raw}");
    assert!(close(num(fifo, "vs_raw"), num(fifo, "msgs_per_sec") / num(raw, "msgs_per_sec")));
    assert!(s.leftovers().is_empty(), "left behind: {:?}", s.leftovers());
}

#[test]
fn an_interrupted_run_stops_after_its_row_and_leaves_nothing() {
    let s = Scratch::new("bench-test");
    // The full budget at every size takes minutes in any build: the signal lands mid-run.
    let child = common::spawn(Some(&s), &["bench", "--transports", "raw-pipe,fifo,unix,msgq"]);
    std::thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = finish(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("interrupted: stopped after the row in progress"), "{stdout}");
    assert!(s.leftovers().is_empty(), "left behind: {:?}", s.leftovers());
}

#[cfg(not(feature = "bench-iceoryx2"))]
#[test]
fn iceoryx2_rows_without_the_feature_name_it() {
    let s = Scratch::new("bench-test");
    let out = bench(&s, &["--quick", "--sizes", "64", "--transports", "pipe,iceoryx2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr.contains("--features bench-iceoryx2"), "{stderr}");
    // Refused before anything ran.
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// What iceoryx2 keeps in `/dev/shm` (its files all start with `iox2_`).
#[cfg(feature = "bench-iceoryx2")]
fn iceoryx2_files() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("iox2_"))
        .collect()
}

/// Only in a build with the feature:
/// `cargo test -p interproc-demos --features bench-iceoryx2 --test bench iceoryx2`.
/// (It assumes no other iceoryx2 program on the machine makes files in `/dev/shm` while
/// it runs.)
#[cfg(feature = "bench-iceoryx2")]
#[test]
fn iceoryx2_rows_run_across_processes_and_leave_nothing() {
    let s = Scratch::new("bench-test");
    let json = s.file("out.json");
    let before = iceoryx2_files();
    let out = bench(
        &s,
        &[
            "--quick",
            "--sizes",
            "64,65536",
            "--transports",
            "shm,iceoryx2,iceoryx2-loan",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    let j = read_json(&json);
    for size in [64, 65536] {
        for t in ["iceoryx2", "iceoryx2-loan"] {
            let r = row(&j, t, size);
            assert_eq!(r["mode"], "spin", "{r}");
            assert_eq!(r["note"], "", "{r}");
            let (mps, mbps) = (num(r, "msgs_per_sec"), num(r, "mb_per_sec"));
            assert!(mps > 0.0 && close(mbps, mps * size as f64 / 1e6), "{r}");
            assert!(num(r, "p50_ns") > 0.0 && num(r, "p50_ns") <= num(r, "p99_ns"), "{r}");
            assert!(num(r, "cpu_ns_per_msg") > 0.0, "{r}");
        }
    }
    let left: Vec<String> = iceoryx2_files().difference(&before).cloned().collect();
    assert!(left.is_empty(), "iceoryx2 left in /dev/shm: {left:?}");
    assert!(s.leftovers().is_empty(), "left behind: {:?}", s.leftovers());
}
