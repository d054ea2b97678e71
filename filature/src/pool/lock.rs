//! The pool's lock and condvars: [`crate::loom::lock`]'s (`parking_lot`, or loom's under
//! `--cfg loom`).

pub(crate) use crate::loom::lock::{Condvar, Mutex, MutexGuard};
