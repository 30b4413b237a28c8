//! The deliverability monitor: upstream replies and delivery events per campaign and per
//! recipient domain in sliding windows, and the automatic pause of a campaign whose rates cross
//! the policy's thresholds.
//!
//! Policy (`[monitor]` in a policy file):
//!
//! ```toml
//! [monitor]
//! window = "1h"            # sliding window (kept in `bucket`-wide buckets)
//! bucket = "1m"
//! min_recipients = 200     # no verdict on fewer recipients than this in the window
//! rejection_rate = 0.05    # permanent refusals (upstream 5xx, hard bounces)
//! deferral_rate = 0.3      # temporary refusals (upstream 4xx, deferred events)
//! complaint_rate = 0.001   # spam complaints
//! ```
//!
//! Rates are measured two ways and either may trip: over the upstream's replies to the proxy
//! (2xx / 4xx / 5xx), and over delivery events (delivered, deferred, bounces, complaints; the
//! complaint rate's denominator is the larger of the accepted replies and the delivered events).
//! A trip pauses the campaign through [`Guard::pause`] (actor `sendguard`, reason like
//! `auto: rejection rate 6.1% over 250 recipients`), which fires the guard's alert event, and
//! clears the campaign's window so a resume starts from fresh numbers.

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::events::{BounceClass, DeliveryEvent, EventKind};
use crate::model::{domain_of, Scope};
use crate::Guard;

/// `[monitor]`: thresholds that pause a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorPolicy {
    /// Whether crossing a threshold pauses the campaign (default on). The numbers are kept
    /// either way.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The sliding window (default 1h).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Width of one bucket of the window (default 1m).
    #[serde(default = "default_bucket", with = "humantime_serde")]
    pub bucket: Duration,
    /// Fewest recipients in the window before any rate counts (default 200).
    #[serde(default = "default_min")]
    pub min_recipients: u64,
    /// Highest share of permanent refusals (default 0.05).
    #[serde(default = "default_rejection")]
    pub rejection_rate: f64,
    /// Highest share of temporary refusals (default 0.3).
    #[serde(default = "default_deferral")]
    pub deferral_rate: f64,
    /// Highest share of spam complaints (default 0.001).
    #[serde(default = "default_complaint")]
    pub complaint_rate: f64,
}

fn yes() -> bool {
    true
}
fn default_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_bucket() -> Duration {
    Duration::from_secs(60)
}
fn default_min() -> u64 {
    200
}
fn default_rejection() -> f64 {
    0.05
}
fn default_deferral() -> f64 {
    0.3
}
fn default_complaint() -> f64 {
    0.001
}

impl Default for MonitorPolicy {
    fn default() -> Self {
        MonitorPolicy {
            enabled: true,
            window: default_window(),
            bucket: default_bucket(),
            min_recipients: default_min(),
            rejection_rate: default_rejection(),
            deferral_rate: default_deferral(),
            complaint_rate: default_complaint(),
        }
    }
}

/// Counts in one bucket (or summed over a window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Upstream replies 2xx.
    pub accepted: u64,
    /// Upstream replies 4xx.
    pub deferred: u64,
    /// Upstream replies 5xx.
    pub rejected: u64,
    /// `delivered` events.
    pub delivered_events: u64,
    /// `deferred` events and soft bounces.
    pub deferred_events: u64,
    /// Hard bounces and drops.
    pub bounced_events: u64,
    /// Spam complaints.
    pub complaints: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.accepted += o.accepted;
        self.deferred += o.deferred;
        self.rejected += o.rejected;
        self.delivered_events += o.delivered_events;
        self.deferred_events += o.deferred_events;
        self.bounced_events += o.bounced_events;
        self.complaints += o.complaints;
    }

    /// Upstream replies.
    pub fn replies(&self) -> u64 {
        self.accepted + self.deferred + self.rejected
    }

    /// Events that tell a delivery outcome.
    pub fn outcome_events(&self) -> u64 {
        self.delivered_events + self.deferred_events + self.bounced_events
    }
}

#[derive(Debug, Default)]
struct Window {
    /// (bucket index, counts), oldest first.
    buckets: VecDeque<(u64, Counts)>,
}

impl Window {
    fn bump(&mut self, idx: u64, keep: u64, f: impl FnOnce(&mut Counts)) {
        match self.buckets.back_mut() {
            // The current bucket, or a late arrival: counted in the newest bucket.
            Some((i, c)) if *i >= idx => f(c),
            _ => {
                let mut c = Counts::default();
                f(&mut c);
                self.buckets.push_back((idx, c));
            }
        }
        self.trim(idx, keep);
    }

