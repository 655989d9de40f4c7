//! The lifecycle of named resources.
//!
//! Every named object interproc creates (a FIFO, a socket file, a System V queue, ...)
//! gets an *owner record*: a small file in [`runtime_dir()`] that names the object and
//! its owner, and on which the owner holds an exclusive `flock(2)` for as long as it
//! lives. The kernel drops the lock when the owner dies, however it dies, so a record
//! whose lock can be taken belongs to a dead owner. That is a liveness check that a
//! recycled pid cannot fool. `interproc ls` lists the records, `interproc clean`
//! removes the objects whose owner died.
//!
//! The lock lives on the record's open file description, which a `fork`ed child
//! shares until it `exec`s or exits: a forked child keeps its parent's objects "alive".

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every interproc name starts with this.
pub const PREFIX: &str = "interproc";

/// The directory for owner records and default object paths:
/// `$INTERPROC_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/interproc`, else
/// `/tmp/interproc-<uid>`. Created with mode 0700 if missing.
///
/// The directory must be private: a real directory (not a symlink), owned by this user,
/// and closed to group and others. Anything else is refused with
/// [`io::ErrorKind::PermissionDenied`]: in a directory that others can write, anyone
/// could plant records that make `interproc clean` remove this user's objects. (The
/// `/tmp` fallback is where that matters: another user may have created it first.)
pub fn runtime_dir() -> io::Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("INTERPROC_RUNTIME_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        Path::new(&d).join(PREFIX)
    } else {
        PathBuf::from(format!("/tmp/{PREFIX}-{}", nix::unistd::getuid()))
    };
    private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` (mode 0700) if missing, and checks that it is private to this user.
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let st = crate::sys::lstat(dir)?;
    let uid = nix::unistd::getuid().as_raw();
    let refuse = if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        Some("it is not a directory (a symlink?)".to_string())
    } else if st.st_uid != uid {
        Some(format!("it belongs to uid {}, not to this user (uid {uid})", st.st_uid))
    } else if st.st_mode & 0o077 != 0 {
        Some(format!(
            "its mode is {:04o}; group and others must have no access",
            st.st_mode & 0o7777
        ))
    } else {
        None
    };
    match refuse {
        None => Ok(()),
        Some(why) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing the interproc runtime directory {}: {why}. Fix it (chmod 700, or \
                 remove it) or set INTERPROC_RUNTIME_DIR to a private directory",
                dir.display()
            ),
        )),
    }
}

fn records_dir() -> io::Result<PathBuf> {
    let d = runtime_dir()?.join("owners");
    private_dir(&d)?;
    Ok(d)
}

/// (st_dev, st_ino): a file's identity while it exists.
fn identity(st: &libc::stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// A name unique on this machine for now: `interproc-<tag>-<pid>-<n>`.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{PREFIX}-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Which one a create-or-open call did: one type for every kind of object, shared with
/// `interproc::sync::shm::Segment::create_or_open`.
pub use interproc_sync::shm::Origin;

/// What kind of object a record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A named pipe; the name is its path.
    Fifo,
    /// A Unix socket file; the name is its path.
    SocketFile,
    /// A System V message queue; the name is its key in hex (`0x...`).
    MsgQueue,
    /// A System V semaphore set; the name is its key in hex.
    SemSet,
    /// A System V shared-memory segment; the name is its key in hex.
    SysvShm,
}

impl Kind {
    /// The word used in records and in `interproc ls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fifo => "fifo",
            Kind::SocketFile => "socket",
            Kind::MsgQueue => "msgq",
            Kind::SemSet => "sem",
            Kind::SysvShm => "sysv-shm",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "fifo" => Kind::Fifo,
            "socket" => Kind::SocketFile,
            "msgq" => Kind::MsgQueue,
            "sem" => Kind::SemSet,
            "sysv-shm" => Kind::SysvShm,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an owner record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The kind of object.
    pub kind: Kind,
    /// Its name: a path, or a key in hex.
    pub name: String,
    /// The pid that created it.
    pub pid: u32,
    /// That process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// so a reader can tell the owner from a later process with the same pid.
    pub start_time: u64,
}

impl Record {
    fn encode(&self) -> String {
        format!(
            "kind={}\nname={}\npid={}\nstart_time={}\n",
            self.kind, self.name, self.pid, self.start_time
        )
    }

    fn decode(text: &str) -> Option<Record> {
        let (mut kind, mut name, mut pid, mut start) = (None, None, None, None);
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            match k {
                "kind" => kind = Kind::parse(v),
                "name" => name = Some(v.to_string()),
                "pid" => pid = v.parse().ok(),
                "start_time" => start = v.parse().ok(),
                _ => {}
            }
        }
        Some(Record { kind: kind?, name: name?, pid: pid?, start_time: start? })
    }
}

