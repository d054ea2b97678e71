//! Futures on hubs: [`spawn_future`] (current hub, `!Send` allowed), [`HubHandle::spawn_future`]
//! (another hub, `Send`), and the [`FutureHandle`] that waits for the output from any context.
//!
//! # Invariants
//!
//! * A spawned future lives in its hub thread's task table (a thread-local slab: one hub per
//!   thread, so thread-local is hub-local) and is polled only there, never moved, so it may be
//!   `!Send`. Each entry has a generation; a poll request names `(slot, gen)` and is ignored if the
//!   entry is gone or was reused.
//! * Polls run as hub callbacks (the loop's local callback queue, or a posted call when woken from
//!   another thread), so the loop gains no new kind of runnable and its invariants hold as they
//!   are: a poll may not block (a green-blocking call in `poll` panics, as in any callback), a
//!   panic in `poll` is caught and becomes the handle's failure.
//! * The waker (`TaskWaker`, `Send + Sync`) has a `scheduled` flag: only the wake that sets it
//!   queues a poll, so a task is queued at most once however often it is woken. The poll clears
//!   the flag *before* polling, so a wake during the poll queues the next one. A wake on the hub's
//!   thread schedules locally (`call_soon`); from another thread it posts through the inbox. A
//!   wake after the hub closed is dropped: the task is being torn down with it.
//! * The output goes into a [`Oneshot`] shared with the handle. Every task ends by filling it
//!   exactly once: with the output, the panic, `Cancelled` (the handle asked, checked before each
//!   poll) or `Stopped` (the hub shut down, or its thread exited, with the future pending; the
//!   table's `Drop` does it), so a waiter never hangs on a task that cannot finish.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::HubHandle;
use crate::deadline::deadline_after;
use crate::sync::oneshot::Oneshot;
use crate::{Cancelled, Failure, Stopped};

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The type-erased side of a task's shared state that the table needs.
trait Finish {
    fn finish_failed(&self, failure: Failure);
    fn cancel_requested(&self) -> bool;
    fn set_waker(&self, waker: Waker);
}

struct TaskShared<T> {
    out: Oneshot<Result<T, Failure>>,
    cancelled: AtomicBool,
    /// The task's waker, once it is in a table (for `cancel` to schedule a last poll).
    waker: Mutex<Option<Waker>>,
}

impl<T> Finish for TaskShared<T> {
    fn finish_failed(&self, failure: Failure) {
        let _ = self.out.fill(Err(failure));
    }
    fn cancel_requested(&self) -> bool {
        // ORDERING: Acquire pairs with the Release in `FutureHandle::cancel`.
        self.cancelled.load(Ordering::Acquire)
    }
    fn set_waker(&self, waker: Waker) {
        *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(waker);
    }
}

struct Entry {
    gen: u64,
    /// `None` while it is being polled.
    fut: Option<LocalFuture>,
    shared: Arc<dyn Finish>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    next_gen: u64,
}

impl Drop for Table {
    fn drop(&mut self) {
        // The thread is exiting with futures still pending: their handles must not wait forever.
        for e in self.slots.drain(..).flatten() {
            drop(e.fut);
            e.shared.finish_failed(stopped());
        }
    }
}

thread_local! {
    static TASKS: RefCell<Table> = RefCell::new(Table::default());
}

fn stopped() -> Failure {
    Failure::from_error(Stopped {
        what: "the hub running the future".into(),
    })
}

struct TaskWaker {
    hub: HubHandle,
    slot: usize,
    gen: u64,
    scheduled: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // ORDERING: AcqRel: the waker's writes before waking are visible to the poll, which
        // clears the flag (Release) before polling.
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        if self.hub.is_current() {
            super::call_soon(move || poll_task(&me));
        } else {
            // Refused only once the hub has closed; its table then fails the task.
            let _ = self.hub.call(move || poll_task(&me));
        }
    }
}

