//! The quarantine: messages refused with the action `quarantine` are kept for inspection, each as
//! `ID.eml` (the raw message) plus `ID.json` (envelope, findings, refusal) in the `quarantine`
//! folder of the state directory.
//!
//! The quarantine has a size cap (`[quarantine] max_bytes`, default 1 GiB, and `max_messages`).
//! When a message would not fit, it is **not** stored and [`Quarantine::store`] fails with
//! [`QuarantineError::Full`]: the front-end must then answer with a temporary failure (SMTP
//! `451 4.3.0`, HTTP `503`) so the sender keeps the message. Nothing already kept is ever
//! deleted to make room — a quarantined message is evidence, and dropping it silently would lose
//! mail.
//!
//! Operators list, show, release and drop quarantined messages (`sendguard quarantine …`, admin
//! API below). A release re-injects the message to the upstream (SMTP with lettre, or a maildir),
//! skipping recipients suppressed since, and records each recipient's outcome in the ledger
//! (front-end `release`).
//!
//! | method & path | does |
//! |---|---|
//! | `GET /v1/quarantine` | list kept messages, newest first |
//! | `GET /v1/quarantine/{id}` | one entry (envelope, findings, refusal, size) |
//! | `GET /v1/quarantine/{id}/raw` | the message itself, `message/rfc822` |
//! | `POST /v1/quarantine/{id}/release` | re-inject to the upstream; answers the per-recipient outcomes |
//! | `DELETE /v1/quarantine/{id}` | drop it |

// Handlers return early with a ready error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::incident::http::{error, json, method_not_allowed, not_found, typed};
use crate::ledger::{Ledger, LedgerRecord, Outcome};
use crate::model::{Envelope, Finding, Message, Refusal, Verdict};
use crate::Guard;

/// `[quarantine]`: where and how much is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantinePolicy {
    /// Total size of kept messages (default 1 GiB). Beyond it new messages are refused
    /// temporarily instead of kept.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Most messages kept (default 100,000).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
}

fn default_max_bytes() -> u64 {
    1 << 30
}

fn default_max_messages() -> usize {
    100_000
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        QuarantinePolicy {
            max_bytes: default_max_bytes(),
            max_messages: default_max_messages(),
        }
    }
}

/// Why a quarantine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// The quarantine is full: the message was not kept; answer with a temporary failure.
    #[error("quarantine is full ({used} of {max} bytes, {count} messages): message of {size} bytes not kept")]
    Full {
        /// Bytes kept.
        used: u64,
        /// The cap.
        max: u64,
        /// Messages kept.
        count: usize,
        /// The message's size.
        size: u64,
    },
    /// No message with this id.
    #[error("no quarantined message {0:?}")]
    NotFound(String),
    /// A file of the quarantine could not be read or written.
    #[error("quarantine {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The release failed: the message stays in the quarantine.
    #[error("release of {id} failed: {detail}")]
    Release {
        /// The message.
        id: String,
        /// What went wrong.
        detail: String,
    },
}

/// A quarantined message's sidecar: everything but the bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// The id (`q-…`).
    pub id: String,
    /// When it was kept.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// The campaign.
    pub campaign: Option<String>,
    /// The tenant.
    pub tenant: Option<String>,
    /// Why it was refused.
    pub refusal: Option<Refusal>,
    /// What the rules noticed.
    pub findings: Vec<Finding>,
    /// The message's size in bytes.
    pub size: u64,
    /// The front-end that received it.
    pub front_end: String,
    /// The Subject header, for listings.
    pub subject: Option<String>,
}

/// Where a release goes: the same upstream forms `serve` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `smtp://host:port` (no TLS), `smtp+starttls://host:port` or `smtps://host:port`.
    Smtp {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// `none`, `starttls` or `implicit`.
        tls: UpstreamTls,
    },
    /// `maildir:PATH`.
    Maildir(PathBuf),
}

/// TLS towards an SMTP upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTls {
    /// Plain SMTP.
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

impl std::str::FromStr for Upstream {
    type Err = String;

    /// Parses `smtp://host:port`, `smtp+starttls://host:port`, `smtps://host:port` or
    /// `maildir:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("maildir:") {
            if p.is_empty() {
                return Err(format!("cannot parse upstream {s:?}: maildir needs a path"));
            }
            return Ok(Upstream::Maildir(PathBuf::from(p)));
        }
        let (tls, rest, default_port) = if let Some(r) = s.strip_prefix("smtp+starttls://") {
            (UpstreamTls::Starttls, r, 587)
        } else if let Some(r) = s.strip_prefix("smtps://") {
            (UpstreamTls::Implicit, r, 465)
        } else if let Some(r) = s.strip_prefix("smtp://") {
            (UpstreamTls::None, r, 25)
        } else {
            return Err(format!(
                "cannot parse upstream {s:?}: expected smtp://, smtps://, smtp+starttls:// or maildir:"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("cannot parse upstream {s:?}: bad port {p:?}"))?,
            ),
            None => (rest, default_port),
        };
        if host.is_empty() {
            return Err(format!("cannot parse upstream {s:?}: missing host"));
        }
        Ok(Upstream::Smtp {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls,
        })
    }
}

