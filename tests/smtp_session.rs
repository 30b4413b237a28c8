//! The SMTP dialogue in memory: a session over `tokio::io::duplex`, an in-process guard, and
//! the recording stand-in upstream (or a maildir).

#[path = "common/smtp_upstream.rs"]
mod smtp_upstream;

use sendguard::smtp::{SmtpConfig, SmtpService};
use sendguard::{Guard, GuardConfig, Scope};
use smtp_upstream::{Script, Upstream};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

struct Client {
    s: DuplexStream,
    buf: Vec<u8>,
}

impl Client {
    /// Reads one complete reply (all its lines).
    async fn reply(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(end) = reply_end(&self.buf) {
                let r: Vec<u8> = self.buf.drain(..end).collect();
                return String::from_utf8_lossy(&r).into_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.s.read(&mut chunk))
                .await
                .expect("reply within 20s")
                .expect("read");
            if n == 0 {
                return String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Sends a command and asserts the reply starts with `expect`.
    async fn expect(&mut self, line: &str, expect: &str) -> String {
        let r = self.cmd(line).await;
        assert!(
            r.starts_with(expect),
            "{line:?} -> {r:?}, expected {expect}"
        );
        r
    }

    /// `MAIL FROM:<a@sender.test>` and `RCPT TO:<b@rcpt.test>`, both accepted with a 250.
    async fn envelope(&mut self) {
        self.expect("MAIL FROM:<a@sender.test>", "250").await;
        self.expect("RCPT TO:<b@rcpt.test>", "250").await;
    }

    /// `EHLO client.test`, accepted, then [`Client::envelope`].
    async fn ehlo_and_envelope(&mut self) {
        self.expect("EHLO client.test", "250").await;
        self.envelope().await;
    }

    /// Sends a whole message (already dot-stuffed wire form ending in CRLF.CRLF) after DATA.
    async fn data(&mut self, wire: &[u8]) -> String {
        self.expect("DATA", "354").await;
        self.send(wire).await;
        self.reply().await
    }
}

/// Where a complete reply ends in `buf`.
fn reply_end(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while let Some(p) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line = &buf[pos..pos + p + 1];
        pos += p + 1;
        if line.len() >= 4 && line[3] == b' ' || line.len() == 5 {
            return Some(pos);
        }
    }
    None
}

struct Setup {
    client: Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    guard: Guard,
    _dir: tempfile::TempDir,
}

async fn start_with(config: SmtpConfig, guard: Guard, dir: tempfile::TempDir) -> Setup {
    let service = SmtpService::new(config, guard.clone()).expect("service");
    let (a, b) = tokio::io::duplex(1 << 20);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        service
            .serve(b, Some("127.0.0.1:40000".parse().unwrap()), token)
            .await;
    });
    let mut client = Client {
        s: a,
        buf: Vec::new(),
    };
    let greeting = client.reply().await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    Setup {
        client,
        shutdown,
        task,
        guard,
        _dir: dir,
    }
}

fn config(upstream: &str) -> SmtpConfig {
    SmtpConfig {
        upstream: upstream.to_string(),
        hostname: Some("proxy.test".into()),
        ..SmtpConfig::default()
    }
}

/// [`config`] delivering into the maildir `out` inside `dir`.
fn maildir_config(dir: &tempfile::TempDir) -> SmtpConfig {
    config(&format!("maildir:{}", dir.path().join("out").display()))
}

/// The one user of the AUTH tests, as the `users` key of an auth table.
const TENANT_A: &str = "users = [{user = \"tenant-a\", password = \"pw\"}]";

/// [`maildir_config`] with this auth table (TOML).
fn maildir_config_with_auth(dir: &tempfile::TempDir, auth: &str) -> SmtpConfig {
    SmtpConfig {
        auth: Some(toml::from_str(auth).unwrap()),
        ..maildir_config(dir)
    }
}

async fn start(upstream: &str) -> Setup {
    start_config(config(upstream)).await
}

/// Starts a stand-in upstream following `script` and a session in front of it.
async fn start_behind(script: Script) -> (Upstream, Setup) {
    let up = Upstream::start(script).await;
    let s = start(&up.url()).await;
    (up, s)
}

