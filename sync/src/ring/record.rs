//! The record codec both rings share (the SPSC [`Producer`](super::Producer)/
//! [`Consumer`](super::Consumer) and the [`mpmc`](super::mpmc) ring): record headers,
//! padding records, and the checks a reader makes before it trusts a record, plus the
//! little helpers both rings' waits and handles use.
//!
//! A record is an 8-byte header (`u32` length, `u32` tag) and the payload, rounded up to
//! 8 bytes; a record that does not fit before the end of the area is preceded by a padding
//! record that fills the rest (see the [module documentation](super)).

use super::{DataArea, MAX_CAPACITY, MIN_CAPACITY, RECORD_HEADER};

/// The tag of a message record (`"RMSG"`).
pub(super) const TAG_MSG: u32 = 0x4753_4d52;
/// The tag of a padding record (`"RPAD"`), which fills the area up to its end.
pub(super) const TAG_PAD: u32 = 0x4441_5052;

/// Bytes a record of `len` payload bytes takes: header plus payload rounded up to 8.
#[inline]
pub(super) fn record_size(len: usize) -> usize {
    RECORD_HEADER + ((len + 7) & !7)
}

/// The header of a record of `len` bytes with `tag`.
#[inline]
pub(super) fn encode_header(len: u32, tag: u32) -> [u8; RECORD_HEADER] {
    let mut h = [0u8; RECORD_HEADER];
    h[..4].copy_from_slice(&len.to_ne_bytes());
    h[4..].copy_from_slice(&tag.to_ne_bytes());
    h
}

/// Why `capacity` is not a ring capacity (a power of two in
/// [`MIN_CAPACITY`]`..=`[`MAX_CAPACITY`]), naming the limit it breaks; `None` if it is one.
pub(super) fn capacity_problem(capacity: usize) -> Option<String> {
    if capacity < MIN_CAPACITY {
        Some(format!(
            "capacity {capacity} is below the smallest ring of {MIN_CAPACITY} bytes (two record headers)"
        ))
    } else if capacity > MAX_CAPACITY {
        Some(format!(
            "capacity {capacity} is above the largest ring of {MAX_CAPACITY} bytes (1 GiB: the \
             indices are wrapping u32s)"
        ))
    } else if !capacity.is_power_of_two() {
        Some(format!("capacity {capacity} is not a power of two (the indices wrap at 2^32)"))
    } else {
        None
    }
}

/// A committed message found at the tail.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    /// Offset of the payload in the data area.
    pub(super) at: usize,
    /// The payload's length.
    pub(super) len: usize,
    /// The tail after the record.
    pub(super) next: u32,
}

/// What lies at the tail of a non-empty ring.
pub(super) enum Found {
    /// A padding record: release up to `next` (offset 0 of the next lap) and look again.
    Padding {
        /// The tail after the padding.
        next: u32,
    },
    /// A message.
    Message(Record),
}

/// What [`read_record`] or [`placement`] found wrong with a ring: the values, kept small
/// and `Copy` so that the hot paths build no message; [`reason`](BadRecord::reason)
/// formats it, out of their way.
#[derive(Clone, Copy, Debug)]
pub(super) enum BadRecord {
    /// `head` and `tail` cannot both be right.
    Indices { head: u32, tail: u32, avail: u32, cap: u32 },
    /// A padding record that does not fill the area to its end.
    Padding { len: u32, off: u32 },
    /// A message longer than the committed data.
    Overrun { len: u32, off: u32 },
    /// Neither a message nor a padding record.
    Tag { tag: u32, off: u32 },
    /// A `head` that is not 8-aligned.
    Unaligned { head: u32 },
}

