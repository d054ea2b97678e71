use std::process::{Command, Output};

use corosensei::stack::Stack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::sys::SYSCALLS;
use super::*;

/// Set in a child process to the name of the test that should do the dangerous thing.
const CHILD_ENV: &str = "FILATURE_STACK_TEST_CHILD";

fn in_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

/// Re-runs this test binary with only `test` selected, in "child" mode.
fn run_child(test: &str) -> Output {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .output()
        .expect("spawn the test binary")
}

fn syscalls() -> u64 {
    SYSCALLS.with(|c| c.get())
}

/// Pages of `[addr, addr + len)` that are resident, per `mincore`.
fn resident(addr: usize, len: usize) -> Vec<bool> {
    let page = sys::page_size();
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: mincore only writes one byte per page of the range into `vec`, which is that long.
    let rc = unsafe { libc::mincore(addr as *mut _, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().map(|b| b & 1 == 1).collect()
}

/// Writes one byte in each page of `[base - len, base)` of a stack nobody runs on.
fn touch_below_base(stack: &GreenStack, len: usize) {
    let base = stack.base().get();
    for offset in (1..=len).step_by(sys::page_size()) {
        // SAFETY: the range is inside the usable part of a stack we own and no coroutine runs on.
        unsafe { std::ptr::write_volatile((base - offset) as *mut u8, 0xa5) };
    }
}

fn usable_start(stack: &GreenStack) -> usize {
    stack.limit().get() + GUARD_SIZE
}

#[test]
fn a_dropped_stack_is_reused_on_the_same_thread() {
    let first = GreenStack::new(64 * 1024).unwrap();
    let limit = first.limit();
    drop(first);
    let second = GreenStack::new(64 * 1024).unwrap();
    assert_eq!(
        second.limit(),
        limit,
        "the hot cache hands back the warmest stack"
    );
    // A different size never gets that slot.
    let other = GreenStack::new(128 * 1024).unwrap();
    assert_ne!(other.limit(), limit);
}

#[test]
fn stacks_are_disjoint_aligned_and_big_enough() {
    let sizes = [1, 4096, 16 * 1024, 100_000, DEFAULT_STACK_SIZE, 1 << 20];
    let stacks: Vec<(usize, GreenStack)> = (0..60)
        .map(|i| {
            let size = sizes[i % sizes.len()];
            (size, GreenStack::new(size).unwrap())
        })
        .collect();
    for (size, stack) in &stacks {
        assert!(stack.usable_size() >= *size);
        assert!(stack.usable_size() >= MIN_STACK_SIZE);
        assert_eq!(
            stack.base().get() - usable_start(stack),
            stack.usable_size()
        );
        assert_eq!(stack.base().get() % 16, 0);
        assert_eq!(stack.limit().get() % sys::page_size(), 0);
    }
    let mut ranges: Vec<(usize, usize)> = stacks
        .iter()
        .map(|(_, s)| (s.limit().get(), s.base().get() + HEADER_SIZE))
        .collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap: {:x?}", pair);
    }
}

#[test]
fn the_whole_usable_range_is_writable() {
    let stack = GreenStack::new(DEFAULT_STACK_SIZE).unwrap();
    let (start, len) = (usable_start(&stack), stack.usable_size());
    // SAFETY: `[start, start + len)` is the usable part of a stack we own; nothing runs on it.
    let bytes = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    assert!(bytes.iter().enumerate().all(|(i, b)| *b == i as u8));
}

fn recurse(depth: u32) -> u64 {
    let frame = std::hint::black_box([depth as u8; 256]);
    if depth == 0 {
        return u64::from(frame[0]);
    }
    recurse(depth - 1) + u64::from(std::hint::black_box(frame)[255]) + 1
}

#[test]
fn a_coroutine_recurses_on_a_green_stack_and_returns() {
    let stack = GreenStack::new(DEFAULT_STACK_SIZE).unwrap();
    let mut coroutine = Coroutine::with_stack(stack, |yielder, depth: u32| {
        let halfway = recurse(depth / 2);
        let again: u32 = yielder.suspend(halfway);
        recurse(again)
    });
    // 100 frames of > 256 bytes each (over a KiB each in debug builds).
    match coroutine.resume(100) {
        CoroutineResult::Yield(n) => assert_eq!(n, (1..=50).map(|d| u64::from(d as u8) + 1).sum()),
        CoroutineResult::Return(_) => panic!("returned early"),
    }
    match coroutine.resume(100) {
        CoroutineResult::Return(n) => {
            assert_eq!(n, (1..=100).map(|d| u64::from(d as u8) + 1).sum())
        }
        CoroutineResult::Yield(_) => panic!("yielded twice"),
    }
    assert!(coroutine.done());
}

#[test]
fn spawning_and_joining_in_a_loop_makes_no_syscalls() {
    // Warm up: carve the slot and create this thread's cache entry.
    drop(GreenStack::new(DEFAULT_STACK_SIZE).unwrap());
    let before = syscalls();
    for i in 0..1000u32 {
        let mut stack = GreenStack::new(DEFAULT_STACK_SIZE).unwrap();
        stack.label(u64::from(i), Some("loop"));
        let mut coroutine =
            Coroutine::with_stack(stack, |_: &Yielder<u32, ()>, n: u32| recurse(n % 50));
        assert!(matches!(coroutine.resume(i), CoroutineResult::Return(_)));
    }
    assert_eq!(syscalls() - before, 0);
}

#[test]
fn labels_are_kept_and_truncated_at_a_char_boundary() {
    let mut stack = GreenStack::new(MIN_STACK_SIZE).unwrap();
    assert_eq!(stack.header().read(), (0, None), "a fresh stack is unnamed");
    stack.label(7, Some("worker"));
    assert_eq!(stack.header().read(), (7, Some("worker".to_owned())));
    let long = format!("{}é-tail", "x".repeat(signal::NAME_CAPACITY - 1));
    stack.label(8, Some(&long));
    let (id, name) = stack.header().read();
    assert_eq!(id, 8);
    assert_eq!(name.unwrap(), "x".repeat(signal::NAME_CAPACITY - 1));
    stack.label(9, None);
    drop(stack);
    let stack = GreenStack::new(MIN_STACK_SIZE).unwrap();
    assert_eq!(
        stack.header().read(),
        (0, None),
        "a reused stack forgets its label"
    );
}

#[test]
fn trimming_leaves_only_the_top_page_resident() {
    let page = sys::page_size();
    let stack = GreenStack::new(DEFAULT_STACK_SIZE).unwrap();
    touch_below_base(&stack, 64 * 1024);
    let (start, len) = (usable_start(&stack), stack.usable_size() + HEADER_SIZE);
    let touched = resident(start, len).iter().filter(|r| **r).count();
    assert!(
        touched >= 64 * 1024 / page,
        "only {touched} pages resident after touching 64 KiB"
    );
    drop(stack);
    trim_thread_cache();
    let after = resident(start, len);
    assert_eq!(after.iter().filter(|r| **r).count(), 1, "{after:?}");
    assert!(after[after.len() - 1], "the top page stays");
    // A second trim has nothing to do.
    let before = syscalls();
    trim_thread_cache();
    assert_eq!(syscalls() - before, 0);
}

#[test]
fn a_stack_that_overflows_the_hot_cache_gives_back_its_pages() {
    let size = 96 * 1024; // a size no other test uses, so this thread's cache starts empty
    let stacks: Vec<GreenStack> = (0..=HOT_CAPACITY)
        .map(|_| GreenStack::new(size).unwrap())
        .collect();
    for stack in &stacks {
        touch_below_base(stack, 32 * 1024);
    }
    let last = stacks.last().unwrap();
    let (start, len) = (usable_start(last), last.usable_size() + HEADER_SIZE);
    drop(stacks); // the first HOT_CAPACITY fill the cache; the last goes to the shared list
    let resident = resident(start, len).iter().filter(|r| **r).count();
    assert_eq!(resident, 1);
}

#[test]
fn stacks_may_be_dropped_on_another_thread() {
    let stacks: Vec<GreenStack> = (0..40)
        .map(|_| GreenStack::new(MIN_STACK_SIZE).unwrap())
        .collect();
    let limits: Vec<usize> = stacks.iter().map(|s| s.limit().get()).collect();
    std::thread::spawn(move || drop(stacks)).join().unwrap();
    // The other thread's cache went to the shared list when it exited: all 40 are reusable.
    let again: Vec<GreenStack> = (0..40)
        .map(|_| GreenStack::new(MIN_STACK_SIZE).unwrap())
        .collect();
    let reused = again
        .iter()
        .filter(|s| limits.contains(&s.limit().get()))
        .count();
    assert!(
        reused > 0,
        "no stack came back from the exited thread's cache"
    );
    let stats = stats();
    assert!(stats.slots_in_use >= 40);
    assert!(stats.regions >= 1);
    assert!(stats.slots_carved >= stats.slots_in_use);
}

/// Recurses until the guard stops it.
fn recurse_forever(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 512]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse_forever(depth + 1) + u64::from(std::hint::black_box(frame)[511])
}

