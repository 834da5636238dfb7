//! The models crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading the manifest, fetching,
/// installing or verifying a model.
///
/// Messages are lowercase and name the file, model, URL or value involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// A file the store needs does not exist.
    #[error("file not found: {path}")]
    FileNotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// An I/O operation failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The models manifest is malformed.
    #[error("models manifest error: {0}")]
    Manifest(String),
    /// No model of that name is in the manifest.
    #[error("unknown model `{name}` (known: {known}); pass a manifest name or a path to a model file")]
    UnknownModel {
        /// The requested name.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// A model in the manifest is not installed yet.
    #[error("model `{name}` is not installed at {path}; run `persona models fetch {name}`")]
    NotInstalled {
        /// The model name.
        name: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// A downloaded or installed file does not match its manifest checksum or size.
    #[error("checksum mismatch for {path}: expected {expected}, got {actual} (the bad file was removed)")]
    ChecksumMismatch {
        /// The file that failed verification (now removed).
        path: PathBuf,
        /// The expected sha256 or size.
        expected: String,
        /// The computed sha256 or size.
        actual: String,
    },
    /// A network download failed.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A wheel archive could not be read or lacks a member.
    #[error("wheel {wheel}: {reason}")]
    Wheel {
        /// The wheel file name.
        wheel: String,
        /// What went wrong.
        reason: String,
    },
    /// The HuggingFace Hub path failed.
    #[error("huggingface hub: {0}")]
    Hub(String),
}

/// The models crate's result type.
pub type Result<T, E = ModelsError> = std::result::Result<T, E>;

impl ModelsError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelsError::FileNotFound { path }
        } else {
            ModelsError::Io { path, source }
        }
    }
}
