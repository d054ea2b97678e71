//! The errors of [`ThreadManager`](super::ThreadManager) and [`NamedThread`](super::NamedThread).
//! Each names the thread it is about.

use std::io;

use thiserror::Error;

/// Why a [`ThreadManager`](super::ThreadManager) or [`NamedThread`](super::NamedThread) call failed; names the thread.
///
/// ```
/// use filature::threads::{ThreadErrorKind, ThreadManager};
///
/// let manager = ThreadManager::new();
/// let err = manager.stop_thread("nobody").unwrap_err();
/// assert_eq!(err.kind(), ThreadErrorKind::Unknown);
/// assert_eq!(err.thread(), "nobody");
/// assert_eq!(err.to_string(), "no named thread 'nobody' is running");
/// ```
#[derive(Debug, Error)]
#[error("{}", describe(*kind, thread))]
pub struct ThreadError {
    kind: ThreadErrorKind,
    thread: String,
    #[source]
    source: Option<io::Error>,
}

/// What kind of [`ThreadError`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadErrorKind {
    /// The thread, or its whole manager, has stopped: the job was not accepted.
    Stopped,
    /// `stop_thread` of an id that has no running thread.
    Unknown,
    /// `stop_thread("thread-ops")`: the manager's own thread stops only with `stop`.
    Reserved,
    /// The id cannot name an OS thread (it contains a NUL byte).
    InvalidName,
    /// The OS could not start the thread (see [`std::error::Error::source`]).
    Spawn,
}

fn describe(kind: ThreadErrorKind, thread: &str) -> String {
    match kind {
        ThreadErrorKind::Stopped => format!("named thread '{thread}' has stopped"),
        ThreadErrorKind::Unknown => format!("no named thread '{thread}' is running"),
        ThreadErrorKind::Reserved => {
            format!(
                "'{thread}' is the thread manager's own thread; only ThreadManager::stop stops it"
            )
        }
        ThreadErrorKind::InvalidName => {
            format!("invalid thread name {thread:?}: it contains a NUL byte")
        }
        ThreadErrorKind::Spawn => format!("cannot start named thread '{thread}'"),
    }
}

impl ThreadError {
    pub(super) fn new(kind: ThreadErrorKind, thread: &str) -> ThreadError {
        ThreadError {
            kind,
            thread: thread.to_owned(),
            source: None,
        }
    }

    pub(super) fn spawn(thread: &str, e: io::Error) -> ThreadError {
        ThreadError {
            kind: ThreadErrorKind::Spawn,
            thread: thread.to_owned(),
            source: Some(e),
        }
    }

    /// What went wrong.
    ///
    /// ```
    /// use filature::threads::{ThreadErrorKind, ThreadManager};
    ///
    /// let manager = ThreadManager::new();
    /// let err = manager.stop_thread("thread-ops").unwrap_err();
    /// assert_eq!(err.kind(), ThreadErrorKind::Reserved);
    /// ```
    pub fn kind(&self) -> ThreadErrorKind {
        self.kind
    }

    /// The id of the thread the call was about.
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// manager.stop();
    /// assert_eq!(manager.get_thread("late").unwrap_err().thread(), "late");
    /// ```
    pub fn thread(&self) -> &str {
        &self.thread
    }

    /// True for [`ThreadErrorKind::Stopped`].
    ///
    /// ```
    /// let manager = filature::threads::ThreadManager::new();
    /// manager.stop();
    /// assert!(manager.schedule_in_thread("late", || ()).unwrap_err().is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.kind == ThreadErrorKind::Stopped
    }
}

/// [`ThreadManager::stop_timeout`](super::ThreadManager::stop_timeout) ran out of time; names the threads still running.
///
/// ```
/// use filature::threads::ThreadManager;
/// use std::time::Duration;
///
/// let manager = ThreadManager::new();
/// let (release, blocked) = std::sync::mpsc::channel::<()>();
/// manager.call_in_thread("slow", move || { let _ = blocked.recv(); }).unwrap();
/// let err = manager.stop_timeout(Duration::from_millis(20)).unwrap_err();
/// assert_eq!(err.to_string(), "thread manager stop timed out; still running: slow");
/// drop(release);
/// manager.stop();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("thread manager stop timed out; still running: {}", stuck.join(", "))]
pub struct StopTimeout {
    pub(super) stuck: Vec<String>,
}

impl StopTimeout {
    /// The ids of the threads that had not exited at the deadline.
    ///
    /// ```
    /// # use filature::threads::ThreadManager;
    /// # use std::time::Duration;
    /// let manager = ThreadManager::new();
    /// let (release, blocked) = std::sync::mpsc::channel::<()>();
    /// manager.call_in_thread("slow", move || { let _ = blocked.recv(); }).unwrap();
    /// let err = manager.stop_timeout(Duration::from_millis(20)).unwrap_err();
    /// assert_eq!(err.stuck(), ["slow"]);
    /// drop(release);
    /// manager.stop();
    /// ```
    pub fn stuck(&self) -> &[String] {
        &self.stuck
    }
}
