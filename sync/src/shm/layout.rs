//! The segment header and where a value sits behind it, for every kind of mapping.
//!
//! [`Segment`](super::Segment) uses these for POSIX and memfd segments;
//! `interproc::ipc::shm::SysvSegment` uses the very same functions for System V segments,
//! so every kind of segment is built and checked one way. Most users never need this
//! module.
//!
//! A mapping is: the header (magic number, [`LAYOUT_VERSION`], total size, offsets,
//! the type's size, alignment and name hash, the `initialised` flag), then the value at a
//! cache-line-aligned offset, then the optional *extra* bytes on a cache line of their
//! own, the whole rounded up to pages.
//!
//! ```
//! use interproc_sync::shm::layout::Layout;
//!
//! let l = Layout::of::<[u64; 4]>(1000).unwrap();
//! assert_eq!(l.value_offset() % 64, 0);
//! assert!(l.extra_offset() >= l.value_offset() + 32);
//! assert!(l.total() >= l.extra_offset() + 1000);
//! ```

// The header's 64-bit words are std's atomics: the header is never modelled by loom (this
// module is not built under `--cfg interproc_loom`), and the facade has no 64-bit atomic.
#![allow(clippy::disallowed_types)]

use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::{sys, ShmError};
use crate::loom::atomic::{AtomicU32, Ordering};

/// The layout version of the segment header. A segment made by a build with another
/// version is refused on open with [`ShmError::Invalid`].
pub const LAYOUT_VERSION: u32 = 2;

/// The first 8 bytes of every interproc segment.
const MAGIC: u64 = u64::from_le_bytes(*b"IPRCSEG\0");

/// The value of [`Header::initialised`] once header and value are complete.
const INITIALISED: u32 = 1;

/// The value and the extra area start on a cache line of their own, away from the header.
const CACHE_LINE: usize = 64;

/// How long an opener waits, by default, for a creator that is still building the
/// segment (see [`validate`]).
pub const INIT_WAIT: Duration = Duration::from_secs(5);

/// The start of every mapping. Written once by the creator before the `initialised` flag;
/// every field is an atomic, so a reader can never observe a torn or racing write as
/// undefined behaviour, whatever another process does to the memory.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    /// [`INITIALISED`] once the header and the value are written (Release; openers read
    /// it with Acquire before they trust anything else).
    initialised: AtomicU32,
    total_size: AtomicU64,
    value_offset: AtomicU64,
    extra_offset: AtomicU64,
    extra_size: AtomicU64,
    type_size: AtomicU64,
    type_align: AtomicU64,
    type_hash: AtomicU64,
    /// The owning process's packed `TaskId` (pid and start stamp), 0 if none: the process
    /// that unlinks the name on drop. `interproc ls` shows it; `interproc clean` removes
    /// a named segment whose owner has died. (Added in layout version 2.)
    owner: AtomicU64,
}

/// Where a `T` and its extra bytes sit in a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    total: usize,
    value_offset: usize,
    extra_offset: usize,
    extra: usize,
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    n.checked_add(to - 1).map(|v| v / to * to)
}

impl Layout {
    /// The layout for a `T` followed by `extra` bytes. The error says why there is none
    /// (an alignment above the page size, or a size that overflows).
    pub fn of<T>(extra: usize) -> Result<Layout, String> {
        let page = sys::page_size();
        if align_of::<T>() > page {
            return Err(format!(
                "the type's alignment {} exceeds the page size {page}",
                align_of::<T>()
            ));
        }
        let too_large = || format!("{extra} extra bytes make the segment larger than memory");
        let value_offset =
            round_up(size_of::<Header>(), CACHE_LINE.max(align_of::<T>())).ok_or_else(too_large)?;
        let value_end = value_offset.checked_add(size_of::<T>()).ok_or_else(too_large)?;
        let extra_offset = round_up(value_end, CACHE_LINE).ok_or_else(too_large)?;
        let end = extra_offset.checked_add(extra).ok_or_else(too_large)?;
        let total = round_up(end, page).ok_or_else(too_large)?;
        if i64::try_from(total).is_err() {
            return Err(too_large());
        }
        Ok(Layout { total, value_offset, extra_offset, extra })
    }

    /// The whole mapping in bytes, a multiple of the page size.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Where the value starts (aligned for it, and to 64 bytes).
    #[inline]
    pub fn value_offset(&self) -> usize {
        self.value_offset
    }

