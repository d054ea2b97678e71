//! The hub inbox's queue: an unbounded, lock-free, multi-producer single-consumer FIFO that
//! hands its emptied blocks back to the producers instead of freeing them.
//!
//! # Why not crossbeam-channel's list queue
//!
//! That queue (and std's `mpsc`, a port of it) stores items in blocks of 31 slots: a producer
//! allocates each block, the consumer frees it once read. With glibc, a chunk freed by a thread
//! other than the one whose arena it came from goes back under that arena's lock, the lock the
//! producer takes on each of its own allocations that miss its thread cache (every one, for a
//! thread that only allocates). One producer posting boxed jobs to a hub therefore met the hub
//! in that lock every 31 jobs, and `perf` counted a futex wait or wake for about one job in 30
//! (102 k futex calls per 3 M jobs; most of them `malloc` and `_int_free` of a block, see
//! `bench/README.md`, "named"). Here the consumer keeps one emptied block as a spare and the next
//! producer that needs a block takes it: in a steady stream no block is allocated or freed.
//!
//! # Layout
//!
//! Items live in blocks of `BLOCK_CAP` slots, linked through `Block::next`. Producers share the
//! tail: `tail_pos`, a position that only grows (`LAP` = `BLOCK_CAP` + 1 positions per block; the
//! last one is not a slot but means "the next block is being installed"), and `tail_block`, the
//! block of the current lap. The consumer's head (position and block) lives behind a lock taken
//! once per batch ([`Queue::consumer`]): only the hub's thread consumes, and the lock makes a
//! second consumer wait instead of racing (the queue's soundness does not rest on its callers).
//!
//! # Invariants
//!
//! * **A slot has one writer per lap.** A producer owns slot `p % LAP` of the tail block exactly
//!   when its compare-and-swap moves `tail_pos` from `p` to `p + 1`. Positions are never reused,
//!   so a CAS cannot succeed with a block read for another lap (no ABA, recycled blocks
//!   included).
//! * **Position and block agree.** The producer that takes a block's last slot stores the next
//!   block into `tail_block` before it moves `tail_pos` past the "installing" position (Release),
//!   and producers read `tail_pos` before `tail_block` (Acquire): whoever sees a position of the
//!   new lap sees the new block; one who sees the old position with the new block fails its CAS.
//! * **Publication.** An item is published by a Release store of `WRITTEN` to its slot's state;
//!   the consumer reads a slot only after an Acquire load sees it. The producer of a block's last
//!   slot links `Block::next` before it publishes, so the consumer that has read that slot can
//!   follow `next`.
//! * **FIFO.** The consumer takes positions in order and stops at the first slot not published
//!   yet (an item on its way: its producer is between its CAS and its store), so items come out
//!   in the order their producers reserved slots, FIFO per producer.
//! * **Reuse.** Publication is each producer's last access to the block (a producer that lost its
//!   CAS never dereferences the block it read). So when the consumer has read the last slot of a
//!   block, every producer that had a slot in it is done with it and the consumer owns it: it
//!   resets it (states to empty, `next` to null) and offers it as the spare with a Release CAS;
//!   a producer takes the spare with an Acquire swap, so it sees the reset. A block offered while
//!   the spare place is full is kept as the consumer's reserve (offered again at the next block
//!   end), or freed if the reserve is full too. A producer that took a block for its CAS and then
//!   did not need it offers it back the same way (or frees it).

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;

use crossbeam_utils::{Backoff, CachePadded};

use crate::loom::cell::UnsafeCell;
use crate::loom::lock::{Mutex, MutexGuard};
use crate::loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Slots per block: 31 as crossbeam's (a block of the hub's 24-byte messages is 1,000 bytes);
/// 2 under loom, so that a model with a few items crosses blocks and reuses them.
#[cfg(not(loom))]
const BLOCK_CAP: usize = 31;
#[cfg(loom)]
const BLOCK_CAP: usize = 2;
/// Positions per block: its slots and the "next block is being installed" position.
const LAP: usize = BLOCK_CAP + 1;

const EMPTY: usize = 0;
const WRITTEN: usize = 1;

struct Slot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    state: AtomicUsize,
}

