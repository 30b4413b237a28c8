//! The policy engine: synchronous decisions over the common model, no I/O.

pub mod kill_switch;
