//! Why a shared-memory segment could not be created, opened or mapped.

use nix::errno::Errno;

/// What went wrong with a shared-memory [`Segment`](super::Segment). Every message says
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// No segment has this name.
    #[error("shared-memory segment {name:?} does not exist; create it first (Segment::create), or use Segment::create_or_open")]
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// An exclusive create found the name taken.
    #[error("shared-memory segment {name:?} already exists; open it instead (Segment::open), or remove /dev/shm/{name} if its owner is gone")]
    AlreadyExists {
        /// The segment's name.
        name: String,
    },
    /// The caller may not open (or create) the segment.
    #[error("permission denied on shared-memory segment {name:?}; it belongs to another user or its mode (0600 by default) excludes this one")]
    PermissionDenied {
        /// The segment's name.
        name: String,
    },
    /// The filesystem behind the segment cannot hold it. Nothing was created.
    #[error("not enough shared memory in {path}: {needed} bytes needed, {free} bytes free; remove unused segments (ls -l /dev/shm; `interproc clean`), ask for less, or enlarge it (mount -o remount,size=N /dev/shm, root)")]
    NoSpace {
        /// Where the space was wanted: `/dev/shm`, or `memfd (RAM)` for an anonymous
        /// segment.
        path: String,
        /// Bytes free there when it failed.
        free: u64,
        /// Bytes the segment needs (its mapping, rounded up to pages).
        needed: u64,
    },
    /// The directory of named segments ([`SHM_DIR`](super::SHM_DIR), `/dev/shm`) cannot
    /// hold them on this machine: it is missing, is not a directory, is not a tmpfs (no
    /// tmpfs is mounted there), is mounted read-only, or this user may not create files in
    /// it. Nothing was created. `problem` says which and `fix` what to do about it; an
    /// anonymous segment ([`Segment::anonymous`](super::Segment::anonymous), a memfd)
    /// needs no mount at all.
    #[error("cannot create a named shared-memory segment in {dir}: {problem}; {fix}; or use Segment::anonymous (a memfd), which needs no mount")]
    ShmDirUnusable {
        /// The directory: `/dev/shm`.
        dir: String,
        /// What is wrong with it, for example `it does not exist`.
        problem: String,
        /// What to do about it, for example the `mount` command that makes it usable.
        fix: String,
    },
    /// `/proc` is not mounted. A named segment is built as an unnamed file and then given
    /// its name with `linkat` through `/proc/self/fd/N`, which needs it. Nothing was
    /// created.
    #[error("cannot name a new shared-memory segment: {path} is missing, so /proc is not mounted (linkat gives the segment's unnamed file its name through it); mount it (mount -t proc proc /proc, root), or use Segment::anonymous (a memfd), which needs no /proc")]
    ProcNotMounted {
        /// The path that was missing: `/proc/self/fd`.
        path: String,
    },
    /// The segment exists but is not what the caller expects: bad magic number (not an
    /// interproc segment), another layout version, another size, another type, or never
    /// initialised. `what` says which, with both values.
    #[error("shared-memory segment {name} is not usable here: {what}; open it with the type and build that created it, or remove it and create it again")]
    Invalid {
        /// The segment's name, or `fd N` for one mapped from a file descriptor.
        name: String,
        /// What did not match.
        what: String,
    },
    /// The name cannot be a segment name.
    #[error("invalid shared-memory segment name {name:?}: {why}; use 1 to 255 bytes without '/' or NUL, for example \"interproc-myapp\"")]
    NameInvalid {
        /// The name that was given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Any other OS error, with the call that failed.
    #[error("{op} failed: {errno} ({})", errno.desc())]
    Os {
        /// The operation, for example `mmap`.
        op: &'static str,
        /// The errno.
        errno: Errno,
    },
}

impl ShmError {
    /// Maps an errno from `op` on the segment `name` to the matching variant.
    pub(crate) fn from_errno(op: &'static str, name: &str, errno: Errno) -> ShmError {
        match errno {
            Errno::ENOENT => ShmError::NotFound { name: name.to_string() },
            Errno::EEXIST => ShmError::AlreadyExists { name: name.to_string() },
            Errno::EACCES | Errno::EPERM => ShmError::PermissionDenied { name: name.to_string() },
            errno => ShmError::Os { op, errno },
        }
    }
}

impl From<ShmError> for std::io::Error {
    fn from(e: ShmError) -> Self {
        use std::io::ErrorKind as K;
        let kind = match &e {
            ShmError::NotFound { .. } => K::NotFound,
            ShmError::AlreadyExists { .. } => K::AlreadyExists,
            ShmError::PermissionDenied { .. } => K::PermissionDenied,
            ShmError::NoSpace { .. } => K::StorageFull,
            ShmError::Invalid { .. } => K::InvalidData,
            ShmError::NameInvalid { .. } => K::InvalidInput,
            ShmError::ShmDirUnusable { .. } | ShmError::ProcNotMounted { .. } => K::Unsupported,
            ShmError::Os { errno, .. } => return std::io::Error::from_raw_os_error(*errno as i32),
        };
        std::io::Error::new(kind, e)
    }
}
