//! The engine thread: it owns the [`Runtime`](persona_agent::Runtime)
//! (one model in memory) and serves every request that touches the model,
//! the encoder or the store. Chat requests join one running batch (the
//! engine's continuous batching) up to `--parallel` at a time; the others
//! wait in order. Work that makes many model calls (an agent's request,
//! building a persona, alignment) runs on a thread of its own whose calls
//! join the same batch ([`Job::Sequence`]), so it never holds the chats
//! up. A request whose client went away leaves the batch at the next step,
//! also during its prompt. A user's exchange is written to their memory
//! before the reply's end is sent, so every answered exchange is stored.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use persona_agent::{AgentConfig, AgentLlm, Runtime, ANONYMOUS_SCOPE};
use persona_engine::{
    Batch, ChatMessage, ChatModel, ClientSequences, GrammarConstraint, JsonGrammar, SeqEvent, SeqId, SeqRequest, TokenBytes, TokenConstraint,
};
use persona_memory::text::one_line;
use persona_memory::NewRecord;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::job::{ChatEvent, ChatJob, Job, JsonMode, PersonalContext, ServeRuntime};
use crate::openai::Usage;
use crate::state::State;

/// A chat in the batch.
struct Running {
    job: Box<ChatJob>,
    query: String,
    first: bool,
}

/// What the engine thread keeps between steps.
struct Queues {
    /// Chats waiting for a place in the batch.
    waiting: VecDeque<Box<ChatJob>>,
    /// Chats in the batch.
    running: HashMap<SeqId, Running>,
    /// Sequences of work on other threads.
    clients: ClientSequences,
    /// Chats waiting for their user's persona, by user (boxed as in the
    /// other queues: they move between them without being copied).
    #[allow(clippy::vec_box)]
    building: HashMap<String, Vec<Box<ChatJob>>>,
}

