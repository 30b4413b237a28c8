//! The SQLite store: one `state.db` in the state directory.

use super::StateError;
use crate::model::Scope;
use crate::policy::kill_switch::{rfc3339, scope_key, Pause};
use crate::ratelimit::RampSpec;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file name of the database inside the state directory.
pub const DB_FILE: &str = "state.db";

/// How long a writer waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema migrations, applied in order; `PRAGMA user_version` is the number applied so far.
const MIGRATIONS: &[&str] = &[
    // 1: pauses, their audit trail, ramps in progress, run-time suppression edits.
    "CREATE TABLE pauses (
        scope_kind TEXT NOT NULL,
        scope_key TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (scope_kind, scope_key)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        action TEXT NOT NULL,
        scope_kind TEXT,
        scope_id TEXT,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE ramps (
        scope_kind TEXT NOT NULL,
        scope_key TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        spec TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        PRIMARY KEY (scope_kind, scope_key)
    );
    CREATE TABLE suppression_overrides (
        entry TEXT PRIMARY KEY,
        op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
        actor TEXT NOT NULL,
        at INTEGER NOT NULL
    );",
];

/// One line of the audit trail: who changed what in the control state, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id; newer entries have larger ids.
    pub id: i64,
    /// When the change was made.
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// `pause`, `resume`, `expire`, `suppress`, `unsuppress`, or an action other modules record.
    pub action: String,
    /// The scope changed, for pause actions.
    pub scope: Option<Scope>,
    /// Who made the change (`sendguard` for automatic ones).
    pub actor: String,
    /// The pause's reason, where there is one.
    pub reason: String,
    /// Details: a ramp (`ramp 10/s..500/s/30m`), an expiry, a suppression entry.
    pub detail: String,
}

/// The durable control state: pauses, ramps in progress, run-time suppression edits and the
/// audit trail of all of them, in one SQLite database (WAL, `synchronous = FULL`).
///
/// Every write is one transaction, committed and synced before the method returns, so a pause
/// acknowledged to an operator survives a crash. The connection sits behind a mutex: the store is
/// `Send + Sync` and is meant for the control path (admin calls, sweeps, start-up), not for
/// per-message reads, which use in-memory snapshots ([`PauseSet`](crate::policy::kill_switch::PauseSet),
/// [`Ramps`](crate::ratelimit::Ramps)).
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

