//! The alert webhook: every pause, resume and expiry is POSTed as JSON to the `[alerts] webhook`
//! of the policies in force, with a Slack-compatible `text` field and the structured fields
//! beside it.
//!
//! The sender listens to [`Guard::subscribe`] and never slows the guard down: events wait in the
//! guard's broadcast channel while a delivery is in progress, and when too many pile up the
//! oldest are skipped (and logged). Each delivery has the policy's timeout and is retried a few
//! times with backoff on network errors, `429` and `5xx`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::guard::GuardEvent;
use crate::Guard;

/// Delivery attempts per alert.
pub const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled for every further one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The JSON body of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertV1 {
    /// One line for humans (what Slack and compatible chat webhooks display).
    pub text: String,
    /// `pause`, `resume` or `expire`.
    pub action: String,
    /// The scope kind: `global`, `campaign`, `tenant`, `sender` or `domain`.
    pub scope: String,
    /// The scope id; absent for global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The reason (of a pause) or the ramp (of a resume).
    pub reason: String,
    /// Who did it (`sendguard` for automatic actions).
    pub actor: String,
    /// When, RFC 3339.
    pub at: String,
    /// The host that sent the alert.
    pub host: String,
}

impl AlertV1 {
    /// Builds the alert for a guard event.
    pub fn from_event(event: &GuardEvent, host: &str) -> AlertV1 {
        let scope = &event.scope;
        let reason = event.reason.trim();
        let text = match event.action {
            "pause" => format!(
                ":octagonal_sign: sendguard on {host}: {scope} paused by {} — {reason}",
                event.actor
            ),
            "resume" if reason.is_empty() => {
                format!(
                    ":arrow_forward: sendguard on {host}: {scope} resumed by {} at full speed",
                    event.actor
                )
            }
            "resume" => format!(
                ":arrow_forward: sendguard on {host}: {scope} resumed by {} on {reason}",
                event.actor
            ),
            "expire" => {
                format!(":hourglass: sendguard on {host}: the pause of {scope} expired ({reason})")
            }
            other => format!(
                "sendguard on {host}: {other} {scope} by {} — {reason}",
                event.actor
            ),
        };
        AlertV1 {
            text,
            action: event.action.to_string(),
            scope: scope.kind().to_string(),
            id: scope.id().map(str::to_string),
            reason: reason.to_string(),
            actor: event.actor.clone(),
            at: humantime::format_rfc3339_millis(event.at).to_string(),
            host: host.to_string(),
        }
    }
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The webhook URL is not an `http(s)://` URL.
    #[error("alert webhook {url:?} is not an http:// or https:// URL")]
    BadUrl {
        /// The URL as configured.
        url: String,
    },
    /// No answer within the timeout.
    #[error("alert webhook {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection or the request failed.
    #[error("alert webhook {url}: {message}")]
    Network {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The webhook answered with an error status.
    #[error("alert webhook {url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
}

impl AlertError {
    fn retryable(&self) -> bool {
        match self {
            AlertError::BadUrl { .. } => false,
            AlertError::Timeout { .. } | AlertError::Network { .. } => true,
            AlertError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
        }
    }
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Delivers guard events to the webhook of the policies in force.
#[derive(Clone)]
pub struct AlertSender {
    guard: Guard,
    client: HttpsClient,
    host: String,
}

impl std::fmt::Debug for AlertSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSender")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl AlertSender {
    /// A sender for `guard`'s events (http:// and https:// webhooks).
    ///
    /// # Errors
    /// The TLS configuration could not be built.
    pub fn new(guard: Guard) -> Result<AlertSender, rustls::Error> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(AlertSender {
            guard,
            client,
            host: hostname(),
        })
    }

    /// Listens to the guard's events until `shutdown` and delivers each to the webhook
    /// configured at that moment (none configured: the event is only logged by the guard).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut events = self.guard.subscribe();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                e = events.recv() => e,
            };
            let event = match event {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "alert webhook too slow: alerts skipped");
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            };
            let policy = self.guard.policies().file.alerts.clone();
            let Some(url) = policy.webhook.filter(|u| !u.trim().is_empty()) else {
                continue;
            };
            let alert = AlertV1::from_event(&event, &self.host);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = self.deliver(&url, &alert, policy.timeout) => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, action = %alert.action, scope = %event.scope, "alert not delivered");
                    }
                }
            }
        }
    }

    /// Delivers one alert: up to [`ATTEMPTS`] attempts with doubling backoff on retryable
    /// failures, each attempt bounded by `timeout`.
    ///
    /// # Errors
    /// The last attempt's failure.
    pub async fn deliver(
        &self,
        url: &str,
        alert: &AlertV1,
        timeout: Duration,
    ) -> Result<(), AlertError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(url, alert, timeout).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "alert delivery failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(
        &self,
        url: &str,
        alert: &AlertV1,
        timeout: Duration,
    ) -> Result<(), AlertError> {
        let uri: hyper::Uri = url
            .trim()
            .parse()
            .ok()
            .filter(|u: &hyper::Uri| matches!(u.scheme_str(), Some("http" | "https")))
            .ok_or_else(|| AlertError::BadUrl { url: url.into() })?;
        let body = serde_json::to_vec(alert).map_err(|e| AlertError::Network {
            url: url.into(),
            message: format!("cannot encode the alert: {e}"),
        })?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("sendguard/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| AlertError::BadUrl { url: url.into() })?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| AlertError::Network {
                    url: url.into(),
                    message: format!("{e:#}"),
                })?;
            let status = resp.status();
            // Read the answer so the connection can be reused.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(AlertError::Status {
                    url: url.into(),
                    status,
                })
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AlertError::Timeout {
                url: url.into(),
                timeout,
            })?
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scope;
    use std::time::SystemTime;

    fn event(action: &'static str, reason: &str) -> GuardEvent {
        GuardEvent {
            action,
            scope: Scope::Campaign("spring".into()),
            reason: reason.into(),
            actor: "alice via admin".into(),
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn alert_text_and_fields() {
        let a = AlertV1::from_event(&event("pause", "merge tags leaked"), "mx1");
        assert!(
            a.text.contains("campaign spring paused by alice via admin"),
            "{}",
            a.text
        );
        assert!(a.text.contains("merge tags leaked"));
        assert_eq!(a.scope, "campaign");
        assert_eq!(a.id.as_deref(), Some("spring"));
        assert_eq!(a.at, "1970-01-01T00:00:00.000Z");
        let r = AlertV1::from_event(&event("resume", ""), "mx1");
        assert!(r.text.contains("at full speed"), "{}", r.text);
        let e = AlertV1::from_event(&event("expire", "night"), "mx1");
        assert!(e.text.contains("expired"), "{}", e.text);
    }

    #[tokio::test]
    async fn bad_url_is_not_retried() {
        let guard = Guard::open(crate::GuardConfig::in_memory()).unwrap();
        let sender = AlertSender::new(guard).unwrap();
        let a = AlertV1::from_event(&event("pause", "x"), "h");
        let e = sender
            .deliver("ftp://example.invalid/hook", &a, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, AlertError::BadUrl { .. }), "{e}");
        assert!(!e.retryable());
    }
}
