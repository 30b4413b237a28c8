//! Shared by the admin API tests: a daemon with the admin API on a free port, and a small HTTP
//! client for it.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

use crate::common::{free_port, Daemon};

/// The token the test daemons run with.
pub const TOKEN: &str = "t";

/// A daemon with the admin API on its own port, token [`TOKEN`].
pub fn start_daemon(extra_config: &str) -> (Daemon, u16) {
    let port = free_port();
    let config = format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n{extra_config}\n");
    let d = Daemon::start_with_env(&config, &[port], &[("SENDGUARD_ADMIN_TOKEN", TOKEN)]);
    (d, port)
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one admin API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request with an optional token, extra headers and body (bounded to 60 s).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let fut = async {
            let resp = self.client.request(req).await.expect("admin API reachable");
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            Answer {
                status,
                headers,
                body,
            }
        };
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within 60 s"))
    }

    /// With the right token.
    pub async fn call(&self, method: Method, path: &str, body: Option<&str>) -> Answer {
        self.send(
            method,
            path,
            Some(TOKEN),
            &[],
            body.map(|b| b.as_bytes().to_vec()),
        )
        .await
    }

    /// DELETE of a pause (`/v1/pauses/…`) with this resume body (e.g. a ramp), with the right
    /// token.
    pub async fn resume(&self, pause: &str, body: &str) -> Answer {
        self.call(Method::DELETE, pause, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }
}