/// Turns off the signal stack std gave this thread, so `ensure_signal_stack` must make one.
fn disable_signal_stack() {
    let disable = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: only disables the thread's signal stack (std's mapping stays, unused).
    let rc = unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
}

fn current_signal_stack() -> libc::stack_t {
    // SAFETY: sigaltstack with a null new stack only reads the current one.
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut current);
        current
    }
}

#[test]
fn ensure_signal_stack_gives_a_thread_one_once() {
    std::thread::spawn(|| {
        disable_signal_stack();
        assert_ne!(current_signal_stack().ss_flags & libc::SS_DISABLE, 0);
        ensure_signal_stack();
        let first = current_signal_stack();
        assert_eq!(first.ss_flags & libc::SS_DISABLE, 0);
        assert_eq!(first.ss_size, signal::ALT_STACK_SIZE);
        ensure_signal_stack();
        assert_eq!(current_signal_stack().ss_sp, first.ss_sp, "idempotent");
    })
    .join()
    .unwrap();
    // A thread that has one keeps it.
    std::thread::spawn(|| {
        let before = current_signal_stack();
        ensure_signal_stack();
        assert_eq!(current_signal_stack().ss_sp, before.ss_sp);
    })
    .join()
    .unwrap();
}

fn overflow_in_child(name: Option<&str>) {
    overflow_in_child_after(name, 0);
}

