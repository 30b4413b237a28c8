//! What the policy engine decides, and why.

use super::Scope;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The action a rule takes when it matches, as written in policy files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Shadow mode: report the finding, never block.
    Log,
    /// Refuse with a temporary (4xx) reply: the sender keeps the message and retries.
    Tempfail,
    /// Refuse and keep a copy for inspection.
    Quarantine,
    /// Refuse with a permanent (5xx) reply.
    Reject,
}

impl Action {
    /// The disposition this action leads to.
    pub fn disposition(self) -> Disposition {
        match self {
            Action::Log => Disposition::Pass,
            Action::Tempfail => Disposition::Tempfail,
            Action::Quarantine => Disposition::Quarantine,
            Action::Reject => Disposition::Reject,
        }
    }

    /// The name as written in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Tempfail => "tempfail",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "log" => Ok(Action::Log),
            "tempfail" => Ok(Action::Tempfail),
            "quarantine" => Ok(Action::Quarantine),
            "reject" => Ok(Action::Reject),
            other => Err(format!(
                "unknown action {other:?}: expected reject, tempfail, quarantine or log"
            )),
        }
    }
}

/// The outcome for a message or a recipient.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Relay it.
    #[default]
    Pass,
    /// Refuse temporarily (4xx).
    Tempfail,
    /// Refuse and keep a copy.
    Quarantine,
    /// Refuse permanently (5xx).
    Reject,
}

impl Disposition {
    /// Whether the message (or recipient) may be relayed.
    pub fn is_pass(self) -> bool {
        self == Disposition::Pass
    }

    /// The name used in logs, metrics and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Pass => "pass",
            Disposition::Tempfail => "tempfail",
            Disposition::Quarantine => "quarantine",
            Disposition::Reject => "reject",
        }
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the message a finding was seen, as the recipient would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Location {
    /// The decoded Subject.
    Subject,
    /// A display name in From, Reply-To, To or Cc.
    FromName,
    /// A text/plain part.
    Text,
    /// The visible text of a text/html part.
    Html,
    /// A link target (`href`) in an HTML part.
    Href,
    /// Another visible attribute (`alt`, `title`) in an HTML part.
    Attribute,
    /// The hidden preheader of an HTML part (the preview text shown in the inbox).
    Preheader,
    /// A header other than Subject (for example List-Unsubscribe or Reply-To).
    Header,
    /// The envelope (sender or recipients), for findings that are not about the content.
    Envelope,
}

impl Location {
    /// The name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Subject => "subject",
            Location::FromName => "from-name",
            Location::Text => "text",
            Location::Html => "html",
            Location::Href => "href",
            Location::Attribute => "attribute",
            Location::Preheader => "preheader",
            Location::Header => "header",
            Location::Envelope => "envelope",
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a rule is that a finding is a real mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Probably fine, worth a look (a tag inside `<pre>`/`<code>`, a lint warning).
    Low,
    /// A mistake the recipient will see.
    High,
}

/// One thing a rule noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule that matched, e.g. `placeholder.angle` or `placeholder.empty-greeting`.
    pub rule: String,
    /// Where it was seen.
    pub location: Location,
    /// The offending text as the recipient would see it, e.g. `<FirstName>`.
    pub token: String,
    /// A sentence for humans.
    pub detail: String,
    /// How sure the rule is.
    pub severity: Severity,
    /// What the policy says to do about it.
    pub action: Action,
}

