//! The proxy core: accept loop, body buffering, judging, forwarding with a pooled client.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::answer::Answer;
use super::translate::{self, Reject, Req, Unit};
use super::{HttpConfig, HttpError, Route, SuppressedMode};
use crate::model::{Disposition, Envelope, Location, Refusal, Verdict};
use crate::Guard;

/// The body of every response the proxy gives: its own answers, or the upstream's body
/// streamed through.
pub type ProxyBody = Either<Full<Bytes>, Incoming>;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

const FRONT: &str = "http";

/// One route's proxy: cheap to clone, shared by every connection of its listener.
#[derive(Clone)]
pub struct HttpProxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("route", &self.inner.route)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Inner {
    route: Route,
    guard: Guard,
    /// Set for a `maildir:PATH` upstream (raw dialect only): accepted messages are written
    /// there instead of being forwarded.
    maildir: Option<Arc<crate::smtp::upstream::Maildir>>,
    client: HttpsClient,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    host: HeaderValue,
    base_path: String,
    max_body: usize,
    upstream_timeout: Duration,
    client_timeout: Duration,
    /// Bounds the requests judged at once on the blocking pool (see [`OFF_WORKER_AT`]).
    heavy: Arc<tokio::sync::Semaphore>,
}

/// Bodies at least this large are judged on tokio's blocking pool rather than on the connection's
/// worker thread: a full scan runs at a few hundred MB/s, so a large body would otherwise hold up
/// every other connection of that worker for milliseconds.
const OFF_WORKER_AT: usize = 256 * 1024;

/// The outcome of judging one request.
enum Decision {
    Forward {
        body: Option<Bytes>,
        headers: Vec<(HeaderName, HeaderValue)>,
        stripped: usize,
    },
    Refuse(Answer),
}