/// The engine thread's loop; returns when every sender is gone.
pub fn run(runtime: &mut ServeRuntime, jobs: &Receiver<Job>, state: &Arc<State>) {
    let mut batch = Batch::new();
    let mut q = Queues { waiting: VecDeque::new(), running: HashMap::new(), clients: ClientSequences::new(), building: HashMap::new() };
    let mut events = Vec::new();
    // The vocabulary's bytes, for JSON mode (built at its first use).
    let mut vocab: Option<Arc<TokenBytes>> = None;
    loop {
        if batch.is_empty() && q.waiting.is_empty() && q.clients.waiting() == 0 {
            match jobs.recv() {
                Ok(job) => take(job, runtime, &mut q),
                Err(_) => return,
            }
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => take(job, runtime, &mut q),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        // Clients that went away free their place at once.
        q.waiting.retain(|j| !j.events.is_closed());
        let gone: Vec<SeqId> = q.running.iter().filter(|(_, r)| r.job.events.is_closed()).map(|(id, _)| *id).collect();
        for id in gone {
            batch.cancel(id);
            q.running.remove(&id);
            state.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        // Work already under way first, then new chats.
        while batch.len() < state.limits.parallel && q.clients.admit_next(runtime.scoped_model(), &mut batch) {}
        while batch.len() < state.limits.parallel {
            let Some(job) = q.waiting.pop_front() else { break };
            admit(job, runtime, &mut batch, &mut q, state, &mut vocab);
        }
        state.metrics.running.store(batch.len(), Ordering::Relaxed);
        state.metrics.queued.store(q.waiting.len() + q.clients.waiting(), Ordering::Relaxed);
        if batch.is_empty() {
            continue;
        }
        events.clear();
        if let Err(e) = runtime.scoped_model().step(&mut batch, &mut events) {
            tracing::error!(error = %e, "a batched step failed; failing its requests");
            for (id, r) in q.running.drain() {
                batch.cancel(id);
                let _ = r.job.events.send(ChatEvent::Failed(ApiError::internal(format!("the model failed: {e}"))));
            }
            q.clients.fail_running(&e.to_string());
            batch = Batch::new();
            continue;
        }
        for event in events.drain(..) {
            let Some(event) = q.clients.route(event) else { continue };
            match event {
                SeqEvent::Text { id, text } => {
                    if let Some(r) = q.running.get_mut(&id) {
                        if r.first {
                            r.first = false;
                            state.metrics.observe_ttft(r.job.received.elapsed().as_secs_f64());
                        }
                        let _ = r.job.events.send(ChatEvent::Text(text));
                    }
                }
                SeqEvent::Failed { id, error } => {
                    let Some(r) = q.running.remove(&id) else { continue };
                    tracing::warn!(completion = %r.job.id, %error, "a request failed during decoding");
                    let _ = r.job.events.send(ChatEvent::Failed(ApiError::internal(format!("the model failed on this request: {error}"))));
                }
                SeqEvent::Done { id, generation } => {
                    let Some(r) = q.running.remove(&id) else { continue };
                    if r.first {
                        state.metrics.observe_ttft(r.job.received.elapsed().as_secs_f64());
                    }
                    let usage = Usage {
                        prompt_tokens: generation.prompt_tokens,
                        completion_tokens: generation.completion_tokens,
                        cached_tokens: generation.cached_tokens,
                    };
                    state.metrics.count(&usage);
                    finish(runtime, r.job, &r.query, generation.text, crate::openai::finish_reason(generation.finish_reason), usage);
                }
            }
        }
    }
}

/// Runs other work now; queues a chat or a sequence.
fn take(job: Job, runtime: &mut ServeRuntime, q: &mut Queues) {
    match job {
        Job::Chat(chat) => q.waiting.push_back(chat),
        Job::Run(work) => work(runtime),
        Job::Sequence(request) => q.clients.push(request),
        Job::PersonaBuilt { user, result } => {
            // The chats that waited go first, in their order.
            let parked = q.building.remove(&user).unwrap_or_default();
            for job in parked.into_iter().rev() {
                match &result {
                    Ok(()) => q.waiting.push_front(job),
                    Err(e) => drop(job.events.send(ChatEvent::Failed(e.clone()))),
                }
            }
        }
    }
}

/// The last user message: what a stored exchange and a memory search read.
fn last_user_text(messages: &[ChatMessage]) -> String {
    messages.iter().rev().find(|m| m.role == persona_engine::Role::User).map(|m| m.content.clone()).unwrap_or_default()
}

/// Records a user needs before a persona is built from them (a summary of
/// one or two exchanges would describe nothing stable); their records are
/// in the prompt before that.
const PERSONA_MIN_RECORDS: i64 = 5;

/// The user's persona (built on first use when they have history) and
/// their records nearest to the question, as one system prompt; the
/// client's own system messages follow it.
fn personal_system(runtime: &mut ServeRuntime, user: &str, query: &str) -> Result<(String, PersonalContext), ApiError> {
    let k = runtime.tools.k;
    let records = {
        let store = runtime.memory().store();
        store.record_count(&store.require_user(user)?)?
    };
    let mut scope = runtime.user(user)?;
    let has_history = scope.latest_persona()?.is_some() || records >= PERSONA_MIN_RECORDS;
    let mut parts = Vec::new();
    let mut context = PersonalContext { user: user.to_string(), ..PersonalContext::default() };
    if has_history {
        let persona = scope.persona()?;
        context.persona_version = Some(persona.version);
        parts.push(persona.text);
    }
    let hits = if query.trim().is_empty() { Vec::new() } else { scope.search(query, k)? };
    if !hits.is_empty() {
        let lines: Vec<String> = hits.iter().map(|h| format!("- {} -> {}", one_line(&h.record.query, 300), one_line(&h.record.response, 300))).collect();
        parts.push(format!("Earlier exchanges of this user that may be relevant (what they were asked or said -> their response):\n{}", lines.join("\n")));
        context.records = hits.iter().map(|h| h.record.id).collect();
    }
    Ok((parts.join("\n\n"), context))
}

/// Whether a chat for `user` must wait for their persona to be built
/// first: a known user with history and no persona yet.
fn needs_persona(runtime: &ServeRuntime, user: &str) -> Result<bool, ApiError> {
    let store = runtime.memory().store();
    let Some(u) = store.user(user)? else { return Ok(false) };
    Ok(store.latest_persona(&u)?.is_none() && store.record_count(&u)? >= PERSONA_MIN_RECORDS)
}

/// Builds the prompt and joins the batch; an agent request, or a chat
/// whose user's persona must be built first, goes to a thread of its own.
/// A failure is reported to the client.
fn admit(job: Box<ChatJob>, runtime: &mut ServeRuntime, batch: &mut Batch<'static>, q: &mut Queues, state: &Arc<State>, vocab: &mut Option<Arc<TokenBytes>>) {
    let query = last_user_text(&job.messages);
    if job.agent {
        let metrics = Arc::clone(state);
        let (events, failed) = (job.events.clone(), job.events.clone());
        let started = state.spawn(runtime, "persona-agent", move |mut rt| match answer_as_agent(&mut rt, &job, &query) {
            Ok((text, usage, context)) => {
                let _ = events.send(ChatEvent::Started(Some(context)));
                let _ = events.send(ChatEvent::Text(text.clone()));
                metrics.metrics.count(&usage);
                finish(&mut rt, job, &query, text, "stop", usage);
            }
            Err(e) => drop(events.send(ChatEvent::Failed(e))),
        });
        if let Err(e) = started {
            let _ = failed.send(ChatEvent::Failed(e));
        }
        return;
    }
    if let Some(user) = job.user.clone() {
        match needs_persona(runtime, &user) {
            Ok(false) => {}
            Ok(true) => {
                if let Some(parked) = q.building.get_mut(&user) {
                    parked.push(job);
                    return;
                }
                let done = Arc::clone(state);
                let who = user.clone();
                let started = state.spawn(runtime, "persona-build", move |mut rt| {
                    let result = rt.user(&who).and_then(|mut scope| scope.persona().map(|_| ())).map_err(ApiError::from);
                    if let Err(e) = &result {
                        tracing::error!(user = %who, error = %e.message, "building the user's persona failed");
                    }
                    let _ = done.send(Job::PersonaBuilt { user: who, result });
                });
                match started {
                    Ok(()) => {
                        q.building.insert(user, vec![job]);
                    }
                    Err(e) => drop(job.events.send(ChatEvent::Failed(e))),
                }
                return;
            }
            Err(e) => {
                let _ = job.events.send(ChatEvent::Failed(e));
                return;
            }
        }
    }
    match join(runtime, &job, &query, batch, vocab) {
        Ok((id, context)) => {
            let _ = job.events.send(ChatEvent::Started(context));
            q.running.insert(id, Running { job, query, first: true });
        }
        Err(e) => {
            let _ = job.events.send(ChatEvent::Failed(e));
        }
    }
}

fn join(
    runtime: &mut ServeRuntime,
    job: &ChatJob,
    query: &str,
    batch: &mut Batch<'static>,
    vocab: &mut Option<Arc<TokenBytes>>,
) -> Result<(SeqId, Option<PersonalContext>), ApiError> {
    let mut messages = job.messages.clone();
    let mut context = None;
    if let Some(user) = &job.user {
        // A new user is created when their first exchange is stored, not
        // before: a refused request leaves nothing behind.
        let known = runtime.memory().store().user(user)?.is_some();
        let (personal, used) =
            if known { personal_system(runtime, user, query)? } else { (String::new(), PersonalContext { user: user.clone(), ..PersonalContext::default() }) };
        context = Some(used);
        if !personal.is_empty() {
            // One system turn: the persona and memory, then the client's own.
            let client: Vec<String> = messages.iter().filter(|m| m.role == persona_engine::Role::System).map(|m| m.content.clone()).collect();
            messages.retain(|m| m.role != persona_engine::Role::System);
            let system = std::iter::once(personal).chain(client).collect::<Vec<_>>().join("\n\n");
            messages.insert(0, ChatMessage::system(system));
        }
    }
    let model = runtime.scoped_model();
    let prompt = model.render_chat(&messages)?;
    let tokens = model.encode_prompt(&prompt)?;
    let scope = job.user.clone().unwrap_or_else(|| ANONYMOUS_SCOPE.to_string());
    let mut vocab = || vocab.get_or_insert_with(|| Arc::new(TokenBytes::from_tokenizer(model.tokenizer()))).clone();
    let constraint: Option<Box<dyn TokenConstraint>> = match &job.json {
        None => None,
        Some(JsonMode::Object) => Some(Box::new(GrammarConstraint::new(JsonGrammar::object(), vocab()))),
        Some(JsonMode::Schema(grammar)) => Some(Box::new(GrammarConstraint::new((**grammar).clone(), vocab()))),
    };
    let id = model.join(batch, SeqRequest { prompt: tokens, params: job.params.clone(), constraint, scope })?;
    Ok((id, context))
}

/// The full method: the action loop with the user's persona, memory and
/// tools; the answer is the reply.
fn answer_as_agent<M: AgentLlm>(runtime: &mut Runtime<M>, job: &ChatJob, query: &str) -> Result<(String, Usage, PersonalContext), ApiError> {
    let Some(user) = &job.user else {
        return Err(ApiError::bad_request("the `persona-agent` model answers as a user: name one with `user`, `safety_identifier` or the X-User-Id header")
            .with_param("user"));
    };
    let mut scope = runtime.user(user)?;
    let persona = scope.persona()?;
    let config = AgentConfig { temperature: job.params.sampling.temperature, seed: job.params.sampling.seed, ..AgentConfig::default() };
    let trace = scope.ask(&persona.text, query, &config)?;
    let usage =
        Usage { prompt_tokens: trace.prefilled_tokens + trace.cached_tokens, completion_tokens: trace.completion_tokens, cached_tokens: trace.cached_tokens };
    let context = PersonalContext { user: user.clone(), persona_version: Some(persona.version), records: Vec::new() };
    Ok((trace.answer, usage, context))
}

/// Stores the exchange (when asked) and then sends the end of the reply.
fn finish<M: AgentLlm>(runtime: &mut Runtime<M>, job: Box<ChatJob>, query: &str, text: String, finish: &'static str, usage: Usage) {
    if let (Some(user), true) = (&job.user, job.store) {
        if !query.trim().is_empty() && !text.trim().is_empty() {
            let mut metadata = Map::new();
            metadata.insert("source".into(), Value::String("persona serve".into()));
            metadata.insert("completion_id".into(), Value::String(job.id.clone()));
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default();
            let record = NewRecord { timestamp: Some(now), metadata, ..NewRecord::new(query, text.trim()) };
            let (memory, encoder) = runtime.memory_mut();
            if let Err(e) = memory.import(user, &[record], encoder, 1, &mut |_, _| {}) {
                tracing::error!(user = %user, error = %e, "storing the exchange failed");
                let _ = job.events.send(ChatEvent::Failed(ApiError::internal(format!("the reply could not be stored in the user's memory: {e}"))));
                return;
            }
        }
    }
    let _ = job.events.send(ChatEvent::Done { text, finish, usage });
}
