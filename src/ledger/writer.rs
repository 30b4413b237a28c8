//! The writer thread: takes records out of the queue in batches and commits each batch in one
//! transaction.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

use super::schema::to_ms;
use super::{Cmd, Counters, LedgerConfig, LedgerRecord};

const PURGE_EVERY: Duration = Duration::from_secs(3600);
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub(crate) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Cmd>,
    config: LedgerConfig,
    counters: Arc<Counters>,
    path: &Path,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let path = path.display().to_string();
    std::thread::Builder::new()
        .name("sendguard-ledger".into())
        .spawn(move || {
            let mut w = Writer {
                conn,
                config,
                counters,
                path,
                batch: Vec::new(),
                waiters: Vec::new(),
                last_purge: Instant::now() - PURGE_EVERY + Duration::from_secs(60),
            };
            rt.block_on(w.run(rx));
        })
}

struct Writer {
    conn: Connection,
    config: LedgerConfig,
    counters: Arc<Counters>,
    path: String,
    batch: Vec<LedgerRecord>,
    /// Flush requests answered after the current batch commits.
    waiters: Vec<oneshot::Sender<()>>,
    last_purge: Instant,
}

impl Writer {
    async fn run(&mut self, mut rx: mpsc::Receiver<Cmd>) {
        let batch_size = self.config.batch_size.max(1);
        loop {
            // Wait for the first command of a batch (waking up now and then for retention).
            let first = match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                Ok(Some(cmd)) => cmd,
                Ok(None) => {
                    self.commit().await;
                    return;
                }
                Err(_) => {
                    self.maybe_purge();
                    continue;
                }
            };
            let mut close = None;
            self.take(first, &mut close);
            let deadline = tokio::time::Instant::now() + self.config.batch_linger;
            while close.is_none() && self.batch.len() < batch_size && self.waiters.is_empty() {
                let cmd = match rx.try_recv() {
                    Ok(cmd) => cmd,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Sleep out the linger and take what arrived meanwhile, instead of
                        // waking for every record: at thousands of records a second that is one
                        // wake-up per batch rather than one per record.
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(deadline).await;
                        match rx.try_recv() {
                            Ok(cmd) => cmd,
                            Err(_) => break,
                        }
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                };
                self.take(cmd, &mut close);
            }
            self.commit().await;
            self.maybe_purge();
            if let Some(ack) = close {
                rx.close();
                // Commit whatever was queued before the close was seen.
                while let Some(cmd) = rx.recv().await {
                    let mut ignored = None;
                    self.take(cmd, &mut ignored);
                }
                self.commit().await;
                let _ = ack.send(());
                return;
            }
        }
    }

    fn take(&mut self, cmd: Cmd, close: &mut Option<oneshot::Sender<()>>) {
        match cmd {
            Cmd::Record(rec) => self.batch.push(*rec),
            Cmd::Flush(ack) => self.waiters.push(ack),
            Cmd::Purge(ack) => {
                let n = self.purge();
                let _ = ack.send(n);
            }
            Cmd::Close(ack) => *close = Some(ack),
        }
    }

    /// Commits the batch, retrying until the database takes it: records are never dropped.
    async fn commit(&mut self) {
        if !self.batch.is_empty() {
            if let Some(d) = self.config.test_delay_per_batch {
                tokio::time::sleep(d).await;
            }
            loop {
                match write_batch(&mut self.conn, &self.batch) {
                    Ok(()) => break,
                    Err(e) => {
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(db = %self.path, error = %e, records = self.batch.len(), "ledger write failed; retrying");
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                }
            }
            self.counters
                .written
                .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.batch.clear();
        }
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    fn maybe_purge(&mut self) {
        if self.last_purge.elapsed() >= PURGE_EVERY {
            self.purge();
        }
    }

    fn purge(&mut self) -> u64 {
        self.last_purge = Instant::now();
        let cutoff = SystemTime::now()
            .checked_sub(self.config.retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match purge_before(&self.conn, to_ms(cutoff)) {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(deleted = n, "ledger retention: old records deleted");
                }
                self.counters.expired.fetch_add(n, Ordering::Relaxed);
                n
            }
            Err(e) => {
                tracing::error!(db = %self.path, error = %e, "ledger retention failed");
                0
            }
        }
    }
}

