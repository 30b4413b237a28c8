//! sendguard: a send-guard for outbound email.
#![deny(missing_docs)]

pub mod model;
pub mod policy;
