//! The admin API: JSON over HTTP on its own listener, for operators and the `sendguard pause |
//! resume | status | suppress` commands.
//!
//! Every endpoint but `GET /healthz` (and `GET /metrics` when `metrics_public = true`) needs
//! `Authorization: Bearer TOKEN`; tokens come from `SENDGUARD_ADMIN_TOKEN` and the optional
//! `token_file`, and are compared in constant time. The listener refuses to start on a
//! non-loopback address without a token.
//!
//! Who did it: every write is recorded with an actor. The actor is the token's name (`admin` for
//! the token from the environment); a request may name the human behind it with the
//! `X-Sendguard-Actor` header, recorded as `HUMAN via TOKEN-NAME`. Request bodies have no `actor`
//! field.
//!
//! One file per endpoint group; request and response types carry the API version in their names
//! (`PauseRequestV1`, `PauseV1`) and are what `openapi.json` (next to this file) describes.

mod audit;
mod http;
mod pauses;
mod status;
mod suppressions;
mod system;

pub use audit::{AuditEntryV1, AuditV1};
pub use http::ErrorV1;
pub use pauses::{
    PauseRequestV1, PauseV1, PausesV1, RampRequestV1, RampV1, ResumeRequestV1, ResumeV1,
};
pub use status::StatusV1;
pub use suppressions::{ImportV1, SuppressionV1};
pub use system::{HealthV1, ReloadV1};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Guard;
use http::ApiError;

/// The environment variable holding the admin token (its name is `admin`).
pub const TOKEN_ENV: &str = "SENDGUARD_ADMIN_TOKEN";
/// The request header naming the human behind a token.
pub const ACTOR_HEADER: &str = "x-sendguard-actor";
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8026";
/// The largest JSON request body accepted (bulk import streams and has no cap).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// `[admin]` in the `serve` configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Run the admin API (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:8026`). A non-loopback address needs a token.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A file of tokens, one a line: `TOKEN` (named `admin`) or `NAME TOKEN`; `#` comments.
    /// Used in addition to `SENDGUARD_ADMIN_TOKEN`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Serve `GET /metrics` without a token, for a scraper (default off).
    #[serde(default)]
    pub metrics_public: bool,
    /// Connections served at once (default 64); more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn yes() -> bool {
    true
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}

fn default_max_connections() -> usize {
    64
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: default_listen(),
            token_file: None,
            metrics_public: false,
            max_connections: default_max_connections(),
        }
    }
}

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address does not parse.
    #[error("admin listen address {addr:?} is not IP:PORT")]
    BadAddress {
        /// The address as configured.
        addr: String,
    },
    /// A non-loopback address without a token.
    #[error("refusing to serve the admin API on {addr} without a token: set {TOKEN_ENV} or [admin] token_file, or listen on 127.0.0.1")]
    NoToken {
        /// The address.
        addr: SocketAddr,
    },
    /// The token file could not be read or has no token.
    #[error("admin token file {}: {message}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr} for the admin API: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// The accepted bearer tokens, each with the name recorded as the actor.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Tokens").field("names", &names).finish()
    }
}

impl Tokens {
    /// No token: every request is let in (loopback only).
    pub fn none() -> Tokens {
        Tokens::default()
    }

    /// One token with its name.
    pub fn single(name: &str, token: &str) -> Tokens {
        Tokens {
            entries: vec![(name.to_string(), token.as_bytes().to_vec())],
        }
    }

