//! `interproc demo pc` end to end, as a user runs it: every transport delivers every
//! message exactly once across real processes, a failed child ends the run with a
//! non-zero status instead of a hang, and an interrupted run leaves no named object.
//! Each run uses a private runtime directory, checked empty afterwards.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{finish, last_json, Scratch, WATCHDOG};

fn command(rt: &Scratch, args: &[&str]) -> Command {
    common::command(Some(rt), args)
}

fn run(rt: &Scratch, args: &[&str]) -> Output {
    common::run(Some(rt), args)
}

fn exactly_once(transport: &str, producers: u64, consumers: u64, messages: u64, size: u64) {
    let rt = Scratch::new("pc-test");
    let (p, c, m, s) =
        (producers.to_string(), consumers.to_string(), messages.to_string(), size.to_string());
    let out = run(
        &rt,
        &[
            "demo",
            "pc",
            "--transport",
            transport,
            "--producers",
            &p,
            "--consumers",
            &c,
            "--messages",
            &m,
            "--size",
            &s,
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{transport}: {:?}\n{stderr}", out.status);
    let j = last_json(&out);
    let sent = producers * messages;
    assert_eq!(j["transport"], transport);
    assert_eq!(j["producers"], producers);
    assert_eq!(j["consumers"], consumers);
    assert_eq!(j["messages_sent"], sent);
    assert_eq!(j["messages_received"], sent);
    for k in ["lost", "duplicated", "corrupted"] {
        assert_eq!(j[k], 0, "{transport}: {k}");
    }
    assert_eq!(j["bytes"], sent * (size + 20));
    assert!(j["seconds"].as_f64().unwrap() > 0.0);
    assert!(j["msgs_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(rt.leftovers(), Vec::<String>::new(), "{transport} left objects behind");
}

#[test]
fn pipe_delivers_exactly_once() {
    exactly_once("pipe", 2, 2, 5000, 64);
}

#[test]
fn fifo_delivers_exactly_once() {
    exactly_once("fifo", 2, 3, 5000, 64);
}

#[test]
fn msgq_delivers_exactly_once() {
    exactly_once("msgq", 3, 2, 5000, 64);
}

#[test]
fn unix_delivers_exactly_once() {
    exactly_once("unix", 2, 2, 5000, 64);
}

#[test]
fn seqpacket_delivers_exactly_once() {
    exactly_once("seqpacket", 2, 2, 5000, 64);
}

#[test]
fn tcp_delivers_exactly_once() {
    exactly_once("tcp", 2, 2, 5000, 64);
}

#[test]
fn shm_delivers_exactly_once() {
    exactly_once("shm", 2, 2, 200_000, 64);
}

#[test]
fn shm_large_messages_wrap_the_ring() {
    exactly_once("shm", 2, 3, 300, 100_000);
}

#[test]
fn shm_mpmc_delivers_exactly_once() {
    exactly_once("shm-mpmc", 3, 2, 50_000, 64);
}

#[test]
fn shm_mpmc_large_messages_wrap_the_ring() {
    exactly_once("shm-mpmc", 2, 3, 300, 100_000);
}

#[test]
fn shm_sem_delivers_exactly_once() {
    exactly_once("shm-sem", 2, 2, 5000, 64);
    assert_eq!(dead_shm_sem_segments(), Vec::<String>::new());
}

#[test]
fn shm_sem_carries_large_messages_in_its_slots() {
    exactly_once("shm-sem", 1, 2, 200, 200_000);
}

/// The bounded buffers in `/dev/shm` (`interproc-pc-shm-sem-<pid>-<n>`) whose creating
/// process is gone: leaks. (Runs of tests beside this one may own live ones.)
fn dead_shm_sem_segments() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("interproc-pc-shm-sem-")
                .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

fn shm_sem_segment_of(pid: u32) -> Option<String> {
    let prefix = format!("interproc-pc-shm-sem-{pid}-");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with(&prefix))
}

fn sem_exists(key_hex: &str) -> bool {
    let key = i64::from_str_radix(key_hex.trim_start_matches("0x"), 16).unwrap() as i32;
    std::fs::read_to_string("/proc/sysvipc/sem")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().next().and_then(|k| k.parse::<i32>().ok()) == Some(key))
}

#[test]
fn sigint_removes_the_bounded_buffer_and_its_semaphores() {
    let rt = Scratch::new("pc-test");
    let (child, objs) = start_long_run(&rt, "shm-sem");
    assert!(objs.iter().any(|o| o["kind"] == "sem"), "{objs:?}");
    let seg = shm_sem_segment_of(child.id()).expect("the segment exists while the run does");
    signal(child.id() as i32, nix::sys::signal::Signal::SIGINT);
    let out = child.finish();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stdout));
    check_gone(&rt, &objs);
    assert!(!Path::new("/dev/shm").join(&seg).exists(), "{seg} left behind");
}

/// A producer killed at a random point, perhaps holding the buffer's mutex: SEM_UNDO
/// frees it, the run fails without a hang, and everything is removed.
#[test]
fn a_killed_shm_sem_producer_fails_the_run_without_a_hang() {
    let rt = Scratch::new("pc-test");
    let (child, objs) = start_long_run(&rt, "shm-sem");
    let seg = shm_sem_segment_of(child.id()).expect("the segment exists");
    let kids = wait_for_children(child.id(), 4);
    signal(*kids.last().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let out = child.finish();
    assert_eq!(out.status.code(), Some(1));
    assert!(last_json(&out)["lost"].as_u64().unwrap() > 0);
    check_gone(&rt, &objs);
    assert!(!Path::new("/dev/shm").join(&seg).exists(), "{seg} left behind");
}

#[test]
fn large_messages_cross_the_pipe_buffer() {
    exactly_once("pipe", 2, 1, 200, 200_000);
}

fn msgq_exists(key_hex: &str) -> bool {
    let key = i64::from_str_radix(key_hex.trim_start_matches("0x"), 16).unwrap() as i32;
    std::fs::read_to_string("/proc/sysvipc/msg")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().next().and_then(|k| k.parse::<i32>().ok()) == Some(key))
}

