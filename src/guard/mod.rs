//! [`Guard`]: the policy engine with its live state, the one handle every front-end and
//! embedding application uses.
//!
//! A guard owns the current policy snapshot (swapped atomically on reload), the pause snapshot
//! (swapped on every pause and resume, after the durable write), the suppression index, the ramps
//! and the metrics. Every check reads snapshots and never blocks on I/O; only the operations that
//! change durable state (pause, resume, suppress) write to the state store before returning.

mod operations;
mod watch;

pub use operations::Operations;
pub use watch::PolicyWatcher;

use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::metrics::Metrics;
use crate::model::{domain_of, Action, Disposition, Envelope, Message, Refusal, Scope, Verdict};
use crate::policy::kill_switch::{Pause, PauseQuery};
use crate::policy::suppression::{
    self, Entry, LoadReport, Overlay, SuppressionIndex, SuppressionMatch,
};
use crate::policy::{Context, PolicyErrors, PolicySet};
use crate::ratelimit::{RampSpec, RampStatus};
use crate::state::{AuditEntry, ControlState, StateError, Store};

/// Where a guard finds its policies and keeps its state.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The policies directory (`*.toml` files and the suppression lists they name). `None` runs
    /// on the built-in defaults.
    pub policies_dir: Option<PathBuf>,
    /// The state directory (state database, imported suppression lists). `None` keeps control
    /// state in memory only, for offline checks and tests.
    pub state_dir: Option<PathBuf>,
}

impl GuardConfig {
    /// Policies from `policies_dir`, state in `state_dir`.
    pub fn new(policies_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        GuardConfig {
            policies_dir: Some(policies_dir.into()),
            state_dir: Some(state_dir.into()),
        }
    }

    /// Built-in default policies and in-memory state: for tests and offline use.
    pub fn in_memory() -> Self {
        GuardConfig {
            policies_dir: None,
            state_dir: None,
        }
    }
}

/// Why a guard operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The policies could not be loaded; the previous ones (if any) stay in force.
    #[error("policies not loaded: {0}")]
    Policy(#[from] PolicyErrors),
    /// The state store failed; the operation did not take effect.
    #[error(transparent)]
    State(#[from] StateError),
    /// A suppression list could not be read.
    #[error("suppression lists: {0}")]
    Suppression(String),
    /// The caller's input was wrong.
    #[error("{0}")]
    Invalid(String),
    /// An I/O error on a file of the state directory.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Something that happened to the control state, for alert webhooks and logs.
#[derive(Debug, Clone, Serialize)]
pub struct GuardEvent {
    /// `pause`, `resume` or `expire`.
    pub action: &'static str,
    /// The scope.
    pub scope: Scope,
    /// The reason given (for a pause) or the ramp (for a resume).
    pub reason: String,
    /// Who did it (`sendguard` for automatic actions).
    pub actor: String,
    /// When.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Generation of the policies in force.
    pub policy_generation: u64,
    /// The policy files in force.
    pub policy_files: Vec<String>,
    /// The last reload error, while the previous policies stay in force.
    pub reload_error: Option<String>,
    /// Pauses in force.
    pub pauses: Vec<Pause>,
    /// Ramps in progress.
    pub ramps: Vec<RampStatus>,
    /// Entries in the suppression index (file lists and imports).
    pub suppression_entries: usize,
    /// Messages judged since start.
    pub messages_checked: u64,
    /// Messages refused since start.
    pub messages_refused: u64,
}

/// Result of a bulk suppression import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Entries read.
    pub imported: usize,
    /// Lines that were not entries (skipped).
    pub malformed: usize,
    /// The first few malformed lines, with line numbers.
    pub first_errors: Vec<String>,
    /// Entries in the suppression index afterwards.
    pub total_entries: usize,
}

/// The guard: cheap to clone, shared by every front-end.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("policy_generation", &self.policy_generation())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: GuardConfig,
    policies: ArcSwap<PolicySet>,
    reload_error: Mutex<Option<String>>,
    reload_lock: Mutex<()>,
    control: ControlState,
    suppression_lock: Mutex<()>,
    suppressions: ArcSwap<SuppressionIndex>,
    overlay: ArcSwap<Overlay>,
    metrics: Arc<Metrics>,
    events: tokio::sync::broadcast::Sender<GuardEvent>,
    trips: Mutex<HashMap<String, VecDeque<Instant>>>,
    checked: AtomicU64,
    refused: AtomicU64,
    ops: OnceLock<Arc<Operations>>,
    /// Scopes whose ramp rate is exported, so a ramp that ended loses its series.
    ramp_series: Mutex<std::collections::HashSet<String>>,
}

