//! Join handles: waiting on a green thread's outcome from any context, links, kill.
//!
//! # Invariants
//!
//! * `JoinShared` is the meeting point of the green thread (which completes it exactly once, or
//!   is abandoned, which completes it as killed) and its one `JoinHandle` plus any listeners. It
//!   is `Send + Sync` when `T: Send`, so a handle can be waited on from another OS thread.
//! * The outcome goes `Pending -> Done`, then `Done <-> Lent` while link listeners borrow it (on
//!   the green thread's hub, at the pass after completion; on the thread that links after the end
//!   from elsewhere; or on a thread that joins from elsewhere before that pass), then
//!   `Done -> Taken` by a join. Listeners added while it is `Lent` are run by the same call.
//! * A join takes the outcome only when it is `Done` with no listener left to run, checked and
//!   taken in one lock hold (nothing read outside the lock decides it). Until then it waits: for
//!   the listeners to hand the outcome back if `Lent`; for the hub's pass if it joins on the green
//!   thread's own hub; and from another thread it lends the outcome to itself and runs them.
//! * Waiters are registered and removed under the lock and woken after it is released.
//! * A panic outcome that nobody observed (no `join`, no listener) is logged exactly once: at
//!   completion if the handle is already gone and no listener is linked, otherwise when the handle
//!   is dropped. Kills are not logged: they are requested on purpose.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::park::{unpark, Park, Unparker};
use super::Parker;
use crate::deadline::deadline_after;
use crate::loom::lock::Mutex;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::sync::waiter::{Waiter, WaiterList};
use crate::Failure;

/// How a green thread ended, when it did not return a value.
#[derive(Debug, Clone, Error)]
pub enum JoinError {
    /// The green thread panicked; the failure carries the panic.
    #[error("green thread panicked: {0}")]
    Panicked(Failure),
    /// The green thread was killed (or never started because it was killed first).
    #[error("green thread was killed")]
    Killed,
}

impl JoinError {
    /// True if the green thread was killed.
    pub fn is_killed(&self) -> bool {
        matches!(self, JoinError::Killed)
    }
    /// The panic, if the green thread panicked.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            JoinError::Panicked(f) => Some(f),
            JoinError::Killed => None,
        }
    }
}

/// [`JoinHandle::join_timeout`] gave up: either time ran out (the handle comes back) or the green
/// thread failed.
#[derive(Error)]
pub enum JoinTimeoutError<T> {
    /// Time ran out; here is the handle, still joinable.
    #[error("timed out waiting for a green thread")]
    TimedOut(JoinHandle<T>),
    /// The green thread panicked or was killed.
    #[error(transparent)]
    Failed(JoinError),
}

impl<T> fmt::Debug for JoinTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinTimeoutError::TimedOut(_) => f.write_str("TimedOut(..)"),
            JoinTimeoutError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

/// Identifies a listener added with [`JoinHandle::link`] and friends, for [`JoinHandle::unlink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(u64);

type Listener<T> = Box<dyn FnOnce(&Result<T, JoinError>) -> bool + Send>;

enum Outcome<T> {
    Pending,
    Done(Result<T, JoinError>),
    Lent,
    Taken,
}

/// How a wait on a `JoinShared` ended.
enum Waited<T> {
    /// The outcome is settled (a wait that does not take it).
    Settled,
    /// The outcome, taken.
    Joined(Result<T, JoinError>),
    TimedOut,
}

/// What a waiter does next.
enum Attempt<T> {
    Ready(Waited<T>),
    /// Run the listeners with this outcome, lent to the caller.
    RunLinks(Result<T, JoinError>),
    /// Park until woken.
    Wait,
}

struct State<T> {
    outcome: Outcome<T>,
    waiters: WaiterList,
    links: VecDeque<(u64, Listener<T>)>,
    next_link: u64,
    observed: bool,
    handle_alive: bool,
    finish_seq: u64,
}

pub(crate) struct JoinShared<T> {
    pub(crate) cell: Unparker,
    name: Option<Arc<str>>,
    state: Mutex<State<T>>,
    done: AtomicBool,
}

/// Completion order across all green threads ("first failure in time").
static FINISH_SEQ: AtomicU64 = AtomicU64::new(1);

/// Moves whenever some green thread in the process ends in failure (for `join_all`).
pub(crate) fn failure_epoch() -> u64 {
    FINISH_SEQ.load(Ordering::Relaxed)
}

/// The type-erased side of `JoinShared` a green thread keeps for teardown.
pub(crate) trait Complete {
    fn complete_killed(&self);
}

