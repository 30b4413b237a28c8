//! `[smtp]`: the SMTP front-end's settings.
//!
//! ```toml
//! [smtp]
//! listen = "127.0.0.1:2525"
//! upstream = "smtp+starttls://mta.internal:587"
//! max_message_size = 52428800
//! [smtp.tls]
//! cert = "/etc/sendguard/cert.pem"
//! key = "/etc/sendguard/key.pem"
//! [smtp.upstream_auth]
//! user = "relay"
//! password = "secret"
//! ```
//!
//! Passwords in this file are plaintext: keep it readable only by the daemon's user (mode 0600),
//! or give them in `password_file` entries instead.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The `[smtp]` section. Every field has a default; an empty section runs the proxy on
/// `127.0.0.1:2525` delivering into `maildir:./outbox`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Whether the SMTP front-end runs at all (default on).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:2525`; port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where accepted mail goes: `smtp://HOST:PORT`, `smtp+starttls://HOST:PORT`,
    /// `smtps://HOST:PORT` or `maildir:PATH` (default `maildir:./outbox`).
    #[serde(default = "default_upstream")]
    pub upstream: String,
    /// The name in the greeting, in EHLO replies and in the EHLO sent upstream (default: the
    /// machine's host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Largest message accepted, in bytes after dot-unstuffing (default 50 MiB), announced in
    /// the EHLO `SIZE` keyword; larger messages get `552 5.3.4`.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Recipients accepted per message (default 1000; RFC 5321 asks for at least 100). Further
    /// RCPTs get `452 4.5.3`, so the client sends them in another transaction.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Concurrent client connections (default 500); further connections get `421 4.3.2`.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long to wait for the client's next command (default `5m`, RFC 5321 4.5.3.2.7).
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long to wait for each block of message data (default `5m`).
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub data_timeout: Duration,
    /// How long connecting to the upstream may take, greeting and EHLO included (default `30s`).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// How long to wait for the upstream's reply to a command (default `5m`).
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// How long to wait for the upstream's reply after the message data (default `10m`, RFC
    /// 5321 4.5.3.2.6).
    #[serde(default = "default_data_reply_timeout", with = "humantime_serde")]
    pub upstream_data_timeout: Duration,
    /// On shutdown, how long sessions in progress may take to finish (default `30s`).
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Certificate and key for inbound STARTTLS; without them STARTTLS is not offered.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Inbound authentication (AUTH PLAIN and LOGIN); the user becomes the envelope's
    /// `auth_user`, the tenant identity when no tenant header names one.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Credentials sendguard presents to the upstream (AUTH PLAIN, only over TLS unless the
    /// upstream is on loopback).
    #[serde(default)]
    pub upstream_auth: Option<UpstreamAuth>,
    /// A PEM file of CA certificates trusted for the upstream's TLS certificate, besides the
    /// public web roots (for a private CA or a self-signed upstream).
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// Bare CR or LF in message data: `normalize` (default) turns each into CRLF, `reject`
    /// refuses the message with `550 5.5.2`.
    #[serde(default)]
    pub bare_lf: BareLineEnding,
    /// Adds an `X-Sendguard: <session id>` header at the top of every relayed message (default
    /// off: the upstream receives the message byte for byte).
    #[serde(default)]
    pub trace_header: bool,
}

/// What to do with a bare CR or LF in message data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEnding {
    /// Turn each bare CR or LF into CRLF.
    #[default]
    Normalize,
    /// Refuse the message (`550 5.5.2`).
    Reject,
}

/// PEM files for inbound STARTTLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Inbound authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse MAIL before a successful AUTH (`530 5.7.0`). Default off.
    #[serde(default)]
    pub required: bool,
    /// Offer AUTH on connections without TLS (default off: AUTH is offered only after STARTTLS,
    /// so passwords never cross the network in clear text). Turn it on for loopback-only setups.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The accepted users.
    #[serde(default)]
    pub users: Vec<AuthUser>,
}

/// One user allowed to authenticate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthUser {
    /// The user name (also the tenant identity).
    pub user: String,
    /// The password in plain text (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (first line, trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Credentials for the upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuth {
    /// The user name.
    pub user: String,
    /// The password in plain text (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_enabled() -> bool {
    true
}