async fn start_config(c: SmtpConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::open(GuardConfig::in_memory()).expect("guard");
    start_with(c, guard, dir).await
}

/// An upstream script that refuses `nobody@rcpt.test` and accepts everyone else.
fn refusing_nobody() -> Script {
    Script {
        refuse_rcpt: vec!["nobody@rcpt.test".into()],
        ..Script::default()
    }
}

const MSG: &[u8] = b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hello\r\nX-Campaign-ID: spring\r\n\r\nHi there.\r\n";

fn wire(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sendguard::smtp::codec::dot_stuff(msg, &mut out);
    out
}

#[tokio::test]
async fn dialogue_basics() {
    let (_up, mut s) = start_behind(Script::default()).await;
    let c = &mut s.client;
    c.expect("MAIL FROM:<a@sender.test>", "503 5.5.1").await;
    let ehlo = c.expect("EHLO client.test", "250-proxy.test").await;
    for kw in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(kw), "{ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    c.expect("RCPT TO:<b@rcpt.test>", "503 5.5.1").await;
    c.expect("DATA", "503 5.5.1").await;
    c.expect("VRFY b@rcpt.test", "252").await;
    c.expect("HELP", "214").await;
    c.expect("NOOP", "250").await;
    c.expect("EXPN list", "502").await;
    c.expect("BOGUS", "500 5.5.2").await;
    c.expect("STARTTLS", "502").await;
    c.expect("AUTH PLAIN AHUAcA==", "502").await;
    c.expect("MAIL FROM:<a@sender.test>", "250").await;
    c.expect("MAIL FROM:<a@sender.test>", "503 5.5.1").await;
    c.expect("DATA", "554 5.5.1").await;
    c.expect("RSET", "250").await;
    c.expect("QUIT", "221").await;
    s.task.await.unwrap();
}

#[tokio::test]
async fn relays_and_reports_the_upstream_answers() {
    let (up, mut s) = start_behind(refusing_nobody()).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test> BODY=8BITMIME", "250 2.1.0")
        .await;
    c.expect("RCPT TO:<b@rcpt.test>", "250 2.1.5").await;
    c.expect("RCPT TO:<nobody@rcpt.test>", "550 5.1.1 <nobody@rcpt.test>")
        .await;
    let r = c.data(&wire(MSG)).await;
    assert!(r.starts_with("250 2.0.0 queued"), "{r}");
    c.expect("QUIT", "221").await;
    let got = up.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content(), MSG);
    assert_eq!(got[0].rcpts, ["b@rcpt.test"]);
    assert_eq!(got[0].mail_from, "MAIL FROM:<a@sender.test> BODY=8BITMIME");
}

#[tokio::test]
async fn pipelined_transactions_get_replies_in_order() {
    let (up, mut s) = start_behind(refusing_nobody()).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.send(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@rcpt.test>\r\nRCPT TO:<nobody@rcpt.test>\r\nRCPT TO:<x@example.invalid>\r\nRCPT TO:<c@rcpt.test>\r\nDATA\r\n").await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(c.reply().await[..3].to_string());
    }
    assert_eq!(codes, ["250", "250", "550", "250", "250", "354"]);
    c.send(&wire(MSG)).await;
    assert!(c.reply().await.starts_with("250"));
    // A second transaction on the same upstream connection.
    c.send(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<d@rcpt.test>\r\nDATA\r\n")
        .await;
    for want in ["250", "250", "354"] {
        assert!(c.reply().await.starts_with(want));
    }
    c.send(&wire(MSG)).await;
    assert!(c.reply().await.starts_with("250"));
    c.expect("QUIT", "221").await;
    let got = up.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].rcpts,
        ["b@rcpt.test", "x@example.invalid", "c@rcpt.test"]
    );
    assert_eq!(
        *up.connections.lock().unwrap(),
        1,
        "the upstream connection is reused"
    );
}

#[tokio::test]
async fn suppressed_recipient_is_refused_and_not_relayed() {
    let (up, mut s) = start_behind(Script::default()).await;
    s.guard.suppress("gone@rcpt.test", "test").unwrap();
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test>", "250").await;
    let r = c.expect("RCPT TO:<Gone@rcpt.test>", "550 5.7.1").await;
    assert!(r.contains("suppressed"), "{r}");
    c.expect("RCPT TO:<b@rcpt.test>", "250").await;
    assert!(c.data(&wire(MSG)).await.starts_with("250"));
    c.expect("QUIT", "221").await;
    let got = up.wait_for(1).await;
    assert_eq!(got[0].rcpts, ["b@rcpt.test"]);
    assert!(!String::from_utf8_lossy(&up.all_bytes()).contains("Gone@"));
}

