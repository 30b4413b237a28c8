//! `GET /v1/status`: policy version, reload errors, pauses, ramps, counters.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use super::http::{json, ApiError};
use super::pauses::{PauseV1, RampV1};
use super::Ctx;

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusV1 {
    /// Generation of the policies in force; grows with every successful reload.
    pub policy_generation: u64,
    /// The policy files in force.
    pub policy_files: Vec<String>,
    /// The last reload error, while the previous policies stay in force; `null` when the last
    /// reload worked.
    pub reload_error: Option<String>,
    /// Pauses in force.
    pub pauses: Vec<PauseV1>,
    /// Ramps in progress.
    pub ramps: Vec<RampV1>,
    /// Entries in the suppression index (list files and imports).
    pub suppression_entries: usize,
    /// Messages judged since the daemon started.
    pub messages_checked: u64,
    /// Messages refused since the daemon started.
    pub messages_refused: u64,
}

pub(super) fn get(ctx: &Ctx) -> Result<Response<Full<Bytes>>, ApiError> {
    let s = ctx.guard.status();
    json(&StatusV1 {
        policy_generation: s.policy_generation,
        policy_files: s.policy_files,
        reload_error: s.reload_error,
        pauses: s.pauses.iter().map(PauseV1::from).collect(),
        ramps: s.ramps.iter().map(RampV1::from).collect(),
        suppression_entries: s.suppression_entries,
        messages_checked: s.messages_checked,
        messages_refused: s.messages_refused,
    })
}
