//! # persona-server
//!
//! `persona serve`: an OpenAI-compatible local server. A request that names
//! a user (`user`, `safety_identifier`, or the `X-User-Id` /
//! `X-OpenWebUI-User-Id` header) is answered with that user's persona as
//! the system prompt and their nearest records in it, and the exchange
//! becomes part of their memory; `"model": "persona-agent"` runs the full
//! tool loop. One model is in memory: an engine thread owns it and decodes
//! concurrent requests together ([`persona_engine::Batch`]), each under its
//! user's cache scope; work of many calls (agent requests, building a
//! persona, alignment) runs on threads of its own whose calls join that
//! batch ([`persona_engine::ModelClient`]).
//!
//! Routes: `GET /health`, `GET /v1/models`, `GET /metrics`,
//! `POST /v1/chat/completions`, `POST /v1/embeddings`, and the user's own:
//! `POST /v1/users/{id}/records`, `GET /v1/users/{id}/records/search`,
//! `GET /v1/users/{id}/persona`, `POST /v1/users/{id}/feedback`,
//! `POST /v1/users/{id}/align` (a background job, `GET /v1/jobs/{job}`),
//! `DELETE /v1/users/{id}`.

mod background;
mod error;
mod job;
mod openai;
mod routes;
mod state;
mod users;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Request, State as Shared};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use persona_engine::ModelClient;
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::{ApiError, ServerError};
pub use job::ServeRuntime;
pub use routes::AGENT_MODEL;
pub use state::Limits;

use crate::state::{State, FAILED, LOADING, READY};

/// Loads the runtime on the engine thread (models, user store,
/// encyclopedia); an error is reported and stops the server.
pub type Loader = Box<dyn FnOnce() -> Result<ServeRuntime, String> + Send>;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (loopback by default).
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// The chat model's name, as `/v1/models` lists it.
    pub model_name: String,
    /// The encoder's name, as `/v1/embeddings` answers it.
    pub encoder_name: String,
    /// A key every request but `/health` must send as `Authorization:
    /// Bearer KEY`.
    pub api_key: Option<String>,
    /// Running and queued requests, body size.
    pub limits: Limits,
    /// Origins allowed by CORS (none: no CORS headers).
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            model_name: "small".into(),
            encoder_name: "minilm".into(),
            api_key: None,
            limits: Limits { parallel: 8, queue: 64, max_body_bytes: 4 << 20, align_jobs: 1 },
            cors_origins: Vec::new(),
        }
    }
}

/// A bound server, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    receiver: std::sync::mpsc::Receiver<job::Job>,
    cors: Vec<HeaderValue>,
}

impl Server {
    /// Checks the settings and binds the address.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        if config.limits.parallel == 0 {
            return Err(ServerError::Config { name: "parallel", reason: "must be at least 1".into() });
        }
        if config.limits.align_jobs == 0 {
            return Err(ServerError::Config { name: "align-jobs", reason: "must be at least 1".into() });
        }
        if config.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ServerError::Config { name: "api-key", reason: "is empty".into() });
        }
        let cors = config
            .cors_origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|e| ServerError::Config { name: "cors-origin", reason: format!("'{o}': {e}") }))
            .collect::<Result<Vec<_>, _>>()?;
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind { addr: addr.clone(), source })?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let state = Arc::new(State {
            jobs: Mutex::new(sender),
            status: AtomicU8::new(LOADING),
            model_name: config.model_name,
            encoder_name: config.encoder_name,
            started,
            api_key: config.api_key,
            limits: config.limits,
            inflight: Arc::new(AtomicUsize::new(0)),
            metrics: Default::default(),
            background: Default::default(),
            client: std::sync::OnceLock::new(),
        });
        Ok(Server { listener, state, receiver, cors })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        Ok(self.listener.local_addr()?)
    }

    /// Loads the runtime on the engine thread (`/health` answers 503 until
    /// it is loaded) and serves until `shutdown` completes; a failed load
    /// stops the server with [`ServerError::Load`].
    pub async fn run(self, loader: Loader, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Server { listener, state, receiver, cors } = self;
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
        let engine_state = state.clone();
        let engine = std::thread::Builder::new().name("persona-engine".into()).spawn(move || match loader() {
            Ok(mut runtime) => {
                // Work on other threads reaches the model through the job queue.
                let jobs = engine_state.jobs.lock().map(|j| j.clone());
                if let Ok(jobs) = jobs {
                    let client = ModelClient::with_sink(runtime.scoped_model(), move |request| jobs.send(job::Job::Sequence(request)).is_ok());
                    let _ = engine_state.client.set(client);
                }
                engine_state.status.store(READY, Ordering::Release);
                tracing::info!("models loaded; serving");
                worker::run(&mut runtime, &receiver, &engine_state);
            }
            Err(e) => {
                engine_state.status.store(FAILED, Ordering::Release);
                let _ = failed_tx.send(e);
            }
        })?;
        let app = router(state.clone(), &cors);
        let failure = Arc::new(Mutex::new(None));
        let seen = failure.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                Ok(e) = failed_rx => {
                    if let Ok(mut f) = seen.lock() {
                        *f = Some(e);
                    }
                }
            }
        };
        axum::serve(listener, app).with_graceful_shutdown(stop).await?;
        // Dropping the state's sender ends the engine thread's loop.
        drop(state);
        let failure = failure.lock().ok().and_then(|mut f| f.take());
        if let Some(e) = failure {
            return Err(ServerError::Load(e));
        }
        let _ = engine;
        Ok(())
    }
}

fn router(state: Arc<State>, cors: &[HeaderValue]) -> Router {
    let max_body = state.limits.max_body_bytes;
    let api = Router::new()
        .route("/v1/models", get(routes::models))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/metrics", get(routes::metrics))
        .route("/v1/users/{id}/records", post(users::import))
        .route("/v1/users/{id}/records/search", get(users::search))
        .route("/v1/users/{id}/persona", get(users::persona))
        .route("/v1/users/{id}/feedback", post(users::feedback))
        .route("/v1/users/{id}/align", post(users::align))
        .route("/v1/jobs/{job}", get(users::job))
        .route("/v1/users/{id}", delete(users::delete))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let mut app = Router::new()
        .route("/health", get(routes::health))
        .merge(api)
        .fallback(|req: Request| async move { ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path()), "path", "unknown_route") })
        .layer(middleware::from_fn(move |req: Request, next: Next| too_large(req, next, max_body)))
        .layer(DefaultBodyLimit::max(max_body));
    if !cors.is_empty() {
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::list(cors.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, "x-user-id".parse().unwrap_or(header::ACCEPT)]);
        app = app.layer(layer);
    }
    app.with_state(state)
}

/// Checks `Authorization: Bearer KEY` in constant time when a key is set.
async fn auth(Shared(state): Shared<Arc<State>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let sent = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// A body announced over the limit is refused before it is read; one that
/// turns out longer is refused by the extractors (also as 413).
async fn too_large(req: Request, next: Next, limit: usize) -> Response {
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return ApiError::too_large(limit).into_response();
    }
    next.run(req).await
}
