//! Admin API handlers for delivery events and the monitor.
//!
//! | method & path | does |
//! |---|---|
//! | `POST /v1/events` | ingest events; the content type picks the parser: `application/json` (generic form, or SendGrid's event webhook when it is an array of objects with `event`), `message/rfc822` or `multipart/report` (ARF). Answers `{"events": N, "suppressed": N, "paused": [...], "errors": [...]}` |
//! | `GET /v1/monitor` | rates per campaign and recipient domain over the window |
//!
//! A body that does not parse is refused whole with `400` and a JSON error naming the problem
//! (nothing of it is applied), so the sender can retry it.

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;
use std::time::SystemTime;

use super::{ingest, parse_body};
use crate::incident::http::{error, json, method_not_allowed};
use crate::monitor::Monitor;
use crate::Guard;

/// Handles an authenticated `POST /v1/events`.
pub async fn handle_events(
    guard: &Guard,
    monitor: &Arc<Monitor>,
    req: Request<Bytes>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return method_not_allowed();
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body();
    let headers = guard.policies().file.identity.campaign_headers.clone();
    let events = match parse_body(&ct, &body, &headers) {
        Ok(ev) => ev,
        Err(e) => {
            let status = if e.0.starts_with("unsupported content type") {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            } else {
                StatusCode::BAD_REQUEST
            };
            return error(status, &e.0);
        }
    };
    let g = guard.clone();
    let m = monitor.clone();
    match tokio::task::spawn_blocking(move || ingest(&g, &m, &events)).await {
        Ok(report) => json(StatusCode::OK, &report),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("task failed: {e}"),
        ),
    }
}

/// Handles an authenticated `GET /v1/monitor`.
pub async fn handle_monitor(monitor: &Monitor, req: Request<Bytes>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return method_not_allowed();
    }
    json(StatusCode::OK, &monitor.snapshot(SystemTime::now()))
}
