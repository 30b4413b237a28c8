//! The policy engine's rules: synchronous checks over the common model, no I/O.

pub mod placeholder;
