//! One ledger record: the outcome for one recipient of one message.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::SystemTime;

use crate::model::{normalize_address, Envelope, Finding, Message, Refusal};

/// What happened to one recipient of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Relayed, and the upstream accepted it (2xx).
    Relayed,
    /// Relayed, and the upstream refused it temporarily (4xx).
    UpstreamTempfail,
    /// Relayed, and the upstream refused it permanently (5xx).
    UpstreamReject,
    /// Refused by sendguard permanently (5xx / 4xx HTTP): a placeholder leak or a policy rule.
    Rejected,
    /// Refused by sendguard temporarily: a pause or a ramp.
    Tempfailed,
    /// Refused because the recipient is suppressed.
    Suppressed,
    /// Refused and kept in the quarantine.
    Quarantined,
    /// Refused because the message is an apology and the recipient was not affected.
    NotAffected,
}

impl Outcome {
    /// Every outcome, in display order.
    pub const ALL: [Outcome; 8] = [
        Outcome::Relayed,
        Outcome::UpstreamTempfail,
        Outcome::UpstreamReject,
        Outcome::Rejected,
        Outcome::Tempfailed,
        Outcome::Suppressed,
        Outcome::Quarantined,
        Outcome::NotAffected,
    ];

    /// The name stored in the database and shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Relayed => "relayed",
            Outcome::UpstreamTempfail => "upstream-tempfail",
            Outcome::UpstreamReject => "upstream-reject",
            Outcome::Rejected => "rejected",
            Outcome::Tempfailed => "tempfailed",
            Outcome::Suppressed => "suppressed",
            Outcome::Quarantined => "quarantined",
            Outcome::NotAffected => "not-affected",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The outcome of a relay attempt from an SMTP upstream's reply code: 2xx accepted, 4xx
    /// temporary (and 0: no reply at all, the upstream failed), anything else permanent.
    pub fn from_smtp_code(code: u16) -> Outcome {
        match code {
            200..=399 => Outcome::Relayed,
            0 | 400..=499 => Outcome::UpstreamTempfail,
            _ => Outcome::UpstreamReject,
        }
    }

    /// The outcome of a relay attempt from an HTTP send API's status: 2xx accepted, 429 and
    /// 5xx temporary, other 4xx permanent.
    pub fn from_http_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Relayed,
            429 | 500..=599 => Outcome::UpstreamTempfail,
            _ => Outcome::UpstreamReject,
        }
    }

    /// The outcome of a refusal by sendguard.
    pub fn from_refusal(refusal: &Refusal) -> Outcome {
        match refusal {
            Refusal::Suppressed { .. } => Outcome::Suppressed,
            Refusal::NotAffected { .. } => Outcome::NotAffected,
            other => match other.disposition() {
                crate::model::Disposition::Quarantine => Outcome::Quarantined,
                crate::model::Disposition::Tempfail => Outcome::Tempfailed,
                _ => Outcome::Rejected,
            },
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The content fingerprint the ledger keeps: xxh3-64 of the message body (after the header
/// block), as 16 hex digits. Messages rendered from one template with the same data share it.
pub fn fingerprint(msg: &Message) -> String {
    let body = msg.raw().get(msg.header_block().len()..).unwrap_or(&[]);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(body))
}

/// One per-recipient outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// When it happened.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    /// What happened.
    pub outcome: Outcome,
    /// The campaign, when known.
    pub campaign: Option<String>,
    /// The tenant, when known.
    pub tenant: Option<String>,
    /// The envelope sender.
    pub sender: String,
    /// The recipient, normalised (lower case, no brackets).
    pub recipient: String,
    /// The Message-ID header, when there is one.
    pub message_id: Option<String>,
    /// [`fingerprint`] of the body.
    pub fingerprint: Option<String>,
    /// The upstream's reply code, for relayed messages.
    pub reply_code: Option<u16>,
    /// The upstream's reply text, for relayed messages.
    pub reply_text: Option<String>,
    /// The refusal kind (`placeholder`, `paused`, …) when sendguard refused.
    pub refusal: Option<String>,
    /// What the rules noticed (including shadow-mode findings).
    pub findings: Vec<Finding>,
    /// Which front-end handled it: `smtp`, `http`, `release`, …
    pub front_end: String,
}

impl LedgerRecord {
    /// A record for one recipient of an envelope, stamped now. Fill in the rest with the
    /// `with_*` builders.
    pub fn new(outcome: Outcome, env: &Envelope, recipient: &str, front_end: &str) -> Self {
        LedgerRecord {
            at: SystemTime::now(),
            outcome,
            campaign: env.campaign.clone(),
            tenant: env.effective_tenant().map(str::to_string),
            sender: env.sender.clone(),
            recipient: normalize_address(recipient),
            message_id: None,
            fingerprint: None,
            reply_code: None,
            reply_text: None,
            refusal: None,
            findings: Vec::new(),
            front_end: front_end.to_string(),
        }
    }

    /// Sets Message-ID and fingerprint from the message.
    pub fn with_message(mut self, msg: &Message) -> Self {
        self.message_id = msg.header("Message-ID");
        self.fingerprint = Some(fingerprint(msg));
        self
    }

    /// Sets an SMTP upstream's reply (and the outcome it implies).
    pub fn with_reply(mut self, code: u16, text: &str) -> Self {
        self.outcome = Outcome::from_smtp_code(code);
        self.reply_code = Some(code);
        self.reply_text = Some(text.to_string());
        self
    }

    /// Sets an HTTP upstream's status and body excerpt (and the outcome it implies).
    pub fn with_http_reply(mut self, status: u16, text: &str) -> Self {
        self.set_http_reply(status, text);
        self
    }

    /// [`LedgerRecord::with_http_reply`] in place.
    pub fn set_http_reply(&mut self, status: u16, text: &str) {
        self.outcome = Outcome::from_http_status(status);
        self.reply_code = Some(status);
        self.reply_text = Some(text.to_string());
    }

    /// Sets the refusal (and the outcome it implies).
    pub fn with_refusal(mut self, refusal: &Refusal) -> Self {
        self.outcome = Outcome::from_refusal(refusal);
        self.refusal = Some(refusal.kind().to_string());
        self
    }

    /// Sets the findings.
    pub fn with_findings(mut self, findings: &[Finding]) -> Self {
        self.findings = findings.to_vec();
        self
    }

    /// Sets the time.
    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = at;
        self
    }

    /// The recipient's domain.
    pub fn domain(&self) -> &str {
        crate::model::domain_of(&self.recipient)
    }
}

