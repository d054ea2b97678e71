//! The syscalls the arena makes, each wrapped once and checked, plus the guard-mode switch.
//!
//! Nothing here is called from the signal handler (see `signal.rs` for what is).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use super::StackError;

/// `MADV_GUARD_INSTALL` (Linux ≥ 6.13): turn a range of an anonymous mapping into guard markers
/// that fault on access without splitting the mapping. Not in the `libc` crate yet.
pub(super) const MADV_GUARD_INSTALL: libc::c_int = 102;

/// `MADV_POPULATE_WRITE` (Linux ≥ 5.14): fault a range in, writable, without touching it.
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// `PIDFD_SELF_THREAD_GROUP` (Linux ≥ 6.15): "this process" for `process_madvise`, with no
/// descriptor to open or keep, and still this process (not the parent) after a `fork`.
const PIDFD_SELF: libc::c_int = -10001;

/// Ranges handed to one `process_madvise` call (the kernel takes up to `UIO_MAXIOV`, 1,024).
pub(super) const MAX_BATCH: usize = 64;

/// Cleared for good the first time `process_madvise` on ourselves fails (kernels before 6.15
/// know no `PIDFD_SELF`; before 6.13 they refuse these advices; a seccomp filter may refuse the
/// call): the batch functions then make one `madvise` per range, or nothing for prefaulting.
static BATCHING: AtomicBool = AtomicBool::new(true);

/// Whether batches still go to `process_madvise` (tests).
#[cfg(test)]
pub(super) fn batching() -> bool {
    BATCHING.load(Ordering::Relaxed)
}

/// Makes every batch from now on one `madvise` per range, as when `process_madvise` fails (tests).
#[cfg(test)]
pub(super) fn disable_batching() {
    BATCHING.store(false, Ordering::Relaxed);
}

/// How guard areas are made. Process-wide; decided on the first guard installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuardMode {
    /// No guard installed yet.
    Undecided,
    /// `madvise(MADV_GUARD_INSTALL)`: no VMA split, a million stacks cost a handful of VMAs.
    GuardInstall,
    /// `mprotect(PROT_NONE)`: about two VMAs per stack, bounded by `vm.max_map_count`.
    Mprotect,
}

const MODE_UNREAD: u8 = 0;
const MODE_TRY_GUARD_INSTALL: u8 = 1;
const MODE_GUARD_INSTALL: u8 = 2;
const MODE_MPROTECT: u8 = 3;

static MODE: AtomicU8 = AtomicU8::new(MODE_UNREAD);

/// The mode to try next: reads `FILATURE_STACK_GUARDS` once.
fn mode() -> u8 {
    let mode = MODE.load(Ordering::Relaxed);
    if mode != MODE_UNREAD {
        return mode;
    }
    let wanted = match std::env::var("FILATURE_STACK_GUARDS").as_deref() {
        Ok("mprotect") => MODE_MPROTECT,
        _ => MODE_TRY_GUARD_INSTALL,
    };
    // Losing the race only means another thread decided first (or `force_mprotect_guards` ran).
    match MODE.compare_exchange(MODE_UNREAD, wanted, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => wanted,
        Err(current) => current,
    }
}

pub(super) fn force_mprotect() {
    MODE.store(MODE_MPROTECT, Ordering::Relaxed);
}

pub(super) fn guard_mode() -> GuardMode {
    match MODE.load(Ordering::Relaxed) {
        MODE_GUARD_INSTALL => GuardMode::GuardInstall,
        MODE_MPROTECT => GuardMode::Mprotect,
        _ => GuardMode::Undecided,
    }
}

pub(super) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page).unwrap_or(4096);
        assert!(
            page.is_power_of_two(),
            "page size {page} is not a power of two"
        );
        page
    })
}

#[cfg(test)]
thread_local! {
    /// Syscalls made by this module on this thread (tests check the hot path makes none).
    pub(super) static SYSCALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn count_syscall() {
    #[cfg(test)]
    SYSCALLS.with(|c| c.set(c.get() + 1));
}

/// Reserves `len` bytes of read-write, unaccounted (`MAP_NORESERVE`) address space.
pub(super) fn reserve(len: usize) -> io::Result<usize> {
    count_syscall();
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
    // existing memory.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(map as usize)
    }
}

