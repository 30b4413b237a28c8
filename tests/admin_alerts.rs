//! The alert webhook: a pause and a resume through the admin API reach a webhook server, with a
//! retry after a failing answer.

mod admin_common;
mod common;

use admin_common::{start_daemon, Api};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A webhook on 127.0.0.1 that answers `500` to its first request and `200` afterwards; every
/// request body goes into the channel.
async fn webhook() -> (u16, mpsc::UnboundedReceiver<(String, serde_json::Value)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let seen = seen.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                let seen = seen.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await?.to_bytes();
                    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let _ = tx.send((path, json));
                    let status = if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    Ok::<_, hyper::Error>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, rx)
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(String, serde_json::Value)>,
) -> (String, serde_json::Value) {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an alert within 20 s")
        .expect("webhook running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_reach_the_webhook() {
    let (hook_port, mut alerts) = webhook().await;
    let (d, port) = start_daemon("");
    std::fs::write(
        d.policies().join("zz-test.toml"),
        format!("[alerts]\nwebhook = \"http://127.0.0.1:{hook_port}/hook\"\ntimeout = \"2s\"\n"),
    )
    .unwrap();
    let api = Api::new(port);
    let before = api.get("/v1/status").await.json()["policy_generation"]
        .as_u64()
        .unwrap();
    let r = api.call(Method::POST, "/v1/reload", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.json()["policy_generation"].as_u64().unwrap() > before);

    let p = api
        .send(
            Method::PUT,
            "/v1/pauses/campaign/black-friday",
            Some(admin_common::TOKEN),
            &[("x-sendguard-actor", "alice")],
            Some(br#"{"reason": "FirstName leaked"}"#.to_vec()),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);

    // The first delivery gets a 500 and is retried with the same alert.
    let (path, first) = next(&mut alerts).await;
    assert_eq!(path, "/hook");
    let (_, second) = next(&mut alerts).await;
    assert_eq!(first, second, "the retry carries the same alert");
    assert_eq!(second["action"], "pause");
    assert_eq!(second["scope"], "campaign");
    assert_eq!(second["id"], "black-friday");
    assert_eq!(second["actor"], "alice via admin");
    assert_eq!(second["reason"], "FirstName leaked");
    let text = second["text"].as_str().unwrap();
    assert!(
        text.contains("campaign black-friday paused by alice via admin"),
        "{text}"
    );
    assert!(text.contains("FirstName leaked"), "{text}");
    assert!(humantime::parse_rfc3339(second["at"].as_str().unwrap()).is_ok());

    let ramp = r#"{"ramp": {"from": "1/s", "to": "50/s", "over": "10m"}}"#;
    let r = api.resume("/v1/pauses/campaign/black-friday", ramp).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (_, resumed) = next(&mut alerts).await;
    assert_eq!(resumed["action"], "resume");
    assert!(
        resumed["text"].as_str().unwrap().contains("resumed by"),
        "{resumed}"
    );
}
