//! Incidents: the record of a sending mistake from the moment it is noticed until it is closed.
//!
//! [`IncidentDesk::open`] pauses the campaign (durably, through [`Guard::pause`]) and records the
//! incident in `ledger.db`; pauses, resumes and notes land on its timeline; the report and the
//! affected audience come from the send ledger. Every method blocks (SQLite, the state store):
//! async callers use `spawn_blocking`.

pub mod http;
mod render;

pub use render::{render_html, render_text};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

use crate::guard::GuardEvent;
use crate::ledger::{CampaignReport, Ledger, LedgerError};
use crate::model::Scope;
use crate::{Guard, GuardError};

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    /// `opened`, `pause`, `resume`, `expire`, `note` or `closed`.
    pub kind: String,
    /// Who.
    pub actor: String,
    /// What was said or done.
    pub text: String,
}

/// An incident and its timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The id, `INC-YYYYMMDD-N`.
    pub id: String,
    /// The campaign that went wrong.
    pub campaign: String,
    /// Why the incident was opened.
    pub reason: String,
    /// Who opened it.
    pub opened_by: String,
    /// When it was opened.
    #[serde(with = "humantime_serde")]
    pub opened_at: SystemTime,
    /// When it was closed, if it is.
    #[serde(with = "humantime_serde::option")]
    pub closed_at: Option<SystemTime>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// What happened, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

impl Incident {
    /// Whether the incident is still open.
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// What `incident report` shows: the incident, what the ledger knows of its campaign, and the
/// audience an apology may go to.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentReport {
    /// The incident.
    pub incident: Incident,
    /// The campaign's numbers.
    pub campaign: CampaignReport,
    /// Affected recipients who are suppressed now (left out of the audience).
    pub suppressed_now: u64,
    /// Affected recipients an apology may go to: relayed, minus suppressed now.
    pub audience: u64,
}

/// Why an incident operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// No incident has this id.
    #[error("no incident {0:?}")]
    NotFound(String),
    /// The caller's input was wrong.
    #[error("{0}")]
    Invalid(String),
    /// The incident is closed and cannot change.
    #[error("incident {0} is closed")]
    Closed(String),
    /// The campaign already has an open incident (its id).
    #[error("campaign already has the open incident {0}")]
    AlreadyOpen(String),
    /// The ledger database failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The guard failed (the pause did not take effect).
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// Opens, annotates, reports and closes incidents. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IncidentDesk {
    guard: Guard,
    ledger: Ledger,
}

/// Entries of the same kind and text closer than this are one event (the desk's own pause and
/// the guard's event about it).
const SAME_EVENT: Duration = Duration::from_secs(10);

impl IncidentDesk {
    /// A desk over a guard (for pauses and suppression) and the ledger (for storage and
    /// numbers).
    pub fn new(guard: Guard, ledger: Ledger) -> Self {
        IncidentDesk { guard, ledger }
    }

