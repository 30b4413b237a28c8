//! The incident workflow on a synthetic ledger: open pauses the campaign, the report counts
//! exactly what was relayed, the audience leaves out the suppressed, the timeline keeps
//! pauses, resumes and notes, and the admin handlers answer with the same numbers.

#[path = "common/leaks.rs"]
mod leaks;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use leaks::leak;
use sendguard::incident::{http as incident_http, render_html, render_text, IncidentDesk};
use sendguard::ledger::{Ledger, LedgerConfig, LedgerRecord, Outcome};
use sendguard::model::{Envelope, Refusal, Scope};
use sendguard::{Guard, GuardConfig};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// 1,000 recipients: 100 suppressed at send time, 900 relayed (50 of them answered 550 by the
/// upstream), across three domains and two tenants.
async fn synthetic_campaign(ledger: &Ledger) {
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    let mut recs = Vec::new();
    for i in 0..1000u64 {
        let env = Envelope::new("news@shop.test")
            .with_campaign("spring-leak")
            .with_tenant(if i < 600 { "acme" } else { "globex" });
        let domain = ["gmail.test", "web.test", "mail.test"][(i % 3) as usize];
        let rcpt = format!("User{i}@{domain}");
        let r = LedgerRecord::new(Outcome::Relayed, &env, &rcpt, "smtp")
            .at(t0 + Duration::from_secs(i * 2))
            .with_findings(&[leak()]);
        let r = if i % 10 == 0 {
            r.with_refusal(&Refusal::Suppressed {
                recipient: rcpt.clone(),
                entry: rcpt.to_lowercase(),
            })
        } else if i % 10 == 1 && i < 500 {
            r.with_reply(550, "5.1.1 unknown user")
        } else {
            r.with_reply(250, "2.0.0 ok")
        };
        recs.push(r);
    }
    ledger.record(recs).await.unwrap();
    ledger.flush().await.unwrap();
}

/// An in-memory guard, a ledger in `dir` holding [`synthetic_campaign`], and a desk over both.
async fn desk_over_synthetic_campaign(dir: &Path) -> (Guard, Ledger, IncidentDesk) {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let ledger = Ledger::open(dir, LedgerConfig::default()).unwrap();
    synthetic_campaign(&ledger).await;
    let desk = IncidentDesk::new(guard.clone(), ledger.clone());
    (guard, ledger, desk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_report_audience_close() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, ledger, desk) = desk_over_synthetic_campaign(dir.path()).await;
    let follower = tokio::spawn(desk.clone().follow(guard.subscribe()));

    let inc = {
        let d = desk.clone();
        tokio::task::spawn_blocking(move || {
            d.open("spring-leak", "<FirstName> in subject", "maria")
        })
        .await
        .unwrap()
        .unwrap()
    };
    assert!(inc.id.starts_with("INC-"));
    let scope = Scope::Campaign("spring-leak".into());
    assert!(
        guard.pauses().iter().any(|p| p.scope == scope),
        "open must pause the campaign"
    );

    // Two recipients unsubscribe after the send: they leave the audience.
    guard.suppress("user2@mail.test", "test").unwrap();
    guard.suppress("user3@gmail.test", "test").unwrap();

    let report = desk.report(&inc.id).unwrap();
    let relayed = 900 - 50; // i < 500 with i % 10 == 1: 50 answered 550
    assert_eq!(report.campaign.outcome(Outcome::Relayed), relayed);
    assert_eq!(report.campaign.outcome(Outcome::Suppressed), 100);
    assert_eq!(report.campaign.outcome(Outcome::UpstreamReject), 50);
    assert_eq!(report.campaign.relayed_recipients, relayed);
    assert_eq!(report.suppressed_now, 2);
    assert_eq!(report.audience, relayed - 2);
    assert_eq!(report.campaign.by_domain.len(), 3);
    assert_eq!(
        report
            .campaign
            .by_domain
            .iter()
            .map(|c| c.count)
            .sum::<u64>(),
        relayed
    );
    assert_eq!(report.campaign.findings[0].token, "<FirstName>");
    assert_eq!(report.campaign.findings[0].count, 1000);
    assert_eq!(report.campaign.findings[0].relayed, relayed);
    let audience = desk.audience(&inc.id).unwrap();
    assert_eq!(audience.len() as u64, relayed - 2);
    assert!(!audience.contains(&"user2@mail.test".to_string()));
    assert!(
        !audience.contains(&"user0@gmail.test".to_string()),
        "suppressed at send time"
    );
    assert!(
        !audience.contains(&"user1@web.test".to_string()),
        "refused by the upstream"
    );
    assert!(audience.contains(&"user4@web.test".to_string()));

    let text = render_text(&report);
    assert!(
        text.contains(&format!("Recipients who got the message:  {relayed}")),
        "{text}"
    );
    let html = render_html(&report);
    assert!(html.contains("<svg") && html.contains("&lt;FirstName&gt;"));
    for external in ["<script", "<link", " src=", " href=", "url("] {
        assert!(
            !html.contains(external),
            "the page must be self-contained: {external}"
        );
    }

    // Resume on the guard: the follower puts it on the timeline.
    guard.resume(&scope, "maria", None).unwrap();
    desk.note(&inc.id, "apology drafted", "tom").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let inc = loop {
        let i = desk.get(&inc.id).unwrap();
        if i.timeline.iter().any(|e| e.kind == "resume") || std::time::Instant::now() > deadline {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let kinds: Vec<&str> = inc.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "pause").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"opened") && kinds.contains(&"resume") && kinds.contains(&"note"),
        "{kinds:?}"
    );

    let closed = desk.close(&inc.id, "maria", Some("done")).unwrap();
    assert!(!closed.is_open());
    assert!(desk.note(&inc.id, "late", "x").is_err());
    assert_eq!(desk.list().unwrap().len(), 1);
    follower.abort();
    ledger.close().await.unwrap();
}