/// One recipient's outcome of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasedRecipient {
    /// The recipient.
    pub recipient: String,
    /// `relayed`, `suppressed`, `upstream-reject`, …
    pub outcome: Outcome,
    /// The upstream's reply, when there was one.
    pub reply: Option<String>,
}

/// What a release did.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseReport {
    /// The message.
    pub id: String,
    /// Per recipient.
    pub recipients: Vec<ReleasedRecipient>,
}

/// The quarantine folder.
#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
    policy: Mutex<QuarantinePolicy>,
    /// Serialises stores, drops and size accounting.
    lock: Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuarantineError + '_ {
    move |source| QuarantineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn valid_id(id: &str) -> bool {
    id.starts_with("q-")
        && id.len() < 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Quarantine {
    /// Opens (creating) the `quarantine` folder in the state directory.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn open(state_dir: &Path, policy: QuarantinePolicy) -> Result<Quarantine, QuarantineError> {
        let dir = state_dir.join("quarantine");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Quarantine {
            dir,
            policy: Mutex::new(policy),
            lock: Mutex::new(()),
        })
    }

    /// Replaces the policy (on reload).
    pub fn set_policy(&self, policy: QuarantinePolicy) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn usage(&self) -> Result<(u64, usize), QuarantineError> {
        let mut bytes = 0;
        let mut count = 0;
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".eml") && !name.starts_with('.') {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                count += 1;
            }
        }
        Ok((bytes, count))
    }

    /// Keeps a refused message (blocking file I/O: call it from `spawn_blocking`). The sidecar
    /// is written last, so a listing never shows a half-written entry.
    ///
    /// # Errors
    /// [`QuarantineError::Full`] when it does not fit (answer with a temporary failure), or an
    /// I/O error (likewise).
    pub fn store(
        &self,
        env: &Envelope,
        msg: &Message,
        verdict: &Verdict,
        front_end: &str,
    ) -> Result<QuarantineEntry, QuarantineError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let policy = self
            .policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let size = msg.len() as u64;
        let (used, count) = self.usage()?;
        if used + size > policy.max_bytes || count >= policy.max_messages {
            tracing::warn!(
                used,
                max = policy.max_bytes,
                count,
                size,
                "quarantine full: message refused temporarily instead of kept"
            );
            return Err(QuarantineError::Full {
                used,
                max: policy.max_bytes,
                count,
                size,
            });
        }
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let id = format!("q-{millis}-{:08x}", rand::random::<u32>());
        let entry = QuarantineEntry {
            id: id.clone(),
            at: SystemTime::now(),
            sender: env.sender.clone(),
            recipients: env.recipients.clone(),
            campaign: env.campaign.clone(),
            tenant: env.effective_tenant().map(str::to_string),
            refusal: verdict.refusal.clone(),
            findings: verdict.findings.clone(),
            size,
            front_end: front_end.to_string(),
            subject: msg.header("Subject"),
        };
        let eml = self.dir.join(format!("{id}.eml"));
        write_atomic(&self.dir, &eml, msg.raw())?;
        let sidecar = self.dir.join(format!("{id}.json"));
        let text = serde_json::to_vec_pretty(&entry).map_err(|e| QuarantineError::Io {
            path: sidecar.clone(),
            source: std::io::Error::other(e),
        })?;
        if let Err(e) = write_atomic(&self.dir, &sidecar, &text) {
            let _ = std::fs::remove_file(&eml);
            return Err(e);
        }
        tracing::info!(%id, campaign = ?entry.campaign, size, "message quarantined");
        Ok(entry)
    }

    /// Every kept message, newest first (blocking).
    ///
    /// # Errors
    /// The folder cannot be read.
    pub fn list(&self) -> Result<Vec<QuarantineEntry>, QuarantineError> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) {
                match self.get(id) {
                    Ok(entry) => v.push(entry),
                    Err(err) => tracing::warn!(error = %err, "unreadable quarantine entry skipped"),
                }
            }
        }
        v.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
        Ok(v)
    }

    /// One entry (blocking).
    ///
    /// # Errors
    /// No such message, or its sidecar cannot be read.
    pub fn get(&self, id: &str) -> Result<QuarantineEntry, QuarantineError> {
        if !valid_id(id) {
            return Err(QuarantineError::NotFound(id.to_string()));
        }
        let path = self.dir.join(format!("{id}.json"));
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(QuarantineError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&text).map_err(|e| QuarantineError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// The raw message (blocking).
    ///
    /// # Errors
    /// No such message, or it cannot be read.
    pub fn raw(&self, id: &str) -> Result<Vec<u8>, QuarantineError> {
        self.get(id)?;
        let path = self.dir.join(format!("{id}.eml"));
        std::fs::read(&path).map_err(io(&path))
    }

    /// Drops a message for good (blocking). Returns the entry that was dropped.
    ///
    /// # Errors
    /// No such message, or the files cannot be removed.
    pub fn discard(&self, id: &str) -> Result<QuarantineEntry, QuarantineError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let entry = self.get(id)?;
        let sidecar = self.dir.join(format!("{id}.json"));
        std::fs::remove_file(&sidecar).map_err(io(&sidecar))?;
        let eml = self.dir.join(format!("{id}.eml"));
        std::fs::remove_file(&eml).map_err(io(&eml))?;
        tracing::info!(%id, "quarantined message dropped");
        Ok(entry)
    }

    /// Re-injects a message to the upstream, to its recipients minus those suppressed now, and
    /// records every recipient's outcome in the ledger (front-end `release`). The message leaves
    /// the quarantine when at least one recipient was accepted or every recipient was skipped;
    /// otherwise it stays.
    ///
    /// # Errors
    /// No such message, the upstream could not be reached or refused every recipient (the
    /// message stays).
    pub async fn release(
        &self,
        id: &str,
        upstream: &Upstream,
        guard: &Guard,
        ledger: Option<&Ledger>,
    ) -> Result<ReleaseReport, QuarantineError> {
        let entry = self.get(id)?;
        let raw = self.raw(id)?;
        let msg = Message::new(raw.clone());
        let mut env = Envelope::new(entry.sender.clone());
        env.campaign = entry.campaign.clone();
        env.tenant = entry.tenant.clone();
        let mut report = ReleaseReport {
            id: id.to_string(),
            recipients: Vec::new(),
        };
        let mut send_to = Vec::new();
        for r in &entry.recipients {
            if let Some(m) = guard.suppression(r) {
                report.recipients.push(ReleasedRecipient {
                    recipient: r.clone(),
                    outcome: Outcome::Suppressed,
                    reply: Some(format!("suppressed ({})", m.entry)),
                });
            } else {
                send_to.push(r.clone());
            }
        }
        if !send_to.is_empty() {
            let (outcome, code, text) = deliver(upstream, &entry.sender, &send_to, &raw)
                .await
                .map_err(|detail| QuarantineError::Release {
                    id: id.to_string(),
                    detail,
                })?;
            for r in send_to {
                report.recipients.push(ReleasedRecipient {
                    recipient: r,
                    outcome,
                    reply: Some(format!("{code} {text}")),
                });
            }
        }
        if let Some(ledger) = ledger {
            let recs = report.recipients.iter().map(|r| {
                let mut rec = LedgerRecord::new(r.outcome, &env, &r.recipient, "release")
                    .with_message(&msg)
                    .with_findings(&entry.findings);
                rec.reply_text = r.reply.clone();
                if r.outcome == Outcome::Suppressed {
                    rec.refusal = Some("suppressed".into());
                }
                rec
            });
            // Collected first: a borrowing iterator held across the await would make this
            // future not `Send` for every lifetime.
            let recs: Vec<LedgerRecord> = recs.collect();
            if let Err(e) = ledger.record(recs).await {
                tracing::error!(%id, error = %e, "release not recorded in the ledger");
            }
        }
        let accepted = report
            .recipients
            .iter()
            .any(|r| r.outcome == Outcome::Relayed);
        let all_skipped = report
            .recipients
            .iter()
            .all(|r| r.outcome == Outcome::Suppressed);
        if accepted || all_skipped {
            let _ = self.discard(id);
            tracing::info!(%id, "quarantined message released");
            Ok(report)
        } else {
            Err(QuarantineError::Release {
                id: id.to_string(),
                detail: report
                    .recipients
                    .first()
                    .and_then(|r| r.reply.clone())
                    .unwrap_or_else(|| "no recipients".into()),
            })
        }
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), QuarantineError> {
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Sends to the upstream; returns the outcome, the reply code and text.
async fn deliver(
    upstream: &Upstream,
    sender: &str,
    recipients: &[String],
    raw: &[u8],
) -> Result<(Outcome, u16, String), String> {
    match upstream {
        Upstream::Maildir(dir) => {
            let dir = dir.clone();
            let raw = raw.to_vec();
            tokio::task::spawn_blocking(move || write_maildir(&dir, &raw))
                .await
                .map_err(|e| format!("maildir task failed: {e}"))??;
            Ok((Outcome::Relayed, 250, "2.0.0 written to maildir".into()))
        }
        Upstream::Smtp { host, port, tls } => {
            use lettre::address::Envelope as LEnvelope;
            use lettre::transport::smtp::client::{Tls, TlsParameters};
            use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
            let from = if sender.is_empty() {
                None
            } else {
                Some(
                    sender
                        .parse()
                        .map_err(|e| format!("sender {sender:?} is not an address: {e}"))?,
                )
            };
            let to = recipients
                .iter()
                .map(|r| {
                    r.parse()
                        .map_err(|e| format!("recipient {r:?} is not an address: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let envelope = LEnvelope::new(from, to).map_err(|e| format!("envelope: {e}"))?;
            let params =
                || TlsParameters::new(host.clone()).map_err(|e| format!("tls for {host}: {e}"));
            let tls = match tls {
                UpstreamTls::None => Tls::None,
                UpstreamTls::Starttls => Tls::Required(params()?),
                UpstreamTls::Implicit => Tls::Wrapper(params()?),
            };
            let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
                .port(*port)
                .tls(tls)
                .timeout(Some(std::time::Duration::from_secs(60)))
                .build();
            match transport.send_raw(&envelope, raw).await {
                Ok(resp) => {
                    let code = resp.code().to_string().parse().unwrap_or(250);
                    let text: Vec<&str> = resp.message().collect();
                    Ok((Outcome::from_smtp_code(code), code, text.join(" ")))
                }
                Err(e) => match e.status() {
                    Some(code) => {
                        let code: u16 = code.to_string().parse().unwrap_or(451);
                        Ok((Outcome::from_smtp_code(code), code, e.to_string()))
                    }
                    None => Err(format!("upstream {host}:{port} unreachable: {e}")),
                },
            }
        }
    }
}

fn write_maildir(dir: &Path, raw: &[u8]) -> Result<(), String> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("cannot create maildir {}: {e}", dir.display()))?;
    }
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let name = format!(
        "{millis}.R{:08x}.P{}.sendguard-release",
        rand::random::<u32>(),
        std::process::id()
    );
    let tmp = dir.join("tmp").join(&name);
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(raw)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let new = dir.join("new").join(&name);
    std::fs::rename(&tmp, &new).map_err(|e| format!("cannot move to {}: {e}", new.display()))
}

/// What the quarantine handlers need besides the quarantine.
#[derive(Debug, Clone)]
pub struct ReleaseTarget {
    /// The guard (suppression checks).
    pub guard: Guard,
    /// The ledger releases are recorded in.
    pub ledger: Option<Ledger>,
    /// Where releases go.
    pub upstream: Upstream,
}

fn quarantine_error(e: QuarantineError) -> Response<Full<Bytes>> {
    let status = match &e {
        QuarantineError::NotFound(_) => StatusCode::NOT_FOUND,
        QuarantineError::Release { .. } => StatusCode::BAD_GATEWAY,
        QuarantineError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
        QuarantineError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

async fn run_blocking(
    f: impl FnOnce() -> Response<Full<Bytes>> + Send + 'static,
) -> Response<Full<Bytes>> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("task failed: {e}"),
        )
    })
}

fn answer<T: Serialize>(r: Result<T, QuarantineError>) -> Response<Full<Bytes>> {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => quarantine_error(e),
    }
}