/// Deletes every record older than `cutoff` (ms), one campaign at a time through
/// `sends_campaign_at`: a seek to each campaign and a range of old records in it, so the cost
/// follows the number of campaigns and of deleted records, not the size of the ledger — without
/// a separate index on `at` for every insert to update.
fn purge_before(conn: &Connection, cutoff: i64) -> rusqlite::Result<u64> {
    let mut deleted = conn.execute(
        "DELETE FROM sends WHERE campaign IS NULL AND at < ?1",
        params![cutoff],
    )? as u64;
    let mut next = conn.prepare_cached(
        "SELECT campaign FROM sends WHERE campaign > ?1 ORDER BY campaign LIMIT 1",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM sends WHERE campaign = ?1 AND at < ?2")?;
    // The empty string sorts before every other text; `>=` for the first step includes it.
    let mut campaign: Option<String> = conn
        .query_row(
            "SELECT campaign FROM sends WHERE campaign >= '' ORDER BY campaign LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    while let Some(c) = campaign {
        deleted += delete.execute(params![c, cutoff])? as u64;
        campaign = next.query_row(params![c], |row| row.get(0)).optional()?;
    }
    Ok(deleted)
}

/// Records per multi-row `INSERT`: one statement step per chunk instead of per record.
const ROWS_PER_INSERT: usize = 16;
const COLUMNS: usize = 14;

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO sends (at, outcome, campaign, tenant, sender, recipient, domain, \
         message_id, fingerprint, reply_code, reply_text, refusal, findings, front_end) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..COLUMNS {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", r * COLUMNS + c + 1));
        }
        sql.push(')');
    }
    sql
}

fn write_batch(conn: &mut Connection, batch: &[LedgerRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        static MANY: LazyLock<String> = LazyLock::new(|| insert_sql(ROWS_PER_INSERT));
        static ONE: LazyLock<String> = LazyLock::new(|| insert_sql(1));
        let mut many = tx.prepare_cached(&MANY)?;
        let mut one = tx.prepare_cached(&ONE)?;
        let mut chunks = batch.chunks_exact(ROWS_PER_INSERT);
        for chunk in &mut chunks {
            for (i, r) in chunk.iter().enumerate() {
                bind(&mut many, i * COLUMNS, r)?;
            }
            many.raw_execute()?;
        }
        for r in chunks.remainder() {
            bind(&mut one, 0, r)?;
            one.raw_execute()?;
        }
    }
    tx.commit()
}

/// Binds one record's columns from parameter `base + 1` on.
fn bind(
    stmt: &mut rusqlite::CachedStatement<'_>,
    base: usize,
    r: &LedgerRecord,
) -> rusqlite::Result<()> {
    let findings = if r.findings.is_empty() {
        None
    } else {
        serde_json::to_string(&r.findings).ok()
    };
    stmt.raw_bind_parameter(base + 1, to_ms(r.at))?;
    stmt.raw_bind_parameter(base + 2, r.outcome.as_str())?;
    stmt.raw_bind_parameter(base + 3, &r.campaign)?;
    stmt.raw_bind_parameter(base + 4, &r.tenant)?;
    stmt.raw_bind_parameter(base + 5, &r.sender)?;
    stmt.raw_bind_parameter(base + 6, &r.recipient)?;
    stmt.raw_bind_parameter(base + 7, r.domain())?;
    stmt.raw_bind_parameter(base + 8, &r.message_id)?;
    stmt.raw_bind_parameter(base + 9, &r.fingerprint)?;
    stmt.raw_bind_parameter(base + 10, r.reply_code)?;
    stmt.raw_bind_parameter(base + 11, &r.reply_text)?;
    stmt.raw_bind_parameter(base + 12, &r.refusal)?;
    stmt.raw_bind_parameter(base + 13, findings)?;
    stmt.raw_bind_parameter(base + 14, &r.front_end)?;
    Ok(())
}
