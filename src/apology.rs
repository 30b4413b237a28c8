//! The apology guard: a campaign declared as the apology for an incident reaches only that
//! incident's affected audience, each recipient at most once, from a sender people can reply to.
//!
//! Policy (`[[apology]]` in a policy file):
//!
//! ```toml
//! [[apology]]
//! campaign = "sorry-2026-11"
//! incident = "INC-20261128-1"
//! ```
//!
//! [`ApologyGate`] keeps each apology's audience (the recipients the upstream accepted the
//! incident's campaign for) and the recipients already served in memory, so
//! [`ApologyGate::check_recipient`] does no I/O. [`ApologyGate::refresh`] rebuilds it from the
//! ledger (at start, on policy reload, when an incident changes). Suppressed recipients are
//! refused by the guard's own suppression check, as for every message.
//!
//! [`lint`] refuses an apology from a no-reply address, with a no-reply Reply-To or with an
//! empty subject, and warns when it has no List-Unsubscribe header.

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::incident::{IncidentDesk, IncidentError};
use crate::model::{
    normalize_address, Action, Disposition, Envelope, Finding, Location, Message, Refusal,
    Severity, Verdict,
};

/// `[[apology]]`: declares a campaign as the apology for an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApologyPolicy {
    /// The apology campaign's id (as identified from the headers, like any campaign).
    pub campaign: String,
    /// The incident it apologises for.
    pub incident: String,
}

/// The rule name of the apology lint's refusals and findings.
pub const LINT_RULE: &str = "apology.lint";

struct Entry {
    incident: String,
    audience: HashSet<String>,
    /// Recipients served or reserved: the ledger's relayed records of the apology campaign plus
    /// reservations made since.
    sent: Mutex<HashSet<String>>,
}

/// The apology gate. Cheap to share (`Arc`); every lookup reads one snapshot.
#[derive(Default)]
pub struct ApologyGate {
    entries: ArcSwap<HashMap<String, Arc<Entry>>>,
}

impl std::fmt::Debug for ApologyGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApologyGate")
            .field("apologies", &self.entries.load().len())
            .finish()
    }
}

impl ApologyGate {
    /// A gate with no apologies declared.
    pub fn new() -> Self {
        ApologyGate::default()
    }

    /// Rebuilds the gate from the apology policies and the ledger (blocking: it reads the
    /// ledger). Reservations made in memory survive the refresh. An apology whose incident does
    /// not exist refuses every recipient (and is logged).
    ///
    /// # Errors
    /// The ledger database failed; the previous snapshot stays in force.
    pub fn refresh(
        &self,
        policies: &[ApologyPolicy],
        desk: &IncidentDesk,
    ) -> Result<(), IncidentError> {
        let old = self.entries.load_full();
        let mut next = HashMap::new();
        for p in policies {
            let audience: HashSet<String> = match desk.get(&p.incident) {
                Ok(inc) => desk
                    .ledger()
                    .affected_recipients(&inc.campaign)?
                    .into_iter()
                    .collect(),
                Err(IncidentError::NotFound(_)) => {
                    tracing::error!(campaign = %p.campaign, incident = %p.incident, "apology names an unknown incident: every recipient is refused");
                    HashSet::new()
                }
                Err(e) => return Err(e),
            };
            let mut sent: HashSet<String> = desk
                .ledger()
                .affected_recipients(&p.campaign)?
                .into_iter()
                .collect();
            if let Some(prev) = old.get(&p.campaign) {
                sent.extend(lock(&prev.sent).iter().cloned());
            }
            tracing::info!(campaign = %p.campaign, incident = %p.incident, audience = audience.len(), served = sent.len(), "apology gate loaded");
            next.insert(
                p.campaign.clone(),
                Arc::new(Entry {
                    incident: p.incident.clone(),
                    audience,
                    sent: Mutex::new(sent),
                }),
            );
        }
        self.entries.store(Arc::new(next));
        Ok(())
    }

    /// The incident a campaign apologises for, when it is an apology.
    pub fn incident_for(&self, campaign: &str) -> Option<String> {
        self.entries
            .load()
            .get(campaign)
            .map(|e| e.incident.clone())
    }

    /// Whether the campaign is an apology.
    pub fn is_apology(&self, campaign: &str) -> bool {
        self.entries.load().contains_key(campaign)
    }

    /// The refusal for a recipient of an apology campaign: not in the incident's affected
    /// audience, or already served. `None` when the recipient may receive it, or when the
    /// campaign is not an apology. No I/O.
    pub fn check_recipient(&self, campaign: &str, recipient: &str) -> Option<Refusal> {
        let entries = self.entries.load();
        let e = entries.get(campaign)?;
        let r = normalize_address(recipient);
        if !e.audience.contains(&r) || lock(&e.sent).contains(&r) {
            return Some(not_affected(recipient, &e.incident));
        }
        None
    }