const ACTOR_SELF: &str = "sendguard";
const AUTO_TRIP_REASON: &str = "auto: placeholder leak";

impl Guard {
    /// Opens a guard: loads the policies, opens the state store and restores pauses, ramps and
    /// run-time suppression edits from it.
    ///
    /// # Errors
    /// Policies that do not load (every problem with file, line and key), a state directory
    /// that cannot be opened, or a suppression list that cannot be read.
    pub fn open(config: GuardConfig) -> Result<Guard, GuardError> {
        let policies = match &config.policies_dir {
            Some(dir) => PolicySet::load(dir, 1)?,
            None => PolicySet::defaults(1)?,
        };
        let store = match &config.state_dir {
            Some(dir) => Store::open(dir)?,
            None => Store::open_in_memory()?,
        };
        let (adds, removes) = store.suppression_overrides()?;
        let control = ControlState::load(store, &policies.file.ramp)?;
        let overlay = build_overlay(&adds, &removes);
        let index = build_index(&policies, config.state_dir.as_deref())?;
        let metrics = Arc::new(Metrics::new());
        metrics.reload(true, policies.generation);
        metrics.set_active_pauses(control.pauses().len());
        let (events, _) = tokio::sync::broadcast::channel(256);
        Ok(Guard {
            inner: Arc::new(Inner {
                config,
                policies: ArcSwap::from_pointee(policies),
                reload_error: Mutex::new(None),
                reload_lock: Mutex::new(()),
                control,
                suppression_lock: Mutex::new(()),
                suppressions: ArcSwap::from_pointee(index),
                overlay: ArcSwap::from_pointee(overlay),
                metrics,
                events,
                trips: Mutex::new(HashMap::new()),
                checked: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                ops: OnceLock::new(),
                ramp_series: Mutex::default(),
            }),
        })
    }

    /// The configuration the guard was opened with.
    pub fn config(&self) -> &GuardConfig {
        &self.inner.config
    }

    /// The policy snapshot in force (cheap; hold it for one decision, not longer).
    pub fn policies(&self) -> Arc<PolicySet> {
        self.inner.policies.load_full()
    }

    /// Generation of the policies in force; increases with every successful reload.
    pub fn policy_generation(&self) -> u64 {
        self.inner.policies.load().generation
    }

    /// The metrics every front-end updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The state store (for modules that keep their own tables in it).
    pub fn store(&self) -> &Store {
        self.inner.control.store()
    }

