//! The daemon's configuration file (`sendguard serve --config FILE`): listeners, upstreams,
//! directories, logging. Policies live in their own directory and reload by themselves.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole `serve` configuration. Every section is optional; the defaults run on loopback with
/// the shipped policies and a local maildir as the upstream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Directories and the policy engine.
    #[serde(default)]
    pub guard: GuardSection,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The send ledger.
    #[serde(default)]
    pub ledger: crate::ledger::LedgerConfig,
    /// The admin API.
    #[serde(default)]
    pub admin: crate::admin::AdminConfig,
    /// The SMTP front-end.
    #[serde(default)]
    pub smtp: crate::smtp::SmtpConfig,
    /// The HTTP proxy for send APIs (`[http]`, `[[http.routes]]`).
    #[serde(default)]
    pub http: crate::http::HttpConfig,
}

/// `[guard]`: where policies and state live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// The policies directory (default `policies`).
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// The state directory (default `state`).
    #[serde(default = "default_state")]
    pub state_dir: PathBuf,
    /// Reload policies when their files change (default on).
    #[serde(default = "yes")]
    pub watch: bool,
}

fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}

fn default_state() -> PathBuf {
    PathBuf::from("state")
}

fn yes() -> bool {
    true
}

impl Default for GuardSection {
    fn default() -> Self {
        GuardSection {
            policies: default_policies(),
            state_dir: default_state(),
            watch: true,
        }
    }
}

/// `[log]`: how the daemon logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`: one JSON object a line.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing filter such as `info` or `sendguard=debug`; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_format() -> String {
    "text".into()
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ServeConfig {
    /// Reads a configuration file.
    ///
    /// # Errors
    /// The file cannot be read or does not match the schema (with the line of the problem).
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            line: e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            }),
            message: e.message().trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c: ServeConfig = toml::from_str("").unwrap();
        assert_eq!(c.guard.policies, PathBuf::from("policies"));
        assert_eq!(c.log.format, "text");
    }

    #[test]
    fn unknown_key_names_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "[guard]\n\npolicy = \"x\"\n").unwrap();
        let e = ServeConfig::load(&p).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
