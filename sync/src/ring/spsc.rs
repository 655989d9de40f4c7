//! The two ends of a ring: [`Producer`] and [`Consumer`], with their zero-copy loans.
//!
//! See the [module documentation](super) for the protocol.

use std::fmt;
use std::marker::PhantomData;
#[cfg(not(interproc_loom))]
use std::mem::MaybeUninit;
use std::time::Instant;

use super::record::{
    self, corrupt, read_record, record_size, this_process, write_message_header, BadRecord, Found,
    Record,
};
use super::{Notifier, RingError, RingHeader, RingMemory, RECORD_HEADER};
use crate::loom::atomic::{AtomicU32, Ordering};
use crate::loom::hint;
use crate::loom::time::passed;
use crate::park::{Park, ParkResult};

/// "asleep" word bit: the side sleeps on the word's futex.
const ASLEEP_FUTEX: u32 = 1;
/// "asleep" word bit: the side is about to block in its event loop, on its notifier.
const ASLEEP_NOTIFY: u32 = 2;

/// `Err(ForkedCopy)` for an end attached by process `owner`, used in another: a copy that
/// a `fork`ed child inherited.
#[inline]
fn check_owner(owner: u32, side: &'static str) -> Result<(), RingError> {
    let pid = this_process();
    if owner == pid {
        Ok(())
    } else {
        Err(forked_copy(side, owner, pid))
    }
}

/// [`RingError::Corrupt`] for what [`read_record`] or [`record::placement`] refused, out
/// of the hot paths.
#[cold]
#[inline(never)]
fn corrupt_record(bad: BadRecord) -> RingError {
    RingError::Corrupt { reason: bad.reason() }
}

/// The error of [`check_owner`], out of the way of its inlined fast path.
#[cold]
#[inline(never)]
fn forked_copy(side: &'static str, owner: u32, pid: u32) -> RingError {
    RingError::ForkedCopy { side, owner, pid }
}

/// Announces a sleeper on `asleep`, re-checks `ready`, and parks until it holds, the
/// deadline passes, or a wake-up comes (the caller re-checks in every case).
///
/// A deadline that has passed (a `try_` call) never announces: `ready` is checked once and
/// the call returns, so the other side pays no wake-up for a sleeper that is not there.
/// `expired`: the caller just found the deadline passed (so the first check reads no clock).
///
/// `ready` must load the other side's index (or closed flag) with `Acquire`.
#[inline(never)]
fn sleep_until<P: Park>(
    asleep: &AtomicU32,
    deadline: Option<Instant>,
    expired: bool,
    mut ready: impl FnMut() -> bool,
) -> Result<(), RingError> {
    loop {
        if expired || passed(deadline) {
            return if ready() { Ok(()) } else { Err(RingError::Timeout) };
        }
        // The announcement and the waker's check are read-modify-writes of the same word,
        // so they are totally ordered. If the waker's comes first, our swap reads from it
        // (AcqRel: it synchronizes with the waker's), so the index store the waker made
        // before it is visible to `ready` below. If ours comes first, the waker reads 1
        // and wakes us. Either way no wake-up is lost. (A store + `SeqCst` fence on each
        // side would also do, but loom 0.7 does not model that pairing faithfully.)
        //
        // Only this side sets bits in the word (the futex bit here, the notifier bit in
        // `arm`); the waker clears them all at once. So after the `fetch_or` the word
        // holds `announced` until the waker clears it.
        let announced = asleep.fetch_or(ASLEEP_FUTEX, Ordering::AcqRel) | ASLEEP_FUTEX;
        if ready() {
            asleep.fetch_and(!ASLEEP_FUTEX, Ordering::AcqRel);
            return Ok(());
        }
        // A deadline that passed since the check above: the wait returns at once, timed
        // out. Returns at once if the waker already cleared the word (it no longer holds
        // `announced`).
        let r = P::wait(asleep, announced, deadline);
        // An RMW, not a store: a plain store would end the release sequence of the waker's
        // swap, and our next announcement could then miss its index store. It clears only
        // our bit: a notifier announcement made before this wait stays in force.
        asleep.fetch_and(!ASLEEP_FUTEX, Ordering::AcqRel);
        if ready() {
            return Ok(());
        }
        if r == ParkResult::TimedOut {
            return Err(RingError::Timeout);
        }
    }
}

/// After an index or closed-flag store: wakes the other side if it announced that it sleeps
/// on the futex, and signals its notifier if it announced that it waits in an event loop.
///
/// The swap writes the word on every call, but only the side that stores the index does,
/// until the other side announces itself: the line stays in the storer's cache.
#[inline]
fn wake_if_asleep<P: Park>(asleep: &AtomicU32, notifier: Option<&Notifier>) {
    // The other half of the pairing in `sleep_until` and `announce`; clearing before
    // waking keeps later stores from waking again before the sleeper runs.
    let was = asleep.swap(0, Ordering::AcqRel);
    if was & ASLEEP_FUTEX != 0 {
        P::wake(asleep, 1);
    }
    if was & ASLEEP_NOTIFY != 0 {
        if let Some(n) = notifier {
            n.notify();
        }
    }
}

