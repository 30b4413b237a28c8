//! The HTTP front-end: a reverse proxy in front of an email service's send API.
//!
//! Each route listens on one address, speaks one send-API dialect and forwards to one upstream.
//! A request to a send endpoint is buffered (up to `max_body`), translated by its dialect into
//! the common model (one [`Envelope`](crate::model::Envelope) and decoded
//! [`Content`](crate::model::Content) per message the service would send), judged by the
//! [`Guard`], and then either forwarded unchanged — headers except hop-by-hop ones, the body byte
//! for byte — or answered in the dialect's own error shape:
//!
//! | situation | status | notes |
//! |---|---|---|
//! | pause matching the request | `503` | `Retry-After` |
//! | resumed scope over its ramp rate | `429` | `Retry-After` |
//! | placeholder leak, or a merge tag without substitution data for a recipient | `422` | names the token, the recipient and where |
//! | suppressed recipients, `suppressed = "refuse"` (default) | `422` | names the recipients |
//! | suppressed recipients, `suppressed = "strip"` | upstream's | removed, the rest forwarded, `X-Sendguard-Suppressed: N` |
//! | malformed body | `400` | |
//! | body over `max_body` | `413` | |
//! | upstream unreachable / too slow | `502` / `504` | an upstream answer is relayed unchanged |
//!
//! Every refusal carries `X-Sendguard-Refusal: KIND` (`paused`, `rate-limited`, `placeholder`,
//! `missing-data`, `suppressed`, `malformed`, `too-large`, `upstream`).
//!
//! Strip mode re-serializes the body (JSON dialects: same fields in the same order, compact;
//! Mailgun forms: same fields in the same order, a new multipart boundary; raw: only the
//! `X-Sendguard-To` header changes). A request signed over its body — an
//! `Authorization: AWS4-HMAC-SHA256 …` header, or any request of a route with `signed = true` —
//! cannot be changed without breaking the signature: strip falls back to refuse (logged).
//!
//! Requests to paths that are not send endpoints (statistics, suppression management of the
//! service, …) are forwarded unchanged without a check.
//!
//! # Configuration
//!
//! ```toml
//! [http]
//! # One route from the top-level keys (or `serve --http-listen/--http-upstream/--http-dialect`).
//! listen = "127.0.0.1:8025"
//! upstream = "https://api.sendgrid.com"
//! dialect = "sendgrid"
//! suppressed = "refuse"            # or "strip"
//! max_body = 31457280              # bytes; 413 above
//! workers = 0                      # threads per route; 0 = one per CPU
//! # upstream_ca = "private-ca.pem" # extra trusted CAs, added to the webpki roots
//!
//! [[http.routes]]                  # more listeners, each with its own dialect and upstream
//! listen = "127.0.0.1:8027"
//! upstream = "https://api.mailgun.net"
//! dialect = "mailgun"
//! suppressed = "strip"
//! campaign_fields = ["v:campaign_id", "h:X-Campaign-Id", "o:tag"]
//! ```
//!
//! Without an upstream and without routes the HTTP proxy does not start (logged at info): a send
//! API has no local stand-in the way SMTP has a maildir.
//!
//! # Dialects
//! - `sendgrid`: `POST /v3/mail/send` (JSON).
//! - `mailgun`: `POST /v3/{domain}/messages` (multipart or urlencoded form) and
//!   `POST /v3/{domain}/messages.mime` (multipart with a `message` file part).
//! - `postmark`: `POST /email`, `POST /email/batch`, `POST /email/withTemplate`,
//!   `POST /email/batchWithTemplates` (JSON; a template send's content is stored at Postmark, so
//!   its envelope and its `TemplateModel` values are what is judged).
//! - `raw`: `POST /v1/messages`, an `message/rfc822` body with the envelope in `X-Sendguard-From`,
//!   `X-Sendguard-To` (comma list, repeatable), `X-Sendguard-Campaign`, `X-Sendguard-Tenant`.

mod answer;
mod decoded;
mod mailgun;
mod merge;
mod postmark;
mod proxy;
mod raw;
mod sendgrid;
mod translate;

pub use proxy::{HttpProxy, ProxyBody};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

use crate::Guard;

/// A send-API dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// SendGrid v3 `POST /v3/mail/send`.
    Sendgrid,
    /// Mailgun `POST /v3/{domain}/messages` and `/messages.mime`.
    Mailgun,
    /// Postmark `POST /email`, `/email/batch`, `/email/withTemplate`, `/email/batchWithTemplates`.
    Postmark,
    /// sendguard's own raw endpoint `POST /v1/messages` (RFC 5322 body, envelope in headers).
    Raw,
}

