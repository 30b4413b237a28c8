//! `GET /healthz` (no token), `GET /metrics` (Prometheus text) and `POST /v1/reload`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::http::{blocking, json, ApiError};
use super::Ctx;

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthV1 {
    /// Always `ok` when the daemon answers.
    pub status: String,
    /// Generation of the policies in force.
    pub policy_generation: u64,
}

/// `POST /v1/reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadV1 {
    /// Generation of the policies now in force.
    pub policy_generation: u64,
}

pub(super) fn healthz(ctx: &Ctx) -> Result<Response<Full<Bytes>>, ApiError> {
    json(&HealthV1 {
        status: "ok".into(),
        policy_generation: ctx.guard.policy_generation(),
    })
}

pub(super) fn metrics(ctx: &Ctx) -> Result<Response<Full<Bytes>>, ApiError> {
    // Refresh the gauges that are computed on demand.
    let _ = ctx.guard.ramps();
    let text = ctx.guard.render_metrics();
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Full::new(Bytes::from(text)))
        .map_err(|e| ApiError::internal(format!("cannot build the answer: {e}")))
}

pub(super) async fn reload(ctx: &Ctx) -> Result<Response<Full<Bytes>>, ApiError> {
    let guard = ctx.guard.clone();
    let generation = blocking(move || guard.reload()).await?;
    tracing::info!(actor = %ctx.actor, generation, "policies reloaded through the admin API");
    json(&ReloadV1 {
        policy_generation: generation,
    })
}