    /// Where the extra bytes start (64-byte aligned).
    #[inline]
    pub fn extra_offset(&self) -> usize {
        self.extra_offset
    }

    /// How many extra bytes were asked for.
    #[inline]
    pub fn extra(&self) -> usize {
        self.extra
    }

    /// The layout of an unchecked mapping of `len` bytes: nothing but its length, so that
    /// it can be unmapped before it is validated.
    pub fn unchecked(len: usize) -> Layout {
        Layout { total: len, value_offset: 0, extra_offset: 0, extra: 0 }
    }
}

/// FNV-1a over the type's name, size and alignment: two builds agree on it if they agree
/// on the type. `type_name` is meant for diagnostics and may change between compiler
/// versions; then opening refuses the segment (a false "type mismatch", never a false
/// match for a type of another size or alignment, which are checked apart).
fn type_hash<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let name = std::any::type_name::<T>();
    let sizes = [size_of::<T>() as u64, align_of::<T>() as u64];
    for b in name.bytes().chain(sizes.iter().flat_map(|s| s.to_le_bytes())) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Writes the header and `value` into a fresh mapping, then publishes the `initialised`
/// flag (Release).
///
/// # Safety
///
/// `base` must be the start of a writable, page-aligned mapping of at least
/// `layout.total()` bytes, with `layout` from [`Layout::of::<T>`](Layout::of), and nothing
/// may read or write the mapping until this returns except through the header's atomics
/// (an opener waiting for the flag).
pub unsafe fn init<T>(base: NonNull<u8>, layout: &Layout, value: T) {
    let header = Header {
        magic: AtomicU64::new(MAGIC),
        version: AtomicU32::new(LAYOUT_VERSION),
        initialised: AtomicU32::new(0),
        total_size: AtomicU64::new(layout.total as u64),
        value_offset: AtomicU64::new(layout.value_offset as u64),
        extra_offset: AtomicU64::new(layout.extra_offset as u64),
        extra_size: AtomicU64::new(layout.extra as u64),
        type_size: AtomicU64::new(size_of::<T>() as u64),
        type_align: AtomicU64::new(align_of::<T>() as u64),
        type_hash: AtomicU64::new(type_hash::<T>()),
        owner: AtomicU64::new(0),
    };
    // SAFETY: the caller guarantees a page-aligned mapping of `layout.total` bytes that
    // nobody else uses yet; `value_offset` is aligned for `T` and `value_offset +
    // size_of::<T>() <= total` (`Layout::of`). `write` does not drop the old bytes.
    unsafe {
        base.cast::<Header>().as_ptr().write(header);
        base.as_ptr().add(layout.value_offset).cast::<T>().write(value);
    }
    // SAFETY: the header was just written at `base`, which is aligned for it.
    let h = unsafe { base.cast::<Header>().as_ref() };
    h.initialised.store(INITIALISED, Ordering::Release);
}

/// Records `owner` (a packed [`TaskId`](crate::TaskId), 0 for none) as the process that
/// removes the segment's name.
///
/// # Safety
///
/// `base` must be the start of a mapping initialised by [`init`] that stays mapped for the
/// call.
pub unsafe fn set_owner(base: NonNull<u8>, owner: u64) {
    // SAFETY: the caller guarantees an initialised header at `base`; the field is atomic.
    let h = unsafe { base.cast::<Header>().as_ref() };
    h.owner.store(owner, Ordering::Relaxed);
}

/// What the first bytes of a file say about it as a segment: `None` if it is not an
/// interproc segment of this layout version, otherwise its owner (packed `TaskId`, 0 for
/// none) and total size. Reads a copy of the bytes, so it needs no mapping.
pub fn peek(bytes: &[u8]) -> Option<(u64, u64)> {
    let field = |off: usize| -> Option<u64> {
        Some(u64::from_ne_bytes(bytes.get(off..off + 8)?.try_into().ok()?))
    };
    let version = u32::from_ne_bytes(bytes.get(8..12)?.try_into().ok()?);
    if field(0)? != MAGIC || version != LAYOUT_VERSION {
        return None;
    }
    Some((
        field(std::mem::offset_of!(Header, owner))?,
        field(std::mem::offset_of!(Header, total_size))?,
    ))
}

/// The size of the header: a mapping shorter than this cannot be a segment.
pub fn header_len() -> usize {
    size_of::<Header>()
}

