//! The policy file schema and the evaluation of one message against it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::kill_switch::{PauseQuery, PauseSet};
use super::placeholder::{Detector, PlaceholderPolicy};
use super::suppression::{SuppressionMatch, SuppressionPolicy};
use super::{PolicyError, PolicyErrors};
use crate::model::{
    domain_of, Disposition, Envelope, Message, RecipientVerdict, Refusal, Severity, Verdict,
};
use crate::ratelimit::RampPolicy;

/// The whole policy schema: what the TOML files in the policies directory may contain.
///
/// Every section is optional; a missing section takes its defaults. See `policies/README.md`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Where campaign and tenant identity come from.
    #[serde(default)]
    pub identity: IdentityPolicy,
    /// Placeholder-leak detection.
    #[serde(default)]
    pub placeholder: PlaceholderPolicy,
    /// Suppression enforcement.
    #[serde(default)]
    pub suppression: SuppressionPolicy,
    /// The default ramp after a resume.
    #[serde(default)]
    pub ramp: RampPolicy,
    /// Automatic pause of a campaign whose messages keep leaking placeholders.
    #[serde(default)]
    pub auto_trip: AutoTripPolicy,
    /// Where pause and resume alerts go.
    #[serde(default)]
    pub alerts: AlertPolicy,
    /// Apology campaigns (`[[apology]]`): which campaign apologises for which incident.
    #[serde(default)]
    pub apology: Vec<crate::apology::ApologyPolicy>,
    /// Deliverability thresholds that pause a campaign.
    #[serde(default)]
    pub monitor: crate::monitor::MonitorPolicy,
    /// Where and how much refused mail is kept for inspection.
    #[serde(default)]
    pub quarantine: crate::quarantine::QuarantinePolicy,
}

/// `[identity]`: which headers name the campaign and the tenant of a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityPolicy {
    /// Headers tried in order for the campaign id. `Feedback-ID` contributes its first
    /// colon-separated field (Gmail's campaign identifier).
    #[serde(default = "default_campaign_headers")]
    pub campaign_headers: Vec<String>,
    /// Headers tried in order for the tenant; the authenticated user is the fallback.
    #[serde(default = "default_tenant_headers")]
    pub tenant_headers: Vec<String>,
}

fn default_campaign_headers() -> Vec<String> {
    vec![
        "X-Campaign-ID".into(),
        "X-Mailgun-Campaign-Id".into(),
        "Feedback-ID".into(),
    ]
}

fn default_tenant_headers() -> Vec<String> {
    vec!["X-Tenant-ID".into()]
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            campaign_headers: default_campaign_headers(),
            tenant_headers: default_tenant_headers(),
        }
    }
}

/// `[auto_trip]`: pause a campaign by itself after repeated placeholder-leak blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoTripPolicy {
    /// Whether the automatic trip is on.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Blocked leaks within `window` that pause the campaign.
    #[serde(default = "default_trip_leaks")]
    pub leaks: u32,
    /// The sliding window the leaks are counted in.
    #[serde(default = "default_trip_window", with = "humantime_serde")]
    pub window: Duration,
}

fn yes() -> bool {
    true
}

fn default_trip_leaks() -> u32 {
    3
}

fn default_trip_window() -> Duration {
    Duration::from_secs(600)
}

impl Default for AutoTripPolicy {
    fn default() -> Self {
        AutoTripPolicy {
            enabled: true,
            leaks: default_trip_leaks(),
            window: default_trip_window(),
        }
    }
}

/// `[alerts]`: a webhook told about every pause and resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPolicy {
    /// URL that receives a JSON POST (Slack-compatible `text` field) on every pause and resume.
    #[serde(default)]
    pub webhook: Option<String>,
    /// How long one delivery attempt may take.
    #[serde(default = "default_alert_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_alert_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            webhook: None,
            timeout: default_alert_timeout(),
        }
    }
}

