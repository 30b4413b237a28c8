//! `sendguard incident …` and `sendguard quarantine …` against the admin handlers, served over
//! loopback HTTP the way the admin router mounts them.

#[path = "common/leaks.rs"]
mod leaks;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use leaks::quarantined_leak;
use sendguard::events::http::handle_events;
use sendguard::incident::{http as incident_http, IncidentDesk};
use sendguard::ledger::{Ledger, LedgerConfig, LedgerRecord, Outcome};
use sendguard::model::{Envelope, Message, Scope};
use sendguard::monitor::{Monitor, MonitorPolicy};
use sendguard::quarantine::{Quarantine, QuarantinePolicy, ReleaseTarget};
use sendguard::{Guard, GuardConfig};
use std::process::Command;
use std::sync::Arc;

const TOKEN: &str = "s3cret";

#[derive(Clone)]
struct App {
    desk: IncidentDesk,
    monitor: Arc<Monitor>,
    quarantine: Arc<Quarantine>,
    target: ReleaseTarget,
}

async fn route(
    app: App,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"{\"error\":\"unauthorized\"}",
        )));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path().to_string();
    let req = Request::from_parts(parts, body);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    Ok(match segs.as_slice() {
        ["v1", "incidents", rest @ ..] => incident_http::handle(&app.desk, req, rest).await,
        ["v1", "quarantine", rest @ ..] => {
            sendguard::quarantine::handle(&app.quarantine, &app.target, req, rest).await
        }
        ["v1", "events"] => handle_events(app.desk.guard(), &app.monitor, req).await,
        _ => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    })
}

fn cli(port: u16, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sendguard"))
        .args(args)
        .env("SENDGUARD_ADMIN", format!("http://127.0.0.1:{port}"))
        .env("SENDGUARD_ADMIN_TOKEN", TOKEN)
        .env("USER", "maria")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn incident_and_quarantine_commands() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let guard = Guard::open(GuardConfig::in_memory()).unwrap();
    let (app, port) = rt.block_on(async {
        let ledger = Ledger::open(dir.path(), LedgerConfig::default()).unwrap();
        let env = Envelope::new("news@shop.test").with_campaign("spring");
        let recs: Vec<_> = (0..30)
            .map(|i| {
                LedgerRecord::new(Outcome::Relayed, &env, &format!("r{i}@x.test"), "smtp")
                    .with_reply(250, "ok")
            })
            .collect();
        ledger.record(recs).await.unwrap();
        let quarantine =
            Arc::new(Quarantine::open(dir.path(), QuarantinePolicy::default()).unwrap());
        let app = App {
            desk: IncidentDesk::new(guard.clone(), ledger.clone()),
            monitor: Arc::new(Monitor::new(Some(guard.clone()), MonitorPolicy::default())),
            quarantine,
            target: ReleaseTarget {
                guard: guard.clone(),
                ledger: Some(ledger),
                upstream: format!("maildir:{}", dir.path().join("outbox").display())
                    .parse()
                    .unwrap(),
            },
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let a = app.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let a = a.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| route(a.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        (app, port)
    });

    let (code, out, err) = cli(
        port,
        &[
            "incident",
            "open",
            "--campaign",
            "spring",
            "--reason",
            "Hello <FirstName> in subject",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("opened INC-") && out.contains("campaign spring is paused"),
        "{out}"
    );
    assert!(guard
        .pauses()
        .iter()
        .any(|p| p.scope == Scope::Campaign("spring".into())));
    let id = out
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();

    guard.suppress("r7@x.test", "test").unwrap();
    let (code, out, _) = cli(port, &["incident", "report", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("Recipients who got the message:  30"), "{out}");
    assert!(out.contains("apology audience:              29"), "{out}");
    let (code, out, _) = cli(port, &["incident", "report", &id, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["campaign"]["relayed_recipients"], 30);
    let html = dir.path().join("report.html");
    let (code, _, _) = cli(
        port,
        &["incident", "report", &id, "--html", html.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    let csv = dir.path().join("audience.csv");
    let (code, _, err) = cli(
        port,
        &["incident", "audience", &id, "--out", csv.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    assert!(err.contains("wrote 29 recipients"), "{err}");
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(!csv.contains("r7@x.test") && csv.contains("r8@x.test"));
    assert_eq!(
        cli(port, &["incident", "note", &id, "apology drafted"]).0,
        0
    );
    let (code, out, _) = cli(port, &["incident", "show", &id]);
    assert_eq!(code, 0);
    assert!(
        out.contains("apology drafted") && out.contains("maria"),
        "{out}"
    );
    let (code, out, _) = cli(port, &["incident", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("open"), "{out}");
    assert_eq!(
        cli(port, &["incident", "close", &id, "--note", "done"]).0,
        0
    );
    let (code, _, err) = cli(port, &["incident", "close", &id]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("sendguard: ") && err.contains("is closed"),
        "{err}"
    );
    let (code, _, err) = cli(port, &["incident", "show", "INC-nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no incident"), "{err}");

    // Quarantine.
    let v = quarantined_leak();
    let msg = Message::new(&b"From: news@shop.test\r\nSubject: Hi <FirstName>\r\n\r\nbody\r\n"[..]);
    let env = Envelope::new("news@shop.test")
        .with_recipient("q@x.test")
        .with_campaign("spring");
    let q1 = app.quarantine.store(&env, &msg, &v, "smtp").unwrap().id;
    let q2 = app.quarantine.store(&env, &msg, &v, "smtp").unwrap().id;
    let (code, out, _) = cli(port, &["quarantine", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&q1) && out.contains("<FirstName>"), "{out}");
    let (code, out, _) = cli(port, &["quarantine", "show", &q1, "--raw"]);
    assert_eq!(code, 0);
    assert!(out.contains("Subject: Hi <FirstName>"));
    let (code, out, _) = cli(port, &["quarantine", "release", &q1]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("q@x.test") && out.contains("relayed"), "{out}");
    assert_eq!(cli(port, &["quarantine", "drop", &q2]).0, 0);
    assert!(app.quarantine.list().unwrap().is_empty());

    // Wrong token: one clear line, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_sendguard"))
        .args([
            "incident",
            "list",
            "--admin",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            "wrong",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"));
    rt.block_on(app.target.ledger.as_ref().unwrap().close())
        .unwrap();
}
