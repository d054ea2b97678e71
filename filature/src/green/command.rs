//! `Command<T>`: the actor-message idiom of SIP SIMPLE (`Command(name)`, `signal`, `wait`).
//!
//! # Invariants
//!
//! * A command and its [`CommandReply`] share one `Oneshot`. The command (sent to the actor) is
//!   the only side that fills it; the reply (kept by the sender) is the only side that takes it.
//! * The slot is filled exactly once: by the first `signal`/`signal_err` (a second one returns
//!   [`AlreadyCalled`]), or, if the command is dropped unsignalled (the actor gave up, or its
//!   queue was dropped), by its `Drop` with a [`Cancelled`] failure — so a waiting sender is never
//!   left hanging.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::deadline::deadline_after;
use crate::sync::oneshot::Oneshot;
use crate::{AlreadyCalled, Cancelled, Failure};

type Slot<T> = Arc<Oneshot<Result<T, Failure>>>;

/// A request sent to an actor (a green thread or thread looping over a queue) carrying a one-shot
/// reply. Put it in your own message enum next to the arguments; the actor answers with
/// [`signal`](Self::signal) and the sender waits on the [`CommandReply`].
///
/// ```
/// use filature::{green, green::Command, sync::Queue};
///
/// enum Msg {
///     Add(u32, u32, Command<u32>),
///     Stop,
/// }
///
/// let inbox = Queue::unbounded();
/// let rx = inbox.clone();
/// let actor = green::spawn(move || loop {
///     match rx.get() {
///         Msg::Add(a, b, cmd) => cmd.signal(a + b).unwrap(),
///         Msg::Stop => break,
///     }
/// });
///
/// let (cmd, reply) = Command::new("add");
/// inbox.put(Msg::Add(2, 3, cmd));
/// assert_eq!(reply.wait().unwrap(), 5);
/// inbox.put(Msg::Stop);
/// actor.join();
/// ```
pub struct Command<T> {
    name: Cow<'static, str>,
    slot: Slot<T>,
}

/// The sender's side of a [`Command`]: wait for the actor's answer from any context (a green
/// thread, a main context, another OS thread), or `.await` it.
pub struct CommandReply<T> {
    name: Cow<'static, str>,
    slot: Slot<T>,
}

impl<T> Command<T> {
    /// A command named `name` (for logs and `Debug`), and the reply to wait on.
    pub fn new(name: impl Into<Cow<'static, str>>) -> (Command<T>, CommandReply<T>) {
        let name = name.into();
        let slot = Arc::new(Oneshot::new());
        (
            Command {
                name: name.clone(),
                slot: slot.clone(),
            },
            CommandReply { name, slot },
        )
    }

    /// The command's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Answers with `value`. Never blocks. A second answer is refused.
    ///
    /// ```
    /// use filature::{green::Command, AlreadyCalled};
    ///
    /// let (cmd, reply) = Command::new("ping");
    /// cmd.signal("pong").unwrap();
    /// assert_eq!(cmd.signal("again"), Err(AlreadyCalled));
    /// assert_eq!(reply.wait().unwrap(), "pong");
    /// ```
    pub fn signal(&self, value: T) -> Result<(), AlreadyCalled> {
        self.slot.fill(Ok(value)).map_err(|_| AlreadyCalled)
    }

    /// Answers with a failure: the waiter gets `Err(failure)`.
    pub fn signal_err(&self, failure: Failure) -> Result<(), AlreadyCalled> {
        self.slot.fill(Err(failure)).map_err(|_| AlreadyCalled)
    }

    /// True once answered.
    pub fn is_signalled(&self) -> bool {
        self.slot.is_filled()
    }
}

impl<T> Drop for Command<T> {
    fn drop(&mut self) {
        // An actor that drops a command without answering must not leave its sender waiting.
        let _ = self.slot.fill(Err(Failure::from_error(Cancelled)));
    }
}

impl<T> CommandReply<T> {
    /// Waits for the answer. A command dropped unanswered gives a [`Cancelled`] failure.
    pub fn wait(self) -> Result<T, Failure> {
        self.slot.wait("Command::wait", None);
        self.take()
    }

    /// Waits at most `timeout`; on timeout the reply comes back so the caller can wait again.
    /// A `timeout` too large to add to the clock (`Duration::MAX`) is no limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use filature::green::Command;
    ///
    /// let (cmd, reply) = Command::<u32>::new("slow");
    /// let reply = reply.wait_timeout(Duration::from_millis(5)).unwrap_err();
    /// cmd.signal(1).unwrap();
    /// assert_eq!(reply.wait_timeout(Duration::from_millis(5)).unwrap().unwrap(), 1);
    /// ```
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<T, Failure>, CommandReply<T>> {
        if self.slot.wait("Command::wait", deadline_after(timeout)) {
            Ok(self.take())
        } else {
            Err(self)
        }
    }

    /// The answer if it has come, without waiting.
    pub fn try_get(&self) -> Option<Result<T, Failure>> {
        self.slot.try_take()
    }

    /// The command's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn take(&self) -> Result<T, Failure> {
        self.slot
            .try_take()
            .unwrap_or_else(|| Err(Failure::from_error(crate::deferred::ResultTaken)))
    }
}

impl<T> Future for CommandReply<T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.slot
            .poll_take(cx)
            .map(|r| r.unwrap_or_else(|| Err(Failure::from_error(crate::deferred::ResultTaken))))
    }
}

impl<T> fmt::Debug for Command<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("signalled", &self.is_signalled())
            .finish()
    }
}

impl<T> fmt::Debug for CommandReply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandReply")
            .field("name", &self.name)
            .finish()
    }
}