#[tokio::test]
async fn pauses_at_mail_and_at_end_of_data() {
    let (up, mut s) = start_behind(Script::default()).await;
    s.guard
        .pause(
            Scope::Sender("a@sender.test".into()),
            "bad list",
            "test",
            None,
        )
        .unwrap();
    s.guard
        .pause(
            Scope::Campaign("spring".into()),
            "typo in subject",
            "test",
            None,
        )
        .unwrap();
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    let r = c
        .expect(
            "MAIL FROM:<a@sender.test>",
            "451 4.7.1 sender a@sender.test paused: bad list",
        )
        .await;
    assert!(r.contains("paused"));
    c.expect("MAIL FROM:<other@sender.test>", "250").await;
    c.expect("RCPT TO:<b@rcpt.test>", "250").await;
    let r = c.data(&wire(MSG)).await;
    assert!(
        r.starts_with("451 4.7.1 campaign spring paused: typo in subject"),
        "{r}"
    );
    c.expect("NOOP", "250").await;
    c.expect("QUIT", "221").await;
    s.task.await.unwrap();
    assert!(up.received().is_empty());
    let raw = String::from_utf8_lossy(&up.all_bytes()).into_owned();
    assert!(
        raw.contains("RSET\r\n"),
        "upstream transaction reset: {raw}"
    );
    assert!(!raw.contains("DATA"), "{raw}");
}

#[tokio::test]
async fn kill_switch_between_check_and_relay() {
    // A pause that lands while the message is being received stops it at admit().
    let (up, mut s) = start_behind(Script::default()).await;
    let c = &mut s.client;
    c.ehlo_and_envelope().await;
    c.expect("DATA", "354").await;
    c.send(&wire(MSG)[..20]).await;
    s.guard
        .pause(Scope::Global, "stop everything", "test", None)
        .unwrap();
    c.send(&wire(MSG)[20..]).await;
    let r = c.reply().await;
    assert!(
        r.starts_with("451 4.7.1 global paused: stop everything"),
        "{r}"
    );
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn placeholder_leak_is_refused_with_its_token() {
    let (up, mut s) = start_behind(Script::default()).await;
    let c = &mut s.client;
    c.ehlo_and_envelope().await;
    let msg = b"From: a@sender.test\r\nSubject: Hello {{first_name}}\r\n\r\nHi.\r\n";
    let r = c.data(&wire(msg)).await;
    assert!(r.starts_with("554 5.6.0 "), "{r}");
    assert!(r.contains("placeholder {{first_name}} in subject"), "{r}");
    // The session goes on.
    c.envelope().await;
    assert!(c.data(&wire(MSG)).await.starts_with("250"));
    let got = up.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content(), MSG);
}

#[tokio::test]
async fn size_limits() {
    let up = Upstream::start(Script::default()).await;
    let mut c = config(&up.url());
    c.max_message_size = 100;
    let mut s = start_config(c).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test> SIZE=1000", "552 5.3.4")
        .await;
    c.envelope().await;
    let big = vec![b'x'; 300];
    let mut msg = b"Subject: big\r\n\r\n".to_vec();
    msg.extend_from_slice(&big);
    msg.extend_from_slice(b"\r\n");
    let r = c.data(&wire(&msg)).await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    c.expect("NOOP", "250").await;
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn recipient_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = maildir_config(&dir);
    c.max_recipients = 100;
    let mut s = start_config(c).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test>", "250").await;
    let mut batch = Vec::new();
    for i in 0..101 {
        batch.extend_from_slice(format!("RCPT TO:<r{i}@rcpt.test>\r\n").as_bytes());
    }
    c.send(&batch).await;
    for _ in 0..100 {
        assert!(c.reply().await.starts_with("250"));
    }
    assert!(c.reply().await.starts_with("452 4.5.3"));
}

