//! `interproc demo server` end to end: many client processes over Unix sockets, FIFOs,
//! pipes and shared-memory rings at once get every response; clients killed half-way
//! and clients that send malformed frames are dropped and counted while the others are
//! served; every backend and both trigger modes work; an interrupted run leaves nothing
//! behind. Each run uses a private runtime directory, checked empty afterwards.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{finish, Scratch, WATCHDOG};

fn spawn(rt: &Scratch, args: &[&str]) -> Child {
    common::spawn(Some(rt), args)
}

fn run_ok(rt: &Scratch, args: &[&str]) -> Value {
    let out = finish(spawn(rt, args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"))
}

fn every_response(j: &Value, clients: u64, requests: u64) {
    assert_eq!(j["clients"], clients);
    assert_eq!(j["requests_sent"], clients * requests, "{j}");
    assert_eq!(j["responses_received"], clients * requests, "{j}");
    assert_eq!(j["errors"], 0, "{j}");
    assert_eq!(j["disconnected_clients"], 0, "{j}");
    assert!(j["p50_us"].as_u64().unwrap() <= j["p99_us"].as_u64().unwrap(), "{j}");
    assert!(j["seconds"].as_f64().unwrap() > 0.0);
}

/// Runs `interproc demo server <args> --json` in a fresh runtime directory, checks that
/// it succeeded and left nothing behind, and returns its JSON summary.
fn server(args: &[&str]) -> Value {
    let rt = Scratch::new("server-test");
    let argv: Vec<&str> =
        ["demo", "server"].iter().chain(args).chain(&["--json"]).copied().collect();
    let j = run_ok(&rt, &argv);
    assert_eq!(rt.leftovers(), Vec::<String>::new(), "{args:?}");
    j
}

/// `clients` clients of `requests` requests each, over every transport and `backend`
/// with `trigger`, served by `workers` workers: every request is answered.
fn every_response_with(transports: &str, backend: &str, trigger: &str, workers: &str) {
    let j = server(&[
        "--clients",
        "9",
        "--requests",
        "50",
        "--transports",
        transports,
        "--backend",
        backend,
        "--trigger",
        trigger,
        "--workers",
        workers,
    ]);
    every_response(&j, 9, 50);
    assert_eq!(j["backend"], backend);
    assert_eq!(j["trigger"], trigger);
}

/// 24 clients over `transports`, 3 workers: 10 are killed half-way, 3 send a malformed
/// frame half-way, 11 are healthy. Every client sent half its requests before its fault
/// and got an answer to each; the faulty ones are counted, the others fully served.
fn faulty_clients_are_counted(transports: &str) {
    let j = server(&[
        "--clients",
        "24",
        "--requests",
        "200",
        "--transports",
        transports,
        "--workers",
        "3",
        "--kill-clients",
        "10",
        "--malformed-clients",
        "3",
    ]);
    assert_eq!(j["completed_clients"], 11, "{j}");
    assert_eq!(j["disconnected_clients"], 13, "{j}");
    assert_eq!(j["errors"], 3, "{j}");
    assert_eq!(j["requests_sent"], 11 * 200 + 13 * 100, "{j}");
    assert_eq!(j["responses_received"], 11 * 200 + 3 * 100, "{j}");
}

#[test]
fn sixteen_clients_over_three_transports() {
    let j = server(&["--clients", "16", "--requests", "100"]);
    every_response(&j, 16, 100);
    assert_eq!(j["transports"], serde_json::json!(["unix", "fifo", "pipe"]));
}

#[test]
fn sixty_four_clients_a_thousand_requests_each() {
    let j = server(&["--clients", "64", "--requests", "1000"]);
    every_response(&j, 64, 1000);
}

#[test]
fn every_backend_and_trigger() {
    for (backend, trigger, workers) in
        [("poll", "lt", "1"), ("select", "lt", "2"), ("epoll", "et", "1"), ("epoll", "et", "3")]
    {
        every_response_with("unix,fifo,pipe", backend, trigger, workers);
    }
}

#[test]
fn killed_and_malformed_clients_do_not_disturb_the_others() {
    faulty_clients_are_counted("unix,fifo,pipe");
}

/// Shared-memory rings as a fourth transport: each shm client's ring notifier sits in
/// the same poller as the sockets, FIFOs and pipes.
#[test]
fn sixty_four_clients_over_four_transports_with_shm() {
    let j = server(&[
        "--clients",
        "64",
        "--requests",
        "500",
        "--transports",
        "unix,fifo,pipe,shm",
        "--workers",
        "2",
    ]);
    every_response(&j, 64, 500);
    assert_eq!(j["transports"], serde_json::json!(["unix", "fifo", "pipe", "shm"]));
}

/// Only shm clients, under every backend (the notifier fd is an epoll set, which poll
/// and select watch too) and edge triggering.
#[test]
fn shm_clients_under_every_backend_and_trigger() {
    for (backend, trigger, workers) in
        [("epoll", "lt", "1"), ("poll", "lt", "2"), ("select", "lt", "1"), ("epoll", "et", "2")]
    {
        every_response_with("shm", backend, trigger, workers);
    }
}

/// Killed and malformed clients over all four transports: clients 3 and 7 (shm) are
/// killed half-way, client 11 (shm) sends a record that is no request. The worker sees
/// a killed shm client through the pidfd in the ring's notifier set.
#[test]
fn killed_and_malformed_shm_clients_are_counted_like_the_others() {
    faulty_clients_are_counted("unix,fifo,pipe,shm");
}

#[test]
fn edge_triggered_needs_epoll() {
    let rt = Scratch::new("server-test");
    let out = finish(spawn(&rt, &["demo", "server", "--backend", "poll", "--trigger", "et"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("epoll"));
}

#[test]
fn sigterm_mid_run_leaves_nothing_behind() {
    let rt = Scratch::new("server-test");
    let mut child = spawn(&rt, &["demo", "server", "--clients", "6", "--requests", "100000000"]);
    // Wait until the run has made its named objects, then interrupt it.
    let deadline = Instant::now() + WATCHDOG;
    while rt.leftovers().iter().all(|p| !p.ends_with(".sock")) {
        assert!(Instant::now() < deadline, "the server never bound its socket");
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("the demo ended early: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = finish(child);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted"));
    assert_eq!(rt.leftovers(), Vec::<String>::new());
}