/// One immutable snapshot of the policies: what a reload builds and swaps in.
#[derive(Debug)]
pub struct PolicySet {
    /// Increases by one with every successful reload.
    pub generation: u64,
    /// The merged policy files.
    pub file: PolicyFile,
    /// The compiled placeholder detector.
    pub detector: Detector,
    /// The files this snapshot was built from, in load order.
    pub sources: Vec<PathBuf>,
    /// The policies directory.
    pub dir: PathBuf,
    /// Findings of large decoded bodies already scanned under this snapshot.
    cache: super::scan_cache::ScanCache,
}

/// What an evaluation reads besides the policies: the control-state snapshots.
pub struct Context<'a> {
    /// Pauses in force.
    pub pauses: &'a PauseSet,
    /// Suppression lookup (file lists plus run-time edits).
    pub suppressed: &'a dyn Fn(&str) -> Option<SuppressionMatch>,
    /// The time of the decision.
    pub now: SystemTime,
}

impl PolicySet {
    /// Loads every `*.toml` file of `dir` (in name order) into a new snapshot.
    ///
    /// # Errors
    /// Every problem found, each with file, line and key. Nothing takes effect when there is one.
    pub fn load(dir: &Path, generation: u64) -> Result<PolicySet, PolicyErrors> {
        let (file, sources) = super::load::load_dir(dir)?;
        let detector = Detector::new(&file.placeholder).map_err(|issues| {
            PolicyErrors(
                issues
                    .into_iter()
                    .map(|i| super::load::locate(&sources, &i.key, i.message))
                    .collect(),
            )
        })?;
        Ok(PolicySet {
            generation,
            file,
            detector,
            sources,
            dir: dir.to_path_buf(),
            cache: Default::default(),
        })
    }

    /// A snapshot of the built-in defaults (used when no policies directory exists).
    pub fn defaults(generation: u64) -> Result<PolicySet, PolicyErrors> {
        let file = PolicyFile::default();
        let detector = Detector::new(&file.placeholder).map_err(|issues| {
            PolicyErrors(
                issues
                    .into_iter()
                    .map(|i| PolicyError {
                        file: PathBuf::from("(defaults)"),
                        line: None,
                        key: i.key,
                        message: i.message,
                    })
                    .collect(),
            )
        })?;
        Ok(PolicySet {
            generation,
            file,
            detector,
            sources: Vec::new(),
            dir: PathBuf::new(),
            cache: Default::default(),
        })
    }

    /// Completes the envelope's campaign and tenant from the message headers where the front-end
    /// did not know them.
    pub fn identify(&self, env: &mut Envelope, msg: &Message) {
        self.identify_with(env, |name| msg.header(name));
    }

    /// Fills in campaign and tenant from header values found by `get` (trimmed, empty ones
    /// skipped); `Feedback-ID` contributes its first colon-separated field.
    fn identify_with(&self, env: &mut Envelope, get: impl Fn(&str) -> Option<String>) {
        let find = |names: &[String]| {
            names.iter().find_map(|h| {
                let v = get(h)?;
                let v = if h.eq_ignore_ascii_case("Feedback-ID") {
                    v.split(':').next().unwrap_or("").trim().to_string()
                } else {
                    v.trim().to_string()
                };
                (!v.is_empty()).then_some(v)
            })
        };
        if env.campaign.is_none() {
            env.campaign = find(&self.file.identity.campaign_headers);
        }
        if env.tenant.is_none() {
            env.tenant = find(&self.file.identity.tenant_headers).or_else(|| env.auth_user.clone());
        }
    }

    /// The pause refusal for the message as a whole or one recipient, if any pause covers it.
    pub fn pause_for(
        &self,
        env: &Envelope,
        recipient: Option<&str>,
        ctx: &Context<'_>,
    ) -> Option<Refusal> {
        if ctx.pauses.is_empty() {
            return None;
        }
        let q = PauseQuery {
            campaign: env.campaign.as_deref(),
            tenant: env.effective_tenant(),
            sender: &env.sender,
            recipient_domain: recipient.map(domain_of),
        };
        ctx.pauses.find(&q, ctx.now).map(|p| Refusal::Paused {
            scope: p.scope.clone(),
            reason: p.reason.clone(),
        })
    }