struct Block<T> {
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
}

impl<T> Block<T> {
    fn alloc() -> *mut Block<T> {
        Box::into_raw(Box::new(Block {
            next: AtomicPtr::new(ptr::null_mut()),
            slots: std::array::from_fn(|_| Slot {
                value: UnsafeCell::new(MaybeUninit::uninit()),
                state: AtomicUsize::new(EMPTY),
            }),
        }))
    }
}

/// The consumer's end.
struct Head<T> {
    pos: usize,
    /// An atomic only so that `Head` is `Send` without an `unsafe impl`: only the lock holder
    /// touches it (Relaxed).
    block: AtomicPtr<Block<T>>,
    /// An emptied, reset block the producers' spare place had no room for, or null (see
    /// `Consumer::recycle`). An atomic for the same reason.
    reserve: AtomicPtr<Block<T>>,
}

pub(crate) struct Queue<T> {
    tail_pos: CachePadded<AtomicUsize>,
    tail_block: AtomicPtr<Block<T>>,
    /// An emptied, reset block for the next producer that needs one, or null. One, and the
    /// consumer's reserve: with eight spares, or a pool of 32 blocks, one producer posting to a
    /// named thread ran 10-40 % slower, not faster (see `bench/README.md`, "named").
    spare: CachePadded<AtomicPtr<Block<T>>>,
    head: Mutex<Head<T>>,
    /// The queue owns `T`s (for the drop check; `Send`/`Sync` are implemented below).
    _owns: PhantomData<T>,
}

// SAFETY: the queue moves `T`s from the pushing thread to the consuming one and never shares a
// `&T` between threads (a value is written by one producer and read out, by value, by the one
// consumer), as a channel does: `T: Send` is all it needs, for both.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Queue<T> {}

impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        let first = Block::alloc();
        Queue {
            tail_pos: CachePadded::new(AtomicUsize::new(0)),
            tail_block: AtomicPtr::new(first),
            spare: CachePadded::new(AtomicPtr::new(ptr::null_mut())),
            head: Mutex::new(Head {
                pos: 0,
                block: AtomicPtr::new(first),
                reserve: AtomicPtr::new(ptr::null_mut()),
            }),
            _owns: PhantomData,
        }
    }

    /// Appends `value`. Lock-free: one CAS on the tail position in the common case; the producer
    /// that fills a block installs the next one (the spare, or a new allocation).
    pub(crate) fn push(&self, value: T) {
        let backoff = Backoff::new();
        // ORDERING: Acquire, the position before the block (see "Position and block agree").
        let mut pos = self.tail_pos.load(Ordering::Acquire);
        let mut block = self.tail_block.load(Ordering::Acquire);
        let mut next: *mut Block<T> = ptr::null_mut();
        loop {
            let offset = pos % LAP;
            if offset == BLOCK_CAP {
                // Another producer is installing the next block.
                #[cfg(not(loom))]
                backoff.snooze();
                #[cfg(loom)]
                crate::loom::thread::yield_now();
                // ORDERING: as above.
                pos = self.tail_pos.load(Ordering::Acquire);
                block = self.tail_block.load(Ordering::Acquire);
                continue;
            }
            if offset + 1 == BLOCK_CAP && next.is_null() {
                // Get the next block before taking the last slot, so that the "installing"
                // position is held for as short a time as possible.
                next = self.take_block();
            }
            // ORDERING: AcqRel on success (the position's modification order carries the
            // installs' Release to later readers); Acquire on failure, the position before the
            // block as above.
            match self.tail_pos.compare_exchange_weak(
                pos,
                pos + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: our CAS from `pos` succeeded, so `block` is the block of `pos`'s
                    // lap ("Position and block agree") and slot `offset` is ours ("one writer per
                    // lap"). The block stays allocated until the consumer has read that slot
                    // ("Reuse"), which it cannot before we publish below.
                    let block = unsafe { &*block };
                    if offset + 1 == BLOCK_CAP {
                        // ORDERING: Release: the block before the position that reveals it.
                        self.tail_block.store(next, Ordering::Release);
                        self.tail_pos.fetch_add(1, Ordering::Release);
                        // ORDERING: Release, published before our slot (see "Publication").
                        block.next.store(next, Ordering::Release);
                        next = ptr::null_mut();
                    }
                    let slot = &block.slots[offset];
                    // SAFETY: the slot is ours and empty: the consumer does not touch it until
                    // it sees `WRITTEN`, and a reused block's slots were reset before reuse.
                    slot.value
                        .with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
                    // ORDERING: Release publishes the value (and `next`, for the last slot).
                    slot.state.store(WRITTEN, Ordering::Release);
                    if !next.is_null() {
                        if let Err(next) = self.offer_block(next) {
                            free_block(next);
                        }
                    }
                    return;
                }
                Err(seen) => {
                    pos = seen;
                    // ORDERING: as above.
                    block = self.tail_block.load(Ordering::Acquire);
                    backoff.spin();
                }
            }
        }
    }

    /// The spare block, or a new one. Either is empty and owned by the caller.
    fn take_block(&self) -> *mut Block<T> {
        // ORDERING: Relaxed: a look before the swap, which is what takes the block.
        if !self.spare.load(Ordering::Relaxed).is_null() {
            // ORDERING: Acquire pairs with the Release in `offer_block`: the reset is visible.
            let block = self.spare.swap(ptr::null_mut(), Ordering::Acquire);
            if !block.is_null() {
                return block;
            }
        }
        Block::alloc()
    }

    /// Makes `block` (empty, reset, owned by the caller) the spare; hands it back if there is one.
    fn offer_block(&self, block: *mut Block<T>) -> Result<(), *mut Block<T>> {
        // ORDERING: Release publishes the reset to the producer that takes it.
        self.spare
            .compare_exchange(ptr::null_mut(), block, Ordering::Release, Ordering::Relaxed)
            .map(drop)
            .map_err(|_| block)
    }

    /// The consumer's end, for one batch of pops. Blocks while another thread holds it (only the
    /// hub's thread consumes, so it never does in practice).
    pub(crate) fn consumer(&self) -> Consumer<'_, T> {
        Consumer {
            queue: self,
            head: self.head.lock(),
        }
    }
}

