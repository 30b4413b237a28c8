//! Durable control state.
