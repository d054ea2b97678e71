//! `Failure`: an error value or a caught panic, shared by everyone who waits on it.
//!
//! Every boundary in filature (a green thread, a hub callback, a pool job, a named-thread job, a
//! Deferred callback) catches panics and turns them into a `Failure`, which is delivered to whoever
//! waits. A `Failure` is cheap to clone (one `Arc`), `Send + Sync`, and keeps the original panic
//! payload so that re-raising it with [`Failure::resume_unwind`] gives the waiter the same payload
//! the failing code panicked with (when the waiter holds the last clone).

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// A captured failure: either an error value or a caught panic.
///
/// ```
/// use filature::Failure;
///
/// let f = Failure::catch(|| -> u32 { panic!("boom") }).unwrap_err();
/// assert!(f.is_panic());
/// assert_eq!(f.panic_message(), Some("boom"));
///
/// let e = Failure::from_error(std::io::Error::other("disk full"));
/// assert!(e.downcast_ref::<std::io::Error>().is_some());
/// assert_eq!(e.to_string(), "disk full");
/// ```
#[derive(Clone)]
pub struct Failure {
    inner: Arc<Inner>,
}

enum Inner {
    Error(Box<dyn StdError + Send + Sync + 'static>),
    Panic {
        message: String,
        // The original payload, taken by the first `resume_unwind`.
        payload: Mutex<Option<Box<dyn Any + Send>>>,
    },
}

impl Failure {
    /// Wraps an error value.
    pub fn from_error<E>(error: E) -> Failure
    where
        E: StdError + Send + Sync + 'static,
    {
        Failure {
            inner: Arc::new(Inner::Error(Box::new(error))),
        }
    }

    /// Wraps a boxed error value.
    pub fn from_boxed_error(error: Box<dyn StdError + Send + Sync + 'static>) -> Failure {
        Failure {
            inner: Arc::new(Inner::Error(error)),
        }
    }

    /// Wraps a panic payload, as returned by [`std::panic::catch_unwind`].
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Failure {
        let message = panic_message(&*payload).to_owned();
        Failure {
            inner: Arc::new(Inner::Panic {
                message,
                payload: Mutex::new(Some(payload)),
            }),
        }
    }

    /// Runs `f`, turning a panic into a `Failure`.
    pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Failure> {
        panic::catch_unwind(AssertUnwindSafe(f)).map_err(Failure::from_panic)
    }

    /// True if this failure is a caught panic.
    pub fn is_panic(&self) -> bool {
        matches!(*self.inner, Inner::Panic { .. })
    }

    /// The panic's message, if this failure is a panic whose payload was a string.
    pub fn panic_message(&self) -> Option<&str> {
        match &*self.inner {
            Inner::Panic { message, .. } => Some(message),
            Inner::Error(_) => None,
        }
    }

    /// The error value, if this failure wraps an error (not a panic).
    pub fn error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match &*self.inner {
            Inner::Error(e) => Some(&**e),
            Inner::Panic { .. } => None,
        }
    }

    /// The error as a `E`, if this failure wraps an error of that type.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.error().and_then(|e| e.downcast_ref::<E>())
    }

    /// True if this failure wraps an error of type `E` (Twisted's `Failure.check`).
    pub fn is<E: StdError + 'static>(&self) -> bool {
        self.downcast_ref::<E>().is_some()
    }

    /// True if `self` and `other` are clones of the same failure.
    pub fn ptr_eq(&self, other: &Failure) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Re-raises this failure as a panic in the current context.
    ///
    /// A caught panic is resumed with its original payload when it is still available (the first
    /// re-raise takes it); otherwise, and for error values, it panics with the failure's message.
    pub fn resume_unwind(self) -> ! {
        if let Inner::Panic { payload, message } = &*self.inner {
            let taken = payload.lock().unwrap_or_else(|p| p.into_inner()).take();
            match taken {
                Some(p) => panic::resume_unwind(p),
                None => panic::resume_unwind(Box::new(message.clone())),
            }
        }
        panic::resume_unwind(Box::new(self.to_string()))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Error(e) => fmt::Display::fmt(e, f),
            Inner::Panic { message, .. } => write!(f, "panicked: {message}"),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Error(e) => f.debug_tuple("Failure::Error").field(e).finish(),
            Inner::Panic { message, .. } => f.debug_tuple("Failure::Panic").field(message).finish(),
        }
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &*self.inner {
            Inner::Error(e) => Some(&**e),
            Inner::Panic { .. } => None,
        }
    }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}
