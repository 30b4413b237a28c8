//! Delivery events from downstream: bounces, deferrals, deliveries and complaints, in a generic
//! JSON form, SendGrid's event webhook format, and ARF (`message/feedback-report`, RFC 5965).
//!
//! Parsed events feed the [`Monitor`] (which pauses a campaign past its
//! thresholds) and the suppression list: complainers, unsubscribers and hard bounces are
//! suppressed at once ([`ingest`]).
//!
//! The generic JSON form, one object or an array of them:
//!
//! ```json
//! {"type": "bounce", "recipient": "anna@example.test", "campaign": "spring",
//!  "bounce_class": "hard", "at": "2026-11-28T10:00:00Z", "reason": "5.1.1 unknown user"}
//! ```
//!
//! `type` is `delivered`, `deferred`, `bounce`, `complaint` or `unsubscribe`; `bounce_class`
//! (`hard` default, or `soft`) only for bounces; `at` is RFC 3339 or Unix seconds (default:
//! when it arrives); `campaign` and `reason` are optional.

mod arf;
pub mod http;
mod sendgrid;

pub use arf::parse_arf;
pub use sendgrid::parse_sendgrid;

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::normalize_address;
use crate::monitor::Monitor;
use crate::Guard;

/// What happened downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The receiving server accepted the message.
    Delivered,
    /// Delivery was delayed (a temporary failure).
    Deferred,
    /// Delivery failed (see the bounce class).
    Bounce,
    /// The sending service did not attempt delivery (its own suppression, invalid address).
    Dropped,
    /// The recipient reported the message as spam.
    Complaint,
    /// The recipient unsubscribed.
    Unsubscribe,
}

/// Whether a bounce is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BounceClass {
    /// Permanent: the address does not exist or refuses mail for good.
    Hard,
    /// Temporary: mailbox full, blocked for now, content refused.
    Soft,
}

/// One delivery event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    /// What happened.
    pub kind: EventKind,
    /// The recipient, normalised.
    pub recipient: String,
    /// The campaign, when the event names it.
    pub campaign: Option<String>,
    /// For bounces: hard or soft.
    pub bounce_class: Option<BounceClass>,
    /// When it happened.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    /// The reason given (SMTP reply, feedback type).
    pub reason: Option<String>,
    /// Where it came from: `generic`, `sendgrid`, `arf`.
    pub source: String,
}

impl DeliveryEvent {
    /// Whether the recipient must be suppressed: complaints, unsubscribes and hard bounces.
    pub fn suppresses(&self) -> bool {
        matches!(self.kind, EventKind::Complaint | EventKind::Unsubscribe)
            || (self.kind == EventKind::Bounce && self.bounce_class == Some(BounceClass::Hard))
    }
}

/// An events body could not be parsed; nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventsError(pub String);

/// Parses a JSON body: SendGrid's event webhook when it is an array of objects with an `event`
/// field, the generic form otherwise.
///
/// # Errors
/// Malformed JSON, or an event without a recipient or with an unknown type (naming its index).
pub fn parse_json(body: &[u8]) -> Result<Vec<DeliveryEvent>, EventsError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| EventsError(format!("events body is not JSON: {e}")))?;
    let is_sendgrid = value
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|e| e.get("event").is_some()));
    if is_sendgrid {
        parse_sendgrid(&value)
    } else {
        parse_generic(&value)
    }
}

