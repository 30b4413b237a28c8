//! What every endpoint shares: JSON answers, JSON errors, capped bodies, blocking guard calls.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

use super::MAX_JSON_BODY;
use crate::GuardError;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorV1 {
    /// What went wrong and what to do about it.
    pub error: String,
}

/// An error answer: a status and a human-actionable message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            allow: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub(crate) fn method_not_allowed(method: &Method, allowed: &[&str]) -> ApiError {
        let allow = allowed.join(", ");
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("method {method} not allowed here; use {allow}"),
            allow: Some(allow),
        }
    }

    pub(crate) fn with_detail(mut self, detail: String) -> ApiError {
        self.message = format!("{}: {detail}", self.message);
        self
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "admin API request failed");
        }
        let body = serde_json::to_vec(&ErrorV1 {
            error: self.message,
        })
        .unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
        let mut b = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json");
        if self.status == StatusCode::UNAUTHORIZED {
            b = b.header(header::WWW_AUTHENTICATE, "Bearer realm=\"sendguard\"");
        }
        if let Some(allow) = self.allow {
            b = b.header(header::ALLOW, allow);
        }
        b.body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

impl From<GuardError> for ApiError {
    fn from(e: GuardError) -> ApiError {
        let status = match &e {
            GuardError::Invalid(_) => StatusCode::BAD_REQUEST,
            GuardError::Policy(_) | GuardError::Suppression(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GuardError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
                StatusCode::BAD_REQUEST
            }
            GuardError::State(_) | GuardError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A `200` answer with a JSON body.
pub(crate) fn json<T: Serialize>(value: &T) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = serde_json::to_vec_pretty(value)
        .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ApiError::internal(format!("cannot build the answer: {e}")))
}

/// Reads an optional JSON body (at most [`MAX_JSON_BODY`] bytes): empty means `T::default()`.
pub(crate) async fn read_json_opt<T: DeserializeOwned + Default>(
    body: Incoming,
    what: &str,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} body larger than {MAX_JSON_BODY} bytes"),
        )
    };
    // Read frame by frame: past the limit keep reading (and discarding) up to DRAIN_LIMIT, so a
    // client still sending its body gets the 413 instead of a broken pipe.
    const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
    let mut body = body;
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("cannot read the {what} body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_JSON_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > MAX_JSON_BODY {
        return Err(too_large());
    }
    let bytes = Bytes::from(buf);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed {what} body: {e}")))
}

/// Runs a guard call that writes to the state store off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GuardError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the operation did not finish: {e}")))?
        .map_err(ApiError::from)
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Decodes `%XX` escapes of a path segment.
pub(crate) fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request(format!("malformed percent-encoding in {s:?}"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad());
            }
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%40b.test").unwrap(), "a@b.test");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%ff").is_err());
        assert!(percent_decode("%+1").is_err());
    }
}