/// Announces that this side will block in its event loop until its notifier is signalled,
/// then re-checks `ready`. Returns `true` if the caller may block now (the other side will
/// signal the notifier after its next index or closed-flag store), `false` if `ready`
/// already holds (the announcement is withdrawn; do not block).
///
/// The same pairing as `sleep_until`: the announcement and the waker's swap are RMWs of
/// one word, so either the waker sees the bit, or our re-check sees its store.
fn announce(asleep: &AtomicU32, mut ready: impl FnMut() -> bool) -> bool {
    asleep.fetch_or(ASLEEP_NOTIFY, Ordering::AcqRel);
    if ready() {
        asleep.fetch_and(!ASLEEP_NOTIFY, Ordering::AcqRel);
        return false;
    }
    true
}

/// Checks that an end attaches with a notifier exactly when the ring was created with one.
fn check_notifier(h: &RingHeader, notifier: &Option<Notifier>) -> Result<(), RingError> {
    match (h.has_notifier(), notifier.is_some()) {
        (true, false) => Err(RingError::Invalid {
            reason: "this ring was created with event-loop notifiers: attach with the peer's \
                     notifier (in interproc_ipc: receive the notifier fds with the segment)"
                .into(),
        }),
        (false, true) => Err(RingError::Invalid {
            reason: "this ring was created without notifiers: create it with \
                     RingHeader::with_notifier to use one"
                .into(),
        }),
        _ => Ok(()),
    }
}

fn no_notifier() -> RingError {
    RingError::Invalid {
        reason: "this ring has no notifier to arm: create it with RingHeader::with_notifier \
                 (in interproc_ipc: ShmRing::anonymous_with_notifier)"
            .into(),
    }
}

/// Both ends of one ring.
pub type Pair<M, P> = (Producer<M, P>, Consumer<M, P>);

/// Creates both ends of a fresh ring in `mem`, recording `pid` for both (for a ring
/// between threads of one process).
pub fn pair<M: RingMemory + Clone, P: Park>(mem: M, pid: u32) -> Result<Pair<M, P>, RingError> {
    let tx = Producer::attach(mem.clone(), pid)?;
    let rx = Consumer::attach(mem, pid)?;
    Ok((tx, rx))
}

/// The sending end of a ring. One per ring (attach refuses a second one).
///
/// Dropping it closes the ring for sending: the consumer reads what was committed, then
/// gets [`RingError::Disconnected`].
pub struct Producer<M: RingMemory, P: Park> {
    mem: M,
    cap: u32,
    /// Our index: bytes committed (wrapping).
    head: u32,
    /// The consumer's index as last read.
    cached_tail: u32,
    spin: u32,
    /// Signalled when the consumer armed its event-loop wait.
    notifier: Option<Notifier>,
    /// The process that attached this end: a copy in a `fork`ed child refuses to work.
    owner: u32,
    _park: PhantomData<fn() -> P>,
}

impl<M: RingMemory, P: Park> Producer<M, P> {
    /// Attaches as the producer of the ring in `mem`, recording `pid` (0 is stored as 1) so
    /// the consumer can check the producer's liveness.
    ///
    /// Fails with [`RingError::Invalid`] if the header does not describe a ring of this
    /// layout that fits the data area, and [`RingError::Busy`] if a producer already
    /// attached.
    pub fn attach(mem: M, pid: u32) -> Result<Self, RingError> {
        Self::attach_with(mem, pid, None)
    }

