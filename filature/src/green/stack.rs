//! Stacks for green threads: one arena of large regions, guard areas, a two-level pool.
//!
//! # Layout of a slot
//!
//! The arena reserves *regions* (about 1 GiB each) with `mmap(PROT_READ|PROT_WRITE,
//! MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)`. A region serves one slot size and is carved into
//! fixed-size *slots*, lazily, in batches of up to 64 (see *Carving* below):
//!
//! ```text
//!  low address                                                              high address
//!  | guard (GUARD_SIZE) | usable stack ..................... grows down <- | header (64 B) |
//!  ^ slot = limit()     ^ slot + GUARD_SIZE                                 ^ base()        ^ slot + slot_size
//! ```
//!
//! - The **guard** is installed once, when the slot is carved, with `MADV_GUARD_INSTALL`
//!   (Linux ≥ 6.13: no VMA split; regions even merge with each other, so 200,000 stacks add no
//!   line to `/proc/self/maps`). If the kernel
//!   answers `EINVAL` the process switches for good to `mprotect(PROT_NONE)` guards (two VMAs per
//!   slot); `ENOMEM` from that is the `vm.max_map_count` ceiling and becomes a [`StackError`].
//!   Guards are never removed: a slot is a stack slot for the life of the process.
//! - The **header** holds the green thread's id and (truncated) name for the overflow message. It
//!   lives in the top page, which the stack touches anyway, and is written only at hand-out
//!   (cleared) and by [`GreenStack::label`], through atomics.
//! - `base()` (the header's address) is 64-byte aligned; `limit()` is the slot start, *including*
//!   the guard, as `corosensei::stack::Stack` requires. Usable bytes ≥ the size asked for.
//! - Slots are adjacent, so a header sits just below the next slot's guard: a stray write running
//!   up past a stack's top faults too, instead of scribbling on a neighbour.
//! - Memory per parked green thread: the pages its frames touched (one, normally, after a trim)
//!   plus the 3-word `GreenStack` wherever its owner keeps it. Address space: `slot_size` each, up
//!   to `MAX_REGIONS` (2048) regions of ~1 GiB.
//!
//! # Carving
//!
//! A slot costs the kernel a guard and, on first use, its top page (zeroed, charged, and a share
//! of a page-table page: slots are far apart, about seven to a 2 MiB page table). With
//! `MADV_GUARD_INSTALL` guards, the arena carves up to `sys::MAX_BATCH` (64) adjacent slots at a
//! time: one `process_madvise(PIDFD_SELF, MADV_GUARD_INSTALL)` installs all their guards, one
//! `process_madvise(MADV_POPULATE_WRITE)` faults in all their top pages (touched at hand-out
//! anyway; this saves a page-fault trap each), the first is handed out and the rest go to the
//! shared free list, lowest address first. That is one syscall pair per 64 slots instead of a
//! syscall and a page fault per slot; the price is at most 63 carved-ahead top pages (252 KiB)
//! resident per slot size. If `process_madvise` on ourselves fails for want of kernel
//! support (`PIDFD_SELF` is Linux ≥ 6.15), batches fall back for good to one `madvise` per guard
//! and no prefault. The first slot (which decides the guard mode) and every slot with
//! `mprotect` guards are carved one at a time: those guards split VMAs, counted against
//! `vm.max_map_count`, and are not taken ahead of need.
//!
//! # Who owns what
//!
//! A slot is in exactly one of three places: owned by one [`GreenStack`] (in use), in one
//! thread's *hot cache*, or in the process-wide *shared free list*. Moving between them is a move
//! of a plain address, so a slot can never be handed out twice. The bookkeeping per slot is that
//! address (one word) wherever it is, plus a dirty bit in the hot cache and the size and a
//! Valgrind registration id in a `GreenStack`; no allocation per stack. A slot's contents belong
//! to its current owner only; a free slot's contents belong to nobody, which is what makes giving
//! its pages back with `MADV_DONTNEED` sound. Regions are never unmapped, which is what lets the
//! signal handler read them without a lock.
//!
//! # The pool, and its thread-safety
//!
//! - The **hot cache** is thread-local (a `RefCell`, no lock): up to [`HOT_CAPACITY`] slots per
//!   size, LIFO so the warmest pages are reused first. `new` and `drop` of a cached size make no
//!   syscall and take no lock. A slot dropped while its cache is full has its pages given back
//!   (`MADV_DONTNEED` on all but the top page) and goes to the shared list.
//! - [`trim_thread_cache`] (called by a hub about to sleep) gives back the pages of the slots
//!   used since the last trim; clean slots cost nothing, so repeated idle calls are free.
//! - The **shared free list** and the region bump pointers sit behind one mutex (which also
//!   orders a slot's last use on one thread before its reuse on another). Syscalls made
//!   under it (`mmap` of a region, guard install, prefault) happen once per batch of slots for
//!   the life of the process. A stack dropped on a thread other than the one that allocated
//!   it, or during thread-local teardown, simply goes to that thread's cache or to the shared
//!   list.
//! - At thread exit the hot cache trims itself and moves its slots to the shared list.
//!
//! # Overflow reporting
//!
//! A `SIGSEGV`/`SIGBUS` handler (installed once, `SA_SIGINFO|SA_ONSTACK`) maps the fault address
//! through a fixed table of atomics (region → slot); if it is in a guard, it writes
//! `green thread '<name>' has overflowed its stack` (or `'<unnamed #ID>'`) to stderr and aborts.
//! Otherwise it chains to the handler installed before it (std's, for its own thread guards), or
//! restores `SIG_DFL` and returns so the fault re-raises. It is async-signal-safe because it only
//! loads atomics, calls `write`, `sigaction` and `abort`, and touches memory that stays mapped;
//! see `stack/signal.rs`. The handler needs a signal stack on the faulting thread (the green
//! stack is exhausted): hubs call [`ensure_signal_stack`] before running their first green thread.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use corosensei::stack::valgrind::ValgrindStackRegistration;
use corosensei::stack::{Stack, StackPointer};
use parking_lot::Mutex;
use thiserror::Error;

