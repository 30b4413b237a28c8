//! The incident workflow attached to a running daemon's guard: send ledger, incidents, apology
//! gate, deliverability monitor and quarantine.
//!
//! A guard works without them (the library and `sendguard check` need none); `serve` attaches
//! them with [`Guard::attach`], after which the guard's checks apply the apology gate, keep
//! quarantined messages, and [`Guard::record`] writes every outcome to the ledger and feeds the
//! monitor.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Guard, GuardError};
use crate::apology::ApologyGate;
use crate::incident::IncidentDesk;
use crate::ledger::{
    refused_records, relayed_records, Ledger, LedgerConfig, LedgerRecord, Outcome,
};
use crate::model::{Disposition, Envelope, Message, Refusal, Verdict};
use crate::monitor::Monitor;
use crate::quarantine::{Quarantine, QuarantineError, ReleaseTarget, Upstream};

/// Everything the incident workflow needs, shared by the front-ends and the admin API.
#[derive(Debug)]
pub struct Operations {
    /// The send ledger.
    pub ledger: Ledger,
    /// Incidents and their timelines.
    pub desk: IncidentDesk,
    /// Which apology campaign may go to whom.
    pub apology: ApologyGate,
    /// Deferral, rejection and complaint rates per campaign.
    pub monitor: Arc<Monitor>,
    /// Refused messages kept for inspection.
    pub quarantine: Arc<Quarantine>,
    /// Where released messages go.
    pub release: ReleaseTarget,
}

impl Operations {
    /// Opens the ledger and the quarantine in the guard's state directory and builds the rest
    /// from the policies in force. `upstream` is where quarantine releases go (the SMTP
    /// upstream URL).
    ///
    /// # Errors
    /// No state directory, or the ledger or quarantine cannot be opened.
    pub fn open(
        guard: &Guard,
        ledger: LedgerConfig,
        upstream: &str,
    ) -> Result<Operations, GuardError> {
        let state = guard.config().state_dir.clone().ok_or_else(|| {
            GuardError::Invalid("the incident workflow needs a state directory".into())
        })?;
        let policies = guard.policies();
        let ledger =
            Ledger::open(&state, ledger).map_err(|e| GuardError::Invalid(e.to_string()))?;
        let desk = IncidentDesk::new(guard.clone(), ledger.clone());
        let apology = ApologyGate::new();
        if let Err(e) = apology.refresh(&policies.file.apology, &desk) {
            tracing::error!(error = %e, "apology gate not loaded");
        }
        let monitor = Arc::new(Monitor::new(
            Some(guard.clone()),
            policies.file.monitor.clone(),
        ));
        let quarantine = Arc::new(
            Quarantine::open(&state, policies.file.quarantine.clone())
                .map_err(|e| GuardError::Invalid(e.to_string()))?,
        );
        let upstream: Upstream = upstream
            .parse()
            .map_err(|e| GuardError::Invalid(format!("quarantine release upstream: {e}")))?;
        let release = ReleaseTarget {
            guard: guard.clone(),
            ledger: Some(ledger.clone()),
            upstream,
        };
        Ok(Operations {
            ledger,
            desk,
            apology,
            monitor,
            quarantine,
            release,
        })
    }

    /// Re-reads what depends on the policies (after a reload).
    pub(super) fn refresh(&self, guard: &Guard) {
        let policies = guard.policies();
        if let Err(e) = self.apology.refresh(&policies.file.apology, &self.desk) {
            tracing::error!(error = %e, "apology gate not refreshed; the previous one stays");
        }
        self.monitor.set_policy(policies.file.monitor.clone());
        self.quarantine.set_policy(policies.file.quarantine.clone());
    }
}

impl Guard {
    /// Attaches the incident workflow. Only the first call takes effect.
    ///
    /// The operations hold a handle to the guard (incidents pause, the monitor pauses), so a
    /// guard with operations lives until the process ends — as a daemon's does.
    pub fn attach(&self, ops: Operations) {
        if self.inner.ops.set(Arc::new(ops)).is_err() {
            tracing::warn!("incident workflow already attached; second attach ignored");
        }
    }

    /// The incident workflow, when attached.
    pub fn operations(&self) -> Option<&Arc<Operations>> {
        self.inner.ops.get()
    }

    /// The apology gate and quarantine, applied to a fresh verdict.
    pub(super) fn apply_operations(
        &self,
        env: &Envelope,
        msg: Option<&Message>,
        verdict: &mut Verdict,
    ) {
        let Some(ops) = self.operations() else {
            return;
        };
        if let Some(campaign) = env.campaign.as_deref() {
            if ops.apology.is_apology(campaign) {
                match msg {
                    Some(m) => ops.apology.apply(env, m, verdict),
                    None => {
                        for rv in &mut verdict.recipients {
                            if rv.disposition.is_pass() {
                                if let Some(r) =
                                    ops.apology.check_recipient(campaign, &rv.recipient)
                                {
                                    rv.disposition = Disposition::Reject;
                                    rv.refusal = Some(r);
                                }
                            }
                        }
                    }
                }
                // A message is relayed to all its recipients or to none (SMTP cannot drop a
                // recipient after DATA): one recipient outside the audience refuses it.
                if let Some(r) = verdict
                    .recipients
                    .iter()
                    .find_map(|r| {
                        matches!(r.refusal, Some(Refusal::NotAffected { .. }))
                            .then(|| r.refusal.clone())
                    })
                    .flatten()
                {
                    verdict.refuse(r);
                }
            }
        }
        if let Some(m) = msg {
            self.keep_quarantined(env, Some(m), verdict, "guard");
        }
    }

