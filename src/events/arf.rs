//! ARF complaint reports (RFC 5965): `multipart/report; report-type=feedback-report` with a
//! human-readable part, a `message/feedback-report` part (`Feedback-Type`, `Original-Rcpt-To`,
//! …) and the original message or its headers, where the campaign id is found.

use mail_parser::{MessageParser, MimeHeaders, PartType};
use std::time::SystemTime;

use super::{DeliveryEvent, EventKind, EventsError};
use crate::model::{normalize_address, Message};

/// Parses an ARF report into one event: `abuse` and `fraud` become complaints, `opt-out`
/// (and `unsubscribe`) unsubscribes; other feedback types (`virus`, `other`, `not-spam`) are
/// refused as not actionable. The recipient is `Original-Rcpt-To`, else the original message's
/// `To`; the campaign comes from the original message's headers (`campaign_headers`, in order;
/// `Feedback-ID` contributes its first field).
///
/// # Errors
/// Not a feedback report, an unsupported feedback type, or no recipient to be found.
pub fn parse_arf(raw: &[u8], campaign_headers: &[String]) -> Result<DeliveryEvent, EventsError> {
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| EventsError("ARF report: cannot parse the message".into()))?;
    let mut fields: Option<String> = None;
    let mut original: Option<Vec<u8>> = None;
    for part in msg.parts.iter() {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        match (ct.ctype().to_ascii_lowercase().as_str(), sub.as_str()) {
            ("message", "feedback-report") => {
                fields = Some(String::from_utf8_lossy(part.contents()).into_owned());
            }
            ("message", "rfc822") | ("message", "global") | ("text", "rfc822-headers")
                if original.is_none() =>
            {
                original = Some(match &part.body {
                    PartType::Message(m) => m.raw_message().to_vec(),
                    _ => part.contents().to_vec(),
                });
            }
            _ => {}
        }
    }
    let fields = fields.ok_or_else(|| {
        EventsError("ARF report: no message/feedback-report part (expected multipart/report; report-type=feedback-report)".into())
    })?;
    let field = |name: &str| -> Option<String> {
        fields.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let feedback_type = field("Feedback-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let kind = match feedback_type.as_str() {
        "abuse" | "fraud" => EventKind::Complaint,
        "opt-out" | "unsubscribe" => EventKind::Unsubscribe,
        "" => return Err(EventsError("ARF report: missing Feedback-Type".into())),
        other => {
            return Err(EventsError(format!(
                "ARF report: feedback type {other:?} is not actionable (expected abuse, fraud or opt-out)"
            )))
        }
    };
    let orig = original.map(Message::new);
    let recipient = field("Original-Rcpt-To")
        .or_else(|| field("Removal-Recipient"))
        .or_else(|| orig.as_ref().and_then(|m| m.header("To")))
        .map(|r| {
            // `rfc822; anna@x.test` forms and display names.
            let r = r.rsplit(';').next().unwrap_or(&r).trim().to_string();
            match (r.find('<'), r.rfind('>')) {
                (Some(a), Some(b)) if a < b => r[a + 1..b].to_string(),
                _ => r,
            }
        })
        .filter(|r| r.contains('@'))
        .ok_or_else(|| {
            EventsError("ARF report: no Original-Rcpt-To and no To in the original message".into())
        })?;
    let campaign = orig.as_ref().and_then(|m| {
        campaign_headers.iter().find_map(|h| {
            let v = m.header(h)?;
            let v = if h.eq_ignore_ascii_case("Feedback-ID") {
                v.split(':').next().unwrap_or("").trim().to_string()
            } else {
                v
            };
            (!v.is_empty()).then_some(v)
        })
    });
    let at = field("Arrival-Date")
        .and_then(|d| mail_parser::DateTime::parse_rfc822(&d))
        .and_then(|d| u64::try_from(d.to_timestamp()).ok())
        .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .unwrap_or_else(SystemTime::now);
    Ok(DeliveryEvent {
        kind,
        recipient: normalize_address(&recipient),
        campaign,
        bounce_class: None,
        at,
        reason: Some(format!("feedback-type {feedback_type}")),
        source: "arf".into(),
    })
}