    fn trim(&mut self, now_idx: u64, keep: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|(i, _)| *i + keep <= now_idx)
        {
            self.buckets.pop_front();
        }
    }

    fn sum(&self, now_idx: u64, keep: u64) -> Counts {
        let mut total = Counts::default();
        for (i, c) in &self.buckets {
            if *i + keep > now_idx {
                total.add(c);
            }
        }
        total
    }
}

/// The rates of one campaign or domain over the window.
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    /// The campaign or the recipient domain.
    pub key: String,
    /// The counts.
    pub counts: Counts,
    /// Permanent refusals over upstream replies.
    pub rejection_rate: Option<f64>,
    /// Temporary refusals over upstream replies.
    pub deferral_rate: Option<f64>,
    /// Complaints over recipients reached.
    pub complaint_rate: Option<f64>,
}

/// What `GET /v1/monitor` shows.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorSnapshot {
    /// The policy in force.
    pub policy: MonitorPolicy,
    /// Per campaign, most recipients first.
    pub campaigns: Vec<Rates>,
    /// Per recipient domain, most recipients first.
    pub domains: Vec<Rates>,
}

/// A threshold crossed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    /// The campaign paused.
    pub campaign: String,
    /// The reason given to the pause.
    pub reason: String,
}

/// The monitor. Share it with an `Arc`; recording takes one short lock.
pub struct Monitor {
    guard: Option<Guard>,
    policy: ArcSwap<MonitorPolicy>,
    campaigns: Mutex<HashMap<String, Window>>,
    domains: Mutex<HashMap<String, Window>>,
    recorded: std::sync::atomic::AtomicU64,
}