    /// The token from the environment (named `admin`, ignored when empty) plus those of the
    /// configured token file.
    ///
    /// # Errors
    /// The token file cannot be read, or has a malformed line, or holds no token.
    pub fn load(config: &AdminConfig, env_token: Option<String>) -> Result<Tokens, AdminError> {
        let mut tokens = Tokens::none();
        if let Some(t) = env_token.map(|t| t.trim().to_string()) {
            if !t.is_empty() {
                tokens.entries.push(("admin".into(), t.into_bytes()));
            }
        }
        if let Some(path) = &config.token_file {
            tokens.entries.extend(read_token_file(path)?);
        }
        Ok(tokens)
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of the token `presented` matches, comparing against every token in constant
    /// time.
    pub fn check(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (name, token) in &self.entries {
            if bool::from(token.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn read_token_file(path: &Path) -> Result<Vec<(String, Vec<u8>)>, AdminError> {
    let err = |message: String| AdminError::TokenFile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (name, token) = match (parts.next(), parts.next(), parts.next()) {
            (Some(t), None, None) => ("admin", t),
            (Some(name), Some(t), None) => (name, t),
            _ => return Err(err(format!("line {}: expected TOKEN or NAME TOKEN", n + 1))),
        };
        out.push((name.to_string(), token.as_bytes().to_vec()));
    }
    if out.is_empty() {
        return Err(err("holds no token".into()));
    }
    Ok(out)
}

/// One route of the API: a path template (`{name}` matches one segment) and its methods.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The path template, as written in `openapi.json`.
    pub path: &'static str,
    /// The methods it answers.
    pub methods: &'static [&'static str],
}

/// Every route the server answers; routing and the OpenAPI test both read this table.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/healthz",
        methods: &["GET"],
    },
    Route {
        path: "/metrics",
        methods: &["GET"],
    },
    Route {
        path: "/v1/status",
        methods: &["GET"],
    },
    Route {
        path: "/v1/pauses",
        methods: &["GET"],
    },
    Route {
        path: "/v1/pauses/global",
        methods: &["PUT", "DELETE"],
    },
    Route {
        path: "/v1/pauses/{scope}/{id}",
        methods: &["PUT", "DELETE"],
    },
    Route {
        path: "/v1/audit",
        methods: &["GET"],
    },
    Route {
        path: "/v1/suppressions",
        methods: &["POST"],
    },
    Route {
        path: "/v1/suppressions/{address}",
        methods: &["GET", "PUT", "DELETE"],
    },
    Route {
        path: "/v1/reload",
        methods: &["POST"],
    },
    // The incident workflow: dispatched by `workflow` before this table is consulted.
    Route {
        path: "/v1/incidents",
        methods: &["GET", "POST"],
    },
    Route {
        path: "/v1/incidents/{id}",
        methods: &["GET"],
    },
    Route {
        path: "/v1/incidents/{id}/report",
        methods: &["GET"],
    },
    Route {
        path: "/v1/incidents/{id}/audience",
        methods: &["GET"],
    },
    Route {
        path: "/v1/incidents/{id}/notes",
        methods: &["POST"],
    },
    Route {
        path: "/v1/incidents/{id}/close",
        methods: &["POST"],
    },
    Route {
        path: "/v1/events",
        methods: &["POST"],
    },
    Route {
        path: "/v1/monitor",
        methods: &["GET"],
    },
    Route {
        path: "/v1/quarantine",
        methods: &["GET"],
    },
    Route {
        path: "/v1/quarantine/{id}",
        methods: &["GET", "DELETE"],
    },
    Route {
        path: "/v1/quarantine/{id}/raw",
        methods: &["GET"],
    },
    Route {
        path: "/v1/quarantine/{id}/release",
        methods: &["POST"],
    },
];