impl HttpProxy {
    /// Builds the proxy of one route: parses the upstream URL and sets up the pooled client
    /// (TLS with the webpki roots plus `upstream_ca`, or plain HTTP).
    ///
    /// # Errors
    /// An upstream URL that is not `http://HOST[:PORT][/PATH]` or `https://…`, or an
    /// `upstream_ca` file that cannot be read or holds no certificate.
    pub fn new(route: Route, config: &HttpConfig, guard: Guard) -> Result<HttpProxy, HttpError> {
        if let Some(path) = route.upstream.strip_prefix("maildir:") {
            if route.dialect != super::Dialect::Raw {
                return Err(HttpError::Config(format!(
                    "a maildir upstream ({:?}) takes only the raw dialect, not {}",
                    route.upstream,
                    route.dialect.as_str()
                )));
            }
            let maildir =
                crate::smtp::upstream::Maildir::open(std::path::Path::new(path), "sendguard-http")
                    .map_err(|e| HttpError::Config(format!("cannot open maildir {path:?}: {e}")))?;
            return Ok(HttpProxy {
                inner: Arc::new(Inner {
                    route,
                    guard,
                    maildir: Some(Arc::new(maildir)),
                    client: build_client(config)?,
                    scheme: http::uri::Scheme::HTTP,
                    authority: http::uri::Authority::from_static("localhost"),
                    host: HeaderValue::from_static("localhost"),
                    base_path: String::new(),
                    max_body: config.max_body,
                    upstream_timeout: config.upstream_timeout,
                    client_timeout: config.client_timeout,
                    heavy: heavy_checks(),
                }),
            });
        }
        let uri: Uri = route.upstream.parse().map_err(|e| {
            HttpError::Config(format!(
                "cannot parse http upstream {:?}: {e}",
                route.upstream
            ))
        })?;
        let scheme = match uri.scheme_str() {
            Some("http") => http::uri::Scheme::HTTP,
            Some("https") => http::uri::Scheme::HTTPS,
            _ => {
                return Err(HttpError::Config(format!(
                    "http upstream {:?} must start with http:// or https://",
                    route.upstream
                )))
            }
        };
        let authority = uri.authority().cloned().ok_or_else(|| {
            HttpError::Config(format!("http upstream {:?} has no host", route.upstream))
        })?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| {
            HttpError::Config(format!("http upstream {:?} has a bad host", route.upstream))
        })?;
        let base_path = uri.path().trim_end_matches('/').to_string();
        let client = build_client(config)?;
        Ok(HttpProxy {
            inner: Arc::new(Inner {
                route,
                guard,
                maildir: None,
                client,
                scheme,
                authority,
                host,
                base_path,
                max_body: config.max_body,
                upstream_timeout: config.upstream_timeout,
                client_timeout: config.client_timeout,
                heavy: heavy_checks(),
            }),
        })
    }

    /// The same route with a connection pool of its own, for another worker thread: pooled
    /// upstream connections are driven by the event loop that opened them.
    ///
    /// # Errors
    /// An `upstream_ca` file that cannot be read (as in [`HttpProxy::new`]).
    pub fn with_own_pool(&self, config: &HttpConfig) -> Result<HttpProxy, HttpError> {
        Ok(HttpProxy {
            inner: Arc::new(Inner {
                client: build_client(config)?,
                ..Inner::clone(&self.inner)
            }),
        })
    }

    /// The route this proxy serves.
    pub fn route(&self) -> &Route {
        &self.inner.route
    }

    /// Serves connections from `listener` until `shutdown` is cancelled, then lets requests in
    /// progress finish (at most 30 seconds).
    ///
    /// # Errors
    /// None today; accept errors are logged and the loop goes on.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), HttpError> {
        let conns = Connections::new(&self);
        tracing::info!(
            listen = %self.inner.route.listen,
            upstream = %self.inner.route.upstream,
            dialect = %self.inner.route.dialect,
            "http proxy ready"
        );
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => conns.serve(&self, stream, peer, None),
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        conns.drain().await;
        Ok(())
    }

    /// Serves the connections a dispatcher hands over (see [`super::serve_workers`]) until the
    /// dispatcher stops or `shutdown` is cancelled, then drains like [`HttpProxy::serve`].
    /// `open` counts this worker's open connections, for the dispatcher's balance.
    pub(crate) async fn serve_handed(
        self,
        mut handed: tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
        open: Arc<AtomicUsize>,
        shutdown: CancellationToken,
    ) -> Result<(), HttpError> {
        let conns = Connections::new(&self);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = handed.recv() => n,
            };
            let Some((stream, peer)) = next else { break };
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => conns.serve(&self, stream, peer, Some(open.clone())),
                Err(e) => {
                    open.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, %peer, "http connection could not be registered");
                }
            }
        }
        drop(handed);
        conns.drain().await;
        Ok(())
    }

    /// Handles one request: buffers the body, judges a send, and forwards it or answers in the
    /// dialect's shape. Never fails: every problem becomes an HTTP answer.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.handle_from(req, None).await
    }

    async fn handle_from<B>(
        &self,
        req: Request<B>,
        client_ip: Option<IpAddr>,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let dialect = self.inner.route.dialect;
        let (parts, body) = req.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.inner.max_body as u64) {
            return Answer::too_large(self.inner.max_body).into_response(dialect);
        }
        let collected = tokio::time::timeout(
            self.inner.client_timeout,
            Limited::new(body, self.inner.max_body).collect(),
        )
        .await;
        let body = match collected {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return Answer::too_large(self.inner.max_body).into_response(dialect);
                }
                return Answer::malformed(format!("cannot read request body: {e}"))
                    .into_response(dialect);
            }
            Err(_) => return Answer::client_timeout().into_response(dialect),
        };
        let path = parts.uri.path();
        if !translate::is_send(dialect, &parts.method, path) {
            return self.forward(parts, body, &[]).await;
        }
        let judged_at = Instant::now();
        let (decision, outcomes) = if body.len() >= OFF_WORKER_AT {
            self.judge_off_worker(&parts, &body, client_ip).await
        } else {
            let mut outcomes = Vec::new();
            let d = self.judge(&parts.headers, path, &body, client_ip, &mut outcomes);
            (d, outcomes)
        };
        match decision {
            Decision::Refuse(a) => {
                self.inner
                    .guard
                    .metrics()
                    .added_latency(FRONT, judged_at.elapsed().as_secs_f64());
                let resp = a.into_response(dialect);
                self.record(outcomes, resp.status().as_u16(), None).await;
                resp
            }
            Decision::Forward {
                body: new_body,
                headers,
                stripped,
            } => {
                self.inner
                    .guard
                    .metrics()
                    .added_latency(FRONT, judged_at.elapsed().as_secs_f64());
                let mut resp = self
                    .forward(parts, new_body.unwrap_or(body), &headers)
                    .await;
                let status = resp.status().as_u16();
                self.record(outcomes, status, Some(status)).await;
                if stripped > 0 {
                    resp.headers_mut()
                        .insert("x-sendguard-suppressed", HeaderValue::from(stripped));
                }
                resp
            }
        }
    }

    /// Judges a send request without forwarding it: `None` when it would be forwarded (possibly
    /// with suppressed recipients stripped), else the answer the client would get. Takes a ramp
    /// permit like a real request does.
    pub fn check_request(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &Bytes,
    ) -> Option<Response<ProxyBody>> {
        match self.judge(headers, path, body, None, &mut Vec::new()) {
            Decision::Forward { .. } => None,
            Decision::Refuse(a) => Some(a.into_response(self.inner.route.dialect)),
        }
    }

    /// [`Self::judge`] on the blocking pool, a few at a time, for a large body.
    async fn judge_off_worker(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
        client_ip: Option<IpAddr>,
    ) -> (Decision, Vec<(Envelope, Verdict)>) {
        // The semaphore is never closed; a closed one would only mean no bound.
        let _permit = self.inner.heavy.clone().acquire_owned().await.ok();
        let this = self.clone();
        let headers = parts.headers.clone();
        let path = parts.uri.path().to_owned();
        let body = body.clone();
        let bytes = body.len();
        let judged = tokio::task::spawn_blocking(move || {
            let mut outcomes = Vec::new();
            let d = this.judge(&headers, &path, &body, client_ip, &mut outcomes);
            (d, outcomes)
        })
        .await;
        judged.unwrap_or_else(|e| {
            tracing::error!(error = %e, bytes, "checking a large request failed; answered 503");
            (Decision::Refuse(Answer::check_failed()), Vec::new())
        })
    }

    fn judge(
        &self,
        headers: &HeaderMap,
        path: &str,
        body: &Bytes,
        client_ip: Option<IpAddr>,
        outcomes: &mut Vec<(Envelope, Verdict)>,
    ) -> Decision {
        let route = &self.inner.route;
        let guard = &self.inner.guard;
        let metrics = guard.metrics();
        let req = Req {
            path,
            headers,
            body,
            route,
        };
        let units = match translate::parse(&req) {
            Ok(u) => u,
            Err(Reject::Malformed(m)) => {
                tracing::debug!(error = %m, "malformed send request");
                return Decision::Refuse(Answer::malformed(m));
            }
            Err(Reject::MissingData {
                token,
                recipient,
                location,
            }) => {
                let mut v = Verdict::pass();
                v.refuse(Refusal::Placeholder {
                    rule: "placeholder.missing-data".into(),
                    token: token.clone(),
                    location: location_of(&location),
                    action: crate::model::Action::Reject,
                });
                metrics.observe_verdict(FRONT, &v);
                tracing::info!(%token, %recipient, %location, "refused: merge tag without substitution data");
                return Decision::Refuse(Answer::missing_data(&token, &recipient, &location));
            }
        };
        let mut judged: Vec<(Envelope, Verdict, &Unit<'_>)> = Vec::with_capacity(units.len());
        for unit in &units {
            let mut env = unit.envelope();
            env.client_ip = client_ip;
            let verdict = match unit.message() {
                Some(msg) => guard.check_message(&mut env, &msg),
                None => {
                    let mut v = guard.check_content(&mut env, &unit.content());
                    if v.disposition == Disposition::Quarantine {
                        // Keep the message the service would have sent.
                        let copy = match unit.rendered() {
                            Ok(m) => Some(m),
                            Err(e) => {
                                tracing::error!(error = %e, label = %unit.label, "cannot build a copy to quarantine");
                                None
                            }
                        };
                        guard.keep_quarantined(&env, copy.as_ref(), &mut v, FRONT);
                    }
                    v
                }
            };
            metrics.observe_verdict(FRONT, &verdict);
            judged.push((env, verdict, unit));
        }
        let decision = self.decide(&req, &mut judged);
        outcomes.extend(judged.into_iter().map(|(env, v, _)| (env, v)));
        decision
    }

    /// The decision for judged units: leaks and policy first, then pauses and ramps, then
    /// suppressed recipients (refused or stripped), then the last gate.
    fn decide(&self, req: &Req<'_>, judged: &mut [(Envelope, Verdict, &Unit<'_>)]) -> Decision {
        let route = &self.inner.route;
        let guard = &self.inner.guard;
        let metrics = guard.metrics();
        let headers = req.headers;
        // A leak or policy refusal decides first: the sender learns of the broken template.
        for (_, v, unit) in judged.iter() {
            match &v.refusal {
                Some(Refusal::Placeholder {
                    token,
                    location,
                    action,
                    ..
                }) => {
                    tracing::info!(%token, %location, label = %unit.label, "refused: placeholder leak");
                    return Decision::Refuse(if *action == crate::model::Action::Tempfail {
                        Answer::placeholder_tempfail(token, location.as_str(), &unit.label)
                    } else {
                        Answer::placeholder(token, location.as_str(), &unit.label)
                    });
                }
                Some(
                    r @ Refusal::Policy {
                        action: crate::model::Action::Tempfail,
                        ..
                    },
                ) => {
                    return Decision::Refuse(Answer::policy_tempfail(&r.to_string()));
                }
                Some(r @ (Refusal::Policy { .. } | Refusal::NotAffected { .. })) => {
                    return Decision::Refuse(Answer::policy(&r.to_string()));
                }
                _ => {}
            }
        }
        // Pauses (of the message or of a recipient's domain) and ramps.
        for (_, v, _) in judged.iter() {
            let refusals = v
                .refusal
                .iter()
                .chain(v.recipients.iter().filter_map(|r| r.refusal.as_ref()));
            for r in refusals {
                match r {
                    Refusal::Paused { scope, .. } => {
                        tracing::info!(%scope, "refused: paused");
                        return Decision::Refuse(Answer::paused(&r.to_string_scope(scope)));
                    }
                    Refusal::RateLimited { scope, retry_after } => {
                        return Decision::Refuse(Answer::rate_limited(
                            &scope.to_string(),
                            *retry_after,
                        ));
                    }
                    _ => {}
                }
            }
        }
        let mut suppressed: Vec<String> = Vec::new();
        for (_, v, _) in judged.iter() {
            for r in &v.recipients {
                if matches!(r.refusal, Some(Refusal::Suppressed { .. }))
                    && !suppressed.contains(&r.recipient)
                {
                    suppressed.push(r.recipient.clone());
                }
            }
        }
        let mut decision = Decision::Forward {
            body: None,
            headers: Vec::new(),
            stripped: 0,
        };
        if !suppressed.is_empty() {
            let signed = route.signed || translate::signed_request(headers);
            if route.suppressed == SuppressedMode::Refuse || signed {
                if route.suppressed == SuppressedMode::Strip {
                    tracing::warn!("request is signed over its body: suppressed recipients refused instead of stripped");
                }
                metrics.observe_recipients(
                    FRONT,
                    Disposition::Reject,
                    "suppressed",
                    suppressed.len() as u64,
                );
                return Decision::Refuse(Answer::suppressed(&suppressed));
            }
            let set: HashSet<String> = suppressed
                .iter()
                .map(|a| crate::model::normalize_address(a))
                .collect();
            match translate::strip(req, &set) {
                Ok(s) if s.remaining > 0 => {
                    metrics.observe_recipients(
                        FRONT,
                        Disposition::Reject,
                        "suppressed",
                        s.removed as u64,
                    );
                    decision = Decision::Forward {
                        body: Some(s.body),
                        headers: s.headers,
                        stripped: s.removed,
                    };
                }
                Ok(_) => return Decision::Refuse(Answer::suppressed(&suppressed)),
                Err(e) => {
                    tracing::warn!(error = ?e, "cannot strip suppressed recipients; refusing");
                    return Decision::Refuse(Answer::suppressed(&suppressed));
                }
            }
        }
        // Last gate right before forwarding: pauses re-read, ramp permits.
        for (env, v, _) in judged.iter_mut() {
            let passing: Vec<String> = v.passing_recipients().map(str::to_string).collect();
            env.recipients = passing;
            if let Err(r) = guard.admit(env) {
                return Decision::Refuse(match &r {
                    Refusal::RateLimited { scope, retry_after } => {
                        Answer::rate_limited(&scope.to_string(), *retry_after)
                    }
                    Refusal::Paused { scope, .. } => Answer::paused(&r.to_string_scope(scope)),
                    other => Answer::policy(&other.to_string()),
                });
            }
        }
        decision
    }

    /// Writes the outcome of every judged message to the ledger: `upstream` is the upstream's
    /// status when the request was forwarded, `None` when sendguard answered it itself.
    async fn record(&self, outcomes: Vec<(Envelope, Verdict)>, status: u16, upstream: Option<u16>) {
        let guard = &self.inner.guard;
        if guard.operations().is_none() {
            return;
        }
        for (env, mut verdict) in outcomes {
            match upstream {
                Some(code) => {
                    let replies: Vec<(String, u16, String)> = verdict
                        .passing_recipients()
                        .map(|r| (r.to_string(), code, format!("HTTP {code}")))
                        .collect();
                    guard.record(FRONT, &env, None, &verdict, &replies).await;
                }
                None => {
                    if verdict.is_pass() {
                        verdict.refuse(Refusal::Policy {
                            rule: "http.request".into(),
                            detail: format!("the request was answered {status} by sendguard"),
                            action: crate::model::Action::Reject,
                        });
                    }
                    guard.record(FRONT, &env, None, &verdict, &[]).await;
                }
            }
        }
    }

    async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
        set: &[(HeaderName, HeaderValue)],
    ) -> Response<ProxyBody> {
        let dialect = self.inner.route.dialect;
        let metrics = self.inner.guard.metrics();
        let target = match parts.uri.path_and_query() {
            Some(pq) if self.inner.base_path.is_empty() => Ok(pq.clone()),
            pq => {
                let pq = pq.map_or("/", |p| p.as_str());
                http::uri::PathAndQuery::try_from(format!("{}{pq}", self.inner.base_path))
            }
        };
        let uri = target.ok().and_then(|pq| {
            Uri::builder()
                .scheme(self.inner.scheme.clone())
                .authority(self.inner.authority.clone())
                .path_and_query(pq)
                .build()
                .ok()
        });
        let Some(uri) = uri else {
            return Answer::malformed("cannot build the upstream request path")
                .into_response(dialect);
        };
        if self.inner.maildir.is_some()
            && !translate::is_send(dialect, &parts.method, parts.uri.path())
        {
            return Answer::not_found(parts.uri.path()).into_response(dialect);
        }
        // The client's request goes on with its own header map, minus what described the
        // client's connection; the body's length is set from the body sent.
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        parts.extensions.clear();
        let h = &mut parts.headers;
        strip_hop_by_hop(h);
        h.remove(http::header::CONTENT_LENGTH);
        h.insert(http::header::HOST, self.inner.host.clone());
        for (n, v) in set {
            h.insert(n.clone(), v.clone());
        }
        let out = Request::from_parts(parts, Full::new(body));
        if let Some(maildir) = &self.inner.maildir {
            return deliver_to_maildir(maildir.clone(), out.into_body()).await;
        }
        let sent =
            tokio::time::timeout(self.inner.upstream_timeout, self.inner.client.request(out)).await;
        match sent {
            Ok(Ok(resp)) => {
                metrics.upstream_reply(FRONT, resp.status().as_u16());
                let (mut p, body) = resp.into_parts();
                p.version = http::Version::HTTP_11;
                p.extensions.clear();
                strip_hop_by_hop(&mut p.headers);
                Response::from_parts(p, Either::Right(body))
            }
            Ok(Err(e)) => {
                metrics.upstream_reply(FRONT, 0);
                let detail = error_chain(&e);
                tracing::warn!(upstream = %self.inner.route.upstream, error = %detail, "upstream request failed");
                Answer::bad_gateway(&detail).into_response(dialect)
            }
            Err(_) => {
                metrics.upstream_reply(FRONT, 0);
                tracing::warn!(upstream = %self.inner.route.upstream, "upstream timed out");
                Answer::gateway_timeout().into_response(dialect)
            }
        }
    }
}