    /// The guard.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Opens an incident for a campaign: pauses the campaign (durable before this returns) and
    /// records the incident with `opened` and `pause` on its timeline.
    ///
    /// # Errors
    /// An empty campaign or reason, an open incident for the campaign already, the pause
    /// failed, or the database failed.
    pub fn open(
        &self,
        campaign: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Incident, IncidentError> {
        let campaign = campaign.trim();
        let reason = reason.trim();
        if campaign.is_empty() {
            return Err(IncidentError::Invalid("incident needs a campaign".into()));
        }
        if reason.is_empty() {
            return Err(IncidentError::Invalid("incident needs a reason".into()));
        }
        let actor = non_empty(actor);
        if let Some(open) = self
            .list()?
            .into_iter()
            .find(|i| i.is_open() && i.campaign == campaign)
        {
            return Err(IncidentError::AlreadyOpen(open.id));
        }
        let scope = Scope::Campaign(campaign.to_string());
        let pause = self
            .guard
            .pause(scope.clone(), &format!("incident: {reason}"), actor, None)?;
        let now = SystemTime::now();
        let day = humantime::format_rfc3339(now).to_string();
        let day: String = day.chars().take(10).filter(|c| *c != '-').collect();
        let id = self.ledger.with_conn(|c| {
            let prefix = format!("INC-{day}-");
            let n: i64 = c.query_row(
                "SELECT count(*) FROM incidents WHERE id LIKE ?1 || '%'",
                params![prefix],
                |r| r.get(0),
            )?;
            let mut seq = n + 1;
            loop {
                let id = format!("{prefix}{seq}");
                let inserted = c.execute(
                    "INSERT OR IGNORE INTO incidents (id, campaign, reason, opened_by, opened_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, campaign, reason, actor, ms(now)],
                )?;
                if inserted == 1 {
                    return Ok(id);
                }
                seq += 1;
            }
        })?;
        self.append(&id, now, "opened", actor, reason)?;
        self.append(
            &id,
            pause.created_at,
            "pause",
            actor,
            &describe_pause(&scope, &pause.reason),
        )?;
        tracing::warn!(incident = %id, %campaign, %reason, %actor, "incident opened");
        self.get(&id)
    }

    /// Adds a note to an open incident.
    ///
    /// # Errors
    /// No such incident, it is closed, the text is empty, or the database failed.
    pub fn note(&self, id: &str, text: &str, actor: &str) -> Result<Incident, IncidentError> {
        let inc = self.get(id)?;
        if !inc.is_open() {
            return Err(IncidentError::Closed(inc.id));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(IncidentError::Invalid("empty note".into()));
        }
        self.append(&inc.id, SystemTime::now(), "note", non_empty(actor), text)?;
        self.get(&inc.id)
    }

    /// Closes an incident (the campaign's pause is left as it is: resuming is a separate,
    /// deliberate step).
    ///
    /// # Errors
    /// No such incident, it is already closed, or the database failed.
    pub fn close(
        &self,
        id: &str,
        actor: &str,
        note: Option<&str>,
    ) -> Result<Incident, IncidentError> {
        let inc = self.get(id)?;
        if !inc.is_open() {
            return Err(IncidentError::Closed(inc.id));
        }
        let actor = non_empty(actor);
        let now = SystemTime::now();
        self.ledger.with_conn(|c| {
            c.execute(
                "UPDATE incidents SET closed_at = ?2, closed_by = ?3 WHERE id = ?1",
                params![inc.id, ms(now), actor],
            )
        })?;
        self.append(
            &inc.id,
            now,
            "closed",
            actor,
            note.map(str::trim).unwrap_or(""),
        )?;
        tracing::info!(incident = %inc.id, %actor, "incident closed");
        self.get(&inc.id)
    }

    /// One incident with its timeline.
    ///
    /// # Errors
    /// No such incident, or the database failed.
    pub fn get(&self, id: &str) -> Result<Incident, IncidentError> {
        let found = self.ledger.with_conn(|c| {
            let inc = c
                .query_row(
                    "SELECT id, campaign, reason, opened_by, opened_at, closed_at, closed_by \
                     FROM incidents WHERE id = ?1",
                    params![id.trim()],
                    row_to_incident,
                )
                .optional()?;
            let Some(mut inc) = inc else { return Ok(None) };
            let mut st = c.prepare_cached(
                "SELECT at, kind, actor, text FROM incident_events WHERE incident = ?1 ORDER BY id",
            )?;
            let rows = st.query_map(params![inc.id], |r| {
                Ok(TimelineEntry {
                    at: from_ms(r.get(0)?),
                    kind: r.get(1)?,
                    actor: r.get(2)?,
                    text: r.get(3)?,
                })
            })?;
            inc.timeline = rows.collect::<rusqlite::Result<_>>()?;
            Ok(Some(inc))
        })?;
        found.ok_or_else(|| IncidentError::NotFound(id.to_string()))
    }

    /// Every incident, newest first (without timelines).
    ///
    /// # Errors
    /// The database failed.
    pub fn list(&self) -> Result<Vec<Incident>, IncidentError> {
        Ok(self.ledger.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, campaign, reason, opened_by, opened_at, closed_at, closed_by \
                 FROM incidents ORDER BY opened_at DESC, id DESC",
            )?;
            let rows = st.query_map([], row_to_incident)?;
            rows.collect()
        })?)
    }

    /// The incident's report: the ledger's numbers for its campaign and the size of the
    /// apology audience. Records still queued in the ledger are not counted: flush first.
    ///
    /// # Errors
    /// No such incident, or the database failed.
    pub fn report(&self, id: &str) -> Result<IncidentReport, IncidentError> {
        let incident = self.get(id)?;
        let campaign = self.ledger.campaign_report(&incident.campaign)?;
        let relayed = self.ledger.affected_recipients(&incident.campaign)?;
        let audience = relayed
            .iter()
            .filter(|r| self.guard.suppression(r).is_none())
            .count() as u64;
        Ok(IncidentReport {
            suppressed_now: relayed.len() as u64 - audience,
            audience,
            incident,
            campaign,
        })
    }

    /// The affected audience: recipients the upstream accepted the campaign for, minus
    /// everyone suppressed now, sorted.
    ///
    /// # Errors
    /// No such incident, or the database failed.
    pub fn audience(&self, id: &str) -> Result<Vec<String>, IncidentError> {
        let incident = self.get(id)?;
        let mut v = self.ledger.affected_recipients(&incident.campaign)?;
        v.retain(|r| self.guard.suppression(r).is_none());
        Ok(v)
    }

    /// Puts a guard event (pause, resume, expiry) on the timeline of every open incident it
    /// concerns: its campaign, or global. Returns how many incidents it was added to.
    ///
    /// # Errors
    /// The database failed.
    pub fn record_guard_event(&self, ev: &GuardEvent) -> Result<usize, IncidentError> {
        let campaign = match &ev.scope {
            Scope::Campaign(c) => Some(c.as_str()),
            Scope::Global => None,
            _ => return Ok(0),
        };
        let open: Vec<Incident> = self
            .list()?
            .into_iter()
            .filter(|i| i.is_open() && campaign.is_none_or(|c| c == i.campaign))
            .collect();
        let text = match ev.action {
            "pause" => describe_pause(&ev.scope, &ev.reason),
            _ if ev.reason.is_empty() => ev.scope.to_string(),
            _ => format!("{}: {}", ev.scope, ev.reason),
        };
        let mut n = 0;
        for inc in open {
            let full = self.get(&inc.id)?;
            let dup = full.timeline.iter().rev().any(|e| {
                e.kind == ev.action && e.text == text && abs_diff(e.at, ev.at) < SAME_EVENT
            });
            if !dup {
                self.append(&inc.id, ev.at, ev.action, &ev.actor, &text)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Follows the guard's events until the guard is dropped, putting each on the timelines
    /// (run it as a task: `tokio::spawn(desk.clone().follow(guard.subscribe()))`).
    pub async fn follow(self, mut rx: tokio::sync::broadcast::Receiver<GuardEvent>) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let desk = self.clone();
                    let res =
                        tokio::task::spawn_blocking(move || desk.record_guard_event(&ev)).await;
                    match res {
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "cannot record event on incident timeline")
                        }
                        Err(e) => tracing::error!(error = %e, "incident timeline task failed"),
                        Ok(Ok(_)) => {}
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "incident timeline missed guard events");
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    fn append(
        &self,
        id: &str,
        at: SystemTime,
        kind: &str,
        actor: &str,
        text: &str,
    ) -> Result<(), IncidentError> {
        self.ledger.with_conn(|c| {
            c.execute(
                "INSERT INTO incident_events (incident, at, kind, actor, text) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, ms(at), kind, actor, text],
            )
        })?;
        Ok(())
    }
}

fn describe_pause(scope: &Scope, reason: &str) -> String {
    format!("{scope} paused: {reason}")
}

fn non_empty(actor: &str) -> &str {
    let a = actor.trim();
    if a.is_empty() {
        "admin"
    } else {
        a
    }
}

fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn row_to_incident(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        campaign: r.get(1)?,
        reason: r.get(2)?,
        opened_by: r.get(3)?,
        opened_at: from_ms(r.get(4)?),
        closed_at: r.get::<_, Option<i64>>(5)?.map(from_ms),
        closed_by: r.get(6)?,
        timeline: Vec::new(),
    })
}
