//! The HTTP proxy in the real daemon, with recording stand-ins of the email services as its
//! upstreams: what passes arrives byte for byte, what is stopped gets the documented answer and
//! never reaches the service.

mod common;
#[path = "common/http_standin.rs"]
mod http_standin;

use bytes::Bytes;
use common::{free_port, Daemon};
use http_standin::{send, Answer, Reply, StandIn};
use std::net::SocketAddr;

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

const JSON_TYPE: (&str, &str) = ("content-type", "application/json");
const FORM_TYPE: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const SG_SEND: &str = "/v3/mail/send";
const MG_SEND: &str = "/v3/mg.shop.test/messages";

/// POSTs `body` with `headers` to `path` on the proxy route listening on `port`.
async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
    send(addr(port), "POST", path, headers, body).await
}

/// POSTs a JSON `body` to `path` on `port`.
async fn post_json(port: u16, path: &str, body: impl Into<Bytes>) -> Answer {
    post(port, path, &[JSON_TYPE], body).await
}

/// POSTs a JSON `body` to SendGrid's send path on `port`.
async fn post_sendgrid(port: u16, body: impl Into<Bytes>) -> Answer {
    post_json(port, SG_SEND, body).await
}

/// The text at a JSON pointer in the answer's body (empty when it is not there).
fn text_at(a: &Answer, pointer: &str) -> String {
    a.json()
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// `[http]` with one route per `(listen port, upstream, dialect, extra keys)`.
fn config(routes: &[(u16, String, &str, &str)]) -> String {
    let mut s = String::from("[http]\n");
    for (port, up, dialect, extra) in routes {
        s.push_str(&format!(
            "[[http.routes]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"{up}\"\ndialect = \"{dialect}\"\n{extra}\n"
        ));
    }
    s
}

/// `[http]` with `workers` worker threads and one SendGrid route from `port` to `upstream`.
fn sendgrid_config_with_workers(workers: usize, port: u16, upstream: &StandIn) -> String {
    config(&[(port, upstream.url(), "sendgrid", "")])
        .replace("[http]\n", &format!("[http]\nworkers = {workers}\n"))
}

/// Starts a stand-in for each dialect and the daemon with one route to each (with the `extra`
/// route keys); the stand-ins and the route ports come back in the order of `dialects`.
async fn start_routes<const N: usize>(
    dialects: [&str; N],
    extra: &str,
) -> ([StandIn; N], [u16; N], Daemon) {
    let mut standins = Vec::new();
    for dialect in dialects {
        standins.push(StandIn::start(dialect).await);
    }
    let ports = dialects.map(|_| free_port());
    let routes: Vec<_> = (0..N)
        .map(|i| (ports[i], standins[i].url(), dialects[i], extra))
        .collect();
    let d = Daemon::start(&config(&routes), &ports);
    let Ok(standins) = standins.try_into() else {
        unreachable!("one stand-in per dialect")
    };
    (standins, ports, d)
}

const SG_CLEAN: &str = r#"{"personalizations":[{"to":[{"email":"anna@customer.test","name":"Anna"}]}],"from":{"email":"news@shop.test","name":"Shop News"},"subject":"Your spring update","content":[{"type":"text/plain","value":"Hello Anna,\nnew arrivals."},{"type":"text/html","value":"<p>Hello Anna,</p>\n<p>new arrivals.</p>"}],"custom_args":{"campaign_id":"spring-2026"},"categories":["newsletter"]}"#;

const PM_CLEAN: &str = r#"{"From":"Shop <news@shop.test>","To":"anna@customer.test","Subject":"Your order","TextBody":"Hello Anna","HtmlBody":"<p>Hello Anna</p>","Tag":"orders","MessageStream":"outbound"}"#;

const MG_BOUNDARY: &str = "mgB0undary";

/// The content type of [`mailgun_multipart`] bodies.
fn multipart_type() -> String {
    format!("multipart/form-data; boundary={MG_BOUNDARY}")
}

fn mailgun_multipart(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        b.extend_from_slice(
            format!(
                "--{MG_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"
            )
            .as_bytes(),
        );
    }
    b.extend_from_slice(format!("--{MG_BOUNDARY}--\r\n").as_bytes());
    b
}

