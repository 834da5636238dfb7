//! A user's own routes: import records, search them, read the persona,
//! give feedback on a reply, and delete everything of theirs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State as Shared};
use axum::http::StatusCode;
use axum::Json;
use persona_agent::AlignConfig;
use persona_memory::import::parse_import;
use persona_memory::{ImportOptions, MemoryError, NewRecord};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::background::{AlignTask, Submitted};
use crate::error::ApiError;
use crate::job::ClientRuntime;
use crate::openai::JsonBody;
use crate::state::State;

/// Records of one search at most.
const MAX_K: usize = 100;

fn checked(id: &str) -> Result<String, ApiError> {
    persona_memory::store::validate_user_id(id).map_err(|e| ApiError::bad_request(e.to_string()).with_param("user"))?;
    Ok(id.to_string())
}

/// `POST /v1/users/{id}/records`: a JSON array or JSON Lines of `{query,
/// response, timestamp?, metadata?}`, checked as `persona user import`
/// checks a file; creates the user. Answers the counts.
pub async fn import(Shared(state): Shared<Arc<State>>, UrlPath(id): UrlPath<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = checked(&id)?;
    let text = std::str::from_utf8(&body).map_err(|e| ApiError::unprocessable(format!("the body is not UTF-8: {e}"), None))?;
    let parsed = parse_import(text, Path::new("request body"), &ImportOptions::default()).map_err(|e| match e {
        MemoryError::ImportRecord { ref field, .. } => ApiError::unprocessable(e.to_string(), Some(field.clone())),
        other => ApiError::unprocessable(other.to_string(), None),
    })?;
    let records = parsed.records;
    let user = id.clone();
    let report = state
        .run(move |rt| {
            let (memory, encoder) = rt.memory_mut();
            Ok(memory.import(&user, &records, encoder, 32, &mut |_, _| {})?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": id, "total": report.total, "added": report.added, "duplicates": report.duplicates}))))
}

/// `GET /v1/users/{id}/records/search?q=TEXT&k=N`: the user's records
/// nearest to the text.
pub async fn search(
    Shared(state): Shared<Arc<State>>,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = checked(&id)?;
    let q = query
        .get("q")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("the query parameter `q` is missing or empty").with_param("q"))?;
    let k = match query.get("k") {
        None => 4,
        Some(k) => k
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=MAX_K).contains(k))
            .ok_or_else(|| ApiError::unprocessable(format!("`k` must be a whole number in 1..={MAX_K}, not '{k}'"), Some("k".into())))?,
    };
    let user = id.clone();
    let hits = state.run(move |rt| Ok(rt.user(&user)?.search(&q, k)?)).await?;
    Ok(Json(json!({"user": id, "data": hits})))
}

/// `?history=true` on the persona route.
#[derive(Debug, Deserialize)]
pub struct PersonaQuery {
    /// Every version, oldest first.
    #[serde(default)]
    history: Option<String>,
}

fn version_json(v: &persona_memory::PersonaVersion) -> Value {
    json!({"version": v.version, "parent": v.parent, "text": v.text, "feedback": v.feedback, "created_at": v.created_at})
}

/// `GET /v1/users/{id}/persona` (`?history=true`: every version).
pub async fn persona(Shared(state): Shared<Arc<State>>, UrlPath(id): UrlPath<String>, Query(q): Query<PersonaQuery>) -> Result<Json<Value>, ApiError> {
    let id = checked(&id)?;
    let history = matches!(q.history.as_deref(), Some("true" | "1" | "yes"));
    let user = id.clone();
    let versions = state
        .run(move |rt| {
            let store = rt.memory().store();
            let u = store.require_user(&user)?;
            Ok(store.persona_versions(&u)?)
        })
        .await?;
    let Some(latest) = versions.last() else {
        return Err(ApiError::not_found(
            format!("user '{id}' has no persona yet: it is built from their records at their first chat"),
            "user",
            "persona_not_found",
        ));
    };
    if history {
        return Ok(Json(json!({"user": id, "versions": versions.iter().map(version_json).collect::<Vec<_>>()})));
    }
    let mut out = version_json(latest);
    out["user"] = Value::String(id);
    Ok(Json(out))
}

/// `POST /v1/users/{id}/feedback`.
#[derive(Debug, Deserialize)]
pub struct Feedback {
    /// The reply the feedback is about (`id` of the chat completion).
    pub completion_id: String,
    /// What the user wanted as the answer.
    pub response: String,
}

