//! The kill switch through the real daemon, over loopback, relaying to a stand-in upstream that
//! timestamps every transaction:
//!
//! - the race: several SMTP sessions send one campaign as fast as they can while the campaign is
//!   paused through the admin API; once the pause call has returned, the upstream gets no message
//!   the proxy judged afterwards, and every refusal is `451 4.7.1 … paused`. Up to thirty rounds,
//!   resuming in between; the time the pause call takes and the time until the first refusal are
//!   printed (measurements, not assertions);
//! - the automatic trip: three placeholder leaks of a campaign pause it.

mod admin_common;
mod common;
mod ops_common;

use hyper::Method;
use ops_common::{campaign_message, ms_between, start_daemon, Client, Sent};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROUNDS: usize = 30;
const SESSIONS: usize = 4;
/// Messages each session sends at most per round (a safety bound: a pause call slowed down by a
/// loaded machine can take seconds, and the sessions keep sending until it has returned).
const PER_SESSION: usize = 50_000;
/// Sessions stop sending this long after the pause returned, whatever they saw.
const AFTER_PAUSE: Duration = Duration::from_secs(5);
/// A safety bound on a round: sessions stop by then even if the pause call has not returned.
const ROUND_LIMIT: Duration = Duration::from_secs(60);
/// No new round starts after this much time (a loaded machine can stall processes for seconds);
/// the number of rounds run is printed.
const TIME_BUDGET: Duration = Duration::from_secs(40);
/// Refusals after the pause returned that end a session's round.
const REFUSALS_TO_STOP: usize = 3;
const FROM: &str = "news@shop.example";
const TO: &str = "reader@example.org";

struct Shared {
    campaign: String,
    seq: AtomicU64,
    /// When the pause call returned (set right after).
    returned: Mutex<Option<Instant>>,
    deadline: Instant,
}

/// One session: sends until it has seen a few refusals of messages it finished after the pause
/// returned, or (having sent at least one such message) for [`AFTER_PAUSE`], or the round's
/// limit.
async fn session(port: u16, shared: Arc<Shared>) -> Vec<Sent> {
    let mut c = Client::connect(port).await;
    let mut out: Vec<Sent> = Vec::new();
    let mut refused_after = 0;
    while Instant::now() < shared.deadline && out.len() < PER_SESSION {
        let returned = *shared.returned.lock().unwrap();
        if let Some(r) = returned {
            let sent_after = out.last().is_some_and(|m| m.eod_sent > r);
            if sent_after && r.elapsed() > AFTER_PAUSE {
                break;
            }
        }
        let seq = shared.seq.fetch_add(1, Ordering::SeqCst);
        let msg = campaign_message(&shared.campaign, seq, "Spring sale");
        let s = c.message(seq, FROM, TO, &msg).await;
        let returned = *shared.returned.lock().unwrap();
        let after = returned.is_some_and(|r| s.eod_sent > r);
        let lost = s.reply.is_empty();
        if s.code() != "250" && after {
            refused_after += 1;
        }
        out.push(s);
        if lost || refused_after >= REFUSALS_TO_STOP {
            break;
        }
    }
    c.quit().await;
    out
}

