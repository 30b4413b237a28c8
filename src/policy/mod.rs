//! The policy engine: synchronous, no I/O on the hot path, knows nothing of SMTP or HTTP.
//!
//! A [`PolicySet`] is one immutable snapshot of the policy files; [`PolicySet::evaluate`] turns an
//! [`Envelope`](crate::model::Envelope) and a [`Message`](crate::model::Message) into a
//! [`Verdict`](crate::model::Verdict), reading pauses and suppressions from the snapshots it is
//! given.

pub mod kill_switch;
pub mod placeholder;
pub mod suppression;

mod load;
mod scan_cache;
mod set;

pub use load::{PolicyError, PolicyErrors};
pub use set::{AlertPolicy, AutoTripPolicy, Context, IdentityPolicy, PolicyFile, PolicySet};
