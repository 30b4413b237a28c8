//! Forwarding to an upstream over TLS, trusting a private CA given as `upstream_ca`.

#[path = "common/http_standin.rs"]
mod http_standin;

use http_standin::{answer, json_post, StandIn};
use sendguard::http::{Dialect, HttpConfig, HttpProxy};
use sendguard::{Guard, GuardConfig};

const PM: &str =
    r#"{"From":"news@shop.test","To":"anna@customer.test","Subject":"Hi","TextBody":"Hello"}"#;

async fn post(p: &HttpProxy) -> (u16, String) {
    let a = answer(p.handle(json_post("/email", PM)).await).await;
    (a.status, a.text())
}

#[tokio::test]
async fn forwards_over_tls_to_an_upstream_signed_by_a_private_ca() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pm = StandIn::start_tls(
        "postmark",
        ck.cert.der().to_vec(),
        ck.signing_key.serialize_der(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let upstream = format!("https://localhost:{}", pm.addr.port());

    let trusting = HttpConfig {
        upstream: Some(upstream.clone()),
        dialect: Dialect::Postmark,
        upstream_ca: Some(ca),
        ..HttpConfig::default()
    };
    let p = HttpProxy::new(trusting.routes().remove(0), &trusting, guard.clone()).unwrap();
    let (status, body) = post(&p).await;
    assert_eq!(status, 200, "{body}");
    let r = pm.wait_for(1).await;
    assert_eq!(&r[0].body[..], PM.as_bytes());

    // Without the CA the upstream's certificate is not trusted: 502, nothing delivered.
    let plain = HttpConfig {
        upstream: Some(upstream),
        dialect: Dialect::Postmark,
        ..HttpConfig::default()
    };
    let p = HttpProxy::new(plain.routes().remove(0), &plain, guard).unwrap();
    let (status, body) = post(&p).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("ErrorCode"), "{body}");
    assert_eq!(pm.requests().len(), 1);
}

#[test]
fn an_unusable_upstream_ca_is_a_clear_error() {
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let c = HttpConfig {
        upstream: Some("https://api.postmarkapp.com".into()),
        upstream_ca: Some(bad),
        ..HttpConfig::default()
    };
    let e = HttpProxy::new(c.routes().remove(0), &c, guard.clone()).unwrap_err();
    assert!(e.to_string().contains("bad.pem"), "{e}");
    let c = HttpConfig {
        upstream: Some("ftp://x.test".into()),
        ..HttpConfig::default()
    };
    let e = HttpProxy::new(c.routes().remove(0), &c, guard).unwrap_err();
    assert!(e.to_string().contains("ftp://x.test"), "{e}");
}
