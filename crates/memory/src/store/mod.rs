//! The durable user store: one SQLite database (WAL, foreign keys, schema
//! migrations) holding users, episodic records with their vectors, semantic
//! profiles and persona versions.
//!
//! Every write is one transaction: after a crash each record is either fully
//! there (text, metadata and vector) or absent.

mod records;
mod schema;
mod versions;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{IoContext, MemoryError, Result};

pub use records::{InsertReport, RecordsState};
pub use versions::{PersonaVersion, SemanticProfile};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "persona.sqlite3";

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The store's internal key (never reused, also after deletion).
    #[serde(skip)]
    pub key: i64,
    /// The user's id as given by the caller.
    pub id: String,
    /// When the user was created (unix seconds).
    pub created_at: i64,
}

/// A user with counts, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    /// The user's id.
    pub id: String,
    /// Number of episodic records.
    pub records: i64,
    /// Number of semantic-profile versions.
    pub semantic_versions: i64,
    /// Number of persona versions.
    pub persona_versions: i64,
    /// The newest record's timestamp (unix seconds), if any has one.
    pub latest_record: Option<i64>,
    /// When the user was created (unix seconds).
    pub created_at: i64,
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Seconds since the unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Checks a caller-given user id.
pub fn validate_user_id(id: &str) -> Result<()> {
    let bad = |reason| Err(MemoryError::InvalidUserId { id: id.to_string(), reason });
    if id.trim().is_empty() {
        return bad("it is empty");
    }
    if id.len() > 256 {
        return bad("it is longer than 256 bytes");
    }
    if id.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database in `dir`, and brings its
    /// schema up to date.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).at(dir)?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| MemoryError::Database { path: path.clone(), source })?;
        let mut store = Store { conn, path };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wraps a SQLite error with the database path.
    pub(crate) fn db_err(&self, source: rusqlite::Error) -> MemoryError {
        MemoryError::Database { path: self.path.clone(), source }
    }

    fn configure(&mut self) -> Result<()> {
        self.conn.busy_timeout(Duration::from_secs(30)).map_err(|e| self.db_err(e))?;
        // WAL: readers never block the writer; FULL: a committed transaction
        // survives power loss too.
        let mode: String = self.conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| self.db_err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite did not switch to WAL mode");
        }
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
            .map_err(|e| self.db_err(e))
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.db_err(e))
    }

    fn migrate(&mut self) -> Result<()> {
        loop {
            let found = self.schema_version()?;
            if found > schema::SCHEMA_VERSION {
                return Err(MemoryError::SchemaTooNew { path: self.path.clone(), found, supported: schema::SCHEMA_VERSION });
            }
            if found == schema::SCHEMA_VERSION {
                return Ok(());
            }
            let tx = self.conn.transaction().map_err(|e| MemoryError::Database { path: self.path.clone(), source: e })?;
            // Another process may have migrated between our read and the
            // write lock; re-read inside the transaction.
            let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| MemoryError::Database { path: self.path.clone(), source: e })?;
            if current == found {
                let sql = schema::MIGRATIONS[found as usize];
                tx.execute_batch(sql)
                    .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {}", found + 1)))
                    .map_err(|e| MemoryError::Database { path: self.path.clone(), source: e })?;
                tracing::info!(version = found + 1, "migrated the memory database");
            }
            tx.commit().map_err(|e| MemoryError::Database { path: self.path.clone(), source: e })?;
        }
    }

    /// Looks a user up by id.
    pub fn user(&self, id: &str) -> Result<Option<User>> {
        self.conn
            .query_row("SELECT id, name, created_at FROM users WHERE name = ?1", params![id], |r| {
                Ok(User { key: r.get(0)?, id: r.get(1)?, created_at: r.get(2)? })
            })
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Looks a user up, failing with [`MemoryError::UnknownUser`].
    pub fn require_user(&self, id: &str) -> Result<User> {
        self.user(id)?.ok_or_else(|| MemoryError::UnknownUser(id.to_string()))
    }

    /// Returns the user, creating it if it does not exist.
    pub fn ensure_user(&self, id: &str) -> Result<User> {
        validate_user_id(id)?;
        self.conn
            .execute("INSERT OR IGNORE INTO users (name, created_at) VALUES (?1, ?2)", params![id, now()])
            .map_err(|e| self.db_err(e))?;
        self.require_user(id)
    }

    /// Every user with counts, ordered by id.
    pub fn users(&self) -> Result<Vec<UserSummary>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT u.name, u.created_at,
                    (SELECT COUNT(*) FROM records r WHERE r.user_id = u.id),
                    (SELECT COUNT(*) FROM semantic_profiles s WHERE s.user_id = u.id),
                    (SELECT COUNT(*) FROM persona_versions p WHERE p.user_id = u.id),
                    (SELECT MAX(timestamp) FROM records r WHERE r.user_id = u.id)
                 FROM users u ORDER BY u.name",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(UserSummary {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    records: r.get(2)?,
                    semantic_versions: r.get(3)?,
                    persona_versions: r.get(4)?,
                    latest_record: r.get(5)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.db_err(e))
    }

    /// One user's summary.
    pub fn user_summary(&self, id: &str) -> Result<UserSummary> {
        self.require_user(id)?;
        self.users()?.into_iter().find(|u| u.id == id).ok_or_else(|| MemoryError::UnknownUser(id.to_string()))
    }

    /// Keys of every user (to find index folders that belong to nobody).
    pub fn user_keys(&self) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare("SELECT id FROM users").map_err(|e| self.db_err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<Vec<i64>>>().map_err(|e| self.db_err(e))
    }

    /// Deletes a user and (by cascade, in one transaction) all of their
    /// records, profiles and persona versions. Returns the deleted user.
    pub fn delete_user(&mut self, id: &str) -> Result<User> {
        let user = self.require_user(id)?;
        let path = self.path.clone();
        let err = |source| MemoryError::Database { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM users WHERE id = ?1", params![user.key]).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(user)
    }
}