    /// Attaches like [`attach`](Producer::attach), with the consumer's notifier: the
    /// producer signals it when the consumer [armed](Consumer::arm) it. A ring created
    /// [`with_notifier`](RingHeader::with_notifier) needs one, any other ring refuses one
    /// ([`RingError::Invalid`]).
    ///
    /// Attaching wakes a consumer that waits already, so that it learns the producer's pid
    /// (to watch its liveness).
    pub fn attach_with(mem: M, pid: u32, notifier: Option<Notifier>) -> Result<Self, RingError> {
        let h = mem.header();
        h.validate(mem.data().len())?;
        check_notifier(h, &notifier)?;
        let pid = pid.max(1);
        if let Err(other) =
            h.peers.producer_pid.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire)
        {
            return Err(RingError::Busy { side: "producer", pid: other });
        }
        let head = h.head.word.load(Ordering::Acquire);
        let cached_tail = h.tail.word.load(Ordering::Acquire);
        let cap = h.capacity;
        wake_if_asleep::<P>(&h.consumer_asleep.word, notifier.as_ref());
        Ok(Producer {
            mem,
            cap,
            head,
            cached_tail,
            spin: hint::SPIN_LIMIT,
            notifier,
            owner: this_process(),
            _park: PhantomData,
        })
    }

    /// Announces that this producer is about to block in its event loop until there is
    /// room for a message of `len` bytes, on its own notifier (the one the consumer
    /// attached with), and re-checks. `Ok(true)`: block now; the consumer signals the
    /// notifier after its next release or its close. `Ok(false)`: there is room already,
    /// or the consumer closed its end: send (a send then succeeds, or reports
    /// `Disconnected`), do not block.
    ///
    /// `known_peer` is the consumer's pid as the caller last read it (0: none yet), the
    /// one whose liveness it watches: if another is recorded by the re-check (the consumer
    /// attached meanwhile), `arm` says "do not block", so the caller can watch it first.
    ///
    /// Errors: [`RingError::TooLarge`]; [`RingError::Invalid`] if the ring has no
    /// notifier; [`RingError::ForkedCopy`] in a `fork`ed child.
    pub fn arm(&mut self, len: usize, known_peer: u32) -> Result<bool, RingError> {
        self.check_owner()?;
        let max = self.max_message();
        if len > max {
            return Err(RingError::TooLarge { size: len, max });
        }
        if !self.header().has_notifier() {
            return Err(no_notifier());
        }
        let size = record_size(len) as u32;
        let (_, _, need) = record::placement(self.cap, self.head, size).map_err(corrupt_record)?;
        let (cap, head) = (self.cap, self.head);
        let h = self.mem.header();
        let mut tail = self.cached_tail;
        let armed = announce(&h.producer_asleep.word, || {
            tail = h.tail.word.load(Ordering::Acquire);
            cap.checked_sub(head.wrapping_sub(tail)).is_none_or(|free| free >= need)
                || h.peers.consumer_closed.load(Ordering::Acquire) != 0
                || h.peers.consumer_pid.load(Ordering::Acquire) != known_peer
        });
        self.cached_tail = tail;
        Ok(armed)
    }

    /// The shared header (pids, closed flags, capacity).
    pub fn header(&self) -> &RingHeader {
        self.mem.header()
    }

    /// The memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The largest message: `capacity - 8`.
    pub fn max_message(&self) -> usize {
        self.cap as usize - RECORD_HEADER
    }

    /// How many times a full ring is re-checked before the producer sleeps (default 100;
    /// 0: sleep at once; large: spin-wait, for latency at the cost of a busy core).
    pub fn set_spin(&mut self, spins: u32) {
        self.spin = spins;
    }

    /// The pid the consumer recorded (0: no consumer attached yet).
    pub fn peer_pid(&self) -> u32 {
        self.header().consumer_pid()
    }

    /// Whether this end belongs to the calling process (and not a copy of it that a
    /// `fork`ed child inherited, which refuses to send: [`RingError::ForkedCopy`]).
    #[inline]
    pub fn is_owned(&self) -> bool {
        self.owner == this_process()
    }

    #[inline]
    fn check_owner(&self) -> Result<(), RingError> {
        check_owner(self.owner, "producer")
    }

    /// Gives back the memory without closing the ring: for a copy of this end that a
    /// `fork`ed child inherited, whose drop must not close the parent's ring. (Dropping
    /// such a copy does the same: only the process that attached an end closes it.)
    pub fn leave_open(self) -> M {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so `mem` is moved out exactly
        // once; the other fields need no drop.
        unsafe { std::ptr::read(&this.mem) }
    }

    /// Bytes free, by the cached tail. A tail more than `cap` behind `head` can only come
    /// from a corrupt (or malicious) consumer: it reads as "full" here, and `loan` reports
    /// it, rather than overflowing.
    #[inline]
    fn free(&self) -> u32 {
        self.cap.saturating_sub(self.head.wrapping_sub(self.cached_tail))
    }

    fn check_tail(&self) -> Result<(), RingError> {
        let used = self.head.wrapping_sub(self.cached_tail);
        if used > self.cap {
            return Err(corrupt(format_args!(
                "the consumer's tail {} is {used} bytes behind head {} in a {}-byte ring",
                self.cached_tail, self.head, self.cap
            )));
        }
        Ok(())
    }

    /// The offset of a record of `len` bytes and its size, if this end can reserve it at
    /// once with nothing else to do: this process attached the end, the message fits the
    /// ring, the consumer has not closed, the record fits before the end of the area (no
    /// padding record first), and the cached tail leaves room for it (no reload, no wait).
    /// `None` otherwise, and the caller takes the full path ([`loan_slow`](Self::loan_slow)),
    /// which makes every check again and says which one failed. The checks are the full
    /// path's, in a form that costs no call: a reservation this grants is the one the full
    /// path would have made.
    #[inline]
    fn room_now(&self, len: usize) -> Option<(usize, u32)> {
        if !self.is_owned() || len > self.max_message() || self.header().consumer_closed() {
            return None;
        }
        let size = record_size(len) as u32;
        let off = self.head & (self.cap - 1);
        // A head that is not 8-aligned is corrupt: the full path reports it.
        if off % 8 != 0 || size > self.cap - off || self.free() < size {
            return None;
        }
        Some((off as usize, size))
    }

    /// Sends `msg` as one message, waiting for room until `deadline` (`None`: forever; a
    /// deadline in the past: do not wait).
    #[inline(always)]
    pub fn send(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), RingError> {
        if let Some((off, size)) = self.room_now(msg.len()) {
            let data = self.mem.data();
            // SAFETY: `room_now` found `off..off + size` before the end of the area and
            // free (released by the consumer, past `head`): this end owns it until it
            // publishes, and `size` is the record of `msg.len()` bytes.
            unsafe {
                record::write_payload(data, off, msg.len(), 0, msg);
                write_message_header(data, off, msg.len());
            }
            // `room_now` checked, in this call, that this process attached the end.
            self.store_head(self.head.wrapping_add(size));
            return Ok(());
        }
        self.send_slow(msg, deadline)
    }

    /// [`send`](Producer::send) when the fast path cannot reserve at once.
    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<(), RingError> {
        let mut loan = self.loan_slow(msg.len(), deadline)?;
        loan.write_at(0, msg);
        loan.commit();
        Ok(())
    }

    /// Reserves room for a message of `len` bytes, waiting until `deadline`; write it
    /// through the loan and [`commit`](WriteLoan::commit) it. A loan dropped uncommitted
    /// sends nothing.
    ///
    /// [`RingError::ForkedCopy`] if this end is a copy a `fork`ed child inherited: attach
    /// a producer in the child instead (if the parent has none).
    #[inline]
    pub fn loan(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<WriteLoan<'_, M, P>, RingError> {
        if let Some((off, _)) = self.room_now(len) {
            return Ok(WriteLoan { off, len, producer: self });
        }
        self.loan_slow(len, deadline)
    }

    /// [`loan`](Producer::loan) with every check, padding and waiting.
    #[inline(never)]
    fn loan_slow(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<WriteLoan<'_, M, P>, RingError> {
        self.check_owner()?;
        let max = self.max_message();
        if len > max {
            return Err(RingError::TooLarge { size: len, max });
        }
        let size = record_size(len) as u32;
        loop {
            if self.header().consumer_closed() {
                return Err(RingError::Disconnected);
            }
            // A record that does not fit before the end needs a padding record first.
            let (off, to_end, need) =
                record::placement(self.cap, self.head, size).map_err(corrupt_record)?;
            if self.free() < need {
                self.cached_tail = self.header().tail.word.load(Ordering::Acquire);
                self.check_tail()?;
                if self.free() < need {
                    self.wait_room(need, deadline)?;
                    self.check_tail()?;
                    continue;
                }
            }
            if size <= to_end {
                return Ok(WriteLoan { off: off as usize, len, producer: self });
            }
            // Offsets are multiples of 8 and the capacity a power of two >= 16; the consumer
            // released `off..cap` and reads nothing past `head`, which we have not moved.
            // SAFETY: `off` is 8-aligned, `to_end >= 8`, and `off..cap` is free.
            unsafe { record::write_padding(self.mem.data(), off, to_end) };
            self.publish(self.head.wrapping_add(to_end));
        }
    }

    #[inline(never)]
    fn wait_room(&mut self, need: u32, deadline: Option<Instant>) -> Result<(), RingError> {
        // One clock read decides both: no spinning for a deadline that passed, and then no
        // second read in `sleep_until`.
        let expired = passed(deadline);
        if !expired {
            for _ in 0..self.spin {
                hint::spin_loop();
                self.cached_tail = self.header().tail.word.load(Ordering::Acquire);
                if self.free() >= need || self.header().consumer_closed() {
                    return Ok(());
                }
            }
        }
        let h = self.mem.header();
        let (cap, head) = (self.cap, self.head);
        let mut tail = self.cached_tail;
        let r = sleep_until::<P>(&h.producer_asleep.word, deadline, expired, || {
            tail = h.tail.word.load(Ordering::Acquire);
            // An impossible tail counts as ready: `loan` then reports it.
            cap.checked_sub(head.wrapping_sub(tail)).is_none_or(|free| free >= need)
                || h.peers.consumer_closed.load(Ordering::Acquire) != 0
        });
        self.cached_tail = tail;
        r
    }

    #[inline]
    fn publish(&mut self, head: u32) {
        if !self.is_owned() {
            return; // a loan taken before a fork, committed in the child: not ours
        }
        self.store_head(head);
    }

    /// Publishes `head` and wakes the consumer if it announced a sleep. Only for an end
    /// this process attached (the caller checked).
    #[inline]
    fn store_head(&mut self, head: u32) {
        self.head = head;
        let h = self.mem.header();
        h.head.word.store(head, Ordering::Release);
        wake_if_asleep::<P>(&h.consumer_asleep.word, self.notifier.as_ref());
    }
}