pub(crate) struct Consumer<'a, T> {
    queue: &'a Queue<T>,
    head: MutexGuard<'a, Head<T>>,
}

impl<T> Consumer<'_, T> {
    /// Takes the oldest item, or `None` if the queue is empty or its oldest item is still on its
    /// way (reserved by a producer that has not published it yet).
    pub(crate) fn pop(&mut self) -> Option<T> {
        let offset = self.head.pos % LAP;
        debug_assert!(offset < BLOCK_CAP, "the head skips the installing position");
        // ORDERING: Relaxed: only the lock holder reads or writes it.
        let block_ptr = self.head.block.load(Ordering::Relaxed);
        // SAFETY: the head block is allocated until the consumer (the lock holder: us) hands it
        // on, after it has read its last slot; producers never free blocks.
        let block = unsafe { &*block_ptr };
        let slot = &block.slots[offset];
        // ORDERING: Acquire pairs with the producer's Release: the value (and `next`) are visible.
        if slot.state.load(Ordering::Acquire) != WRITTEN {
            return None;
        }
        // SAFETY: the slot is published (`WRITTEN`), so it holds an initialised value, and it is
        // read out exactly once: the head moves past it below, and the slot is reset before the
        // block is reused.
        let value = slot.value.with_mut(|p| unsafe { p.read().assume_init() });
        if offset + 1 == BLOCK_CAP {
            // ORDERING: Relaxed: ordered by the slot's Acquire above (see "Publication").
            let next = block.next.load(Ordering::Relaxed);
            debug_assert!(
                !next.is_null(),
                "the last slot's producer links the next block"
            );
            self.head.block.store(next, Ordering::Relaxed);
            self.head.pos += 2; // past the installing position
                                // Every producer with a slot in `block` has published it, its last access ("Reuse"):
                                // the block is ours. Reset it for its next lap.
            for slot in &block.slots {
                // ORDERING: Relaxed: published by `offer_block`'s Release.
                slot.state.store(EMPTY, Ordering::Relaxed);
            }
            block.next.store(ptr::null_mut(), Ordering::Relaxed);
            self.recycle(block_ptr);
        } else {
            self.head.pos += 1;
        }
        Some(value)
    }
}