mod signal;
mod sys;
#[cfg(test)]
mod tests;

pub(crate) use sys::GuardMode;

/// Usable bytes of a green thread stack when the spawner does not say.
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Smallest usable size handed out; smaller requests are rounded up to it.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// Bytes of guard below every stack. Free of memory and VMAs with `MADV_GUARD_INSTALL`; four
/// pages so a frame that skips one page (C code without stack probes) still faults.
const GUARD_SIZE: usize = 16 * 1024;

/// Bytes of slot header above `base()`.
const HEADER_SIZE: usize = 64;

/// Address space per region (a region holds at least one slot, however large).
const REGION_TARGET: usize = 1 << 30;

/// Slots kept per size in each thread's hot cache.
pub(crate) const HOT_CAPACITY: usize = 16;

/// Why a green thread stack could not be made.
#[derive(Debug, Error)]
#[error(transparent)]
#[allow(unreachable_pub)] // re-exported from `green` by the integrator
pub struct StackError {
    repr: Repr,
}

/// What went wrong, for matching on a [`StackError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[allow(unreachable_pub)] // re-exported from `green` by the integrator
pub enum StackErrorKind {
    /// `mprotect` guards hit the `vm.max_map_count` ceiling.
    MapCountExceeded,
    /// The address space (or the arena's region table) is exhausted.
    OutOfAddressSpace,
    /// The requested size overflows the address space arithmetic.
    TooLarge,
    /// The kernel refused a guard for another reason.
    Guard,
}

#[derive(Debug, Error)]
enum Repr {
    #[error(
        "cannot reserve a green thread stack: the kernel refused a guard page \
         (vm.max_map_count = {} reached with mprotect guards, about two mappings per stack); \
         raise vm.max_map_count (sysctl vm.max_map_count=...) or run on Linux >= 6.13 for \
         MADV_GUARD_INSTALL guards", .max_map_count.map_or_else(|| "?".to_owned(), |n| n.to_string())
    )]
    MapCount { max_map_count: Option<u64> },
    #[error(
        "cannot reserve {bytes} bytes of address space for green thread stacks: {source}; \
         use smaller stacks (stack_size) or fewer live green threads"
    )]
    AddressSpace { bytes: usize, source: io::Error },
    #[error(
        "cannot reserve a green thread stack: all {} arena regions are in use; use smaller \
         stacks (stack_size) or fewer live green threads",
        signal::MAX_REGIONS
    )]
    RegionTableFull,
    #[error("a green thread stack of {size} bytes is too large; ask for a smaller stack_size")]
    TooLarge { size: usize },
    #[error("cannot install the guard page under a green thread stack: {source}")]
    Guard { source: io::Error },
}

impl StackError {
    fn map_count() -> Self {
        StackError {
            repr: Repr::MapCount {
                max_map_count: sys::max_map_count(),
            },
        }
    }

    fn guard(source: io::Error) -> Self {
        StackError {
            repr: Repr::Guard { source },
        }
    }

