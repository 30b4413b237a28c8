//! The ledger database schema.

use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sends (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    campaign TEXT,
    tenant TEXT,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    domain TEXT NOT NULL,
    message_id TEXT,
    fingerprint TEXT,
    reply_code INTEGER,
    reply_text TEXT,
    refusal TEXT,
    findings TEXT,
    front_end TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sends_campaign_at ON sends(campaign, at);
CREATE INDEX IF NOT EXISTS sends_recipient ON sends(recipient);
-- Retention walks sends_campaign_at one campaign at a time; an index on `at` alone cost every
-- insert a fourth b-tree update. Ledgers created before that lose it here.
DROP INDEX IF EXISTS sends_at;
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,
    reason TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER,
    closed_by TEXT
);
CREATE TABLE IF NOT EXISTS incident_events (
    id INTEGER PRIMARY KEY,
    incident TEXT NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_events_incident ON incident_events(incident, id);
";

/// Opens a connection with the ledger's settings (WAL, synchronous=NORMAL) and the schema.
pub(crate) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 16384)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Milliseconds since the Unix epoch, the time format of every table.
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_ms`].
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_drops_the_index_older_ledgers_kept_on_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        open(&path)
            .unwrap()
            .execute_batch("CREATE INDEX sends_at ON sends(at);")
            .unwrap();
        let conn = open(&path).unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sends' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["sends_campaign_at", "sends_recipient"]);
    }
}
