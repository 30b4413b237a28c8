//! `GET /v1/pauses`, `PUT /v1/pauses/{scope}/{id}` (pause), `DELETE /v1/pauses/{scope}/{id}`
//! (resume, optionally on a ramp), and the same for `/v1/pauses/global`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::Response;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::http::{blocking, json, read_json_opt, time, ApiError};
use super::Ctx;
use crate::model::Scope;
use crate::policy::kill_switch::Pause;
use crate::ratelimit::{RampSpec, RampStatus};

/// Body of `PUT /v1/pauses/…` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequestV1 {
    /// Why (shown in status, the audit trail, alerts and the refusals senders get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Lift the pause by itself after this long: `30s`, `10m`, `2h`, `1d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// Body of `DELETE /v1/pauses/…` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequestV1 {
    /// Resume on a ramp instead of at full speed (without one, the policies' default ramp
    /// applies, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampRequestV1>,
}

/// A ramp: the allowed rate grows from `from` to `to` over `over`, then the limit ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampRequestV1 {
    /// Starting rate: `N/s`, `N/m` or `N/h`.
    pub from: String,
    /// Final rate.
    pub to: String,
    /// How long the ramp lasts: `30s`, `10m`, `2h`, `1d`.
    pub over: String,
}

impl RampRequestV1 {
    /// The ramp in the CLI form `FROM..TO/OVER`.
    pub fn to_spec_string(&self) -> String {
        format!(
            "{}..{}/{}",
            self.from.trim(),
            self.to.trim(),
            self.over.trim()
        )
    }

    /// Splits the CLI form `FROM..TO/OVER` (e.g. `10/s..500/s/30m`).
    ///
    /// # Errors
    /// The text does not have that shape.
    pub fn parse_cli(s: &str) -> Result<RampRequestV1, String> {
        let bad =
            || format!("cannot parse ramp {s:?}: expected FROM..TO/OVER, e.g. 10/s..500/s/30m");
        let (from, rest) = s.split_once("..").ok_or_else(bad)?;
        let (to, over) = rest.rsplit_once('/').ok_or_else(bad)?;
        if from.trim().is_empty() || to.trim().is_empty() || over.trim().is_empty() {
            return Err(bad());
        }
        Ok(RampRequestV1 {
            from: from.trim().to_string(),
            to: to.trim().to_string(),
            over: over.trim().to_string(),
        })
    }
}

/// A pause as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseV1 {
    /// `global`, `campaign`, `tenant`, `sender` or `domain`.
    pub scope: String,
    /// The campaign, tenant, sender (address or `@domain`) or recipient domain; absent for
    /// global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why.
    pub reason: String,
    /// Who paused (`sendguard` for the automatic trip).
    pub actor: String,
    /// When, RFC 3339.
    pub created_at: String,
    /// When it lifts by itself, RFC 3339; absent when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl From<&Pause> for PauseV1 {
    fn from(p: &Pause) -> PauseV1 {
        PauseV1 {
            scope: p.scope.kind().to_string(),
            id: p.scope.id().map(str::to_string),
            reason: p.reason.clone(),
            actor: p.actor.clone(),
            created_at: time(p.created_at),
            expires_at: p.expires_at.map(time),
        }
    }
}

/// `GET /v1/pauses`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PausesV1 {
    /// The pauses in force.
    pub pauses: Vec<PauseV1>,
}

/// A ramp in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampV1 {
    /// The scope kind.
    pub scope: String,
    /// The scope id; absent for global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The ramp, `FROM..TO/OVER`.
    pub spec: String,
    /// The rate allowed now, messages per second.
    pub current_per_second: f64,
}

impl From<&RampStatus> for RampV1 {
    fn from(r: &RampStatus) -> RampV1 {
        RampV1 {
            scope: r.scope.kind().to_string(),
            id: r.scope.id().map(str::to_string),
            spec: r.spec.to_string(),
            current_per_second: r.rate_per_second,
        }
    }
}

/// `DELETE /v1/pauses/…`: the pause that was lifted and the ramp the scope resumes on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeV1 {
    /// The pause that was lifted.
    pub resumed: PauseV1,
    /// The ramp now in progress for the scope, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampV1>,
}