impl Dialect {
    /// The name as written in the configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sendgrid => "sendgrid",
            Dialect::Mailgun => "mailgun",
            Dialect::Postmark => "postmark",
            Dialect::Raw => "raw",
        }
    }

    /// Where the campaign id is looked up by default, in order.
    pub fn default_campaign_fields(self) -> Vec<String> {
        let v: &[&str] = match self {
            Dialect::Sendgrid => &["custom_args.campaign_id", "categories"],
            Dialect::Mailgun => &["v:campaign_id", "o:tag"],
            Dialect::Postmark => &["Metadata.campaign_id", "Tag"],
            Dialect::Raw => &["X-Sendguard-Campaign"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Where the tenant id is looked up by default, in order.
    pub fn default_tenant_fields(self) -> Vec<String> {
        let v: &[&str] = match self {
            Dialect::Sendgrid => &["custom_args.tenant_id"],
            Dialect::Mailgun => &["v:tenant_id"],
            Dialect::Postmark => &["Metadata.tenant_id"],
            Dialect::Raw => &["X-Sendguard-Tenant"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dialect {
    type Err = HttpError;

    fn from_str(s: &str) -> Result<Self, HttpError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sendgrid" => Ok(Dialect::Sendgrid),
            "mailgun" => Ok(Dialect::Mailgun),
            "postmark" => Ok(Dialect::Postmark),
            "raw" => Ok(Dialect::Raw),
            _ => Err(HttpError::Config(format!(
                "unknown http dialect {s:?}: expected sendgrid, mailgun, postmark or raw"
            ))),
        }
    }
}

/// What to do with a request that names suppressed recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuppressedMode {
    /// Refuse the whole request with `422` naming the suppressed recipients.
    #[default]
    Refuse,
    /// Remove the suppressed recipients and forward the rest (`X-Sendguard-Suppressed: N`).
    /// Falls back to refuse for requests signed over their body.
    Strip,
}

/// `[http]`: the HTTP proxy. The top-level `listen`/`upstream`/`dialect` describe one route
/// (used when `upstream` is set); `[[http.routes]]` add more. The other keys are defaults every
/// route inherits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Whether the HTTP proxy runs at all (default on).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Listen address of the top-level route (default `127.0.0.1:8025`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Upstream base URL of the top-level route, e.g. `https://api.sendgrid.com`, or
    /// `maildir:PATH` (raw dialect only) to keep accepted messages in a local maildir. Without it
    /// (and without routes) `serve` runs the raw endpoint into the SMTP front-end's maildir when
    /// that is the SMTP upstream, so a fresh checkout can try both front-ends.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Dialect of the top-level route (default `sendgrid`).
    #[serde(default = "default_dialect")]
    pub dialect: Dialect,
    /// Suppressed recipients: `refuse` (default) or `strip`.
    #[serde(default)]
    pub suppressed: SuppressedMode,
    /// Fields naming the campaign, tried in order (default: the dialect's own, see
    /// [`Dialect::default_campaign_fields`]). Forms: `custom_args.X` / `categories` (SendGrid),
    /// any form field such as `v:X`, `o:tag`, `h:X-Campaign-Id` (Mailgun), `Metadata.X`, `Tag`,
    /// `MessageStream` (Postmark), a header name (raw).
    #[serde(default)]
    pub campaign_fields: Option<Vec<String>>,
    /// Fields naming the tenant, tried in order (same forms as `campaign_fields`).
    #[serde(default)]
    pub tenant_fields: Option<Vec<String>>,
    /// Treat every request as signed over its body (strip falls back to refuse).
    #[serde(default)]
    pub signed: bool,
    /// Largest request body accepted, in bytes (default 30 MiB); larger ones get `413`.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// PEM file of extra CA certificates trusted for the upstream (private CAs, tests), added to
    /// the webpki roots.
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// Time to connect to the upstream (default 10s).
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time for the upstream to answer a forwarded request (default 60s); `504` after it.
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Time for a client to send its request headers and body (default 60s).
    #[serde(default = "default_client_timeout", with = "humantime_serde")]
    pub client_timeout: Duration,
    /// Idle upstream connections kept per host for reuse (default 256), per worker.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: usize,
    /// Worker threads per route (default 0: one per CPU). Each runs its own event loop with its
    /// own upstream connection pool, so a request and its upstream call stay on one thread.
    #[serde(default)]
    pub workers: usize,
    /// More routes, each on its own listener.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// `[[http.routes]]`: one listener, one dialect, one upstream. Unset keys inherit `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Listen address.
    pub listen: String,
    /// Upstream base URL (`http://` or `https://`).
    pub upstream: String,
    /// Dialect.
    pub dialect: Dialect,
    /// Suppressed recipients: `refuse` or `strip` (default: `[http]`'s).
    #[serde(default)]
    pub suppressed: Option<SuppressedMode>,
    /// Campaign fields (default: `[http]`'s, else the dialect's).
    #[serde(default)]
    pub campaign_fields: Option<Vec<String>>,
    /// Tenant fields (default: `[http]`'s, else the dialect's).
    #[serde(default)]
    pub tenant_fields: Option<Vec<String>>,
    /// Requests are signed over their body (default: `[http]`'s).
    #[serde(default)]
    pub signed: Option<bool>,
}

fn default_enabled() -> bool {
    true
}

fn default_listen() -> String {
    "127.0.0.1:8025".into()
}

fn default_dialect() -> Dialect {
    Dialect::Sendgrid
}

fn default_max_body() -> usize {
    30 * 1024 * 1024
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_upstream_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_client_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_pool_idle() -> usize {
    256
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: default_enabled(),
            listen: default_listen(),
            upstream: None,
            dialect: default_dialect(),
            suppressed: SuppressedMode::Refuse,
            campaign_fields: None,
            tenant_fields: None,
            signed: false,
            max_body: default_max_body(),
            upstream_ca: None,
            connect_timeout: default_connect_timeout(),
            upstream_timeout: default_upstream_timeout(),
            client_timeout: default_client_timeout(),
            pool_max_idle: default_pool_idle(),
            workers: 0,
            routes: Vec::new(),
        }
    }
}

/// One route with every default resolved.
#[derive(Debug, Clone)]
pub struct Route {
    /// Listen address.
    pub listen: String,
    /// Upstream base URL.
    pub upstream: String,
    /// Dialect.
    pub dialect: Dialect,
    /// Suppressed-recipient handling.
    pub suppressed: SuppressedMode,
    /// Campaign fields, in order.
    pub campaign_fields: Vec<String>,
    /// Tenant fields, in order.
    pub tenant_fields: Vec<String>,
    /// Requests are signed over their body.
    pub signed: bool,
}

impl HttpConfig {
    /// The routes to serve: the top-level one when `upstream` is set, then `[[http.routes]]`.
    /// Empty when nothing is configured (the proxy then does not start).
    pub fn routes(&self) -> Vec<Route> {
        let mut out = Vec::new();
        if let Some(up) = &self.upstream {
            out.push(Route {
                listen: self.listen.clone(),
                upstream: up.clone(),
                dialect: self.dialect,
                suppressed: self.suppressed,
                campaign_fields: self
                    .campaign_fields
                    .clone()
                    .unwrap_or_else(|| self.dialect.default_campaign_fields()),
                tenant_fields: self
                    .tenant_fields
                    .clone()
                    .unwrap_or_else(|| self.dialect.default_tenant_fields()),
                signed: self.signed,
            });
        }
        for r in &self.routes {
            out.push(Route {
                listen: r.listen.clone(),
                upstream: r.upstream.clone(),
                dialect: r.dialect,
                suppressed: r.suppressed.unwrap_or(self.suppressed),
                campaign_fields: r
                    .campaign_fields
                    .clone()
                    .or_else(|| self.campaign_fields.clone())
                    .unwrap_or_else(|| r.dialect.default_campaign_fields()),
                tenant_fields: r
                    .tenant_fields
                    .clone()
                    .or_else(|| self.tenant_fields.clone())
                    .unwrap_or_else(|| r.dialect.default_tenant_fields()),
                signed: r.signed.unwrap_or(self.signed),
            });
        }
        out
    }
}

/// Why the HTTP proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A configuration value is wrong.
    #[error("{0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// A worker thread or its event loop could not be started.
    #[error("cannot start http worker: {0}")]
    Worker(std::io::Error),
    /// The upstream CA file could not be used.
    #[error("cannot use upstream_ca {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Binds every configured route and returns the proxies with their listeners, ready for
/// [`HttpProxy::serve`]. Empty when no route is configured.
///
/// # Errors
/// A route whose upstream URL is unusable, an unusable `upstream_ca`, or an address that
/// cannot be bound.
pub async fn bind(
    config: &HttpConfig,
    guard: &Guard,
) -> Result<Vec<(tokio::net::TcpListener, HttpProxy)>, HttpError> {
    let mut out = Vec::new();
    for route in config.routes() {
        let proxy = HttpProxy::new(route.clone(), config, guard.clone())?;
        let listener = tokio::net::TcpListener::bind(&route.listen)
            .await
            .map_err(|source| HttpError::Bind {
                addr: route.listen.clone(),
                source,
            })?;
        out.push((listener, proxy));
    }
    Ok(out)
}

/// Serves one route on [`HttpConfig::workers`] threads (one per CPU by default), each with a
/// single-threaded event loop and its own upstream pool: a request, its judging and its upstream
/// call run on one thread without hand-offs, the way nginx's worker processes do. One acceptor
/// hands each new connection to the worker with the fewest open connections, so keep-alive
/// clients spread evenly however the kernel wakes the workers. Completes when the acceptor has
/// stopped and every worker has drained after `shutdown`.
///
/// # Errors
/// A worker that cannot be started; the first error of a worker once all have stopped.
pub fn serve_workers(
    listener: tokio::net::TcpListener,
    proxy: HttpProxy,
    config: &HttpConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<impl std::future::Future<Output = Result<(), HttpError>>, HttpError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let n = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    tracing::info!(
        listen = %proxy.route().listen,
        upstream = %proxy.route().upstream,
        dialect = %proxy.route().dialect,
        workers = n,
        "http proxy ready"
    );
    let mut done = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let proxy = if i == 0 {
            proxy.clone()
        } else {
            proxy.with_own_pool(config)?
        };
        let (hand, handed) = tokio::sync::mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        workers.push((hand, open.clone()));
        let shutdown = shutdown.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("sendguard-http-{i}"))
            .spawn(move || {
                let result = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(proxy.serve_handed(handed, open, shutdown)),
                    Err(e) => Err(HttpError::Worker(e)),
                };
                let _ = tx.send(result);
            })
            .map_err(HttpError::Worker)?;
        done.push(rx);
    }
    let acceptor = async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, %peer, "http connection could not be handed over");
                    continue;
                }
            };
            let Some((hand, open)) = workers
                .iter()
                .filter(|(hand, _)| !hand.is_closed())
                .min_by_key(|(_, open)| open.load(Ordering::Relaxed))
            else {
                tracing::error!("every http worker has stopped; no longer accepting");
                break;
            };
            open.fetch_add(1, Ordering::Relaxed);
            if hand.send((stream, peer)).is_err() {
                open.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(%peer, "an http worker stopped; connection closed");
            }
        }
        // Closing the hand-over channels lets the workers drain and stop.
        drop(workers);
    };
    let workers_done = async move {
        let mut result = Ok(());
        for rx in done {
            let outcome = match rx.await {
                Ok(r) => r,
                Err(_) => Err(HttpError::Worker(std::io::Error::other(
                    "an http worker panicked",
                ))),
            };
            if let Err(e) = outcome {
                tracing::error!(error = %e, "http worker stopped with an error");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    };
    Ok(async move {
        let ((), result) = tokio::join!(acceptor, workers_done);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_routes() {
        let c: HttpConfig = toml::from_str("").unwrap();
        assert!(c.routes().is_empty());
        assert_eq!(c.max_body, 30 * 1024 * 1024);
        let c: HttpConfig = toml::from_str(
            "upstream = \"http://127.0.0.1:1\"\nsuppressed = \"strip\"\n\
             [[routes]]\nlisten = \"127.0.0.1:2\"\nupstream = \"https://api.postmarkapp.com\"\n\
             dialect = \"postmark\"\nsuppressed = \"refuse\"\n",
        )
        .unwrap();
        let r = c.routes();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].dialect, Dialect::Sendgrid);
        assert_eq!(r[0].suppressed, SuppressedMode::Strip);
        assert_eq!(r[1].suppressed, SuppressedMode::Refuse);
        assert_eq!(r[1].campaign_fields, ["Metadata.campaign_id", "Tag"]);
        assert!(toml::from_str::<HttpConfig>("bogus = 1").is_err());
        assert!("smtp".parse::<Dialect>().is_err());
        assert_eq!("Mailgun".parse::<Dialect>().unwrap(), Dialect::Mailgun);
    }
}
