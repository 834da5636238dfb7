//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Messages are lowercase and name the file, model, field or value involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A file the engine needs does not exist.
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
    /// The file is not a readable GGUF file.
    #[error("invalid GGUF file {path}: {reason}")]
    InvalidGguf {
        /// The GGUF path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The GGUF file is shorter than its own header says.
    #[error("truncated GGUF file {path}: tensor `{tensor}` ends at byte {needed} but the file has {actual} bytes")]
    TruncatedGguf {
        /// The GGUF path.
        path: PathBuf,
        /// The first tensor whose data lies past the end of the file.
        tensor: String,
        /// The byte offset the tensor's data needs.
        needed: u64,
        /// The file's real length.
        actual: u64,
    },
    /// The GGUF declares an architecture this engine cannot run.
    #[error("unsupported model architecture `{arch}` in {path} (supported: {supported})")]
    UnsupportedArchitecture {
        /// The architecture string from `general.architecture`.
        arch: String,
        /// The GGUF path.
        path: PathBuf,
        /// The supported architectures, comma separated.
        supported: String,
    },
    /// A required metadata key is missing or has the wrong type.
    #[error("GGUF metadata `{key}`: {reason}")]
    Metadata {
        /// The metadata key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Building or running the tokenizer failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// Constrained decoding could not continue (a grammar allows no token).
    #[error("constrained decoding: {0}")]
    Constraint(String),
    /// The chat template could not be parsed or rendered.
    #[error("chat template error: {0}")]
    ChatTemplate(String),
    /// The prompt plus the requested completion does not fit the context window.
    #[error("prompt too long: {prompt_tokens} prompt tokens + {max_tokens} max new tokens exceed the context window of {context_length} tokens (shorten the prompt, lower max tokens, or choose a truncation policy)")]
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The requested maximum of new tokens.
        max_tokens: usize,
        /// The model's usable context length.
        context_length: usize,
    },
    /// An invalid generation or sampling parameter.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter name.
        name: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
    /// A tensor operation inside candle failed.
    #[error("candle error while {op}: {source}")]
    Candle {
        /// What the engine was doing.
        op: String,
        /// The underlying candle error.
        #[source]
        source: Box<candle_core::Error>,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("device `{device}` is not available: {reason}")]
    Device {
        /// The device name.
        device: String,
        /// Why it is not available.
        reason: String,
    },
    /// A JSON Schema that cannot be enforced (see [`crate::json_schema`]).
    #[error("json schema at {path}: {reason}")]
    Schema {
        /// The schema node (`#/properties/name`).
        path: String,
        /// What is wrong or unsupported.
        reason: String,
    },
    /// The thread of a [`crate::SharedModel`] failed a step of its batch
    /// (every sequence in it gets this error) or has stopped.
    #[error("shared model: {0}")]
    Shared(String),
    /// The encoder's config or weights are malformed.
    #[error("encoder {path}: {reason}")]
    Encoder {
        /// The model folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::FileNotFound { path }
        } else {
            EngineError::Io { path, source }
        }
    }

    /// Wraps a candle error with the operation that caused it.
    pub fn candle(op: impl Into<String>, source: candle_core::Error) -> Self {
        EngineError::Candle { op: op.into(), source: Box::new(source) }
    }
}

/// Adds operation context to candle results.
pub(crate) trait CandleContext<T> {
    /// Maps a candle error into [`EngineError::Candle`] naming `op`.
    fn during(self, op: &str) -> Result<T>;
}

impl<T> CandleContext<T> for std::result::Result<T, candle_core::Error> {
    fn during(self, op: &str) -> Result<T> {
        self.map_err(|e| EngineError::candle(op, e))
    }
}