impl<T> Complete for JoinShared<T> {
    /// The green thread will never run on its hub again (a spawn dropped before it started, or
    /// a green thread abandoned): no pass of that hub will run its listeners, so they run here,
    /// on this thread, as they do for a link made from another thread after the end.
    fn complete_killed(&self) {
        if self.complete_inner(Err(JoinError::Killed)) {
            self.run_links();
        }
    }
}

impl<T> JoinShared<T> {
    pub(crate) fn new(cell: Unparker, name: Option<Arc<str>>) -> Arc<Self> {
        Arc::new(JoinShared {
            cell,
            name,
            state: Mutex::new(State {
                outcome: Outcome::Pending,
                waiters: WaiterList::default(),
                links: VecDeque::new(),
                next_link: 0,
                observed: false,
                handle_alive: true,
                finish_seq: 0,
            }),
            done: AtomicBool::new(false),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.cell.id
    }

    pub(crate) fn name(&self) -> Option<&Arc<str>> {
        self.name.as_ref()
    }

    /// Records the outcome (first call only) and wakes every waiter; listeners run at the hub's
    /// next pass.
    pub(crate) fn complete(self: &Arc<Self>, outcome: Result<T, JoinError>)
    where
        T: 'static,
    {
        if self.complete_inner(outcome) {
            let me = self.clone();
            crate::hub::with_core(|c| c.defer(Box::new(move || me.run_links())));
        }
    }

    /// Returns true if listeners must be run.
    pub(crate) fn complete_inner(&self, outcome: Result<T, JoinError>) -> bool {
        let mut st = self.state.lock();
        if !matches!(st.outcome, Outcome::Pending) {
            return false;
        }
        if let Err(JoinError::Panicked(f)) = &outcome {
            if !st.handle_alive && st.links.is_empty() {
                st.observed = true;
                tracing::error!(
                    green_thread = self.id(),
                    name = self.name.as_deref().unwrap_or(""),
                    "green thread panicked and nobody joined it: {f}"
                );
            }
        }
        if outcome.is_err() {
            st.finish_seq = FINISH_SEQ.fetch_add(1, Ordering::Relaxed);
        }
        st.outcome = Outcome::Done(outcome);
        // ORDERING: Release pairs with the Acquire in `is_finished`: a thread that sees `done`
        // and then locks sees the outcome (the lock orders it too).
        self.done.store(true, Ordering::Release);
        let waiters = std::mem::take(&mut st.waiters);
        let run_links = !st.links.is_empty();
        drop(st);
        waiters.wake_all();
        run_links
    }

    /// Runs the listeners with the outcome lent to them, then settles it again. Listeners added
    /// meanwhile (from another thread) run in the same call; a call that finds the outcome lent
    /// (or taken) leaves the listeners to the call that lent it.
    pub(crate) fn run_links(&self) {
        let outcome = {
            let mut st = self.state.lock();
            if st.links.is_empty() {
                return;
            }
            match Self::lend(&mut st) {
                Some(r) => r,
                None => return,
            }
        };
        self.run_lent(outcome);
    }

    /// Under the lock: moves a `Done` outcome out, leaving `Lent`, for the caller to run the
    /// listeners with; `None` (state unchanged) if it is not `Done`.
    fn lend(st: &mut State<T>) -> Option<Result<T, JoinError>> {
        match std::mem::replace(&mut st.outcome, Outcome::Lent) {
            Outcome::Done(r) => Some(r),
            other => {
                st.outcome = other;
                None
            }
        }
    }

    /// Runs the listeners with `outcome`, which the caller lent (the state is `Lent`), until none
    /// are left, then settles the outcome (`Done`) and wakes the waiters. Listeners are taken off
    /// the list one at a time, so one that `unlink`s another that has not run yet stops it.
    fn run_lent(&self, outcome: Result<T, JoinError>) {
        let mut observed = false;
        loop {
            let mut st = self.state.lock();
            let Some((_, l)) = st.links.pop_front() else {
                st.observed |= observed;
                if let Err(JoinError::Panicked(f)) = &outcome {
                    if !st.observed && !st.handle_alive {
                        st.observed = true;
                        tracing::error!(
                            green_thread = self.id(),
                            "green thread panicked and nobody joined it: {f}"
                        );
                    }
                }
                st.outcome = Outcome::Done(outcome);
                let waiters = std::mem::take(&mut st.waiters);
                drop(st);
                waiters.wake_all();
                return;
            };
            drop(st);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l(&outcome))) {
                Ok(saw_failure) => observed |= saw_failure,
                Err(p) => tracing::error!(
                    green_thread = self.id(),
                    "a link listener panicked: {}",
                    crate::failure::panic_message(&*p)
                ),
            }
        }
    }

