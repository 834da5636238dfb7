//! The agent crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the agent crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The inference engine failed.
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    /// The user's memory or store failed.
    #[error(transparent)]
    Memory(#[from] persona_memory::MemoryError),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An encyclopedia corpus file is malformed.
    #[error("corpus {path}: {message}")]
    Corpus {
        /// The corpus file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A tool call named no known tool or had bad arguments.
    #[error("tool call: {0}")]
    ToolCall(String),
    /// A tool failed while running.
    #[error("tool `{tool}`: {message}")]
    Tool {
        /// The tool's name.
        tool: String,
        /// What went wrong.
        message: String,
    },
    /// A setting is out of range.
    #[error("invalid setting `{name}`: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The model's chat template cannot continue a conversation with a new
    /// user turn after the assistant's (the answer turn needs it).
    #[error("the chat template cannot add a user turn after the assistant's: {0}")]
    Template(String),
    /// The model behind the agent cannot do what was asked (e.g. score
    /// labels through a shared model).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The user has no persona yet and none can be built.
    #[error("user '{user}': {reason}")]
    NoPersona {
        /// The user id.
        user: String,
        /// Why.
        reason: String,
    },
}

/// The agent crate's result type.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// Attaches a path to I/O errors.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| AgentError::Io { path: path.to_path_buf(), source })
    }
}