/// Puts `fut` in this thread's table and schedules its first poll.
fn insert(fut: LocalFuture, shared: Arc<dyn Finish>) {
    let hub = super::current();
    let (slot, gen) = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let gen = t.next_gen;
        t.next_gen += 1;
        let entry = Entry {
            gen,
            fut: Some(fut),
            shared: shared.clone(),
        };
        let slot = match t.free.pop() {
            Some(i) => {
                t.slots[i] = Some(entry);
                i
            }
            None => {
                t.slots.push(Some(entry));
                t.slots.len() - 1
            }
        };
        (slot, gen)
    });
    let waker = Arc::new(TaskWaker {
        hub,
        slot,
        gen,
        scheduled: AtomicBool::new(false),
    });
    shared.set_waker(Waker::from(waker.clone()));
    waker.wake();
}

fn remove(slot: usize) {
    let e = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let e = t.slots.get_mut(slot).and_then(Option::take);
        if e.is_some() {
            t.free.push(slot);
        }
        e
    });
    drop(e); // outside the borrow: dropping a future may run user code
}

/// Polls the task behind `w` once (a hub callback on the task's thread).
fn poll_task(w: &Arc<TaskWaker>) {
    let taken = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        match t.slots.get_mut(w.slot) {
            Some(Some(e)) if e.gen == w.gen => e.fut.take().map(|f| (f, e.shared.clone())),
            _ => None,
        }
    });
    let Some((mut fut, shared)) = taken else {
        return;
    };
    if shared.cancel_requested() {
        drop(fut);
        remove(w.slot);
        shared.finish_failed(Failure::from_error(Cancelled));
        return;
    }
    // ORDERING: Release pairs with the swap in `wake_by_ref`: a wake from now on queues a poll.
    w.scheduled.store(false, Ordering::Release);
    let waker = Waker::from(w.clone());
    let mut cx = Context::from_waker(&waker);
    match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
        Ok(Poll::Pending) => TASKS.with(|t| {
            if let Some(Some(e)) = t.borrow_mut().slots.get_mut(w.slot) {
                e.fut = Some(fut);
            }
        }),
        Ok(Poll::Ready(())) => {
            drop(fut);
            remove(w.slot);
        }
        Err(p) => {
            drop(fut);
            remove(w.slot);
            shared.finish_failed(Failure::from_panic(p));
        }
    }
}

/// Drops every future pending on this thread's hub, failing their handles with `Stopped` (for a
/// hub that shuts down while its thread lives on, like the reactor run on `main`).
pub(crate) fn fail_all_pending() {
    // `try_with`: at thread exit the table may be gone already (its futures dropped with it).
    let entries: Vec<Entry> = TASKS
        .try_with(|t| {
            let mut t = t.borrow_mut();
            t.free.clear();
            t.slots.drain(..).flatten().collect()
        })
        .unwrap_or_default();
    for e in entries {
        drop(e.fut);
        e.shared.finish_failed(stopped());
    }
}

fn new_shared<T>() -> Arc<TaskShared<T>> {
    Arc::new(TaskShared {
        out: Oneshot::new(),
        cancelled: AtomicBool::new(false),
        waker: Mutex::new(None),
    })
}

fn wrap<F>(fut: F, shared: Arc<TaskShared<F::Output>>) -> LocalFuture
where
    F: Future + 'static,
    F::Output: 'static,
{
    Box::pin(async move {
        let v = fut.await;
        let _ = shared.out.fill(Ok(v));
    })
}

/// Runs `fut` on the current thread's hub; `fut` need not be `Send`. Its first poll happens on
/// the hub's next pass (spawning never polls). It runs while the hub runs — in a green thread's
/// park, a main context's wait, or [`run`](super::run).
///
/// Polls are hub callbacks: a future must not call green-blocking functions (they panic); it
/// awaits instead. A panic in `poll` becomes the handle's failure.
///
/// ```
/// use std::rc::Rc;
/// use filature::{deferred::Deferred, hub};
///
/// let d = Deferred::<u32>::new();
/// let local = Rc::new(1); // !Send is fine on the current hub
/// let h = hub::spawn_future({
///     let d = d.clone();
///     async move { d.await.unwrap() + *local }
/// });
/// d.callback(41).unwrap();
/// assert_eq!(h.join(), 42); // drives this thread's hub until the future is done
/// ```
pub fn spawn_future<F>(fut: F) -> FutureHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let shared = new_shared();
    insert(wrap(fut, shared.clone()), shared.clone());
    FutureHandle { shared }
}