const RAW_MSG: &str = "From: Shop <news@shop.test>\r\nTo: anna@customer.test\r\nSubject: Your spring update\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Anna,\r\nnew arrivals.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_requests_arrive_byte_identical_in_every_dialect() {
    let ([sg, mg, pm, raw], ports, d) =
        start_routes(["sendgrid", "mailgun", "postmark", "raw"], "").await;

    let sg_headers = [JSON_TYPE, ("authorization", "Bearer SG.key")];
    let a = post(ports[0], SG_SEND, &sg_headers, SG_CLEAN).await;
    assert_eq!(a.status, 202, "{} {}", a.text(), d.log());
    assert_eq!(a.header("x-message-id").as_deref(), Some("standin-1"));
    let r = sg.wait_for(1).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].method, "POST");
    assert_eq!(r[0].path, "/v3/mail/send");
    assert_eq!(&r[0].body[..], SG_CLEAN.as_bytes());
    assert_eq!(r[0].headers["authorization"], "Bearer SG.key");
    assert_eq!(r[0].headers["host"], sg.addr.to_string());

    let body = mailgun_multipart(&[
        ("from", "Shop <news@shop.test>"),
        ("to", "anna@customer.test, Bob <bob@customer.test>"),
        ("subject", "Your spring update"),
        ("text", "Hello Anna"),
        ("o:tag", "spring-2026"),
    ]);
    let ct = multipart_type();
    let mg_headers = [
        ("content-type", &*ct),
        ("authorization", "Basic YXBpOmtleQ=="),
    ];
    let a = post(ports[1], MG_SEND, &mg_headers, body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["message"], "Queued. Thank you.");
    let r = mg.wait_for(1).await;
    assert_eq!(&r[0].body[..], &body[..]);
    assert_eq!(r[0].path, MG_SEND);
    assert_eq!(r[0].headers["content-type"], ct.as_str());

    let form = "from=news%40shop.test&to=anna%40customer.test&subject=Hi&text=Hello";
    let a = post(ports[1], MG_SEND, &[FORM_TYPE], form).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(&mg.wait_for(2).await[1].body[..], form.as_bytes());

    let pm_headers = [JSON_TYPE, ("x-postmark-server-token", "tok")];
    let a = post(ports[2], "/email", &pm_headers, PM_CLEAN).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = pm.wait_for(1).await;
    assert_eq!(&r[0].body[..], PM_CLEAN.as_bytes());
    assert_eq!(r[0].headers["x-postmark-server-token"], "tok");

    let raw_headers = [
        ("content-type", "message/rfc822"),
        ("x-sendguard-from", "news@shop.test"),
        ("x-sendguard-to", "anna@customer.test"),
        ("x-sendguard-campaign", "spring-2026"),
    ];
    let a = post(ports[3], "/v1/messages", &raw_headers, RAW_MSG).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = raw.wait_for(1).await;
    assert_eq!(&r[0].body[..], RAW_MSG.as_bytes());
    assert_eq!(r[0].headers["x-sendguard-to"], "anna@customer.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaks_missing_data_and_suppressed_recipients_never_reach_the_service() {
    let ([sg, pm, mg], ports, _d) = start_routes(["sendgrid", "postmark", "mailgun"], "").await;

    // A leak in the subject.
    let leak = SG_CLEAN.replace("Your spring update", "Hello {{first_name}}");
    let a = post_sendgrid(ports[0], leak).await;
    assert_eq!(a.status, 422, "{}", a.text());
    let msg = text_at(&a, "/errors/0/message");
    assert!(
        msg.contains("{{first_name}}") && msg.contains("subject"),
        "{msg}"
    );
    assert_eq!(
        a.header("x-sendguard-refusal").as_deref(),
        Some("placeholder")
    );

    // A merge tag with data for one personalization but not the other.
    let missing = r#"{"template_id":"d-1","personalizations":[
        {"to":[{"email":"anna@customer.test"}],"dynamic_template_data":{"first":"Anna"}},
        {"to":[{"email":"bob@customer.test"}],"dynamic_template_data":{}}],
        "from":{"email":"news@shop.test"},"subject":"Hi {{first}}",
        "content":[{"type":"text/html","value":"<p>Hi {{first}}</p>"}]}"#;
    let a = post_sendgrid(ports[0], missing).await;
    assert_eq!(a.status, 422, "{}", a.text());
    let msg = text_at(&a, "/errors/0/message");
    assert!(
        msg.contains("{{first}}") && msg.contains("bob@customer.test") && msg.contains("subject"),
        "{msg}"
    );

    // The same tags with data for everyone are rendered by the service: they pass.
    let complete = missing.replace(
        "\"dynamic_template_data\":{}",
        "\"dynamic_template_data\":{\"first\":\"Bob\"}",
    );
    let a = post_sendgrid(ports[0], complete.clone()).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let r = sg.wait_for(1).await;
    assert_eq!(r.len(), 1);
    assert_eq!(&r[0].body[..], complete.as_bytes());

    // A suppressed recipient (the shipped list suppresses @example.invalid).
    let supp = PM_CLEAN.replace(
        "\"To\":\"anna@customer.test\"",
        "\"To\":\"anna@customer.test, gone@example.invalid\"",
    );
    let a = post_json(ports[1], "/email", supp).await;
    assert_eq!(a.status, 422, "{}", a.text());
    assert_eq!(a.json()["ErrorCode"], 406);
    assert!(text_at(&a, "/Message").contains("gone@example.invalid"));

    // Mailgun's %recipient.x% without a value for one recipient.
    let body = mailgun_multipart(&[
        ("from", "news@shop.test"),
        ("to", "anna@customer.test, bob@customer.test"),
        ("subject", "Hi %recipient.first%"),
        ("text", "Hello"),
        (
            "recipient-variables",
            r#"{"anna@customer.test":{"first":"Anna"}}"#,
        ),
    ]);
    let a = post(
        ports[2],
        MG_SEND,
        &[("content-type", &multipart_type())],
        body,
    )
    .await;
    assert_eq!(a.status, 422, "{}", a.text());
    let m = text_at(&a, "/message");
    assert!(
        m.contains("%recipient.first%") && m.contains("bob@customer.test"),
        "{m}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(sg.requests().len(), 1);
    assert!(pm.requests().is_empty());
    assert!(mg.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_mode_forwards_exactly_the_remaining_recipients() {
    let strip = "suppressed = \"strip\"";
    let ([sg, mg, raw], ports, _d) = start_routes(["sendgrid", "mailgun", "raw"], strip).await;

    let body = r#"{"personalizations":[
        {"to":[{"email":"anna@customer.test"},{"email":"gone@example.invalid"}],"cc":[{"email":"x@example.invalid"}]},
        {"to":[{"email":"only@example.invalid"}]}],
        "from":{"email":"news@shop.test"},"subject":"Hi","content":[{"type":"text/plain","value":"Hello"}],
        "send_at":1800000000}"#;
    let a = post_sendgrid(ports[0], body).await;
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.header("x-sendguard-suppressed").as_deref(), Some("3"));
    let r = sg.wait_for(1).await;
    let got: serde_json::Value = serde_json::from_slice(&r[0].body).unwrap();
    assert_eq!(
        got["personalizations"],
        serde_json::json!([{"to": [{"email": "anna@customer.test"}]}])
    );
    assert_eq!(got["send_at"], 1800000000);
    assert_eq!(got["content"][0]["value"], "Hello");
    // Every other field as sent, in the order sent.
    assert_eq!(
        String::from_utf8_lossy(&r[0].body),
        r#"{"personalizations":[{"to":[{"email":"anna@customer.test"}]}],"from":{"email":"news@shop.test"},"subject":"Hi","content":[{"type":"text/plain","value":"Hello"}],"send_at":1800000000}"#
    );

    let form = "from=news%40shop.test&to=anna%40customer.test%2C+gone%40example.invalid&subject=Hi&text=Hello";
    let a = post(ports[1], MG_SEND, &[FORM_TYPE], form).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-sendguard-suppressed").as_deref(), Some("1"));
    let r = mg.wait_for(1).await;
    assert_eq!(
        String::from_utf8_lossy(&r[0].body),
        "from=news%40shop.test&to=anna%40customer.test&subject=Hi&text=Hello"
    );

    let envelope = [
        ("x-sendguard-from", "news@shop.test"),
        ("x-sendguard-to", "gone@example.invalid, anna@customer.test"),
    ];
    let a = post(ports[2], "/v1/messages", &envelope, RAW_MSG).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = raw.wait_for(1).await;
    assert_eq!(r[0].headers["x-sendguard-to"], "anna@customer.test");
    assert_eq!(&r[0].body[..], RAW_MSG.as_bytes());

    // Signed over its body: only refusal is possible.
    let signed = [
        envelope[0],
        envelope[1],
        ("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=00"),
    ];
    let a = post(ports[2], "/v1/messages", &signed, RAW_MSG).await;
    assert_eq!(a.status, 422, "{}", a.text());
    assert_eq!(raw.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400_in_the_dialects_shape() {
    let ([sg, mg, pm], ports, d) = start_routes(["sendgrid", "mailgun", "postmark"], "").await;
    for bad in ["{", "[]", "null", "{\"personalizations\":7}", "\u{0}\u{ff}"] {
        let a = post_sendgrid(ports[0], bad).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text());
        assert!(a.json()["errors"][0]["message"].is_string(), "{}", a.text());
    }
    let a = post_json(ports[1], "/v3/d.test/messages", "{}").await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(text_at(&a, "/message").contains("multipart"));
    let unclosed = "--zz\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nnever closed";
    let zz = [("content-type", "multipart/form-data; boundary=zz")];
    let a = post(ports[1], "/v3/d.test/messages", &zz, unclosed).await;
    assert_eq!(a.status, 400, "{}", a.text());
    let a = post_json(ports[2], "/email/batch", "{\"To\":1}").await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.json()["ErrorCode"], 402);
    // Still alive and judging.
    let a = post_sendgrid(ports[0], SG_CLEAN).await;
    assert_eq!(a.status, 202, "{} {}", a.text(), d.log());
    assert_eq!(sg.requests().len(), 1);
    assert!(mg.requests().is_empty() && pm.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_upstream_errors_are_relayed_unchanged() {
    let sg = StandIn::start("sendgrid").await;
    let dead = free_port();
    let ports = [free_port(), free_port()];
    let cfg = config(&[
        (ports[0], sg.url(), "sendgrid", ""),
        (ports[1], format!("http://127.0.0.1:{dead}"), "sendgrid", ""),
    ]);
    let _d = Daemon::start(&cfg, &ports);

    let a = post_sendgrid(ports[1], SG_CLEAN).await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(text_at(&a, "/errors/0/message").contains("upstream"));

    for (status, body) in [
        (
            400u16,
            r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#,
        ),
        (500, "internal error"),
        (
            401,
            r#"{"errors":[{"message":"The provided authorization grant is invalid."}]}"#,
        ),
    ] {
        sg.reply_with(Reply {
            status,
            headers: vec![
                ("x-upstream".into(), "yes".into()),
                ("content-type".into(), "text/plain".into()),
            ],
            body: Bytes::from(body),
        });
        let a = post_sendgrid(ports[0], SG_CLEAN).await;
        assert_eq!(a.status, status);
        assert_eq!(a.text(), body);
        assert_eq!(a.header("x-upstream").as_deref(), Some("yes"));
        assert_eq!(a.header("content-type").as_deref(), Some("text/plain"));
        assert!(a.header("x-sendguard-refusal").is_none());
    }
    // Paths that are not sends are forwarded unchecked.
    sg.reply_with(Reply::success("sendgrid"));
    let stats = "/v3/stats?start_date=2026-01-01";
    let a = send(addr(ports[0]), "GET", stats, &[], "").await;
    assert_eq!(a.status, 202);
    assert_eq!(sg.requests().last().unwrap().path, stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let sg = StandIn::start("sendgrid").await;
    let port = free_port();
    let cfg = format!("{}\nmax_body = 1024\n", config(&[]))
        + &config(&[(port, sg.url(), "sendgrid", "")]).replace("[http]\n", "");
    let _d = Daemon::start(&cfg, &[port]);
    let big = SG_CLEAN.replace("new arrivals.", &"x".repeat(4000));
    let a = post_sendgrid(port, big).await;
    assert_eq!(a.status, 413, "{}", a.text());
    assert!(sg.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_share_the_listener_the_policies_and_a_clean_shutdown() {
    let sg = StandIn::start("sendgrid").await;
    let port = free_port();
    let cfg = sendgrid_config_with_workers(3, port, &sg);
    let mut d = Daemon::start(&cfg, &[port]);
    let pid = d.pid().expect("daemon runs");
    let workers = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|comm| comm.starts_with("sendguard-http"))
                .count()
        })
        .unwrap_or(3);
    assert_eq!(workers, 3, "http worker threads; log:\n{}", d.log());

    // Concurrent connections, each with its own body: every one is forwarded exactly once.
    let mut sent: Vec<String> = (0..24)
        .map(|i| SG_CLEAN.replace("spring-2026", &format!("spring-{i}")))
        .collect();
    for a in post_sendgrid_at_once(port, sent.clone()).await {
        assert_eq!(a.status, 202, "{} {}", a.text(), d.log());
    }
    sent.sort();
    assert_eq!(bodies_received(&sg, 24).await, sent);

    // Every worker judges with the same policies: a leak is refused on every connection.
    let leak = SG_CLEAN.replace("Hello Anna,</p>", "Hello <FirstName>,</p>");
    for a in post_sendgrid_at_once(port, vec![leak; 6]).await {
        assert_eq!(a.status, 422, "{}", a.text());
    }
    assert_eq!(sg.wait_for(24).await.len(), 24);

    assert_eq!(
        d.terminate(std::time::Duration::from_secs(40)),
        Some(0),
        "{}",
        d.log()
    );
}

/// The bodies the stand-in has received once it has `n` requests, sorted.
async fn bodies_received(standin: &StandIn, n: usize) -> Vec<String> {
    let mut got: Vec<String> = standin
        .wait_for(n)
        .await
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    got.sort();
    got
}

/// POSTs each SendGrid body on a connection of its own, all at once; the answers.
async fn post_sendgrid_at_once(port: u16, bodies: Vec<String>) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        tasks.spawn(post_sendgrid(port, body));
    }
    let mut answers = Vec::new();
    while let Some(a) = tasks.join_next().await {
        answers.push(a.expect("client task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_ramped_resume_through_the_admin_api_hold_on_every_worker() {
    let sg = StandIn::start("sendgrid").await;
    let (port, admin) = (free_port(), free_port());
    let cfg = format!(
        "{}[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
        sendgrid_config_with_workers(2, port, &sg)
    );
    let token = "http-admin-token";
    let _d = tokio::task::spawn_blocking(move || {
        Daemon::start_with_env(&cfg, &[port, admin], &[("SENDGUARD_ADMIN_TOKEN", token)])
    })
    .await
    .expect("daemon");
    let bearer = format!("Bearer {token}");
    let auth = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let pause = "/v1/pauses/campaign/spring-2026";

    let reason = r#"{"reason":"wrong prices"}"#;
    let a = send(addr(admin), "PUT", pause, &auth, reason).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // Effective on every worker as soon as the call returned: 503, Retry-After, nothing sent.
    for a in post_sendgrid_at_once(port, vec![SG_CLEAN.to_string(); 6]).await {
        assert_eq!(a.status, 503, "{}", a.text());
        assert!(a.header("retry-after").is_some());
        assert_eq!(a.header("x-sendguard-refusal").as_deref(), Some("paused"));
    }
    assert!(sg.requests().is_empty());

    // Resumed on a ramp of one an hour: one request passes, the rest get 429 wherever they land.
    let ramp = r#"{"ramp":{"from":"1/h","to":"2/h","over":"1h"}}"#;
    let a = send(addr(admin), "DELETE", pause, &auth, ramp).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let answers = post_sendgrid_at_once(port, vec![SG_CLEAN.to_string(); 6]).await;
    let passed = answers.iter().filter(|a| a.status == 202).count();
    assert_eq!(
        passed,
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for a in answers.iter().filter(|a| a.status != 202) {
        assert_eq!(a.status, 429, "{}", a.text());
        assert!(a.header("retry-after").is_some());
    }
    assert_eq!(sg.wait_for(1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_judged_off_the_worker_alongside_small_ones() {
    let sg = StandIn::start("sendgrid").await;
    let port = free_port();
    // One worker: large and small requests share it.
    let cfg = sendgrid_config_with_workers(1, port, &sg);
    let d = Daemon::start(&cfg, &[port]);
    let rows = "<p>Spring arrivals, in every size and colour.</p>\n".repeat(12_000);
    let large = |i: usize| {
        SG_CLEAN
            .replace("spring-2026", &format!("large-{i}"))
            .replace("<p>new arrivals.</p>", &rows.replace('\n', "\\n"))
    };
    assert!(large(0).len() > 512 * 1024);
    let leak = large(9).replace("in every size", "in every <Size>");

    let mut bodies: Vec<String> = (0..4).map(large).collect();
    bodies.extend((0..8).map(|i| SG_CLEAN.replace("spring-2026", &format!("small-{i}"))));
    bodies.push(leak);
    let answers = post_sendgrid_at_once(port, bodies.clone()).await;
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 422).collect();
    assert_eq!(refused.len(), 1, "{}", d.log());
    assert!(
        refused[0].text().contains("<Size>"),
        "{}",
        refused[0].text()
    );
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), 12);

    // Every clean request arrived byte for byte, the leak did not.
    bodies.pop();
    bodies.sort();
    assert_eq!(bodies_received(&sg, 12).await, bodies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_send_requests_are_kept_as_the_message_the_service_would_send() {
    let ([sg, pm], ports, mut d) = start_routes(["sendgrid", "postmark"], "").await;
    std::fs::write(
        d.policies().join("zz-quarantine.toml"),
        "[placeholder]\naction = \"quarantine\"\n[quarantine]\nmax_messages = 2\n",
    )
    .unwrap();
    d.restart();

    let leak = SG_CLEAN.replace("Hello Anna,</p>", "Hello <FirstName>,</p>");
    let a = post_sendgrid(ports[0], leak).await;
    assert_eq!(a.status, 422, "{} {}", a.text(), d.log());
    let pm_leak = PM_CLEAN.replace("Hello Anna</p>", "Hello {{ first_name }}</p>");
    let a = post_json(ports[1], "/email", pm_leak).await;
    assert_eq!(a.status, 422, "{} {}", a.text(), d.log());
    // The quarantine is full now: the next one is refused temporarily, so the client keeps it.
    let leak = SG_CLEAN.replace("Hello Anna,</p>", "Dear <LastName>,</p>");
    let a = post_sendgrid(ports[0], leak).await;
    assert_eq!(a.status, 503, "{} {}", a.text(), d.log());
    assert!(a.header("retry-after").is_some());
    assert!(sg.requests().is_empty() && pm.requests().is_empty());

    let q = sendguard::quarantine::Quarantine::open(&d.state(), Default::default()).unwrap();
    let mut kept = q.list().unwrap();
    kept.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(kept.len(), 2, "{kept:?}");
    let (order, spring) = (&kept[0], &kept[1]);
    assert_eq!(spring.subject.as_deref(), Some("Your spring update"));
    assert_eq!(spring.recipients, ["anna@customer.test"]);
    assert_eq!(spring.sender, "news@shop.test");
    assert_eq!(spring.campaign.as_deref(), Some("spring-2026"));
    assert_eq!(spring.front_end, "http");
    assert_eq!(order.subject.as_deref(), Some("Your order"));

    let raw = q.raw(&spring.id).unwrap();
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("Your spring update"));
    assert_eq!(
        m.from().and_then(|f| f.first()).and_then(|a| a.address()),
        Some("news@shop.test")
    );
    assert!(
        m.to().is_none(),
        "recipients are in the record, not the headers"
    );
    // Line ends are CRLF in a message, as the service would send it.
    assert_eq!(
        m.body_text(0).as_deref(),
        Some("Hello Anna,\r\nnew arrivals.")
    );
    assert!(m
        .body_html(0)
        .is_some_and(|h| h.contains("<p>Hello <FirstName>,</p>")));
    let raw = q.raw(&order.id).unwrap();
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert!(m
        .body_html(0)
        .is_some_and(|h| h.contains("Hello {{ first_name }}")));
}