/// Parses the generic JSON form (one object or an array).
///
/// # Errors
/// An event without a recipient, with an unknown type or bounce class, or a bad `at`.
pub fn parse_generic(value: &serde_json::Value) -> Result<Vec<DeliveryEvent>, EventsError> {
    let items: Vec<&serde_json::Value> = match value {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Object(_) => vec![value],
        _ => {
            return Err(EventsError(
                "events body must be an object or an array of objects".into(),
            ))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let err = |what: String| EventsError(format!("event {i}: {what}"));
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::trim).filter(|x| !x.is_empty());
            let kind = match s("type") {
                Some("delivered") => EventKind::Delivered,
                Some("deferred") => EventKind::Deferred,
                Some("bounce") => EventKind::Bounce,
                Some("complaint") => EventKind::Complaint,
                Some("unsubscribe") => EventKind::Unsubscribe,
                Some("dropped") => EventKind::Dropped,
                Some(other) => return Err(err(format!(
                    "unknown type {other:?}: expected delivered, deferred, bounce, complaint, unsubscribe or dropped"
                ))),
                None => return Err(err("missing \"type\"".into())),
            };
            let recipient = s("recipient").ok_or_else(|| err("missing \"recipient\"".into()))?;
            if !recipient.contains('@') {
                return Err(err(format!("recipient {recipient:?} is not an address")));
            }
            let bounce_class = match (kind, s("bounce_class")) {
                (EventKind::Bounce, None | Some("hard")) => Some(BounceClass::Hard),
                (EventKind::Bounce, Some("soft")) => Some(BounceClass::Soft),
                (EventKind::Bounce, Some(other)) => {
                    return Err(err(format!("unknown bounce_class {other:?}: expected hard or soft")))
                }
                _ => None,
            };
            let at = match v.get("at") {
                None | Some(serde_json::Value::Null) => SystemTime::now(),
                Some(t) => parse_time(t).ok_or_else(|| err(format!("cannot parse \"at\" {t}")))?,
            };
            Ok(DeliveryEvent {
                kind,
                recipient: normalize_address(recipient),
                campaign: s("campaign").map(str::to_string),
                bounce_class,
                at,
                reason: s("reason").map(str::to_string),
                source: "generic".into(),
            })
        })
        .collect()
}

/// A time as RFC 3339 text or Unix seconds.
pub(crate) fn parse_time(v: &serde_json::Value) -> Option<SystemTime> {
    match v {
        serde_json::Value::Number(n) => {
            let secs = n.as_f64()?;
            (secs.is_finite() && secs >= 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
        }
        serde_json::Value::String(s) => {
            humantime::parse_rfc3339_weak(s.trim()).ok().or_else(|| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .map(|x| UNIX_EPOCH + Duration::from_secs_f64(x))
            })
        }
        _ => None,
    }
}

/// Parses a body by its content type: `application/json` (generic or SendGrid),
/// `message/rfc822` or `multipart/report` (ARF).
///
/// # Errors
/// An unsupported content type, or what the parser found wrong.
pub fn parse_body(
    content_type: &str,
    body: &[u8],
    campaign_headers: &[String],
) -> Result<Vec<DeliveryEvent>, EventsError> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/json" | "text/json" | "" => parse_json(body),
        "message/rfc822" | "multipart/report" => Ok(vec![parse_arf(body, campaign_headers)?]),
        other => Err(EventsError(format!(
            "unsupported content type {other:?}: expected application/json, message/rfc822 or multipart/report"
        ))),
    }
}

/// What [`ingest`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    /// Events taken.
    pub events: usize,
    /// Recipients suppressed because of them.
    pub suppressed: usize,
    /// Campaigns the monitor paused because of them, with the reason.
    pub paused: Vec<String>,
    /// Suppressions that failed (the state store), one line each.
    pub errors: Vec<String>,
}

/// Applies events: suppresses complainers, unsubscribers and hard bounces (actor `events`), and
/// feeds the monitor, which may pause campaigns. Blocking (the state store): call it from
/// `spawn_blocking` in async code.
pub fn ingest(guard: &Guard, monitor: &Monitor, events: &[DeliveryEvent]) -> IngestReport {
    let mut report = IngestReport {
        events: events.len(),
        ..IngestReport::default()
    };
    for ev in events {
        if ev.suppresses() && guard.suppression(&ev.recipient).is_none() {
            match guard.suppress(&ev.recipient, "events") {
                Ok(_) => {
                    report.suppressed += 1;
                    tracing::info!(recipient = %ev.recipient, kind = ?ev.kind, source = %ev.source, "suppressed by a delivery event");
                }
                Err(e) => report
                    .errors
                    .push(format!("cannot suppress {}: {e}", ev.recipient)),
            }
        }
        if let Some(trip) = monitor.record_event(ev, SystemTime::now()) {
            report
                .paused
                .push(format!("{}: {}", trip.campaign, trip.reason));
        }
    }
    report
}