/// The start time of `pid` in clock ticks since boot, from `/proc/<pid>/stat`.
pub fn process_start_time(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: skip past the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // Fields after ')' start at field 3; start time is field 22.
    rest.split_whitespace()
        .nth(19)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/pid/stat"))
}

fn record_file_name(kind: Kind, name: &str) -> String {
    // One record per object: derive the file name from kind and name.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    format!("{kind}-{h:016x}.owner")
}

/// Proof that this process owns a named object. While it lives, the record's lock is
/// held; dropping it removes the record (the object itself is removed by its owner
/// type, which drops this after removing the object).
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    /// The process that registered: a `fork`ed child holds a copy of this value, and
    /// must leave the record (and the object) to the owner.
    pid: u32,
    /// Locked for as long as this process (and any child forked with it) lives.
    lock: File,
}

impl Registration {
    /// Records that this process owns the object `kind`/`name`.
    pub fn register(kind: Kind, name: &str) -> io::Result<Registration> {
        let dir = records_dir()?;
        let path = dir.join(record_file_name(kind, name));
        let pid = std::process::id();
        let record =
            Record { kind, name: name.to_string(), pid, start_time: process_start_time(pid)? };
        // Write under a temporary name, lock, then rename: a record is never visible
        // unlocked while its owner lives.
        let tmp = dir.join(format!(".{}.tmp", unique_name("rec")));
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let mut lock = file;
        if !crate::sys::flock_try(&lock, true)? {
            return Err(io::Error::other("a fresh owner record is locked by someone else"));
        }
        lock.write_all(record.encode().as_bytes())?;
        fs::rename(&tmp, &path)?;
        Ok(Registration { path, pid, lock })
    }
}

impl Registration {
    /// Whether this is the process that registered. An owner type checks this before it
    /// removes its object on drop: a `fork`ed child drops copies of its parent's owners,
    /// and the objects are the parent's, not the child's.
    pub fn in_owner_process(&self) -> bool {
        self.pid == std::process::id()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // In a forked child, closing this copy of the record fd does not release the
        // owner's lock (flock belongs to the open file description, which the parent still
        // holds open); removing the record would. So only the owner removes it.
        //
        // And only while the path still names our record: if the object was re-created by
        // a new owner, its record replaced ours, and is not ours to remove.
        if self.in_owner_process() && same_file(&self.lock, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` (itself, not a symlink's target) names the file open as `file`.
fn same_file(file: &File, path: &Path) -> bool {
    match (crate::sys::fstat(file), crate::sys::lstat(path)) {
        (Ok(a), Ok(b)) => identity(&a) == identity(&b),
        _ => false,
    }
}

/// One owner record found on the machine.
#[derive(Clone, Debug)]
pub struct Entry {
    /// What the record says.
    pub record: Record,
    /// Whether the owner still holds the record's lock.
    pub alive: bool,
    /// The record file.
    pub path: PathBuf,
}

/// Lists every owner record in [`runtime_dir()`], with the liveness of its owner.
pub fn list() -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(records_dir()?)? {
        let path = ent?.path();
        if path.extension().is_none_or(|e| e != "owner") {
            continue;
        }
        // Never follow a symlink, never block in open (a FIFO planted here), and read
        // only regular files.
        let Ok(mut file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        if !crate::sys::fstat(&file).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG) {
            continue;
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            continue;
        }
        let Some(record) = Record::decode(&text) else { continue };
        // If we can take the lock, nobody holds it: the owner is gone. Closing `file`
        // at the end of this iteration releases it.
        let alive = !crate::sys::flock_try(&file, false)?;
        out.push(Entry { record, alive, path });
    }
    out.sort_by(|a, b| {
        (a.record.kind.as_str(), &a.record.name).cmp(&(b.record.kind.as_str(), &b.record.name))
    });
    Ok(out)
}

/// What [`remove_stale`] did with one owner record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Removal {
    /// The owner still holds the record's lock: nothing was touched.
    OwnerAlive,
    /// The object was removed, then its record.
    Removed,
    /// The object was already gone; its record was removed.
    AlreadyGone,
    /// The object's path now holds something of another type (not the FIFO or socket the
    /// record names). That was left alone; the record was removed.
    Replaced,
    /// This build has no remover for the record's kind (see [`can_remove`]): the object
    /// and its record were left in place.
    Skipped,
}

impl Removal {
    /// A short word for output: `owner_alive`, `removed`, `already_gone`, `replaced`,
    /// `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Removal::OwnerAlive => "owner_alive",
            Removal::Removed => "removed",
            Removal::AlreadyGone => "already_gone",
            Removal::Replaced => "replaced",
            Removal::Skipped => "skipped",
        }
    }
}