impl HubHandle {
    /// Runs `fut` on this hub (from any thread). See [`spawn_future`]. Fails once the hub is
    /// closed.
    ///
    /// ```
    /// use filature::{hub, sync::Event};
    ///
    /// let started = Event::new();
    /// let s = started.clone();
    /// let t = std::thread::spawn(move || {
    ///     s.send(hub::current()).unwrap();
    ///     hub::run(); // until stopped
    /// });
    /// let other = started.wait().unwrap();
    /// let h = other.spawn_future(async { std::thread::current().id() }).unwrap();
    /// assert_eq!(h.join(), t.thread().id());
    /// other.stop();
    /// t.join().unwrap();
    /// ```
    pub fn spawn_future<F>(&self, fut: F) -> Result<FutureHandle<F::Output>, Stopped>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.is_current() {
            return Ok(spawn_future(fut));
        }
        let shared = new_shared();
        let s = shared.clone();
        // The `Send` future crosses threads once, inside this call, and is boxed on its hub.
        self.call(move || insert(wrap(fut, s.clone()), s))?;
        Ok(FutureHandle { shared })
    }
}

/// Waits for the output of a future spawned on a hub, from any context: a green thread (parks), a
/// thread's main context or another OS thread (drives that thread's hub while waiting). Also a
/// `Future` itself, with `Output = Result<T, Failure>`.
///
/// The failure is the future's panic, [`Cancelled`] after [`cancel`](Self::cancel), or [`Stopped`]
/// if its hub shut down first.
pub struct FutureHandle<T> {
    shared: Arc<TaskShared<T>>,
}

impl<T> FutureHandle<T> {
    /// True once the future has finished (with its output or a failure).
    pub fn is_finished(&self) -> bool {
        self.shared.out.is_filled()
    }

    /// Asks the hub to drop the future; the handle then fails with [`Cancelled`], unless it had
    /// already finished. Does not wait. Callable from any thread.
    ///
    /// ```
    /// use filature::{deferred::Deferred, hub, Cancelled};
    ///
    /// let never = Deferred::<()>::new();
    /// let h = hub::spawn_future(never.clone());
    /// h.cancel();
    /// assert!(h.join_result().unwrap_err().is::<Cancelled>());
    /// ```
    pub fn cancel(&self) {
        // ORDERING: Release pairs with the Acquire in `cancel_requested`.
        self.shared.cancelled.store(true, Ordering::Release);
        let w = self
            .shared
            .waker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Waits at most `timeout` for the future to finish; true if it did. Does not take the output.
    /// A `timeout` too large to add to the clock (`Duration::MAX`) is no limit.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared
            .out
            .wait("FutureHandle::wait_timeout", deadline_after(timeout))
    }

    /// Waits for the output, or the failure.
    pub fn join_result(self) -> Result<T, Failure> {
        self.shared.out.wait("FutureHandle::join", None);
        // `None` only if this handle was already polled to completion as a future.
        self.shared
            .out
            .try_take()
            .unwrap_or_else(|| Err(Failure::from_error(crate::deferred::ResultTaken)))
    }

    /// Waits for the output; re-raises the future's panic, and panics if it was cancelled or its
    /// hub stopped.
    pub fn join(self) -> T {
        match self.join_result() {
            Ok(v) => v,
            Err(f) => f.resume_unwind(),
        }
    }
}

impl<T> Future for FutureHandle<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.shared
            .out
            .poll_take(cx)
            .map(|r| r.unwrap_or_else(|| Err(Failure::from_error(crate::deferred::ResultTaken))))
    }
}

impl<T> fmt::Debug for FutureHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Makes sure the futures table's thread-local is registered (see `Core::arm_exit_hook`).
pub(crate) fn touch_thread_local() {
    let _ = TASKS.try_with(|_| ());
}