/// The records of a message sendguard refused (end of DATA, or an HTTP send it answered
/// itself): one per envelope recipient, each with its own refusal when it has one (suppressed,
/// not affected) unless the message's refusal is more severe (a leak in a paused campaign is
/// answered `554`, so it is rejected, not tempfailed), else the message's refusal; findings and
/// fingerprint attached.
pub fn refused_records(
    env: &Envelope,
    msg: Option<&Message>,
    verdict: &crate::model::Verdict,
    front_end: &str,
) -> Vec<LedgerRecord> {
    env.recipients
        .iter()
        .map(|rcpt| {
            let own = verdict
                .recipients
                .iter()
                .find(|r| &r.recipient == rcpt)
                .and_then(|r| r.refusal.as_ref());
            let mut rec = LedgerRecord::new(Outcome::Rejected, env, rcpt, front_end)
                .with_findings(&verdict.findings);
            if let Some(m) = msg {
                rec = rec.with_message(m);
            }
            let refusal = match (own, verdict.refusal.as_ref()) {
                (Some(o), Some(m)) if m.disposition() > o.disposition() => Some(m),
                (o, m) => o.or(m),
            };
            match refusal {
                Some(r) => rec.with_refusal(r),
                None => rec,
            }
        })
        .collect()
}

/// The records of a message relayed to an SMTP upstream: the recipients the verdict refused get
/// their refusal, the others the upstream's reply for them (`replies`: recipient, code, text —
/// the RCPT reply when it refused the recipient, else the end-of-DATA reply).
pub fn relayed_records(
    env: &Envelope,
    msg: &Message,
    verdict: &crate::model::Verdict,
    replies: &[(&str, u16, &str)],
    front_end: &str,
) -> Vec<LedgerRecord> {
    env.recipients
        .iter()
        .map(|rcpt| {
            let rec = LedgerRecord::new(Outcome::Relayed, env, rcpt, front_end)
                .with_message(msg)
                .with_findings(&verdict.findings);
            let own = verdict
                .recipients
                .iter()
                .find(|r| &r.recipient == rcpt)
                .and_then(|r| r.refusal.as_ref());
            if let Some(r) = own {
                return rec.with_refusal(r);
            }
            match replies.iter().find(|(r, _, _)| r == rcpt) {
                Some((_, code, text)) => rec.with_reply(*code, text),
                // No reply recorded for it: the relay did not happen for this recipient.
                None => {
                    let mut rec = rec;
                    rec.outcome = Outcome::UpstreamTempfail;
                    rec.reply_text = Some("no upstream reply".into());
                    rec
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Location, RecipientVerdict, Scope, Verdict};

    #[test]
    fn outcomes_from_codes_and_refusals() {
        assert_eq!(Outcome::from_smtp_code(250), Outcome::Relayed);
        assert_eq!(Outcome::from_smtp_code(451), Outcome::UpstreamTempfail);
        assert_eq!(Outcome::from_smtp_code(550), Outcome::UpstreamReject);
        assert_eq!(Outcome::from_http_status(202), Outcome::Relayed);
        assert_eq!(Outcome::from_http_status(429), Outcome::UpstreamTempfail);
        assert_eq!(Outcome::from_http_status(503), Outcome::UpstreamTempfail);
        assert_eq!(Outcome::from_http_status(400), Outcome::UpstreamReject);
        let paused = Refusal::Paused {
            scope: Scope::Global,
            reason: "x".into(),
        };
        assert_eq!(Outcome::from_refusal(&paused), Outcome::Tempfailed);
        let q = Refusal::Placeholder {
            rule: "r".into(),
            token: "t".into(),
            location: Location::Subject,
            action: Action::Quarantine,
        };
        assert_eq!(Outcome::from_refusal(&q), Outcome::Quarantined);
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
    }

    #[test]
    fn fingerprint_ignores_headers() {
        let a = Message::new(&b"To: a@x.test\r\n\r\nHello\r\n"[..]);
        let b = Message::new(&b"To: b@x.test\r\nX: y\r\n\r\nHello\r\n"[..]);
        let c = Message::new(&b"To: a@x.test\r\n\r\nHello!\r\n"[..]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a).len(), 16);
    }

    #[test]
    fn records_from_verdicts() {
        let env = Envelope::new("s@x.test")
            .with_recipient("a@x.test")
            .with_recipient("b@x.test")
            .with_recipient("c@x.test")
            .with_campaign("c1");
        let msg = Message::new(&b"Message-ID: <1@x>\r\n\r\nhi\r\n"[..]);
        let mut v = Verdict::pass();
        v.recipients = vec![
            RecipientVerdict {
                recipient: "a@x.test".into(),
                disposition: crate::model::Disposition::Reject,
                refusal: Some(Refusal::Suppressed {
                    recipient: "a@x.test".into(),
                    entry: "a@x.test".into(),
                }),
            },
            RecipientVerdict {
                recipient: "b@x.test".into(),
                disposition: crate::model::Disposition::Pass,
                refusal: None,
            },
        ];
        let recs = relayed_records(&env, &msg, &v, &[("b@x.test", 250, "ok")], "smtp");
        let outcomes: Vec<Outcome> = recs.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Suppressed,
                Outcome::Relayed,
                Outcome::UpstreamTempfail
            ]
        );
        assert_eq!(recs[1].message_id.as_deref(), Some("<1@x>"));
        assert_eq!(recs[1].campaign.as_deref(), Some("c1"));
        v.refuse(Refusal::Paused {
            scope: Scope::Campaign("c1".into()),
            reason: "r".into(),
        });
        let recs = refused_records(&env, Some(&msg), &v, "smtp");
        let outcomes: Vec<Outcome> = recs.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Suppressed,
                Outcome::Tempfailed,
                Outcome::Tempfailed
            ]
        );
        assert_eq!(recs[1].refusal.as_deref(), Some("paused"));

        // A leak in a paused campaign: the client is told the (permanent) leak, and so is the
        // ledger, for recipients the pause also matched.
        let mut v = Verdict::pass();
        v.recipients = vec![RecipientVerdict {
            recipient: "b@x.test".into(),
            disposition: crate::model::Disposition::Tempfail,
            refusal: Some(Refusal::Paused {
                scope: Scope::Campaign("c1".into()),
                reason: "r".into(),
            }),
        }];
        v.refuse(Refusal::Placeholder {
            rule: "placeholder.angle".into(),
            token: "<X>".into(),
            location: Location::Subject,
            action: Action::Reject,
        });
        let recs = refused_records(&env, Some(&msg), &v, "smtp");
        let outcomes: Vec<Outcome> = recs.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Rejected, Outcome::Rejected, Outcome::Rejected]
        );
    }
}
