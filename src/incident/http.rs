//! Admin API handlers for incidents, under `/v1/incidents`.
//!
//! | method & path | does |
//! |---|---|
//! | `GET /v1/incidents` | list incidents, newest first |
//! | `POST /v1/incidents` | open: body `{"campaign": "...", "reason": "...", "actor": "..."}`; pauses the campaign |
//! | `GET /v1/incidents/{id}` | the incident with its timeline |
//! | `GET /v1/incidents/{id}/report` | the report as JSON; `?format=text` plain text, `?format=html` an HTML page |
//! | `GET /v1/incidents/{id}/audience` | affected recipients minus suppressed, `text/csv` (`recipient` header line) |
//! | `POST /v1/incidents/{id}/notes` | add a note: `{"text": "...", "actor": "..."}` |
//! | `POST /v1/incidents/{id}/close` | close: `{"note": "...", "actor": "..."}` (body optional) |
//!
//! Errors are JSON `{"error": "..."}`: `400` malformed body, `404` unknown incident, `409`
//! closed incident (or a second open incident for one campaign), `405` wrong method, `500`
//! database.

// Handlers return early with a ready error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{IncidentDesk, IncidentError};

/// Body of `POST /v1/incidents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenIncidentV1 {
    /// The campaign that went wrong.
    pub campaign: String,
    /// Why.
    pub reason: String,
    /// Who opens it (default `admin`).
    #[serde(default)]
    pub actor: Option<String>,
}

/// Body of `POST /v1/incidents/{id}/notes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteV1 {
    /// The note.
    pub text: String,
    /// Who writes it (default `admin`).
    #[serde(default)]
    pub actor: Option<String>,
}

/// Body of `POST /v1/incidents/{id}/close`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseIncidentV1 {
    /// A closing note.
    #[serde(default)]
    pub note: Option<String>,
    /// Who closes it (default `admin`).
    #[serde(default)]
    pub actor: Option<String>,
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode response: {e}"),
        ),
    }
}

/// A JSON error `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": msg }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A response with a body of the given content type.
pub(crate) fn typed(content_type: &'static str, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(text.into()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

/// Parses a JSON body; an empty body gives `T::default()` when `empty_ok`.
pub(crate) fn parse_json<T: DeserializeOwned + Default>(
    body: &[u8],
    empty_ok: bool,
) -> Result<T, Response<Full<Bytes>>> {
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("malformed request body: {e}"),
        )
    })
}

pub(crate) fn method_not_allowed() -> Response<Full<Bytes>> {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

pub(crate) fn not_found(path: &str) -> Response<Full<Bytes>> {
    error(StatusCode::NOT_FOUND, &format!("no such endpoint {path:?}"))
}

fn incident_error(e: IncidentError) -> Response<Full<Bytes>> {
    let status = match &e {
        IncidentError::NotFound(_) => StatusCode::NOT_FOUND,
        IncidentError::Invalid(_) => StatusCode::BAD_REQUEST,
        IncidentError::Closed(_) | IncidentError::AlreadyOpen(_) => StatusCode::CONFLICT,
        IncidentError::Ledger(_) | IncidentError::Guard(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

/// A query parameter's value.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IncidentError> + Send + 'static,
) -> Result<T, Response<Full<Bytes>>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(incident_error(e)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("task failed: {e}"),
        )),
    }
}

/// Handles an authenticated request under `/v1/incidents`. `rest` is the path after
/// `/v1/incidents`, split on `/` without empty segments (`[]`, `["INC-…"]`,
/// `["INC-…", "report"]`).
pub async fn handle(
    desk: &IncidentDesk,
    req: Request<Bytes>,
    rest: &[&str],
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_string);
    let body = req.into_body();
    let desk = desk.clone();
    let result = match (&method, rest) {
        (&Method::GET, []) => blocking(move || desk.list())
            .await
            .map(|v| json(StatusCode::OK, &v)),
        (&Method::POST, []) => match parse_json::<Option<OpenIncidentV1>>(&body, false) {
            Ok(Some(req)) => blocking(move || {
                desk.open(
                    &req.campaign,
                    &req.reason,
                    req.actor.as_deref().unwrap_or("admin"),
                )
            })
            .await
            .map(|v| json(StatusCode::OK, &v)),
            Ok(None) => Err(error(StatusCode::BAD_REQUEST, "missing request body")),
            Err(e) => Err(e),
        },
        (&Method::GET, [id]) => {
            let id = id.to_string();
            blocking(move || desk.get(&id))
                .await
                .map(|v| json(StatusCode::OK, &v))
        }
        (&Method::GET, [id, "report"]) => {
            let id = id.to_string();
            let format = query_param(query.as_deref(), "format")
                .unwrap_or("json")
                .to_string();
            if let Err(e) = desk.ledger().flush().await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
            }
            blocking(move || desk.report(&id))
                .await
                .and_then(|r| match format.as_str() {
                    "json" => Ok(json(StatusCode::OK, &r)),
                    "text" => Ok(typed("text/plain; charset=utf-8", super::render_text(&r))),
                    "html" => Ok(typed("text/html; charset=utf-8", super::render_html(&r))),
                    other => Err(error(
                        StatusCode::BAD_REQUEST,
                        &format!("unknown report format {other:?}: expected json, text or html"),
                    )),
                })
        }
        (&Method::GET, [id, "audience"]) => {
            let id = id.to_string();
            if let Err(e) = desk.ledger().flush().await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
            }
            blocking(move || desk.audience(&id)).await.map(|v| {
                let mut csv = String::with_capacity(v.len() * 24 + 10);
                csv.push_str("recipient\n");
                for r in v {
                    csv.push_str(&csv_field(&r));
                    csv.push('\n');
                }
                typed("text/csv; charset=utf-8", csv)
            })
        }
        (&Method::POST, [id, "notes"]) => match parse_json::<Option<NoteV1>>(&body, false) {
            Ok(Some(n)) => {
                let id = id.to_string();
                blocking(move || desk.note(&id, &n.text, n.actor.as_deref().unwrap_or("admin")))
                    .await
                    .map(|v| json(StatusCode::OK, &v))
            }
            Ok(None) => Err(error(StatusCode::BAD_REQUEST, "missing request body")),
            Err(e) => Err(e),
        },
        (&Method::POST, [id, "close"]) => match parse_json::<CloseIncidentV1>(&body, true) {
            Ok(c) => {
                let id = id.to_string();
                blocking(move || {
                    desk.close(
                        &id,
                        c.actor.as_deref().unwrap_or("admin"),
                        c.note.as_deref(),
                    )
                })
                .await
                .map(|v| json(StatusCode::OK, &v))
            }
            Err(e) => Err(e),
        },
        (_, [] | [_] | [_, "report" | "audience" | "notes" | "close"]) => Err(method_not_allowed()),
        _ => Err(not_found(&format!("/v1/incidents/{}", rest.join("/")))),
    };
    result.unwrap_or_else(|e| e)
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
