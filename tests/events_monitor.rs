//! The deliverability monitor: thresholds pause the campaign through the guard; events suppress
//! complainers and hard bounces; a flood of complaints through `POST /v1/events` trips the pause.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use sendguard::events::{http::handle_events, ingest, parse_json};
use sendguard::model::Scope;
use sendguard::monitor::{Monitor, MonitorPolicy};
use sendguard::{Guard, GuardConfig};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn paused(guard: &Guard, campaign: &str) -> Option<String> {
    let scope = Scope::Campaign(campaign.into());
    guard
        .pauses()
        .into_iter()
        .find(|p| p.scope == scope)
        .map(|p| p.reason)
}

#[test]
fn rejection_rate_trips_only_past_min_recipients() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let m = Monitor::new(Some(guard.clone()), MonitorPolicy::default());
    let now = SystemTime::now();
    // 150 recipients with 20% rejections: under min_recipients, no verdict.
    for i in 0..150 {
        let code = if i % 5 == 0 { 550 } else { 250 };
        assert!(m
            .record_reply(Some("spring"), &format!("u{i}@gmail.test"), code, now)
            .is_none());
    }
    assert!(paused(&guard, "spring").is_none());
    let mut trip = None;
    for i in 150..300 {
        let code = if i % 5 == 0 { 550 } else { 250 };
        if let Some(t) = m.record_reply(Some("spring"), &format!("u{i}@gmail.test"), code, now) {
            trip = Some(t);
            break;
        }
    }
    let trip = trip.expect("20% rejections over 200 recipients must trip");
    assert_eq!(
        trip.reason,
        "auto: rejection rate 20.0% over 200 recipients"
    );
    assert_eq!(
        paused(&guard, "spring").as_deref(),
        Some(trip.reason.as_str())
    );
    // Another campaign is untouched.
    assert!(paused(&guard, "autumn").is_none());
    let snap = m.snapshot(now);
    assert_eq!(snap.domains[0].key, "gmail.test");
}

#[test]
fn healthy_campaign_and_old_buckets_do_not_trip() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let m = Monitor::new(Some(guard.clone()), MonitorPolicy::default());
    let now = SystemTime::now();
    let old = now - Duration::from_secs(2 * 3600);
    // Two hours ago the campaign bounced hard, but that is outside the 1h window.
    for i in 0..100 {
        m.record_reply(Some("c"), &format!("x{i}@a.test"), 550, old);
    }
    for i in 0..1000 {
        let code = if i % 50 == 0 {
            550
        } else if i % 10 == 1 {
            451
        } else {
            250
        };
        assert!(m
            .record_reply(Some("c"), &format!("u{i}@a.test"), code, now)
            .is_none());
    }
    assert!(paused(&guard, "c").is_none());
    let snap = m.snapshot(now);
    let c = &snap.campaigns[0];
    assert_eq!(c.counts.replies(), 1000);
    assert_eq!(c.rejection_rate, Some(0.02));
    assert_eq!(c.deferral_rate, Some(0.1));
    // Two hours on, everything has left the window and is forgotten.
    let later = now + Duration::from_secs(2 * 3600);
    m.prune(later);
    let snap = m.snapshot(later);
    assert!(snap.campaigns.is_empty() && snap.domains.is_empty());
}

#[test]
fn deferral_rate_trips() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let policy = MonitorPolicy {
        min_recipients: 100,
        ..MonitorPolicy::default()
    };
    let m = Monitor::new(Some(guard.clone()), policy);
    let now = SystemTime::now();
    let trips: Vec<_> = (0..200)
        .filter_map(|i| {
            m.record_reply(
                Some("d"),
                &format!("u{i}@a.test"),
                if i % 2 == 0 { 421 } else { 250 },
                now,
            )
        })
        .collect();
    assert_eq!(
        trips.len(),
        1,
        "one trip, then the window starts afresh: {trips:?}"
    );
    assert!(
        trips[0]
            .reason
            .starts_with("auto: deferral rate 50.0% over 100"),
        "{}",
        trips[0].reason
    );
}