async fn call(desk: &IncidentDesk, method: Method, uri: &str, body: &str) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Bytes::from(body.to_string()))
        .unwrap();
    let path = req.uri().path().to_string();
    let rest: Vec<&str> = path
        .trim_start_matches("/v1/incidents")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let resp = incident_http::handle(desk, req, &rest).await;
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// [`call`] with GET and no body.
async fn get(desk: &IncidentDesk, uri: &str) -> (StatusCode, Bytes) {
    call(desk, Method::GET, uri, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (_guard, ledger, desk) = desk_over_synthetic_campaign(dir.path()).await;

    let open = r#"{"campaign":"spring-leak","reason":"leak"}"#;
    let (s, b) = call(&desk, Method::POST, "/v1/incidents", open).await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    let inc: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let id = inc["id"].as_str().unwrap().to_string();
    let again = r#"{"campaign":"spring-leak","reason":"again"}"#;
    let (s, b) = call(&desk, Method::POST, "/v1/incidents", again).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&b).contains(&id));

    let (s, b) = get(&desk, &format!("/v1/incidents/{id}/report")).await;
    assert_eq!(s, StatusCode::OK);
    let r: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(r["campaign"]["relayed_recipients"], 850);
    assert_eq!(r["audience"], 850);

    let (s, b) = get(&desk, &format!("/v1/incidents/{id}/report?format=html")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&b).starts_with("<!DOCTYPE html>"));

    let (s, b) = get(&desk, &format!("/v1/incidents/{id}/audience")).await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(b.to_vec()).unwrap();
    assert_eq!(csv.lines().count(), 851);
    assert_eq!(csv.lines().next(), Some("recipient"));

    let notes = format!("/v1/incidents/{id}/notes");
    let close = format!("/v1/incidents/{id}/close");
    for (uri, body, want) in [
        (&notes, r#"{"text":"hi"}"#, StatusCode::OK),
        (&notes, r#"{"txt":"hi"}"#, StatusCode::BAD_REQUEST),
        (&close, "", StatusCode::OK),
        (&close, "", StatusCode::CONFLICT),
    ] {
        let (s, _) = call(&desk, Method::POST, uri, body).await;
        assert_eq!(s, want, "POST {uri} {body}");
    }
    let (s, _) = get(&desk, "/v1/incidents/INC-nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = get(&desk, "/v1/incidents").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&b)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    ledger.close().await.unwrap();
}