/// Writes an accepted raw message into the local maildir: `202` with its id, or `503` when it
/// cannot be written (the client keeps the message and retries).
async fn deliver_to_maildir(
    maildir: Arc<crate::smtp::upstream::Maildir>,
    body: Full<Bytes>,
) -> Response<ProxyBody> {
    let bytes = match http_body_util::BodyExt::collect(body).await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let written = tokio::task::spawn_blocking(move || maildir.deliver(&bytes)).await;
    let (status, body) = match written {
        Ok(Ok(id)) => (
            http::StatusCode::ACCEPTED,
            serde_json::json!({ "id": id, "message": "queued in the local maildir" }),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot write to the maildir");
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": format!("cannot write the message: {e}") }),
            )
        }
        Err(_) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "the maildir writer failed" }),
        ),
    };
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == http::StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("60"));
    }
    r
}

trait ScopeText {
    fn to_string_scope(&self, scope: &crate::model::Scope) -> String;
}

impl ScopeText for Refusal {
    fn to_string_scope(&self, scope: &crate::model::Scope) -> String {
        match self {
            Refusal::Paused { reason, .. } if !reason.is_empty() => format!("{scope} ({reason})"),
            _ => scope.to_string(),
        }
    }
}

/// The bound on large requests judged at once: one per CPU.
fn heavy_checks() -> Arc<tokio::sync::Semaphore> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(tokio::sync::Semaphore::new(cpus))
}