/// Overflows a stack taken after `before` others of the same size (kept alive), so the one that
/// overflows can come from the middle of a carved batch.
fn overflow_in_child_after(name: Option<&str>, before: usize) {
    if name.is_some() {
        disable_signal_stack(); // exercise the signal stack we allocate, not std's
    }
    ensure_signal_stack();
    let others: Vec<GreenStack> = (0..before)
        .map(|_| GreenStack::new(64 * 1024).unwrap())
        .collect();
    let mut stack = GreenStack::new(64 * 1024).unwrap();
    if before > 0 {
        let previous = others.last().unwrap().limit().get();
        assert_eq!(
            stack.limit().get(),
            previous + slot_size_for(64 * 1024).unwrap(),
            "slots of a batch are handed out in address order"
        );
    }
    std::mem::forget(others);
    stack.label(42, name);
    let mut coroutine = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| recurse_forever(0));
    coroutine.resume(());
    unreachable!("the coroutine returned from infinite recursion");
}

fn assert_died_of_overflow(output: &Output, message: &str) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}, stderr:\n{stderr}",
        output.status
    );
    assert!(stderr.contains(message), "stderr:\n{stderr}");
}

#[test]
fn an_overflow_names_the_green_thread_and_aborts() {
    const TEST: &str = "green::stack::tests::an_overflow_names_the_green_thread_and_aborts";
    if in_child(TEST) {
        overflow_in_child(Some("deep-recursion"));
    }
    let output = run_child(TEST);
    assert_died_of_overflow(
        &output,
        "green thread 'deep-recursion' has overflowed its stack\n",
    );
}