    /// What went wrong.
    #[allow(unreachable_pub)]
    pub fn kind(&self) -> StackErrorKind {
        match self.repr {
            Repr::MapCount { .. } => StackErrorKind::MapCountExceeded,
            Repr::AddressSpace { .. } | Repr::RegionTableFull => StackErrorKind::OutOfAddressSpace,
            Repr::TooLarge { .. } => StackErrorKind::TooLarge,
            Repr::Guard { .. } => StackErrorKind::Guard,
        }
    }

    /// The `vm.max_map_count` ceiling was reached (only with `mprotect` guards).
    #[allow(unreachable_pub)]
    pub fn is_map_count_exceeded(&self) -> bool {
        self.kind() == StackErrorKind::MapCountExceeded
    }

    /// The process ran out of address space for stacks.
    #[allow(unreachable_pub)]
    pub fn is_out_of_address_space(&self) -> bool {
        self.kind() == StackErrorKind::OutOfAddressSpace
    }
}

/// A green thread stack: one arena slot, returned to the pool on drop.
pub(crate) struct GreenStack {
    /// Lowest address of the slot (start of the guard).
    slot: usize,
    slot_size: usize,
    /// Tells Valgrind (if running under it) that this range is a stack; a no-op otherwise.
    /// Dropped by hand, before the slot goes back to the pool.
    valgrind: ManuallyDrop<ValgrindStackRegistration>,
}

impl fmt::Debug for GreenStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenStack")
            .field("limit", &format_args!("{:#x}", self.slot))
            .field("base", &format_args!("{:#x}", self.base_addr()))
            .finish()
    }
}

/// Slot size for `size` usable bytes: guard + usable + header, in whole pages.
fn slot_size_for(size: usize) -> Result<usize, StackError> {
    let page = sys::page_size();
    size.max(MIN_STACK_SIZE)
        .checked_add(HEADER_SIZE + page - 1)
        .map(|n| n & !(page - 1))
        .and_then(|n| n.checked_add(GUARD_SIZE))
        .filter(|&n| n <= isize::MAX as usize / 2)
        .ok_or(StackError {
            repr: Repr::TooLarge { size },
        })
}

impl GreenStack {
    /// A stack with at least `size` usable bytes (rounded up to [`MIN_STACK_SIZE`] and pages).
    ///
    /// Reuses a pooled slot when there is one: from this thread's cache with no syscall, else
    /// from the shared list; carves a batch of new slots (two syscalls) otherwise.
    pub(crate) fn new(size: usize) -> Result<GreenStack, StackError> {
        let slot_size = slot_size_for(size)?;
        let slot = match HOT.try_with(|hot| hot.borrow_mut().pop(slot_size)) {
            Ok(Some(slot)) => slot,
            _ => ARENA.lock().take(slot_size)?,
        };
        let valgrind = ValgrindStackRegistration::new(slot as *mut u8, slot_size - HEADER_SIZE);
        let stack = GreenStack {
            slot,
            slot_size,
            valgrind: ManuallyDrop::new(valgrind),
        };
        stack.header().clear();
        Ok(stack)
    }

    /// Records the green thread's id and name for the overflow message. Names longer than 48
    /// bytes are truncated; an unnamed thread prints as `<unnamed #ID>`.
    pub(crate) fn label(&mut self, id: u64, name: Option<&str>) {
        self.header().set(id, name);
    }

    /// Usable bytes between `limit() + guard` and `base()`.
    #[cfg(test)]
    pub(crate) fn usable_size(&self) -> usize {
        self.slot_size - GUARD_SIZE - HEADER_SIZE
    }

    fn base_addr(&self) -> usize {
        self.slot + self.slot_size - HEADER_SIZE
    }

    fn header(&self) -> &signal::SlotHeader {
        // SAFETY: the header is the 64-byte-aligned top of a carved slot, which stays mapped
        // read-write for the life of the process; `SlotHeader` is all atomics, so any bytes are a
        // valid value and concurrent readers (the signal handler) are fine.
        unsafe { &*(self.base_addr() as *const signal::SlotHeader) }
    }
}

// SAFETY: `base()` and `limit()` bound a mapping this value owns exclusively until drop;
// `limit()` includes a guard area of GUARD_SIZE ≥ one page that faults on any access, and the
// usable part is ≥ MIN_STACK_SIZE ≥ corosensei's minimum. Both are 16-byte aligned (base is
// 64-aligned, limit page-aligned).
unsafe impl Stack for GreenStack {
    #[inline]
    fn base(&self) -> StackPointer {
        NonZeroUsize::new(self.base_addr()).expect("slot address is never 0")
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        NonZeroUsize::new(self.slot).expect("slot address is never 0")
    }
}

