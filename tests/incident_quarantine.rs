//! The quarantine: keep refused messages under a size cap (refusing, not evicting, when full),
//! list / show / drop, and release to a maildir or an SMTP upstream with ledger records.

#[path = "common/leaks.rs"]
mod leaks;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use leaks::quarantined_leak;
use sendguard::ledger::{Ledger, LedgerConfig, Outcome};
use sendguard::model::{Envelope, Message, Refusal};
use sendguard::quarantine::{
    handle, Quarantine, QuarantineError, QuarantinePolicy, ReleaseTarget, Upstream,
};
use sendguard::{Guard, GuardConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn message(n: usize) -> Message {
    Message::new(format!(
        "From: news@shop.test\r\nTo: a@x.test\r\nSubject: Hello <FirstName> {n}\r\nX-Campaign-ID: spring\r\n\r\nHi <FirstName>\r\n"
    ).into_bytes())
}

fn envelope() -> Envelope {
    Envelope::new("news@shop.test")
        .with_recipient("a@x.test")
        .with_recipient("b@x.test")
        .with_campaign("spring")
}

#[test]
fn store_list_cap_drop() {
    let dir = tempfile::tempdir().unwrap();
    let size = message(1).len() as u64;
    let q = Quarantine::open(
        dir.path(),
        QuarantinePolicy {
            max_bytes: size * 3,
            max_messages: 100,
        },
    )
    .unwrap();
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            q.store(&envelope(), &message(n), &quarantined_leak(), "smtp")
                .unwrap()
                .id,
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Full: the fourth is refused (the caller tempfails), nothing kept is evicted.
    match q.store(&envelope(), &message(4), &quarantined_leak(), "smtp") {
        Err(QuarantineError::Full { count, .. }) => assert_eq!(count, 3),
        other => panic!("{other:?}"),
    }
    let list = q.list().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].id, ids[2], "newest first");
    let e = q.get(&ids[0]).unwrap();
    assert_eq!(e.recipients, vec!["a@x.test", "b@x.test"]);
    assert_eq!(e.campaign.as_deref(), Some("spring"));
    assert!(matches!(e.refusal, Some(Refusal::Placeholder { .. })));
    assert_eq!(q.raw(&ids[0]).unwrap(), message(1).raw().to_vec());
    q.discard(&ids[0]).unwrap();
    assert!(matches!(q.get(&ids[0]), Err(QuarantineError::NotFound(_))));
    assert!(matches!(
        q.get("../../etc/passwd"),
        Err(QuarantineError::NotFound(_))
    ));
    // Room again.
    q.store(&envelope(), &message(5), &quarantined_leak(), "smtp")
        .unwrap();
    let q2 = Quarantine::open(
        dir.path(),
        QuarantinePolicy {
            max_bytes: 1,
            max_messages: 100,
        },
    )
    .unwrap();
    assert!(matches!(
        q2.store(&envelope(), &message(6), &quarantined_leak(), "smtp"),
        Err(QuarantineError::Full { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_to_maildir_skips_suppressed_and_records_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    guard.suppress("b@x.test", "test").unwrap();
    let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
    let q = Arc::new(Quarantine::open(dir.path(), QuarantinePolicy::default()).unwrap());
    let id = q
        .store(&envelope(), &message(1), &quarantined_leak(), "smtp")
        .unwrap()
        .id;
    let outbox = dir.path().join("outbox");
    let target = ReleaseTarget {
        guard: guard.clone(),
        ledger: Some(ledger.clone()),
        upstream: format!("maildir:{}", outbox.display()).parse().unwrap(),
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/quarantine/{id}/release"))
        .body(Bytes::new())
        .unwrap();
    let resp = handle(&q, &target, req, &[&id, "release"]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["recipients"][0]["outcome"], "suppressed");
    assert_eq!(body["recipients"][1]["outcome"], "relayed");
    let written: Vec<_> = std::fs::read_dir(outbox.join("new")).unwrap().collect();
    assert_eq!(written.len(), 1);
    assert_eq!(
        std::fs::read(written[0].as_ref().unwrap().path()).unwrap(),
        message(1).raw().to_vec()
    );
    assert!(
        q.list().unwrap().is_empty(),
        "released messages leave the quarantine"
    );
    ledger.flush().await.unwrap();
    let r = ledger.campaign_report("spring").unwrap();
    assert_eq!(r.outcome(Outcome::Relayed), 1);
    assert_eq!(r.outcome(Outcome::Suppressed), 1);
    assert!(ledger.has_received("spring", "a@x.test").unwrap());

    // Unknown id and wrong method.
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v1/quarantine/q-1-x")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(
        handle(&q, &target, req, &["q-1-x"]).await.status(),
        StatusCode::NOT_FOUND
    );
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/v1/quarantine")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(
        handle(&q, &target, req, &[]).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    ledger.close().await.unwrap();
}

/// A one-connection SMTP sink on loopback: accepts every recipient but `reject@…`, returns the
/// DATA it received.
async fn smtp_sink() -> (u16, tokio::task::JoinHandle<(Vec<String>, String)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (sock, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
        let (mut rcpts, mut data) = (Vec::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                break;
            }
            let cmd = line.to_ascii_uppercase();
            let reply: &[u8] = if cmd.starts_with("EHLO") {
                b"250-sink\r\n250 8BITMIME\r\n"
            } else if cmd.starts_with("RCPT") {
                if cmd.contains("REJECT@") {
                    b"550 5.1.1 no\r\n"
                } else {
                    rcpts.push(line.trim().to_string());
                    b"250 ok\r\n"
                }
            } else if cmd.starts_with("DATA") {
                w.write_all(b"354 go\r\n").await.unwrap();
                loop {
                    line.clear();
                    r.read_line(&mut line).await.unwrap();
                    if line == ".\r\n" || line.is_empty() {
                        break;
                    }
                    data.push_str(&line);
                }
                b"250 2.0.0 queued as 42\r\n"
            } else if cmd.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").await.unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            w.write_all(reply).await.unwrap();
        }
        (rcpts, data)
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_over_smtp_with_lettre() {
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
    let q = Quarantine::open(dir.path(), QuarantinePolicy::default()).unwrap();
    let id = q
        .store(&envelope(), &message(7), &quarantined_leak(), "smtp")
        .unwrap()
        .id;
    let (port, sink) = smtp_sink().await;
    let upstream: Upstream = format!("smtp://127.0.0.1:{port}").parse().unwrap();
    let report = q
        .release(&id, &upstream, &guard, Some(&ledger))
        .await
        .unwrap();
    assert_eq!(report.recipients.len(), 2);
    assert!(report
        .recipients
        .iter()
        .all(|r| r.outcome == Outcome::Relayed));
    assert!(report.recipients[0]
        .reply
        .as_deref()
        .unwrap()
        .starts_with("250"));
    let (rcpts, data) = sink.await.unwrap();
    assert_eq!(rcpts.len(), 2);
    assert!(data.contains("Subject: Hello <FirstName> 7"));
    ledger.flush().await.unwrap();
    assert_eq!(
        ledger
            .campaign_report("spring")
            .unwrap()
            .outcome(Outcome::Relayed),
        2
    );

    // Nobody listening: the release fails and the message stays.
    let id = q
        .store(&envelope(), &message(8), &quarantined_leak(), "smtp")
        .unwrap()
        .id;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = q
        .release(
            &id,
            &format!("smtp://127.0.0.1:{closed}").parse().unwrap(),
            &guard,
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(q.get(&id).is_ok());
    ledger.close().await.unwrap();
}

#[test]
fn upstream_urls() {
    assert_eq!(
        "smtp://mx.test:2525".parse::<Upstream>().unwrap(),
        Upstream::Smtp {
            host: "mx.test".into(),
            port: 2525,
            tls: sendguard::quarantine::UpstreamTls::None
        }
    );
    assert!(matches!(
        "smtps://mx.test".parse::<Upstream>().unwrap(),
        Upstream::Smtp { port: 465, .. }
    ));
    assert!(matches!(
        "smtp+starttls://mx.test:587".parse::<Upstream>().unwrap(),
        Upstream::Smtp { port: 587, .. }
    ));
    assert!(matches!(
        "maildir:./outbox".parse::<Upstream>().unwrap(),
        Upstream::Maildir(_)
    ));
    assert!("http://x".parse::<Upstream>().is_err());
    assert!("smtp://x:port".parse::<Upstream>().is_err());
}
