//! The admin API against the real daemon: authentication, every endpoint, errors, TTL expiry,
//! durability across a crash, and bulk import.

mod admin_common;
mod common;

use admin_common::{start_daemon, Api, TOKEN};
use hyper::{Method, StatusCode};
use std::time::{Duration, Instant};

/// Every route and method with a request that succeeds (in this order) given the right token.
fn successful_calls() -> Vec<(Method, &'static str, Option<&'static str>)> {
    vec![
        (Method::GET, "/metrics", None),
        (Method::GET, "/v1/status", None),
        (
            Method::PUT,
            "/v1/pauses/global",
            Some(r#"{"reason": "drill"}"#),
        ),
        (Method::GET, "/v1/pauses", None),
        (Method::DELETE, "/v1/pauses/global", None),
        (Method::PUT, "/v1/pauses/campaign/spring", None),
        (Method::DELETE, "/v1/pauses/campaign/spring", Some("{}")),
        (Method::GET, "/v1/audit?limit=5", None),
        (Method::POST, "/v1/suppressions", Some("bulk@example.org\n")),
        (Method::PUT, "/v1/suppressions/bob@example.org", None),
        (Method::GET, "/v1/suppressions/bob@example.org", None),
        (Method::DELETE, "/v1/suppressions/bob@example.org", None),
        (Method::POST, "/v1/reload", None),
    ]
}

/// The incident-workflow routes, each with a request and its answer given the right token, in
/// this order; `{id}` is the incident opened by the second call (a quarantine id that does not
/// exist for the quarantine routes).
fn workflow_calls() -> Vec<(Method, &'static str, Option<&'static str>, StatusCode)> {
    vec![
        (Method::GET, "/v1/incidents", None, StatusCode::OK),
        (
            Method::POST,
            "/v1/incidents",
            Some(r#"{"campaign": "drill", "reason": "drill"}"#),
            StatusCode::OK,
        ),
        (Method::GET, "/v1/incidents/{id}", None, StatusCode::OK),
        (
            Method::GET,
            "/v1/incidents/{id}/report",
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/incidents/{id}/audience",
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/incidents/{id}/notes",
            Some(r#"{"text": "drill"}"#),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/incidents/{id}/close",
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/events",
            Some(r#"{"type": "delivered", "recipient": "a@example.org"}"#),
            StatusCode::OK,
        ),
        (Method::GET, "/v1/monitor", None, StatusCode::OK),
        (Method::GET, "/v1/quarantine", None, StatusCode::OK),
        (
            Method::GET,
            "/v1/quarantine/{id}",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/quarantine/{id}/raw",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/quarantine/{id}/release",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/v1/quarantine/{id}",
            None,
            StatusCode::NOT_FOUND,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_endpoints_need_the_token() {
    let (d, port) = start_daemon("");
    let api = Api::new(port);
    let mut incident = String::new();
    for (method, template, body, want) in workflow_calls() {
        let id = if template.starts_with("/v1/quarantine") {
            "q-none"
        } else {
            incident.as_str()
        };
        let path = template.replace("{id}", id);
        let b = body.map(|b| b.as_bytes().to_vec());
        for token in [None, Some("tt")] {
            let a = api.send(method.clone(), &path, token, &[], b.clone()).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
        let right = api.send(method.clone(), &path, Some(TOKEN), &[], b).await;
        assert_eq!(
            right.status,
            want,
            "{method} {path}: {}\n{}",
            right.text(),
            d.log()
        );
        if method == Method::POST && template == "/v1/incidents" {
            incident = right.json()["id"].as_str().unwrap().to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_the_token_but_healthz() {
    let (d, port) = start_daemon("");
    let api = Api::new(port);
    // Every route of the server is exercised below.
    for route in sendguard::admin::ROUTES {
        for m in route.methods {
            let covered = route.path == "/healthz"
                || successful_calls().iter().any(|(cm, p, _)| {
                    cm.as_str() == *m && admin_common_template_matches(route.path, p)
                })
                || workflow_calls().iter().any(|(cm, p, _, _)| {
                    cm.as_str() == *m && admin_common_template_matches(route.path, p)
                });
            assert!(covered, "{m} {} is not covered by this test", route.path);
        }
    }
    for (method, path, body) in successful_calls() {
        let b = body.map(|b| b.as_bytes().to_vec());
        let none = api.send(method.clone(), path, None, &[], b.clone()).await;
        assert_eq!(
            none.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without token"
        );
        assert_eq!(
            none.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"sendguard\""),
            "{method} {path}"
        );
        assert!(none.json()["error"].as_str().unwrap().contains("token"));
        let wrong = api
            .send(method.clone(), path, Some("tt"), &[], b.clone())
            .await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} wrong token"
        );
        assert_eq!(wrong.json()["error"], "wrong admin token");
        let right = api.send(method.clone(), path, Some(TOKEN), &[], b).await;
        assert_eq!(
            right.status,
            StatusCode::OK,
            "{method} {path}: {}\n{}",
            right.text(),
            d.log()
        );
    }
    // The scheme is case-insensitive; an empty token is wrong.
    let lower = api
        .send(
            Method::GET,
            "/v1/status",
            None,
            &[("authorization", "bearer t")],
            None,
        )
        .await;
    assert_eq!(lower.status, StatusCode::OK);
    let empty = api
        .send(
            Method::GET,
            "/v1/status",
            None,
            &[("authorization", "Bearer ")],
            None,
        )
        .await;
    assert_eq!(empty.status, StatusCode::UNAUTHORIZED);
    let h = api.send(Method::GET, "/healthz", None, &[], None).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json()["status"], "ok");
}

fn admin_common_template_matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_list_status_audit_resume() {
    let (_d, port) = start_daemon("");
    let api = Api::new(port);
    let p = api
        .send(
            Method::PUT,
            "/v1/pauses/sender/%40News.Example.com",
            Some(TOKEN),
            &[("x-sendguard-actor", "alice")],
            Some(br#"{"reason": "wrong template", "ttl": "2h"}"#.to_vec()),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    let pause = p.json();
    assert_eq!(pause["scope"], "sender");
    assert_eq!(pause["id"], "@news.example.com");
    assert_eq!(pause["reason"], "wrong template");
    assert_eq!(pause["actor"], "alice via admin");
    let created = humantime::parse_rfc3339(pause["created_at"].as_str().unwrap()).unwrap();
    let expires = humantime::parse_rfc3339(pause["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.duration_since(created).unwrap();
    assert!(
        ttl >= Duration::from_secs(7199) && ttl <= Duration::from_secs(7201),
        "{ttl:?}"
    );

    let list = api.get("/v1/pauses").await.json();
    assert_eq!(list["pauses"].as_array().unwrap().len(), 1);
    assert_eq!(list["pauses"][0]["id"], "@news.example.com");

    let status = api.get("/v1/status").await.json();
    assert_eq!(status["pauses"][0]["scope"], "sender");
    assert!(status["policy_generation"].as_u64().unwrap() >= 1);
    assert!(status["reload_error"].is_null());

    let ramp = r#"{"ramp": {"from": "10/s", "to": "500/s", "over": "30m"}}"#;
    let r = api
        .resume("/v1/pauses/sender/@news.example.com", ramp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["resumed"]["reason"], "wrong template");
    assert_eq!(
        api.get("/v1/pauses").await.json()["pauses"],
        serde_json::json!([])
    );

    let audit = api.get("/v1/audit?limit=10").await.json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(&actions[..2], &["resume", "pause"], "{audit}");
    assert_eq!(audit["entries"][1]["actor"], "alice via admin");
    assert_eq!(audit["entries"][1]["id"], "@news.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_the_right_status() {
    let (_d, port) = start_daemon("");
    let api = Api::new(port);
    let cases: Vec<(Method, &str, Option<String>, StatusCode, &str)> = vec![
        (
            Method::GET,
            "/v1/nope",
            None,
            StatusCode::NOT_FOUND,
            "no endpoint /v1/nope",
        ),
        (
            Method::PUT,
            "/v1/pauses/bogus/x",
            None,
            StatusCode::NOT_FOUND,
            "unknown scope \"bogus\"",
        ),
        (
            Method::PUT,
            "/v1/pauses/global/x",
            None,
            StatusCode::NOT_FOUND,
            "unknown scope",
        ),
        (
            Method::PUT,
            "/v1/pauses/sender/nobody",
            None,
            StatusCode::BAD_REQUEST,
            "sender",
        ),
        (
            Method::POST,
            "/v1/pauses",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET",
        ),
        (
            Method::GET,
            "/v1/pauses/global",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "use PUT, DELETE",
        ),
        (
            Method::PUT,
            "/v1/pauses/campaign/c1",
            Some(r#"{"reasn": "typo"}"#.into()),
            StatusCode::BAD_REQUEST,
            "unknown field `reasn`",
        ),
        (
            Method::PUT,
            "/v1/pauses/campaign/c1",
            Some("{not json".into()),
            StatusCode::BAD_REQUEST,
            "malformed pause body",
        ),
        (
            Method::PUT,
            "/v1/pauses/campaign/c1",
            Some(r#"{"ttl": "soon"}"#.into()),
            StatusCode::BAD_REQUEST,
            "ttl \"soon\"",
        ),
        (
            Method::PUT,
            "/v1/pauses/campaign/c1",
            Some(format!(r#"{{"reason": "{}"}}"#, "x".repeat(70_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 65536 bytes",
        ),
        (
            Method::DELETE,
            "/v1/pauses/campaign/never",
            None,
            StatusCode::NOT_FOUND,
            "campaign never is not paused",
        ),
        (
            Method::DELETE,
            "/v1/pauses/campaign/never",
            Some(r#"{"ramp": {"from": "10/s", "to": "fast", "over": "30m"}}"#.into()),
            StatusCode::BAD_REQUEST,
            "ramp",
        ),
        (
            Method::DELETE,
            "/v1/pauses/campaign/never",
            Some(r#"{"ramp": "10/s..500/s/30m"}"#.into()),
            StatusCode::BAD_REQUEST,
            "malformed resume body",
        ),
        (
            Method::GET,
            "/v1/suppressions/alice@example.org",
            None,
            StatusCode::NOT_FOUND,
            "alice@example.org is not suppressed",
        ),
        (
            Method::GET,
            "/v1/suppressions/nobody",
            None,
            StatusCode::BAD_REQUEST,
            "not an address",
        ),
        (
            Method::PUT,
            "/v1/suppressions/nobody",
            None,
            StatusCode::BAD_REQUEST,
            "nobody",
        ),
        (
            Method::DELETE,
            "/v1/suppressions/carol@example.org",
            None,
            StatusCode::NOT_FOUND,
            "not suppressed",
        ),
        (
            Method::GET,
            "/v1/audit?limit=zero",
            None,
            StatusCode::BAD_REQUEST,
            "limit \"zero\"",
        ),
        (
            Method::GET,
            "/v1/status?verbose=1",
            None,
            StatusCode::BAD_REQUEST,
            "no query parameters",
        ),
        (
            Method::GET,
            "/v1/suppressions/%zz",
            None,
            StatusCode::BAD_REQUEST,
            "percent-encoding",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let a = api
            .send(
                method.clone(),
                path,
                Some(TOKEN),
                &[],
                body.map(String::into_bytes),
            )
            .await;
        assert_eq!(a.status, status, "{method} {path}: {}", a.text());
        assert_eq!(
            a.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path}"
        );
        let err = a.json()["error"].as_str().unwrap().to_string();
        assert!(
            err.contains(needle),
            "{method} {path}: {err:?} lacks {needle:?}"
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(a.headers.get("allow").is_some());
        }
    }
    // A bad actor header is refused, not recorded.
    let a = api
        .send(
            Method::PUT,
            "/v1/pauses/campaign/c2",
            Some(TOKEN),
            &[("x-sendguard-actor", &"y".repeat(200))],
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Nothing above paused anything.
    assert_eq!(
        api.get("/v1/pauses").await.json()["pauses"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_with_ttl_expires_and_is_audited() {
    let (_d, port) = start_daemon("");
    let api = Api::new(port);
    let p = api
        .call(
            Method::PUT,
            "/v1/pauses/campaign/flash",
            Some(r#"{"reason": "short", "ttl": "2s"}"#),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = api.get("/v1/status").await.json();
        if s["pauses"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "pause did not expire: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = api.get("/v1/audit").await.json();
    let expire = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "expire")
        .unwrap_or_else(|| panic!("no expire entry: {audit}"));
    assert_eq!(expire["scope"], "campaign");
    assert_eq!(expire["id"], "flash");
    // Resuming an expired pause: not paused any more.
    let r = api
        .call(Method::DELETE, "/v1/pauses/campaign/flash", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn pause_survives_kill9_and_restart() {
    let (mut d, port) = start_daemon("");
    let api = Api::new(port);
    let p = api
        .call(
            Method::PUT,
            "/v1/pauses/tenant/acme",
            Some(r#"{"reason": "incident 42"}"#),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    // The answer came after the pause was durable: a crash right now keeps it.
    d.kill9();
    d.restart();
    let list = api.get("/v1/pauses").await.json();
    assert_eq!(list["pauses"][0]["scope"], "tenant", "{list}\n{}", d.log());
    assert_eq!(list["pauses"][0]["id"], "acme");
    assert_eq!(list["pauses"][0]["reason"], "incident 42");
    // A second restart, after the resume: it stays resumed.
    let r = api
        .call(Method::DELETE, "/v1/pauses/tenant/acme", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    d.restart();
    assert_eq!(
        api.get("/v1/pauses").await.json()["pauses"],
        serde_json::json!([])
    );
    let audit = api.get("/v1/audit").await.json();
    assert!(audit["entries"].as_array().unwrap().len() >= 2, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_of_100k_lines_then_check_one() {
    let (_d, port) = start_daemon("");
    let api = Api::new(port);
    let mut body = String::with_capacity(3_000_000);
    body.push_str("# exported from the ESP\n");
    for i in 0..100_000 {
        body.push_str(&format!("user{i}@bulk.example.net\n"));
    }
    body.push_str("not-an-address\n");
    let a = api
        .send(
            Method::POST,
            "/v1/suppressions",
            Some(TOKEN),
            &[("content-type", "text/plain")],
            Some(body.into_bytes()),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let r = a.json();
    assert_eq!(r["imported"], 100_000);
    assert_eq!(r["malformed"], 1);
    assert!(r["total_entries"].as_u64().unwrap() >= 100_000);
    let hit = api.get("/v1/suppressions/USER77777@bulk.example.net").await;
    assert_eq!(hit.status, StatusCode::OK, "{}", hit.text());
    assert_eq!(hit.json()["suppressed"], true);
    let miss = api
        .get("/v1/suppressions/user100000@bulk.example.net")
        .await;
    assert_eq!(miss.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_public() {
    let (_d, port) = start_daemon("metrics_public = true");
    let api = Api::new(port);
    let m = api.send(Method::GET, "/metrics", None, &[], None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.text().contains("sendguard_policy_generation"),
        "{}",
        m.text()
    );
    let s = api.send(Method::GET, "/v1/status", None, &[], None).await;
    assert_eq!(s.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    common::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        &policies,
    );
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[guard]\npolicies = {:?}\nstate_dir = {:?}\n\n[admin]\nlisten = \"0.0.0.0:{}\"\n",
            policies,
            dir.path().join("state"),
            common::free_port()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sendguard"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .env_remove("SENDGUARD_ADMIN_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started on a public address without a token");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("without a token"), "{err}");
    assert!(err.contains("SENDGUARD_ADMIN_TOKEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_names_the_actor_and_shutdown_is_clean() {
    let tokens = tempfile::tempdir().unwrap();
    let file = tokens.path().join("tokens");
    std::fs::write(&file, "# name token\ncarol c-secret\n").unwrap();
    let (mut d, port) = start_daemon(&format!("token_file = {file:?}"));
    let api = Api::new(port);
    let p = api
        .send(
            Method::PUT,
            "/v1/pauses/domain/gmail.com",
            Some("c-secret"),
            &[],
            None,
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    assert_eq!(p.json()["actor"], "carol");
    assert_eq!(p.json()["id"], "gmail.com");
    // The environment's token still works, under its own name.
    let r = api
        .call(Method::DELETE, "/v1/pauses/domain/gmail.com", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let audit = api.get("/v1/audit?limit=1").await.json();
    assert_eq!(audit["entries"][0]["actor"], "admin");
    // SIGTERM with a keep-alive connection open: the daemon still exits cleanly.
    assert_eq!(d.terminate(Duration::from_secs(15)), Some(0), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_without_a_token_is_open_and_warned_about() {
    let port = common::free_port();
    // An empty token is no token (and overrides one the test environment might have).
    let d = common::Daemon::start_with_env(
        &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
        &[port],
        &[("SENDGUARD_ADMIN_TOKEN", "")],
    );
    let api = Api::new(port);
    let s = api.send(Method::GET, "/v1/status", None, &[], None).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text());
    let p = api
        .send(
            Method::PUT,
            "/v1/pauses/campaign/c",
            None,
            &[("x-sendguard-actor", "dave")],
            None,
        )
        .await;
    assert_eq!(p.json()["actor"], "dave via admin");
    assert!(
        d.log().contains("the admin API has no token"),
        "{}",
        d.log()
    );
}