/// Finds the route of a request path and its decoded `{…}` parameters.
fn match_route(path: &str) -> Result<Option<(&'static Route, Vec<String>)>, ApiError> {
    let segs: Vec<&str> = path.split('/').collect();
    for route in ROUTES {
        let tpl: Vec<&str> = route.path.split('/').collect();
        if tpl.len() != segs.len() {
            continue;
        }
        let mut params = Vec::new();
        let mut ok = true;
        for (t, s) in tpl.iter().zip(&segs) {
            if t.starts_with('{') {
                if s.is_empty() {
                    ok = false;
                    break;
                }
                params.push(http::percent_decode(s)?);
            } else if t != s {
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(Some((route, params)));
        }
    }
    Ok(None)
}

struct State {
    guard: Guard,
    tokens: Tokens,
    metrics_public: bool,
}

/// What a handler knows about the request besides its body.
pub(crate) struct Ctx {
    guard: Guard,
    actor: String,
}

/// A bound admin API, ready to run.
pub struct AdminServer {
    listener: TcpListener,
    state: Arc<State>,
    max_connections: usize,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Checks the configuration and binds the listener.
    ///
    /// # Errors
    /// A listen address that is not `IP:PORT`, a non-loopback address without a token, or a
    /// listener that cannot be bound.
    pub async fn bind(
        config: &AdminConfig,
        tokens: Tokens,
        guard: Guard,
    ) -> Result<AdminServer, AdminError> {
        let addr: SocketAddr =
            config
                .listen
                .trim()
                .parse()
                .map_err(|_| AdminError::BadAddress {
                    addr: config.listen.clone(),
                })?;
        if tokens.is_empty() {
            if !addr.ip().is_loopback() {
                return Err(AdminError::NoToken { addr });
            }
            tracing::warn!(%addr, "the admin API has no token: anyone on this host can pause, resume and edit suppressions; set {TOKEN_ENV}");
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(AdminServer {
            listener,
            state: Arc::new(State {
                guard,
                tokens,
                metrics_public: config.metrics_public,
            }),
            max_connections: config.max_connections.max(1),
        })
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    /// The socket has no local address (it always has one once bound).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until `shutdown`, then lets requests in progress finish (at most five
    /// seconds). Per-connection errors are logged, never returned.
    pub async fn run(self, shutdown: CancellationToken) {
        use hyper_util::rt::{TokioIo, TokioTimer};
        let limit = Arc::new(tokio::sync::Semaphore::new(self.max_connections));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let state = self.state.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "admin API connection ended with an error");
                }
                drop(permit);
            });
        }
        if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("admin API: requests still running after 5 s were cut off");
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match handle_inner(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Largest request body the incident-workflow endpoints take (event batches, notes).
const MAX_WORKFLOW_BODY: usize = 16 * 1024 * 1024;

/// The incident-workflow endpoints (`/v1/incidents…`, `/v1/events`, `/v1/monitor`,
/// `/v1/quarantine…`), served by their own modules. Gives the request back when the path is not
/// one of them.
async fn workflow(
    state: &State,
    path: &str,
    req: Request<Incoming>,
) -> Result<Result<Response<Full<Bytes>>, Request<Incoming>>, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let group = match segs.as_slice() {
        ["v1", g, ..] if matches!(*g, "incidents" | "events" | "monitor" | "quarantine") => *g,
        _ => return Ok(Err(req)),
    };
    let Some(ops) = state.guard.operations().cloned() else {
        return Err(ApiError::new(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "the incident workflow is off ([ledger] enabled = false)".to_string(),
        ));
    };
    let (parts, body) = req.into_parts();
    let mut bytes = Vec::new();
    let mut body = body;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_WORKFLOW_BODY {
                return Err(ApiError::new(
                    hyper::StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {MAX_WORKFLOW_BODY} bytes"),
                ));
            }
            bytes.extend_from_slice(&data);
        }
    }
    let req = Request::from_parts(parts, Bytes::from(bytes));
    let rest: Vec<String> = segs[2..]
        .iter()
        .map(|s| http::percent_decode(s))
        .collect::<Result<_, _>>()?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let answer = match group {
        "incidents" => crate::incident::http::handle(&ops.desk, req, &rest).await,
        "events" if rest.is_empty() => {
            crate::events::http::handle_events(&state.guard, &ops.monitor, req).await
        }
        "monitor" if rest.is_empty() => {
            crate::events::http::handle_monitor(&ops.monitor, req).await
        }
        "quarantine" => crate::quarantine::handle(&ops.quarantine, &ops.release, req, &rest).await,
        _ => return Err(ApiError::not_found(format!("no endpoint {path}"))),
    };
    Ok(Ok(answer))
}

async fn handle_inner(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = req.uri().path().to_string();
    let public = path == "/healthz" || (path == "/metrics" && state.metrics_public);
    let actor = if public {
        "anonymous".to_string()
    } else {
        authorize(state, req.headers())?
    };
    let req = match workflow(state, &path, req).await? {
        Ok(answer) => return Ok(answer),
        Err(req) => req,
    };
    let Some((route, params)) = match_route(&path)? else {
        return Err(ApiError::not_found(format!(
            "no endpoint {path}; the API is described in openapi.json"
        )));
    };
    let method = req.method().clone();
    if !route.methods.contains(&method.as_str()) {
        return Err(ApiError::method_not_allowed(&method, route.methods));
    }
    let ctx = Ctx {
        guard: state.guard.clone(),
        actor,
    };
    let query = req.uri().query().unwrap_or("").to_string();
    if route.path != "/v1/audit" && !query.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{path} takes no query parameters (got {query:?})"
        )));
    }
    let body = req.into_body();
    let param = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
    match (route.path, method) {
        ("/healthz", _) => system::healthz(&ctx),
        ("/metrics", _) => system::metrics(&ctx),
        ("/v1/status", _) => status::get(&ctx),
        ("/v1/reload", _) => system::reload(&ctx).await,
        ("/v1/audit", _) => audit::get(&ctx, &query).await,
        ("/v1/pauses", _) => pauses::list(&ctx),
        ("/v1/pauses/global", Method::PUT) => pauses::put(&ctx, "global", None, body).await,
        ("/v1/pauses/global", _) => pauses::delete(&ctx, "global", None, body).await,
        ("/v1/pauses/{scope}/{id}", Method::PUT) => {
            pauses::put(&ctx, param(0), Some(param(1)), body).await
        }
        ("/v1/pauses/{scope}/{id}", _) => {
            pauses::delete(&ctx, param(0), Some(param(1)), body).await
        }
        ("/v1/suppressions", _) => suppressions::import(&ctx, body).await,
        ("/v1/suppressions/{address}", Method::GET) => suppressions::get(&ctx, param(0)),
        ("/v1/suppressions/{address}", Method::PUT) => suppressions::put(&ctx, param(0)).await,
        ("/v1/suppressions/{address}", _) => suppressions::delete(&ctx, param(0)).await,
        (p, m) => Err(ApiError::method_not_allowed(&m, route.methods)
            .with_detail(format!("no handler for {m} {p}"))),
    }
}

