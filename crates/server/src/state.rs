//! What the request handlers share: the way to the engine thread, the
//! limits, the metrics and background jobs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};

use persona_agent::SharedLlm;
use persona_engine::ModelClient;
use tokio::sync::oneshot;

use crate::background::Background;
use crate::error::ApiError;
use crate::job::{ClientRuntime, Job, ServeRuntime, SlotGuard};
use crate::openai::Usage;

/// How many requests may run and wait.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Chat requests decoded together.
    pub parallel: usize,
    /// Chat requests waiting for a place; more are answered 503.
    pub queue: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Alignment jobs running at once (each on a thread of its own whose
    /// model calls join the chats' batch); more wait, up to `queue`.
    pub align_jobs: usize,
}

/// Loading state of the models.
pub const LOADING: u8 = 0;
/// The models are loaded.
pub const READY: u8 = 1;
/// Loading failed.
pub const FAILED: u8 = 2;

/// The handlers' shared state.
pub struct State {
    /// The engine thread's queue.
    pub jobs: Mutex<Sender<Job>>,
    /// [`LOADING`], [`READY`] or [`FAILED`].
    pub status: AtomicU8,
    /// The chat model's manifest name (e.g. `small`).
    pub model_name: String,
    /// The encoder's name.
    pub encoder_name: String,
    /// When the server started (Unix seconds), the models' `created`.
    pub started: u64,
    /// The API key, if one is required.
    pub api_key: Option<String>,
    /// Limits.
    pub limits: Limits,
    /// Chat requests running or queued.
    pub inflight: Arc<AtomicUsize>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Background jobs (alignment): their queue and states.
    pub background: Background,
    /// A client of the engine thread's model, for work on other threads
    /// (set when the models are loaded).
    pub client: OnceLock<ModelClient>,
}

impl State {
    /// Fails unless the models are loaded.
    pub fn ready(&self) -> Result<(), ApiError> {
        match self.status.load(Ordering::Acquire) {
            READY => Ok(()),
            FAILED => Err(ApiError::internal("the models failed to load; see the server's log")),
            _ => Err(ApiError::loading()),
        }
    }

    /// Sends a job to the engine thread.
    pub fn send(&self, job: Job) -> Result<(), ApiError> {
        let jobs = self.jobs.lock().map_err(|_| ApiError::internal("the engine queue is poisoned"))?;
        jobs.send(job).map_err(|_| ApiError::internal("the engine thread has stopped"))
    }

    /// Runs `f` on the engine thread (between batch steps) and returns its result.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut ServeRuntime) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
        self.ready()?;
        let (tx, rx) = oneshot::channel();
        self.send(Job::Run(Box::new(move |rt| {
            let _ = tx.send(f(rt));
        })))?;
        rx.await.map_err(|_| ApiError::internal("the engine thread dropped the request"))?
    }

    /// A runtime for work on a thread of its own, forked from the engine
    /// thread's `runtime`: its model calls join the engine's batch.
    pub fn fork(&self, runtime: &ServeRuntime) -> Result<ClientRuntime, ApiError> {
        let client = self.client.get().ok_or_else(ApiError::loading)?;
        Ok(runtime.fork(SharedLlm(client.clone()))?)
    }

    /// Runs `work` on a thread of its own named `name`, with a runtime
    /// forked from the engine thread's `runtime` (so its model calls come
    /// back to the engine thread as [`Job::Sequence`] and join the batch).
    /// Called on the engine thread.
    pub fn spawn(&self, runtime: &ServeRuntime, name: &str, work: impl FnOnce(ClientRuntime) + Send + 'static) -> Result<(), ApiError> {
        let forked = self.fork(runtime)?;
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(forked))
            .map(|_| ())
            .map_err(|e| ApiError::internal(format!("cannot start a thread for this work: {e}")))
    }

    /// Takes a place for a chat request, or answers 503 when the running
    /// and queued requests fill the limits.
    pub fn slot(&self) -> Result<SlotGuard, ApiError> {
        let max = self.limits.parallel + self.limits.queue;
        let taken = self.inflight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        match taken {
            Ok(_) => Ok(SlotGuard::taken(self.inflight.clone())),
            Err(_) => {
                self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::overloaded(max))
            }
        }
    }
}

/// Upper bounds (seconds) of the time-to-first-token histogram.
const TTFT_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Counters and gauges for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Chat requests in the batch.
    pub running: AtomicUsize,
    /// Chat requests waiting.
    pub queued: AtomicUsize,
    /// Chat requests answered.
    pub completed: AtomicU64,
    /// Chat requests dropped because their client went away.
    pub cancelled: AtomicU64,
    /// Chat requests refused with 503 (queue full).
    pub rejected: AtomicU64,
    /// Prompt tokens run through the model.
    pub prefilled: AtomicU64,
    /// Prompt tokens served from the KV cache.
    pub cached: AtomicU64,
    /// Tokens generated.
    pub decoded: AtomicU64,
    ttft_buckets: [AtomicU64; TTFT_BUCKETS.len()],
    ttft_count: AtomicU64,
    ttft_micros: AtomicU64,
}

impl Metrics {
    /// Counts a finished request's tokens.
    pub fn count(&self, usage: &Usage) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.prefilled.fetch_add(usage.prompt_tokens.saturating_sub(usage.cached_tokens) as u64, Ordering::Relaxed);
        self.cached.fetch_add(usage.cached_tokens as u64, Ordering::Relaxed);
        self.decoded.fetch_add(usage.completion_tokens as u64, Ordering::Relaxed);
    }

    /// Records a time to first token.
    pub fn observe_ttft(&self, seconds: f64) {
        for (bound, bucket) in TTFT_BUCKETS.iter().zip(&self.ttft_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.ttft_count.fetch_add(1, Ordering::Relaxed);
        self.ttft_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauges = [
            ("persona_requests_running", "Chat requests being decoded.", self.running.load(Ordering::Relaxed) as u64),
            ("persona_requests_queued", "Chat requests waiting for a place in the batch.", self.queued.load(Ordering::Relaxed) as u64),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let counters = [
            ("persona_requests_completed_total", "Chat requests answered.", load(&self.completed)),
            ("persona_requests_cancelled_total", "Chat requests dropped because the client went away.", load(&self.cancelled)),
            ("persona_requests_rejected_total", "Chat requests refused because the queue was full.", load(&self.rejected)),
            ("persona_prompt_tokens_prefilled_total", "Prompt tokens run through the model.", load(&self.prefilled)),
            ("persona_prompt_tokens_cached_total", "Prompt tokens served from the KV cache.", load(&self.cached)),
            ("persona_tokens_decoded_total", "Tokens generated.", load(&self.decoded)),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let name = "persona_time_to_first_token_seconds";
        let _ = writeln!(out, "# HELP {name} Time from a chat request's arrival to its first token.\n# TYPE {name} histogram");
        for (bound, bucket) in TTFT_BUCKETS.iter().zip(&self.ttft_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", load(bucket));
        }
        let count = load(&self.ttft_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {}\n{name}_count {count}", load(&self.ttft_micros) as f64 / 1e6);
        out
    }
}