#[tokio::test]
async fn bare_line_endings_can_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = maildir_config(&dir);
    c.bare_lf = sendguard::smtp::BareLineEnding::Reject;
    let mut s = start_config(c).await;
    let c = &mut s.client;
    c.ehlo_and_envelope().await;
    let r = c
        .data(b"Subject: x\r\n\r\nline\n.\nMAIL FROM:<evil@x.test>\r\n.\r\n")
        .await;
    assert!(r.starts_with("550 5.5.2"), "{r}");
    c.expect("NOOP", "250").await;
}

#[tokio::test]
async fn maildir_gets_the_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut s = start_config(config(&format!("maildir:{}", out.display()))).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test> SMTPUTF8", "250").await;
    c.expect("RCPT TO:<b@rcpt.test>", "250").await;
    let msg = "Subject: Grüße\r\n\r\n.leading dot\r\n..two\r\n.\r\nÄÖÜ ✓\r\n".as_bytes();
    let r = c.data(&wire(msg)).await;
    assert!(r.starts_with("250 2.0.0 queued as "), "{r}");
    let files: Vec<_> = std::fs::read_dir(out.join("new")).unwrap().collect();
    assert_eq!(files.len(), 1);
    let got = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(got, msg);
}

/// Starts a stand-in upstream following `script` and a session in front of it, and sends `MSG`
/// in the default envelope: the upstream, the session and the reply to the message data.
async fn relay_msg_through(script: Script) -> (Upstream, Setup, String) {
    let (up, mut s) = start_behind(script).await;
    s.client.ehlo_and_envelope().await;
    let reply = s.client.data(&wire(MSG)).await;
    (up, s, reply)
}

#[tokio::test]
async fn upstream_failures_never_yield_250() {
    // Unreachable.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = start(&format!("smtp://127.0.0.1:{port}")).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test>", "451 4.4.1").await;

    // 4xx at DATA.
    let (_up, _s, r) = relay_msg_through(Script {
        data_command_reply: Some("451 4.3.0 queue full".into()),
        ..Script::default()
    })
    .await;
    assert!(r.starts_with("451 4.3.0 queue full"), "{r}");

    // Closing mid-DATA.
    let (_up, mut s, r) = relay_msg_through(Script {
        close_mid_data: true,
        ..Script::default()
    })
    .await;
    assert!(r.starts_with("451 4.4.2"), "{r}");
    // The next transaction opens a new upstream connection.
    s.client.expect("MAIL FROM:<a@sender.test>", "250").await;

    // 5xx after the data is relayed as is.
    let (_up, _s, r) = relay_msg_through(Script {
        final_reply: Some("554 5.7.1 spam".into()),
        ..Script::default()
    })
    .await;
    assert!(r.starts_with("554 5.7.1 spam"), "{r}");

    // Slow.
    let up = Upstream::start(Script {
        delay: Duration::from_millis(600),
        ..Script::default()
    })
    .await;
    let mut cfg = config(&up.url());
    cfg.upstream_connect_timeout = Duration::from_millis(300);
    let mut s = start_config(cfg).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test>", "451 4.4.1").await;

    // Upstream 421 on a command.
    let (_up, mut s, r) = relay_msg_through(Script {
        refuse_rcpt: vec![],
        data_command_reply: Some("421 4.3.2 going down".into()),
        ..Script::default()
    })
    .await;
    assert!(r.starts_with("451 4.4.2"), "{r}");
    s.client.expect("NOOP", "250").await;
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_and_drains_busy_ones() {
    let up = Upstream::start(Script::default()).await;
    let mut idle = start(&up.url()).await;
    idle.client.expect("EHLO client.test", "250").await;
    idle.shutdown.cancel();
    let r = idle.client.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    idle.task.await.unwrap();

    let mut busy = start(&up.url()).await;
    let c = &mut busy.client;
    c.ehlo_and_envelope().await;
    c.expect("DATA", "354").await;
    let w = wire(MSG);
    c.send(&w[..10]).await;
    busy.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&w[10..]).await;
    let r = c.reply().await;
    assert!(r.starts_with("250"), "{r}");
    let r = c.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    busy.task.await.unwrap();
    assert_eq!(up.wait_for(1).await.len(), 1);
}

