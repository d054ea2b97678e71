//! Everything the overflow handler reads, and the handler itself.
//!
//! The handler may run at any instruction of any thread, on a signal stack, with the arena lock
//! held by the faulting thread. So it takes no lock, allocates nothing and calls only `write`,
//! `sigaction` and `abort` (all async-signal-safe per POSIX). What it reads is either immutable
//! after publication (the region table: plain atomics behind an acquire/release count) or written
//! only through atomics (the slot headers). Regions are never unmapped, so an address read from
//! the table stays mapped for the life of the process.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use super::sys;
use super::{GUARD_SIZE, HEADER_SIZE};

/// Most regions the arena may reserve (each ~1 GiB of address space: 2 TiB in all).
pub(super) const MAX_REGIONS: usize = 2048;

/// Longest name kept in a slot header; longer names are truncated at a char boundary.
pub(super) const NAME_CAPACITY: usize = 48;

struct RegionEntry {
    start: AtomicUsize,
    len: AtomicUsize,
    slot_size: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // used only as an array-repeat initialiser
const EMPTY_REGION: RegionEntry = RegionEntry {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    slot_size: AtomicUsize::new(0),
};

static REGIONS: [RegionEntry; MAX_REGIONS] = [EMPTY_REGION; MAX_REGIONS];
static REGION_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Number of regions published so far.
pub(super) fn region_count() -> usize {
    REGION_COUNT.load(Ordering::Relaxed)
}

/// Publishes a freshly mapped region. Only called with the arena lock held (single writer), and
/// only after checking `region_count() < MAX_REGIONS`.
pub(super) fn publish_region(start: usize, len: usize, slot_size: usize) {
    let index = REGION_COUNT.load(Ordering::Relaxed);
    assert!(index < MAX_REGIONS, "region table overflow");
    let entry = &REGIONS[index];
    entry.start.store(start, Ordering::Relaxed);
    entry.len.store(len, Ordering::Relaxed);
    entry.slot_size.store(slot_size, Ordering::Relaxed);
    // ORDERING: Release pairs with the Acquire in `guard_hit`: a handler that sees the new count
    // sees the entry's fields.
    REGION_COUNT.store(index + 1, Ordering::Release);
}

/// The 64 bytes at the top of every slot, above the stack's `base()`. Written only through these
/// atomics, so the handler may read them while another thread relabels the slot.
#[repr(C, align(64))]
pub(super) struct SlotHeader {
    id: AtomicU64,
    /// Name length in bytes, or `u64::MAX` for "unnamed".
    len: AtomicU64,
    name: [AtomicU64; NAME_CAPACITY / 8],
}

const _: () = assert!(std::mem::size_of::<SlotHeader>() == HEADER_SIZE);

const UNNAMED: u64 = u64::MAX;

impl SlotHeader {
    pub(super) fn set(&self, id: u64, name: Option<&str>) {
        let mut bytes = [0u8; NAME_CAPACITY];
        let len = match name {
            None => UNNAMED,
            Some(name) => {
                let mut end = name.len().min(NAME_CAPACITY);
                while !name.is_char_boundary(end) {
                    end -= 1;
                }
                bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
                end as u64
            }
        };
        for (word, chunk) in self.name.iter().zip(bytes.chunks_exact(8)) {
            let chunk: [u8; 8] = chunk.try_into().expect("chunks_exact(8)");
            word.store(u64::from_ne_bytes(chunk), Ordering::Relaxed);
        }
        self.id.store(id, Ordering::Relaxed);
        // ORDERING: Release pairs with the Acquire in `report`: a reader that sees this length
        // sees the name and id stored above.
        self.len.store(len, Ordering::Release);
    }

    pub(super) fn clear(&self) {
        self.set(0, None);
    }

