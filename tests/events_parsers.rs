//! Delivery-event parsers on real-looking samples: SendGrid's event webhook, the generic JSON
//! form, and an ARF abuse report; and bad input refused with a clear error.

use sendguard::events::{parse_arf, parse_body, parse_json, BounceClass, DeliveryEvent, EventKind};
use std::time::{Duration, UNIX_EPOCH};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn headers() -> Vec<String> {
    vec![
        "X-Campaign-ID".into(),
        "X-Mailgun-Campaign-Id".into(),
        "Feedback-ID".into(),
    ]
}

fn find<'a>(evs: &'a [DeliveryEvent], rcpt: &str) -> &'a DeliveryEvent {
    evs.iter()
        .find(|e| e.recipient == rcpt)
        .unwrap_or_else(|| panic!("no event for {rcpt}"))
}

#[test]
fn sendgrid_webhook() {
    let evs = parse_json(&fixture("sendgrid-webhook.json")).unwrap();
    // processed and open are skipped; seven events matter.
    assert_eq!(evs.len(), 7, "{evs:#?}");
    assert!(evs.iter().all(|e| e.source == "sendgrid"));
    let d = &evs[0];
    assert_eq!(
        (d.kind, d.recipient.as_str()),
        (EventKind::Delivered, "anna.schmidt@gmail.example")
    );
    assert_eq!(d.campaign.as_deref(), Some("autumn-sale-2026"));
    assert_eq!(d.at, UNIX_EPOCH + Duration::from_secs(1_795_852_803));
    let hard = find(&evs, "j.mueller@web.example");
    assert_eq!(
        (hard.kind, hard.bounce_class),
        (EventKind::Bounce, Some(BounceClass::Hard))
    );
    assert!(hard.suppresses());
    assert!(hard.reason.as_deref().unwrap().contains("5.1.1"));
    let blocked = find(&evs, "info@blocked-corp.example");
    assert_eq!(blocked.bounce_class, Some(BounceClass::Soft));
    assert!(!blocked.suppresses());
    assert_eq!(
        find(&evs, "old.customer@yahoo.example").kind,
        EventKind::Dropped
    );
    let spam = find(&evs, "angry.reader@gmx.example");
    assert_eq!(spam.kind, EventKind::Complaint);
    assert!(spam.suppresses());
    assert_eq!(
        find(&evs, "slow.server@company.example").kind,
        EventKind::Deferred
    );
    let unsub = find(&evs, "leaving@posteo.example");
    assert_eq!(unsub.kind, EventKind::Unsubscribe);
    assert_eq!(
        unsub.campaign.as_deref(),
        Some("newsletter"),
        "category as fallback"
    );
    assert!(unsub.suppresses());
}

#[test]
fn generic_form() {
    let evs = parse_body(
        "application/json; charset=utf-8",
        &fixture("generic.json"),
        &headers(),
    )
    .unwrap();
    assert_eq!(evs.len(), 5);
    assert!(evs
        .iter()
        .all(|e| e.source == "generic" && e.campaign.as_deref() == Some("spring-2026")));
    assert_eq!(evs[0].recipient, "anna@example.test");
    assert_eq!(
        evs[0].at,
        humantime::parse_rfc3339("2026-11-28T09:00:00Z").unwrap()
    );
    assert_eq!(evs[1].at, UNIX_EPOCH + Duration::from_secs(1_795_852_800));
    assert!(evs[1].suppresses());
    assert_eq!(evs[2].bounce_class, Some(BounceClass::Soft));
    assert!(!evs[2].suppresses());
    assert_eq!(evs[3].kind, EventKind::Deferred);
    assert_eq!(evs[4].recipient, "spam.button@example.test");
    assert!(evs[4].suppresses());
    let one = parse_json(&fixture("generic-single.json")).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].kind, EventKind::Complaint);
}

#[test]
fn arf_abuse_report() {
    let raw = fixture("arf-abuse.eml");
    for ct in [
        "multipart/report; report-type=feedback-report",
        "message/rfc822",
    ] {
        let evs = parse_body(ct, &raw, &headers()).unwrap();
        assert_eq!(evs.len(), 1);
        let e = &evs[0];
        assert_eq!(e.kind, EventKind::Complaint);
        assert_eq!(e.recipient, "complainer@mailbox.example");
        assert_eq!(e.campaign.as_deref(), Some("autumn-sale-2026"));
        assert_eq!(e.source, "arf");
        assert_eq!(
            e.at,
            humantime::parse_rfc3339("2026-11-28T09:58:41Z").unwrap()
        );
        assert!(e.suppresses());
    }
}

#[test]
fn arf_with_headers_only_and_feedback_id() {
    let raw = "From: fbl@isp.test\r\nTo: fbl@shop.test\r\nSubject: FBL\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain\r\n\r\nabuse report\r\n\
--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n\
--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@shop.test\r\nTo: Reader <reader@isp.test>\r\n\
Feedback-ID: spring-2026:acme:mailer:shop\r\nSubject: hi\r\n\r\n--b1--\r\n";
    let e = parse_arf(raw.as_bytes(), &headers()).unwrap();
    assert_eq!(e.recipient, "reader@isp.test");
    assert_eq!(e.campaign.as_deref(), Some("spring-2026"));
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    for (ct, body, expect) in [
        ("application/json", "{not json", "not JSON"),
        (
            "application/json",
            r#"{"type":"bounce"}"#,
            "event 0: missing \"recipient\"",
        ),
        (
            "application/json",
            r#"[{"type":"delivered","recipient":"a@b.test"},{"type":"exploded","recipient":"a@b.test"}]"#,
            "event 1: unknown type \"exploded\"",
        ),
        (
            "application/json",
            r#"{"type":"bounce","recipient":"a@b.test","bounce_class":"medium"}"#,
            "unknown bounce_class",
        ),
        (
            "application/json",
            r#"{"type":"bounce","recipient":"nobody"}"#,
            "not an address",
        ),
        (
            "application/json",
            r#"[{"event":"bounce","type":"bounce"}]"#,
            "SendGrid event 0 (bounce): missing \"email\"",
        ),
        ("application/json", "42", "object or an array"),
        ("text/csv", "a,b", "unsupported content type"),
        (
            "message/rfc822",
            "From: a@b.test\r\nSubject: x\r\n\r\nhello\r\n",
            "no message/feedback-report part",
        ),
    ] {
        let err = parse_body(ct, body.as_bytes(), &headers()).unwrap_err();
        assert!(err.to_string().contains(expect), "{body}: {err}");
    }
    let not_actionable = String::from_utf8(fixture("arf-abuse.eml"))
        .unwrap()
        .replace("Feedback-Type: abuse", "Feedback-Type: virus");
    let err = parse_arf(not_actionable.as_bytes(), &headers()).unwrap_err();
    assert!(
        err.to_string().contains("\"virus\" is not actionable"),
        "{err}"
    );
}
