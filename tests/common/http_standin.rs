//! A recording stand-in for an email service's send API: a hyper server on loopback that keeps
//! method, path, headers and the exact body bytes of every request and answers like the
//! service (or with whatever a test sets).
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
}

/// What the stand-in answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The service's own success answer for a dialect.
    pub fn success(dialect: &str) -> Reply {
        let json = |b: &str| Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(b.to_string()),
        };
        match dialect {
            "sendgrid" => Reply {
                status: 202,
                headers: vec![("x-message-id".into(), "standin-1".into())],
                body: Bytes::new(),
            },
            "mailgun" => json(r#"{"id":"<standin.1@mg.test>","message":"Queued. Thank you."}"#),
            "postmark" => json(r#"{"ErrorCode":0,"Message":"OK","MessageID":"standin-1"}"#),
            _ => json(r#"{"queued":true}"#),
        }
    }
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    reply: Arc<Mutex<Reply>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Starts a stand-in answering like `dialect` (`sendgrid`, `mailgun`, `postmark`, `raw`).
    pub async fn start(dialect: &str) -> StandIn {
        Self::start_inner(dialect, None).await
    }

    /// Starts a stand-in speaking TLS with this certificate and PKCS #8 key (DER).
    pub async fn start_tls(dialect: &str, cert: Vec<u8>, key: Vec<u8>) -> StandIn {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls_pki_types::CertificateDer::from(cert)],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .expect("tls config");
        Self::start_inner(
            dialect,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_inner(dialect: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let addr = listener.local_addr().expect("stand-in address");
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let reply = Arc::new(Mutex::new(Reply::success(dialect)));
        let (s, r) = (seen.clone(), reply.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, r, tls) = (s.clone(), r.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_conn(stream, s, r).await;
                            }
                        }
                        None => serve_conn(stream, s, r).await,
                    }
                });
            }
        });
        StandIn {
            addr,
            seen,
            reply,
            task,
        }
    }

    /// The base URL to configure as the upstream.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every following request with `reply`.
    pub fn reply_with(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most 5 s) until `n` requests arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        for _ in 0..200 {
            if self.seen.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.requests()
    }
}

async fn serve_conn<IO>(io: IO, s: Arc<Mutex<Vec<Recorded>>>, r: Arc<Mutex<Reply>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (s, r) = (s.clone(), r.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body_bytes(body).await;
            s.lock().unwrap().push(Recorded {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts.headers,
                body,
            });
            let reply = r.lock().unwrap().clone();
            let mut resp = Response::new(Full::new(reply.body));
            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
            for (n, v) in reply.headers {
                resp.headers_mut().append(
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(&v).unwrap(),
                );
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response as a client saw it.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Sends one request over a fresh connection (bounded by 10 s).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(Full::new(body.into())).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("proxy answered in time")
        .expect("proxy answered");
    answer(resp).await
}

/// A POST of the JSON `body` to `path`, to hand to a proxy in-process.
pub fn json_post(path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// A response as a client sees it (an unreadable body counts as empty).
pub async fn answer<B: hyper::body::Body>(resp: Response<B>) -> Answer {
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body_bytes(body).await,
    }
}

/// The whole body, or nothing when it cannot be read.
async fn body_bytes<B: hyper::body::Body>(body: B) -> Bytes {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}