/// Owner records of this runtime directory, as `interproc ls --json` reports them.
/// (`ls` also lists keyed queues that have no record here, such as those of tests running
/// beside this one, with no owner: those are not this run's.)
fn objects(rt: &Scratch) -> Vec<Value> {
    let out = run(rt, &["ls", "--json"]);
    assert!(out.status.success());
    let all = last_json(&out)["objects"].as_array().unwrap().clone();
    // Named shared-memory segments are listed machine-wide (`/dev/shm`), so other tests'
    // show up too: those of this run are checked by name (`shm_sem_segment_of`).
    all.into_iter().filter(|o| o["owner_pid"].is_u64() && o["kind"] != "shm").collect()
}

/// Starts a long run and waits until its objects exist.
/// A long demo run, killed and reaped if the test fails before it finishes, so that a
/// failed assertion never leaves a 100M-message run behind (one did, in a CI run).
struct LongRun(Option<Child>);

impl LongRun {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    fn finish(mut self) -> Output {
        finish(self.0.take().expect("running"))
    }
}

impl Drop for LongRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SIGKILL: the children die with it (PR_SET_PDEATHSIG); what it created is
            // left for `interproc clean`, since its owner is dead.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_long_run(rt: &Scratch, transport: &str) -> (LongRun, Vec<Value>) {
    let child =
        command(rt, &["demo", "pc", "--transport", transport, "--messages", "100000000", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut child = child;
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let objs = objects(rt);
        if !objs.is_empty() {
            return (LongRun(Some(child)), objs);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo never created its objects");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn children_of(pid: u32) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    text.split_whitespace().map(|s| s.parse().unwrap()).collect()
}

/// Waits (under the watchdog) until `pid` has forked `n` children; returns them.
fn wait_for_children(pid: u32, n: usize) -> Vec<i32> {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let kids = children_of(pid);
        if kids.len() >= n {
            return kids;
        }
        assert!(Instant::now() < deadline, "only {} of {n} children appeared", kids.len());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

fn check_gone(rt: &Scratch, objs: &[Value]) {
    for o in objs {
        let name = o["name"].as_str().unwrap();
        match o["kind"].as_str().unwrap() {
            "msgq" => assert!(!msgq_exists(name), "queue {name} left behind"),
            "sem" => assert!(!sem_exists(name), "semaphore set {name} left behind"),
            _ => assert!(!Path::new(name).exists(), "{name} left behind"),
        }
    }
    assert_eq!(rt.leftovers(), Vec::<String>::new());
}

fn interrupted(transport: &str, sig: nix::sys::signal::Signal) {
    let rt = Scratch::new("pc-test");
    let (child, objs) = start_long_run(&rt, transport);
    signal(child.id() as i32, sig);
    let out = child.finish();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stdout));
    check_gone(&rt, &objs);
}

#[test]
fn sigterm_removes_the_fifos() {
    interrupted("fifo", nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigterm_removes_the_socket_files() {
    interrupted("unix", nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_removes_the_queue() {
    interrupted("msgq", nix::sys::signal::Signal::SIGINT);
}

/// A producer killed in the middle: the run fails (no hang), reports the loss, and the
/// queue, which gives consumers no EOF, is still removed.
#[test]
fn a_killed_producer_fails_the_run_without_a_hang() {
    let rt = Scratch::new("pc-test");
    let (child, objs) = start_long_run(&rt, "msgq");
    let kids = wait_for_children(child.id(), 4);
    assert_eq!(kids.len(), 4, "2 consumers + 2 producers");
    // Children are forked consumers first: the last one is a producer.
    signal(*kids.last().unwrap(), nix::sys::signal::Signal::SIGKILL);
    let out = child.finish();
    let status: ExitStatus = out.status;
    assert_eq!(status.code(), Some(1));
    let j = last_json(&out);
    assert!(j["lost"].as_u64().unwrap() > 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("producer 1") && stdout.contains("137"), "{stdout}");
    check_gone(&rt, &objs);
}

fn alive(pid: i32) -> bool {
    // A zombie (state Z) has exited; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Regression: if the parent is SIGKILLed (no chance to clean up), its children must not
/// live on blocked on a queue that has no EOF, and `interproc clean` must then be able to
/// remove what the parent left.
#[test]
fn a_killed_parent_takes_its_children_and_clean_removes_the_queue() {
    let rt = Scratch::new("pc-test");
    let (child, objs) = start_long_run(&rt, "msgq");
    let kids = wait_for_children(child.id(), 4);
    signal(child.id() as i32, nix::sys::signal::Signal::SIGKILL);
    let _ = child.finish();
    let deadline = Instant::now() + WATCHDOG;
    while kids.iter().any(|&k| alive(k)) {
        if Instant::now() > deadline {
            for &k in &kids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(k),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("the children outlived their SIGKILLed parent");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(&rt, &["clean", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    check_gone(&rt, &objs);
}