    fn is_finished(&self) -> bool {
        // ORDERING: see `complete_inner`.
        self.done.load(Ordering::Acquire)
    }

    fn is_settled(st: &State<T>) -> bool {
        matches!(st.outcome, Outcome::Done(_) | Outcome::Taken)
    }

    /// Waits until the outcome is settled (not lent to listeners). False on timeout.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let parker = Parker::current("JoinHandle::wait");
        !matches!(self.wait_with(&parker, deadline, false), Waited::TimedOut)
    }

    /// Waits until the outcome can be taken (see [`wait_with`](Self::wait_with)) and takes it;
    /// `None` on timeout. The handle taking it is being consumed, so it also counts as dropped.
    fn join(&self, deadline: Option<Instant>) -> Option<Result<T, JoinError>> {
        self.join_with(&Parker::current("JoinHandle::join"), deadline)
    }

    fn join_with(
        &self,
        parker: &impl Park,
        deadline: Option<Instant>,
    ) -> Option<Result<T, JoinError>> {
        match self.wait_with(parker, deadline, true) {
            Waited::Joined(r) => Some(r),
            Waited::TimedOut => None,
            Waited::Settled => unreachable!("a join takes the outcome"),
        }
    }

    /// The wait loop, for any way of parking (the loom models bring their own). Without `take`
    /// it returns once the outcome is settled (done, not lent to listeners). With `take` it also
    /// waits until every listener linked so far has run, then takes the outcome in the same lock
    /// hold as that check (so no listener run can lend it away in between): on the green thread's
    /// own hub it waits for the pass that runs them; from another thread it runs them itself,
    /// as a `link` after the end from another thread does (that hub may not run soon, or ever).
    fn wait_with(&self, parker: &impl Park, deadline: Option<Instant>, take: bool) -> Waited<T> {
        let on_own_hub = crate::hub::is_current_shared(&self.cell.hub);
        let me = Waiter::Park(parker.unparker().clone());
        let mut guard = Deregister {
            shared: self,
            waiter: &me,
            listed: false,
        };
        loop {
            {
                let mut st = self.state.lock();
                match self.attempt(&mut st, take, on_own_hub) {
                    Attempt::Ready(done) => {
                        if guard.listed {
                            st.waiters.remove(&me);
                            guard.listed = false;
                        }
                        return done;
                    }
                    Attempt::RunLinks(outcome) => {
                        drop(st);
                        self.run_lent(outcome);
                        continue;
                    }
                    Attempt::Wait => {}
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Waited::TimedOut;
                }
                if !guard.listed || !st.waiters.contains(&me) {
                    st.waiters.push(me.clone());
                    guard.listed = true;
                }
            }
            parker.park(deadline);
        }
    }

    /// Under the lock: what a waiter (see [`wait_with`](Self::wait_with)) does next. A
    /// `RunLinks` answer has lent the outcome to the caller, who must run the listeners.
    fn attempt(&self, st: &mut State<T>, take: bool, on_own_hub: bool) -> Attempt<T> {
        match st.outcome {
            Outcome::Done(_) if !take => Attempt::Ready(Waited::Settled),
            Outcome::Done(_) if st.links.is_empty() => {
                st.observed = true;
                st.handle_alive = false;
                match std::mem::replace(&mut st.outcome, Outcome::Taken) {
                    Outcome::Done(r) => Attempt::Ready(Waited::Joined(r)),
                    _ => unreachable!("matched Done"),
                }
            }
            Outcome::Done(_) if !on_own_hub => match Self::lend(st) {
                Some(r) => Attempt::RunLinks(r),
                None => unreachable!("matched Done"),
            },
            Outcome::Taken if take => unreachable!("a JoinHandle's outcome is taken once"),
            Outcome::Taken => Attempt::Ready(Waited::Settled),
            // Not finished; lent to listeners running elsewhere; or with listeners that this
            // (the green thread's) hub runs at its next pass, which wakes us when done.
            Outcome::Pending | Outcome::Lent | Outcome::Done(_) => Attempt::Wait,
        }
    }

    pub(crate) fn add_link(self: &Arc<Self>, l: Listener<T>) -> LinkId
    where
        T: 'static,
    {
        let mut st = self.state.lock();
        let id = st.next_link;
        st.next_link += 1;
        st.links.push_back((id, l));
        if matches!(st.outcome, Outcome::Done(_)) && st.links.len() == 1 {
            drop(st);
            if crate::hub::is_current_shared(&self.cell.hub) {
                let me = self.clone();
                crate::hub::with_core(|c| c.defer(Box::new(move || me.run_links())));
            } else {
                // Linked from another thread after the end: that thread cannot hand the outcome
                // to the green thread's hub (`T` need not be `Send` as far as the types know), and
                // its own hub may never run; run the listeners here, now.
                self.run_links();
            }
        } else if matches!(st.outcome, Outcome::Lent) {
            // The listeners are running (on the green thread's hub); that call runs this one too.
        } else if matches!(st.outcome, Outcome::Taken) {
            // The value was joined already: there is nothing left to hand to the listener.
            st.links.pop_back();
        }
        LinkId(id)
    }
}

