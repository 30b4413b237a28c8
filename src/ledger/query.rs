//! Questions asked of the ledger: what a campaign did, who received it.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use std::time::{Duration, SystemTime};

use super::schema::{from_ms, to_ms};
use super::{Ledger, LedgerError, Outcome};

/// A key and how many records have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// The key (an outcome, a domain, a tenant).
    pub key: String,
    /// How many.
    pub count: u64,
}

/// A finding's rule and token, and how many records carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenCount {
    /// The rule that noticed it.
    pub rule: String,
    /// The offending text.
    pub token: String,
    /// Where it was seen.
    pub location: String,
    /// Records that carried it.
    pub count: u64,
    /// Of those, records the upstream accepted: how many recipients saw it.
    pub relayed: u64,
}

/// Sends of a campaign in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Start of the bucket.
    #[serde(with = "humantime_serde")]
    pub start: SystemTime,
    /// Recipients the upstream accepted in it.
    pub relayed: u64,
    /// Recipients refused (by sendguard or the upstream) in it.
    pub refused: u64,
}

/// Everything the ledger knows about one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignReport {
    /// The campaign.
    pub campaign: String,
    /// Records of the campaign.
    pub records: u64,
    /// Distinct recipients the upstream accepted the campaign for: the affected audience.
    pub relayed_recipients: u64,
    /// Records by outcome (every outcome, zero included).
    pub by_outcome: Vec<Count>,
    /// Relayed recipients by recipient domain, most first.
    pub by_domain: Vec<Count>,
    /// Relayed recipients by tenant, most first (`-` for none).
    pub by_tenant: Vec<Count>,
    /// Width of the time buckets.
    #[serde(with = "humantime_serde")]
    pub bucket_width: Duration,
    /// Sends over time.
    pub buckets: Vec<Bucket>,
    /// The first relayed send.
    #[serde(with = "humantime_serde::option")]
    pub first_send: Option<SystemTime>,
    /// The last relayed send.
    #[serde(with = "humantime_serde::option")]
    pub last_send: Option<SystemTime>,
    /// Findings by rule and token, most first.
    pub findings: Vec<TokenCount>,
    /// Distinct content fingerprints among relayed messages.
    pub fingerprints: u64,
}

impl CampaignReport {
    /// The count for one outcome.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.by_outcome
            .iter()
            .find(|c| c.key == outcome.as_str())
            .map_or(0, |c| c.count)
    }
}

const TOP: i64 = 100;

/// Bucket widths a report picks from: the smallest giving at most 60 buckets.
const WIDTHS: [u64; 9] = [
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
];

fn pick_width(span_ms: i64) -> u64 {
    let span = u64::try_from(span_ms / 1000).unwrap_or(0);
    WIDTHS
        .into_iter()
        .find(|w| span / w < 60)
        .unwrap_or(7 * 86_400)
}

