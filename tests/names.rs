//! Owner records: who owns what, and what `clean` may remove.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use interproc::ipc::names::{self, Kind, Registration};

/// Regression: when an object is re-created by a new owner, the old owner's drop must not
/// remove the new owner's record (that object would vanish from `ls` and `clean`).
#[test]
fn an_old_owners_drop_leaves_a_newer_owners_record() {
    let name = format!("/tmp/{}", names::unique_name("names-test"));
    let old = Registration::register(Kind::Fifo, &name).unwrap();
    let new = Registration::register(Kind::Fifo, &name).unwrap();
    drop(old);
    let listed: Vec<_> =
        names::list().unwrap().into_iter().filter(|e| e.record.name == name).collect();
    assert_eq!(listed.len(), 1, "the newer owner's record is gone");
    assert!(listed[0].alive);
    drop(new);
    assert!(names::list().unwrap().iter().all(|e| e.record.name != name));
}

/// A runtime directory that others can write to is refused, not trusted: anyone could
/// plant records there that make `clean` remove a victim's objects.
#[test]
fn a_runtime_dir_open_to_others_is_refused() {
    let dir = std::env::temp_dir().join(names::unique_name("open-runtime"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["runtime_dir_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("INTERPROC_RUNTIME_DIR", &dir)
        .env("INTERPROC_NAMES_TEST_CHILD", "1")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("refused:") && stdout.contains("0777"), "{stdout}");
}

/// In a child with the runtime directory set: prints what `runtime_dir` says.
#[test]
fn runtime_dir_child() {
    if std::env::var_os("INTERPROC_NAMES_TEST_CHILD").is_none() {
        return;
    }
    match names::runtime_dir() {
        Ok(d) => println!("accepted: {}", d.display()),
        Err(e) => println!("refused: {e}"),
    }
    std::process::exit(0);
}
