//! The SMTP front-end: an ESMTP proxy in front of an MTA (or a local maildir).
//!
//! Clients speak ESMTP to sendguard; MAIL and RCPT are relayed to the upstream live, so its
//! per-recipient answers reach the client, after the local checks (pauses, suppression) have
//! passed. The message itself is buffered, judged by the [`Guard`](crate::Guard) at the end of
//! DATA, then either relayed upstream (its reply goes back to the client) or refused with the
//! reply the DESIGN table names, and the upstream transaction is reset. The client gets `250`
//! only after the upstream accepted the message.
//!
//! - [`codec`]: command lines, upstream replies, the DATA scanner and dot-stuffing — bytes in,
//!   values out, no I/O.
//! - [`reply`]: every reply sendguard writes, through named constructors; refusals become
//!   replies in [`SmtpReply::from_refusal`] and nowhere else.
//! - [`session`]: one client dialogue, generic over the stream.
//! - [`upstream`]: the upstream URL forms and the upstream client (SMTP, STARTTLS, implicit TLS,
//!   AUTH) and the maildir writer.
//! - [`server`]: the accept loop with a connection cap and a graceful drain.
//! - [`config`]: the `[smtp]` section of the daemon's configuration.

pub mod codec;
pub mod config;
pub mod reply;
pub mod server;
pub mod session;
mod stream;
mod tls;
pub mod upstream;

pub use config::{AuthConfig, AuthUser, BareLineEnding, SmtpConfig, TlsFiles, UpstreamAuth};
pub use reply::SmtpReply;
pub use server::{run, SmtpService};
pub use session::Session;
pub use upstream::{UpstreamError, UpstreamTarget};

/// The SMTP front-end could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    /// The upstream URL does not parse.
    #[error(transparent)]
    Upstream(#[from] upstream::TargetParseError),
    /// A certificate or key file could not be used.
    #[error("{what} {path}: {detail}")]
    Tls {
        /// Which file (`certificate`, `private key`, `upstream CA`).
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The maildir could not be created.
    #[error("cannot create maildir {path}: {source}")]
    Maildir {
        /// The maildir.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A setting is inconsistent.
    #[error("[smtp] {0}")]
    Invalid(String),
}
