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
        let conn = Connection::open(&path).map_err(|source| MemoryError::database(path.clone(), source))?;
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
        MemoryError::database(self.path.clone(), source)
    }

    fn configure(&mut self) -> Result<()> {
        self.conn.busy_timeout(Duration::from_secs(30)).map_err(|e| self.db_err(e))?;
        // Write transactions take the write lock when they begin, so one
        // that reads first (the next version number) waits for another
        // connection's writer (up to the busy timeout) instead of failing
        // with "database is locked" when that writer commits in between,
        // which a deferred transaction cannot wait out.
        self.conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        // WAL: readers never block the writer; FULL: a committed transaction
        // survives power loss too.
        let mode: String = self.conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| self.db_err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite did not switch to WAL mode");
        }
        self.conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;").map_err(|e| self.db_err(e))
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
            let tx = self.conn.transaction().map_err(|e| MemoryError::database(self.path.clone(), e))?;
            // Another process may have migrated between our read and the
            // write lock; re-read inside the transaction.
            let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| MemoryError::database(self.path.clone(), e))?;
            if current == found {
                let sql = schema::MIGRATIONS[found as usize];
                tx.execute_batch(sql)
                    .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {}", found + 1)))
                    .map_err(|e| MemoryError::database(self.path.clone(), e))?;
                tracing::info!(version = found + 1, "migrated the memory database");
            }
            tx.commit().map_err(|e| MemoryError::database(self.path.clone(), e))?;
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
        self.conn.execute("INSERT OR IGNORE INTO users (name, created_at) VALUES (?1, ?2)", params![id, now()]).map_err(|e| self.db_err(e))?;
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
        let err = |source| MemoryError::database(path.clone(), source);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM users WHERE id = ?1", params![user.key]).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::NewRecord;

    fn rows(texts: &[&str]) -> Vec<(NewRecord, Vec<f32>)> {
        texts.iter().map(|t| (NewRecord::new(*t, format!("answer to {t}")), vec![1.0, 0.0])).collect()
    }

    #[test]
    fn writers_on_two_connections_wait_for_each_other() {
        // The server writes one user's store from two connections at once
        // (the engine thread stores exchanges while another thread builds
        // or aligns a persona). A write transaction that reads first (the
        // next version number) must wait for the other writer, not fail
        // with "database is locked" when the other commits in between.
        let dir = tempfile::tempdir().unwrap();
        let user = Store::open(dir.path()).unwrap().ensure_user("a").unwrap();
        let per_thread = 40;
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let (dir, user) = (dir.path().to_path_buf(), user.clone());
                std::thread::spawn(move || {
                    let mut store = Store::open(&dir).unwrap();
                    for i in 0..per_thread {
                        match t {
                            0 => store.insert_records(&user, "m", &rows(&[&format!("record {i}")])).map(|_| ()),
                            1 => store.add_persona_version(&user, &format!("persona {i}"), None, None).map(|_| ()),
                            _ => store.add_semantic_profile(&user, "task", "prompt", "model", &format!("summary {i}"), i).map(|_| ()),
                        }
                        .unwrap_or_else(|e| panic!("writer {t}, write {i}: {e}"));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let versions: Vec<i64> = store.persona_versions(&user).unwrap().iter().map(|v| v.version).collect();
        assert_eq!(versions, (1..=per_thread).collect::<Vec<_>>());
        assert_eq!(store.record_count(&user).unwrap(), per_thread);
    }

    #[test]
    fn schema_is_migrated_once_and_newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::SCHEMA_VERSION);
        let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        // Reopening keeps the data and the version.
        let store = Store::open(dir.path()).unwrap();
        store.ensure_user("a").unwrap();
        store.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, MemoryError::SchemaTooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn inserts_are_idempotent_and_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let a = store.ensure_user("alice").unwrap();
        let b = store.ensure_user("bob").unwrap();
        let r = store.insert_records(&a, "enc", &rows(&["x", "y"])).unwrap();
        assert_eq!((r.added, r.duplicates), (2, 0));
        let r = store.insert_records(&a, "enc", &rows(&["y", "z"])).unwrap();
        assert_eq!((r.added, r.duplicates), (1, 1));
        store.insert_records(&b, "enc", &rows(&["x"])).unwrap();
        assert_eq!(store.record_count(&a).unwrap(), 3);
        assert_eq!(store.record_count(&b).unwrap(), 1);
        // Bob's record id asked for as Alice's is not returned.
        let bob_ids: Vec<i64> = store.records(&b).unwrap().iter().map(|r| r.id).collect();
        assert!(store.records_by_ids(&a, &bob_ids).unwrap().is_empty());
        let alice_ids: Vec<i64> = store.records(&a).unwrap().iter().map(|r| r.id).rev().collect();
        let got: Vec<i64> = store.records_by_ids(&a, &alice_ids).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(got, alice_ids, "order of the ids asked for");
        let state = store.records_state(&a).unwrap();
        assert_eq!((state.count, state.models.clone()), (3, vec!["enc".to_string()]));
        assert_eq!(store.latest_records(&a, 1).unwrap()[0].query, "z");
    }

    #[test]
    fn deleting_a_user_removes_everything_of_theirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let a = store.ensure_user("alice").unwrap();
        let b = store.ensure_user("bob").unwrap();
        store.insert_records(&a, "enc", &rows(&["x"])).unwrap();
        store.insert_records(&b, "enc", &rows(&["x"])).unwrap();
        store.add_semantic_profile(&a, "general", "p", "m", "likes x", 1).unwrap();
        let v1 = store.add_persona_version(&a, "You are...", None, None).unwrap();
        store.add_persona_version(&a, "You are, better...", Some(v1.version), Some("be better")).unwrap();
        store.delete_user("alice").unwrap();
        assert!(store.user("alice").unwrap().is_none());
        for table in ["records", "semantic_profiles", "persona_versions"] {
            let n: i64 = store.conn.query_row(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?1"), [a.key], |r| r.get(0)).unwrap();
            assert_eq!(n, 0, "{table}");
        }
        assert_eq!(store.record_count(&b).unwrap(), 1);
        assert!(matches!(store.delete_user("alice"), Err(MemoryError::UnknownUser(_))));
        // A new user of the same name is a new key: nothing old comes back.
        let a2 = store.ensure_user("alice").unwrap();
        assert_ne!(a2.key, a.key);
        assert_eq!(store.record_count(&a2).unwrap(), 0);
    }

    #[test]
    fn versions_count_per_user_and_parents_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let a = store.ensure_user("alice").unwrap();
        let b = store.ensure_user("bob").unwrap();
        let p1 = store.add_persona_version(&a, "one", None, None).unwrap();
        let p2 = store.add_persona_version(&a, "two", Some(1), Some("feedback")).unwrap();
        assert_eq!((p1.version, p2.version, p2.parent), (1, 2, Some(1)));
        assert_eq!(store.add_persona_version(&b, "b1", None, None).unwrap().version, 1);
        assert!(matches!(store.add_persona_version(&b, "b2", Some(2), None), Err(MemoryError::NoSuchVersion { version: 2, .. })));
        assert_eq!(store.latest_persona(&a).unwrap().unwrap().text, "two");
        assert_eq!(store.persona_versions(&a).unwrap().len(), 2);
        store.add_semantic_profile(&a, "general", "p", "m", "s1", 3).unwrap();
        store.add_semantic_profile(&a, "news-category", "p", "m", "s2", 3).unwrap();
        assert_eq!(store.latest_semantic_profile(&a, None).unwrap().unwrap().summary, "s2");
        assert_eq!(store.latest_semantic_profile(&a, Some("general")).unwrap().unwrap().version, 1);
        assert!(store.latest_semantic_profile(&b, None).unwrap().is_none());
        let summary = store.user_summary("alice").unwrap();
        assert_eq!((summary.persona_versions, summary.semantic_versions), (2, 2));
    }

    #[test]
    fn user_ids_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.ensure_user("").is_err());
        assert!(store.ensure_user("a\nb").is_err());
        assert!(store.ensure_user(&"x".repeat(300)).is_err());
        assert!(store.ensure_user("user 42 / ü").is_ok());
    }
}
