//! `GET/PUT/DELETE /v1/suppressions/{address}` (check, add, remove) and `POST /v1/suppressions`
//! (bulk import of a text body, one entry a line, streamed to the guard without holding it in
//! memory).

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Response;
use serde::{Deserialize, Serialize};
use std::io::{BufReader, Read};

use super::http::{blocking, json, ApiError};
use super::Ctx;

/// A suppression as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuppressionV1 {
    /// The address or entry as given in the path.
    pub address: String,
    /// Whether it is suppressed now.
    pub suppressed: bool,
    /// The entry that suppresses it (`bob@example.com`, `@example.com`, `md5:…`), or the
    /// normalised entry that was added or removed.
    pub entry: String,
    /// Where the suppressing entry comes from: a list file, `admin` for run-time edits; absent
    /// when not suppressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
}

/// `POST /v1/suppressions`: what the import did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportV1 {
    /// Entries read.
    pub imported: usize,
    /// Lines that were not entries (skipped).
    pub malformed: usize,
    /// The first few malformed lines.
    pub first_errors: Vec<String>,
    /// Entries in the suppression index afterwards.
    pub total_entries: usize,
}

fn is_address(s: &str) -> bool {
    s.rfind('@').is_some_and(|at| at > 0 && at + 1 < s.len())
}

pub(super) fn get(ctx: &Ctx, address: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let address = address.trim();
    if !is_address(address) {
        return Err(ApiError::bad_request(format!(
            "{address:?} is not an address: check one address at a time, e.g. bob@example.com"
        )));
    }
    match ctx.guard.suppression(address) {
        Some(m) => json(&SuppressionV1 {
            address: address.to_string(),
            suppressed: true,
            entry: m.entry.to_string(),
            list: Some(m.list.to_string()),
        }),
        None => Err(ApiError::not_found(format!("{address} is not suppressed"))),
    }
}

pub(super) async fn put(ctx: &Ctx, entry: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let guard = ctx.guard.clone();
    let actor = ctx.actor.clone();
    let given = entry.trim().to_string();
    let e = given.clone();
    let added = blocking(move || guard.suppress(&e, &actor)).await?;
    tracing::info!(entry = %added.to_line(), actor = %ctx.actor, "suppression added");
    json(&SuppressionV1 {
        address: given,
        suppressed: true,
        entry: added.to_line(),
        list: Some("admin".into()),
    })
}

pub(super) async fn delete(ctx: &Ctx, entry: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let guard = ctx.guard.clone();
    let actor = ctx.actor.clone();
    let given = entry.trim().to_string();
    let e = given.clone();
    let was = blocking(move || guard.unsuppress(&e, &actor)).await?;
    if !was {
        return Err(ApiError::not_found(format!("{given} is not suppressed")));
    }
    tracing::info!(entry = %given, actor = %ctx.actor, "suppression removed");
    let still = if is_address(&given) {
        ctx.guard.suppression(&given)
    } else {
        None
    };
    json(&SuppressionV1 {
        address: given.clone(),
        suppressed: still.is_some(),
        entry: still
            .as_ref()
            .map(|m| m.entry.to_string())
            .unwrap_or_else(|| given.to_lowercase()),
        list: still.map(|m| m.list.to_string()),
    })
}

/// Feeds the request body, chunk by chunk, to a blocking reader: the channel holds a few chunks
/// at most, so the upload waits while the import catches up.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while !self.current.has_remaining() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        self.current.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}

pub(super) async fn import(ctx: &Ctx, body: Incoming) -> Result<Response<Full<Bytes>>, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    let guard = ctx.guard.clone();
    let actor = ctx.actor.clone();
    let job = tokio::spawn(blocking(move || {
        let reader = BufReader::with_capacity(
            64 * 1024,
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
        );
        guard.import_suppressions(reader, &actor)
    }));
    let mut body = body;
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    if tx.send(Ok(data)).await.is_err() {
                        // The import stopped reading (it failed); its error is the answer.
                        break;
                    }
                }
            }
            Err(e) => {
                body_error = Some(e);
                break;
            }
        }
    }
    if let Some(e) = body_error {
        // The reader fails with this error, so a truncated upload is never applied.
        let _ = tx
            .send(Err(std::io::Error::other(format!("upload cut off: {e}"))))
            .await;
        drop(tx);
        let _ = job.await;
        return Err(ApiError::bad_request(format!(
            "cannot read the import body: {e}"
        )));
    }
    drop(tx);
    let report = job
        .await
        .map_err(|e| ApiError::internal(format!("the import did not finish: {e}")))??;
    json(&ImportV1 {
        imported: report.imported,
        malformed: report.malformed,
        first_errors: report.first_errors,
        total_entries: report.total_entries,
    })
}