impl Drop for GreenStack {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.valgrind) };
        let (slot, slot_size) = (self.slot, self.slot_size);
        let kept = HOT
            .try_with(|hot| match hot.try_borrow_mut() {
                Ok(mut hot) => hot.push(slot, slot_size),
                Err(_) => false,
            })
            .unwrap_or(false);
        if !kept {
            release(slot, slot_size);
            ARENA.lock().class(slot_size).free.push(slot);
        }
    }
}

/// Gives back the pages of a free slot, except the top one (kept: it is touched first on reuse,
/// and it holds the header).
fn release(slot: usize, slot_size: usize) {
    let page = sys::page_size();
    sys::discard(slot + GUARD_SIZE, slot_size - GUARD_SIZE - page);
}

/// Per-thread counts of hot-cached slots, summed by `stats`. Each is written only by its own
/// thread (a load and a store, no read-modify-write: spawning stays free of locked instructions)
/// and read by `stats`; a thread's entry goes away with its cache.
static HOT_COUNTS: Mutex<Vec<Weak<AtomicUsize>>> = Mutex::new(Vec::new());

fn hot_count_add(c: &AtomicUsize, delta: isize) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add_signed(delta),
        Ordering::Relaxed,
    );
}

/// Slots of one size: shared free list and the region being carved.
struct Class {
    slot_size: usize,
    free: Vec<usize>,
    /// Next slot to carve and the end of the current region (both 0 before the first region).
    next: usize,
    end: usize,
    carved: usize,
}

struct Arena {
    classes: Vec<Class>,
}

static ARENA: Mutex<Arena> = parking_lot::const_mutex(Arena {
    classes: Vec::new(),
});

impl Arena {
    fn class(&mut self, slot_size: usize) -> &mut Class {
        let index = match self.classes.iter().position(|c| c.slot_size == slot_size) {
            Some(index) => index,
            None => {
                self.classes.push(Class {
                    slot_size,
                    free: Vec::new(),
                    next: 0,
                    end: 0,
                    carved: 0,
                });
                self.classes.len() - 1
            }
        };
        &mut self.classes[index]
    }

    /// A slot from the shared list, or the first of a freshly carved batch.
    fn take(&mut self, slot_size: usize) -> Result<usize, StackError> {
        let class = self.class(slot_size);
        if let Some(slot) = class.free.pop() {
            return Ok(slot);
        }
        if class.next == class.end {
            if signal::region_count() >= signal::MAX_REGIONS {
                return Err(StackError {
                    repr: Repr::RegionTableFull,
                });
            }
            let slots = (REGION_TARGET / slot_size).max(1);
            let len = slots * slot_size;
            let start = sys::reserve(len).map_err(|source| {
                // With mprotect guards, ENOMEM from mmap is most likely the map-count ceiling too.
                if source.raw_os_error() == Some(libc::ENOMEM)
                    && sys::guard_mode() == GuardMode::Mprotect
                {
                    StackError::map_count()
                } else {
                    StackError {
                        repr: Repr::AddressSpace { bytes: len, source },
                    }
                }
            })?;
            signal::install_handler();
            signal::publish_region(start, len, slot_size);
            class.next = start;
            class.end = start + len;
        }
        // Carve a batch: one syscall installs all its guards and one faults in all its top
        // pages (each is touched at hand-out anyway). One slot at a time while the guard mode
        // is undecided, and with mprotect guards, whose VMAs count against vm.max_map_count.
        let room = (class.end - class.next) / slot_size;
        let batch = match sys::guard_mode() {
            GuardMode::GuardInstall => room.min(sys::MAX_BATCH),
            GuardMode::Undecided | GuardMode::Mprotect => 1,
        };
        let mut slots = [0; sys::MAX_BATCH];
        let slots = &mut slots[..batch];
        for (i, slot) in slots.iter_mut().enumerate() {
            *slot = class.next + i * slot_size;
        }
        sys::install_guards(slots, GUARD_SIZE)?;
        if batch > 1 {
            let page = sys::page_size();
            sys::prefault(slots, slot_size - page, page);
        }
        class.next += batch * slot_size;
        class.carved += batch;
        // The rest wait in the shared list, lowest address handed out next.
        class.free.extend(slots[1..].iter().rev());
        Ok(slots[0])
    }
}

/// One thread's hot cache: a few slots per size, LIFO.
struct HotCache {
    classes: Vec<HotClass>,
    /// How many slots `classes` holds, readable by `stats` (registered in `HOT_COUNTS`).
    count: Option<Arc<AtomicUsize>>,
}