    #[cfg(test)]
    pub(super) fn read(&self) -> (u64, Option<String>) {
        // ORDERING: pairs with the Release in `set`.
        let len = self.len.load(Ordering::Acquire);
        let id = self.id.load(Ordering::Relaxed);
        if len == UNNAMED {
            return (id, None);
        }
        let mut bytes = [0u8; NAME_CAPACITY];
        for (word, chunk) in self.name.iter().zip(bytes.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        let len = (len as usize).min(NAME_CAPACITY);
        (
            id,
            Some(String::from_utf8_lossy(&bytes[..len]).into_owned()),
        )
    }
}

/// If `addr` lies in the guard area of a slot of ours, the header of that slot.
fn guard_hit(addr: usize) -> Option<&'static SlotHeader> {
    // ORDERING: Acquire pairs with the Release in `publish_region`.
    let count = REGION_COUNT.load(Ordering::Acquire);
    for entry in &REGIONS[..count] {
        let start = entry.start.load(Ordering::Relaxed);
        let len = entry.len.load(Ordering::Relaxed);
        let slot_size = entry.slot_size.load(Ordering::Relaxed);
        if addr < start || addr - start >= len || slot_size == 0 {
            continue;
        }
        let slot = start + (addr - start) / slot_size * slot_size;
        if addr - slot >= GUARD_SIZE {
            return None; // ours, but not a guard: some other bug; let the chain handle it
        }
        let header = slot + slot_size - HEADER_SIZE;
        // SAFETY: `header` is the 64-byte-aligned top of a slot inside a published region, which
        // is mapped read-write for the life of the process (regions are never unmapped, headers
        // are never guards); `SlotHeader` is all atomics, valid for any bit pattern.
        return Some(unsafe { &*(header as *const SlotHeader) });
    }
    None
}

fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: write(2) reads `bytes.len()` bytes from a live slice; async-signal-safe.
        let n = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return; // nothing sensible to do about a broken stderr; we are about to abort
        }
        bytes = &bytes[n as usize..];
    }
}

/// Writes `green thread '<name>' has overflowed its stack\n` with `write(2)` only.
fn report(header: &SlotHeader) {
    // ORDERING: pairs with the Release in `SlotHeader::set`.
    let len = header.len.load(Ordering::Acquire);
    let id = header.id.load(Ordering::Relaxed);
    write_all(b"green thread '");
    if len == UNNAMED {
        write_all(b"<unnamed #");
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = id;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        write_all(&digits[i..]);
        write_all(b">");
    } else {
        let mut bytes = [0u8; NAME_CAPACITY];
        for (word, chunk) in header.name.iter().zip(bytes.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        write_all(&bytes[..(len as usize).min(NAME_CAPACITY)]);
    }
    write_all(b"' has overflowed its stack\n");
}

/// The handlers that were installed before ours, indexed by [`slot_of`].
static PREVIOUS: [OnceLock<libc::sigaction>; 2] = [OnceLock::new(), OnceLock::new()];

fn slot_of(signal: libc::c_int) -> usize {
    usize::from(signal == libc::SIGBUS)
}

extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t, whose `si_code` is always
    // set.
    let code = unsafe { (*info).si_code };
    // A positive `si_code` means the kernel raised the signal for a fault, and only then is
    // `si_addr` a fault address; a signal sent by a process (`kill`, `raise`, `sigqueue`) has
    // `si_code <= 0` and no address to look at.
    let fault = code > 0;
    if fault {
        // SAFETY: for a kernel-raised SIGSEGV/SIGBUS, `si_addr` is the union member it filled in.
        let addr = unsafe { (*info).si_addr() } as usize;
        if let Some(header) = guard_hit(addr) {
            report(header);
            // SAFETY: abort(3) is async-signal-safe and has no preconditions.
            unsafe { libc::abort() };
        }
    }
    match PREVIOUS[slot_of(signal)].get() {
        Some(prev) if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN => {
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO set, the previous installer stored a three-argument
                // handler in `sa_sigaction`; we call it exactly as the kernel would have.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(prev.sa_sigaction) };
                f(signal, info, context);
            } else {
                // SAFETY: without SA_SIGINFO, `sa_sigaction` holds a one-argument handler.
                let f: extern "C" fn(libc::c_int) =
                    unsafe { std::mem::transmute(prev.sa_sigaction) };
                f(signal);
            }
        }
        _ => {
            // Default (or ignored, which for a fault would loop): restore SIG_DFL and return;
            // the faulting instruction runs again and the default action kills the process. A
            // sent signal has no faulting instruction to run again: send it again ourselves (it
            // is blocked until this handler returns, then the default action applies).
            // SAFETY: an all-zero sigaction is a valid SIG_DFL disposition; sigaction(2) and
            // raise(3) are async-signal-safe.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &dfl, std::ptr::null_mut());
                if !fault {
                    libc::raise(signal);
                }
            }
        }
    }
}

