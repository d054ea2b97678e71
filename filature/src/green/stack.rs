//! Stacks for green threads (being written).