/// `POST /v1/users/{id}/feedback`: the answer the user wanted for an
/// earlier reply (by its completion id) becomes a record of their memory,
/// with the reply's question; the replayed interactions of the next
/// alignment include it.
pub async fn feedback(
    Shared(state): Shared<Arc<State>>,
    UrlPath(id): UrlPath<String>,
    JsonBody(body): JsonBody<Feedback>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = checked(&id)?;
    if body.response.trim().is_empty() {
        return Err(ApiError::bad_request("`response` is empty").with_param("response"));
    }
    let user = id.clone();
    let completion = body.completion_id.clone();
    let added = state
        .run(move |rt| {
            let store = rt.memory().store();
            let u = store.require_user(&user)?;
            let records = store.records(&u)?;
            let Some(original) = records.iter().find(|r| r.metadata.get("completion_id").and_then(Value::as_str) == Some(completion.as_str())) else {
                return Err(ApiError::not_found(
                    format!("user '{user}' has no stored reply with completion id '{completion}'"),
                    "completion_id",
                    "completion_not_found",
                ));
            };
            let mut metadata = Map::new();
            metadata.insert("source".into(), Value::String("feedback".into()));
            metadata.insert("completion_id".into(), Value::String(completion.clone()));
            metadata.insert("replaced".into(), Value::String(original.response.clone()));
            let record = NewRecord { timestamp: original.timestamp, metadata, ..NewRecord::new(original.query.clone(), body.response.trim()) };
            let (memory, encoder) = rt.memory_mut();
            Ok(memory.import(&user, &[record], encoder, 1, &mut |_, _| {})?.added)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": id, "completion_id": body.completion_id, "added": added}))))
}

/// `DELETE /v1/users/{id}`: records, personas, semantic memory and index
/// files; the model's cached prompt state is dropped too.
pub async fn delete(Shared(state): Shared<Arc<State>>, UrlPath(id): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    let id = checked(&id)?;
    let user = id.clone();
    state
        .run(move |rt| {
            rt.memory_mut().0.delete_user(&user)?;
            rt.scoped_model().clear_caches();
            Ok(())
        })
        .await?;
    Ok(Json(json!({"user": id, "deleted": true})))
}

/// `POST /v1/users/{id}/align` options (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignRequest {
    /// Interactions replayed per iteration (n).
    #[serde(default)]
    pub batch: Option<usize>,
    /// Iterations (E).
    #[serde(default)]
    pub iterations: Option<usize>,
}

/// `POST /v1/users/{id}/align`: test-time alignment of the user's persona
/// as a background job; answers 202 with the job, whose state
/// `GET /v1/jobs/{job}` gives. At most `limits.align_jobs` jobs run at once,
/// each on a thread of its own whose replays and rewrites join the chats'
/// batch (the chats go on meanwhile); more wait in order, up to
/// `limits.queue` (then 503); a user with a job queued or running gets 409.
pub async fn align(Shared(state): Shared<Arc<State>>, UrlPath(id): UrlPath<String>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = checked(&id)?;
    let request: AlignRequest = if body.iter().all(u8::is_ascii_whitespace) { AlignRequest::default() } else { crate::openai::parse_json(&body)? };
    let defaults = AlignConfig::default();
    let config = AlignConfig { batch: request.batch.unwrap_or(defaults.batch), iterations: request.iterations.unwrap_or(defaults.iterations), ..defaults };
    config.validate().map_err(ApiError::from)?;
    state.ready()?;
    // The user must exist before a job is made.
    let user = id.clone();
    state.run(move |rt| Ok(rt.memory().store().require_user(&user).map(|_| ())?)).await?;
    let task = AlignTask { id: format!("align-{:016x}", rand::random::<u64>()), user: id, config };
    let job = task.id.clone();
    let limits = state.limits;
    if state.background.submit(task, limits.align_jobs, limits.queue.max(1))? == Submitted::StartWorker {
        // The engine thread forks a runtime for the worker's thread.
        let shared = state.clone();
        let started = state.send(crate::job::Job::Run(Box::new(move |rt| {
            let worker = shared.clone();
            if let Err(e) = shared.spawn(rt, "persona-align", move |rt| align_worker(rt, &worker)) {
                tracing::error!(error = %e.message, "cannot start an alignment worker");
                shared.background.worker_failed(&e);
            }
        })));
        if let Err(e) = started {
            state.background.worker_failed(&e);
        }
    }
    let answer = state.background.state(&job).ok_or_else(|| ApiError::internal("the job was forgotten"))?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// An alignment worker: runs queued jobs one after another with its
/// runtime until none is left, recording each job's state as it goes.
fn align_worker(mut rt: ClientRuntime, shared: &State) {
    while let Some(task) = shared.background.next() {
        // A panic fails its job, not the queue behind it.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.user(&task.user).and_then(|mut scope| {
                scope.persona()?;
                scope.align(&task.config, None, None, &mut |_| {})
            })
        }));
        match result {
            Err(_) => shared.background.finish(&task, "failed", json!({"error": "the alignment job panicked; see the server's log"})),
            Ok(Ok(report)) => shared.background.finish(
                &task,
                "succeeded",
                json!({"result": {"initial_version": report.initial_version, "final_version": report.final_version, "initial_score": report.initial_score, "final_score": report.final_score, "iterations": report.iterations.len()}}),
            ),
            Ok(Err(e)) => shared.background.finish(&task, "failed", json!({"error": ApiError::from(e).message})),
        }
    }
}

/// `GET /v1/jobs/{job}`: a background job's state.
pub async fn job(Shared(state): Shared<Arc<State>>, UrlPath(job): UrlPath<String>) -> Result<Json<Value>, ApiError> {
    state.background.state(&job).map(Json).ok_or_else(|| ApiError::not_found(format!("no job '{job}'"), "job", "job_not_found"))
}