/// Installs the SIGSEGV/SIGBUS handler, once per process.
pub(super) fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: sigaction(2) with a null new action only reads the current one into a
            // zeroed, correctly sized struct.
            let prev = unsafe {
                let mut prev: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut prev);
                prev
            };
            // Stored before ours is installed, so the handler always finds it.
            let _ = PREVIOUS[slot_of(signal)].set(prev);
            // SAFETY: installs `on_fault`, a three-argument handler, with SA_SIGINFO; the struct
            // is fully initialised (zeroed mask, no restorer: libc supplies its own).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    on_fault;
                action.sa_sigaction = handler as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let rc = libc::sigaction(signal, &action, std::ptr::null_mut());
                debug_assert_eq!(rc, 0);
            }
        }
    });
}

/// Size of the signal stacks we allocate (usable bytes, above one guard page).
pub(super) const ALT_STACK_SIZE: usize = 64 * 1024;

/// A signal stack this module allocated for the current thread; unmapped at thread exit.
struct AltStack {
    checked: Cell<bool>,
    map: Cell<usize>,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let map = self.map.get();
        if map == 0 {
            return;
        }
        let page = sys::page_size();
        // SAFETY: reads the current signal stack and disables it if it is ours; after that no
        // signal can be delivered onto our mapping (if the thread now uses another signal stack,
        // someone replaced ours and we must leave theirs alone), so unmapping it is sound. `map`
        // was returned by mmap with exactly `page + ALT_STACK_SIZE` bytes.
        unsafe {
            let mut current: libc::stack_t = std::mem::zeroed();
            libc::sigaltstack(std::ptr::null(), &mut current);
            let ours = current.ss_sp as usize == map + page;
            if ours && current.ss_flags & libc::SS_DISABLE == 0 {
                let disable = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&disable, std::ptr::null_mut());
            }
            // Unmap unless the thread runs on our stack right now (it never should at exit).
            if current.ss_flags & libc::SS_ONSTACK == 0 {
                libc::munmap(map as *mut _, page + ALT_STACK_SIZE);
            }
        }
    }
}

thread_local! {
    static ALT_STACK: AltStack = const { AltStack { checked: Cell::new(false), map: Cell::new(0) } };
}

/// See [`super::ensure_signal_stack`].
pub(super) fn ensure_signal_stack() {
    install_handler();
    let _ = ALT_STACK.try_with(|alt| {
        if alt.checked.replace(true) {
            return;
        }
        // SAFETY: sigaltstack(2) with a null new stack only reads the current one.
        let current = unsafe {
            let mut current: libc::stack_t = std::mem::zeroed();
            libc::sigaltstack(std::ptr::null(), &mut current);
            current
        };
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return; // the thread has one already (std gives one to the threads it spawns)
        }
        let page = sys::page_size();
        let len = page + ALT_STACK_SIZE;
        // SAFETY: a fresh private anonymous mapping touches no existing memory.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            tracing::warn!(
                "cannot allocate a signal stack ({}); a green thread stack overflow on this \
                 thread will kill the process without naming the green thread",
                std::io::Error::last_os_error()
            );
            return;
        }
        // SAFETY: the low page of our own fresh mapping becomes the signal stack's guard; one
        // VMA split per thread. Failure only loses the guard, so it is ignored.
        unsafe { libc::mprotect(map, page, libc::PROT_NONE) };
        let stack = libc::stack_t {
            ss_sp: (map as usize + page) as *mut _,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: `stack` describes memory we own until `AltStack::drop` disables it.
        let rc = unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) };
        if rc == 0 {
            alt.map.set(map as usize);
        } else {
            // SAFETY: not installed, so nobody else refers to the mapping.
            unsafe { libc::munmap(map, len) };
        }
    });
}
