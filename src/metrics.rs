//! Prometheus metrics shared by every front-end, rendered by the admin API at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use crate::model::{Disposition, Verdict};

type Labels = Vec<(&'static str, String)>;

/// Every metric sendguard exports. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    messages: Family<Labels, Counter>,
    recipients: Family<Labels, Counter>,
    findings: Family<Labels, Counter>,
    upstream_replies: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    policy_generation: Gauge,
    active_pauses: Gauge,
    ramp_rate: Family<Labels, Gauge<f64, AtomicU64>>,
    connections: Family<Labels, Gauge>,
    check_seconds: Family<Labels, Histogram>,
    added_latency_seconds: Family<Labels, Histogram>,
    /// Series touched by every message of a front-end, looked up once: a `Family` lookup builds
    /// its label set (allocations) and takes a lock. Index: [`FRONTS`].
    hot: [Hot; 2],
}

/// The front-ends whose per-message series are kept in [`Hot`].
const FRONTS: [&str; 2] = ["smtp", "http"];

/// Handles (shared with their families) of one front-end's per-message series.
#[derive(Default)]
struct Hot {
    check: OnceLock<Histogram>,
    added: OnceLock<Histogram>,
    connections: OnceLock<Gauge>,
    passed: OnceLock<Counter>,
    /// By reply class: error, 1xx .. 5xx.
    replies: [OnceLock<Counter>; 6],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~5 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_01, 2.5, 15,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sendguard");
        let m = Metrics {
            messages: Family::default(),
            recipients: Family::default(),
            findings: Family::default(),
            upstream_replies: Family::default(),
            reloads: Family::default(),
            policy_generation: Gauge::default(),
            active_pauses: Gauge::default(),
            ramp_rate: Family::default(),
            connections: Family::default(),
            check_seconds: Family::new_with_constructor(latency_histogram),
            added_latency_seconds: Family::new_with_constructor(latency_histogram),
            hot: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages",
            "Messages judged, by front-end, verdict and deciding rule",
            m.messages.clone(),
        );
        registry.register(
            "recipients",
            "Recipients judged, by front-end, verdict and deciding rule",
            m.recipients.clone(),
        );
        registry.register(
            "findings",
            "Rule findings, by rule, location and action",
            m.findings.clone(),
        );
        registry.register(
            "upstream_replies",
            "Replies from the upstream, by front-end and class (2xx, 4xx, 5xx, error)",
            m.upstream_replies.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads, by result (ok, error)",
            m.reloads.clone(),
        );
        registry.register(
            "policy_generation",
            "Generation number of the policies in force",
            m.policy_generation.clone(),
        );
        registry.register(
            "active_pauses",
            "Pauses currently in force",
            m.active_pauses.clone(),
        );
        registry.register(
            "ramp_rate_per_second",
            "Current allowed rate of each ramped scope, messages per second",
            m.ramp_rate.clone(),
        );
        registry.register(
            "connections",
            "Open client connections, by front-end",
            m.connections.clone(),
        );
        registry.register(
            "check_seconds",
            "Time the policy engine spent judging one message",
            m.check_seconds.clone(),
        );
        registry.register(
            "added_latency_seconds",
            "Latency sendguard added to one message, end of data to upstream reply excluded",
            m.added_latency_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one judged message and its recipients.
    pub fn observe_verdict(&self, front: &'static str, verdict: &Verdict) {
        match (&verdict.refusal, self.hot(front)) {
            (None, Some(hot)) if verdict.disposition == Disposition::Pass => hot
                .passed
                .get_or_init(|| self.messages.get_or_create(&pass_labels(front)).clone())
                .inc(),
            _ => {
                let rule = verdict
                    .refusal
                    .as_ref()
                    .map(|r| r.kind().to_string())
                    .unwrap_or_default();
                self.messages
                    .get_or_create(&vec![
                        ("front", front.to_string()),
                        ("verdict", verdict.disposition.as_str().to_string()),
                        ("rule", rule),
                    ])
                    .inc()
            }
        };
        for f in &verdict.findings {
            self.findings
                .get_or_create(&vec![
                    ("rule", f.rule.clone()),
                    ("location", f.location.as_str().to_string()),
                    ("action", f.action.as_str().to_string()),
                ])
                .inc();
        }
    }

    /// Counts recipients with one outcome.
    pub fn observe_recipients(
        &self,
        front: &'static str,
        disposition: Disposition,
        rule: &str,
        count: u64,
    ) {
        if count == 0 {
            return;
        }
        self.recipients
            .get_or_create(&vec![
                ("front", front.to_string()),
                ("verdict", disposition.as_str().to_string()),
                ("rule", rule.to_string()),
            ])
            .inc_by(count);
    }

    /// Counts one reply from the upstream: `code` is the status (SMTP or HTTP); 0 means no reply
    /// (connection failure, timeout).
    pub fn upstream_reply(&self, front: &'static str, code: u16) {
        let labels = || {
            let class = match code {
                0 => "error".to_string(),
                c => format!("{}xx", c / 100),
            };
            vec![("front", front.to_string()), ("class", class)]
        };
        let slot = match code {
            0 => Some(0),
            100..=599 => Some(usize::from(code / 100)),
            _ => None,
        };
        match (self.hot(front), slot) {
            (Some(hot), Some(i)) => hot.replies[i]
                .get_or_init(|| self.upstream_replies.get_or_create(&labels()).clone())
                .inc(),
            _ => self.upstream_replies.get_or_create(&labels()).inc(),
        };
    }

    /// Counts a policy reload and records the generation in force.
    pub fn reload(&self, ok: bool, generation: u64) {
        let result = if ok { "ok" } else { "error" };
        self.reloads
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        self.policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Sets the number of pauses in force.
    pub fn set_active_pauses(&self, n: usize) {
        self.active_pauses.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the current rate of a ramped scope (`None` removes the series once the ramp ends).
    pub fn set_ramp_rate(&self, scope: &str, rate: Option<f64>) {
        let labels = vec![("scope", scope.to_string())];
        match rate {
            Some(r) => {
                self.ramp_rate.get_or_create(&labels).set(r);
            }
            None => {
                self.ramp_rate.remove(&labels);
            }
        }
    }

    /// Adjusts the open-connection gauge of a front-end by +1 or -1.
    pub fn connection(&self, front: &'static str, delta: i64) {
        match self.hot(front) {
            Some(hot) => hot
                .connections
                .get_or_init(|| self.connections.get_or_create(&front_label(front)).clone())
                .inc_by(delta),
            None => self
                .connections
                .get_or_create(&front_label(front))
                .inc_by(delta),
        };
    }

    /// Records how long the policy engine took for one message.
    pub fn check_duration(&self, front: &'static str, seconds: f64) {
        self.observe_front(front, &self.check_seconds, |h| &h.check, seconds);
    }

    /// Records the latency sendguard itself added to one message.
    pub fn added_latency(&self, front: &'static str, seconds: f64) {
        self.observe_front(front, &self.added_latency_seconds, |h| &h.added, seconds);
    }

    /// Observes `seconds` in `family`'s series of `front`, through its remembered handle.
    fn observe_front(
        &self,
        front: &'static str,
        family: &Family<Labels, Histogram>,
        slot: impl Fn(&Hot) -> &OnceLock<Histogram>,
        seconds: f64,
    ) {
        match self.hot(front) {
            Some(hot) => slot(hot)
                .get_or_init(|| family.get_or_create(&front_label(front)).clone())
                .observe(seconds),
            None => family.get_or_create(&front_label(front)).observe(seconds),
        }
    }

    fn hot(&self, front: &str) -> Option<&Hot> {
        FRONTS
            .iter()
            .position(|f| *f == front)
            .map(|i| &self.hot[i])
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn front_label(front: &'static str) -> Labels {
    vec![("front", front.to_string())]
}

fn pass_labels(front: &'static str) -> Labels {
    vec![
        ("front", front.to_string()),
        ("verdict", Disposition::Pass.as_str().to_string()),
        ("rule", String::new()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        m.observe_verdict("smtp", &Verdict::pass());
        m.upstream_reply("smtp", 250);
        m.upstream_reply("smtp", 0);
        m.reload(true, 3);
        m.set_ramp_rate("campaign spring", Some(12.5));
        let text = m.render();
        assert!(
            text.contains("sendguard_messages_total{front=\"smtp\",verdict=\"pass\",rule=\"\"} 1"),
            "{text}"
        );
        assert!(text.contains("sendguard_upstream_replies_total{front=\"smtp\",class=\"2xx\"} 1"));
        assert!(text.contains("class=\"error\"} 1"));
        assert!(text.contains("sendguard_policy_generation 3"));
        assert!(text.contains("sendguard_ramp_rate_per_second{scope=\"campaign spring\"} 12.5"));
        m.set_ramp_rate("campaign spring", None);
        assert!(!m.render().contains("campaign spring"));
    }

    #[test]
    fn remembered_series_are_the_families_own() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.observe_verdict("http", &Verdict::pass());
            m.upstream_reply("http", 202);
            m.upstream_reply("http", 0);
            m.check_duration("http", 0.001);
            m.added_latency("http", 0.002);
            m.connection("http", 1);
        }
        m.connection("http", -1);
        m.upstream_reply("other", 503);
        m.upstream_reply("http", 999);
        let text = m.render();
        for want in [
            "sendguard_messages_total{front=\"http\",verdict=\"pass\",rule=\"\"} 3",
            "sendguard_upstream_replies_total{front=\"http\",class=\"2xx\"} 3",
            "sendguard_upstream_replies_total{front=\"http\",class=\"error\"} 3",
            "sendguard_upstream_replies_total{front=\"other\",class=\"5xx\"} 1",
            "sendguard_upstream_replies_total{front=\"http\",class=\"9xx\"} 1",
            "sendguard_check_seconds_count{front=\"http\"} 3",
            "sendguard_added_latency_seconds_count{front=\"http\"} 3",
            "sendguard_connections{front=\"http\"} 2",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