/// Checks the bearer token; returns the actor to record.
fn authorize(state: &State, headers: &hyper::HeaderMap) -> Result<String, ApiError> {
    let token_name = if state.tokens.is_empty() {
        "admin"
    } else {
        // The scheme is case-insensitive (RFC 9110).
        let presented = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii());
        match presented {
            None => {
                return Err(ApiError::unauthorized(
                    "missing admin token: send Authorization: Bearer TOKEN (the value of SENDGUARD_ADMIN_TOKEN)",
                ))
            }
            Some(p) => state
                .tokens
                .check(p)
                .ok_or_else(|| ApiError::unauthorized("wrong admin token"))?,
        }
    };
    let human = match headers.get(ACTOR_HEADER) {
        None => None,
        Some(v) => {
            let v = v.to_str().map(str::trim).map_err(|_| {
                ApiError::bad_request("X-Sendguard-Actor: expected printable ASCII text")
            })?;
            if v.len() > 100 || v.chars().any(|c| c.is_ascii_control()) {
                return Err(ApiError::bad_request(
                    "X-Sendguard-Actor: expected at most 100 printable characters",
                ));
            }
            Some(v).filter(|v| !v.is_empty())
        }
    };
    Ok(match human {
        Some(h) => format!("{h} via {token_name}"),
        None => token_name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_value_and_name() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tokens");
        std::fs::write(&f, "# ops tokens\nalice s3cret\nbare-token\n").unwrap();
        let config = AdminConfig {
            token_file: Some(f),
            ..AdminConfig::default()
        };
        let t = Tokens::load(&config, Some("envtok".into())).unwrap();
        assert_eq!(t.check(b"envtok"), Some("admin"));
        assert_eq!(t.check(b"s3cret"), Some("alice"));
        assert_eq!(t.check(b"bare-token"), Some("admin"));
        assert_eq!(t.check(b"s3cre"), None);
        assert_eq!(t.check(b""), None);
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn malformed_token_file_names_the_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("tokens");
        std::fs::write(&f, "ok\na b c\n").unwrap();
        let config = AdminConfig {
            token_file: Some(f),
            ..AdminConfig::default()
        };
        let e = Tokens::load(&config, None).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn routes_match_templates() {
        let (r, p) = match_route("/v1/pauses/campaign/spring%202026")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/v1/pauses/{scope}/{id}");
        assert_eq!(p, vec!["campaign".to_string(), "spring 2026".to_string()]);
        let (r, _) = match_route("/v1/pauses/global").unwrap().unwrap();
        assert_eq!(r.path, "/v1/pauses/global");
        let (r, p) = match_route("/v1/suppressions/bob%40example.com")
            .unwrap()
            .unwrap();
        assert_eq!(r.path, "/v1/suppressions/{address}");
        assert_eq!(p, vec!["bob@example.com".to_string()]);
        assert!(match_route("/v1/pauses/campaign").unwrap().is_none());
        assert!(match_route("/v1/nope").unwrap().is_none());
        assert!(match_route("/v1/suppressions/%zz").is_err());
    }

    #[tokio::test]
    async fn refuses_public_address_without_token() {
        let guard = Guard::open(crate::GuardConfig::in_memory()).unwrap();
        let config = AdminConfig {
            listen: "0.0.0.0:0".into(),
            ..AdminConfig::default()
        };
        let e = AdminServer::bind(&config, Tokens::none(), guard.clone())
            .await
            .unwrap_err();
        assert!(matches!(e, AdminError::NoToken { .. }), "{e}");
        assert!(e.to_string().contains(TOKEN_ENV));
        // With a token the address is allowed (this one cannot be bound here: no such interface).
        let config = AdminConfig {
            listen: "192.0.2.1:0".into(),
            ..AdminConfig::default()
        };
        let r = AdminServer::bind(&config, Tokens::single("admin", "t"), guard).await;
        assert!(!matches!(r, Err(AdminError::NoToken { .. })));
    }
}
