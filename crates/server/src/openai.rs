//! The OpenAI request and response shapes the server speaks, and the
//! extractor that reads a JSON body with errors that name the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use persona_engine::FinishReason;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;

/// A JSON body read with serde; a syntax error or a wrong field type is a
/// 422 naming the field, a body over the limit a 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, ..ApiError::bad_request(format!("request body too large: {e}")) }
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads JSON into `T`; the error names the path of the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let data = inner.classify() == serde_json::error::Category::Data;
        let param = (data && path != "." && !path.is_empty()).then_some(path.clone());
        let message = match &param {
            Some(p) => format!("field `{p}`: {inner}"),
            None => format!("malformed JSON body: {inner}"),
        };
        ApiError::unprocessable(message, param)
    })
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A message's content: text, or a list of parts of which the text ones
/// are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": ...}`).
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// The part's type; only `text` is read.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    /// The text of the content (text parts joined by newlines).
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts.iter().filter(|p| p.kind == "text").filter_map(|p| p.text.clone()).collect::<Vec<_>>().join("\n"),
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content (null for an assistant turn that only called tools).
    #[serde(default)]
    pub content: Option<Content>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// `response_format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that matches a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema` (its `description` and `strict` are
/// accepted and change nothing: the schema is always enforced).
#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaFormat {
    /// The schema's name (required by the API; named in errors).
    pub name: String,
    /// The schema (read in order: properties are written as declared).
    /// Without one, any JSON object.
    #[serde(default)]
    pub schema: Option<persona_engine::Schema>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The model: the chat model's name, or `persona-agent` (the full tool loop).
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Most tokens of the reply.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Most tokens of the reply (the newer name).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Stream the reply as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Text, a JSON object, or JSON matching a schema.
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// Who the request is for (picks the persona and memory).
    #[serde(default)]
    pub user: Option<String>,
    /// Who the request is for (OpenAI's newer field).
    #[serde(default)]
    pub safety_identifier: Option<String>,
    /// `false`: do not store this exchange in the user's memory.
    #[serde(default)]
    pub store: Option<bool>,
    /// Number of choices; only 1 is served.
    #[serde(default)]
    pub n: Option<u32>,
}

/// `POST /v1/embeddings`: `input` is a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    /// The text(s).
    pub input: Stop,
    /// The model (the encoder's name; optional).
    #[serde(default)]
    pub model: Option<String>,
    /// Only `float` is served.
    #[serde(default)]
    pub encoding_format: Option<String>,
}

/// OpenAI's finish reason for an engine one.
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        _ => "stop",
    }
}

/// Token counts of a reply.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Prompt tokens served from the cache.
    pub cached_tokens: usize,
}

impl Usage {
    /// OpenAI's usage object.
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        })
    }
}

/// A whole `chat.completion`.
pub fn completion(id: &str, created: u64, model: &str, text: &str, finish: &str, usage: &Usage) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish}],
        "usage": usage.json(),
    })
}

/// One `chat.completion.chunk`.
pub fn chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

/// The last chunk of a stream asked for with `include_usage`.
pub fn usage_chunk(id: &str, created: u64, model: &str, usage: &Usage) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage.json()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_field_type_names_the_field() {
        let e = parse_json::<ChatRequest>(br#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.param.as_deref(), Some("max_tokens"), "{e}");
        let e = parse_json::<ChatRequest>(br#"{"messages": [{"role": 5}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"), "{e}");
        let e = parse_json::<ChatRequest>(b"{not json").unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e = parse_json::<ChatRequest>(br#"{"messages": [}"#).unwrap_err();
        assert!(e.message.starts_with("malformed JSON") && e.param.is_none(), "{e}");
        let e = parse_json::<ChatRequest>(b"{}").unwrap_err();
        assert!(e.message.contains("messages"), "{e}");
        let ok =
            parse_json::<ChatRequest>(br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}], "stop": "x"}"#)
                .unwrap();
        assert_eq!(ok.messages[0].content.as_ref().unwrap().text(), "a");
        assert!(matches!(ok.stop, Some(Stop::One(_))));
    }
}