#[test]
fn an_overflow_of_an_unnamed_green_thread_prints_its_id() {
    const TEST: &str = "green::stack::tests::an_overflow_of_an_unnamed_green_thread_prints_its_id";
    if in_child(TEST) {
        overflow_in_child(None);
    }
    let output = run_child(TEST);
    assert_died_of_overflow(
        &output,
        "green thread '<unnamed #42>' has overflowed its stack\n",
    );
}

#[test]
fn an_overflow_in_the_middle_of_a_carved_batch_is_caught() {
    const TEST: &str = "green::stack::tests::an_overflow_in_the_middle_of_a_carved_batch_is_caught";
    if in_child(TEST) {
        // The first slot is carved alone (it decides the guard mode), the next MAX_BATCH in one
        // batch, and this one is the third of the batch after that.
        overflow_in_child_after(Some("batched"), sys::MAX_BATCH + 3);
    }
    let output = run_child(TEST);
    assert_died_of_overflow(&output, "green thread 'batched' has overflowed its stack\n");
}

#[test]
fn guards_made_one_madvise_at_a_time_catch_an_overflow_too() {
    const TEST: &str =
        "green::stack::tests::guards_made_one_madvise_at_a_time_catch_an_overflow_too";
    if in_child(TEST) {
        sys::disable_batching(); // as on a kernel without process_madvise(PIDFD_SELF)
        overflow_in_child_after(Some("unbatched"), sys::MAX_BATCH + 3);
    }
    let output = run_child(TEST);
    assert_died_of_overflow(
        &output,
        "green thread 'unbatched' has overflowed its stack\n",
    );
}

#[test]
fn a_carved_batch_costs_two_syscalls_and_leaves_its_top_pages_resident() {
    let size = 80 * 1024; // a size no other test uses
    let slot_size = slot_size_for(size).unwrap();
    let mut stacks = vec![GreenStack::new(size).unwrap()]; // decides the guard mode if need be
    if stats().guard_mode != GuardMode::GuardInstall || !sys::batching() {
        return; // carved one at a time: mprotect guards, or no process_madvise here
    }
    // Use up what is left of the batch that first stack came from, if any.
    while !ARENA.lock().class(slot_size).free.is_empty() {
        stacks.push(GreenStack::new(size).unwrap());
    }
    let before = syscalls();
    stacks.push(GreenStack::new(size).unwrap());
    assert_eq!(
        syscalls() - before,
        2,
        "one guard call and one prefault call carve a batch"
    );
    let first = stacks.last().unwrap().limit().get();
    let page = sys::page_size();
    let pooled = ARENA.lock().class(slot_size).free.clone();
    assert!(!pooled.is_empty());
    for slot in pooled {
        assert!(slot > first && (slot - first) % slot_size == 0);
        let top = slot + slot_size - page;
        assert!(resident(top, page)[0], "top page of pooled slot {slot:#x}");
        assert!(!resident(slot + GUARD_SIZE, page)[0], "only the top page");
    }
}