    /// Reserves the recipient before the apology is relayed to it: at most once per recipient.
    /// Call [`ApologyGate::release`] when the upstream refuses it. A campaign that is not an
    /// apology always succeeds.
    ///
    /// # Errors
    /// `NotAffected` when the recipient is not in the audience or was already served/reserved.
    pub fn mark_sent(&self, campaign: &str, recipient: &str) -> Result<(), Refusal> {
        let entries = self.entries.load();
        let Some(e) = entries.get(campaign) else {
            return Ok(());
        };
        let r = normalize_address(recipient);
        if !e.audience.contains(&r) || !lock(&e.sent).insert(r) {
            return Err(not_affected(recipient, &e.incident));
        }
        Ok(())
    }

    /// Gives a reservation back (the upstream did not accept the apology for this recipient).
    pub fn release(&self, campaign: &str, recipient: &str) {
        if let Some(e) = self.entries.load().get(campaign) {
            lock(&e.sent).remove(&normalize_address(recipient));
        }
    }

    /// Applies the gate and the lint to a verdict of the guard (end of DATA, or an HTTP send):
    /// recipients outside the audience get `NotAffected`, a lint failure refuses the message, a
    /// lint warning is added to the findings. Does nothing when the envelope's campaign is not
    /// an apology. Does not reserve: call [`ApologyGate::mark_sent`] per recipient right before
    /// relaying.
    pub fn apply(&self, env: &Envelope, msg: &Message, verdict: &mut Verdict) {
        let Some(campaign) = env.campaign.as_deref() else {
            return;
        };
        if !self.is_apology(campaign) {
            return;
        }
        let (refusal, findings) = lint(env, msg);
        verdict.findings.extend(findings);
        if let Some(r) = refusal {
            verdict.refuse(r);
        }
        for rv in &mut verdict.recipients {
            if rv.disposition.is_pass() {
                if let Some(r) = self.check_recipient(campaign, &rv.recipient) {
                    rv.disposition = Disposition::Reject;
                    rv.refusal = Some(r);
                }
            }
        }
        if !verdict.recipients.is_empty() && verdict.passing_recipients().next().is_none() {
            if let Some(r) = verdict.recipients.iter().find_map(|r| r.refusal.clone()) {
                verdict.refuse(r);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_affected(recipient: &str, incident: &str) -> Refusal {
    Refusal::NotAffected {
        recipient: recipient.to_string(),
        incident: incident.to_string(),
    }
}

/// Whether an address's local part says nobody reads replies (`noreply`, `no-reply`,
/// `donotreply`, `do_not_reply`, `no.reply`, `noresponse`, …).
pub fn is_no_reply(address: &str) -> bool {
    let a = normalize_address(address);
    let local = a.rsplit_once('@').map_or(a.as_str(), |(l, _)| l);
    let squashed: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    [
        "noreply",
        "donotreply",
        "noresponse",
        "donotrespond",
        "nereply",
        "noreplies",
    ]
    .iter()
    .any(|w| squashed.contains(w))
}

/// The apology lint: a refusal (`apology.lint`, action reject) for a no-reply From (or envelope
/// sender when there is no From), a no-reply Reply-To or an empty subject; a low-severity
/// finding (action log) when List-Unsubscribe is missing.
pub fn lint(env: &Envelope, msg: &Message) -> (Option<Refusal>, Vec<Finding>) {
    let refuse = |detail: String| {
        Some(Refusal::Policy {
            rule: LINT_RULE.into(),
            detail,
            action: Action::Reject,
        })
    };
    let parsed = msg.parse();
    let first = |list: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        list.map(|a| {
            a.iter()
                .filter_map(|x| x.address())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
    };
    let from = first(parsed.as_ref().and_then(|p| p.from()));
    let reply_to = first(parsed.as_ref().and_then(|p| p.reply_to()));
    let from_checked: Vec<String> = if from.is_empty() {
        vec![env.sender.clone()]
    } else {
        from
    };
    let mut refusal = None;
    if let Some(a) = from_checked.iter().find(|a| is_no_reply(a)) {
        refusal = refuse(format!(
            "an apology must come from an address people can reply to, not {a}"
        ));
    } else if let Some(a) = reply_to.iter().find(|a| is_no_reply(a)) {
        refusal = refuse(format!(
            "an apology must not send replies to the no-reply address {a}"
        ));
    } else if parsed
        .as_ref()
        .and_then(|p| p.subject())
        .is_none_or(|s| s.trim().is_empty())
    {
        refusal = refuse("an apology needs a clear subject; this one is empty".into());
    }
    let mut findings = Vec::new();
    if msg.header("List-Unsubscribe").is_none() {
        findings.push(Finding {
            rule: LINT_RULE.into(),
            location: Location::Header,
            token: "List-Unsubscribe".into(),
            detail: "the apology has no List-Unsubscribe header".into(),
            severity: Severity::Low,
            action: Action::Log,
        });
        tracing::info!(campaign = ?env.campaign, "apology lint: no List-Unsubscribe header");
    }
    (refusal, findings)
}
