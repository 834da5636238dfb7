//! Episodic records in the store.

use std::collections::HashSet;

use rusqlite::{params, params_from_iter, Row};

use super::{now, Store, User};
use crate::error::{MemoryError, Result};
use crate::record::{vector_from_bytes, vector_to_bytes, NewRecord, Record};

/// What one insert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertReport {
    /// Records written.
    pub added: usize,
    /// Records already there (same content) and left alone.
    pub duplicates: usize,
}

/// The state of a user's records that an index was built for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordsState {
    /// Number of records.
    pub count: i64,
    /// The largest record id (ids are never reused, so count + max id
    /// changes on every insert and delete).
    pub max_id: i64,
    /// The embedding models in use (more than one is an error).
    pub models: Vec<String>,
}

const RECORD_COLUMNS: &str = "id, query, response, metadata, timestamp, created_at";

fn record_from_row(r: &Row<'_>) -> rusqlite::Result<Record> {
    let meta: String = r.get(3)?;
    Ok(Record {
        id: r.get(0)?,
        query: r.get(1)?,
        response: r.get(2)?,
        metadata: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
        timestamp: r.get(4)?,
        created_at: r.get(5)?,
    })
}

impl Store {
    /// Which of `hashes` the user already has.
    pub fn existing_hashes(&self, user: &User, hashes: &[[u8; 32]]) -> Result<HashSet<[u8; 32]>> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM records WHERE user_id = ?1 AND content_hash = ?2").map_err(|e| self.db_err(e))?;
        let mut found = HashSet::new();
        for h in hashes {
            if stmt.exists(params![user.key, &h[..]]).map_err(|e| self.db_err(e))? {
                found.insert(*h);
            }
        }
        Ok(found)
    }

    /// Stores records with their vectors in one transaction: all of them or
    /// none. A record whose content the user already has is skipped.
    pub fn insert_records(&mut self, user: &User, model: &str, records: &[(NewRecord, Vec<f32>)]) -> Result<InsertReport> {
        let path = self.path.clone();
        let err = |source| MemoryError::database(path.clone(), source);
        let tx = self.conn.transaction().map_err(err)?;
        let mut report = InsertReport::default();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO records
                        (user_id, query, response, metadata, timestamp, content_hash, embedding_model, embedding, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            let created = now();
            for (rec, vector) in records {
                let meta = serde_json::Value::Object(rec.metadata.clone()).to_string();
                let n = stmt
                    .execute(params![user.key, rec.query, rec.response, meta, rec.timestamp, &rec.content_hash()[..], model, vector_to_bytes(vector), created])
                    .map_err(err)?;
                if n == 1 {
                    report.added += 1;
                } else {
                    report.duplicates += 1;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(report)
    }

    /// Number of records of a user.
    pub fn record_count(&self, user: &User) -> Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM records WHERE user_id = ?1", params![user.key], |r| r.get(0)).map_err(|e| self.db_err(e))
    }

    /// What an index of this user's records must match to be current.
    pub fn records_state(&self, user: &User) -> Result<RecordsState> {
        let (count, max_id): (i64, Option<i64>) = self
            .conn
            .query_row("SELECT COUNT(*), MAX(id) FROM records WHERE user_id = ?1", params![user.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.db_err(e))?;
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT embedding_model FROM records WHERE user_id = ?1 ORDER BY 1").map_err(|e| self.db_err(e))?;
        let models =
            stmt.query_map(params![user.key], |r| r.get(0)).and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>()).map_err(|e| self.db_err(e))?;
        Ok(RecordsState { count, max_id: max_id.unwrap_or(0), models })
    }

    /// A user's records, oldest first (by timestamp, then by insertion).
    pub fn records(&self, user: &User) -> Result<Vec<Record>> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE user_id = ?1 ORDER BY timestamp IS NULL, timestamp, id");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
        let rows = stmt.query_map(params![user.key], record_from_row).map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.db_err(e))
    }

    /// The user's `n` most recent records, newest first.
    pub fn latest_records(&self, user: &User, n: usize) -> Result<Vec<Record>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE user_id = ?1
             ORDER BY timestamp IS NULL DESC, timestamp DESC, id DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
        let rows = stmt.query_map(params![user.key, n as i64], record_from_row).map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.db_err(e))
    }

    /// The user's records with these ids, in the order of `ids`. Ids that
    /// are not this user's are left out: a record of another user can never
    /// come back, whatever the ids say.
    pub fn records_by_ids(&self, user: &User, ids: &[i64]) -> Result<Vec<Record>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(",");
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE user_id = ? AND id IN ({marks})");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.db_err(e))?;
        let args = std::iter::once(user.key).chain(ids.iter().copied());
        let rows = stmt.query_map(params_from_iter(args), record_from_row).map_err(|e| self.db_err(e))?;
        let mut found: Vec<Record> = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.db_err(e))?;
        found.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
        Ok(found)
    }

    /// Calls `f` with every (record id, vector) of the user whose id is
    /// above `after_id`, in id order, checking each vector's length.
    pub fn for_each_vector(&self, user: &User, dim: usize, after_id: i64, mut f: impl FnMut(i64, Vec<f32>)) -> Result<()> {
        let mut stmt = self.conn.prepare_cached("SELECT id, embedding FROM records WHERE user_id = ?1 AND id > ?2 ORDER BY id").map_err(|e| self.db_err(e))?;
        let mut rows = stmt.query(params![user.key, after_id]).map_err(|e| self.db_err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.db_err(e))? {
            let id: i64 = row.get(0).map_err(|e| self.db_err(e))?;
            let bytes: Vec<u8> = row.get(1).map_err(|e| self.db_err(e))?;
            let v = vector_from_bytes(&bytes).ok_or_else(|| MemoryError::BadVector { record: id, reason: format!("{} bytes", bytes.len()) })?;
            if v.len() != dim {
                return Err(MemoryError::BadVector { record: id, reason: format!("{} dimensions, expected {dim}", v.len()) });
            }
            f(id, v);
        }
        Ok(())
    }

    /// Deletes one record of the user; returns whether it existed.
    pub fn delete_record(&mut self, user: &User, id: i64) -> Result<bool> {
        let n = self.conn.execute("DELETE FROM records WHERE user_id = ?1 AND id = ?2", params![user.key, id]).map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }
}
