//! The policy engine: synchronous rules over the common model, no I/O on the hot path.

pub mod suppression;