/// Makes `[addr, addr + len)` a guard area: any access faults.
///
/// The range must lie inside a region from [`reserve`] and hold nothing anyone still uses.
pub(super) fn install_guard(addr: usize, len: usize) -> Result<(), StackError> {
    loop {
        match mode() {
            MODE_TRY_GUARD_INSTALL | MODE_GUARD_INSTALL => {
                count_syscall();
                // SAFETY: the caller guarantees the range is ours and unused; guard markers only
                // make it fault on access.
                let rc = unsafe { libc::madvise(addr as *mut _, len, MADV_GUARD_INSTALL) };
                if rc == 0 {
                    // Only upgrades "trying" to "works"; never undoes a forced fallback.
                    let _ = MODE.compare_exchange(
                        MODE_TRY_GUARD_INSTALL,
                        MODE_GUARD_INSTALL,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINVAL) {
                    return Err(StackError::guard(err));
                }
                tracing::info!(
                    "MADV_GUARD_INSTALL is not supported by this kernel (Linux < 6.13); \
                     green thread stacks fall back to mprotect guard pages, bounded by \
                     vm.max_map_count"
                );
                MODE.store(MODE_MPROTECT, Ordering::Relaxed);
            }
            _ => {
                count_syscall();
                // SAFETY: as above; PROT_NONE on an unused range of our own mapping.
                let rc = unsafe { libc::mprotect(addr as *mut _, len, libc::PROT_NONE) };
                if rc == 0 {
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                return Err(if err.raw_os_error() == Some(libc::ENOMEM) {
                    StackError::map_count()
                } else {
                    StackError::guard(err)
                });
            }
        }
    }
}

/// [`install_guard`] for `[addr, addr + len)` for each of `addrs` (at most [`MAX_BATCH`]), in one
/// `process_madvise` when guards are `MADV_GUARD_INSTALL` guards.
///
/// Same contract as [`install_guard`] for every range. On failure some ranges may be guards
/// already; installing a guard twice is harmless, so the caller may simply retry.
pub(super) fn install_guards(addrs: &[usize], len: usize) -> Result<(), StackError> {
    if mode() == MODE_GUARD_INSTALL && advise_batch(addrs, 0, len, MADV_GUARD_INSTALL) {
        return Ok(());
    }
    // Still deciding the mode, mprotect guards (one VMA split each: no batch call), or no
    // batching on this kernel; a batch that failed part-way is redone here, range by range, so
    // the error (if any) is the one a single `madvise` reports.
    addrs.iter().try_for_each(|&addr| install_guard(addr, len))
}

/// Faults in `[addr + offset, addr + offset + len)` for each of `addrs` (at most [`MAX_BATCH`])
/// in one `process_madvise(MADV_POPULATE_WRITE)`, as writing a byte in each page would but without a
/// page-fault trap per page. Best effort: if the kernel refuses, the pages fault on first touch.
///
/// The ranges must lie inside regions from [`reserve`], outside guards, and hold nothing anyone
/// uses (populating an untouched page only makes it a resident page of zeros).
pub(super) fn prefault(addrs: &[usize], offset: usize, len: usize) {
    let _ = advise_batch(addrs, offset, len, MADV_POPULATE_WRITE);
}

/// `process_madvise(PIDFD_SELF, [addr + offset, addr + offset + len) for each of addrs, advice)`;
/// `true` if the kernel applied it to every byte. The caller guarantees the advice is sound for
/// every range.
fn advise_batch(addrs: &[usize], offset: usize, len: usize, advice: libc::c_int) -> bool {
    if addrs.is_empty() {
        return true;
    }
    if !BATCHING.load(Ordering::Relaxed) {
        return false;
    }
    let mut ranges = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    let ranges = &mut ranges[..addrs.len()];
    for (range, &addr) in ranges.iter_mut().zip(addrs) {
        range.iov_base = (addr + offset) as *mut libc::c_void;
        range.iov_len = len;
    }
    count_syscall();
    // SAFETY: the kernel reads `ranges.len()` iovecs from `ranges`, which is that long, and
    // applies `advice` to this process's own memory (PIDFD_SELF); that each range may take the
    // advice is the caller's guarantee.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            PIDFD_SELF,
            ranges.as_ptr(),
            ranges.len(),
            advice,
            0,
        )
    };
    if rc >= 0 && rc as usize == addrs.len() * len {
        return true;
    }
    if rc < 0 {
        let err = io::Error::last_os_error();
        // Not this kernel's (or this sandbox's) call: stop trying. Other errors (ENOMEM, a
        // range the kernel refused) concern this batch only.
        if matches!(
            err.raw_os_error(),
            Some(libc::ENOSYS | libc::EBADF | libc::EPERM | libc::EINVAL)
        ) {
            tracing::debug!(
                "process_madvise on this process is not available ({err}); green thread \
                 stacks are carved with one madvise per guard"
            );
            BATCHING.store(false, Ordering::Relaxed);
        }
    }
    false
}

/// Gives the pages of `[addr, addr + len)` back to the kernel; they read as zeros afterwards.
///
/// The range must lie inside a region from [`reserve`] and hold nothing anyone still needs.
pub(super) fn discard(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    count_syscall();
    // SAFETY: the caller guarantees nobody needs the contents; MADV_DONTNEED on a private
    // anonymous mapping only replaces them with zero pages on next touch.
    let rc = unsafe { libc::madvise(addr as *mut _, len, libc::MADV_DONTNEED) };
    debug_assert_eq!(
        rc,
        0,
        "MADV_DONTNEED failed: {}",
        io::Error::last_os_error()
    );
}

/// The current `vm.max_map_count`, for error messages.
pub(super) fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}
