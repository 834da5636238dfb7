//! The memory crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the memory crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// A database operation failed.
    #[error("database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: Box<rusqlite::Error>,
    },
    /// The database was written by a newer build.
    #[error("database {path} has schema version {found}, newer than this build understands ({supported}); upgrade persona")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// No user of that id exists.
    #[error("no user '{0}' (see `persona user list`)")]
    UnknownUser(String),
    /// A user id that cannot be used.
    #[error("invalid user id {id:?}: {reason}")]
    InvalidUserId {
        /// The id given.
        id: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// One record of an import file is malformed.
    #[error("{file}: record {record}: field '{field}': {message}")]
    ImportRecord {
        /// The import file.
        file: PathBuf,
        /// 1-based record number (line number for JSON Lines).
        record: usize,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The import file as a whole is malformed.
    #[error("{file}: {message}")]
    ImportFile {
        /// The import file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The user's vectors were made by another encoder than the one given.
    #[error("user '{user}' has records embedded with '{stored}', but the encoder in use is '{current}'; use the same encoder")]
    EncoderMismatch {
        /// The user id.
        user: String,
        /// The model that embedded the stored records.
        stored: String,
        /// The model in use now.
        current: String,
    },
    /// A stored vector has the wrong length or is malformed.
    #[error("record {record}: stored embedding is malformed ({reason})")]
    BadVector {
        /// The record id.
        record: i64,
        /// What is wrong.
        reason: String,
    },
    /// The HNSW index could not be built, saved or searched.
    #[error("vector index {path}: {source}")]
    Index {
        /// The index folder.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: crate::index::IndexError,
    },
    /// A persona version that does not exist was named as a parent.
    #[error("user '{user}' has no persona version {version}")]
    NoSuchVersion {
        /// The user id.
        user: String,
        /// The version asked for.
        version: i64,
    },
    /// The encoder or chat model failed.
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    /// A summary could not be produced.
    #[error("semantic memory: {0}")]
    Summary(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

/// Attaches a path to I/O errors.
pub(crate) trait IoContext<T> {
    /// Names the file or folder the error is about.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| MemoryError::Io { path: path.into(), source })
    }
}

impl MemoryError {
    /// Wraps an SQLite error with the database file it concerns.
    pub fn database(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        MemoryError::Database { path: path.into(), source: Box::new(source) }
    }
}