/// Handles an authenticated request under `/v1/quarantine`; `rest` is the path after it, split
/// on `/` without empty segments.
pub async fn handle(
    q: &std::sync::Arc<Quarantine>,
    target: &ReleaseTarget,
    req: Request<Bytes>,
    rest: &[&str],
) -> Response<Full<Bytes>> {
    let q2 = q.clone();
    let id = rest.first().map(|s| s.to_string()).unwrap_or_default();
    match (req.method(), rest) {
        (&Method::GET, []) => run_blocking(move || answer(q2.list())).await,
        (&Method::GET, [_]) => run_blocking(move || answer(q2.get(&id))).await,
        (&Method::GET, [_, "raw"]) => {
            run_blocking(move || match q2.raw(&id) {
                Ok(v) => typed("message/rfc822", v),
                Err(e) => quarantine_error(e),
            })
            .await
        }
        (&Method::DELETE, [_]) => run_blocking(move || answer(q2.discard(&id))).await,
        (&Method::POST, [_, "release"]) => answer(
            q.release(&id, &target.upstream, &target.guard, target.ledger.as_ref())
                .await,
        ),
        (_, [] | [_] | [_, "raw" | "release"]) => method_not_allowed(),
        _ => not_found(&format!("/v1/quarantine/{}", rest.join("/"))),
    }
}