fn from_ns(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn scope_from(kind: Option<String>, id: Option<String>) -> Result<Option<Scope>, String> {
    let Some(kind) = kind else {
        return Ok(None);
    };
    let id = id.unwrap_or_default();
    Ok(Some(match kind.as_str() {
        "global" => Scope::Global,
        "campaign" => Scope::Campaign(id),
        "tenant" => Scope::Tenant(id),
        "sender" => Scope::Sender(id),
        "domain" => Scope::Domain(id),
        other => return Err(format!("unknown scope kind {other:?}")),
    }))
}

/// Checks and normalizes a suppression entry line: trimmed and lower-cased.
fn suppression_entry(entry: &str) -> Result<String, StateError> {
    let e = entry.trim();
    let invalid = |why| StateError::InvalidEntry {
        entry: entry.to_string(),
        why,
    };
    if e.is_empty() {
        return Err(invalid("empty"));
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace"));
    }
    if !e.contains('@') && !e.contains(':') {
        return Err(invalid(
            "expected an address, @domain, md5:HEX or sha256:HEX",
        ));
    }
    Ok(e.to_lowercase())
}

impl Store {
    /// Opens (creating when needed) `state.db` in `state_dir`, creating the directory too, and
    /// brings its schema up to date.
    ///
    /// # Errors
    /// The directory cannot be created, the database cannot be opened or migrated, or it was
    /// written by a newer sendguard.
    pub fn open(state_dir: &Path) -> Result<Store, StateError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StateError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| StateError::Open {
            path: path.clone(),
            source,
        })?;
        Store::init(conn, path)
    }

    /// A store in memory, for tests and for `check`-style runs that keep no state.
    ///
    /// # Errors
    /// SQLite cannot set up the database.
    pub fn open_in_memory() -> Result<Store, StateError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StateError::Open {
            path: path.clone(),
            source,
        })?;
        Store::init(conn, path)
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<Store, StateError> {
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_err)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::TooNew {
                path,
                found: version,
                known,
            });
        }
        for sql in MIGRATIONS
            .iter()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            tx.execute_batch(sql).map_err(open_err)?;
        }
        if version < known {
            tx.pragma_update(None, "user_version", known)
                .map_err(open_err)?;
        }
        tx.commit().map_err(open_err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql_err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: &'static str, detail: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            what,
            detail,
        }
    }

    /// Runs `f` with the connection, for tables other modules keep in the same database (ledger,
    /// incidents). They create their tables with their own `CREATE TABLE IF NOT EXISTS` calls.
    /// `f` runs under the store's lock: keep it short, and use a transaction for several writes.
    ///
    /// # Errors
    /// Whatever `f` returns, with the database path.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn).map_err(|e| self.sql_err(e))
    }

    /// Runs `f` in one immediate transaction and commits it.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Stores `pause` (replacing any pause of the same scope) and records it in the audit trail;
    /// durable when this returns.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn put_pause(&self, pause: &Pause) -> Result<(), StateError> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO pauses
                 (scope_kind, scope_key, scope_id, reason, actor, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    pause.scope.kind(),
                    scope_key(&pause.scope),
                    pause.scope.id().unwrap_or(""),
                    pause.reason,
                    pause.actor,
                    to_ns(pause.created_at),
                    pause.expires_at.map(to_ns),
                ],
            )?;
            let detail = match pause.expires_at {
                Some(t) => format!("until {}", rfc3339::format(t)),
                None => String::new(),
            };
            audit_row(
                tx,
                "pause",
                Some(&pause.scope),
                &pause.actor,
                &pause.reason,
                &detail,
            )
        })
    }

    fn take_pause(
        tx: &rusqlite::Transaction,
        scope: &Scope,
        only_expired_by: Option<i64>,
    ) -> rusqlite::Result<Option<(Pause, Option<String>)>> {
        let row = tx
            .query_row(
                "SELECT scope_kind, scope_id, reason, actor, created_at, expires_at FROM pauses
                 WHERE scope_kind = ?1 AND scope_key = ?2",
                params![scope.kind(), scope_key(scope)],
                pause_row,
            )
            .optional()?;
        let Some((pause, bad)) = row else {
            return Ok(None);
        };
        if let Some(now) = only_expired_by {
            if pause.expires_at.is_none_or(|e| to_ns(e) > now) {
                return Ok(None);
            }
        }
        tx.execute(
            "DELETE FROM pauses WHERE scope_kind = ?1 AND scope_key = ?2",
            params![scope.kind(), scope_key(scope)],
        )?;
        Ok(Some((pause, bad)))
    }

    /// Removes the pause of `scope` (a resume by `actor`; `detail` says how, e.g.
    /// `ramp 10/s..500/s/30m`) and records it; returns the pause, `None` (and no audit line) when
    /// there was none.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn remove_pause(
        &self,
        scope: &Scope,
        actor: &str,
        detail: &str,
    ) -> Result<Option<Pause>, StateError> {
        let taken = self.write(|tx| {
            let taken = Store::take_pause(tx, scope, None)?;
            if let Some((pause, _)) = &taken {
                audit_row(tx, "resume", Some(scope), actor, &pause.reason, detail)?;
            }
            Ok(taken)
        })?;
        self.checked(taken)
    }

    /// Resumes `scope` in one transaction: removes its pause and, with `ramp`, stores the ramp
    /// that starts now, so a crash never leaves the scope resumed without its ramp. The audit
    /// line's detail is `ramp FROM..TO/OVER` or `full speed`. `None` (nothing written) when the
    /// scope was not paused.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn resume(
        &self,
        scope: &Scope,
        actor: &str,
        ramp: Option<(&RampSpec, SystemTime)>,
    ) -> Result<Option<Pause>, StateError> {
        let taken = self.write(|tx| {
            let taken = Store::take_pause(tx, scope, None)?;
            if let Some((pause, _)) = &taken {
                let detail = match ramp {
                    Some((spec, started_at)) => {
                        put_ramp_row(tx, scope, spec, started_at)?;
                        format!("ramp {spec}")
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM ramps WHERE scope_kind = ?1 AND scope_key = ?2",
                            params![scope.kind(), scope_key(scope)],
                        )?;
                        "full speed".to_string()
                    }
                };
                audit_row(tx, "resume", Some(scope), actor, &pause.reason, &detail)?;
            }
            Ok(taken)
        })?;
        self.checked(taken)
    }

    /// Removes the pause of `scope` because it expired, recording action `expire` by actor
    /// `sendguard`.
    ///
    /// Only a pause whose expiry has passed (by the system clock) is removed, so a pause put on
    /// the same scope after the old one expired survives a late sweep; `None` otherwise.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn expire_pause(&self, scope: &Scope) -> Result<Option<Pause>, StateError> {
        self.expire_pause_at(scope, SystemTime::now())
    }

    /// [`expire_pause`](Store::expire_pause) judged at `now` instead of the system clock.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn expire_pause_at(
        &self,
        scope: &Scope,
        now: SystemTime,
    ) -> Result<Option<Pause>, StateError> {
        let now = to_ns(now);
        let taken = self.write(|tx| {
            let taken = Store::take_pause(tx, scope, Some(now))?;
            if let Some((pause, _)) = &taken {
                let detail = pause
                    .expires_at
                    .map(|t| format!("expired at {}", rfc3339::format(t)))
                    .unwrap_or_default();
                audit_row(
                    tx,
                    "expire",
                    Some(scope),
                    "sendguard",
                    &pause.reason,
                    &detail,
                )?;
            }
            Ok(taken)
        })?;
        self.checked(taken)
    }

    fn checked(&self, taken: Option<(Pause, Option<String>)>) -> Result<Option<Pause>, StateError> {
        match taken {
            Some((_, Some(bad))) => Err(self.corrupt("pause", bad)),
            Some((pause, None)) => Ok(Some(pause)),
            None => Ok(None),
        }
    }

    /// Every stored pause, oldest first (expired ones included until they are expired here).
    ///
    /// # Errors
    /// The database cannot be read or holds a row this version cannot understand.
    pub fn pauses(&self) -> Result<Vec<Pause>, StateError> {
        let rows = self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT scope_kind, scope_id, reason, actor, created_at, expires_at FROM pauses
                 ORDER BY created_at, scope_kind, scope_key",
            )?;
            let rows = stmt.query_map([], pause_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(pause, bad)| match bad {
                Some(bad) => Err(self.corrupt("pause", bad)),
                None => Ok(pause),
            })
            .collect()
    }

    /// The newest `limit` audit entries, newest first.
    ///
    /// # Errors
    /// The database cannot be read or holds a row this version cannot understand.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, at, action, scope_kind, scope_id, actor, reason, detail FROM audit
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(id, at, action, kind, sid, actor, reason, detail)| {
                Ok(AuditEntry {
                    id,
                    at: from_ns(at),
                    action,
                    scope: scope_from(kind, sid).map_err(|e| self.corrupt("audit entry", e))?,
                    actor,
                    reason,
                    detail,
                })
            })
            .collect()
    }

    /// Records an audit line for an action other modules take (an incident opened, an automatic
    /// pause's trigger), in its own transaction.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn record(
        &self,
        action: &str,
        scope: Option<&Scope>,
        actor: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), StateError> {
        self.write(|tx| audit_row(tx, action, scope, actor, reason, detail))
    }

    /// Stores the ramp of `scope` (replacing one there), so a restart continues it from
    /// `started_at`.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn put_ramp(
        &self,
        scope: &Scope,
        spec: &RampSpec,
        started_at: SystemTime,
    ) -> Result<(), StateError> {
        self.write(|tx| put_ramp_row(tx, scope, spec, started_at))
    }

    /// Forgets the ramp of `scope` (ended or stopped).
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn remove_ramp(&self, scope: &Scope) -> Result<(), StateError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM ramps WHERE scope_kind = ?1 AND scope_key = ?2",
                params![scope.kind(), scope_key(scope)],
            )
            .map(drop)
        })
    }

    /// Every stored ramp with its start time, oldest first; ramps that have ended are included
    /// until removed ([`Ramps`](crate::ratelimit::Ramps) drops them at once).
    ///
    /// # Errors
    /// The database cannot be read or holds a row this version cannot understand.
    pub fn ramps(&self) -> Result<Vec<(Scope, RampSpec, SystemTime)>, StateError> {
        let rows = self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT scope_kind, scope_id, spec, started_at FROM ramps
                 ORDER BY started_at, scope_kind, scope_key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(kind, id, spec, started)| {
                let scope = scope_from(Some(kind), Some(id))
                    .map_err(|e| self.corrupt("ramp", e))?
                    .unwrap_or(Scope::Global);
                let spec = spec
                    .parse::<RampSpec>()
                    .map_err(|e| self.corrupt("ramp", e.to_string()))?;
                Ok((scope, spec, from_ns(started)))
            })
            .collect()
    }

    /// Suppresses `entry` at run time (an address, `@domain`, `md5:HEX` or `sha256:HEX`; stored
    /// lower-cased), replacing a removal exception for it, and records it.
    ///
    /// # Errors
    /// An empty or malformed entry, or the database cannot be written.
    pub fn suppression_add(&self, entry: &str, actor: &str) -> Result<(), StateError> {
        self.suppression_add_many([entry], actor).map(drop)
    }

    /// Suppresses many entries in one transaction (bulk import), with one audit line; returns how
    /// many were given. Nothing is stored when one entry is malformed.
    ///
    /// # Errors
    /// A malformed entry (named in the error), or the database cannot be written.
    pub fn suppression_add_many<I>(&self, entries: I, actor: &str) -> Result<usize, StateError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let now = to_ns(SystemTime::now());
        let mut bad = None;
        let n = self.write(|tx| {
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO suppression_overrides (entry, op, actor, at)
                 VALUES (?1, 'add', ?2, ?3)",
            )?;
            let mut n = 0usize;
            let mut first = String::new();
            for entry in entries {
                let entry = match suppression_entry(entry.as_ref()) {
                    Ok(e) => e,
                    Err(e) => {
                        bad = Some(e);
                        return Err(rusqlite::Error::InvalidQuery);
                    }
                };
                stmt.execute(params![entry, actor, now])?;
                if n == 0 {
                    first = entry;
                }
                n += 1;
            }
            drop(stmt);
            match n {
                0 => {}
                1 => audit_row(tx, "suppress", None, actor, "", &first)?,
                n => audit_row(tx, "suppress", None, actor, "", &format!("{n} entries"))?,
            }
            Ok(n)
        });
        match (n, bad) {
            (_, Some(e)) => Err(e),
            (n, None) => n,
        }
    }

    /// Lifts the suppression of `entry`: removes a run-time add when there is one (`true`),
    /// otherwise records a removal exception that overrides the list files (`false`). Recorded in
    /// the audit trail either way.
    ///
    /// # Errors
    /// An empty or malformed entry, or the database cannot be written.
    pub fn suppression_remove(&self, entry: &str, actor: &str) -> Result<bool, StateError> {
        let entry = suppression_entry(entry)?;
        let now = to_ns(SystemTime::now());
        self.write(|tx| {
            let removed = tx.execute(
                "DELETE FROM suppression_overrides WHERE entry = ?1 AND op = 'add'",
                [&entry],
            )? > 0;
            let detail = if removed {
                entry.clone()
            } else {
                tx.execute(
                    "INSERT OR REPLACE INTO suppression_overrides (entry, op, actor, at)
                     VALUES (?1, 'remove', ?2, ?3)",
                    params![entry, actor, now],
                )?;
                format!("{entry} (exception to the list files)")
            };
            audit_row(tx, "unsuppress", None, actor, "", &detail)?;
            Ok(removed)
        })
    }

    /// The run-time suppression edits: `(adds, removals)`, each sorted. The effective list is the
    /// files' entries plus the adds, minus the removals.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn suppression_overrides(&self) -> Result<(Vec<String>, Vec<String>), StateError> {
        self.with_conn(|conn| {
            let mut stmt =
                conn.prepare("SELECT entry, op FROM suppression_overrides ORDER BY entry")?;
            let mut adds = Vec::new();
            let mut removals = Vec::new();
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let entry: String = row.get(0)?;
                if row.get::<_, String>(1)? == "add" {
                    adds.push(entry);
                } else {
                    removals.push(entry);
                }
            }
            Ok((adds, removals))
        })
    }
}

