//! Answers sendguard gives itself, each in the error shape of the route's dialect, built in one
//! place through named constructors.
//!
//! | dialect | body |
//! |---|---|
//! | sendgrid | `{"errors":[{"message": M, "field": F, "help": null}]}` |
//! | mailgun | `{"message": M}` |
//! | postmark | `{"ErrorCode": N, "Message": M}` (N: 402 malformed JSON, 300 invalid request or leak, 406 suppressed, 405 paused, 429 rate limited, 413 too large, 0 upstream failure) |
//! | raw | `{"error": KIND, "message": M}` |

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use std::time::Duration;

use super::proxy::ProxyBody;
use super::Dialect;

/// Seconds a client is told to wait before retrying a paused send.
const PAUSE_RETRY_SECS: u64 = 60;

/// What sendguard answers and why.
pub(crate) struct Answer {
    status: StatusCode,
    kind: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl Answer {
    /// `400`: the body could not be read as the dialect's request.
    pub fn malformed(message: impl Into<String>) -> Answer {
        Answer::new(StatusCode::BAD_REQUEST, "malformed", message.into())
    }

    /// `413`: the body is over the size limit.
    pub fn too_large(limit: usize) -> Answer {
        Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("request body over the limit of {limit} bytes"),
        )
    }

    /// `408`: the client did not send its body in time.
    pub fn client_timeout() -> Answer {
        Answer::new(
            StatusCode::REQUEST_TIMEOUT,
            "malformed",
            "request body not received in time".into(),
        )
    }

    /// `422`: an unrendered placeholder.
    pub fn placeholder(token: &str, location: &str, label: &str) -> Answer {
        let at = if label.is_empty() {
            location.to_string()
        } else {
            format!("{location} of {label}")
        };
        Answer {
            field: Some(at.clone()),
            ..Answer::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "placeholder",
                format!("placeholder leak: unrendered {token} in {at}; nothing was sent"),
            )
        }
    }

    /// `503` with `Retry-After`: an unrendered placeholder under a rule whose action is
    /// `tempfail` — the client keeps the request and retries (after the template is fixed).
    pub fn placeholder_tempfail(token: &str, location: &str, label: &str) -> Answer {
        let refused = Answer::placeholder(token, location, label);
        Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(PAUSE_RETRY_SECS),
            message: format!("{}; retry later", refused.message),
            ..refused
        }
    }

    /// `422`: a merge tag has no substitution data for a recipient.
    pub fn missing_data(token: &str, recipient: &str, location: &str) -> Answer {
        Answer {
            field: Some(location.to_string()),
            ..Answer::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing-data",
                format!(
                    "merge tag {token} in {location} has no substitution data for recipient \
                     {recipient}; nothing was sent"
                ),
            )
        }
    }

    /// `422`: another policy refused the message.
    pub fn policy(detail: &str) -> Answer {
        Answer::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy",
            format!("refused by policy: {detail}; nothing was sent"),
        )
    }

    /// `503` with `Retry-After`: a policy whose action is `tempfail` (or a quarantine that could
    /// not keep its copy) refused the message; the client keeps it and retries.
    pub fn policy_tempfail(detail: &str) -> Answer {
        let refused = Answer::policy(detail);
        Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(PAUSE_RETRY_SECS),
            message: format!("{}; retry later", refused.message),
            ..refused
        }
    }

    /// `422`: suppressed recipients (refuse mode).
    pub fn suppressed(recipients: &[String]) -> Answer {
        Answer::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "suppressed",
            format!(
                "suppressed recipients: {}; nothing was sent",
                recipients.join(", ")
            ),
        )
    }

    /// `503` with `Retry-After`: a pause covers the request.
    pub fn paused(what: &str) -> Answer {
        Answer {
            retry_after: Some(PAUSE_RETRY_SECS),
            ..Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "paused",
                format!("sending paused: {what}; retry later"),
            )
        }
    }

    /// `429` with `Retry-After`: the scope is resuming on a ramp and over its rate.
    pub fn rate_limited(what: &str, retry: Duration) -> Answer {
        let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
        Answer {
            retry_after: Some(secs.max(1)),
            ..Answer::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("rate limited: {what}"),
            )
        }
    }

    /// `502`: the upstream could not be reached.
    pub fn bad_gateway(detail: &str) -> Answer {
        Answer::new(
            StatusCode::BAD_GATEWAY,
            "upstream",
            format!("upstream unreachable: {detail}"),
        )
    }

    /// `503` with `Retry-After`: the check itself failed inside sendguard (a bug); nothing was
    /// sent and the client keeps the request.
    pub fn check_failed() -> Answer {
        Answer {
            retry_after: Some(PAUSE_RETRY_SECS),
            ..Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "internal",
                "the request could not be checked; nothing was sent; retry later".into(),
            )
        }
    }

    /// `404`: a path a maildir route does not serve.
    pub fn not_found(path: &str) -> Answer {
        Answer::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "{path} is not a send endpoint of this route (it delivers into a local maildir)"
            ),
        )
    }

    /// `504`: the upstream did not answer in time.
    pub fn gateway_timeout() -> Answer {
        Answer::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream",
            "upstream did not answer in time; the message may or may not have been accepted".into(),
        )
    }

    fn new(status: StatusCode, kind: &'static str, message: String) -> Answer {
        Answer {
            status,
            kind,
            message,
            field: None,
            retry_after: None,
        }
    }

    /// The status code.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn postmark_code(&self) -> u16 {
        match self.kind {
            "malformed" => 402,
            "suppressed" => 406,
            "paused" => 405,
            "rate-limited" => 429,
            "too-large" => 413,
            "upstream" => 0,
            _ => 300,
        }
    }

    /// The response in the dialect's shape.
    pub fn into_response(self, dialect: Dialect) -> Response<ProxyBody> {
        let body = match dialect {
            Dialect::Sendgrid => serde_json::json!({
                "errors": [{"message": self.message, "field": self.field, "help": null}]
            }),
            Dialect::Mailgun => serde_json::json!({ "message": self.message }),
            Dialect::Postmark => serde_json::json!({
                "ErrorCode": self.postmark_code(),
                "Message": self.message
            }),
            Dialect::Raw => serde_json::json!({ "error": self.kind, "message": self.message }),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::new(Either::Left(Full::new(Bytes::from(bytes))));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-sendguard-refusal", HeaderValue::from_static(self.kind));
        if let Some(s) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tempfail_leak_is_retryable() {
        let a = Answer::placeholder_tempfail("{{x}}", "subject", "");
        assert_eq!(a.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(a.retry_after, Some(PAUSE_RETRY_SECS));
        assert!(a.message.contains("{{x}}") && a.message.contains("retry later"));
        let r = a.into_response(Dialect::Sendgrid);
        assert!(r.headers().contains_key(http::header::RETRY_AFTER));
        let a = Answer::placeholder("{{x}}", "subject", "");
        assert_eq!(a.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let a = Answer::policy_tempfail("apology.lint: no-reply sender");
        assert_eq!(a.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.message.contains("no-reply sender") && a.message.ends_with("retry later"));
        let r = a.into_response(Dialect::Postmark);
        assert!(r.headers().contains_key(http::header::RETRY_AFTER));
        assert_eq!(r.headers()["x-sendguard-refusal"], "policy");
        let a = Answer::check_failed();
        assert_eq!(a.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(a.retry_after, Some(PAUSE_RETRY_SECS));
    }
}
