//! The benchmark crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the benchmark crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LampError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A data file is malformed.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry and field.
        message: String,
    },
    /// An unknown task name.
    #[error("unknown task '{0}' (known: LaMP-1, LaMP-2M, LaMP-2N, LaMP-3)")]
    UnknownTask(String),
    /// A `--shard I/N` that cannot be read.
    #[error("shard '{spec}': {reason} (expected I/N with 0 <= I < N, e.g. 0/4)")]
    Shard {
        /// What was given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The agent crate refused a setting or failed (boxed: the agent's
    /// error carries the engine's and the memory's).
    #[error(transparent)]
    Agent(Box<persona_agent::AgentError>),
    /// The engine failed under a method (boxed, as the agent's).
    #[error(transparent)]
    Engine(Box<persona_engine::EngineError>),
    /// The user store or an index failed under a method.
    #[error(transparent)]
    Memory(Box<persona_memory::MemoryError>),
    /// A method name that is not one of the benchmark's.
    #[error("unknown method '{name}' (known: {known})")]
    UnknownMethod {
        /// The name given.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// A plot could not be drawn or written.
    #[error("plot {path}: {message}")]
    Plot {
        /// The file being written (empty before any file is chosen).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Reports that cannot be merged (different setups, a method twice).
    #[error("merge: {0}")]
    Merge(String),
    /// An output folder holds results made with other settings than this run's.
    #[error(
        "{path}: its results were made with {key} = {was}, this run has {key} = {now}; rerun with the same settings to resume, or choose another output folder"
    )]
    Settings {
        /// The folder's settings file.
        path: PathBuf,
        /// The first setting that differs.
        key: String,
        /// Its value in the folder.
        was: String,
        /// Its value in this run.
        now: String,
    },
    /// Predictions and golds do not line up.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A run setting that cannot work.
    #[error("invalid setting `{name}`: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// The benchmark crate's result type.
pub type Result<T, E = LampError> = std::result::Result<T, E>;

impl From<persona_agent::AgentError> for LampError {
    fn from(e: persona_agent::AgentError) -> Self {
        LampError::Agent(Box::new(e))
    }
}

impl From<persona_engine::EngineError> for LampError {
    fn from(e: persona_engine::EngineError) -> Self {
        LampError::Engine(Box::new(e))
    }
}

impl From<persona_memory::MemoryError> for LampError {
    fn from(e: persona_memory::MemoryError) -> Self {
        LampError::Memory(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_unknown_method_is_named_as_such() {
        let err = "best".parse::<crate::Method>().unwrap_err();
        assert!(matches!(&err, LampError::UnknownMethod { name, known } if name == "best" && known.contains("persona-agent")), "{err:?}");
    }

    #[test]
    fn errors_under_a_method_keep_their_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let memory = persona_memory::MemoryError::Io { path: "/x/y.db".into(), source: io };
        let err: LampError = persona_agent::AgentError::from(memory).into();
        // Transparent all the way down: the message is the store's, and the
        // operating system's error is still reachable as a source.
        assert_eq!(err.to_string(), "/x/y.db: denied");
        let mut source = err.source();
        let mut depth = 0;
        while let Some(s) = source {
            depth += 1;
            source = s.source();
        }
        assert!(depth >= 1, "the i/o cause is lost: {err:?}");
    }
}
