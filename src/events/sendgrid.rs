//! SendGrid's event webhook: a JSON array of events.
//!
//! `bounce` (with `type: bounce` for a permanent failure, `type: blocked` for a temporary one),
//! `dropped`, `deferred`, `delivered`, `spamreport`, `unsubscribe`, `group_unsubscribe`; each
//! with `email`, `timestamp` (Unix seconds) and the message's custom args at top level (the
//! campaign from `campaign_id`, else the first `category`). Engagement events (`open`, `click`,
//! `processed`, …) are skipped.

use super::{parse_time, BounceClass, DeliveryEvent, EventKind, EventsError};
use crate::model::normalize_address;
use std::time::SystemTime;

/// Parses a SendGrid event webhook body (already decoded JSON).
///
/// # Errors
/// Not an array, or an event of a kind that matters without an `email` (naming its index).
pub fn parse_sendgrid(value: &serde_json::Value) -> Result<Vec<DeliveryEvent>, EventsError> {
    let items = value
        .as_array()
        .ok_or_else(|| EventsError("a SendGrid event webhook body is a JSON array".into()))?;
    let mut out = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let s = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::trim)
                .filter(|x| !x.is_empty())
        };
        let event = s("event").unwrap_or("");
        let (kind, class) = match event {
            "delivered" => (EventKind::Delivered, None),
            "deferred" => (EventKind::Deferred, None),
            "bounce" => match s("type") {
                Some("blocked") => (EventKind::Bounce, Some(BounceClass::Soft)),
                _ => (EventKind::Bounce, Some(BounceClass::Hard)),
            },
            "blocked" => (EventKind::Bounce, Some(BounceClass::Soft)),
            "dropped" => (EventKind::Dropped, None),
            "spamreport" => (EventKind::Complaint, None),
            "unsubscribe" | "group_unsubscribe" => (EventKind::Unsubscribe, None),
            _ => continue,
        };
        let email = s("email").ok_or_else(|| {
            EventsError(format!("SendGrid event {i} ({event}): missing \"email\""))
        })?;
        if !email.contains('@') {
            return Err(EventsError(format!(
                "SendGrid event {i}: email {email:?} is not an address"
            )));
        }
        let campaign = s("campaign_id")
            .map(str::to_string)
            .or_else(|| match v.get("category") {
                Some(serde_json::Value::String(c)) => Some(c.clone()),
                Some(serde_json::Value::Array(a)) => {
                    a.first().and_then(|c| c.as_str()).map(str::to_string)
                }
                _ => None,
            });
        out.push(DeliveryEvent {
            kind,
            recipient: normalize_address(email),
            campaign,
            bounce_class: class,
            at: v
                .get("timestamp")
                .and_then(parse_time)
                .unwrap_or_else(SystemTime::now),
            reason: s("reason").or(s("response")).map(str::to_string),
            source: "sendgrid".into(),
        });
    }
    Ok(out)
}
