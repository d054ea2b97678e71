//! Green threads (being written).

#[allow(dead_code)]
pub(crate) mod stack;