impl<M: RingMemory, P: Park> Drop for Producer<M, P> {
    fn drop(&mut self) {
        if !self.is_owned() {
            return; // a fork child's copy: the parent's end stays open
        }
        let h = self.mem.header();
        h.peers.producer_closed.store(1, Ordering::Release);
        wake_if_asleep::<P>(&h.consumer_asleep.word, self.notifier.as_ref());
    }
}

impl<M: RingMemory, P: Park> fmt::Debug for Producer<M, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer").field("head", &self.head).field("ring", self.header()).finish()
    }
}

/// Room for one message, reserved in the ring: write it, then [`commit`](WriteLoan::commit).
///
/// The region belongs to this loan alone: the consumer reads nothing past the committed
/// `head`, and the region lies past it, so no other thread or process reads or writes it
/// until the commit. That is why the loan may hand out `&mut` over shared memory.
#[must_use = "a loan sends nothing until it is committed"]
pub struct WriteLoan<'a, M: RingMemory, P: Park> {
    producer: &'a mut Producer<M, P>,
    /// Offset of the record header in the data area.
    off: usize,
    len: usize,
}

impl<M: RingMemory, P: Park> WriteLoan<'_, M, P> {
    /// The message size reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the reserved message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` into the message at byte `at`.
    ///
    /// # Panics
    ///
    /// If `at + src.len()` exceeds [`len`](WriteLoan::len).
    #[inline]
    pub fn write_at(&mut self, at: usize, src: &[u8]) {
        // SAFETY: the record lies before the end of the area and is owned by this loan
        // (see the type's documentation).
        unsafe { record::write_payload(self.producer.mem.data(), self.off, self.len, at, src) };
    }

    /// The reserved bytes, to write in place. They hold whatever an earlier message left
    /// there (shared memory is always initialised, but treat it as garbage).
    #[cfg(not(interproc_loom))]
    pub fn as_uninit_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: the record lies in the data area (it fits before its end), and only this
        // loan accesses it until it commits (see the type's documentation); the borrow of
        // `self` keeps the loan, and so the reservation, alive.
        unsafe { record::payload_mut(self.producer.mem.data(), self.off, self.len) }
    }

    /// Publishes the message: the consumer may read it from now on.
    #[inline]
    pub fn commit(self) {
        let (off, len) = (self.off, self.len);
        let p = self.producer;
        // SAFETY: the record starts the reservation.
        unsafe { write_message_header(p.mem.data(), off, len) };
        p.publish(p.head.wrapping_add(record_size(len) as u32));
    }

    /// Publishes only the first `len` bytes (a message that turned out shorter).
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit_prefix(mut self, len: usize) {
        assert!(len <= self.len, "commit of {len} bytes from a {}-byte loan", self.len);
        self.len = len;
        self.commit()
    }
}

