//! `GET /v1/audit?limit=N`: the audit trail of pauses, resumes, expiries and suppression edits,
//! newest first.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use super::http::{blocking, json, time, ApiError};
use super::Ctx;
use crate::state::AuditEntry;

/// Entries returned when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;

/// One entry of the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntryV1 {
    /// Sequence number (grows with time).
    pub seq: i64,
    /// When, RFC 3339.
    pub at: String,
    /// `pause`, `resume`, `expire`, or a suppression edit.
    pub action: String,
    /// The scope kind, when the entry concerns a scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The scope id, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Who did it.
    pub actor: String,
    /// The reason given.
    pub reason: String,
    /// More detail (the ramp of a resume, …).
    pub detail: String,
}

impl From<&AuditEntry> for AuditEntryV1 {
    fn from(e: &AuditEntry) -> AuditEntryV1 {
        AuditEntryV1 {
            seq: e.id,
            at: time(e.at),
            action: e.action.to_string(),
            scope: e.scope.as_ref().map(|s| s.kind().to_string()),
            id: e.scope.as_ref().and_then(|s| s.id()).map(str::to_string),
            actor: e.actor.to_string(),
            reason: e.reason.to_string(),
            detail: e.detail.to_string(),
        }
    }
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditV1 {
    /// The entries, newest first.
    pub entries: Vec<AuditEntryV1>,
}

fn parse_limit(query: &str) -> Result<usize, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "limit" {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?}: /v1/audit takes limit=N"
            )));
        }
        limit = v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit {v:?}: expected a number from 1 to {MAX_LIMIT}"
                ))
            })?;
    }
    Ok(limit)
}

pub(super) async fn get(ctx: &Ctx, query: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let limit = parse_limit(query)?;
    let guard = ctx.guard.clone();
    let entries = blocking(move || guard.audit(limit)).await?;
    json(&AuditV1 {
        entries: entries.iter().map(AuditEntryV1::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("").unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit("limit=5").unwrap(), 5);
        assert!(parse_limit("limit=0").is_err());
        assert!(parse_limit("limit=x").is_err());
        assert!(parse_limit("limit=100000").is_err());
        assert!(parse_limit("page=2").is_err());
    }
}