#[tokio::test]
async fn auth_plain_and_login() {
    let dir = tempfile::tempdir().unwrap();
    let auth = format!("required = true\nallow_plaintext = true\n{TENANT_A}");
    let mut s = start_config(maildir_config_with_auth(&dir, &auth)).await;
    let c = &mut s.client;
    let ehlo = c.expect("EHLO client.test", "250").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    c.expect("MAIL FROM:<a@sender.test>", "530 5.7.0").await;
    c.expect("AUTH PLAIN AHRlbmFudC1hAHdyb25n", "535 5.7.8")
        .await;
    c.expect("AUTH PLAIN AHRlbmFudC1hAHB3", "235 2.7.0").await;
    c.expect("AUTH PLAIN AHRlbmFudC1hAHB3", "503").await;
    c.expect("MAIL FROM:<a@sender.test>", "250").await;
    c.expect("QUIT", "221").await;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = maildir_config_with_auth(&dir, &format!("required = true\n{TENANT_A}"));
    let mut s = start_config(cfg.clone()).await;
    let c = &mut s.client;
    let ehlo = c.expect("EHLO client.test", "250").await;
    assert!(
        !ehlo.contains("AUTH"),
        "no AUTH offered without TLS: {ehlo}"
    );
    c.expect("AUTH PLAIN AHRlbmFudC1hAHB3", "538 5.7.11").await;

    cfg.auth.as_mut().unwrap().allow_plaintext = true;
    let mut s = start_config(cfg).await;
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    c.expect("dGVuYW50LWE=", "334 UGFzc3dvcmQ6").await;
    c.expect("cHc=", "235").await;
}

#[tokio::test]
async fn tenant_pause_applies_to_the_authenticated_user() {
    let dir = tempfile::tempdir().unwrap();
    let auth = format!("allow_plaintext = true\n{TENANT_A}");
    let mut s = start_config(maildir_config_with_auth(&dir, &auth)).await;
    s.guard
        .pause(Scope::Tenant("tenant-a".into()), "billing", "test", None)
        .unwrap();
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<a@sender.test>", "250").await;
    c.expect("RSET", "250").await;
    c.expect("AUTH PLAIN AHRlbmFudC1hAHB3", "235").await;
    c.expect(
        "MAIL FROM:<a@sender.test>",
        "451 4.7.1 tenant tenant-a paused: billing",
    )
    .await;
}

#[tokio::test]
async fn long_lines_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_config(config(&format!(
        "maildir:{}",
        dir.path().join("o").display()
    )))
    .await;
    let c = &mut s.client;
    let mut long = vec![b'A'; 1 << 20];
    long.extend_from_slice(b"\r\n");
    c.send(&long).await;
    assert!(c.reply().await.starts_with("500 5.5.2"));
    c.send(b"\x00\xff\xfe garbage\r\n").await;
    assert!(c.reply().await.starts_with("50"));
    c.expect("EHLO client.test", "250").await;
    let mut batch = Vec::new();
    for _ in 0..25 {
        batch.extend_from_slice(b"BOGUS\r\n");
    }
    c.send(&batch).await;
    let mut last = String::new();
    for _ in 0..25 {
        last = c.reply().await;
        if last.starts_with("421") || last.is_empty() {
            break;
        }
    }
    assert!(last.starts_with("421 4.7.0"), "{last}");
}

async fn start_with_policy(policy: &str, upstream: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("default.toml"), policy).unwrap();
    let guard = Guard::open(GuardConfig::new(&policies, dir.path().join("state"))).expect("guard");
    start_with(config(upstream), guard, dir).await
}

#[tokio::test]
async fn placeholder_actions_choose_the_reply() {
    let leak = b"Subject: Hi %%FirstName%%\r\n\r\nHello\r\n";
    let up = Upstream::start(Script::default()).await;
    let mut s = start_with_policy("[placeholder]\naction = \"tempfail\"\n", &up.url()).await;
    let c = &mut s.client;
    c.ehlo_and_envelope().await;
    let r = c.data(&wire(leak)).await;
    assert!(
        r.starts_with("451 4.6.0 message contains unrendered placeholder %%FirstName%%"),
        "{r}"
    );

    let mut s = start_with_policy("[placeholder]\naction = \"quarantine\"\n", &up.url()).await;
    let c = &mut s.client;
    c.ehlo_and_envelope().await;
    assert!(c.data(&wire(leak)).await.starts_with("554 5.6.0"));

    // Shadow mode: the finding is logged, the message passes.
    let mut s = start_with_policy("[placeholder]\naction = \"log\"\n", &up.url()).await;
    let c = &mut s.client;
    c.ehlo_and_envelope().await;
    assert!(c.data(&wire(leak)).await.starts_with("250"));
    assert_eq!(up.wait_for(1).await[0].content(), leak);
}

