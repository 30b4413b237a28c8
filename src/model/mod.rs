//! The common model every front-end translates its protocol into: plain data, no I/O.
//!
//! `Envelope` and `Message` go into the policy engine, `Verdict`, `Finding` and `Refusal` come out.
//! Nothing here knows SMTP or HTTP.

mod address;
mod envelope;
mod message;
mod scope;
mod verdict;

pub use address::{domain_of, normalize_address, strip_plus_tag};
pub use envelope::Envelope;
pub use message::{Content, Message};
pub use scope::{Scope, ScopeParseError};
pub use verdict::{
    Action, Disposition, Finding, Location, RecipientVerdict, Refusal, Severity, Verdict,
};