#[test]
#[cfg_attr(
    feature = "sanitizer",
    ignore = "under ASan the previous handler is ASan's, which reports the fault and exits 1"
)]
fn a_fault_outside_our_guards_is_left_to_the_previous_handler() {
    use std::os::unix::process::ExitStatusExt;
    const TEST: &str =
        "green::stack::tests::a_fault_outside_our_guards_is_left_to_the_previous_handler";
    if in_child(TEST) {
        ensure_signal_stack();
        let _stack = GreenStack::new(MIN_STACK_SIZE).unwrap();
        // SAFETY: not safe at all: this child process exists to die of this SIGSEGV.
        unsafe { std::ptr::write_volatile(16 as *mut u8, 1) };
        unreachable!("wrote to address 16");
    }
    let output = run_child(TEST);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSEGV),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("overflowed"), "stderr:\n{stderr}");
}

/// A SIGSEGV sent by a process carries no fault address: even one whose `si_addr` bytes point
/// into a guard page (here crafted with `rt_sigqueueinfo`, `si_code = SI_QUEUE`) is not reported
/// as an overflow; it goes to the previous handler.
#[test]
#[cfg_attr(
    feature = "sanitizer",
    ignore = "under ASan the previous handler is ASan's, which reports the signal and exits 1"
)]
fn a_sent_signal_pointing_into_a_guard_is_not_an_overflow() {
    use std::os::unix::process::ExitStatusExt;
    const TEST: &str =
        "green::stack::tests::a_sent_signal_pointing_into_a_guard_is_not_an_overflow";
    if in_child(TEST) {
        ensure_signal_stack();
        let mut stack = GreenStack::new(64 * 1024).unwrap();
        stack.label(7, Some("victim"));
        let guard = stack.limit().get() + 16;
        // SAFETY: an all-zero siginfo_t is a valid bit pattern; we fill in the fields the kernel
        // reads for rt_sigqueueinfo (signo, code) and, at offset 16 (the union where `si_addr`
        // lives for SIGSEGV), the guard address.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        info.si_signo = libc::SIGSEGV;
        info.si_code = -1; // SI_QUEUE: sent by a process, not raised by a fault
                           // SAFETY: siginfo_t is 128 bytes; offset 16 is inside it and 8-byte aligned.
        unsafe {
            let p = (&mut info as *mut libc::siginfo_t).cast::<u8>().add(16);
            std::ptr::write(p.cast::<u64>(), guard as u64);
        }
        assert_eq!(info.si_code, -1);
        // SAFETY: rt_sigqueueinfo to our own process with a fully initialised siginfo_t.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigqueueinfo,
                libc::getpid(),
                libc::SIGSEGV,
                &info as *const libc::siginfo_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "rt_sigqueueinfo: {}",
            std::io::Error::last_os_error()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(stack);
        return;
    }
    let output = run_child(TEST);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("overflowed"), "stderr:\n{stderr}");
    assert_ne!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "stderr:\n{stderr}"
    );
}

#[test]
fn mprotect_guards_report_the_map_count_ceiling_as_an_error() {
    const TEST: &str =
        "green::stack::tests::mprotect_guards_report_the_map_count_ceiling_as_an_error";
    if in_child(TEST) {
        force_mprotect_guards();
        println!("child: allocating");
        let mut stacks = Vec::with_capacity(200_000);
        let error = loop {
            match GreenStack::new(MIN_STACK_SIZE) {
                Ok(stack) => stacks.push(stack),
                Err(error) => break error,
            }
            assert!(stacks.len() < 200_000, "no ceiling reached");
        };
        let mode = stats().guard_mode;
        println!(
            "count={} mode={mode:?} kind={:?} message={error}",
            stacks.len(),
            error.kind()
        );
        std::process::exit(0);
    }
    let output = run_child(TEST);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("count="))
        .expect("a result line");
    let count: usize = line["count=".len()..line.find(' ').unwrap()]
        .parse()
        .unwrap();
    assert!(line.contains("mode=Mprotect"), "{line}");
    assert!(line.contains("kind=MapCountExceeded"), "{line}");
    assert!(line.contains("vm.max_map_count"), "{line}");
    let max = sys::max_map_count().unwrap() as usize;
    // About two mappings per stack, less what the process had mapped before.
    assert!(
        count > max / 2 - 2000 && count <= max / 2,
        "count {count} for max_map_count {max}"
    );
}

