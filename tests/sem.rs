//! System V semaphore sets across real processes: keys and lifecycle (like msgq's),
//! SEM_UNDO when a holder is killed, timeouts, removal while waiting.
//!
//! Every set comes from `SemSet::create_unique` (a fresh key) or is private, and is
//! removed by its owner's drop, so tests run in parallel and leave nothing in `ipcs -s`.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use interproc::ipc::names::{self, Origin};
use interproc::ipc::sem::{Key, SemOp, SemSet};
use interproc::ipc::Error;

#[test]
fn child_entry() {
    support::child_entry(|role, arg| {
        let key: Key = arg.parse().unwrap();
        match role {
            "post_without_undo" => {
                SemSet::open(key).unwrap().op(&[SemOp::post(0).without_undo()]).unwrap()
            }
            "post_with_undo" => SemSet::open(key).unwrap().post(0).unwrap(),
            "hold_then_hang" => {
                let set = SemSet::open(key).unwrap();
                set.wait(0).unwrap();
                // Tell the parent we hold it (a signal, so without undo), then hang until
                // killed.
                set.op(&[SemOp::post(1).without_undo()]).unwrap();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            "wait_until_removed" => {
                let set = SemSet::open(key).unwrap();
                set.op(&[SemOp::post(1).without_undo()]).unwrap();
                match set.wait(0) {
                    Err(Error::Removed { what }) => assert!(what.contains(arg), "{what}"),
                    other => panic!("expected Removed, got {other:?}"),
                }
            }
            "own_and_hang" => {
                let set = SemSet::create(key, &[0]).unwrap();
                assert!(set.is_owner());
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            "open_as_nobody" => {
                nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).unwrap();
                assert!(matches!(SemSet::open(key), Err(Error::PermissionDenied { .. })));
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Runs `f` on a thread and waits for it under the watchdog.
fn within_watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(support::WATCHDOG).expect("watchdog: the operation hung")
}

#[test]
fn a_post_from_another_process_wakes_a_waiter() {
    let set = SemSet::create_unique(&[0]).unwrap();
    let key = set.key();
    let child = support::spawn("child_entry", "post_without_undo", &key.to_string(), &[]);
    set.wait_timeout(0, support::WATCHDOG).expect("the child's post");
    child.wait_success();
    assert_eq!(set.get(0).unwrap(), 0);
}

#[test]
fn an_undone_post_is_taken_back_when_the_process_exits() {
    let set = SemSet::create_unique(&[0]).unwrap();
    support::spawn("child_entry", "post_with_undo", &set.key().to_string(), &[]).wait_success();
    assert_eq!(set.get(0).unwrap(), 0, "SEM_UNDO reverses the child's post at its exit");
    support::spawn("child_entry", "post_without_undo", &set.key().to_string(), &[]).wait_success();
    assert_eq!(set.get(0).unwrap(), 1, "without SEM_UNDO the post stays");
}

#[test]
fn a_holder_killed_with_sigkill_gives_its_unit_back() {
    // Semaphore 0: the lock; semaphore 1: "I hold it", posted by the child.
    let set = SemSet::create_unique(&[1, 0]).unwrap();
    let child = support::spawn("child_entry", "hold_then_hang", &set.key().to_string(), &[]);
    set.op_timeout(&[SemOp::wait(1).without_undo()], support::WATCHDOG).expect("the child holds");
    assert_eq!(set.get(0).unwrap(), 0);
    assert!(!set.try_wait(0).unwrap(), "the lock is held");
    assert_eq!(set.last_pid(0).unwrap(), Some(child.pid()));
    let st = child.kill_and_wait();
    assert!(support::was_killed(&st));
    // The kernel undid the dead holder's wait: the lock is free again, nobody hangs.
    set.wait_timeout(0, support::WATCHDOG).expect("SEM_UNDO returned the unit");
    set.post(0).unwrap();
    assert_eq!(set.get(0).unwrap(), 1);
}

#[test]
fn removal_wakes_a_waiter_in_another_process_with_removed() {
    let set = SemSet::create_unique(&[0, 0]).unwrap();
    let child = support::spawn("child_entry", "wait_until_removed", &set.key().to_string(), &[]);
    set.op_timeout(&[SemOp::wait(1).without_undo()], support::WATCHDOG).unwrap();
    // The child is about to block (or blocks) on semaphore 0; wait until it does.
    let deadline = Instant::now() + support::WATCHDOG;
    while set.waiting(0).unwrap() == 0 {
        assert!(Instant::now() < deadline, "the child never waited");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(set);
    child.wait_success();
}

#[test]
fn removal_wakes_a_waiting_thread_with_removed() {
    let owner = SemSet::create_unique(&[0]).unwrap();
    let key = owner.key();
    let set = SemSet::open(key).unwrap();
    let waiter = std::thread::spawn(move || set.wait(0));
    let deadline = Instant::now() + support::WATCHDOG;
    while owner.waiting(0).unwrap() == 0 {
        assert!(Instant::now() < deadline, "the thread never waited");
        std::thread::sleep(Duration::from_millis(1));
    }
    owner.remove().unwrap();
    let r = within_watchdog(move || waiter.join().unwrap());
    assert!(matches!(r, Err(Error::Removed { .. })), "{r:?}");
}

#[test]
fn try_and_timeout_forms_do_not_wait() {
    let set = SemSet::private(&[0]).unwrap();
    assert!(!set.try_wait(0).unwrap());
    assert!(matches!(set.wait_timeout(0, Duration::from_millis(5)), Err(Error::Timeout)));
    assert!(matches!(
        set.op_deadline(&[SemOp::wait(0)], Some(Instant::now())),
        Err(Error::Timeout)
    ));
    set.post(0).unwrap();
    assert!(set.try_wait(0).unwrap());
}

#[test]
fn several_operations_apply_all_or_none() {
    let set = SemSet::private(&[1, 0, 5]).unwrap();
    assert_eq!(set.len(), 3);
    // Semaphore 1 is 0, so nothing happens, including the -1 on semaphore 0.
    assert!(!set.try_op(&[SemOp::wait(0), SemOp::wait(1)]).unwrap());
    assert_eq!(set.get_all().unwrap(), vec![1, 0, 5]);
    set.op(&[SemOp::wait(0), SemOp::add(2, -5), SemOp::add(1, 3)]).unwrap();
    assert_eq!(set.get_all().unwrap(), vec![0, 3, 0]);
    set.set_all(&[2, 2, 2]).unwrap();
    set.set(1, 9).unwrap();
    assert_eq!(set.get_all().unwrap(), vec![2, 9, 2]);
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(SemSet::private(&[]), Err(Error::LimitExceeded { .. })));
    assert!(matches!(SemSet::private(&[40000]), Err(Error::LimitExceeded { limit: "SEMVMX", .. })));
    let set = SemSet::private(&[0]).unwrap();
    match set.post(3) {
        Err(e @ Error::LimitExceeded { .. }) => {
            assert!(e.to_string().contains("semaphore number 3"), "{e}")
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(matches!(set.set(0, 40000), Err(Error::LimitExceeded { .. })));
    assert!(matches!(set.set_all(&[1, 2]), Err(Error::LimitExceeded { .. })));
    set.set(0, 32767).unwrap();
    assert!(matches!(
        set.op(&[SemOp::post(0).without_undo()]),
        Err(Error::LimitExceeded { limit: "SEMVMX", .. })
    ));
}

#[test]
fn create_open_and_create_or_open_work_like_msgq() {
    let first = SemSet::create_unique(&[3]).unwrap();
    let key = first.key();
    match SemSet::create(key, &[1]) {
        Err(Error::AlreadyExists { what }) => assert!(what.contains(&key.to_string()), "{what}"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let (opened, how) = SemSet::create_or_open(key, &[1]).unwrap();
    assert_eq!((how, opened.id(), opened.get(0).unwrap()), (Origin::Opened, first.id(), 3));
    assert!(!opened.is_owner());
    drop(opened);
    assert_eq!(first.get(0).unwrap(), 3, "an opener's drop leaves the set");
    first.remove().unwrap();
    assert!(matches!(SemSet::open(key), Err(Error::NotFound { .. })));
    let (created, how) = SemSet::create_or_open(key, &[4]).unwrap();
    assert_eq!((how, created.get(0).unwrap()), (Origin::Created, 4));
    assert!(created.is_owner());
    assert!(matches!(SemSet::open(Key::PRIVATE), Err(Error::NotFound { .. })));
}

#[test]
fn the_default_mode_is_0600_and_the_owner_drop_removes_set_and_record() {
    let set = SemSet::create_unique(&[0]).unwrap();
    let (key, id) = (set.key(), set.id());
    let perms = std::fs::read_to_string("/proc/sysvipc/sem")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&id.to_string().as_str())).then(|| f[2].to_string())
        })
        .expect("the set is listed");
    assert_eq!(perms, "600");
    let recorded = || {
        names::list()
            .unwrap()
            .iter()
            .any(|e| e.record.kind == names::Kind::SemSet && e.record.name == key.to_string())
    };
    assert!(recorded());
    drop(set);
    assert!(matches!(SemSet::open(key), Err(Error::NotFound { .. })));
    assert!(matches!(SemSet::open_id(id), Err(Error::NotFound { .. })));
    assert!(!recorded());
}

#[test]
fn another_user_is_refused_by_the_default_mode() {
    if !nix::unistd::geteuid().is_root() {
        return; // Only root can run a child as another user.
    }
    let set = SemSet::create_unique(&[0]).unwrap();
    support::spawn("child_entry", "open_as_nobody", &set.key().to_string(), &[]).wait_success();
}

/// Regression: the fork tests waited with a plain `waitpid`, so a hung child hung the
/// test. The watchdog they now use kills and reaps a hung forked child and fails the test.
#[test]
fn a_hung_forked_child_is_killed_by_the_watchdog() {
    // SAFETY: the child only calls `pause` (async-signal-safe) until it is killed.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => loop {
            // SAFETY: `pause` only waits for a signal.
            unsafe { libc::pause() };
        },
        nix::unistd::ForkResult::Parent { child } => {
            let waited = std::panic::catch_unwind(|| {
                support::wait_forked_within(child, Duration::from_millis(100))
            });
            let msg = waited.expect_err("the watchdog let a hung child pass");
            let msg = msg.downcast_ref::<String>().expect("a message");
            assert!(msg.contains("watchdog"), "{msg}");
            // Killed and reaped: no such child any more.
            assert_eq!(
                nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
                Err(nix::errno::Errno::ECHILD)
            );
        }
    }
}

#[test]
fn a_forked_child_dropping_the_owner_leaves_the_set() {
    let set = SemSet::private(&[0]).unwrap();
    let id = set.id();
    // SAFETY: the child only runs SemSet's drop (a getpid and a forget: no allocation, no
    // locks) and `_exit`s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            drop(set);
            // SAFETY: `_exit` ends the child at once, running no destructors.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child } => assert_eq!(support::wait_forked(child), 0),
    }
    assert_eq!(SemSet::open_id(id).unwrap().id(), id, "the child's drop removed it");
    drop(set);
    assert!(matches!(SemSet::open_id(id), Err(Error::NotFound { .. })));
}

#[test]
fn clean_removes_the_set_of_an_owner_killed_with_sigkill() {
    // A key of our own in interproc's key space, from the pid.
    let key = Key::interproc(0x80_0000 | (std::process::id() & 0x7f_ffff)).unwrap();
    let mut child = support::spawn("child_entry", "own_and_hang", &key.to_string(), &[]);
    let deadline = Instant::now() + support::WATCHDOG;
    let entry = loop {
        let found = names::list()
            .unwrap()
            .into_iter()
            .find(|e| e.record.kind == names::Kind::SemSet && e.record.name == key.to_string());
        if let Some(e) = found.filter(|e| e.alive) {
            break e;
        }
        assert!(Instant::now() < deadline, "the child never created the set");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(names::remove_stale(&entry).unwrap(), names::Removal::OwnerAlive);
    child.kill();
    assert!(support::was_killed(&child.wait()));
    assert_eq!(names::remove_stale(&entry).unwrap(), names::Removal::Removed);
    assert!(matches!(SemSet::open(key), Err(Error::NotFound { .. })));
}
