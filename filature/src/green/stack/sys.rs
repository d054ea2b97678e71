//! The syscalls the arena makes, each wrapped once and checked, plus the guard-mode switch.
//!
//! Nothing here is called from the signal handler (see `signal.rs` for what is).

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use super::StackError;

/// `MADV_GUARD_INSTALL` (Linux ≥ 6.13): turn a range of an anonymous mapping into guard markers
/// that fault on access without splitting the mapping. Not in the `libc` crate yet.
pub(super) const MADV_GUARD_INSTALL: libc::c_int = 102;

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