#[test]
fn complaints_suppress_and_trip() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let monitor = Monitor::new(Some(guard.clone()), MonitorPolicy::default());
    let now = SystemTime::now();
    for i in 0..1000 {
        monitor.record_reply(Some("promo"), &format!("u{i}@a.test"), 250, now);
    }
    assert!(paused(&guard, "promo").is_none());
    let body = r#"[{"type":"complaint","recipient":"u1@a.test","campaign":"promo"},
                   {"type":"bounce","recipient":"u2@a.test","campaign":"promo","bounce_class":"hard"},
                   {"type":"bounce","recipient":"u3@a.test","campaign":"promo","bounce_class":"soft"}]"#;
    let r = ingest(&guard, &monitor, &parse_json(body.as_bytes()).unwrap());
    assert_eq!(r.events, 3);
    assert_eq!(r.suppressed, 2);
    assert!(guard.suppression("u1@a.test").is_some());
    assert!(guard.suppression("u2@a.test").is_some());
    assert!(
        guard.suppression("u3@a.test").is_none(),
        "soft bounces are not suppressed"
    );
    assert!(
        r.paused.is_empty(),
        "1 complaint in 1000 is 0.1%, not above it"
    );
    let r = ingest(
        &guard,
        &monitor,
        &parse_json(br#"{"type":"complaint","recipient":"u4@a.test","campaign":"promo"}"#).unwrap(),
    );
    assert_eq!(
        r.paused,
        vec!["promo: auto: complaint rate 0.2% over 1000 recipients"]
    );
    assert!(paused(&guard, "promo").is_some());
}

#[test]
fn disabled_monitor_measures_but_never_pauses() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let m = Monitor::new(
        Some(guard.clone()),
        MonitorPolicy {
            enabled: false,
            ..MonitorPolicy::default()
        },
    );
    for i in 0..500 {
        assert!(m
            .record_reply(Some("x"), &format!("u{i}@a.test"), 550, SystemTime::now())
            .is_none());
    }
    assert!(guard.pauses().is_empty());
    assert_eq!(
        m.snapshot(SystemTime::now()).campaigns[0].rejection_rate,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_sendgrid_complaints_through_the_endpoint_trips_the_pause() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let monitor = Arc::new(Monitor::new(Some(guard.clone()), MonitorPolicy::default()));
    let mut events = Vec::new();
    for i in 0..400 {
        events.push(
            serde_json::json!({"email": format!("r{i}@mail.test"), "timestamp": 1795852800 + i,
            "event": "delivered", "campaign_id": "black-friday"}),
        );
    }
    for i in 0..40 {
        events.push(
            serde_json::json!({"email": format!("r{i}@mail.test"), "timestamp": 1795856400 + i,
            "event": "spamreport", "campaign_id": "black-friday"}),
        );
    }
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header("content-type", "application/json")
        .body(Bytes::from(serde_json::to_vec(&events).unwrap()))
        .unwrap();
    let resp = handle_events(&guard, &monitor, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["events"], 440);
    assert_eq!(body["suppressed"], 40);
    assert_eq!(body["paused"].as_array().unwrap().len(), 1, "{body}");
    // The pause runs on the blocking pool: wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while paused(&guard, "black-friday").is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reason = paused(&guard, "black-friday").expect("campaign paused");
    assert!(reason.starts_with("auto: complaint rate"), "{reason}");

    // Malformed bodies: 400 / 415, nothing applied.
    for (ct, body, status) in [
        ("application/json", "[{", StatusCode::BAD_REQUEST),
        ("text/plain", "x", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/events")
            .header("content-type", ct)
            .body(Bytes::from(body))
            .unwrap();
        assert_eq!(handle_events(&guard, &monitor, req).await.status(), status);
    }
    // ARF through the endpoint.
    let arf = std::fs::read(format!(
        "{}/tests/fixtures/events/arf-abuse.eml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/events")
        .header(
            "content-type",
            "multipart/report; report-type=feedback-report",
        )
        .body(Bytes::from(arf))
        .unwrap();
    assert_eq!(
        handle_events(&guard, &monitor, req).await.status(),
        StatusCode::OK
    );
    assert!(guard.suppression("complainer@mailbox.example").is_some());
}
