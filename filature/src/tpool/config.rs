//! The size of the global pool: `FILATURE_THREADPOOL_SIZE`, parsed once.

use thiserror::Error;

/// The environment variable that sizes the global pool.
pub const SIZE_VAR: &str = "FILATURE_THREADPOOL_SIZE";

/// The global pool's size when [`SIZE_VAR`] is not set (eventlet's default).
pub const DEFAULT_SIZE: usize = 20;

/// [`SIZE_VAR`] holds something that is not a thread count.
///
/// ```
/// let err = filature::tpool::parse_pool_size("-3").unwrap_err();
/// assert_eq!(err.value(), "-3");
/// assert!(err.to_string().contains("FILATURE_THREADPOOL_SIZE"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "FILATURE_THREADPOOL_SIZE={value:?} is not a valid thread pool size \
     (expected a whole number >= 0; 0 runs tpool work inline; unset means {DEFAULT_SIZE})"
)]
pub struct SizeVarError {
    value: String,
}

impl SizeVarError {
    /// The offending value, as found in the environment.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Parses a value of [`SIZE_VAR`]: a whole number `>= 0`, surrounding blanks allowed.
/// Exposed for tests and tools; [`try_init`](super::try_init) is the usual entry point.
///
/// ```
/// use filature::tpool::parse_pool_size;
///
/// assert_eq!(parse_pool_size(" 8 "), Ok(8));
/// assert_eq!(parse_pool_size("0"), Ok(0));
/// assert!(parse_pool_size("eight").is_err());
/// assert!(parse_pool_size("").is_err());
/// ```
#[doc(hidden)]
pub fn parse_pool_size(value: &str) -> Result<usize, SizeVarError> {
    value.trim().parse::<usize>().map_err(|_| SizeVarError {
        value: value.to_owned(),
    })
}

/// Reads [`SIZE_VAR`]: unset gives [`DEFAULT_SIZE`].
pub(crate) fn size_from_env() -> Result<usize, SizeVarError> {
    match std::env::var_os(SIZE_VAR) {
        None => Ok(DEFAULT_SIZE),
        Some(raw) => match raw.to_str() {
            Some(text) => parse_pool_size(text),
            None => Err(SizeVarError {
                value: raw.to_string_lossy().into_owned(),
            }),
        },
    }
}
