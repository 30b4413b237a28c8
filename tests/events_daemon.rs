//! Delivery events through the real daemon: `POST /v1/events` with SendGrid's event webhook, the
//! generic form and an ARF report suppresses complainers, unsubscribers and hard bounces; a
//! flood of complaints for a campaign the SMTP proxy delivered pauses it, and the proxy then
//! holds its mail back.

mod admin_common;
mod common;
#[path = "common/smtp_upstream.rs"]
mod smtp_upstream;

use admin_common::{Answer, Api, TOKEN};
use common::{free_port, Daemon};
use hyper::{Method, StatusCode};
use lettre::address::Envelope;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use smtp_upstream::{Script, Upstream};
use std::time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn post_events(api: &Api, content_type: &str, body: Vec<u8>) -> Answer {
    api.send(
        Method::POST,
        "/v1/events",
        Some(TOKEN),
        &[("content-type", content_type)],
        Some(body),
    )
    .await
}

async fn suppressed(api: &Api, address: &str) -> bool {
    let a = api.get(&format!("/v1/suppressions/{address}")).await;
    match a.status {
        StatusCode::OK => true,
        StatusCode::NOT_FOUND => false,
        other => panic!("{address}: {other} {}", a.text()),
    }
}

async fn campaign_pause(api: &Api, campaign: &str) -> Option<String> {
    let pauses = api.get("/v1/pauses").await.json();
    pauses["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.to_string().contains(&format!("\"{campaign}\"")))
        .map(|p| p["reason"].as_str().unwrap_or_default().to_string())
}