/// Why a message or recipient was refused: what a front-end turns into its protocol's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Refusal {
    /// The recipient is on a suppression list.
    Suppressed {
        /// The recipient.
        recipient: String,
        /// The entry that matched (`anna@x.test`, `@x.test`, `md5:…`).
        entry: String,
    },
    /// The message is an apology and the recipient was not affected by its incident (or has
    /// already received the apology).
    NotAffected {
        /// The recipient.
        recipient: String,
        /// The incident the apology belongs to.
        incident: String,
    },
    /// A pause covers the message.
    Paused {
        /// The pause's scope.
        scope: Scope,
        /// The reason given when pausing.
        reason: String,
    },
    /// The scope is resuming on a ramp and its current rate is used up.
    RateLimited {
        /// The ramped scope.
        scope: Scope,
        /// When a retry may succeed.
        #[serde(with = "humantime_serde")]
        retry_after: Duration,
    },
    /// An unrendered merge tag or failed substitution.
    Placeholder {
        /// The rule that matched.
        rule: String,
        /// The token as the recipient would see it.
        token: String,
        /// Where it was seen.
        location: Location,
        /// The policy action (reject, tempfail or quarantine).
        action: Action,
    },
    /// Another policy rule refused the message (apology lint, size, …).
    Policy {
        /// The rule.
        rule: String,
        /// What is wrong.
        detail: String,
        /// The policy action.
        action: Action,
    },
}

impl Refusal {
    /// The disposition this refusal stands for.
    pub fn disposition(&self) -> Disposition {
        match self {
            Refusal::Suppressed { .. } | Refusal::NotAffected { .. } => Disposition::Reject,
            Refusal::Paused { .. } | Refusal::RateLimited { .. } => Disposition::Tempfail,
            Refusal::Placeholder { action, .. } | Refusal::Policy { action, .. } => {
                action.disposition()
            }
        }
    }

    /// A short name for logs, metrics and the ledger: `suppressed`, `not-affected`, `paused`,
    /// `rate-limited`, `placeholder`, `policy`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Suppressed { .. } => "suppressed",
            Refusal::NotAffected { .. } => "not-affected",
            Refusal::Paused { .. } => "paused",
            Refusal::RateLimited { .. } => "rate-limited",
            Refusal::Placeholder { .. } => "placeholder",
            Refusal::Policy { .. } => "policy",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Suppressed { recipient, entry } => {
                write!(f, "recipient {recipient} is suppressed ({entry})")
            }
            Refusal::NotAffected {
                recipient,
                incident,
            } => write!(
                f,
                "recipient {recipient} is not affected by incident {incident}"
            ),
            Refusal::Paused { scope, reason } => write!(f, "{scope} is paused: {reason}"),
            Refusal::RateLimited { scope, retry_after } => write!(
                f,
                "{scope} is rate limited while resuming, retry in {}s",
                retry_after.as_secs().max(1)
            ),
            Refusal::Placeholder {
                token, location, ..
            } => write!(f, "unrendered placeholder {token} in {location}"),
            Refusal::Policy { rule, detail, .. } => write!(f, "{rule}: {detail}"),
        }
    }
}

/// The verdict for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientVerdict {
    /// The recipient as given in the envelope.
    pub recipient: String,
    /// Relay to this recipient or not.
    pub disposition: Disposition,
    /// Why not, when refused.
    pub refusal: Option<Refusal>,
}

/// The engine's decision about one message: for the message as a whole and for each recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Verdict {
    /// The decision for the message. `Pass` means every recipient whose own verdict passes may
    /// receive it.
    pub disposition: Disposition,
    /// Why the message was refused, when it was.
    pub refusal: Option<Refusal>,
    /// Everything the rules noticed, including findings of rules in shadow mode (`log`).
    pub findings: Vec<Finding>,
    /// Per-recipient verdicts, in envelope order.
    pub recipients: Vec<RecipientVerdict>,
}

impl Verdict {
    /// A passing verdict with no findings.
    pub fn pass() -> Verdict {
        Verdict::default()
    }

    /// Whether the message may be relayed (to the recipients that pass).
    pub fn is_pass(&self) -> bool {
        self.disposition.is_pass()
    }

    /// Refuses the whole message, keeping the most severe refusal when one is already set.
    pub fn refuse(&mut self, refusal: Refusal) {
        let d = refusal.disposition();
        if d == Disposition::Pass {
            return;
        }
        if self.refusal.is_none() || d > self.disposition {
            self.disposition = d;
            self.refusal = Some(refusal);
        }
    }

    /// Recipients that may receive the message.
    pub fn passing_recipients(&self) -> impl Iterator<Item = &str> {
        self.recipients
            .iter()
            .filter(|r| r.disposition.is_pass())
            .map(|r| r.recipient.as_str())
    }
}