impl BadRecord {
    /// What was wrong, for the caller's `Corrupt` error.
    #[cold]
    #[inline(never)]
    pub(super) fn reason(self) -> String {
        match self {
            BadRecord::Indices { head, tail, avail, cap } => {
                format!("head {head} and tail {tail} leave {avail} bytes in a {cap}-byte ring")
            }
            BadRecord::Padding { len, off } => {
                format!("padding of {len} bytes at offset {off} does not reach the end")
            }
            BadRecord::Overrun { len, off } => {
                format!("message of {len} bytes at offset {off} overruns the committed data")
            }
            BadRecord::Tag { tag, off } => format!("bad record tag {tag:#x} at offset {off}"),
            BadRecord::Unaligned { head } => format!("head index {head} is not 8-aligned"),
        }
    }
}

/// Reads and checks the record at `tail` of a ring of `cap` bytes whose committed `head`
/// is past `tail`. `Err` says why the ring is corrupt (the caller wraps its
/// [`reason`](BadRecord::reason) in its error type).
///
/// # Safety
///
/// `data` is the ring's data area of at least `cap` bytes, and every byte from `tail` to
/// `head` is committed and not released: no producer writes it during the call.
#[inline]
pub(super) unsafe fn read_record(
    data: DataArea<'_>,
    cap: u32,
    head: u32,
    tail: u32,
) -> Result<Found, BadRecord> {
    let avail = head.wrapping_sub(tail);
    let off = tail & (cap - 1);
    let to_end = cap - off;
    if avail > cap || avail < RECORD_HEADER as u32 || off % 8 != 0 {
        return Err(BadRecord::Indices { head, tail, avail, cap });
    }
    let mut hdr = [0u8; RECORD_HEADER];
    // SAFETY: `off..off + 8` is in bounds (off is 8-aligned, below cap, and cap a multiple
    // of 8) and committed (avail >= 8), so no producer writes it (this function's contract).
    unsafe { data.read(off as usize, &mut hdr) };
    let len = u32::from_ne_bytes(hdr[..4].try_into().unwrap());
    let tag = u32::from_ne_bytes(hdr[4..].try_into().unwrap());
    match tag {
        TAG_PAD => {
            if len != to_end - RECORD_HEADER as u32 || avail < to_end {
                return Err(BadRecord::Padding { len, off });
            }
            Ok(Found::Padding { next: tail.wrapping_add(to_end) })
        }
        TAG_MSG => {
            let size = record_size(len as usize);
            if len as usize > cap as usize - RECORD_HEADER || size as u32 > avail.min(to_end) {
                return Err(BadRecord::Overrun { len, off });
            }
            Ok(Found::Message(Record {
                at: off as usize + RECORD_HEADER,
                len: len as usize,
                next: tail.wrapping_add(size as u32),
            }))
        }
        other => Err(BadRecord::Tag { tag: other, off }),
    }
}

/// [`RingError::Corrupt`](super::RingError::Corrupt) with this message, built out of the
/// way of the hot paths.
#[cold]
#[inline(never)]
pub(super) fn corrupt(args: std::fmt::Arguments<'_>) -> super::RingError {
    super::RingError::Corrupt { reason: args.to_string() }
}

/// Where a record of `size` bytes goes at `head` in a ring of `cap` bytes: `(off, to_end,
/// need)`, its offset, the bytes to the end of the area, and the free bytes it needs
/// (`size` if it fits before the end, else `to_end` for the padding record that comes
/// first). `Err` if `head` is not 8-aligned: written by a misbehaving peer, refused
/// rather than computing a padding record past the end of the area.
#[inline]
pub(super) fn placement(cap: u32, head: u32, size: u32) -> Result<(u32, u32, u32), BadRecord> {
    let off = head & (cap - 1);
    if off % 8 != 0 {
        return Err(BadRecord::Unaligned { head });
    }
    let to_end = cap - off;
    Ok((off, to_end, if size <= to_end { size } else { to_end }))
}