fn default_listen() -> String {
    "127.0.0.1:2525".into()
}

fn default_upstream() -> String {
    "maildir:./outbox".into()
}

fn default_max_message_size() -> usize {
    50 * 1024 * 1024
}

fn default_max_recipients() -> usize {
    1000
}

fn default_max_connections() -> usize {
    500
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_data_reply_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            enabled: default_enabled(),
            listen: default_listen(),
            upstream: default_upstream(),
            hostname: None,
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_connections: default_max_connections(),
            command_timeout: default_command_timeout(),
            data_timeout: default_command_timeout(),
            upstream_connect_timeout: default_connect_timeout(),
            upstream_timeout: default_command_timeout(),
            upstream_data_timeout: default_data_reply_timeout(),
            drain_timeout: default_drain_timeout(),
            tls: None,
            auth: None,
            upstream_auth: None,
            upstream_ca: None,
            bare_lf: BareLineEnding::Normalize,
            trace_header: false,
        }
    }
}

impl SmtpConfig {
    /// The host name to announce: the configured one, else the machine's, else `localhost`.
    pub fn hostname(&self) -> String {
        if let Some(h) = self.hostname.as_deref().filter(|h| !h.trim().is_empty()) {
            return h.trim().to_string();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "localhost".into())
    }

    /// Checks the settings that serde cannot: every problem at once.
    ///
    /// # Errors
    /// One line per problem, naming the key and the value found.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.max_recipients == 0 {
            problems.push("smtp.max_recipients: must be at least 1 (found 0)".to_string());
        }
        if self.max_connections == 0 {
            problems.push("smtp.max_connections: must be at least 1 (found 0)".to_string());
        }
        if self.max_message_size == 0 {
            problems.push("smtp.max_message_size: must be at least 1 (found 0)".to_string());
        }
        if let Err(e) = self.upstream.parse::<super::UpstreamTarget>() {
            problems.push(format!("smtp.upstream: {e}"));
        }
        if let Some(auth) = &self.auth {
            if auth.users.is_empty() {
                problems.push("smtp.auth.users: no users configured".to_string());
            }
            for u in &auth.users {
                if u.password.is_some() == u.password_file.is_some() {
                    problems.push(format!(
                        "smtp.auth.users: user {:?} needs exactly one of password, password_file",
                        u.user
                    ));
                }
            }
        }
        if let Some(u) = &self.upstream_auth {
            if u.password.is_some() == u.password_file.is_some() {
                problems.push(
                    "smtp.upstream_auth: needs exactly one of password, password_file".to_string(),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Reads a password given inline or in a file.
pub(crate) fn read_password(
    inline: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<String, String> {
    if let Some(p) = inline {
        return Ok(p.clone());
    }
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .map_err(|e| format!("cannot read password file {}: {e}", path.display())),
        None => Err("no password given".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parsing() {
        let c: SmtpConfig = toml::from_str("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:2525");
        assert_eq!(c.upstream, "maildir:./outbox");
        assert_eq!(c.max_message_size, 50 * 1024 * 1024);
        assert_eq!(c.bare_lf, BareLineEnding::Normalize);
        let c: SmtpConfig = toml::from_str(
            "bare_lf = \"reject\"\ncommand_timeout = \"30s\"\n[auth]\nrequired = true\nusers = [{user = \"a\", password = \"b\"}]\n",
        )
        .unwrap();
        assert_eq!(c.bare_lf, BareLineEnding::Reject);
        assert_eq!(c.command_timeout, Duration::from_secs(30));
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<SmtpConfig>("bogus = 1").is_err());
    }

    #[test]
    fn validation_collects_every_problem() {
        let c: SmtpConfig = toml::from_str(
            "max_recipients = 0\nupstream = \"ftp://x\"\n[auth]\nusers = [{user = \"a\"}]\n",
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.contains("max_recipients"), "{e}");
        assert!(e.contains("smtp.upstream"), "{e}");
        assert!(e.contains("user \"a\""), "{e}");
    }
}
