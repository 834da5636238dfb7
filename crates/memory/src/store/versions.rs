//! Versioned per-user texts: semantic profiles and personas.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::{now, Store, User};
use crate::error::{MemoryError, Result};

/// One version of a user's semantic memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemanticProfile {
    /// 1, 2, ... per user.
    pub version: i64,
    /// The task kind the summary was made for (e.g. `news-category`).
    pub task: String,
    /// The summarization prompt used.
    pub prompt: String,
    /// The chat model that wrote it.
    pub model: String,
    /// The summary itself.
    pub summary: String,
    /// How many records it summarises.
    pub record_count: i64,
    /// When it was written (unix seconds).
    pub created_at: i64,
}

/// One version of a user's persona (system prompt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonaVersion {
    /// 1, 2, ... per user.
    pub version: i64,
    /// The version it was rewritten from (none for the first).
    pub parent: Option<i64>,
    /// The persona text.
    pub text: String,
    /// The feedback that produced it (none for the initial persona).
    pub feedback: Option<String>,
    /// When it was written (unix seconds).
    pub created_at: i64,
}

fn profile_from_row(r: &Row<'_>) -> rusqlite::Result<SemanticProfile> {
    Ok(SemanticProfile {
        version: r.get(0)?,
        task: r.get(1)?,
        prompt: r.get(2)?,
        model: r.get(3)?,
        summary: r.get(4)?,
        record_count: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn persona_from_row(r: &Row<'_>) -> rusqlite::Result<PersonaVersion> {
    Ok(PersonaVersion { version: r.get(0)?, parent: r.get(1)?, text: r.get(2)?, feedback: r.get(3)?, created_at: r.get(4)? })
}

const PROFILE_COLUMNS: &str = "version, task, prompt, model, summary, record_count, created_at";
const PERSONA_COLUMNS: &str = "version, parent_version, text, feedback, created_at";

impl Store {
    /// Stores a new semantic profile as the user's next version; returns it.
    pub fn add_semantic_profile(&mut self, user: &User, task: &str, prompt: &str, model: &str, summary: &str, record_count: i64) -> Result<SemanticProfile> {
        let path = self.path.clone();
        let err = |source| MemoryError::database(path.clone(), source);
        let tx = self.conn.transaction().map_err(err)?;
        let version: i64 =
            tx.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM semantic_profiles WHERE user_id = ?1", params![user.key], |r| r.get(0)).map_err(err)?;
        let created = now();
        tx.execute(
            "INSERT INTO semantic_profiles (user_id, version, task, prompt, model, summary, record_count, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![user.key, version, task, prompt, model, summary, record_count, created],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(SemanticProfile {
            version,
            task: task.into(),
            prompt: prompt.into(),
            model: model.into(),
            summary: summary.into(),
            record_count,
            created_at: created,
        })
    }

    /// Every semantic profile of the user, oldest first.
    pub fn semantic_profiles(&self, user: &User) -> Result<Vec<SemanticProfile>> {
        let sql = format!("SELECT {PROFILE_COLUMNS} FROM semantic_profiles WHERE user_id = ?1 ORDER BY version");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
        let rows = stmt.query_map(params![user.key], profile_from_row).map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.db_err(e))
    }

    /// The user's newest semantic profile, optionally for one task kind.
    pub fn latest_semantic_profile(&self, user: &User, task: Option<&str>) -> Result<Option<SemanticProfile>> {
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM semantic_profiles WHERE user_id = ?1 AND (?2 IS NULL OR task = ?2)
             ORDER BY version DESC LIMIT 1"
        );
        self.conn.query_row(&sql, params![user.key, task], profile_from_row).optional().map_err(|e| self.db_err(e))
    }

    /// Stores a persona as the user's next version; `parent` must be one of
    /// the user's versions (or none). Returns the stored version.
    pub fn add_persona_version(&mut self, user: &User, text: &str, parent: Option<i64>, feedback: Option<&str>) -> Result<PersonaVersion> {
        let path = self.path.clone();
        let err = |source| MemoryError::database(path.clone(), source);
        let tx = self.conn.transaction().map_err(err)?;
        if let Some(p) = parent {
            let exists =
                tx.query_row("SELECT 1 FROM persona_versions WHERE user_id = ?1 AND version = ?2", params![user.key, p], |_| Ok(())).optional().map_err(err)?;
            if exists.is_none() {
                return Err(MemoryError::NoSuchVersion { user: user.id.clone(), version: p });
            }
        }
        let version: i64 =
            tx.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM persona_versions WHERE user_id = ?1", params![user.key], |r| r.get(0)).map_err(err)?;
        let created = now();
        tx.execute(
            "INSERT INTO persona_versions (user_id, version, parent_version, text, feedback, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![user.key, version, parent, text, feedback, created],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(PersonaVersion { version, parent, text: text.into(), feedback: feedback.map(Into::into), created_at: created })
    }

    /// Every persona version of the user, oldest first.
    pub fn persona_versions(&self, user: &User) -> Result<Vec<PersonaVersion>> {
        let sql = format!("SELECT {PERSONA_COLUMNS} FROM persona_versions WHERE user_id = ?1 ORDER BY version");
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
        let rows = stmt.query_map(params![user.key], persona_from_row).map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.db_err(e))
    }

    /// The user's current persona (the newest version).
    pub fn latest_persona(&self, user: &User) -> Result<Option<PersonaVersion>> {
        let sql = format!("SELECT {PERSONA_COLUMNS} FROM persona_versions WHERE user_id = ?1 ORDER BY version DESC LIMIT 1");
        self.conn.query_row(&sql, params![user.key], persona_from_row).optional().map_err(|e| self.db_err(e))
    }
}
