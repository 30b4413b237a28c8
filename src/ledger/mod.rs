//! The send ledger: every per-recipient outcome, durable in SQLite (`ledger.db` in the state
//! directory), written by a background writer through a bounded queue.
//!
//! Front-ends call [`Ledger::record`] (async) or [`Ledger::blocking_record`] (from plain
//! threads) with one [`LedgerRecord`] per recipient. Records go into a bounded queue; a
//! dedicated writer thread takes them out in batches and commits each batch in one transaction.
//! When the writer falls behind and the queue is full, producers wait for room (back-pressure):
//! a record is never dropped. Waits are counted in [`LedgerStats::producer_waits`].
//!
//! Queries ([`Ledger::campaign_report`], [`Ledger::affected_recipients`], …) run on a separate
//! read connection (WAL lets them run while the writer commits). They block: call them from
//! `spawn_blocking` or a plain thread, after [`Ledger::flush`] when they must see every record
//! queued so far.

mod query;
mod record;
mod schema;
mod writer;

pub use query::{Bucket, CampaignReport, Count, TokenCount};
pub use record::{fingerprint, refused_records, relayed_records, LedgerRecord, Outcome};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The file name of the ledger database inside the state directory.
pub const LEDGER_FILE: &str = "ledger.db";

/// `[ledger]`: how the send ledger is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Whether outcomes are recorded at all (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long records are kept (default 90 days); older ones are deleted periodically.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// Capacity of the queue between the front-ends and the writer, in records (default 8192).
    /// When it is full, producers wait.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Most records committed in one transaction (default 2000).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest a record waits for companions before its batch is committed (default 10ms).
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Slows the writer down by this much per batch, to exercise back-pressure in tests.
    #[doc(hidden)]
    #[serde(skip)]
    pub test_delay_per_batch: Option<Duration>,
}

fn yes() -> bool {
    true
}

fn default_retention() -> Duration {
    Duration::from_secs(90 * 86_400)
}

fn default_queue() -> usize {
    8192
}

fn default_batch() -> usize {
    2000
}

fn default_linger() -> Duration {
    Duration::from_millis(10)
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            enabled: true,
            retention: default_retention(),
            queue_capacity: default_queue(),
            batch_size: default_batch(),
            batch_linger: default_linger(),
            test_delay_per_batch: None,
        }
    }
}

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed.
    #[error("ledger database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// The state directory could not be created.
    #[error("cannot create ledger directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The ledger was closed; the record was not accepted.
    #[error("ledger is closed")]
    Closed,
    /// The writer thread could not be started.
    #[error("cannot start the ledger writer: {0}")]
    Writer(std::io::Error),
}

/// Counters of the ledger, for status and metrics.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LedgerStats {
    /// Records handed to the ledger.
    pub queued: u64,
    /// Records committed to the database.
    pub written: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Times a producer found the queue full and waited for room.
    pub producer_waits: u64,
    /// Failed commits (retried: the records stay queued).
    pub write_errors: u64,
    /// Records deleted by retention.
    pub expired: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    batches: AtomicU64,
    producer_waits: AtomicU64,
    write_errors: AtomicU64,
    expired: AtomicU64,
}

pub(crate) enum Cmd {
    Record(Box<LedgerRecord>),
    Flush(oneshot::Sender<()>),
    Purge(oneshot::Sender<u64>),
    Close(oneshot::Sender<()>),
}

