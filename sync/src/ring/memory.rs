//! Where a ring lives: [`RingMemory`] (a header and a data area), and [`HeapMemory`] for
//! rings between threads and for the loom models.

use std::marker::PhantomData;
use std::sync::Arc;

use super::RingHeader;
use crate::loom::cell::UnsafeCell;

/// Memory that holds a ring: a [`RingHeader`] and, after it, a data area of at least
/// `header().capacity()` bytes.
///
/// # Safety
///
/// Implement this only if:
/// - [`header`](RingMemory::header) and [`data`](RingMemory::data) return the same memory
///   every time, valid for as long as `self` lives (a clone of `self`, if any, must refer to
///   the same memory);
/// - the data area does not overlap the header or anything else Rust code accesses through
///   references: the ring reads and writes it only through the [`DataArea`], following its
///   ownership protocol;
/// - if other processes map the memory, it is `MAP_SHARED` and they use it only through a
///   [`Producer`](super::Producer)/[`Consumer`](super::Consumer) of the same layout.
pub unsafe trait RingMemory: Send + Sync {
    /// The header.
    fn header(&self) -> &RingHeader;
    /// The data area.
    fn data(&self) -> DataArea<'_>;
}

// SAFETY: an `Arc` derefs to the same `T` for its whole life, and every clone to the same
// `T`; the contract is `T`'s.
unsafe impl<T: RingMemory + ?Sized> RingMemory for Arc<T> {
    #[inline]
    fn header(&self) -> &RingHeader {
        (**self).header()
    }
    #[inline]
    fn data(&self) -> DataArea<'_> {
        (**self).data()
    }
}

// SAFETY: the value (the header) and the extra area are disjoint parts of one mapping,
// fixed for the segment's life; the extra area is zero-filled when created and reached only
// through the `DataArea`. Other processes map it `MAP_SHARED` and use it through the ring.
#[cfg(not(interproc_loom))]
unsafe impl RingMemory for crate::shm::Segment<RingHeader> {
    #[inline]
    fn header(&self) -> &RingHeader {
        self
    }

    #[inline]
    fn data(&self) -> DataArea<'_> {
        // SAFETY: `extra_ptr()..+extra_len()` is mapped, initialised and valid while the
        // segment lives, and no `&[u8]` over it exists (Segment hands out only the pointer).
        unsafe { DataArea::from_raw(self.extra_ptr(), self.extra_len()) }
    }
}

/// The data area of a ring: raw bytes (in the model, one loom cell per byte, so that loom
/// checks every access for data races).
///
/// It hands out no references by itself: the producer and consumer copy in and out of the
/// regions the index protocol gives them, and build slices only over those.
#[derive(Clone, Copy)]
pub struct DataArea<'a> {
    #[cfg(not(interproc_loom))]
    ptr: *mut u8,
    #[cfg(interproc_loom)]
    cells: &'a [UnsafeCell<u8>],
    len: usize,
    _life: PhantomData<&'a [UnsafeCell<u8>]>,
}

impl<'a> DataArea<'a> {
    /// A data area of `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and those bytes
    /// must be initialised (a fresh `mmap` is zero-filled) and accessed by Rust code only
    /// through this area while `'a` lasts.
    #[cfg(not(interproc_loom))]
    #[inline]
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        DataArea { ptr, len, _life: PhantomData }
    }

    #[cfg(interproc_loom)]
    fn from_cells(cells: &'a [UnsafeCell<u8>]) -> Self {
        DataArea { cells, len: cells.len(), _life: PhantomData }
    }

    /// The area's size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the area is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` to `off..off + src.len()`.
    ///
    /// # Safety
    ///
    /// The range is in bounds, and the caller owns it: no other thread or process reads or
    /// writes it until the caller publishes it.
    #[inline]
    pub(crate) unsafe fn write(&self, off: usize, src: &[u8]) {
        debug_assert!(off + src.len() <= self.len);
        #[cfg(not(interproc_loom))]
        // SAFETY: in bounds and owned by the caller (this function's contract); `src` is
        // process memory, which cannot overlap the area (the `RingMemory` contract).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len())
        };
        #[cfg(interproc_loom)]
        for (i, &b) in src.iter().enumerate() {
            // SAFETY: the cell is owned by the caller (contract); loom checks that claim.
            self.cells[off + i].with_mut(|p| unsafe { *p = b });
        }
    }

    /// Copies `off..off + dst.len()` into `dst`.
    ///
    /// # Safety
    ///
    /// The range is in bounds, and nobody writes it for the duration of the call.
    #[inline]
    pub(crate) unsafe fn read(&self, off: usize, dst: &mut [u8]) {
        debug_assert!(off + dst.len() <= self.len);
        #[cfg(not(interproc_loom))]
        // SAFETY: in bounds and not written concurrently (contract); `dst` is process
        // memory, which cannot overlap the area.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), dst.len())
        };
        #[cfg(interproc_loom)]
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: nobody writes the cell during the call (contract); loom checks that.
            *b = self.cells[off + i].with(|p| unsafe { *p });
        }
    }

    /// A pointer to byte `off` (not in the model, which has no flat bytes).
    #[cfg(not(interproc_loom))]
    #[inline]
    pub(crate) fn ptr_at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.len);
        self.ptr.wrapping_add(off)
    }
}

/// A ring in process memory: for threads of one process, for examples, and for the loom
/// models. Processes use a shared segment instead.
pub struct HeapMemory {
    header: RingHeader,
    data: Box<[UnsafeCell<u8>]>,
}

impl HeapMemory {
    /// A fresh ring with a data area of `capacity` bytes.
    ///
    /// # Panics
    ///
    /// If `capacity` is not a valid ring capacity (see [`RingHeader::check_capacity`]).
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::with_header(RingHeader::new(capacity))
    }

    /// A fresh ring with this header (for instance
    /// [`RingHeader::with_notifier`](RingHeader::with_notifier)) and a data area of its
    /// capacity.
    pub fn with_header(header: RingHeader) -> Arc<Self> {
        let capacity = header.capacity();
        let data = (0..capacity).map(|_| UnsafeCell::new(0)).collect();
        Arc::new(HeapMemory { header, data })
    }
}

// SAFETY: the header and the cells are fields of `self`, fixed for its life; the cells are
// a separate allocation touched only through `DataArea`.
unsafe impl RingMemory for HeapMemory {
    #[inline]
    fn header(&self) -> &RingHeader {
        &self.header
    }

    #[inline]
    fn data(&self) -> DataArea<'_> {
        #[cfg(not(interproc_loom))]
        {
            // `UnsafeCell<u8>` is `#[repr(transparent)]` over `u8` (the facade's and std's),
            // and a pointer derived from a shared reference to cells may write through them.
            let ptr = self.data.as_ptr() as *mut u8;
            // SAFETY: `ptr` covers `capacity` initialised bytes owned by `self`, which lives
            // as long as the returned area, and the bytes sit in `UnsafeCell`s so writes
            // through a shared borrow are allowed.
            unsafe { DataArea::from_raw(ptr, self.data.len()) }
        }
        #[cfg(interproc_loom)]
        DataArea::from_cells(&self.data)
    }
}

// SAFETY: the cells are only accessed through the ring protocol, which gives each byte to
// one side at a time; the header is atomics.
unsafe impl Sync for HeapMemory {}
// SAFETY: as for `Sync`; nothing in it is tied to a thread.
unsafe impl Send for HeapMemory {}

// SAFETY: a `DataArea` is a view of memory whose access protocol (the ring's) decides who
// touches which byte; the view itself holds no thread-affine state.
unsafe impl Send for DataArea<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for DataArea<'_> {}
