//! `interproc ls` and `interproc clean` end to end: FIFOs owned by child processes, one
//! killed and one alive, in a private runtime directory (so that the objects of tests
//! running in parallel are neither seen nor removed).

use std::ops::Not;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interproc::ipc::{fifo::Fifo, names};
use serde_json::Value;

const ROLE_ENV: &str = "INTERPROC_CLEAN_TEST_ROLE";
const WATCHDOG: Duration = Duration::from_secs(60);

/// In a child: owns a FIFO at the path given in the role variable until killed.
#[test]
fn child_entry() {
    let Ok(path) = std::env::var(ROLE_ENV) else { return };
    let r = std::panic::catch_unwind(|| {
        // A path under /dev/shm names a shared-memory segment to own instead of a FIFO.
        let _segment = path
            .strip_prefix("/dev/shm/")
            .map(|name| interproc::ipc::shm::Segment::create(name, 0u64).unwrap());
        let _owner = path.starts_with("/dev/shm/").not().then(|| Fifo::create(&path).unwrap());
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    std::process::exit(if r.is_ok() { 0 } else { 101 });
}

/// A child process, killed and reaped when dropped.
struct Owner(std::process::Child);

impl Owner {
    fn spawn(runtime: &Path, fifo: &Path) -> Owner {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, fifo)
            .env("INTERPROC_RUNTIME_DIR", runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Owner(child)
    }

    fn pid(&self) -> u64 {
        self.0.id().into()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `interproc <args>` against the private runtime directory; returns its exit
/// status and its last line of output, parsed as JSON.
fn interproc(runtime: &Path, args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_interproc"))
        .args(args)
        .env("INTERPROC_RUNTIME_DIR", runtime)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no output from {args:?}"));
    let json = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    (out.status.success(), json)
}

fn ls_entry(runtime: &Path, fifo: &Path) -> Option<Value> {
    let (ok, ls) = interproc(runtime, &["ls", "--json"]);
    assert!(ok, "{ls}");
    ls["objects"].as_array().unwrap().iter().find(|o| o["name"] == fifo.to_str().unwrap()).cloned()
}

/// Waits until `ls` shows the child's FIFO with a live owner; fails at the watchdog.
fn wait_listed_alive(runtime: &Path, fifo: &Path, owner: &mut Owner) {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(o) = ls_entry(runtime, fifo) {
            if o["owner_alive"] == true {
                assert_eq!(o["kind"], "fifo");
                assert_eq!(o["owner_pid"], owner.pid());
                return;
            }
        }
        if let Some(st) = owner.0.try_wait().unwrap() {
            panic!("the owner child exited early: {st:?}");
        }
        assert!(Instant::now() < deadline, "watchdog: the child never registered its FIFO");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The names in a list of objects, leaving out shared-memory segments: `/dev/shm` is
/// machine-wide, so other tests' segments may show up there.
fn names_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] != "shm")
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `clean` removes dead owners' named segments machine-wide, so the tests that run it
/// take turns (one could otherwise remove the segment another is about to check).
static CLEANING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn clean_removes_only_objects_whose_owner_died() {
    let _turn = CLEANING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir(std::env::temp_dir().join(names::unique_name("clean-test")));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&tmp.0)
        .unwrap();
    let runtime = tmp.0.join("runtime");
    let (dead_path, live_path) = (tmp.0.join("dead"), tmp.0.join("live"));

    let mut dead = Owner::spawn(&runtime, &dead_path);
    let mut live = Owner::spawn(&runtime, &live_path);
    wait_listed_alive(&runtime, &dead_path, &mut dead);
    wait_listed_alive(&runtime, &live_path, &mut live);
    let dead_pid = dead.pid();
    dead.kill();
    assert_eq!(ls_entry(&runtime, &dead_path).unwrap()["owner_alive"], false);

    // A dry run says what it would remove and removes nothing.
    let (ok, dry) = interproc(&runtime, &["clean", "--dry-run", "--json"]);
    assert!(ok, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(names_of(&dry["removed"]), [dead_path.to_str().unwrap()]);
    assert_eq!(dry["kept_alive"], 1);
    assert!(dead_path.exists());

    let (ok, cleaned) = interproc(&runtime, &["clean", "--json"]);
    assert!(ok, "{cleaned}");
    let removed: Vec<_> =
        cleaned["removed"].as_array().unwrap().iter().filter(|o| o["kind"] != "shm").collect();
    assert_eq!(removed.len(), 1, "{cleaned}");
    assert_eq!(removed[0]["kind"], "fifo");
    assert_eq!(removed[0]["name"], dead_path.to_str().unwrap());
    assert_eq!(removed[0]["owner_pid"], dead_pid);
    assert_eq!(removed[0]["object"], "removed");
    assert_eq!(cleaned["kept_alive"], 1);
    assert!(std::fs::symlink_metadata(&dead_path).is_err(), "the dead owner's FIFO is gone");
    assert!(ls_entry(&runtime, &dead_path).is_none(), "its record is gone");
    assert!(live_path.exists(), "a live owner's FIFO stays");
    assert_eq!(ls_entry(&runtime, &live_path).unwrap()["owner_alive"], true);

    // Once that owner dies too, the next clean removes its FIFO.
    live.kill();
    let (ok, cleaned) = interproc(&runtime, &["clean", "--json"]);
    assert!(ok, "{cleaned}");
    assert_eq!(names_of(&cleaned["removed"]), [live_path.to_str().unwrap()]);
    assert_eq!(cleaned["kept_alive"], 0);
    assert!(std::fs::symlink_metadata(&live_path).is_err());
    let (_, ls) = interproc(&runtime, &["ls", "--json"]);
    assert!(names_of(&ls["objects"]).is_empty(), "{ls}");
}

/// `ls` lists a queue in interproc's key space even when its owner record is not in this
/// runtime directory (here: it is in the default one), with no owner to name.
#[test]
fn ls_lists_a_queue_without_a_record_here() {
    let tmp = TempDir(std::env::temp_dir().join(names::unique_name("ls-test")));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&tmp.0)
        .unwrap();
    let q = interproc::ipc::msgq::MessageQueue::create_unique().unwrap();
    let key = q.key().to_string();
    let (ok, ls) = interproc(&tmp.0, &["ls", "--json"]);
    assert!(ok, "{ls}");
    let entry = ls["objects"].as_array().unwrap().iter().find(|o| o["name"] == key).cloned();
    let entry = entry.unwrap_or_else(|| panic!("queue {key} not listed: {ls}"));
    assert_eq!(entry["kind"], "msgq");
    assert!(entry["owner_pid"].is_null());
    drop(q);
    let (_, ls) = interproc(&tmp.0, &["ls", "--json"]);
    assert!(ls["objects"].as_array().unwrap().iter().all(|o| o["name"] != key));
}

/// A named shared-memory segment whose owner was killed is listed with its owner dead,
/// and `clean` removes it (its header names the owner; there is no record file).
#[test]
fn clean_removes_a_segment_whose_owner_died() {
    let _turn = CLEANING.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir(std::env::temp_dir().join(names::unique_name("clean-shm-test")));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&tmp.0)
        .unwrap();
    let name = names::unique_name("clean-shm");
    let path = PathBuf::from(format!("/dev/shm/{name}"));
    let mut owner = Owner::spawn(&tmp.0, &path);
    let segment = |ls: &Value| {
        ls["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == "shm" && o["name"] == name.as_str())
            .cloned()
    };
    let give_up = Instant::now() + WATCHDOG;
    loop {
        let (_, ls) = interproc(&tmp.0, &["ls", "--json"]);
        if let Some(seg) = segment(&ls) {
            assert_eq!(seg["owner_pid"], owner.pid());
            assert_eq!(seg["owner_alive"], true);
            break;
        }
        assert!(Instant::now() < give_up, "the segment never showed up: {ls}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A live owner's segment stays.
    let (ok, cleaned) = interproc(&tmp.0, &["clean", "--json"]);
    assert!(ok, "{cleaned}");
    assert!(path.exists());
    owner.kill();
    let (_, ls) = interproc(&tmp.0, &["ls", "--json"]);
    assert_eq!(segment(&ls).expect("still listed")["owner_alive"], false);
    let (ok, cleaned) = interproc(&tmp.0, &["clean", "--json"]);
    assert!(ok, "{cleaned}");
    let removed = cleaned["removed"].as_array().unwrap();
    assert!(removed.iter().any(|o| o["kind"] == "shm" && o["name"] == name.as_str()), "{cleaned}");
    assert!(!path.exists(), "the dead owner's segment is gone");
}
