//! sendguard: a send-guard for outbound email.
//!
//! It sits in front of the sending infrastructure (an MTA over SMTP, or an email service's HTTP
//! send API), inspects every message on its way out and stops the mistakes email marketers dread:
//! a campaign that must be halted now, mail to suppressed addresses, unrendered merge tags, and a
//! resumed send that restarts at full speed.
//!
//! # Layout
//! - [`model`]: `Envelope`, `Message`, `Verdict`, `Finding`, `Refusal`, `Scope` — plain data.
//! - [`policy`]: the policy engine (placeholder detection, suppression, kill switch); no I/O.
//! - [`guard`]: [`Guard`], the engine with its live state — what front-ends and embedders use.
//! - [`state`]: durable control state in SQLite.
//! - [`ratelimit`]: ramped resume.
//! - [`metrics`]: Prometheus metrics.
//! - [`admin`]: the admin API (pause, resume, status, suppressions, reload, metrics).
//! - [`alerts`]: the alert webhook told about every pause, resume and expiry.
//! - [`smtp`]: the SMTP front-end (codec, session, replies, upstream, server).
//! - [`http`]: the HTTP proxy for email services' send APIs (one translator per dialect).

#![deny(missing_docs)]

pub mod admin;
pub mod alerts;
pub mod apology;
pub mod cli;
pub mod config;
pub mod events;
pub mod guard;
pub mod http;
pub mod incident;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod policy;
pub mod quarantine;
pub mod ratelimit;
mod shared_text;
pub mod smtp;
pub mod state;

pub use guard::{Guard, GuardConfig, GuardError};
pub use model::{Envelope, Finding, Message, Refusal, Scope, Verdict};