fn location_of(s: &str) -> Location {
    let l = s.to_ascii_lowercase();
    if l.starts_with("subject") {
        Location::Subject
    } else if l.starts_with("text") {
        Location::Text
    } else {
        Location::Html
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes the headers that describe one connection: the hop-by-hop ones and those the
/// `Connection` header lists. Most messages have none, and then nothing is allocated.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| hop_by_hop(n) || listed.contains(n))
        .cloned()
        .collect();
    for n in &drop {
        headers.remove(n);
    }
}

/// The connections of one listener or worker: hyper's HTTP/1 settings and the graceful-shutdown
/// watch over every connection.
struct Connections {
    builder: hyper::server::conn::http1::Builder,
    graceful: hyper_util::server::graceful::GracefulShutdown,
}

impl Connections {
    fn new(proxy: &HttpProxy) -> Connections {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(proxy.inner.client_timeout)
            .keep_alive(true);
        Connections {
            builder,
            graceful: hyper_util::server::graceful::GracefulShutdown::new(),
        }
    }

    /// Serves one connection in a task of its own; `open` is decremented when it ends.
    fn serve(
        &self,
        proxy: &HttpProxy,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        open: Option<Arc<AtomicUsize>>,
    ) {
        let _ = stream.set_nodelay(true);
        let ip = peer.ip();
        let for_requests = proxy.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let proxy = for_requests.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle_from(req, Some(ip)).await) }
        });
        let conn = self
            .graceful
            .watch(self.builder.serve_connection(TokioIo::new(stream), svc));
        let metrics = proxy.inner.guard.metrics().clone();
        tokio::spawn(async move {
            metrics.connection(FRONT, 1);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "http connection ended with an error");
            }
            metrics.connection(FRONT, -1);
            if let Some(open) = open {
                open.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// Lets requests in progress finish, at most 30 seconds.
    async fn drain(self) {
        tokio::select! {
            _ = self.graceful.shutdown() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                tracing::warn!("http requests still in progress after 30s; stopping anyway");
            }
        }
    }
}