    /// Subscribes to pause, resume and expiry events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GuardEvent> {
        self.inner.events.subscribe()
    }

    fn suppressed(&self, address: &str) -> Option<SuppressionMatch> {
        let index = self.inner.suppressions.load();
        let overlay = self.inner.overlay.load();
        suppression::check(&index, &overlay, address)
    }

    fn with_context<T>(&self, f: impl FnOnce(&PolicySet, &Context<'_>) -> T) -> T {
        let policies = self.inner.policies.load();
        let pauses = self.inner.control.pauses();
        let lookup = |a: &str| self.suppressed(a);
        let ctx = Context {
            pauses: &pauses,
            suppressed: &lookup,
            now: SystemTime::now(),
        };
        f(&policies, &ctx)
    }

    /// Checks the sender at `MAIL FROM`: pauses of the global, tenant and sender scopes (the
    /// campaign is not known before the headers).
    ///
    /// # Errors
    /// The refusal when a pause covers the sender.
    pub fn check_sender(&self, env: &Envelope) -> Result<(), Refusal> {
        self.with_context(|p, ctx| match p.pause_for(env, None, ctx) {
            Some(r) => Err(r),
            None => Ok(()),
        })
    }

    /// Checks one recipient at `RCPT TO`: suppression, and pauses of its domain (and of the
    /// sender's scopes).
    ///
    /// # Errors
    /// The refusal for this recipient.
    pub fn check_recipient(&self, env: &Envelope, recipient: &str) -> Result<(), Refusal> {
        self.with_context(|p, ctx| match p.evaluate_recipient(env, recipient, ctx) {
            Some(r) => Err(r),
            None => Ok(()),
        })
    }

    /// Judges a whole message at end of data: fills in campaign and tenant from the headers,
    /// then checks pauses, suppression of every recipient and placeholder leaks.
    ///
    /// A blocked leak counts towards the campaign's automatic trip; when the trip fires the
    /// campaign is paused (durably) before this returns.
    pub fn check_message(&self, env: &mut Envelope, msg: &Message) -> Verdict {
        let started = Instant::now();
        let verdict = self.with_context(|p, ctx| {
            p.identify(env, msg);
            p.evaluate(env, msg, ctx)
        });
        let mut verdict = verdict;
        self.apply_operations(env, Some(msg), &mut verdict);
        self.after_check(env, &verdict, started);
        verdict
    }

    /// Judges content that arrived decoded (an HTTP send API's JSON fields): the same checks as
    /// [`Guard::check_message`], without MIME. Campaign and tenant are completed from
    /// `content.headers` where the front-end did not set them. There is no message to keep, so a
    /// `quarantine` verdict keeps no copy here: the caller keeps one (the HTTP proxy keeps the
    /// message the service would have built).
    pub fn check_content(
        &self,
        env: &mut Envelope,
        content: &crate::model::Content<'_>,
    ) -> Verdict {
        let started = Instant::now();
        let verdict = self.with_context(|p, ctx| {
            p.identify_headers(env, &content.headers);
            p.evaluate_content(env, content, ctx)
        });
        let mut verdict = verdict;
        self.apply_operations(env, None, &mut verdict);
        self.after_check(env, &verdict, started);
        verdict
    }

    fn after_check(&self, env: &Envelope, verdict: &Verdict, started: Instant) {
        self.inner.checked.fetch_add(1, Ordering::Relaxed);
        if !verdict.is_pass() {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
        }
        self.inner
            .metrics
            .check_duration("engine", started.elapsed().as_secs_f64());
        if let Some(Refusal::Placeholder { token, .. }) = &verdict.refusal {
            if let Some(campaign) = &env.campaign {
                self.count_leak(campaign, token);
            }
        }
    }

    /// The last gate before a message is relayed: pauses (re-read, so a pause that became
    /// durable after [`Guard::check_message`] still stops it) and ramps (takes one permit).
    /// Call it immediately before handing the message to the upstream.
    ///
    /// # Errors
    /// `Paused` or `RateLimited`.
    pub fn admit(&self, env: &Envelope) -> Result<(), Refusal> {
        let now = SystemTime::now();
        let pauses = self.inner.control.pauses();
        let q = PauseQuery {
            campaign: env.campaign.as_deref(),
            tenant: env.effective_tenant(),
            sender: &env.sender,
            recipient_domain: None,
        };
        if !pauses.is_empty() {
            let hit = pauses.find(&q, now).or_else(|| {
                env.recipients.iter().find_map(|r| {
                    pauses.find(
                        &PauseQuery {
                            recipient_domain: Some(domain_of(r)),
                            ..q
                        },
                        now,
                    )
                })
            });
            if let Some(p) = hit {
                return Err(Refusal::Paused {
                    scope: p.scope.clone(),
                    reason: p.reason.clone(),
                });
            }
        }
        let ramps = self.inner.control.ramps();
        if !ramps.is_empty() {
            let domains: Vec<&str> = env.recipients.iter().map(|r| domain_of(r)).collect();
            ramps
                .admit(&q, &domains, now)
                .map_err(|(scope, retry_after)| Refusal::RateLimited { scope, retry_after })?;
        }
        self.reserve_apology(env)
    }

    fn count_leak(&self, campaign: &str, token: &str) {
        let trip = self.inner.policies.load().file.auto_trip.clone();
        if !trip.enabled {
            return;
        }
        let now = Instant::now();
        let fire = {
            let mut trips = self.inner.trips.lock().unwrap_or_else(|e| e.into_inner());
            let q = trips.entry(campaign.to_string()).or_default();
            q.push_back(now);
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) > trip.window)
            {
                q.pop_front();
            }
            let fire = q.len() >= trip.leaks as usize;
            if fire {
                q.clear();
            }
            fire
        };
        let scope = Scope::Campaign(campaign.to_string());
        if fire && self.inner.control.pauses().get(&scope).is_none() {
            let reason = format!("{AUTO_TRIP_REASON} ({token})");
            match self.pause(scope.clone(), &reason, ACTOR_SELF, None) {
                Ok(_) => tracing::warn!(%scope, %token, "campaign paused by the automatic trip"),
                Err(e) => tracing::error!(%scope, error = %e, "automatic trip could not pause"),
            }
        }
    }

    /// Pauses a scope. The pause is durable before this returns and in force for every check
    /// that starts afterwards. Pausing a scope that is already paused replaces its reason and
    /// expiry.
    ///
    /// # Errors
    /// The state store failed: the pause did not take effect.
    pub fn pause(
        &self,
        scope: Scope,
        reason: &str,
        actor: &str,
        ttl: Option<Duration>,
    ) -> Result<Pause, GuardError> {
        let reason = if reason.trim().is_empty() {
            "paused"
        } else {
            reason.trim()
        };
        let mut pause = Pause::new(scope.clone(), reason, actor, SystemTime::now());
        if let Some(ttl) = ttl {
            pause = pause.expiring_after(ttl);
        }
        self.inner.control.pause(pause.clone())?;
        self.inner
            .metrics
            .set_active_pauses(self.inner.control.pauses().len());
        tracing::warn!(%scope, reason = %pause.reason, %actor, "paused");
        self.emit("pause", &pause.scope, &pause.reason, actor);
        Ok(pause)
    }

    /// Resumes a scope, optionally on a ramp (without one, the policies' default ramp applies,
    /// if any). Returns the pause that was lifted, `None` when the scope was not paused.
    ///
    /// # Errors
    /// The state store failed: the pause stays.
    pub fn resume(
        &self,
        scope: &Scope,
        actor: &str,
        ramp: Option<RampSpec>,
    ) -> Result<Option<Pause>, GuardError> {
        let policies = self.inner.policies.load();
        let ramp = policies.file.ramp.ramp_for(ramp);
        let detail = ramp
            .as_ref()
            .map(|r| format!("ramp {r}"))
            .unwrap_or_default();
        let removed = self.inner.control.resume(
            scope,
            actor,
            ramp,
            policies.file.ramp.per_domain,
            SystemTime::now(),
        )?;
        self.inner
            .metrics
            .set_active_pauses(self.inner.control.pauses().len());
        if removed.is_some() {
            tracing::info!(%scope, %actor, ramp = %detail, "resumed");
            self.emit("resume", scope, &detail, actor);
        }
        Ok(removed)
    }

    /// Lifts pauses whose time-to-live has passed (durably, with an audit entry). The daemon
    /// calls this every second; checks ignore expired pauses even before it runs.
    ///
    /// # Errors
    /// The state store failed; the expired pauses stay listed until the next call.
    pub fn expire_due(&self) -> Result<Vec<Pause>, GuardError> {
        let policies = self.inner.policies.load();
        let due = self
            .inner
            .control
            .sweep(&policies.file.ramp, SystemTime::now())?;
        if !due.is_empty() {
            self.inner
                .metrics
                .set_active_pauses(self.inner.control.pauses().len());
        }
        for p in &due {
            tracing::info!(scope = %p.scope, "pause expired");
            self.emit("expire", &p.scope, &p.reason, ACTOR_SELF);
        }
        Ok(due)
    }

    fn emit(&self, action: &'static str, scope: &Scope, reason: &str, actor: &str) {
        // No subscriber is fine: alerts are optional.
        let _ = self.inner.events.send(GuardEvent {
            action,
            scope: scope.clone(),
            reason: reason.to_string(),
            actor: actor.to_string(),
            at: SystemTime::now(),
        });
    }

    /// The pauses in force.
    pub fn pauses(&self) -> Vec<Pause> {
        self.inner.control.pauses().iter().cloned().collect()
    }

    /// The ramps in progress with their current rate.
    pub fn ramps(&self) -> Vec<RampStatus> {
        let now = SystemTime::now();
        let status = self.inner.control.ramps().status(now);
        let current: std::collections::HashSet<String> =
            status.iter().map(|r| r.scope.to_string()).collect();
        let mut shown = self
            .inner
            .ramp_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for gone in shown.difference(&current) {
            self.inner.metrics.set_ramp_rate(gone, None);
        }
        for r in &status {
            self.inner
                .metrics
                .set_ramp_rate(&r.scope.to_string(), Some(r.rate_per_second));
        }
        *shown = current;
        status
    }

    /// Every metric in the Prometheus text format, with the ramp rates brought up to date.
    pub fn render_metrics(&self) -> String {
        self.ramps();
        self.inner.metrics.render()
    }

    /// The audit trail of pauses, resumes, expiries and suppression edits, newest first.
    ///
    /// # Errors
    /// The state store failed.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, GuardError> {
        Ok(self.store().audit(limit)?)
    }

    /// Reloads the policies (and the suppression lists they name) now. The new snapshot is built
    /// off the hot path and swapped in whole; on any error the previous one stays in force and
    /// the error is kept for `status`.
    ///
    /// # Errors
    /// What is wrong with the files, each problem with file, line and key.
    pub fn reload(&self) -> Result<u64, GuardError> {
        let _g = self
            .inner
            .reload_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let next_gen = self.policy_generation() + 1;
        let result = match &self.inner.config.policies_dir {
            Some(dir) => PolicySet::load(dir, next_gen).map_err(GuardError::from),
            None => PolicySet::defaults(next_gen).map_err(GuardError::from),
        }
        .and_then(|set| {
            let index = build_index(&set, self.inner.config.state_dir.as_deref())?;
            Ok((set, index))
        });
        match result {
            Ok((set, index)) => {
                self.inner.suppressions.store(Arc::new(index));
                self.inner.policies.store(Arc::new(set));
                *self
                    .inner
                    .reload_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                self.inner.metrics.reload(true, next_gen);
                tracing::info!(generation = next_gen, "policies reloaded");
                if let Some(ops) = self.operations() {
                    ops.refresh(self);
                }
                Ok(next_gen)
            }
            Err(e) => {
                let msg = e.to_string();
                *self
                    .inner
                    .reload_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
                self.inner.metrics.reload(false, next_gen - 1);
                tracing::error!(error = %msg, "policy reload failed; previous policies stay in force");
                Err(e)
            }
        }
    }

    /// Starts watching the policies directory: changes are debounced and reloaded.
    ///
    /// # Errors
    /// The directory cannot be watched (or the guard runs on built-in defaults).
    pub fn watch(&self) -> Result<PolicyWatcher, GuardError> {
        let dir = self
            .inner
            .config
            .policies_dir
            .clone()
            .ok_or_else(|| GuardError::Invalid("no policies directory to watch".into()))?;
        PolicyWatcher::start(self.clone(), &dir)
    }

    /// What `status` shows: policies, pauses, ramps, counters.
    pub fn status(&self) -> Status {
        let p = self.inner.policies.load();
        Status {
            policy_generation: p.generation,
            policy_files: p.sources.iter().map(|s| s.display().to_string()).collect(),
            reload_error: self
                .inner
                .reload_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            pauses: self.pauses(),
            ramps: self.ramps(),
            suppression_entries: self.inner.suppressions.load().len(),
            messages_checked: self.inner.checked.load(Ordering::Relaxed),
            messages_refused: self.inner.refused.load(Ordering::Relaxed),
        }
    }

    /// Whether an address is suppressed, and by which entry.
    pub fn suppression(&self, address: &str) -> Option<SuppressionMatch> {
        self.suppressed(address)
    }

    /// Adds one suppression entry at run time (durable before it returns).
    ///
    /// # Errors
    /// The entry does not parse, or the state store failed.
    pub fn suppress(&self, entry: &str, actor: &str) -> Result<Entry, GuardError> {
        let parsed = Entry::parse(entry)
            .map_err(|e| GuardError::Invalid(e.to_string()))?
            .ok_or_else(|| GuardError::Invalid(format!("empty suppression entry {entry:?}")))?;
        let line = parsed.to_line();
        let _g = self
            .inner
            .suppression_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.store().suppression_add(&line, actor)?;
        self.refresh_overlay()?;
        Ok(parsed)
    }

    /// Removes a suppression entry at run time (durable before it returns). Removing an address
    /// that a list file suppresses records an exception, so the address passes again.
    ///
    /// # Errors
    /// The entry does not parse, or the state store failed.
    pub fn unsuppress(&self, entry: &str, actor: &str) -> Result<bool, GuardError> {
        let parsed = Entry::parse(entry)
            .map_err(|e| GuardError::Invalid(e.to_string()))?
            .ok_or_else(|| GuardError::Invalid(format!("empty suppression entry {entry:?}")))?;
        let was_suppressed = match &parsed {
            Entry::Address(a) => self.suppressed(a).is_some(),
            _ => true,
        };
        let _g = self
            .inner
            .suppression_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.store().suppression_remove(&parsed.to_line(), actor)?;
        self.refresh_overlay()?;
        Ok(was_suppressed)
    }

    fn refresh_overlay(&self) -> Result<(), GuardError> {
        let (adds, removes) = self.store().suppression_overrides()?;
        self.inner
            .overlay
            .store(Arc::new(build_overlay(&adds, &removes)));
        Ok(())
    }

    /// Imports suppression entries in bulk from a reader (one entry a line, the list-file
    /// forms), streaming: the lines are written to a list file in the state directory and the
    /// index is rebuilt from every list, then swapped in. Call it off the async runtime
    /// (`spawn_blocking`): a ten-million-line import takes seconds.
    ///
    /// # Errors
    /// No state directory, an I/O error, or the rebuilt index could not be loaded.
    pub fn import_suppressions<R: BufRead>(
        &self,
        reader: R,
        actor: &str,
    ) -> Result<ImportReport, GuardError> {
        let dir = self
            .inner
            .config
            .state_dir
            .as_ref()
            .ok_or_else(|| GuardError::Invalid("bulk import needs a state directory".into()))?
            .join("suppressions");
        std::fs::create_dir_all(&dir).map_err(|source| GuardError::Io {
            what: format!("cannot create {}", dir.display()),
            source,
        })?;
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let final_path = dir.join(format!("import-{stamp}.txt"));
        let tmp_path = dir.join(format!(".import-{stamp}.tmp"));
        let io = |what: &str, source| GuardError::Io {
            what: format!("{what} {}", tmp_path.display()),
            source,
        };
        let file = std::fs::File::create(&tmp_path).map_err(|e| io("cannot create", e))?;
        let mut out = std::io::BufWriter::new(file);
        let mut write_err = None;
        let report: LoadReport = suppression::parse_lines(reader, |e| {
            if write_err.is_none() {
                if let Err(err) = writeln!(out, "{}", e.to_line()) {
                    write_err = Some(err);
                }
            }
        })
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp_path);
            io("cannot read import for", e)
        })?;
        if let Some(e) = write_err {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(io("cannot write", e));
        }
        let file = out
            .into_inner()
            .map_err(|e| io("cannot write", e.into_error()))?;
        file.sync_all().map_err(|e| io("cannot sync", e))?;
        std::fs::rename(&tmp_path, &final_path).map_err(|e| io("cannot rename", e))?;
        let set = self.inner.policies.load();
        let index = build_index(&set, self.inner.config.state_dir.as_deref())?;
        let total = index.len();
        self.inner.suppressions.store(Arc::new(index));
        tracing::info!(imported = report.entries, malformed = report.malformed, %actor, file = %final_path.display(), "suppressions imported");
        Ok(ImportReport {
            imported: report.entries,
            malformed: report.malformed,
            first_errors: report.first_errors,
            total_entries: total,
        })
    }

    /// Whether a placeholder action blocks (anything but `log`).
    pub fn blocks(action: Action) -> bool {
        action.disposition() != Disposition::Pass
    }
}

fn build_overlay(adds: &[String], removes: &[String]) -> Overlay {
    let adds: Vec<Entry> = adds
        .iter()
        .filter_map(|l| Entry::parse(l).ok().flatten())
        .collect();
    Overlay::new(&adds, removes)
}

/// Builds the suppression index from the lists the policies name plus the lists imported into
/// the state directory.
fn build_index(set: &PolicySet, state_dir: Option<&Path>) -> Result<SuppressionIndex, GuardError> {
    let mut policy = set.file.suppression.clone();
    let base = if set.dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        set.dir.clone()
    };
    if let Some(state) = state_dir {
        let imported = state.join("suppressions");
        if imported.is_dir() {
            policy
                .lists
                .push(suppression::ListSpec::new(absolute(&imported)));
        }
    }
    let (index, report) = SuppressionIndex::build(&policy, &base, &[])
        .map_err(|e| GuardError::Suppression(e.to_string()))?;
    if report.malformed > 0 {
        tracing::warn!(malformed = report.malformed, first = ?report.first_errors, "suppression lists have malformed lines (skipped)");
    }
    Ok(index)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
