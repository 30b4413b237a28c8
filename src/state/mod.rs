//! Durable control state: pauses, ramps in progress, run-time suppression edits and their audit
//! trail, in one SQLite database (`state.db`) in the state directory.
//!
//! [`Store`] is the database; [`ControlState`] wires it to the in-memory snapshots the guard
//! reads for every message (the [`PauseSet`](crate::policy::kill_switch::PauseSet) and the
//! [`Ramps`](crate::ratelimit::Ramps)): durable first, then in force. Other modules keep their own
//! tables in the same database through [`Store::with_conn`].

mod control;
mod store;

pub use control::ControlState;
pub use store::{AuditEntry, Store, DB_FILE};

use std::path::PathBuf;

/// The state store failed. Every message names the database (or directory) involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory could not be created.
    #[error("cannot create state directory {}: {source}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be opened or set up.
    #[error("cannot open state db {}: {source}", .path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A read or write failed.
    #[error("state db {}: {source}", .path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by a newer sendguard.
    #[error(
        "state db {} has schema version {found}, newer than this sendguard knows ({known}); upgrade sendguard",
        .path.display()
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A stored row cannot be understood.
    #[error("state db {} holds an unreadable {what}: {detail}", .path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What kind of row.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A suppression entry is empty or malformed.
    #[error("invalid suppression entry {entry:?}: {why}")]
    InvalidEntry {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        why: &'static str,
    },
}
