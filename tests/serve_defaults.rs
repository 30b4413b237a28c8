//! `sendguard serve` with no flags, as the README runs it on a fresh checkout: the shipped
//! policies, a state directory and a maildir under the working directory, and every listener on
//! its documented loopback port.

mod common;

use lettre::address::Envelope;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SMTP: u16 = 2525;
const HTTP: u16 = 8025;
const ADMIN: u16 = 8026;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_flags_works_on_a_fresh_checkout() {
    // The documented ports must be free for this test to mean anything.
    for port in [SMTP, HTTP, ADMIN] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            eprintln!("port {port} is taken on this machine; skipping");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        &dir.path().join("policies"),
    );
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _daemon = Killed(
        Command::new(env!("CARGO_BIN_EXE_sendguard"))
            .arg("serve")
            .current_dir(dir.path())
            .env_remove("SENDGUARD_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    for port in [SMTP, HTTP, ADMIN] {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(
            common::wait_for_port(addr, Duration::from_secs(20)),
            "nothing listens on {addr}; log:\n{}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
    }

    // SMTP: a clean message lands in ./outbox/new, a leaking one is refused.
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(SMTP)
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let env = Envelope::new(
        Some("news@shop.test".parse().unwrap()),
        vec!["anna@customer.test".parse().unwrap()],
    )
    .unwrap();
    let clean =
        b"From: news@shop.test\r\nTo: anna@customer.test\r\nSubject: Spring\r\n\r\nHello Anna\r\n";
    mailer
        .send_raw(&env, clean)
        .await
        .expect("clean message accepted");
    let leak = b"From: news@shop.test\r\nTo: anna@customer.test\r\nSubject: Hallo {{FirstName}}\r\n\r\nHi\r\n";
    let err = mailer.send_raw(&env, leak).await.unwrap_err();
    assert!(err.to_string().contains("placeholder"), "{err}");

    // HTTP: the raw endpoint delivers into the same maildir.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::post(format!("http://127.0.0.1:{HTTP}/v1/messages"))
        .header("content-type", "message/rfc822")
        .header("x-sendguard-from", "news@shop.test")
        .header("x-sendguard-to", "bob@customer.test")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"From: news@shop.test\r\nTo: bob@customer.test\r\nSubject: Hi\r\n\r\nHello Bob\r\n",
        )))
        .unwrap();
    let resp = client.request(req).await.expect("http front-end answers");
    assert_eq!(resp.status(), 202);

    // Admin: liveness without a token on loopback.
    let resp = client
        .request(
            hyper::Request::get(format!("http://127.0.0.1:{ADMIN}/healthz"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .expect("admin API answers");
    assert_eq!(resp.status(), 200);

    let outbox = dir.path().join("outbox/new");
    let deadline = Instant::now() + Duration::from_secs(5);
    while files_in(&outbox) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        files_in(&outbox),
        2,
        "both accepted messages are in ./outbox/new"
    );
    assert!(
        dir.path().join("state").is_dir(),
        "state directory under the working directory"
    );
}