/// Writes the padding record that fills `off..off + to_end` (the end of the area).
///
/// # Safety
///
/// `off` is 8-aligned with `to_end = cap - off >= 8` bytes to the end of `data`, and
/// those bytes are free: released by the consumers, past `head`, and owned by the caller.
#[inline]
pub(super) unsafe fn write_padding(data: DataArea<'_>, off: u32, to_end: u32) {
    let pad = encode_header(to_end - RECORD_HEADER as u32, TAG_PAD);
    // SAFETY: in bounds and owned by the caller (this function's contract).
    unsafe { data.write(off as usize, &pad) };
}

/// Writes the header of a message of `len` bytes at `off`, the start of a reservation.
///
/// # Safety
///
/// `off..off + record_size(len)` lies in `data` and is reserved by the caller.
#[inline]
pub(super) unsafe fn write_message_header(data: DataArea<'_>, off: usize, len: usize) {
    let header = encode_header(len as u32, TAG_MSG);
    // SAFETY: the record header's 8 bytes are part of the reservation (contract).
    unsafe { data.write(off, &header) };
}

/// `WriteLoan::write_at` for both rings: copies `src` into the reserved message of `len`
/// bytes whose record starts at `off`, at byte `at`.
///
/// # Panics
///
/// If `at + src.len()` exceeds `len`.
///
/// # Safety
///
/// `off..off + record_size(len)` lies in `data` and is reserved by the caller.
#[inline]
pub(super) unsafe fn write_payload(
    data: DataArea<'_>,
    off: usize,
    len: usize,
    at: usize,
    src: &[u8],
) {
    assert!(
        at.checked_add(src.len()).is_some_and(|end| end <= len),
        "write of {} bytes at {at} past the end of a {len}-byte loan",
        src.len(),
    );
    // SAFETY: in bounds (checked, and the record lies in the area) and reserved by the
    // caller (this function's contract).
    unsafe { data.write(off + RECORD_HEADER + at, src) };
}

/// The reserved payload of a loan, to write in place.
///
/// # Safety
///
/// As for [`write_payload`], and the reservation outlives `'a` with nothing else
/// accessing it.
#[cfg(not(interproc_loom))]
#[inline]
pub(super) unsafe fn payload_mut<'a>(
    data: DataArea<'a>,
    off: usize,
    len: usize,
) -> &'a mut [std::mem::MaybeUninit<u8>] {
    let p = data.ptr_at(off + RECORD_HEADER);
    // SAFETY: `p..p + len` lies in the data area and only the caller's reservation accesses
    // it while `'a` lasts (contract).
    unsafe { std::slice::from_raw_parts_mut(p.cast(), len) }
}

/// A committed, unreleased message in place.
///
/// # Safety
///
/// `rec` lies in `data`, is committed, and stays unreleased for `'a`.
#[cfg(not(interproc_loom))]
#[inline]
pub(super) unsafe fn payload<'a>(data: DataArea<'a>, rec: Record) -> &'a [u8] {
    let p = data.ptr_at(rec.at);
    // SAFETY: in the data area, committed, and unreleased while `'a` lasts (contract), so
    // a producer that follows the protocol does not write it.
    unsafe { std::slice::from_raw_parts(p, rec.len) }
}

/// Copies a committed message out of the ring into `buf` (cleared first; no allocation
/// once `buf` has grown to the message size). The copy goes through a raw pointer, never
/// a `&[u8]` over the shared memory.
///
/// # Safety
///
/// `rec` lies in `data`, is committed and unreleased during the call.
#[inline]
pub(super) unsafe fn copy_out(data: DataArea<'_>, rec: Record, buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(rec.len, 0);
    // SAFETY: committed and unreleased (contract), so a conforming producer does not
    // write it during the copy.
    unsafe { data.read(rec.at, buf) };
}

/// The calling process's id, for an end to tell whether it is a copy that a `fork`ed child
/// inherited (the cached identity of the robust primitives: a relaxed load, reset in the
/// child by a `pthread_atfork` handler). 0 in the loom models, whose threads are one
/// process.
#[inline]
pub(super) fn this_process() -> u32 {
    #[cfg(not(interproc_loom))]
    return crate::sys::current_process().id;
    #[cfg(interproc_loom)]
    0
}
