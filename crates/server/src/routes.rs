//! The OpenAI-compatible routes: health, models, metrics, chat
//! completions (whole or streamed) and embeddings.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State as Shared;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures_util::stream::{self, Stream, StreamExt as _};
use persona_engine::{ChatMessage, ContextPolicy, GenerationParams, JsonSchemaGrammar, Role, SamplingParams};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::ApiError;
use crate::job::{ChatEvent, ChatJob, Job, JsonMode};
use crate::openai::{self, ChatRequest, EmbeddingRequest, JsonBody, ResponseFormat, Stop};
use crate::state::{State, READY};

/// The grammar a `response_format` asks for: none for text, any JSON
/// object, or the documents of a JSON Schema (compiled here, so that a
/// schema that cannot be enforced is a 400 naming where it fails).
fn json_mode(format: Option<&ResponseFormat>) -> Result<Option<JsonMode>, ApiError> {
    match format {
        None | Some(ResponseFormat::Text) => Ok(None),
        Some(ResponseFormat::JsonObject) | Some(ResponseFormat::JsonSchema { json_schema: openai::JsonSchemaFormat { schema: None, .. } }) => {
            Ok(Some(JsonMode::Object))
        }
        Some(ResponseFormat::JsonSchema { json_schema: openai::JsonSchemaFormat { schema: Some(schema), name } }) => JsonSchemaGrammar::new(schema)
            .map(|g| Some(JsonMode::Schema(Box::new(g))))
            .map_err(|e| ApiError::bad_request(format!("json_schema `{name}`: {e}")).with_param("response_format.json_schema.schema")),
    }
}

/// The model name that runs the full PersonaAgent tool loop.
pub const AGENT_MODEL: &str = "persona-agent";

/// Tokens of a reply when the request names no limit.
const DEFAULT_MAX_TOKENS: usize = 512;

/// Sampling temperature when the request names none (llama.cpp's server
/// default; OpenAI's 1.0 is too loose for small models).
const DEFAULT_TEMPERATURE: f64 = 0.8;

/// `GET /health`: 200 once the models are loaded, 503 before.
pub async fn health(Shared(state): Shared<Arc<State>>) -> Response {
    match state.ready() {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            (e.status, Json(json!({"status": if e.status == StatusCode::SERVICE_UNAVAILABLE { "loading" } else { "error" }, "error": e.body()["error"]})))
                .into_response()
        }
    }
}