impl Ledger {
    /// The report of one campaign (blocking; see the module docs).
    ///
    /// # Errors
    /// The database failed.
    pub fn campaign_report(&self, campaign: &str) -> Result<CampaignReport, LedgerError> {
        self.with_conn(|c| {
            let relayed = Outcome::Relayed.as_str();
            let mut by_outcome: Vec<Count> = Outcome::ALL
                .iter()
                .map(|o| Count {
                    key: o.as_str().to_string(),
                    count: 0,
                })
                .collect();
            let mut records = 0;
            {
                let mut st = c.prepare_cached(
                    "SELECT outcome, count(*) FROM sends WHERE campaign = ?1 GROUP BY outcome",
                )?;
                let rows = st.query_map(params![campaign], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (k, n) = row?;
                    let n = u64::try_from(n).unwrap_or(0);
                    records += n;
                    match by_outcome.iter_mut().find(|c| c.key == k) {
                        Some(c) => c.count = n,
                        None => by_outcome.push(Count { key: k, count: n }),
                    }
                }
            }
            let relayed_recipients: i64 = c.query_row(
                "SELECT count(DISTINCT recipient) FROM sends WHERE campaign = ?1 AND outcome = ?2",
                params![campaign, relayed],
                |r| r.get(0),
            )?;
            let group = |col: &str| -> rusqlite::Result<Vec<Count>> {
                let sql = format!(
                    "SELECT coalesce({col}, '-'), count(DISTINCT recipient) AS n FROM sends \
                     WHERE campaign = ?1 AND outcome = ?2 GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?3"
                );
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(params![campaign, relayed, TOP], |r| {
                    Ok(Count {
                        key: r.get(0)?,
                        count: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    })
                })?;
                rows.collect()
            };
            let by_domain = group("domain")?;
            let by_tenant = group("tenant")?;
            let (first, last): (Option<i64>, Option<i64>) = c.query_row(
                "SELECT min(at), max(at) FROM sends WHERE campaign = ?1 AND outcome = ?2",
                params![campaign, relayed],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (all_first, all_last): (Option<i64>, Option<i64>) = c.query_row(
                "SELECT min(at), max(at) FROM sends WHERE campaign = ?1",
                params![campaign],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let width = pick_width(all_last.unwrap_or(0) - all_first.unwrap_or(0));
            let width_ms = i64::try_from(width * 1000).unwrap_or(i64::MAX);
            let mut buckets: Vec<Bucket> = Vec::new();
            if let (Some(lo), Some(hi)) = (all_first, all_last) {
                let start = lo - lo.rem_euclid(width_ms);
                let n = (hi - start) / width_ms + 1;
                buckets = (0..n)
                    .map(|i| Bucket {
                        start: from_ms(start + i * width_ms),
                        relayed: 0,
                        refused: 0,
                    })
                    .collect();
                let mut st = c.prepare_cached(
                    "SELECT (at - ?2) / ?3 AS b, sum(outcome = ?4), sum(outcome != ?4) \
                     FROM sends WHERE campaign = ?1 GROUP BY b",
                )?;
                let rows = st.query_map(params![campaign, start, width_ms, relayed], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
                for row in rows {
                    let (b, ok, bad) = row?;
                    if let Some(bucket) = usize::try_from(b).ok().and_then(|b| buckets.get_mut(b))
                    {
                        bucket.relayed = u64::try_from(ok).unwrap_or(0);
                        bucket.refused = u64::try_from(bad).unwrap_or(0);
                    }
                }
            }
            let findings = {
                let mut st = c.prepare_cached(
                    "SELECT coalesce(json_extract(f.value, '$.rule'), ''), \
                            coalesce(json_extract(f.value, '$.token'), ''), \
                            coalesce(json_extract(f.value, '$.location'), ''), count(*) AS n, \
                            sum(s.outcome = ?3) \
                     FROM sends AS s, json_each(s.findings) AS f \
                     WHERE s.campaign = ?1 AND s.findings IS NOT NULL \
                     GROUP BY 1, 2, 3 ORDER BY n DESC, 1, 2 LIMIT ?2",
                )?;
                let rows = st.query_map(params![campaign, TOP, relayed], |r| {
                    Ok(TokenCount {
                        rule: r.get(0)?,
                        token: r.get(1)?,
                        location: r.get(2)?,
                        count: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                        relayed: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let fingerprints: i64 = c.query_row(
                "SELECT count(DISTINCT fingerprint) FROM sends WHERE campaign = ?1 AND outcome = ?2",
                params![campaign, relayed],
                |r| r.get(0),
            )?;
            Ok(CampaignReport {
                campaign: campaign.to_string(),
                records,
                relayed_recipients: u64::try_from(relayed_recipients).unwrap_or(0),
                by_outcome,
                by_domain,
                by_tenant,
                bucket_width: Duration::from_secs(width),
                buckets,
                first_send: first.map(from_ms),
                last_send: last.map(from_ms),
                findings,
                fingerprints: u64::try_from(fingerprints).unwrap_or(0),
            })
        })
    }

    /// The distinct recipients the upstream accepted a campaign for, sorted (blocking).
    ///
    /// # Errors
    /// The database failed.
    pub fn affected_recipients(&self, campaign: &str) -> Result<Vec<String>, LedgerError> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT recipient FROM sends WHERE campaign = ?1 AND outcome = ?2 \
                 ORDER BY recipient",
            )?;
            let rows = st.query_map(params![campaign, Outcome::Relayed.as_str()], |r| {
                r.get::<_, String>(0)
            })?;
            rows.collect()
        })
    }

    /// Whether the upstream has accepted the campaign for this recipient (blocking).
    ///
    /// # Errors
    /// The database failed.
    pub fn has_received(&self, campaign: &str, recipient: &str) -> Result<bool, LedgerError> {
        let recipient = crate::model::normalize_address(recipient);
        self.with_conn(|c| {
            c.query_row(
                "SELECT 1 FROM sends WHERE recipient = ?1 AND campaign = ?2 AND outcome = ?3 \
                 LIMIT 1",
                params![recipient, campaign, Outcome::Relayed.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
        })
    }

    /// Records of a campaign by outcome since a time (blocking): what the monitor and the
    /// status page show.
    ///
    /// # Errors
    /// The database failed.
    pub fn outcome_counts_since(
        &self,
        campaign: &str,
        since: SystemTime,
    ) -> Result<Vec<Count>, LedgerError> {
        self.with_conn(|c| {
            let mut st = c.prepare_cached(
                "SELECT outcome, count(*) FROM sends WHERE campaign = ?1 AND at >= ?2 \
                 GROUP BY outcome ORDER BY outcome",
            )?;
            let rows = st.query_map(params![campaign, to_ms(since)], |r| {
                Ok(Count {
                    key: r.get(0)?,
                    count: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                })
            })?;
            rows.collect()
        })
    }

    /// Total records in the ledger (blocking).
    ///
    /// # Errors
    /// The database failed.
    pub fn count(&self) -> Result<u64, LedgerError> {
        self.with_conn(|c| {
            c.query_row("SELECT count(*) FROM sends", [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
        })
    }
}