/// What one round measured.
struct Round {
    /// PUT sent → 200 read.
    put_ms: f64,
    /// 200 read → first refusal read by any session (negative: it came before the 200 was read).
    first_refusal_ms: f64,
    /// 200 read → refusal of the first message whose end of data was sent after the 200.
    first_refusal_after_ms: f64,
    sent: usize,
    accepted: usize,
    refused: usize,
    /// Accepted messages whose upstream DATA the stand-in read after the 200.
    in_flight: usize,
    /// The largest (DATA read − 200) among those, in ms.
    in_flight_lag_ms: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_message_of_a_paused_campaign_reaches_the_upstream_after_the_pause_returns() {
    let (d, up, smtp, api) = start_daemon().await;
    let campaign = "race-campaign";
    let path = format!("/v1/pauses/campaign/{campaign}");
    let started = Instant::now();
    let mut rounds = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    let seq = Arc::new(AtomicU64::new(0));
    for round in 0..ROUNDS {
        if round > 0 && started.elapsed() > TIME_BUDGET {
            println!("time budget spent after {round} rounds");
            break;
        }
        let first_seq = seq.load(Ordering::SeqCst);
        let shared = Arc::new(Shared {
            campaign: campaign.to_string(),
            seq: AtomicU64::new(first_seq),
            returned: Mutex::new(None),
            deadline: Instant::now() + ROUND_LIMIT,
        });
        let upstream_before = up.count();
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|_| tokio::spawn(session(smtp, shared.clone())))
            .collect();
        // Let the campaign flow: a few messages relayed, then a varying extra delay so the pause
        // lands at different points of the sessions' transactions.
        let flow_deadline = Instant::now() + Duration::from_secs(10);
        while up.count() < upstream_before + 2 * SESSIONS && Instant::now() < flow_deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            up.count() >= upstream_before + 2 * SESSIONS,
            "round {round}: the campaign did not flow before the pause; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis((round as u64 * 7) % 23)).await;
        let put_sent = Instant::now();
        let a = api
            .call(
                Method::PUT,
                &path,
                Some(&format!(r#"{{"reason": "race round {round}"}}"#)),
            )
            .await;
        let returned = Instant::now();
        *shared.returned.lock().unwrap() = Some(returned);
        assert_eq!(a.status, 200, "pause: {}", a.text());

        let mut sent: Vec<Sent> = Vec::new();
        for t in tasks {
            sent.extend(t.await.expect("session task"));
        }
        assert!(
            sent.iter().any(|m| m.eod_sent > returned),
            "round {round}: no message was sent after the pause returned (pause call {:.1} ms)",
            ms_between(put_sent, returned)
        );
        seq.store(shared.seq.load(Ordering::SeqCst), Ordering::SeqCst);
        let a = api.call(Method::DELETE, &path, None).await;
        assert_eq!(a.status, 200, "resume: {}", a.text());

        // The sessions have every reply, so the upstream has every message it will get.
        let upstream: Vec<_> = up
            .received()
            .into_iter()
            .filter(|m| m.seq >= first_seq && m.seq != u64::MAX)
            .collect();
        let by_seq: HashMap<u64, &Sent> = sent.iter().map(|s| (s.seq, s)).collect();
        let relayed: HashSet<u64> = upstream.iter().map(|m| m.seq).collect();
        assert_eq!(relayed.len(), upstream.len(), "a message relayed twice");
        let mut r = Round {
            put_ms: ms_between(put_sent, returned),
            first_refusal_ms: f64::NAN,
            first_refusal_after_ms: f64::NAN,
            sent: sent.len(),
            accepted: 0,
            refused: 0,
            in_flight: 0,
            in_flight_lag_ms: 0.0,
        };
        for s in &sent {
            if s.code() == "250" {
                r.accepted += 1;
                if !relayed.contains(&s.seq) {
                    violations.push(format!(
                        "round {round}: seq {} got 250 but the upstream never received it",
                        s.seq
                    ));
                }
                if s.eod_sent > returned {
                    violations.push(format!(
                        "round {round}: seq {} accepted although its data ended {:.3} ms after \
                         the pause returned",
                        s.seq,
                        ms_between(returned, s.eod_sent)
                    ));
                }
                continue;
            }
            r.refused += 1;
            if !(s.reply.starts_with("451 4.7.1") && s.reply.contains("paused")) {
                violations.push(format!(
                    "round {round}: seq {} refused with {:?}, expected 451 4.7.1 … paused",
                    s.seq, s.reply
                ));
            }
            if relayed.contains(&s.seq) {
                violations.push(format!(
                    "round {round}: seq {} refused to the client but relayed upstream",
                    s.seq
                ));
            }
            let since = ms_between(returned, s.replied);
            if r.first_refusal_ms.is_nan() || since < r.first_refusal_ms {
                r.first_refusal_ms = since;
            }
            if s.eod_sent > returned
                && (r.first_refusal_after_ms.is_nan() || since < r.first_refusal_after_ms)
            {
                r.first_refusal_after_ms = since;
            }
        }
        for m in &upstream {
            if m.campaign != campaign {
                violations.push(format!(
                    "round {round}: unexpected campaign {:?}",
                    m.campaign
                ));
            }
            if !by_seq.contains_key(&m.seq) {
                violations.push(format!(
                    "round {round}: the upstream got seq {} nobody sent",
                    m.seq
                ));
            }
            // The proxy judges a message after the upstream answered its RCPT; if that answer
            // was written after the pause returned, the judgement came after it too.
            if m.rcpt_replied > returned {
                violations.push(format!(
                    "round {round}: seq {} relayed although the upstream answered its RCPT \
                     {:.3} ms after the pause returned",
                    m.seq,
                    ms_between(returned, m.rcpt_replied)
                ));
            }
            if m.data_started > returned {
                r.in_flight += 1;
                r.in_flight_lag_ms = r.in_flight_lag_ms.max(ms_between(returned, m.data_started));
            }
        }
        assert!(r.refused > 0, "round {round}: nothing was refused");
        if r.put_ms > 1000.0 {
            println!(
                "round {round}: the pause call took {:.0} ms (machine stalled?)",
                r.put_ms
            );
        }
        rounds.push(r);
    }

    println!(
        "round  put→200 ms  200→1st 451 ms  200→451 of msg ended after ms  sent  250  451  \
         DATA read after 200 (max lag ms)"
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{i:>5}  {:>10.2}  {:>14.2}  {:>30.2}  {:>4}  {:>3}  {:>3}  {} ({:.2})",
            r.put_ms,
            r.first_refusal_ms,
            r.first_refusal_after_ms,
            r.sent,
            r.accepted,
            r.refused,
            r.in_flight,
            r.in_flight_lag_ms
        );
    }
    let summary = |name: &str, mut v: Vec<f64>| {
        v.retain(|x| !x.is_nan());
        v.sort_by(f64::total_cmp);
        if let (Some(min), Some(max)) = (v.first(), v.last()) {
            println!(
                "{name}: min {min:.2} ms, median {:.2} ms, max {max:.2} ms",
                v[v.len() / 2]
            );
        }
    };
    summary(
        "pause call (PUT sent → 200 read)",
        rounds.iter().map(|r| r.put_ms).collect(),
    );
    summary(
        "200 read → first 451 read",
        rounds.iter().map(|r| r.first_refusal_ms).collect(),
    );
    summary(
        "200 read → 451 for the first message ended after it",
        rounds.iter().map(|r| r.first_refusal_after_ms).collect(),
    );
    println!(
        "messages whose upstream DATA was read after the 200 (in flight at that instant): {}",
        rounds.iter().map(|r| r.in_flight).sum::<usize>()
    );
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_placeholder_leaks_pause_the_campaign() {
    let (d, up, smtp, api) = start_daemon().await;
    let mut c = Client::connect(smtp).await;
    let pauses_of = |v: serde_json::Value| -> Vec<serde_json::Value> {
        v["pauses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["scope"] == "campaign" && p["id"] == "leaky")
            .collect()
    };
    for i in 0..3 {
        let msg = campaign_message("leaky", i, "Hallo {{FirstName}}");
        let s = c.message(i, FROM, TO, &msg).await;
        assert!(
            s.reply.starts_with("554 5.6.0")
                && s.reply.contains("placeholder")
                && s.reply.contains("FirstName"),
            "leak {i}: {:?}",
            s.reply
        );
        if i < 2 {
            let p = pauses_of(api.get("/v1/pauses").await.json());
            assert!(p.is_empty(), "paused after {} leaks: {p:?}", i + 1);
        }
    }
    // The third leak tripped the pause: durable before the 554 went out.
    let listed = pauses_of(api.get("/v1/pauses").await.json());
    assert_eq!(listed.len(), 1, "{listed:?}; log:\n{}", d.log());
    let reason = listed[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("auto: placeholder leak"), "{reason:?}");
    let status = api.get("/v1/status").await;
    assert_eq!(status.status, 200);
    let in_status = pauses_of(status.json());
    assert_eq!(in_status, listed, "status and the pause list agree");
    // A clean message of that campaign is now held back, with a temporary refusal.
    let s = c
        .message(10, FROM, TO, &campaign_message("leaky", 10, "Spring sale"))
        .await;
    assert!(
        s.reply.starts_with("451 4.7.1") && s.reply.contains("paused"),
        "{:?}",
        s.reply
    );
    // Another campaign is not affected.
    let s = c
        .message(11, FROM, TO, &campaign_message("other", 11, "Spring sale"))
        .await;
    assert!(s.reply.starts_with("250"), "{:?}", s.reply);
    c.quit().await;
    let got: Vec<_> = up.received().iter().map(|m| m.seq).collect();
    assert_eq!(
        got,
        vec![11],
        "only the other campaign's message was relayed"
    );
    // Resuming lifts it.
    let a = api
        .call(Method::DELETE, "/v1/pauses/campaign/leaky", None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut c = Client::connect(smtp).await;
    let s = c
        .message(12, FROM, TO, &campaign_message("leaky", 12, "Spring sale"))
        .await;
    assert!(s.reply.starts_with("250"), "{:?}", s.reply);
    c.quit().await;
}