/// The receiving end of a ring. One per ring (attach refuses a second one).
///
/// Dropping it closes the ring for receiving: the producer's sends fail with
/// [`RingError::Disconnected`].
pub struct Consumer<M: RingMemory, P: Park> {
    mem: M,
    cap: u32,
    /// Our index: bytes released (wrapping).
    tail: u32,
    /// The producer's index as last read.
    cached_head: u32,
    /// The record [`Consumer::hold`] handed out, released on the next call.
    held: Option<Record>,
    spin: u32,
    /// Signalled when the producer armed its event-loop wait.
    notifier: Option<Notifier>,
    /// The process that attached this end: a copy in a `fork`ed child refuses to work.
    owner: u32,
    _park: PhantomData<fn() -> P>,
}

impl<M: RingMemory, P: Park> Consumer<M, P> {
    /// Attaches as the consumer of the ring in `mem`, recording `pid` (0 is stored as 1).
    ///
    /// Fails with [`RingError::Invalid`] if the header does not describe a ring of this
    /// layout that fits the data area, and [`RingError::Busy`] if a consumer already
    /// attached.
    pub fn attach(mem: M, pid: u32) -> Result<Self, RingError> {
        Self::attach_with(mem, pid, None)
    }

    /// Attaches like [`attach`](Consumer::attach), with the producer's notifier: the
    /// consumer signals it when the producer [armed](Producer::arm) it. A ring created
    /// [`with_notifier`](RingHeader::with_notifier) needs one, any other ring refuses one.
    ///
    /// Attaching wakes a producer that waits already, so that it learns the consumer's pid.
    pub fn attach_with(mem: M, pid: u32, notifier: Option<Notifier>) -> Result<Self, RingError> {
        let h = mem.header();
        h.validate(mem.data().len())?;
        check_notifier(h, &notifier)?;
        let pid = pid.max(1);
        if let Err(other) =
            h.peers.consumer_pid.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire)
        {
            return Err(RingError::Busy { side: "consumer", pid: other });
        }
        let tail = h.tail.word.load(Ordering::Acquire);
        let cached_head = h.head.word.load(Ordering::Acquire);
        let cap = h.capacity;
        wake_if_asleep::<P>(&h.producer_asleep.word, notifier.as_ref());
        Ok(Consumer {
            mem,
            cap,
            tail,
            cached_head,
            held: None,
            spin: hint::SPIN_LIMIT,
            notifier,
            owner: this_process(),
            _park: PhantomData,
        })
    }

    /// Announces that this consumer is about to block in its event loop until a message
    /// arrives, on its own notifier (the one the producer attached with), and re-checks.
    /// `Ok(true)`: block now; the producer signals the notifier after its next commit or
    /// its close. `Ok(false)`: a message is ready, or the producer closed its end: receive
    /// (it succeeds, or reports `Disconnected`), do not block.
    ///
    /// Releases the message [`hold`](Consumer::hold) returned, if any. Arm only after the
    /// ring was found empty, and reset the notifier *before* arming, not after: a signal
    /// that comes after the announcement must stay pending until the wait.
    ///
    /// `known_peer` is the producer's pid as the caller last read it (0: none yet), the
    /// one whose liveness it watches: if another is recorded by the re-check (the producer
    /// attached meanwhile, and may die before it sends anything), `arm` says "do not
    /// block", so the caller can watch it first. (The producer's attach swaps the word
    /// after recording its pid, so the announcement pairs with it as with a commit.)
    ///
    /// [`RingError::Invalid`] if the ring has no notifier; [`RingError::ForkedCopy`] in a
    /// `fork`ed child.
    pub fn arm(&mut self, known_peer: u32) -> Result<bool, RingError> {
        self.check_owner()?;
        if !self.header().has_notifier() {
            return Err(no_notifier());
        }
        self.release_held();
        if self.cached_head != self.tail {
            return Ok(false);
        }
        let h = self.mem.header();
        let tail = self.tail;
        let mut head = self.cached_head;
        let armed = announce(&h.consumer_asleep.word, || {
            head = h.head.word.load(Ordering::Acquire);
            head != tail
                || h.peers.producer_closed.load(Ordering::Acquire) != 0
                || h.peers.producer_pid.load(Ordering::Acquire) != known_peer
        });
        self.cached_head = head;
        Ok(armed)
    }

    /// The shared header (pids, closed flags, capacity).
    pub fn header(&self) -> &RingHeader {
        self.mem.header()
    }

    /// The memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The largest message: `capacity - 8`.
    pub fn max_message(&self) -> usize {
        self.cap as usize - RECORD_HEADER
    }

    /// How many times an empty ring is re-checked before the consumer sleeps (default 100).
    pub fn set_spin(&mut self, spins: u32) {
        self.spin = spins;
    }

    /// The pid the producer recorded (0: no producer attached yet).
    pub fn peer_pid(&self) -> u32 {
        self.header().producer_pid()
    }

    /// Whether this end belongs to the calling process (and not a copy of it that a
    /// `fork`ed child inherited, which refuses to receive: [`RingError::ForkedCopy`]).
    #[inline]
    pub fn is_owned(&self) -> bool {
        self.owner == this_process()
    }

    #[inline]
    fn check_owner(&self) -> Result<(), RingError> {
        check_owner(self.owner, "consumer")
    }

    /// Receives the next message into `buf` (cleared first), waiting until `deadline`.
    ///
    /// This is the safe way to take a message from a peer you do not trust: the bytes are
    /// copied out of the shared memory (through a raw pointer, never a `&[u8]` over it)
    /// before anything reads them, so a buggy or malicious producer that rewrites a
    /// committed message cannot change them under the reader. `buf` is reused: no
    /// allocation once it has grown to the message size.
    pub fn recv(&mut self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), RingError> {
        let rec = self.next_record(deadline)?;
        // SAFETY: the record is committed (before the `head` we loaded with Acquire) and
        // not yet released, so the producer does not write it during the copy.
        unsafe { record::copy_out(self.mem.data(), rec, buf) };
        self.release(rec.next);
        Ok(())
    }

    /// Waits until `deadline` for the next message and lends it in place; dropping the
    /// loan releases it.
    ///
    /// The loan derefs to a `&[u8]` over the ring's shared memory. The protocol keeps a
    /// conforming producer off it until it is released, but the memory is writable by the
    /// peer process: a buggy or malicious producer could change it while you read it. Use
    /// the in-place paths with a peer you trust; with one you do not, copy first
    /// ([`ReadLoan::copy_to`], [`Consumer::recv`]) and decode the copy.
    pub fn recv_loan(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<ReadLoan<'_, M, P>, RingError> {
        let rec = self.next_record(deadline)?;
        Ok(ReadLoan { consumer: self, rec })
    }

    /// Waits until `deadline` for the next message and calls `f` with it in place; the
    /// message is released when `f` returns. The slice is the ring's shared memory: see
    /// [`recv_loan`](Consumer::recv_loan) for what that means with an untrusted peer.
    #[cfg(not(interproc_loom))]
    pub fn recv_in_place<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RingError> {
        let loan = self.recv_loan(deadline)?;
        Ok(f(&loan))
    }

    /// Releases the message the previous `hold` returned, then waits until `deadline` for
    /// the next one and returns it in place; it stays valid (and unreleased) until the next
    /// `hold`, [`release_held`](Consumer::release_held), or the drop of the consumer. This
    /// is the shape of a channel's "the slice is valid until the next call". The slice is
    /// the ring's shared memory: see [`recv_loan`](Consumer::recv_loan) for what that
    /// means with an untrusted peer.
    #[cfg(not(interproc_loom))]
    #[inline(always)]
    pub fn hold(&mut self, deadline: Option<Instant>) -> Result<&[u8], RingError> {
        // `next_record` releases the held message first.
        let rec = self.next_record(deadline)?;
        self.held = Some(rec);
        // The record is released only through `&mut self` (next `hold`, `release_held`,
        // `recv*`, drop), which the returned borrow of `self` excludes.
        // SAFETY: a committed, unreleased record in the data area: the producer does not
        // write it while the slice lives.
        Ok(unsafe { record::payload(self.mem.data(), rec) })
    }

    /// The message the last [`hold`](Consumer::hold) returned, if it is still held (never in
    /// a copy of this end that a `fork`ed child inherited: the message is the parent's,
    /// which may release it at any time).
    #[cfg(not(interproc_loom))]
    #[inline]
    pub fn held(&self) -> Option<&[u8]> {
        let rec = self.held_here()?;
        // SAFETY: as in `hold`: committed, unreleased while `held` names it in the process
        // that took it (`held_here`), and the borrow of `self` keeps it so.
        Some(unsafe { record::payload(self.mem.data(), rec) })
    }

    /// The length of the message [`hold`](Consumer::hold) returned, if it is still held
    /// (as [`held`](Consumer::held): never in a forked copy).
    #[inline]
    pub fn held_len(&self) -> Option<usize> {
        self.held_here().map(|rec| rec.len)
    }

    /// The held record, in the process that took it only: in a forked copy the parent
    /// still holds it and may release it (the producer then rewrites it).
    #[inline]
    fn held_here(&self) -> Option<Record> {
        self.held.filter(|_| self.is_owned())
    }

    /// Copies the message [`hold`](Consumer::hold) returned into `buf` (cleared first)
    /// through a raw pointer, never a `&[u8]` over the shared memory: the copy is private
    /// to this process, so a peer that rewrites the ring cannot change it while it is
    /// decoded. `false` (and `buf` untouched) if no message is held (or this is a forked
    /// copy, as for [`held`](Consumer::held)). `buf` is reused: no
    /// allocation once it has grown to the message size.
    pub fn copy_held(&self, buf: &mut Vec<u8>) -> bool {
        let Some(rec) = self.held_here() else { return false };
        // SAFETY: committed, and unreleased while `held` names it in this process.
        unsafe { record::copy_out(self.mem.data(), rec, buf) };
        true
    }

    /// Gives back the memory without closing the ring (see [`Producer::leave_open`]).
    pub fn leave_open(self) -> M {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so `mem` is moved out exactly
        // once; the other fields need no drop.
        unsafe { std::ptr::read(&this.mem) }
    }

    /// Releases the message [`hold`](Consumer::hold) returned, if any (not in a copy of
    /// this end that a `fork`ed child inherited: the message is the parent's).
    #[inline]
    pub fn release_held(&mut self) {
        if let Some(rec) = self.held.take() {
            self.release(rec.next);
        }
    }

    /// Whether a committed message (or padding) is ready, without waiting.
    pub fn is_empty(&mut self) -> bool {
        self.release_held();
        if self.cached_head == self.tail {
            self.cached_head = self.header().head.word.load(Ordering::Acquire);
        }
        self.cached_head == self.tail
    }

    /// Releases the held message, if any, then waits until `deadline` for the next message
    /// record, releasing the padding records on the way. In a copy of this end that a
    /// `fork`ed child inherited: `ForkedCopy`, and the held message is dropped without
    /// being released (it is the parent's).
    #[inline(always)]
    fn next_record(&mut self, deadline: Option<Instant>) -> Result<Record, RingError> {
        if !self.is_owned() {
            return Err(self.forked());
        }
        if let Some(rec) = self.held.take() {
            self.store_tail(rec.next);
        }
        loop {
            if self.cached_head == self.tail {
                self.cached_head = self.header().head.word.load(Ordering::Acquire);
                if self.cached_head == self.tail {
                    self.wait_data(deadline)?;
                    continue;
                }
            }
            // SAFETY: the data area holds `cap` bytes, and `tail..cached_head` is committed
            // (we loaded `head` with Acquire) and unreleased: the producer does not write it.
            let found =
                unsafe { read_record(self.mem.data(), self.cap, self.cached_head, self.tail) };
            match found {
                Ok(Found::Message(rec)) => return Ok(rec),
                // Owned: checked above, in this call.
                Ok(Found::Padding { next }) => self.store_tail(next),
                Err(bad) => return Err(corrupt_record(bad)),
            }
        }
    }

    /// The error of [`next_record`](Self::next_record) in a `fork`ed child's copy, which
    /// drops (without releasing) the message held in the parent's name.
    #[cold]
    #[inline(never)]
    fn forked(&mut self) -> RingError {
        self.held = None;
        forked_copy("consumer", self.owner, this_process())
    }

    #[inline(never)]
    fn wait_data(&mut self, deadline: Option<Instant>) -> Result<(), RingError> {
        let h = self.mem.header();
        if h.peers.producer_closed.load(Ordering::Acquire) != 0 {
            // Everything committed before the close is visible now (the close is a Release
            // store after the last `head` store).
            self.cached_head = h.head.word.load(Ordering::Acquire);
            return if self.cached_head == self.tail {
                Err(RingError::Disconnected)
            } else {
                Ok(())
            };
        }
        // One clock read decides both: no spinning for a deadline that passed, and then no
        // second read in `sleep_until`.
        let expired = passed(deadline);
        if !expired {
            for _ in 0..self.spin {
                hint::spin_loop();
                self.cached_head = h.head.word.load(Ordering::Acquire);
                if self.cached_head != self.tail {
                    return Ok(());
                }
            }
        }
        let tail = self.tail;
        let mut head = self.cached_head;
        let r = sleep_until::<P>(&h.consumer_asleep.word, deadline, expired, || {
            head = h.head.word.load(Ordering::Acquire);
            head != tail || h.peers.producer_closed.load(Ordering::Acquire) != 0
        });
        self.cached_head = head;
        r
    }

    #[inline]
    fn release(&mut self, tail: u32) {
        if !self.is_owned() {
            return; // a loan taken before a fork, dropped in the child: not ours
        }
        self.store_tail(tail);
    }

    /// Releases up to `tail` and wakes the producer if it announced a sleep. Only for an
    /// end this process attached (the caller checked).
    #[inline]
    fn store_tail(&mut self, tail: u32) {
        self.tail = tail;
        let h = self.mem.header();
        h.tail.word.store(tail, Ordering::Release);
        wake_if_asleep::<P>(&h.producer_asleep.word, self.notifier.as_ref());
    }
}

