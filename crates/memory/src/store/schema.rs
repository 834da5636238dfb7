//! The database schema and its migrations.
//!
//! The schema version lives in SQLite's `user_version`; each migration runs
//! in its own transaction together with the version bump, so a crash leaves
//! the database at the old or the new version, never between.

/// Each entry upgrades the schema by one version (index 0 -> version 1).
pub(crate) const MIGRATIONS: &[&str] = &[
    // Version 1: users, episodic records (with their vectors), semantic
    // profiles and persona versions.
    r#"
    CREATE TABLE users (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE records (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        query           TEXT NOT NULL,
        response        TEXT NOT NULL,
        metadata        TEXT NOT NULL DEFAULT '{}',
        timestamp       INTEGER,
        content_hash    BLOB NOT NULL,
        embedding_model TEXT NOT NULL,
        embedding       BLOB NOT NULL,
        created_at      INTEGER NOT NULL,
        UNIQUE (user_id, content_hash)
    );
    CREATE INDEX records_by_user_time ON records (user_id, timestamp, id);
    CREATE TABLE semantic_profiles (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        version      INTEGER NOT NULL,
        task         TEXT NOT NULL,
        prompt       TEXT NOT NULL,
        model        TEXT NOT NULL,
        summary      TEXT NOT NULL,
        record_count INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        UNIQUE (user_id, version)
    );
    CREATE TABLE persona_versions (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        version        INTEGER NOT NULL,
        parent_version INTEGER,
        text           TEXT NOT NULL,
        feedback       TEXT,
        created_at     INTEGER NOT NULL,
        UNIQUE (user_id, version)
    );
    "#,
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
