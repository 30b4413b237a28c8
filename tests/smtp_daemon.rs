//! The real daemon's SMTP front-end: `sendguard serve` started as a process, driven with lettre
//! and with a raw socket, relaying to the recording stand-in upstream.

mod common;
#[path = "common/smtp_upstream.rs"]
mod smtp_upstream;
#[path = "common/smtp_wire.rs"]
mod smtp_wire;

use common::{free_port, Daemon};
use lettre::address::Envelope;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use smtp_upstream::{make_certs, Script, Upstream};
use smtp_wire::Wire;
use std::time::Duration;
use tokio::net::TcpStream;

fn mailer(port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope::new(
        Some(from.parse().unwrap()),
        to.iter().map(|t| t.parse().unwrap()).collect(),
    )
    .unwrap()
}

async fn start(extra: &str) -> (Daemon, u16) {
    let port = free_port();
    let config =
        format!("[smtp]\nlisten = \"127.0.0.1:{port}\"\nhostname = \"proxy.test\"\n{extra}");
    let d = tokio::task::spawn_blocking(move || Daemon::start(&config, &[port]))
        .await
        .unwrap();
    (d, port)
}

fn stuffed(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sendguard::smtp::codec::dot_stuff(msg, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_upstream_is_a_maildir() {
    let (d, port) = start("").await;
    // lettre ends the data with CRLF.CRLF after the message, so the message it means is the
    // bytes given plus a CRLF.
    let msg =
        b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hello\r\n\r\nHello.\r\n.dot line";
    let r = mailer(port)
        .send_raw(&envelope("a@sender.test", &["b@rcpt.test"]), msg)
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", d.log()));
    assert_eq!(r.code().to_string(), "250");
    let new = d.path("outbox/new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::read(files[0].path()).unwrap(),
        [&msg[..], b"\r\n"].concat()
    );
    assert!(
        d.log().contains("smtp transaction"),
        "one log line per transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_table_rows() {
    let up = Upstream::start(Script::default()).await;
    let (d, port) = start(&format!(
        "upstream = \"{}\"\nmax_message_size = 2000\n",
        up.url()
    ))
    .await;
    let m = mailer(port);
    // Suppressed (the shipped list suppresses @example.invalid).
    let e = m
        .send_raw(
            &envelope("a@sender.test", &["someone@example.invalid"]),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("550") && e.contains("5.7.1") && e.contains("suppressed"),
        "{e}"
    );
    // Placeholder leak.
    let e = m
        .send_raw(
            &envelope("a@sender.test", &["b@rcpt.test"]),
            b"Subject: Sehr geehrter <FirstName>,\r\n\r\nHallo\r\n",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("554") && e.contains("5.6.0") && e.contains("<FirstName>"),
        "{e}"
    );
    // Too large.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.extend_from_slice(b"\r\n");
    let e = m
        .send_raw(&envelope("a@sender.test", &["b@rcpt.test"]), &big)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("552") && e.contains("5.3.4"), "{e}");
    // A clean message passes, with the upstream's own reply.
    m.send_raw(
        &envelope("a@sender.test", &["b@rcpt.test"]),
        b"Subject: fine\r\n\r\nfine",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", d.log()));
    let got = up.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content(), b"Subject: fine\r\n\r\nfine\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_never_yield_250() {
    let dead = free_port();
    let (_d, port) = start(&format!("upstream = \"smtp://127.0.0.1:{dead}\"\n")).await;
    let e = mailer(port)
        .send_raw(
            &envelope("a@sender.test", &["b@rcpt.test"]),
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("451") && e.contains("4.4.1"), "{e}");

    for script in [
        Script {
            close_mid_data: true,
            ..Script::default()
        },
        Script {
            data_command_reply: Some("452 4.3.1 insufficient storage".into()),
            ..Script::default()
        },
        Script {
            final_reply: Some("451 4.3.0 try later".into()),
            ..Script::default()
        },
    ] {
        let up = Upstream::start(script).await;
        let (_d, port) = start(&format!("upstream = \"{}\"\n", up.url())).await;
        let mut c = Wire::connect(port).await;
        c.expect("EHLO client.test", "250").await;
        c.expect("MAIL FROM:<a@sender.test>", "250").await;
        c.expect("RCPT TO:<b@rcpt.test>", "250").await;
        c.expect("DATA", "354").await;
        c.send(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
        let r = c.reply().await;
        assert!(r.starts_with('4'), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_byte_for_byte_with_pipelining() {
    let up = Upstream::start(Script::default()).await;
    let (_d, port) = start(&format!("upstream = \"{}\"\n", up.url())).await;
    let messages: Vec<Vec<u8>> = vec![
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n...y\r\nend\r\n".to_vec(),
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: Jürgen <j@sender.test>\r\n\r\nÄÖÜ äöü ß — ✓ 日本語\r\n\u{1F600}\r\n"
            .as_bytes()
            .to_vec(),
        {
            let mut m = b"Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
            m.extend((0x80u8..=0xff).filter(|b| *b != b'\r' && *b != b'\n'));
            m.extend_from_slice(b"\r\n\t tab and trailing spaces   \r\n\r\n\r\n");
            m
        },
        {
            let mut m = b"Subject: long\r\n\r\n".to_vec();
            m.extend(std::iter::repeat_n(b'L', 20_000));
            m.extend_from_slice(b"\r\n");
            m
        },
    ];
    let mut c = Wire::connect(port).await;
    c.expect("EHLO client.test", "250").await;
    for msg in &messages {
        c.send(b"MAIL FROM:<a@sender.test> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@rcpt.test>\r\nRCPT TO:<c@rcpt.test>\r\nDATA\r\n").await;
        for want in ["250", "250", "250", "354"] {
            let r = c.reply().await;
            assert!(r.starts_with(want), "{r}");
        }
        c.send(&stuffed(msg)).await;
        let r = c.reply().await;
        assert!(r.starts_with("250"), "{r}");
    }
    c.expect("QUIT", "221").await;
    let got = up.wait_for(messages.len()).await;
    assert_eq!(got.len(), messages.len());
    for (g, m) in got.iter().zip(&messages) {
        assert_eq!(g.content(), *m);
        assert_eq!(g.wire, stuffed(m)[..stuffed(m).len() - 3].to_vec());
        assert!(
            !g.content().starts_with(b"X-Sendguard"),
            "no trace header by default"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_sequences_never_split_a_message() {
    let sequences: &[&[u8]] = &[
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\r",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\n.\r",
        b"\r.\n",
        b"\r.\r\n",
        b"\r\n.\r\r\n",
        b"\r\n\x00.\r\n",
    ];
    let up = Upstream::start(Script::default()).await;
    let (_d, port) = start(&format!("upstream = \"{}\"\n", up.url())).await;
    let mut c = Wire::connect(port).await;
    c.expect("EHLO client.test", "250").await;
    for seq in sequences {
        c.expect("MAIL FROM:<a@sender.test>", "250").await;
        c.expect("RCPT TO:<b@rcpt.test>", "250").await;
        c.expect("DATA", "354").await;
        let mut data = b"Subject: legit\r\n\r\nbefore".to_vec();
        data.extend_from_slice(seq);
        data.extend_from_slice(
            b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@rcpt.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n.\r\n",
        );
        c.send(&data).await;
        let r = c.reply().await;
        assert!(r.starts_with("250"), "{seq:?}: {r}");
    }
    c.expect("QUIT", "221").await;
    let got = up.wait_for(sequences.len()).await;
    assert_eq!(got.len(), sequences.len(), "exactly one message per DATA");
    for (g, seq) in got.iter().zip(sequences) {
        assert_eq!(g.rcpts, ["b@rcpt.test"], "{seq:?}");
        assert!(!g.wire.starts_with(b".\r\n"));
        assert!(
            !g.wire.windows(5).any(|w| w == b"\r\n.\r\n"),
            "{seq:?}: a lone dot line reached the upstream: {:?}",
            String::from_utf8_lossy(&g.wire)
        );
        assert!(
            g.wire.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'),
            "{seq:?}: bare LF reached the upstream"
        );
        let content = String::from_utf8_lossy(&g.content()).into_owned();
        assert!(
            content.contains("smuggled"),
            "the smuggled part stays inside the message"
        );
    }
    let raw = String::from_utf8_lossy(&up.all_bytes()).into_owned();
    assert_eq!(
        raw.matches("\r\nDATA\r\n").count() + usize::from(raw.starts_with("DATA\r\n")),
        sequences.len() * 2,
        "each message carries its own DATA line once as a command and once as content"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_inbound_and_to_the_upstream_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, server_tls) = make_certs(dir.path());
    let up = Upstream::start(Script {
        tls: Some(server_tls),
        auth: Some(("relay".into(), "s3cret".into())),
        ..Script::default()
    })
    .await;
    let extra = format!(
        "upstream = \"smtp+starttls://127.0.0.1:{}\"\nupstream_ca = {:?}\n[smtp.tls]\ncert = {:?}\nkey = {:?}\n[smtp.upstream_auth]\nuser = \"relay\"\npassword = \"s3cret\"\n",
        up.addr.port(),
        ca,
        cert,
        key
    );
    let (d, port) = start(&extra).await;
    let ca_pem = std::fs::read(&ca).unwrap();
    let tls = TlsParameters::builder("127.0.0.1".into())
        .add_root_certificate(Certificate::from_pem(&ca_pem).unwrap())
        .build_rustls()
        .unwrap();
    let m = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(Tls::Required(tls))
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let msg = b"Subject: over tls\r\n\r\nsecret stuff";
    m.send_raw(&envelope("a@sender.test", &["b@rcpt.test"]), msg)
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", d.log()));
    let got = up.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "relayed over STARTTLS");
    assert_eq!(got[0].auth_user.as_deref(), Some("relay"));
    assert_eq!(got[0].content(), [&msg[..], b"\r\n"].concat());
    // Plain text clients see STARTTLS offered.
    let mut c = Wire::connect(port).await;
    let ehlo = c.expect("EHLO client.test", "250").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_session_in_progress() {
    let up = Upstream::start(Script::default()).await;
    let (mut d, port) = start(&format!("upstream = \"{}\"\n", up.url())).await;
    let mut c = Wire::connect(port).await;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test>", "250").await;
    c.expect("RCPT TO:<b@rcpt.test>", "250").await;
    c.expect("DATA", "354").await;
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n").await;
    let stopper = tokio::task::spawn_blocking(move || {
        let code = d.terminate(Duration::from_secs(20));
        (code, d)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(b"second half\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(
        r.starts_with("250"),
        "the message in flight is finished: {r}"
    );
    let r = c.reply().await;
    assert!(r.starts_with("421 4.3.2") || r.is_empty(), "{r}");
    let (code, d) = stopper.await.unwrap();
    assert_eq!(code, Some(0), "log:\n{}", d.log());
    let got = up.wait_for(1).await;
    assert_eq!(
        got[0].content(),
        b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_pause_via_the_admin_api() {
    use http_body_util::BodyExt;
    let up = Upstream::start(Script::default()).await;
    let admin = free_port();
    let port = free_port();
    let config = format!(
        "[smtp]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
        up.url()
    );
    let token = "test-token";
    let _d = tokio::task::spawn_blocking(move || {
        Daemon::start_with_env(&config, &[port, admin], &[("SENDGUARD_ADMIN_TOKEN", token)])
    })
    .await
    .unwrap();
    let stream = TcpStream::connect(("127.0.0.1", admin)).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::put("/v1/pauses/campaign/spring")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"reason": "wrong template"}"#,
        )))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let e = mailer(port)
        .send_raw(
            &envelope("a@sender.test", &["b@rcpt.test"]),
            b"X-Campaign-ID: spring\r\nSubject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("451") && e.contains("4.7.1") && e.contains("paused"),
        "{e}"
    );
    assert!(up.received().is_empty());
}