/// A daemon with the SMTP proxy (relaying to `upstream`) and the admin API.
async fn start(upstream: &Upstream) -> (Daemon, u16, u16) {
    let smtp = free_port();
    let admin = free_port();
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:{smtp}\"\nhostname = \"proxy.test\"\nupstream = \"{}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n",
        upstream.url()
    );
    let d = tokio::task::spawn_blocking(move || {
        Daemon::start_with_env(&config, &[smtp, admin], &[("SENDGUARD_ADMIN_TOKEN", TOKEN)])
    })
    .await
    .unwrap();
    (d, smtp, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_generic_and_arf_events_suppress() {
    let up = Upstream::start(Script::default()).await;
    let (d, smtp, admin) = start(&up).await;
    let api = Api::new(admin);

    let a = post_events(&api, "application/json", fixture("sendgrid-webhook.json")).await;
    assert_eq!(a.status, StatusCode::OK, "{}\n{}", a.text(), d.log());
    let r = a.json();
    // `processed` and `open` are not delivery outcomes.
    assert_eq!(r["events"], 7, "{r}");
    assert_eq!(r["suppressed"], 3, "{r}");
    assert_eq!(
        r["paused"],
        serde_json::json!([]),
        "one complaint is no flood"
    );
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    for (address, want) in [
        ("j.mueller@web.example", true),        // hard bounce
        ("angry.reader@gmx.example", true),     // spam report
        ("leaving@posteo.example", true),       // unsubscribe
        ("info@blocked-corp.example", false),   // blocked: a soft bounce
        ("anna.schmidt@gmail.example", false),  // delivered
        ("old.customer@yahoo.example", false),  // dropped by the service itself
        ("slow.server@company.example", false), // deferred
    ] {
        assert_eq!(suppressed(&api, address).await, want, "{address}");
    }
    // The same batch again suppresses nobody new.
    let a = post_events(&api, "application/json", fixture("sendgrid-webhook.json")).await;
    assert_eq!(a.json()["suppressed"], 0);

    let a = post_events(&api, "application/json", fixture("generic.json")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["suppressed"], 2, "{}", a.text());
    assert!(suppressed(&api, "gone@example.test").await);
    assert!(suppressed(&api, "Spam.Button@example.test").await);
    assert!(!suppressed(&api, "full@example.test").await);

    let a = post_events(
        &api,
        "multipart/report; report-type=feedback-report",
        fixture("arf-abuse.eml"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["events"], 1);
    assert!(suppressed(&api, "complainer@mailbox.example").await);

    // A broken batch is refused whole: nothing of it applies.
    let a = post_events(
        &api,
        "application/json",
        br#"[{"type": "complaint", "recipient": "first@example.test"}, {"type": "complaint"}]"#
            .to_vec(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("recipient"));
    assert!(!suppressed(&api, "first@example.test").await);
    let a = post_events(&api, "text/csv", b"a,b\n".to_vec()).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // The suppressions are in force on the wire.
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp)
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let env = Envelope::new(
        Some("news@shop.test".parse().unwrap()),
        vec!["angry.reader@gmx.example".parse().unwrap()],
    )
    .unwrap();
    let e = mailer
        .send_raw(&env, b"Subject: hi\r\n\r\nhello\r\n")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("suppressed"), "{e}");
    assert!(up.messages.lock().unwrap().is_empty());
}

fn campaign_message(rcpt: &str) -> Vec<u8> {
    format!(
        "From: Shop <news@shop.test>\r\nTo: {rcpt}\r\nSubject: Black Friday\r\n\
         X-Campaign-ID: black-friday\r\n\r\nEverything half price.\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_complaints_pauses_a_delivered_campaign() {
    let up = Upstream::start(Script::default()).await;
    let (d, smtp, admin) = start(&up).await;
    let api = Api::new(admin);
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp)
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(20)))
        .build();

    // 250 deliveries through the proxy: the monitor sees the upstream accept them.
    const SENT: usize = 250;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mailer = mailer.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..SENT).step_by(4) {
                let rcpt = format!("buyer{i}@mail.test");
                let env = Envelope::new(
                    Some("news@shop.test".parse().unwrap()),
                    vec![rcpt.parse().unwrap()],
                )
                .unwrap();
                mailer
                    .send_raw(&env, &campaign_message(&rcpt))
                    .await
                    .unwrap_or_else(|e| panic!("{rcpt}: {e}"));
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("sent within 120 s")
            .unwrap();
    }
    assert_eq!(up.messages.lock().unwrap().len(), SENT);
    assert!(campaign_pause(&api, "black-friday").await.is_none());
    let monitor = api.get("/v1/monitor").await.json();
    let rates = monitor["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "black-friday")
        .unwrap_or_else(|| panic!("{monitor}"))
        .clone();
    assert_eq!(rates["counts"]["accepted"], SENT, "{rates}");

    // Then the spam reports come in, in SendGrid's webhook format.
    let flood: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            serde_json::json!({
                "email": format!("buyer{i}@mail.test"),
                "timestamp": 1795856400 + i,
                "event": "spamreport",
                "sg_event_id": format!("spam-{i}"),
                "campaign_id": "black-friday",
            })
        })
        .collect();
    let a = post_events(
        &api,
        "application/json",
        serde_json::to_vec(&flood).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}\n{}", a.text(), d.log());
    let r = a.json();
    assert_eq!(r["events"], 20);
    assert_eq!(r["suppressed"], 20, "every complainer is suppressed");
    let paused = r["paused"].as_array().unwrap();
    assert_eq!(paused.len(), 1, "paused once: {r}");
    assert!(
        paused[0]
            .as_str()
            .unwrap()
            .starts_with("black-friday: auto: complaint rate"),
        "{r}"
    );
    // In force (and durable) by the time the answer says so.
    let reason = campaign_pause(&api, "black-friday")
        .await
        .expect("the campaign is paused");
    assert!(reason.starts_with("auto: complaint rate"), "{reason}");
    for i in [0, 19] {
        assert!(suppressed(&api, &format!("buyer{i}@mail.test")).await);
    }
    // The campaign's window starts afresh after the trip (a resume must not trip again on the
    // same numbers); the recipient domain keeps them.
    let monitor = api.get("/v1/monitor").await.json();
    let rate = monitor["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "mail.test")
        .and_then(|c| c["complaint_rate"].as_f64())
        .unwrap_or_else(|| panic!("{monitor}"));
    assert!((rate - 20.0 / SENT as f64).abs() < 1e-9, "{rate}");

    // The proxy holds the campaign back now (the sender's queue keeps the mail).
    let env = Envelope::new(
        Some("news@shop.test".parse().unwrap()),
        vec!["buyer100@mail.test".parse().unwrap()],
    )
    .unwrap();
    let e = mailer
        .send_raw(&env, &campaign_message("buyer100@mail.test"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("4.7.1") && e.to_string().contains("paused"),
        "{e}"
    );
    assert_eq!(up.messages.lock().unwrap().len(), SENT);
}

/// `ingest` reports a trip only once the pause is in force, also when it runs on a runtime's
/// blocking pool (as the events endpoint runs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingested_trip_is_in_force_when_reported() {
    use sendguard::events::{ingest, parse_json};
    use sendguard::model::Scope;
    use sendguard::monitor::{Monitor, MonitorPolicy};
    use sendguard::{Guard, GuardConfig};

    for round in 0..20 {
        let guard = Guard::open(GuardConfig::in_memory()).unwrap();
        let monitor = Monitor::new(Some(guard.clone()), MonitorPolicy::default());
        let mut events: Vec<serde_json::Value> = (0..250)
            .map(|i| {
                serde_json::json!({"email": format!("r{i}@mail.test"), "timestamp": 1795852800,
                "event": "delivered", "campaign_id": "cyber-monday"})
            })
            .collect();
        events.push(
            serde_json::json!({"email": "r0@mail.test", "timestamp": 1795856400,
            "event": "spamreport", "campaign_id": "cyber-monday"}),
        );
        let events = parse_json(&serde_json::to_vec(&events).unwrap()).unwrap();
        let (report, in_force) = tokio::task::spawn_blocking(move || {
            let report = ingest(&guard, &monitor, &events);
            let scope = Scope::Campaign("cyber-monday".into());
            (report, guard.pauses().iter().any(|p| p.scope == scope))
        })
        .await
        .unwrap();
        assert_eq!(report.paused.len(), 1, "{report:?}");
        assert!(
            in_force,
            "round {round}: reported before the pause was in force"
        );
    }
}
