//! Deadlock detection switched off (the cargo feature `deadlock-detection` is not enabled):
//! every hook the primitives call is an empty `#[inline(always)]` function on a zero-sized
//! type, so the primitives compile to exactly the code they had without hooks. No detector
//! code is compiled in (`tests/deadlock_off.rs` checks the symbols of a test binary).
//!
//! The signatures match `detector.rs`, so the primitives call the hooks without `cfg`s.

use std::borrow::Cow;
use std::convert::Infallible;
use std::marker::PhantomData;

/// Where a lock was taken: nothing when detection is off.
#[derive(Clone, Copy)]
pub(crate) struct Site;

/// The caller's location: nothing when detection is off.
#[inline(always)]
pub(crate) fn caller() -> Site {
    Site
}

/// What a blocking hook can fail with: nothing when detection is off.
pub(crate) type BlockError = Infallible;

/// Which primitive a [`LockMeta`] belongs to.
#[derive(Clone, Copy)]
pub(crate) enum LockKind {
    Mutex,
    Monitor,
    Semaphore,
}

/// What a blocked thread waits for.
#[derive(Clone, Copy)]
#[allow(dead_code)] // the detector reads the count; here nothing does
pub(crate) enum WaitKind {
    Lock,
    Permits(u32),
}

/// A lock's detector state: zero-sized.
#[derive(Debug, Default)]
pub(crate) struct LockMeta;

/// The record of a blocked thread: zero-sized.
pub(crate) struct WaitSlot<'a>(PhantomData<&'a ()>);

/// Who took a semaphore's permits: zero-sized.
#[derive(Debug)]
pub(crate) struct HolderTag;

impl LockMeta {
    #[inline(always)]
    pub(crate) fn new(_kind: LockKind) -> Self {
        LockMeta
    }

    #[inline(always)]
    pub(crate) fn set_label(&mut self, _label: Cow<'static, str>) {}

    #[inline(always)]
    pub(crate) fn before_lock(&self, _at: Site) {}

    #[inline(always)]
    pub(crate) fn wait_slot(&self, _what: WaitKind, _at: Site, _checked: bool) -> WaitSlot<'_> {
        WaitSlot(PhantomData)
    }

    #[inline(always)]
    pub(crate) fn acquired(&self, _at: Site) {}

    #[inline(always)]
    pub(crate) fn released(&self) {}

    #[inline(always)]
    pub(crate) fn attach(&self) {}

    #[inline(always)]
    pub(crate) fn claim(&self, _n: u32, _at: Site) -> HolderTag {
        HolderTag
    }

    #[inline(always)]
    pub(crate) fn took(&self, _tag: &HolderTag, _n: u32, _at: Site) {}

    #[inline(always)]
    pub(crate) fn gave_back(&self, _tag: &HolderTag, _n: u32) {}

    #[inline(always)]
    pub(crate) fn cond_wait(
        &self,
        _cond: usize,
        _at: Site,
        _checked: bool,
    ) -> Result<WaitSlot<'_>, BlockError> {
        Ok(WaitSlot(PhantomData))
    }
}

impl HolderTag {
    #[inline(always)]
    pub(crate) fn parked(&self) {}

    #[inline(always)]
    pub(crate) fn unparked(&self, _meta: &LockMeta) {}

    #[inline(always)]
    pub(crate) fn clear(&self) {}
}

impl WaitSlot<'_> {
    #[inline(always)]
    pub(crate) fn block(&mut self) -> Result<(), BlockError> {
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn parks_on(&mut self, _word: &crate::loom::atomic::AtomicU32, _value: u32) {}

    #[inline(always)]
    pub(crate) fn block_unless(&mut self, _ready: impl Fn() -> bool) -> Result<(), BlockError> {
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn woken(&mut self) {}
}

/// A blocking call on a process-shared lock: zero-sized when detection is off.
pub(crate) struct SharedWait;

impl SharedWait {
    #[inline(always)]
    pub(crate) fn new(_addr: usize, _kind: LockKind, _at: Site, _checked: bool) -> Self {
        SharedWait
    }

    #[inline(always)]
    pub(crate) fn parked(&mut self, _owner: impl FnOnce() -> crate::park::TaskId) -> bool {
        true
    }

    #[inline(always)]
    pub(crate) fn parked_permits(
        &mut self,
        _want: u32,
        _holders: impl FnOnce() -> Vec<(u32, u32)>,
    ) -> bool {
        true
    }

    #[inline(always)]
    pub(crate) fn parked_notify(&mut self, _cond: usize) {}
}

/// The lock order of a process-shared lock: zero-sized when detection is off.
#[derive(Clone, Copy)]
pub(crate) struct SharedOrder;

impl SharedOrder {
    #[inline(always)]
    pub(crate) fn before_lock(_addr: usize, _at: Site) -> Self {
        SharedOrder
    }

    #[inline(always)]
    pub(crate) fn no_edges(_addr: usize) -> Self {
        SharedOrder
    }

    #[inline(always)]
    pub(crate) fn acquired(self, _held: bool, _at: Site) {}

    #[inline(always)]
    pub(crate) fn released(_addr: usize) {}

    #[inline(always)]
    pub(crate) fn cond_wait(_addr: usize, _cond: usize, _at: Site) {}
}

/// Memory is being unmapped: nothing to forget when detection is off.
#[inline(always)]
pub(crate) fn unmapped(_base: usize, _len: usize) {}

/// The lazily made wait record of a process-shared lock: zero-sized when detection is off.
pub(crate) struct LazyWait(SharedWait);

impl LazyWait {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        LazyWait(SharedWait)
    }

    #[inline(always)]
    pub(crate) fn get(
        &mut self,
        _addr: usize,
        _kind: LockKind,
        _at: Site,
        _checked: bool,
    ) -> &mut SharedWait {
        &mut self.0
    }

    #[inline(always)]
    pub(crate) fn done(self) {}
}

/// Labels of process-shared locks: nothing when detection is off.
pub(crate) mod shared {
    #[inline(always)]
    pub(crate) fn set_label(_addr: usize, _label: &str) {}
}