#[tokio::test]
async fn idle_upstream_connections_serve_the_next_session() {
    let up = Upstream::start(Script::default()).await;
    let guard = Guard::open(GuardConfig::in_memory()).expect("guard");
    let service = SmtpService::new(config(&up.url()), guard).expect("service");
    for round in 0..3 {
        let (a, b) = tokio::io::duplex(1 << 16);
        let svc = service.clone();
        let task = tokio::spawn(async move {
            svc.serve(b, None, CancellationToken::new()).await;
        });
        let mut c = Client {
            s: a,
            buf: Vec::new(),
        };
        assert!(c.reply().await.starts_with("220"));
        c.ehlo_and_envelope().await;
        if round == 1 {
            // Abandon the transaction: the upstream's side is reset before reuse.
            c.expect("QUIT", "221").await;
        } else {
            assert!(c.data(&wire(MSG)).await.starts_with("250"));
            c.expect("QUIT", "221").await;
        }
        task.await.unwrap();
    }
    assert_eq!(up.wait_for(2).await.len(), 2);
    assert_eq!(*up.connections.lock().unwrap(), 1);
    let raw = String::from_utf8_lossy(&up.all_bytes()).into_owned();
    assert_eq!(raw.matches("RSET\r\n").count(), 1, "{raw}");
}

#[tokio::test]
async fn server_caps_connections_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = maildir_config(&dir);
    cfg.max_connections = 1;
    let guard = Guard::open(GuardConfig::in_memory()).expect("guard");
    let service = SmtpService::new(cfg, guard).expect("service");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(sendguard::smtp::run(listener, service, shutdown.clone()));

    let read_reply = |mut s: tokio::net::TcpStream| async move {
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        (s, String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (first, greeting) = read_reply(first).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (_second, refused) = read_reply(second).await;
    assert!(refused.starts_with("421 4.3.2"), "{refused}");

    shutdown.cancel();
    let (_first, bye) = read_reply(first).await;
    assert!(bye.starts_with("421 4.3.2"), "{bye}");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server drains")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn resumed_campaign_over_its_ramp_is_rate_limited() {
    let (_up, mut s) = start_behind(Script::default()).await;
    let scope = Scope::Campaign("spring".into());
    s.guard
        .pause(scope.clone(), "fixing", "test", None)
        .unwrap();
    s.guard
        .resume(&scope, "test", Some("1/h..1/h/1h".parse().unwrap()))
        .unwrap();
    let c = &mut s.client;
    c.expect("EHLO client.test", "250").await;
    let mut replies = Vec::new();
    for _ in 0..3 {
        c.envelope().await;
        replies.push(c.data(&wire(MSG)).await);
    }
    let limited: Vec<_> = replies
        .iter()
        .filter(|r| r.starts_with("451 4.7.0"))
        .collect();
    assert!(!limited.is_empty(), "{replies:?}");
    assert!(
        limited[0].contains("campaign spring rate limited"),
        "{replies:?}"
    );
}

#[tokio::test]
async fn optional_trace_header_leads_the_relayed_message() {
    let up = Upstream::start(Script::default()).await;
    let mut cfg = config(&up.url());
    cfg.trace_header = true;
    let mut s = start_config(cfg).await;
    let c = &mut s.client;
    c.ehlo_and_envelope().await;
    let msg = b".starts with a dot\r\nSubject: x\r\n\r\nx\r\n";
    assert!(c.data(&wire(msg)).await.starts_with("250"));
    let got = up.wait_for(1).await;
    let content = got[0].content();
    assert!(
        content.starts_with(b"X-Sendguard: "),
        "{:?}",
        String::from_utf8_lossy(&content)
    );
    let header_end = content.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(&content[header_end..], msg);
}
