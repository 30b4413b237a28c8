//! The HTTP proxy built from the library with a guard the test controls: pauses and ramps get
//! their documented answers in each dialect's shape, and nothing reaches the service.

#[path = "common/http_standin.rs"]
mod http_standin;

use bytes::Bytes;
use http_body_util::Full;
use http_standin::{answer, json_post, StandIn};
use sendguard::http::{Dialect, HttpConfig, HttpProxy};
use sendguard::{Guard, GuardConfig, Scope};

const SG: &str = r#"{"personalizations":[{"to":[{"email":"anna@customer.test"}]}],"from":{"email":"news@shop.test"},"subject":"Your spring update","content":[{"type":"text/plain","value":"Hello Anna"}],"custom_args":{"campaign_id":"spring-2026"}}"#;
const PM: &str = r#"{"From":"news@shop.test","To":"anna@customer.test","Subject":"Hi","TextBody":"Hello","Metadata":{"campaign_id":"spring-2026"}}"#;

fn proxy(guard: &Guard, upstream: String, dialect: Dialect) -> HttpProxy {
    let config = HttpConfig {
        upstream: Some(upstream),
        dialect,
        ..HttpConfig::default()
    };
    let route = config.routes().remove(0);
    HttpProxy::new(route, &config, guard.clone()).expect("proxy")
}

async fn post(p: &HttpProxy, path: &str, body: &'static str) -> (u16, http::HeaderMap, String) {
    let a = answer(p.handle(json_post(path, body)).await).await;
    let text = a.text();
    (a.status, a.headers, text)
}

#[tokio::test]
async fn a_paused_campaign_gets_503_with_retry_after_and_nothing_is_sent() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let sg = StandIn::start("sendgrid").await;
    let pm = StandIn::start("postmark").await;
    let p_sg = proxy(&guard, sg.url(), Dialect::Sendgrid);
    let p_pm = proxy(&guard, pm.url(), Dialect::Postmark);

    let (s, _, _) = post(&p_sg, "/v3/mail/send", SG).await;
    assert_eq!(s, 202);

    let campaign = Scope::Campaign("spring-2026".into());
    guard
        .pause(campaign.clone(), "wrong prices", "ops", None)
        .unwrap();
    let (s, h, body) = post(&p_sg, "/v3/mail/send", SG).await;
    assert_eq!(s, 503, "{body}");
    assert!(h.get("retry-after").is_some());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("campaign spring-2026"), "{msg}");
    assert!(v["errors"][0]["field"].is_null() && v["errors"][0]["help"].is_null());

    let (s, h, body) = post(&p_pm, "/email", PM).await;
    assert_eq!(s, 503, "{body}");
    assert!(h.get("retry-after").is_some());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ErrorCode"], 405);

    // A pause of a recipient domain stops a request of another campaign too.
    guard.resume(&campaign, "ops", None).unwrap();
    let domain = Scope::Domain("customer.test".into());
    guard.pause(domain, "bounces", "ops", None).unwrap();
    let (s, _, body) = post(&p_pm, "/email", PM).await;
    assert_eq!(s, 503, "{body}");

    assert_eq!(sg.requests().len(), 1);
    assert!(pm.requests().is_empty());
}

#[tokio::test]

async fn a_ramped_scope_over_its_rate_gets_429_with_retry_after() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let sg = StandIn::start("sendgrid").await;
    let p = proxy(&guard, sg.url(), Dialect::Sendgrid);
    let scope = Scope::Campaign("spring-2026".into());
    guard.pause(scope.clone(), "incident", "ops", None).unwrap();
    guard
        .resume(&scope, "ops", Some("1/h..2/h/1h".parse().unwrap()))
        .unwrap();
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..3 {
        let (s, h, _) = post(&p, "/v3/mail/send", SG).await;
        if s == 429 {
            retry = h.get("retry-after").cloned();
        }
        statuses.push(s);
    }
    assert_eq!(statuses[0], 202);
    assert_eq!(statuses[2], 429, "{statuses:?}");
    assert!(retry.is_some());
    assert_eq!(
        sg.requests().len(),
        statuses.iter().filter(|s| **s == 202).count()
    );
}

#[tokio::test]
async fn repeated_leaks_trip_the_campaign_and_clean_mail_of_it_then_waits() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let raw = StandIn::start("raw").await;
    let p = proxy(&guard, raw.url(), Dialect::Raw);
    let send = |msg: &'static str| {
        let req = http::Request::builder()
            .method("POST")
            .uri("/v1/messages")
            .header("x-sendguard-from", "news@shop.test")
            .header("x-sendguard-to", "anna@customer.test")
            .header("x-sendguard-campaign", "spring-2026")
            .body(Full::new(Bytes::from_static(msg.as_bytes())))
            .unwrap();
        let p = p.clone();
        async move {
            let a = answer(p.handle(req).await).await;
            (a.status, a.text())
        }
    };
    let leak = "Subject: Hello <FirstName>\r\n\r\nDear <FirstName>,\r\n";
    let clean = "Subject: Hello Anna\r\n\r\nDear Anna,\r\n";
    for _ in 0..3 {
        let (s, body) = send(leak).await;
        assert_eq!(s, 422, "{body}");
        assert!(body.contains("<FirstName>"), "{body}");
    }
    let (s, body) = send(clean).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("campaign spring-2026"), "{body}");
    assert!(raw.requests().is_empty());
}