/// Manual check (not run by default): 200k stacks with their top page touched.
/// `cargo test -p filature --lib green::stack::tests::many_parked_stacks -- --ignored --nocapture`
#[test]
#[ignore]
fn many_parked_stacks() {
    fn maps() -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    }
    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
            * sys::page_size()
    }
    /// Page tables (not part of RSS): guard markers and top pages need PTE pages.
    fn page_table_bytes() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmPTE:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
            * 1024
    }
    const N: usize = 200_000;
    let mut stacks = Vec::with_capacity(N);
    let (maps_before, rss_before, pte_before) = (maps(), rss_bytes(), page_table_bytes());
    let started = std::time::Instant::now();
    for i in 0..N {
        let mut stack = GreenStack::new(DEFAULT_STACK_SIZE).unwrap();
        stack.label(i as u64, Some("parked"));
        touch_below_base(&stack, 256); // what a parked green thread's frames would touch
        stacks.push(stack);
    }
    let elapsed = started.elapsed();
    let (maps_after, rss_after, pte_after) = (maps(), rss_bytes(), page_table_bytes());
    println!(
        "{N} stacks in {elapsed:?}: maps {maps_before} -> {maps_after}, RSS {} -> {} MiB \
         ({} bytes/stack), page tables +{} bytes/stack, {:?}",
        rss_before >> 20,
        rss_after >> 20,
        (rss_after - rss_before) / N,
        (pte_after - pte_before) / N,
        stats()
    );
    assert!(maps_after - maps_before < 100);
    assert!((rss_after - rss_before) / N < 4608);
}

#[test]
fn impossible_sizes_are_errors_that_say_what_to_do() {
    let error = GreenStack::new(usize::MAX).unwrap_err();
    assert_eq!(error.kind(), StackErrorKind::TooLarge);
    assert!(error.to_string().contains("smaller stack_size"), "{error}");

    // 128 TiB is the whole user address space on x86_64 with 4-level page tables.
    let error = GreenStack::new(1 << 47).unwrap_err();
    assert!(error.is_out_of_address_space(), "{error:?}");
    assert!(
        error.to_string().contains("fewer live green threads"),
        "{error}"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "the OS error is kept"
    );
}

#[test]
fn threads_sharing_the_pool_never_get_the_same_stack_twice() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 500;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| std::sync::mpsc::channel::<GreenStack>())
        .unzip();
    let workers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(me, inbox)| {
            let next = senders[(me + 1) % THREADS].clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for round in 0..ROUNDS {
                    // Mark a fresh stack as ours; a stack handed out twice would show a stranger's mark.
                    let stack = GreenStack::new(40 * 1024).unwrap();
                    let mark = ((me as u64) << 32) | round as u64;
                    let word = (stack.base().get() - 8) as *mut u64;
                    // SAFETY: the top usable word of a stack we own; nothing runs on it.
                    unsafe { word.write_volatile(mark) };
                    held.push((stack, mark));
                    if round % 3 == 0 {
                        let (stack, _) = held.swap_remove(0);
                        // Dropped on the next thread (or here, in the SendError, if it has finished).
                        let _ = next.send(stack);
                    }
                    while let Ok(stack) = inbox.try_recv() {
                        drop(stack);
                    }
                    if held.len() > 8 {
                        for (stack, mark) in held.drain(..4) {
                            let word = (stack.base().get() - 8) as *const u64;
                            // SAFETY: as above.
                            assert_eq!(unsafe { word.read_volatile() }, mark);
                        }
                    }
                }
                for (stack, mark) in held {
                    let word = (stack.base().get() - 8) as *const u64;
                    // SAFETY: as above.
                    assert_eq!(unsafe { word.read_volatile() }, mark);
                }
            })
        })
        .collect();
    drop(senders);
    for worker in workers {
        worker.join().unwrap();
    }
}