impl<T> Consumer<'_, T> {
    /// Hands an emptied, reset block back: as the producers' spare if that place is free (after
    /// the reserve, which is older), else as the consumer's reserve, else to the allocator. The
    /// reserve covers a queue that runs a block or two deep: the hub then empties two blocks
    /// between two installs, and without it every second block went back to the allocator and
    /// a new one came from it.
    fn recycle(&mut self, block: *mut Block<T>) {
        // ORDERING: Relaxed: only the lock holder touches the reserve.
        let reserve = self.head.reserve.load(Ordering::Relaxed);
        if !reserve.is_null() && self.queue.offer_block(reserve).is_ok() {
            self.head.reserve.store(block, Ordering::Relaxed);
            return;
        }
        let Err(block) = self.queue.offer_block(block) else {
            return;
        };
        if reserve.is_null() {
            self.head.reserve.store(block, Ordering::Relaxed);
        } else {
            free_block(block);
        }
    }
}

/// Frees an empty block (from `Block::alloc`, owned by the caller, never used again).
fn free_block<T>(block: *mut Block<T>) {
    // SAFETY: the caller owns `block`, which came from `Block::alloc` (`Box::into_raw`) and which
    // no other pointer will be used to reach again; all its slots are empty (no value is dropped,
    // none leaked: `MaybeUninit` does not drop).
    drop(unsafe { Box::from_raw(block) });
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // `&mut self`: no producer is left, so every reserved slot was published.
        let mut consumer = self.consumer();
        while consumer.pop().is_some() {}
        // ORDERING: Relaxed: we are the only user left.
        let mut block = consumer.head.block.load(Ordering::Relaxed);
        let reserve = consumer
            .head
            .reserve
            .swap(ptr::null_mut(), Ordering::Relaxed);
        drop(consumer);
        if !reserve.is_null() {
            free_block(reserve);
        }
        while !block.is_null() {
            // SAFETY: every item has been read out, so the head block and any block linked
            // after it (none, in practice) hold no values; each came from `Block::alloc` and is
            // freed once, here.
            let owned = unsafe { Box::from_raw(block) };
            block = owned.next.load(Ordering::Relaxed);
        }
        let spare = self.spare.swap(ptr::null_mut(), Ordering::Relaxed);
        if !spare.is_null() {
            free_block(spare);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_thread_fifo_across_many_blocks_and_reuse() {
        let q = Queue::new();
        for round in 0..50usize {
            for i in 0..(round * 7) {
                q.push(Box::new(i));
            }
            let mut c = q.consumer();
            for i in 0..(round * 7) {
                assert_eq!(c.pop().map(|b| *b), Some(i));
            }
            assert!(c.pop().is_none());
        }
    }

    #[test]
    fn values_left_in_the_queue_are_dropped_with_it() {
        let token = Arc::new(());
        let q = Queue::new();
        for _ in 0..100 {
            q.push(Arc::clone(&token));
        }
        {
            let mut c = q.consumer();
            for _ in 0..40 {
                c.pop().unwrap();
            }
        }
        assert_eq!(Arc::strong_count(&token), 61);
        drop(q);
        assert_eq!(Arc::strong_count(&token), 1);
    }

    #[test]
    fn four_producers_each_in_order_nothing_lost_or_doubled() {
        const PER: usize = 200_000;
        let q = Arc::new(Queue::new());
        let producers: Vec<_> = (0..4usize)
            .map(|p| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..PER {
                        q.push((p, i));
                    }
                })
            })
            .collect();
        let mut next = [0usize; 4];
        let mut got = 0;
        while got < 4 * PER {
            let mut c = q.consumer();
            while let Some((p, i)) = c.pop() {
                assert_eq!(i, next[p], "producer {p} out of order");
                next[p] += 1;
                got += 1;
            }
            drop(c);
            std::thread::yield_now();
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(next, [PER; 4]);
        assert!(q.consumer().pop().is_none());
    }
}