/// Checks that the mapping at `base` holds an initialised `T`: magic number, layout
/// version, type size, alignment and name hash, total size (which must equal `len`) and
/// offsets. Waits until `deadline` for the `initialised` flag, for creators that publish
/// the name before the contents. `label` names the segment in the error.
///
/// # Safety
///
/// `base` must be the start of a readable, page-aligned mapping of `len` bytes that stays
/// mapped for the call.
pub unsafe fn validate<T>(
    base: NonNull<u8>,
    len: usize,
    label: &str,
    deadline: Instant,
) -> Result<Layout, ShmError> {
    let invalid = |what: String| ShmError::Invalid { name: label.to_string(), what };
    if len < size_of::<Header>() {
        return Err(invalid(format!(
            "it is {len} bytes, smaller than the {}-byte header: not an interproc segment",
            size_of::<Header>()
        )));
    }
    // SAFETY: the caller guarantees `len` readable, page-aligned bytes at `base`, which is
    // at least a `Header` (checked above); all its fields are atomics, valid for any bits.
    let h = unsafe { base.cast::<Header>().as_ref() };
    loop {
        let magic = h.magic.load(Ordering::Relaxed);
        if magic != MAGIC && magic != 0 {
            return Err(invalid(format!(
                "magic number {magic:#018x}, expected {MAGIC:#018x}: not an interproc segment"
            )));
        }
        if h.initialised.load(Ordering::Acquire) == INITIALISED {
            break;
        }
        if crate::loom::time::now() >= deadline {
            return Err(invalid(
                "it was never initialised: its creator died while building it".to_string(),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let magic = h.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        return Err(invalid(format!("magic number {magic:#018x}, expected {MAGIC:#018x}")));
    }
    let version = h.version.load(Ordering::Relaxed);
    if version != LAYOUT_VERSION {
        return Err(invalid(format!(
            "layout version {version}, this build reads version {LAYOUT_VERSION}"
        )));
    }
    let (tsize, talign) =
        (h.type_size.load(Ordering::Relaxed), h.type_align.load(Ordering::Relaxed));
    if (tsize, talign) != (size_of::<T>() as u64, align_of::<T>() as u64) {
        return Err(invalid(format!(
            "type size/alignment {tsize}/{talign}, but {} is {}/{}",
            std::any::type_name::<T>(),
            size_of::<T>(),
            align_of::<T>()
        )));
    }
    let hash = h.type_hash.load(Ordering::Relaxed);
    if hash != type_hash::<T>() {
        return Err(invalid(format!(
            "type hash {hash:#018x}, but {} hashes to {:#018x} (another type of the same size)",
            std::any::type_name::<T>(),
            type_hash::<T>()
        )));
    }
    let extra = usize::try_from(h.extra_size.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
    let expect = Layout::of::<T>(extra).map_err(|w| invalid(format!("its extra size: {w}")))?;
    let total = h.total_size.load(Ordering::Relaxed);
    if total != len as u64 || expect.total != len {
        return Err(invalid(format!(
            "size mismatch: the header says {total} bytes, the mapping has {len}, and a {} \
             with {extra} extra bytes needs {}",
            std::any::type_name::<T>(),
            expect.total
        )));
    }
    let offsets = (h.value_offset.load(Ordering::Relaxed), h.extra_offset.load(Ordering::Relaxed));
    if offsets != (expect.value_offset as u64, expect.extra_offset as u64) {
        return Err(invalid(format!(
            "value/extra offsets {}/{}, expected {}/{}",
            offsets.0, offsets.1, expect.value_offset, expect.extra_offset
        )));
    }
    Ok(expect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_page_rounded_and_aligned() {
        let l = Layout::of::<[u64; 3]>(100).unwrap();
        assert_eq!(l.value_offset % 64, 0);
        assert!(l.value_offset >= size_of::<Header>());
        assert_eq!(l.extra_offset % 64, 0);
        assert!(l.extra_offset >= l.value_offset + 24);
        assert_eq!(l.total % sys::page_size(), 0);
        assert!(l.total >= l.extra_offset + 100);
        assert!(Layout::of::<u8>(usize::MAX).is_err());
    }

    #[test]
    fn the_version_sits_at_byte_8() {
        // tests/shm.rs patches it there to check that another version is refused.
        assert_eq!(std::mem::offset_of!(Header, version), 8);
    }
}