/// The scope a `/v1/pauses/{scope}/{id}` path names: `404` for an unknown kind, `400` for a
/// malformed id.
fn scope_of(kind: &str, id: Option<&str>) -> Result<Scope, ApiError> {
    const KINDS: [&str; 4] = ["campaign", "tenant", "sender", "domain"];
    match id {
        None => Ok(Scope::Global),
        Some(_) if !KINDS.contains(&kind) => Err(ApiError::not_found(format!(
            "unknown scope {kind:?}: expected campaign, tenant, sender, domain (or /v1/pauses/global)"
        ))),
        Some(id) => {
            Scope::from_parts(kind, Some(id)).map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

/// Parses a duration (`30s`, `10m`, `2h`, `1d`) given for `what`.
pub(crate) fn parse_duration(what: &str, s: &str) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "{what} {s:?}: {e}; expected a duration such as 30s, 10m, 2h, 1d"
        ))
    })?;
    if d.is_zero() {
        return Err(ApiError::bad_request(format!(
            "{what} {s:?}: must be longer than zero"
        )));
    }
    Ok(d)
}

pub(super) fn list(ctx: &Ctx) -> Result<Response<Full<Bytes>>, ApiError> {
    json(&PausesV1 {
        pauses: ctx.guard.pauses().iter().map(PauseV1::from).collect(),
    })
}

pub(super) async fn put(
    ctx: &Ctx,
    kind: &str,
    id: Option<&str>,
    body: Incoming,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let scope = scope_of(kind, id)?;
    let req: PauseRequestV1 = read_json_opt(body, "pause").await?;
    let ttl = req
        .ttl
        .as_deref()
        .map(|t| parse_duration("ttl", t))
        .transpose()?;
    let reason = req.reason.unwrap_or_default();
    if reason.len() > 1000 {
        return Err(ApiError::bad_request("reason: at most 1000 characters"));
    }
    let guard = ctx.guard.clone();
    let actor = ctx.actor.clone();
    let pause = blocking(move || guard.pause(scope, &reason, &actor, ttl)).await?;
    json(&PauseV1::from(&pause))
}

pub(super) async fn delete(
    ctx: &Ctx,
    kind: &str,
    id: Option<&str>,
    body: Incoming,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let scope = scope_of(kind, id)?;
    let req: ResumeRequestV1 = read_json_opt(body, "resume").await?;
    let ramp = match &req.ramp {
        None => None,
        Some(r) => {
            let text = r.to_spec_string();
            Some(
                text.parse::<RampSpec>()
                    .map_err(|e| ApiError::bad_request(format!("ramp: {e}")))?,
            )
        }
    };
    let guard = ctx.guard.clone();
    let actor = ctx.actor.clone();
    let s = scope.clone();
    let lifted = blocking(move || guard.resume(&s, &actor, ramp)).await?;
    let Some(pause) = lifted else {
        return Err(ApiError::not_found(format!("{scope} is not paused")));
    };
    let ramp = ctx
        .guard
        .ramps()
        .iter()
        .find(|r| r.scope == scope)
        .map(RampV1::from);
    json(&ResumeV1 {
        resumed: PauseV1::from(&pause),
        ramp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_ramp_splits() {
        let r = RampRequestV1::parse_cli("10/s..500/s/30m").unwrap();
        assert_eq!(r.from, "10/s");
        assert_eq!(r.to, "500/s");
        assert_eq!(r.over, "30m");
        assert_eq!(r.to_spec_string(), "10/s..500/s/30m");
        assert!(RampRequestV1::parse_cli("10/s").is_err());
        assert!(RampRequestV1::parse_cli("..500/s/30m").is_err());
    }

    #[test]
    fn scopes_from_paths() {
        assert_eq!(scope_of("global", None).unwrap(), Scope::Global);
        assert_eq!(
            scope_of("sender", Some("@Example.TEST")).unwrap(),
            Scope::Sender("@example.test".into())
        );
        assert!(scope_of("bogus", Some("x")).is_err());
        assert!(scope_of("sender", Some("nobody")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("ttl", "2h").unwrap(),
            Duration::from_secs(7200)
        );
        assert_eq!(
            parse_duration("ttl", "1d").unwrap(),
            Duration::from_secs(86400)
        );
        assert!(parse_duration("ttl", "soon").is_err());
        assert!(parse_duration("ttl", "0s").is_err());
    }
}