/// `GET /v1/models`: the chat model and `persona-agent`.
pub async fn models(Shared(state): Shared<Arc<State>>) -> Json<Value> {
    let model = |id: &str| json!({"id": id, "object": "model", "created": state.started, "owned_by": "persona-agent"});
    Json(json!({"object": "list", "data": [model(&state.model_name), model(AGENT_MODEL)]}))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(Shared(state): Shared<Arc<State>>) -> Response {
    let ready = u8::from(state.status.load(std::sync::atomic::Ordering::Acquire) == READY);
    let text = format!("# HELP persona_ready Whether the models are loaded.\n# TYPE persona_ready gauge\npersona_ready {ready}\n{}", state.metrics.render());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Who a request is for: `user`, else `safety_identifier`, else the
/// `X-User-Id` header, else `X-OpenWebUI-User-Id` (Open WebUI forwards it
/// and never sends `user`). `None`: a plain chat.
pub fn identity(body_user: Option<&str>, safety: Option<&str>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let found =
        [(body_user, "user"), (safety, "safety_identifier"), (header("x-user-id"), "X-User-Id"), (header("x-openwebui-user-id"), "X-OpenWebUI-User-Id")]
            .into_iter()
            .find_map(|(v, from)| v.map(str::trim).filter(|v| !v.is_empty()).map(|v| (v.to_string(), from)));
    match found {
        None => Ok(None),
        Some((id, from)) => {
            persona_memory::store::validate_user_id(&id).map_err(|e| ApiError::bad_request(format!("{from}: {e}")).with_param(from))?;
            Ok(Some(id))
        }
    }
}

fn role(name: &str, i: usize) -> Result<Role, ApiError> {
    match name {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "tool" | "function" => Ok(Role::Tool),
        other => {
            Err(ApiError::bad_request(format!("unknown role '{other}' (system, developer, user, assistant, tool)")).with_param(&format!("messages[{i}].role")))
        }
    }
}

/// Checks a chat request and turns it into the engine's terms.
fn parameters(req: &ChatRequest) -> Result<(Vec<ChatMessage>, GenerationParams), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` is empty").with_param("messages"));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let text = m.content.as_ref().map(openai::Content::text).unwrap_or_default();
        messages.push(ChatMessage { role: role(&m.role, i)?, content: text });
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(ApiError::bad_request("`messages` has no user message").with_param("messages"));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is served").with_param("n"));
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).map_or(DEFAULT_MAX_TOKENS, |n| n as usize);
    if max_tokens == 0 {
        let param = if req.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
        return Err(ApiError::bad_request(format!("`{param}` must be at least 1")).with_param(param));
    }
    let temperature = req.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request(format!("`temperature` {temperature} is outside [0, 2]")).with_param("temperature"));
    }
    if let Some(p) = req.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::bad_request(format!("`top_p` {p} is outside (0, 1]")).with_param("top_p"));
        }
    }
    let stop = match &req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) if v.len() > 4 => return Err(ApiError::bad_request("at most 4 stop strings").with_param("stop")),
        Some(Stop::Many(v)) => v.clone(),
    };
    let sampling = SamplingParams { temperature, top_p: req.top_p, seed: req.seed.unwrap_or_else(rand::random), ..SamplingParams::default() };
    Ok((messages, GenerationParams { max_tokens, stop, sampling, context_policy: ContextPolicy::Error, ignore_eos: false }))
}

fn completion_id() -> String {
    format!("chatcmpl-{:024x}", rand::random::<u128>() >> 32)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// `POST /v1/chat/completions`.
pub async fn chat(Shared(state): Shared<Arc<State>>, headers: HeaderMap, JsonBody(req): JsonBody<ChatRequest>) -> Result<Response, ApiError> {
    state.ready()?;
    let model = req.model.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| state.model_name.clone());
    let agent = if model == AGENT_MODEL {
        true
    } else if model == state.model_name {
        false
    } else {
        return Err(ApiError::not_found(format!("unknown model '{model}' (served: {}, {AGENT_MODEL})", state.model_name), "model", "model_not_found"));
    };
    let (messages, params) = parameters(&req)?;
    let user = identity(req.user.as_deref(), req.safety_identifier.as_deref(), &headers)?;
    let slot = state.slot()?;
    let (tx, mut rx) = unbounded_channel();
    let id = completion_id();
    let json = json_mode(req.response_format.as_ref())?;
    if json.is_some() && agent {
        return Err(ApiError::bad_request("the persona-agent model answers in text; a JSON response_format needs the chat model").with_param("response_format"));
    }
    let job =
        ChatJob { id: id.clone(), user, messages, params, agent, store: req.store.unwrap_or(true), json, events: tx, received: Instant::now(), _slot: slot };
    state.send(Job::Chat(Box::new(job)))?;
    // Nothing is sent before the prompt is checked: a prompt over the
    // context is a 400, not a broken stream.
    let context = match rx.recv().await {
        Some(ChatEvent::Started(context)) => context,
        Some(ChatEvent::Failed(e)) => return Err(e),
        _ => return Err(ApiError::internal("the engine thread dropped the request")),
    };
    let created = unix_now();
    if req.stream.unwrap_or(false) {
        let usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let stream = sse_stream(rx, id, created, model, usage);
        return Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(5)).text("keep-alive")).into_response());
    }
    loop {
        match rx.recv().await {
            Some(ChatEvent::Text(_) | ChatEvent::Started(_)) => {}
            Some(ChatEvent::Done { text, finish, usage }) => {
                let mut body = openai::completion(&id, created, &model, &text, finish, &usage);
                if let Some(c) = &context {
                    // An extension field; OpenAI clients ignore it.
                    body["persona_context"] = json!(c);
                }
                return Ok(Json(body).into_response());
            }
            Some(ChatEvent::Failed(e)) => return Err(e),
            None => return Err(ApiError::internal("the engine thread dropped the request")),
        }
    }
}

/// The reply as OpenAI's chunks: the role, the text pieces, the finish
/// reason, the usage when asked, and `[DONE]`. A failure after the first
/// chunk ends the stream with an error object.
fn sse_stream(rx: UnboundedReceiver<ChatEvent>, id: String, created: u64, model: String, include_usage: bool) -> impl Stream<Item = Result<Event, Infallible>> {
    struct S {
        rx: UnboundedReceiver<ChatEvent>,
        pending: std::collections::VecDeque<String>,
        started: bool,
        ended: bool,
    }
    let state = S { rx, pending: Default::default(), started: false, ended: false };
    stream::unfold(state, move |mut s| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            loop {
                if let Some(data) = s.pending.pop_front() {
                    return Some((data, s));
                }
                if s.ended {
                    return None;
                }
                if !s.started {
                    s.started = true;
                    s.pending.push_back(openai::chunk(&id, created, &model, json!({"role": "assistant", "content": ""}), None).to_string());
                    continue;
                }
                match s.rx.recv().await {
                    Some(ChatEvent::Text(t)) => s.pending.push_back(openai::chunk(&id, created, &model, json!({"content": t}), None).to_string()),
                    Some(ChatEvent::Started(_)) => {}
                    Some(ChatEvent::Done { finish, usage, .. }) => {
                        s.pending.push_back(openai::chunk(&id, created, &model, json!({}), Some(finish)).to_string());
                        if include_usage {
                            s.pending.push_back(openai::usage_chunk(&id, created, &model, &usage).to_string());
                        }
                        s.pending.push_back("[DONE]".into());
                        s.ended = true;
                    }
                    Some(ChatEvent::Failed(e)) => {
                        s.pending.push_back(e.body().to_string());
                        s.ended = true;
                    }
                    None => s.ended = true,
                }
            }
        }
    })
    .map(|data| Ok(Event::default().data(data)))
}

/// `POST /v1/embeddings` on the sentence encoder.
pub async fn embeddings(Shared(state): Shared<Arc<State>>, JsonBody(req): JsonBody<EmbeddingRequest>) -> Result<Json<Value>, ApiError> {
    let texts = match req.input {
        Stop::One(s) => vec![s],
        Stop::Many(v) => v,
    };
    if texts.is_empty() {
        return Err(ApiError::bad_request("`input` is empty").with_param("input"));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => return Err(ApiError::bad_request(format!("encoding_format '{f}' is not served (float or base64)")).with_param("encoding_format")),
    };
    if let Some(m) = req.model.as_deref().filter(|m| !m.is_empty() && *m != state.encoder_name) {
        return Err(ApiError::not_found(format!("unknown embedding model '{m}' (served: {})", state.encoder_name), "model", "model_not_found"));
    }
    let name = state.encoder_name.clone();
    let (vectors, tokens) = state
        .run(move |rt| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = rt.encoder().embed(&refs).map_err(ApiError::from)?;
            let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
            Ok((vectors, tokens))
        })
        .await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            // base64: the little-endian f32 bytes, as OpenAI sends them.
            let embedding = if base64 { json!(BASE64.encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())) } else { json!(v) };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})))
}