impl<M: RingMemory, P: Park> Drop for Consumer<M, P> {
    fn drop(&mut self) {
        if !self.is_owned() {
            return; // a fork child's copy: the parent's end stays open
        }
        self.release_held();
        let h = self.mem.header();
        h.peers.consumer_closed.store(1, Ordering::Release);
        wake_if_asleep::<P>(&h.producer_asleep.word, self.notifier.as_ref());
    }
}

impl<M: RingMemory, P: Park> fmt::Debug for Consumer<M, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("tail", &self.tail).field("ring", self.header()).finish()
    }
}

/// A received message, lent in place; dropping the loan releases it to the producer.
///
/// The bytes are committed and not yet released, so the producer does not write them while
/// the loan lives: that is why it may hand out `&[u8]` over shared memory. That holds for
/// a producer that follows the protocol; the memory stays writable by the peer process,
/// so with a peer you do not trust, [`copy_to`](ReadLoan::copy_to) and decode the copy.
pub struct ReadLoan<'a, M: RingMemory, P: Park> {
    consumer: &'a mut Consumer<M, P>,
    rec: Record,
}

impl<M: RingMemory, P: Park> ReadLoan<'_, M, P> {
    /// The message size.
    pub fn len(&self) -> usize {
        self.rec.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }

    /// Copies the message into `buf` (cleared first), through a raw pointer: decode the
    /// copy, not the loan, when the peer is not trusted.
    pub fn copy_to(&self, buf: &mut Vec<u8>) {
        // SAFETY: committed and unreleased while the loan lives (see the type's docs).
        unsafe { record::copy_out(self.consumer.mem.data(), self.rec, buf) };
    }
}

#[cfg(not(interproc_loom))]
impl<M: RingMemory, P: Park> std::ops::Deref for ReadLoan<'_, M, P> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the record lies in the data area, is committed, and stays unreleased
        // while the loan (which the returned borrow keeps alive) lives.
        unsafe { record::payload(self.consumer.mem.data(), self.rec) }
    }
}

impl<M: RingMemory, P: Park> Drop for ReadLoan<'_, M, P> {
    fn drop(&mut self) {
        self.consumer.release(self.rec.next);
    }
}