/// The send ledger. Cheap to clone; every clone writes to the same queue.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    tx: mpsc::Sender<Cmd>,
    reader: Mutex<Connection>,
    counters: Arc<Counters>,
    config: LedgerConfig,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (or creates) `ledger.db` in `state_dir` and starts the writer thread.
    ///
    /// # Errors
    /// The directory cannot be created, the database cannot be opened or migrated, or the
    /// writer thread cannot start.
    pub fn open(state_dir: &Path, config: LedgerConfig) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(state_dir).map_err(|source| LedgerError::Io {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(LEDGER_FILE);
        let db = |source| LedgerError::Db {
            path: path.clone(),
            source,
        };
        let write_conn = schema::open(&path).map_err(db)?;
        let reader = schema::open(&path).map_err(db)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let handle = writer::spawn(write_conn, rx, config.clone(), counters.clone(), &path)
            .map_err(LedgerError::Writer)?;
        Ok(Ledger {
            inner: Arc::new(Inner {
                path,
                tx,
                reader: Mutex::new(reader),
                counters,
                config,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The configuration the ledger was opened with.
    pub fn config(&self) -> &LedgerConfig {
        &self.inner.config
    }

    /// Queues records for the writer, waiting for room when the queue is full.
    ///
    /// # Errors
    /// [`LedgerError::Closed`] once [`Ledger::close`] has run (the records were not taken).
    pub async fn record(
        &self,
        recs: impl IntoIterator<Item = LedgerRecord>,
    ) -> Result<(), LedgerError> {
        for rec in recs {
            if let Some(cmd) = self.try_queue(rec)? {
                self.inner
                    .tx
                    .send(cmd)
                    .await
                    .map_err(|_| LedgerError::Closed)?;
                self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Queues a record when there is room; hands it back (counted as a producer wait) when the
    /// queue is full, for the caller to wait in its own way.
    fn try_queue(&self, rec: LedgerRecord) -> Result<Option<Cmd>, LedgerError> {
        match self.inner.tx.try_send(Cmd::Record(Box::new(rec))) {
            Ok(()) => {
                self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                self.inner
                    .counters
                    .producer_waits
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Some(cmd))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(LedgerError::Closed),
        }
    }

    /// Queues records from a thread that is not running async code, blocking while the queue
    /// is full.
    ///
    /// Must not be called from inside an async task (it would block the runtime's thread; tokio
    /// panics on it): use [`Ledger::record`] there.
    ///
    /// # Errors
    /// [`LedgerError::Closed`] once [`Ledger::close`] has run.
    pub fn blocking_record(
        &self,
        recs: impl IntoIterator<Item = LedgerRecord>,
    ) -> Result<(), LedgerError> {
        for rec in recs {
            if let Some(cmd) = self.try_queue(rec)? {
                self.inner
                    .tx
                    .blocking_send(cmd)
                    .map_err(|_| LedgerError::Closed)?;
                self.inner.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Waits until every record queued before this call is committed.
    ///
    /// # Errors
    /// [`LedgerError::Closed`] when the writer has stopped.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Flush(tx))
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)
    }

    /// [`Ledger::flush`] for plain threads (not from inside an async task).
    ///
    /// # Errors
    /// [`LedgerError::Closed`] when the writer has stopped.
    pub fn blocking_flush(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .blocking_send(Cmd::Flush(tx))
            .map_err(|_| LedgerError::Closed)?;
        rx.blocking_recv().map_err(|_| LedgerError::Closed)
    }

    /// Deletes records older than the retention now (the writer also does it every hour);
    /// returns how many were deleted.
    ///
    /// # Errors
    /// [`LedgerError::Closed`] when the writer has stopped.
    pub async fn purge_expired(&self) -> Result<u64, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Purge(tx))
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)
    }

    /// Commits everything queued, stops the writer and waits for it. Records offered after
    /// this are refused with [`LedgerError::Closed`].
    ///
    /// # Errors
    /// [`LedgerError::Closed`] when the ledger was already closed.
    pub async fn close(&self) -> Result<(), LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Cmd::Close(tx))
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?;
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            // The writer has acknowledged the close; joining only reaps the thread.
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        Ok(())
    }

    /// The ledger's counters.
    pub fn stats(&self) -> LedgerStats {
        let c = &self.inner.counters;
        LedgerStats {
            queued: c.queued.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            producer_waits: c.producer_waits.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` with the read connection (blocking). Modules that keep their own tables in
    /// `ledger.db` (incidents) use it for their reads and their rare writes.
    ///
    /// # Errors
    /// What `f` returns, wrapped with the database path.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
        let conn = self.inner.reader.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(|source| LedgerError::Db {
            path: self.inner.path.clone(),
            source,
        })
    }
}