impl HotCache {
    fn count(&mut self) -> &AtomicUsize {
        self.count.get_or_insert_with(|| {
            let c = Arc::new(AtomicUsize::new(0));
            HOT_COUNTS.lock().push(Arc::downgrade(&c));
            c
        })
    }
}

struct HotClass {
    slot_size: usize,
    /// (slot, dirty): dirty = used since its pages were last given back.
    slots: Vec<(usize, bool)>,
}

impl HotCache {
    fn pop(&mut self, slot_size: usize) -> Option<usize> {
        let class = self.classes.iter_mut().find(|c| c.slot_size == slot_size)?;
        let (slot, _) = class.slots.pop()?;
        hot_count_add(self.count(), -1);
        Some(slot)
    }

    /// Keeps the slot if there is room; `false` means the caller must put it elsewhere.
    fn push(&mut self, slot: usize, slot_size: usize) -> bool {
        let index = match self.classes.iter().position(|c| c.slot_size == slot_size) {
            Some(index) => index,
            None => {
                let slots = Vec::with_capacity(HOT_CAPACITY);
                self.classes.push(HotClass { slot_size, slots });
                self.classes.len() - 1
            }
        };
        let class = &mut self.classes[index];
        if class.slots.len() >= HOT_CAPACITY {
            return false;
        }
        class.slots.push((slot, true));
        hot_count_add(self.count(), 1);
        true
    }

    fn trim(&mut self) {
        for class in &mut self.classes {
            for (slot, dirty) in &mut class.slots {
                if std::mem::take(dirty) {
                    release(*slot, class.slot_size);
                }
            }
        }
    }
}

impl Drop for HotCache {
    fn drop(&mut self) {
        self.trim();
        let mut arena = ARENA.lock();
        for class in &mut self.classes {
            let free = &mut arena.class(class.slot_size).free;
            free.extend(class.slots.drain(..).map(|(slot, _)| slot));
        }
    }
}

thread_local! {
    static HOT: RefCell<HotCache> = const { RefCell::new(HotCache { classes: Vec::new(), count: None }) };
}

/// Gives back the pages (all but the top page) of this thread's cached stacks used since the
/// last call. Hubs call it before sleeping; a call with nothing used since costs no syscall.
pub(crate) fn trim_thread_cache() {
    let _ = HOT.try_with(|hot| {
        if let Ok(mut hot) = hot.try_borrow_mut() {
            hot.trim();
        }
    });
}

/// Makes sure this thread can report a green thread stack overflow: installs the process-wide
/// fault handler (once) and, if the thread has no signal stack, gives it one (with a guard page),
/// freed at thread exit. Idempotent; hubs call it before running their first green thread.
pub(crate) fn ensure_signal_stack() {
    signal::ensure_signal_stack();
}

/// Makes every guard installed from now on an `mprotect` guard, as on kernels without
/// `MADV_GUARD_INSTALL`. Process-wide, for tests of the fallback (so is the environment variable
/// `FILATURE_STACK_GUARDS=mprotect`, read once).
#[doc(hidden)]
#[allow(unreachable_pub)] // re-exported from `green` by the integrator
pub fn force_mprotect_guards() {
    sys::force_mprotect();
}

/// A snapshot of the arena, for benches and introspection.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StackStats {
    /// Regions reserved (each about 1 GiB of address space, never returned).
    pub(crate) regions: usize,
    /// Slots ever carved (each has its guard installed).
    pub(crate) slots_carved: usize,
    /// Slots owned by a live [`GreenStack`].
    pub(crate) slots_in_use: usize,
    /// Slots in a free pool (hot caches and the shared list).
    pub(crate) slots_pooled: usize,
    /// How guards are installed.
    pub(crate) guard_mode: GuardMode,
}

/// See [`StackStats`]. Takes the arena lock; the counters are read without synchronisation
/// against other threads, so under concurrent use they are only approximately consistent.
#[cfg(test)]
pub(crate) fn stats() -> StackStats {
    let arena = ARENA.lock();
    let shared: usize = arena.classes.iter().map(|c| c.free.len()).sum();
    let hot: usize = {
        let mut counts = HOT_COUNTS.lock();
        counts.retain(|c| c.strong_count() > 0);
        counts
            .iter()
            .filter_map(Weak::upgrade)
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    };
    let carved: usize = arena.classes.iter().map(|c| c.carved).sum();
    StackStats {
        regions: signal::region_count(),
        slots_carved: carved,
        slots_in_use: carved.saturating_sub(shared + hot),
        slots_pooled: shared + hot,
        guard_mode: sys::guard_mode(),
    }
}