struct Deregister<'a, T> {
    shared: &'a JoinShared<T>,
    waiter: &'a Waiter,
    listed: bool,
}

impl<T> Drop for Deregister<'_, T> {
    fn drop(&mut self) {
        if self.listed {
            self.shared.state.lock().waiters.remove(self.waiter);
        }
    }
}

/// An owned permission to wait on a green thread's outcome (and to kill it).
///
/// `join` works from any context: a green thread (parks it), a thread's main context or another
/// OS thread (drives that thread's hub while waiting). A panic in the green thread is re-raised by
/// [`join`](Self::join); if nobody joins, it is logged once. A `JoinHandle` is also a `Future`
/// whose output is `Result<T, JoinError>`.
///
/// ```
/// use filature::green;
///
/// let h = green::spawn(|| 6 * 7);
/// assert_eq!(h.join(), 42);
/// ```
pub struct JoinHandle<T> {
    shared: Arc<JoinShared<T>>,
    /// The outcome was taken (which also did the drop-time bookkeeping).
    joined: bool,
}

impl<T: 'static> JoinHandle<T> {
    pub(crate) fn new(shared: Arc<JoinShared<T>>) -> Self {
        JoinHandle {
            shared,
            joined: false,
        }
    }

    /// The green thread's id (unique in the process).
    pub fn id(&self) -> u64 {
        self.shared.id()
    }

    /// The green thread's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// True once the green thread has finished (returned, panicked or been killed).
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished()
    }

    /// Waits for the green thread and returns its value; re-raises its panic; panics if it was
    /// killed.
    pub fn join(self) -> T {
        match self.join_result() {
            Ok(v) => v,
            Err(JoinError::Panicked(f)) => f.resume_unwind(),
            Err(JoinError::Killed) => panic!("joined a green thread that was killed"),
        }
    }

    /// Waits for the green thread and returns its outcome.
    pub fn join_result(self) -> Result<T, JoinError> {
        self.join_result_with(&Parker::current("JoinHandle::join"))
    }

    /// [`join_result`](Self::join_result), for any way of parking (the loom models bring their own).
    pub(crate) fn join_result_with(mut self, parker: &impl Park) -> Result<T, JoinError> {
        let r = self.shared.join_with(parker, None);
        self.joined = true;
        r.expect("no deadline")
    }

    /// Waits at most `timeout`. On timeout the handle comes back inside the error. A
    /// `timeout` too large to add to the clock (`Duration::MAX`) is no limit.
    pub fn join_timeout(mut self, timeout: Duration) -> Result<T, JoinTimeoutError<T>> {
        match self.shared.join(deadline_after(timeout)) {
            Some(r) => {
                self.joined = true;
                r.map_err(JoinTimeoutError::Failed)
            }
            None => Err(JoinTimeoutError::TimedOut(self)),
        }
    }

    /// Waits until the green thread has finished, without taking its outcome. Waiting again
    /// returns at once.
    pub fn wait(&self) {
        self.shared.wait(None);
    }

    /// Like [`wait`](Self::wait) with a time limit; false if it ran out. A `timeout`
    /// too large to add to the clock (`Duration::MAX`) is no limit.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait(deadline_after(timeout))
    }

    /// Kills the green thread: it unwinds from its current (or next) park point, running its
    /// destructors. A green thread that has not started yet never runs; killing a finished one
    /// does nothing. Does not wait: `join` or `wait` to see it finish. Callable from any thread.
    pub fn kill(&self) {
        if self.shared.is_finished() {
            return;
        }
        if self.shared.cell.request_kill() {
            unpark(&self.shared.cell);
            if self.shared.cell.slot().is_none() {
                // Not created yet: a delayed spawn waiting for its timer (or a `spawn_on` call
                // still in an inbox, which starts, sees the kill and ends). Make the timer fire
                // now so the handle settles as killed without waiting for the delay.
                crate::hub::expedite_delayed_spawn(&self.shared.cell);
            }
        }
    }

    /// Calls `f` with the outcome once the green thread ends, on its hub's next pass, not inside
    /// the finishing green thread. If it has already ended, `f` runs at that hub's next pass when
    /// `link` is called on the hub's thread, and before `link` returns when called from another
    /// thread. A panicking listener is logged and the others still run.
    ///
    /// Every listener linked before the handle is joined (`join`, `join_result`, `join_timeout`,
    /// or awaiting it) runs exactly once, before the join returns: a join on the hub's thread
    /// waits for that pass, and a join from another thread that comes before the pass runs the
    /// listeners itself, on the joining thread. A listener added after the value was taken by a
    /// join never runs.
    pub fn link(&self, f: impl FnOnce(&Result<T, JoinError>) + Send + 'static) -> LinkId {
        self.shared.add_link(Box::new(move |r| {
            f(r);
            true
        }))
    }

    /// Calls `f` with the value if the green thread returns one.
    pub fn link_value(&self, f: impl FnOnce(&T) + Send + 'static) -> LinkId {
        self.shared.add_link(Box::new(move |r| {
            if let Ok(v) = r {
                f(v);
            }
            false
        }))
    }

    /// Calls `f` with the error if the green thread panicked or was killed.
    pub fn link_exception(&self, f: impl FnOnce(&JoinError) + Send + 'static) -> LinkId {
        self.shared.add_link(Box::new(move |r| match r {
            Err(e) => {
                f(e);
                true
            }
            Ok(_) => false,
        }))
    }

    /// Removes a listener that has not run yet, so it never runs. Returns whether it was removed
    /// (false if it has run, is running, or was never linked). This works from inside another
    /// listener of the same handle too: listeners run one after the other in the order they
    /// were linked, and one can stop another that comes after it.
    pub fn unlink(&self, id: LinkId) -> bool {
        let mut st = self.shared.state.lock();
        let before = st.links.len();
        st.links.retain(|(i, _)| *i != id.0);
        st.links.len() != before
    }

    pub(crate) fn finish_seq(&self) -> Option<u64> {
        let st = self.shared.state.lock();
        match st.outcome {
            Outcome::Done(Err(_)) => Some(st.finish_seq),
            _ => None,
        }
    }

    pub(crate) fn add_waiter(&self, w: Waiter) -> bool {
        let mut st = self.shared.state.lock();
        if JoinShared::is_settled(&st) {
            return false;
        }
        st.waiters.push(w);
        true
    }

    pub(crate) fn remove_waiter(&self, w: &Waiter) {
        self.shared.state.lock().waiters.remove(w);
    }

    pub(crate) fn is_settled(&self) -> bool {
        JoinShared::is_settled(&self.shared.state.lock())
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if self.joined {
            return;
        }
        let mut guard = self.shared.state.lock();
        let st = &mut *guard;
        st.handle_alive = false;
        if let Outcome::Done(Err(JoinError::Panicked(f))) = &st.outcome {
            if !st.observed && st.links.is_empty() {
                st.observed = true;
                tracing::error!(
                    green_thread = self.shared.id(),
                    name = self.shared.name.as_deref().unwrap_or(""),
                    "green thread panicked and nobody joined it: {f}"
                );
            }
        }
    }
}

impl<T: 'static> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let on_own_hub = crate::hub::is_current_shared(&self.shared.cell.hub);
        let mut st = loop {
            let mut st = self.shared.state.lock();
            match self.shared.attempt(&mut st, true, on_own_hub) {
                Attempt::Ready(Waited::Joined(r)) => {
                    drop(st);
                    self.get_mut().joined = true;
                    return Poll::Ready(r);
                }
                Attempt::Ready(_) => unreachable!("a join takes the outcome or waits"),
                Attempt::RunLinks(outcome) => {
                    drop(st);
                    self.shared.run_lent(outcome);
                }
                Attempt::Wait => break st,
            }
        };
        let w = Waiter::Task(cx.waker().clone());
        if !st.waiters.contains(&w) {
            st.waiters.push(w);
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.shared.id())
            .field("name", &self.shared.name)
            .field("finished", &self.shared.is_finished())
            .finish()
    }
}