    /// Keeps a copy of a message whose verdict is `quarantine`. When no copy can be kept (`msg`
    /// is `None`: none could be built; the quarantine is full or cannot be written) the verdict
    /// becomes a temporary refusal instead: the sender keeps the message and retries, nothing is
    /// lost.
    pub(crate) fn keep_quarantined(
        &self,
        env: &Envelope,
        msg: Option<&Message>,
        verdict: &mut Verdict,
        front_end: &str,
    ) {
        if verdict.disposition != Disposition::Quarantine {
            return;
        }
        let Some(ops) = self.operations() else {
            return;
        };
        let Some(m) = msg else {
            tracing::error!("no copy of the message to quarantine; refusing temporarily");
            verdict_to_tempfail(verdict);
            return;
        };
        match ops.quarantine.store(env, m, verdict, front_end) {
            Ok(entry) => tracing::info!(id = %entry.id, "message quarantined"),
            Err(e) => {
                tracing::error!(error = %e, "cannot quarantine; refusing temporarily");
                verdict_to_tempfail(verdict);
                if matches!(e, QuarantineError::Full { .. }) {
                    tracing::warn!("quarantine full: drop or release quarantined messages");
                }
            }
        }
    }

    /// Reserves an apology for every recipient right before relaying (at most once each).
    pub(super) fn reserve_apology(&self, env: &Envelope) -> Result<(), Refusal> {
        let Some(ops) = self.operations() else {
            return Ok(());
        };
        let Some(campaign) = env.campaign.as_deref() else {
            return Ok(());
        };
        if !ops.apology.is_apology(campaign) {
            return Ok(());
        }
        for (i, rcpt) in env.recipients.iter().enumerate() {
            if let Err(r) = ops.apology.mark_sent(campaign, rcpt) {
                for done in &env.recipients[..i] {
                    ops.apology.release(campaign, done);
                }
                return Err(r);
            }
        }
        Ok(())
    }

    /// Records recipients refused before the message was known (at `RCPT TO`: suppressed,
    /// paused), with the campaign and content of the message they would have received.
    pub async fn record_refused_recipients(
        &self,
        front: &'static str,
        env: &Envelope,
        msg: &Message,
        refused: &[(String, Refusal)],
    ) {
        let Some(ops) = self.operations().cloned() else {
            return;
        };
        let records: Vec<LedgerRecord> = refused
            .iter()
            .map(|(rcpt, r)| {
                LedgerRecord::new(Outcome::from_refusal(r), env, rcpt, front)
                    .with_message(msg)
                    .with_refusal(r)
            })
            .collect();
        if let Err(e) = ops.ledger.record(records).await {
            tracing::error!(error = %e, "ledger closed; outcome not recorded");
        }
    }

    /// Records what became of a message: in the ledger (one record per recipient, waiting for
    /// room when the writer is behind — back-pressure, never a dropped record), in the
    /// deliverability monitor, and for an apology, gives back the reservation of recipients the
    /// upstream refused. `replies` holds the upstream's answer per recipient (recipient, code,
    /// text); empty when sendguard refused the message itself (`verdict` says why).
    ///
    /// Does nothing when no incident workflow is attached.
    pub async fn record(
        &self,
        front: &'static str,
        env: &Envelope,
        msg: Option<&Message>,
        verdict: &Verdict,
        replies: &[(String, u16, String)],
    ) {
        let Some(ops) = self.operations().cloned() else {
            return;
        };
        // Relayed means handed to the upstream, whatever it answered.
        let relayed = verdict.is_pass() && !replies.is_empty();
        let records = match (relayed, msg) {
            (true, Some(m)) => {
                let borrowed: Vec<(&str, u16, &str)> = replies
                    .iter()
                    .map(|(r, c, t)| (r.as_str(), *c, t.as_str()))
                    .collect();
                relayed_records(env, m, verdict, &borrowed, front)
            }
            (true, None) => {
                let mut recs = refused_records(env, None, verdict, front);
                for rec in &mut recs {
                    if let Some((_, code, text)) =
                        replies.iter().find(|(r, _, _)| *r == rec.recipient)
                    {
                        rec.set_http_reply(*code, text);
                    }
                }
                recs
            }
            (false, _) => refused_records(env, msg, verdict, front),
        };
        if let Err(e) = ops.ledger.record(records).await {
            tracing::error!(error = %e, "ledger closed; outcome not recorded");
        }
        if relayed {
            let now = SystemTime::now();
            for (rcpt, code, _) in replies {
                if *code == 0 {
                    // No reply: the upstream failed, which says nothing of this campaign.
                    if let Some(c) = env.campaign.as_deref() {
                        ops.apology.release(c, rcpt);
                    }
                    continue;
                }
                ops.monitor
                    .record_reply(env.campaign.as_deref(), rcpt, *code, now);
                if *code >= 300 {
                    if let Some(c) = env.campaign.as_deref() {
                        ops.apology.release(c, rcpt);
                    }
                }
            }
        }
    }
}

/// A quarantine verdict that could not keep its copy, made a temporary refusal.
fn verdict_to_tempfail(verdict: &mut Verdict) {
    verdict.disposition = Disposition::Tempfail;
    if let Some(Refusal::Placeholder { action, .. } | Refusal::Policy { action, .. }) =
        verdict.refusal.as_mut()
    {
        *action = crate::model::Action::Tempfail;
    }
}
