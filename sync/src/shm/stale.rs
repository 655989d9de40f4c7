//! Named segments left behind: listing the interproc segments in `/dev/shm` with their
//! owners, and removing those whose owner has died (`interproc ls` and `interproc clean`).
//!
//! The owner of a named segment unlinks its name when it drops the [`Segment`]; a process
//! killed first cannot. Every segment's header records its owner (pid and start stamp, so a
//! recycled pid is not taken for it), which is all `clean` needs: no owner record file is
//! kept for POSIX segments.
//!
//! [`Segment`]: super::Segment

use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use super::layout;
use super::segment::SHM_DIR;
use crate::park::TaskId;

/// One interproc segment found in `/dev/shm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSegment {
    /// Its name (the file name in `/dev/shm`).
    pub name: String,
    /// The process that removes it when done, if any (a disowned segment has none).
    pub owner: Option<TaskId>,
    /// Whether that owner still runs (`None` if there is no owner).
    pub owner_alive: Option<bool>,
    /// Its size in bytes.
    pub size: u64,
}

/// What a segment file's header and inode say.
struct Peeked {
    /// The packed owner `TaskId`, 0 for none.
    owner: u64,
    size: u64,
    /// (device, inode), to check the name still refers to the same file later.
    id: (u64, u64),
}

/// Reads the header of `/dev/shm/<name>`: `Some` if it is an interproc segment of this
/// layout version.
fn peek(name: &str) -> io::Result<Option<Peeked>> {
    let path = format!("{SHM_DIR}/{name}");
    // Never follow a symlink or block on a FIFO planted there; only regular files.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let mut head = vec![0u8; layout::header_len()];
    if file.read_exact(&mut head).is_err() {
        return Ok(None); // shorter than a header: not ours
    }
    Ok(layout::peek(&head).map(|(owner, size)| Peeked {
        owner,
        size,
        id: (meta.dev(), meta.ino()),
    }))
}

/// Lists the interproc segments in `/dev/shm` that this user can read, with the liveness
/// of their owners. Files of other programs, and segments of another layout version, are
/// left out.
///
/// # Errors
///
/// If `/dev/shm` cannot be read.
pub fn list_named() -> io::Result<Vec<NamedSegment>> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(SHM_DIR)? {
        let Ok(name) = ent?.file_name().into_string() else { continue };
        let Ok(Some(Peeked { owner, size, .. })) = peek(&name) else { continue };
        let owner = (owner != 0).then(|| TaskId::unpack(owner));
        let owner_alive = owner.map(|o| !crate::sys::is_process_dead(o));
        out.push(NamedSegment { name, owner, owner_alive, size });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the name of segment `name` if its owner has died; returns whether it did.
///
/// The owner is read again here, and the name is removed only if it still refers to the
/// file that was checked. A segment with a live owner, or with none (disowned), is left
/// alone. Processes that have it mapped keep their mappings.
///
/// # Errors
///
/// If the file cannot be read or unlinked (`NotFound` if it is gone).
pub fn remove_if_owner_dead(name: &str) -> io::Result<bool> {
    let Some(Peeked { owner, id, .. }) = peek(name)? else { return Ok(false) };
    if owner == 0 || !crate::sys::is_process_dead(TaskId::unpack(owner)) {
        return Ok(false);
    }
    let path = format!("{SHM_DIR}/{name}");
    let now = std::fs::symlink_metadata(&path)?;
    if (now.dev(), now.ino()) != id {
        return Ok(false); // replaced meanwhile: not the segment we checked
    }
    std::fs::remove_file(&path)?;
    Ok(true)
}