/// What removing the object itself found.
type Remover = fn(&str) -> io::Result<Removal>;

/// The remover for each kind of object: the one place where `clean` learns a kind.
///
/// A module that introduces a kind adds its arm here; a kind without a remover (`None`)
/// is reported as [`Removal::Skipped`], and its object and record stay in place.
fn remover(kind: Kind) -> Option<Remover> {
    match kind {
        Kind::Fifo => Some(|name| remove_path_of_type(name, libc::S_IFIFO)),
        Kind::SocketFile => Some(|name| remove_path_of_type(name, libc::S_IFSOCK)),
        Kind::MsgQueue => Some(|name| remove_key(name, crate::msgq::remove_by_key)),
        Kind::SemSet => Some(|name| remove_key(name, crate::sem::remove_by_key)),
        Kind::SysvShm => Some(|name| remove_key(name, crate::shm::remove_by_key)),
    }
}

/// Removes the System V object whose key `name` holds, with `remove`.
fn remove_key(
    name: &str,
    remove: fn(crate::msgq::Key) -> crate::Result<()>,
) -> io::Result<Removal> {
    let key: crate::msgq::Key =
        name.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    match remove(key) {
        Ok(()) => Ok(Removal::Removed),
        Err(crate::Error::NotFound { .. }) => Ok(Removal::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

/// Whether this build can remove objects of `kind` (see [`remove_stale`]).
pub fn can_remove(kind: Kind) -> bool {
    remover(kind).is_some()
}

/// Unlinks `path` if it is still of type `file_type` (`S_IFIFO`, `S_IFSOCK`). A record
/// names a path, and a path can be reused: never delete a regular file or a directory
/// because a dead owner's record once named that path.
fn remove_path_of_type(path: &str, file_type: libc::mode_t) -> io::Result<Removal> {
    let path = Path::new(path);
    match crate::sys::lstat(path) {
        Err(nix::errno::Errno::ENOENT) => Ok(Removal::AlreadyGone),
        Err(e) => Err(e.into()),
        Ok(st) if st.st_mode & libc::S_IFMT != file_type => Ok(Removal::Replaced),
        Ok(_) => match crate::sys::unlink(path) {
            Ok(()) => Ok(Removal::Removed),
            Err(nix::errno::Errno::ENOENT) => Ok(Removal::AlreadyGone),
            Err(e) => Err(e.into()),
        },
    }
}

/// Removes the object named by a dead owner's record, then the record.
///
/// Liveness is checked again here, under the record's lock, not taken from `entry`:
/// an exclusive `flock` on the record succeeds only if its owner is gone, and holding it
/// keeps a second `clean` off the same record. A live owner's record gives
/// [`Removal::OwnerAlive`] and nothing is touched. FIFOs and socket files are unlinked
/// only if the path still holds a FIFO or a socket ([`Removal::Replaced`] otherwise).
/// Kinds this build cannot remove give [`Removal::Skipped`].
pub fn remove_stale(entry: &Entry) -> io::Result<Removal> {
    if !can_remove(entry.record.kind) {
        return Ok(Removal::Skipped);
    }
    let file = match File::open(&entry.path) {
        Ok(f) => f,
        // Someone else cleaned it, or the owner dropped it, in the meantime.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::AlreadyGone),
        Err(e) => return Err(e),
    };
    // `interproc ls` takes a shared lock for an instant; do not mistake it for an owner.
    let mut attempts = 0;
    while !crate::sys::flock_try(&file, true)? {
        if attempts == 3 {
            return Ok(Removal::OwnerAlive);
        }
        attempts += 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let lock = file;
    // The record we locked must still be the one at the path. If not, a new owner
    // replaced it between our open and our lock (say, a listener that reclaimed the stale
    // socket file): the object at the path is now theirs, and must not be touched.
    if !same_file(&lock, &entry.path) {
        return Ok(Removal::AlreadyGone);
    }
    // Act on the record we hold locked, not on `entry`: if another owner registered
    // the same object since `list()` (and died too), its record replaced the old one.
    let mut text = String::new();
    (&lock).read_to_string(&mut text)?;
    let record = Record::decode(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable owner record {}", entry.path.display()),
        )
    })?;
    let Some(remove) = remover(record.kind) else { return Ok(Removal::Skipped) };
    let outcome = remove(&record.name)?;
    // Remove the record only if its path still names the file we hold locked.
    if same_file(&lock, &entry.path) {
        match crate::sys::unlink(&entry.path) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(outcome)
}