/// Reads a pause row; the second value names what was wrong with it, if anything.
fn pause_row(r: &rusqlite::Row) -> rusqlite::Result<(Pause, Option<String>)> {
    let kind: String = r.get(0)?;
    let id: String = r.get(1)?;
    let (scope, bad) = match scope_from(Some(kind), Some(id)) {
        Ok(scope) => (scope.unwrap_or(Scope::Global), None),
        Err(e) => (Scope::Global, Some(e)),
    };
    Ok((
        Pause {
            scope,
            reason: r.get(2)?,
            actor: r.get(3)?,
            created_at: from_ns(r.get(4)?),
            expires_at: r.get::<_, Option<i64>>(5)?.map(from_ns),
        },
        bad,
    ))
}

fn put_ramp_row(
    tx: &rusqlite::Transaction,
    scope: &Scope,
    spec: &RampSpec,
    started_at: SystemTime,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO ramps (scope_kind, scope_key, scope_id, spec, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            scope.kind(),
            scope_key(scope),
            scope.id().unwrap_or(""),
            spec.to_string(),
            to_ns(started_at),
        ],
    )
    .map(drop)
}

fn audit_row(
    tx: &rusqlite::Transaction,
    action: &str,
    scope: Option<&Scope>,
    actor: &str,
    reason: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO audit (at, action, scope_kind, scope_id, actor, reason, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            to_ns(SystemTime::now()),
            action,
            scope.map(Scope::kind),
            scope.map(|s| s.id().unwrap_or("")),
            actor,
            reason,
            detail,
        ],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_772_359_200 + secs)
    }

    fn pause(scope: Scope, reason: &str) -> Pause {
        Pause::new(scope, reason, "ops", at(0))
    }

    #[test]
    fn pause_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        let store = Store::open(&state).unwrap();
        assert_eq!(store.path(), state.join(DB_FILE));
        let mut p = pause(Scope::Campaign("spring".into()), "placeholder leak");
        p.created_at = UNIX_EPOCH + Duration::new(1_772_359_200, 123_456_789);
        p.expires_at = Some(at(7200));
        store.put_pause(&p).unwrap();
        // No orderly close: the connection is leaked, as if the process died.
        std::mem::forget(store);
        let again = Store::open(&state).unwrap();
        assert_eq!(again.pauses().unwrap(), vec![p]);
    }

    #[test]
    fn pauses_round_trip_and_replace() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.path(), Path::new(":memory:"));
        let scopes = [
            Scope::Global,
            Scope::Tenant("Acme".into()),
            Scope::Sender("news@x.test".into()),
            Scope::Sender("@x.test".into()),
            Scope::Domain("gmail.com".into()),
        ];
        for (i, s) in scopes.iter().enumerate() {
            let mut p = pause(s.clone(), "r");
            p.created_at = at(i as u64);
            store.put_pause(&p).unwrap();
        }
        let got: Vec<Scope> = store
            .pauses()
            .unwrap()
            .into_iter()
            .map(|p| p.scope)
            .collect();
        assert_eq!(got, scopes);
        // The same scope in another spelling replaces.
        let mut p = pause(Scope::Sender("NEWS@x.test".into()), "again");
        p.created_at = at(100);
        store.put_pause(&p).unwrap();
        assert_eq!(store.pauses().unwrap().len(), 5);
        let removed = store
            .remove_pause(&Scope::Sender("news@x.test".into()), "ana", "full speed")
            .unwrap();
        assert_eq!(removed, Some(p));
        assert_eq!(
            store
                .remove_pause(&Scope::Campaign("none".into()), "ana", "")
                .unwrap(),
            None
        );
        assert_eq!(store.pauses().unwrap().len(), 4);
    }

    #[test]
    fn audit_is_newest_first() {
        let store = Store::open_in_memory().unwrap();
        let scope = Scope::Campaign("spring".into());
        store.put_pause(&pause(scope.clone(), "leak")).unwrap();
        store
            .remove_pause(&scope, "ana", "ramp 10/s..500/s/30m")
            .unwrap();
        store.suppression_add("Anna@X.test", "ana").unwrap();
        let audit = store.audit(10).unwrap();
        let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["suppress", "resume", "pause"]);
        assert!(audit.windows(2).all(|w| w[0].id > w[1].id));
        let resume = &audit[1];
        assert_eq!(resume.scope, Some(scope));
        assert_eq!(resume.actor, "ana");
        assert_eq!(resume.reason, "leak");
        assert_eq!(resume.detail, "ramp 10/s..500/s/30m");
        assert_eq!(audit[0].detail, "anna@x.test");
        assert_eq!(audit[0].scope, None);
        assert_eq!(store.audit(1).unwrap().len(), 1);
        let json = serde_json::to_value(&audit[1]).unwrap();
        assert_eq!(
            json["scope"],
            serde_json::json!({"scope": "campaign", "id": "spring"})
        );
        assert!(json["at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn expire_only_removes_expired_pauses() {
        let store = Store::open_in_memory().unwrap();
        let scope = Scope::Tenant("acme".into());
        let mut p = pause(scope.clone(), "ttl");
        p.expires_at = Some(SystemTime::now() + Duration::from_secs(3600));
        store.put_pause(&p).unwrap();
        assert_eq!(store.expire_pause(&scope).unwrap(), None);
        store.put_pause(&pause(Scope::Global, "no ttl")).unwrap();
        assert_eq!(store.expire_pause(&Scope::Global).unwrap(), None);
        p.expires_at = Some(at(10));
        store.put_pause(&p).unwrap();
        assert_eq!(store.expire_pause(&scope).unwrap(), Some(p));
        let last = &store.audit(1).unwrap()[0];
        assert_eq!(
            (last.action.as_str(), last.actor.as_str()),
            ("expire", "sendguard")
        );
        assert_eq!(last.detail, "expired at 2026-03-01T10:00:10Z");
        assert_eq!(store.pauses().unwrap().len(), 1);
    }

    #[test]
    fn ramps_round_trip() {
        let store = Store::open_in_memory().unwrap();
        let a: RampSpec = "10/s..500/s/30m".parse().unwrap();
        let b: RampSpec = "1/s..9/s/1h in 3 steps".parse().unwrap();
        store.put_ramp(&Scope::Global, &a, at(5)).unwrap();
        store
            .put_ramp(&Scope::Campaign("c".into()), &b, at(1))
            .unwrap();
        store.put_ramp(&Scope::Global, &b, at(7)).unwrap();
        assert_eq!(
            store.ramps().unwrap(),
            vec![
                (Scope::Campaign("c".into()), b, at(1)),
                (Scope::Global, b, at(7))
            ]
        );
        store.remove_ramp(&Scope::Global).unwrap();
        store.remove_ramp(&Scope::Tenant("none".into())).unwrap();
        assert_eq!(store.ramps().unwrap().len(), 1);
    }

    #[test]
    fn suppression_overrides() {
        let store = Store::open_in_memory().unwrap();
        store.suppression_add(" Anna@X.test ", "ana").unwrap();
        store.suppression_add("@spam.test", "ana").unwrap();
        assert!(store.suppression_remove("anna@x.test", "ana").unwrap());
        assert!(!store.suppression_remove("bob@x.test", "ana").unwrap());
        store.suppression_add("MD5:ABCDEF", "ana").unwrap();
        assert_eq!(
            store.suppression_overrides().unwrap(),
            (
                vec!["@spam.test".to_string(), "md5:abcdef".to_string()],
                vec!["bob@x.test".to_string()]
            )
        );
        // Adding again replaces the removal exception.
        store.suppression_add("bob@x.test", "ana").unwrap();
        assert!(store.suppression_overrides().unwrap().1.is_empty());
        for bad in ["", "  ", "a b@x.test", "nobody"] {
            let err = store.suppression_add(bad, "ana").unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid suppression entry {bad:?}")),
                "{err}"
            );
        }
        let n = store
            .suppression_add_many(["c@x.test", "d@x.test"], "import")
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(store.audit(1).unwrap()[0].detail, "2 entries");
        assert!(store
            .suppression_add_many(["e@x.test", "bad"], "import")
            .is_err());
        assert!(!store
            .suppression_overrides()
            .unwrap()
            .0
            .contains(&"e@x.test".to_string()));
    }

    #[test]
    fn concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let other = Arc::new(Store::open(dir.path()).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(if t % 2 == 0 { &store } else { &other });
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let scope = Scope::Campaign(format!("c{t}-{i}"));
                        store
                            .put_pause(&pause(scope, "load"))
                            .map_err(|e| e.to_string())?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), Ok(()));
        }
        assert_eq!(store.pauses().unwrap().len(), 160);
        assert_eq!(other.audit(1000).unwrap().len(), 160);
    }

    #[test]
    fn unusable_state_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot create state directory {}", file.display())),
            "{err}"
        );
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(
            dir.path().join("db").join(DB_FILE),
            b"not sqlite at all, not at all",
        )
        .unwrap();
        let err = Store::open(&dir.path().join("db")).unwrap_err().to_string();
        assert!(
            err.contains(&dir.path().join("db").join(DB_FILE).display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .with_conn(|c| c.pragma_update(None, "user_version", 99))
            .unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
        assert!(
            err.contains(&dir.path().join(DB_FILE).display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn with_conn_serves_other_tables() {
        let store = Store::open_in_memory().unwrap();
        let n = store
            .with_conn(|c| {
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, rcpt TEXT);
                     INSERT INTO ledger (rcpt) VALUES ('a@x.test');",
                )?;
                c.query_row("SELECT count(*) FROM ledger", [], |r| r.get::<_, i64>(0))
            })
            .unwrap();
        assert_eq!(n, 1);
        let err = store
            .with_conn(|c| c.execute("INSERT INTO nowhere VALUES (1)", []))
            .unwrap_err();
        assert!(err.to_string().starts_with("state db :memory:"), "{err}");
    }

    #[test]
    fn unreadable_rows_are_reported() {
        let store = Store::open_in_memory().unwrap();
        store
            .with_conn(|c| {
                c.execute(
                    "INSERT INTO ramps VALUES ('campaign', 'x', 'x', 'fast please', 0)",
                    [],
                )
            })
            .unwrap();
        let err = store.ramps().unwrap_err().to_string();
        assert!(err.contains("unreadable ramp"), "{err}");
    }
}
