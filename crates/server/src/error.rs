//! The server's errors: [`ServerError`] for starting and running it,
//! [`ApiError`] for a request, answered in OpenAI's error shape
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use persona_agent::AgentError;
use persona_engine::EngineError;
use persona_memory::MemoryError;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The models or the user store failed to load.
    #[error("loading failed: {0}")]
    Load(String),
    /// A setting is out of range.
    #[error("invalid setting `{name}`: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answered to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, `authentication_error`,
    /// `not_found_error`, `server_error`...).
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code (`context_length_exceeded`, `model_not_found`...).
    pub code: Option<&'static str>,
    /// Seconds the client should wait before retrying (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }

    /// 400: the request cannot be served as asked.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 422: malformed JSON or a field of the wrong type.
    pub fn unprocessable(message: impl Into<String>, param: Option<String>) -> Self {
        ApiError { param, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", message) }
    }

    /// 404: an unknown model, user or job.
    pub fn not_found(message: impl Into<String>, param: &str, code: &'static str) -> Self {
        ApiError { param: Some(param.into()), code: Some(code), ..Self::new(StatusCode::NOT_FOUND, "not_found_error", message) }
    }

    /// 401: a missing or wrong API key.
    pub fn unauthorized() -> Self {
        ApiError {
            code: Some("invalid_api_key"),
            ..Self::new(StatusCode::UNAUTHORIZED, "authentication_error", "missing or wrong API key (send `Authorization: Bearer KEY`)")
        }
    }

    /// 413: a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", format!("request body over the limit of {limit} bytes"))
    }

    /// 503: still loading the models.
    pub fn loading() -> Self {
        ApiError { retry_after: Some(5), code: Some("loading"), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the models are still loading") }
    }

    /// 503: the queue is full.
    pub fn overloaded(limit: usize) -> Self {
        ApiError {
            retry_after: Some(1),
            code: Some("overloaded"),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", format!("the server is busy ({limit} requests running or queued); retry shortly"))
        }
    }

    /// 409: the request conflicts with work under way (e.g. a second
    /// alignment job for a user who has one).
    pub fn conflict(message: impl Into<String>, param: &str, code: &'static str) -> Self {
        ApiError { param: Some(param.into()), code: Some(code), ..Self::new(StatusCode::CONFLICT, "invalid_request_error", message) }
    }

    /// 503: the background job queue is full.
    pub fn overloaded_jobs(limit: usize) -> Self {
        ApiError {
            retry_after: Some(30),
            code: Some("overloaded"),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", format!("{limit} background jobs already wait; retry later"))
        }
    }

    /// 500: a fault of the server, not of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// Names the field at fault.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ContextOverflow { prompt_tokens, max_tokens, context_length } => ApiError {
                code: Some("context_length_exceeded"),
                param: Some("messages".into()),
                ..ApiError::bad_request(format!(
                    "the prompt has {prompt_tokens} tokens and asks for up to {max_tokens} more, over the model's context of {context_length} tokens; shorten the messages or lower max_tokens"
                ))
            },
            EngineError::InvalidParameter { name, reason } => ApiError::bad_request(format!("{name}: {reason}")).with_param(name),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<MemoryError> for ApiError {
    fn from(e: MemoryError) -> Self {
        match e {
            MemoryError::UnknownUser(id) => ApiError::not_found(format!("no user '{id}'"), "user", "user_not_found"),
            e @ MemoryError::InvalidUserId { .. } => ApiError::bad_request(e.to_string()).with_param("user"),
            e @ (MemoryError::ImportRecord { .. } | MemoryError::ImportFile { .. } | MemoryError::EncoderMismatch { .. }) => {
                ApiError::bad_request(e.to_string())
            }
            MemoryError::Engine(e) => e.into(),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Engine(e) => e.into(),
            AgentError::Memory(e) => e.into(),
            e @ (AgentError::Config { .. } | AgentError::NoPersona { .. }) => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}