/// Windows are pruned of keys with no data left every this many records.
const PRUNE_EVERY: u64 = 10_000;

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Monitor {
    /// A monitor that pauses campaigns through `guard` (`None`: it only measures).
    pub fn new(guard: Option<Guard>, policy: MonitorPolicy) -> Self {
        Monitor {
            guard,
            policy: ArcSwap::from_pointee(policy),
            campaigns: Mutex::new(HashMap::new()),
            domains: Mutex::new(HashMap::new()),
            recorded: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Forgets campaigns and domains with nothing left in the window (done by itself every
    /// 10,000 records, so memory follows the traffic of the last window, not of all time).
    pub fn prune(&self, now: SystemTime) {
        let p = self.policy.load();
        let (idx, keep) = self.index(now, &p);
        for map in [&self.campaigns, &self.domains] {
            lock(map).retain(|_, w| {
                w.trim(idx, keep);
                !w.buckets.is_empty()
            });
        }
    }

    /// Replaces the policy (on reload).
    pub fn set_policy(&self, policy: MonitorPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<MonitorPolicy> {
        self.policy.load_full()
    }

    fn index(&self, at: SystemTime, p: &MonitorPolicy) -> (u64, u64) {
        let b = p.bucket.as_secs().max(1);
        let idx = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            / b;
        let keep = (p.window.as_secs() / b).max(1);
        (idx, keep)
    }

    /// Records the upstream's SMTP reply code for one recipient (call it per recipient after
    /// relaying). Returns the trip when this pushed the campaign over a threshold and the
    /// campaign was not paused yet; the campaign is then paused (called from a tokio runtime,
    /// the pause runs on the blocking pool, so it may land a moment after this returns).
    pub fn record_reply(
        &self,
        campaign: Option<&str>,
        recipient: &str,
        code: u16,
        at: SystemTime,
    ) -> Option<Trip> {
        let f = |c: &mut Counts| match code {
            200..=399 => c.accepted += 1,
            400..=499 => c.deferred += 1,
            _ => c.rejected += 1,
        };
        self.record(campaign, recipient, at, f, false)
    }

    /// Records a delivery event. Returns the trip, as [`Monitor::record_reply`], except that the
    /// pause is durable before this returns (it blocks on the state store: call it where
    /// blocking is allowed, as [`crate::events::ingest`] is), so an answer that reports the trip
    /// never runs ahead of the pause.
    pub fn record_event(&self, ev: &DeliveryEvent, at: SystemTime) -> Option<Trip> {
        let kind = ev.kind;
        let class = ev.bounce_class;
        let f = move |c: &mut Counts| match kind {
            EventKind::Delivered => c.delivered_events += 1,
            EventKind::Deferred => c.deferred_events += 1,
            EventKind::Bounce if class == Some(BounceClass::Soft) => c.deferred_events += 1,
            EventKind::Bounce | EventKind::Dropped => c.bounced_events += 1,
            EventKind::Complaint => c.complaints += 1,
            EventKind::Unsubscribe => {}
        };
        self.record(ev.campaign.as_deref(), &ev.recipient, at, f, true)
    }

    fn record(
        &self,
        campaign: Option<&str>,
        recipient: &str,
        at: SystemTime,
        f: impl Fn(&mut Counts),
        blocking: bool,
    ) -> Option<Trip> {
        let n = self
            .recorded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune(SystemTime::now());
        }
        let p = self.policy.load();
        let (idx, keep) = self.index(at, &p);
        let domain = domain_of(recipient).to_ascii_lowercase();
        if !domain.is_empty() {
            lock(&self.domains)
                .entry(domain)
                .or_default()
                .bump(idx, keep, &f);
        }
        let campaign = campaign?;
        let counts = {
            let mut map = lock(&self.campaigns);
            let w = map.entry(campaign.to_string()).or_default();
            w.bump(idx, keep, &f);
            w.sum(idx, keep)
        };
        if !p.enabled {
            return None;
        }
        let reason = verdict(&counts, &p)?;
        let trip = Trip {
            campaign: campaign.to_string(),
            reason,
        };
        // Start afresh: a resume must not trip again on the numbers that caused this pause.
        lock(&self.campaigns).remove(campaign);
        self.pause(&trip, blocking).then_some(trip)
    }

    /// Pauses the trip's campaign (on the blocking pool when called from a tokio runtime, unless
    /// `blocking` says the caller may block); `false` when it is paused already.
    fn pause(&self, trip: &Trip, blocking: bool) -> bool {
        let Some(guard) = self.guard.clone() else {
            return true;
        };
        let scope = Scope::Campaign(trip.campaign.clone());
        if guard.pauses().iter().any(|p| p.scope == scope) {
            return false;
        }
        let reason = trip.reason.clone();
        let run = move || match guard.pause(scope.clone(), &reason, "sendguard", None) {
            Ok(_) => {
                tracing::warn!(%scope, %reason, "campaign paused by the deliverability monitor")
            }
            Err(e) => tracing::error!(%scope, error = %e, "deliverability monitor could not pause"),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if !blocking => {
                h.spawn_blocking(run);
            }
            _ => run(),
        }
        true
    }

    /// The rates of every campaign and domain with data in the window.
    pub fn snapshot(&self, now: SystemTime) -> MonitorSnapshot {
        let p = self.policy.load_full();
        let (idx, keep) = self.index(now, &p);
        let rates = |map: &Mutex<HashMap<String, Window>>| {
            let mut v: Vec<Rates> = lock(map)
                .iter()
                .map(|(k, w)| rates(k, w.sum(idx, keep)))
                .filter(|r| r.counts != Counts::default())
                .collect();
            v.sort_by(|a, b| {
                b.counts
                    .replies()
                    .max(b.counts.outcome_events())
                    .cmp(&a.counts.replies().max(a.counts.outcome_events()))
                    .then_with(|| a.key.cmp(&b.key))
            });
            v
        };
        MonitorSnapshot {
            campaigns: rates(&self.campaigns),
            domains: rates(&self.domains),
            policy: (*p).clone(),
        }
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn rates(key: &str, c: Counts) -> Rates {
    Rates {
        key: key.to_string(),
        counts: c,
        rejection_rate: ratio(c.rejected, c.replies()),
        deferral_rate: ratio(c.deferred, c.replies()),
        complaint_rate: ratio(c.complaints, c.accepted.max(c.delivered_events)),
    }
}

/// The reason to pause, when a threshold is crossed.
fn verdict(c: &Counts, p: &MonitorPolicy) -> Option<String> {
    let over = |n: u64, d: u64, limit: f64, what: &str| {
        (d >= p.min_recipients.max(1) && n as f64 / d as f64 > limit).then(|| {
            format!(
                "auto: {what} {:.1}% over {d} recipients",
                n as f64 * 100.0 / d as f64
            )
        })
    };
    let reached = c.accepted.max(c.delivered_events);
    over(c.rejected, c.replies(), p.rejection_rate, "rejection rate")
        .or_else(|| {
            over(
                c.bounced_events,
                c.outcome_events(),
                p.rejection_rate,
                "bounce rate",
            )
        })
        .or_else(|| over(c.complaints, reached, p.complaint_rate, "complaint rate"))
        .or_else(|| over(c.deferred, c.replies(), p.deferral_rate, "deferral rate"))
        .or_else(|| {
            over(
                c.deferred_events,
                c.outcome_events(),
                p.deferral_rate,
                "deferral rate",
            )
        })
}
