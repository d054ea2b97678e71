//! Thread-exit hooks: how an unscoped thread's green threads are unwound before its thread-locals
//! are destroyed (the argument is in the hub module's docs, "Thread exit").
//!
//! # Invariants
//!
//! * A hook is registered with glibc's `__cxa_thread_atexit_impl`, the function std itself uses
//!   for every `thread_local!` destructor, so hooks and thread-local destructors share one list,
//!   run newest first when the thread exits (also for `main`, from `exit`). A hook registered
//!   while that list is being run (by a thread-local destructor that drives the hub) runs right
//!   after the destructor that registered it.
//! * The hook never unwinds into glibc: a panic out of the shutdown it runs aborts the process
//!   with a message (a green thread's own panics are caught at its boundary and never get here).
//! * The hook owns nothing (its argument is null): it looks the hub up through the core's
//!   thread-local, which is older than every hook and so still alive when any hook runs.
//! * The `dso_symbol` glibc asks for is the hook's own address, so the object that contains the
//!   hook stays loaded until the hook has run.
//!
//! Elsewhere than glibc there is no hook; threads other than scoped ones then fall back on
//! `Core::teardown` (abandon, loudly).

use std::ffi::{c_int, c_void};

/// Registers one thread-exit hook for the calling thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn register_hook() {
    extern "C" {
        fn __cxa_thread_atexit_impl(
            dtor: unsafe extern "C" fn(*mut c_void),
            obj: *mut c_void,
            dso_symbol: *mut c_void,
        ) -> c_int;
    }
    let hook: unsafe extern "C" fn(*mut c_void) = on_thread_exit;
    // SAFETY: glibc (>= 2.18, which every Rust target on glibc requires) defines this function
    // with this signature; std calls it the same way for each thread-local destructor. `hook` is
    // a valid `extern "C"` function for the life of the object that contains it, which the
    // `dso_symbol` argument (an address inside that object) keeps loaded until the hook ran. The
    // argument is null and never dereferenced. glibc allocates the list entry itself; on
    // allocation failure it terminates the process with a message rather than returning.
    let rc = unsafe { __cxa_thread_atexit_impl(hook, std::ptr::null_mut(), hook as *mut c_void) };
    if rc != 0 {
        tracing::error!("could not register a thread-exit hook (error {rc}); use hub::scope");
    }
}

/// No hook elsewhere (see the module docs).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn register_hook() {}

/// Runs at thread exit, from glibc's list of thread-exit destructors.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" fn on_thread_exit(_: *mut c_void) {
    let ran = std::panic::catch_unwind(super::end_of_thread);
    if ran.is_err() {
        eprintln!(
            "filature: the shutdown of a hub at thread exit panicked (see the message above); \
             aborting, since its green threads could outlive the thread's thread-locals"
        );
        std::process::abort();
    }
}

/// Whether the calling thread is the process's main thread (whose thread-locals are destroyed
/// by `exit`, as the process ends).
pub(super) fn is_main_thread() -> bool {
    // SAFETY: getpid and gettid have no preconditions and cannot fail.
    unsafe { libc::getpid() == libc::gettid() }
}

/// A green thread is being abandoned while its stack is lent to a pool job: the job could go on
/// using the thread's thread-locals (or its stack) after they are gone. Nothing sound is left to
/// do but stop the process, saying why.
pub(super) fn abort_lent(hub: &str, greens: &str) -> ! {
    eprintln!(
        "filature: thread '{hub}' is exiting while green thread(s) {greens} have their stacks \
         lent to a pool job (tpool::execute) that is still running; the job could use freed \
         memory, so the process aborts. Run the thread's body in hub::scope, which waits for \
         the job."
    );
    std::process::abort();
}