    /// Judges one recipient: pauses of its domain, then suppression.
    pub fn evaluate_recipient(
        &self,
        env: &Envelope,
        recipient: &str,
        ctx: &Context<'_>,
    ) -> Option<Refusal> {
        if let Some(s) = (ctx.suppressed)(recipient) {
            if self.file.suppression.action != crate::model::Action::Log {
                return Some(Refusal::Suppressed {
                    recipient: recipient.to_string(),
                    entry: s.entry,
                });
            }
        }
        self.pause_for(env, Some(recipient), ctx)
    }

    /// Judges content that arrived decoded (HTTP send APIs) exactly as [`PolicySet::evaluate`]
    /// judges a MIME message: pauses, suppression of every recipient, placeholder leaks in the
    /// subject, names, text and HTML.
    pub fn evaluate_content(
        &self,
        env: &Envelope,
        content: &crate::model::Content<'_>,
        ctx: &Context<'_>,
    ) -> Verdict {
        let mut findings = Vec::new();
        if let Some(s) = content.subject {
            findings.extend(self.detector.scan_text(s, crate::model::Location::Subject));
        }
        for n in &content.names {
            findings.extend(self.detector.scan_text(n, crate::model::Location::FromName));
        }
        for t in &content.text {
            findings.extend(self.cache.get_or_scan(1, t, || {
                self.detector.scan_text(t, crate::model::Location::Text)
            }));
        }
        for h in &content.html {
            findings.extend(self.cache.get_or_scan(2, h, || self.detector.scan_html(h)));
        }
        self.judge(env, findings, ctx)
    }

    /// Completes campaign and tenant from decoded header pairs (HTTP send APIs).
    pub fn identify_headers(&self, env: &mut Envelope, headers: &[(&str, &str)]) {
        self.identify_with(env, |name| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
        });
    }

    /// Judges a whole message: pauses, suppression of each recipient, placeholder leaks.
    ///
    /// The most severe refusal decides the message (a permanent leak rejection wins over a
    /// temporary pause, so the sender learns of the broken template at once). When every
    /// recipient is refused the message is refused with the first recipient's reason.
    pub fn evaluate(&self, env: &Envelope, msg: &Message, ctx: &Context<'_>) -> Verdict {
        self.judge(env, self.detector.scan(msg), ctx)
    }

    fn judge(
        &self,
        env: &Envelope,
        findings: Vec<crate::model::Finding>,
        ctx: &Context<'_>,
    ) -> Verdict {
        let mut verdict = Verdict::pass();
        if let Some(r) = self.pause_for(env, None, ctx) {
            verdict.refuse(r);
        }
        for rcpt in &env.recipients {
            let refusal = self.evaluate_recipient(env, rcpt, ctx);
            verdict.recipients.push(RecipientVerdict {
                recipient: rcpt.clone(),
                disposition: refusal
                    .as_ref()
                    .map_or(Disposition::Pass, Refusal::disposition),
                refusal,
            });
        }
        verdict.findings = findings;
        // The most severe blocking finding decides; high severity before low at equal action.
        if let Some(f) = verdict
            .findings
            .iter()
            .filter(|f| f.action.disposition() != Disposition::Pass)
            .max_by_key(|f| (f.action, f.severity == Severity::High))
        {
            verdict.refuse(Refusal::Placeholder {
                rule: f.rule.clone(),
                token: f.token.clone(),
                location: f.location,
                action: f.action,
            });
        }
        if !env.recipients.is_empty() && verdict.passing_recipients().next().is_none() {
            if let Some(r) = verdict.recipients.iter().find_map(|r| r.refusal.clone()) {
                verdict.refuse(r);
            }
        }
        verdict
    }
}