fn build_client(config: &HttpConfig) -> Result<HttpsClient, HttpError> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.upstream_ca {
        let ca_err = |message: String| HttpError::Ca {
            path: path.clone(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut n = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(ca_err("no certificate in the file".into()));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HttpError::Config(format!("tls setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(config.pool_max_idle)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(https))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut from = HeaderMap::new();
        from.insert("connection", HeaderValue::from_static("close, x-private"));
        from.insert("x-private", HeaderValue::from_static("1"));
        from.insert("authorization", HeaderValue::from_static("Bearer k"));
        from.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        from.append("x-multi", HeaderValue::from_static("a"));
        from.append("x-multi", HeaderValue::from_static("b"));
        strip_hop_by_hop(&mut from);
        assert_eq!(from.len(), 3);
        assert_eq!(from.get_all("x-multi").iter().count(), 2);
        assert!(from.get("authorization").is_some());
        assert!(from.get("x-private").is_none());
        assert!(from.get("connection").is_none());
    }

    #[test]
    fn status_codes_are_what_the_table_says() {
        assert_eq!(
            Answer::paused("x").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Answer::rate_limited("x", Duration::from_millis(1)).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            Answer::suppressed(&[]).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(Answer::malformed("x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(Answer::bad_gateway("x").status(), StatusCode::BAD_GATEWAY);
    }
}
