//! One model shared by several threads: a thread owns the
//! [`GgufChatModel`] and decodes every request it gets in one running batch
//! (continuous batching), so that several independent callers, such as
//! benchmark users in flight together or a server's agent requests, have
//! their calls decoded together instead of one after another. Each caller
//! holds a [`ModelClient`]: it renders and tokenizes prompts on its own
//! thread, sends them with their parameters, constraint and cache scope,
//! and blocks until its sequences are done. A request to score
//! continuations (the log-probability of each label after a prompt) is
//! served by the model's thread between two steps of the batch, on the
//! model's own working cache.
//!
//! A sequence gets the same tokens here as in a batch of
//! [`GgufChatModel::generate_batch_constrained`]: its own sampler seeded by
//! its parameters, its own stop strings and constraint. The prefix cache is
//! kept per scope, as always, so callers working for different users never
//! share cached prompt state.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::backend::Backend;
use crate::batch::{Batch, SeqEvent, SeqId, SeqRequest};
use crate::chat::{ChatMessage, ChatTemplate};
use crate::chat_model::{prompt_ids, ChatModel, GgufChatModel, ModelInfo};
use crate::constraint::TokenConstraint;
use crate::error::{EngineError, Result};
use crate::generation::{ContextPolicy, Generation, GenerationParams};
use crate::tokenizer::GgufTokenizer;

/// A constraint that can travel to the model's thread.
pub type SendConstraint = Box<dyn TokenConstraint + Send>;

/// What callers need besides the model's thread: facts, tokenizer and
/// template, to build prompts on their own threads.
struct Prompter {
    info: ModelInfo,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    add_bos: bool,
}

/// A sequence a [`ModelClient`] sent, for the loop that owns the model
/// to run in its batch ([`ClientSequences`]).
pub struct ClientRequest {
    prompt: Vec<u32>,
    scope: String,
    work: Work,
}

/// What a [`ClientRequest`] asks for.
enum Work {
    /// A sequence continuing the prompt, in the batch.
    Generate { params: GenerationParams, constraint: Option<SendConstraint>, reply: Sender<Result<Generation>> },
    /// The total log-probability of each continuation after the prompt
    /// ([`GgufChatModel::score_continuations`]).
    Score { continuations: Vec<Vec<u32>>, policy: ContextPolicy, reply: Sender<Result<Vec<f32>>> },
}

impl std::fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRequest").field("prompt_tokens", &self.prompt.len()).field("scope", &self.scope).finish()
    }
}

/// Where a client's requests go: true when the request was taken.
type Sink = Arc<dyn Fn(ClientRequest) -> bool + Send + Sync>;

/// A model running on its own thread, decoding the requests of every
/// [`ModelClient`] together. The thread ends when the `SharedModel` and
/// every client are gone (sequences still running are finished first).
pub struct SharedModel {
    requests: Sender<ClientRequest>,
    prompter: Arc<Prompter>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SharedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedModel").field("model", &self.prompter.info.name).finish()
    }
}

impl SharedModel {
    /// Moves `model` to a thread of its own that decodes at most `parallel`
    /// sequences in one batch (more wait their turn, in order). Fails for
    /// architectures that do not run on the own decoder (batched decoding
    /// needs it) and for `parallel == 0`.
    pub fn spawn(model: GgufChatModel, parallel: usize) -> Result<SharedModel> {
        if parallel == 0 {
            return Err(EngineError::InvalidParameter { name: "parallel", reason: "must be at least 1".into() });
        }
        if let Backend::Candle(..) = model.backend {
            return Err(EngineError::InvalidParameter {
                name: "model",
                reason: format!("a shared model decodes in batches, which runs on the own decoder (Llama, Qwen2); this model is {}", model.info.architecture),
            });
        }
        let prompter = Prompter::of(&model);
        let (requests, inbox) = channel();
        let thread = std::thread::Builder::new()
            .name("persona-shared-model".into())
            .spawn(move || serve(model, &inbox, parallel))
            .map_err(|e| EngineError::Shared(format!("cannot start the model's thread: {e}")))?;
        Ok(SharedModel { requests, prompter, thread: Some(thread) })
    }

    /// A new caller of the model (default cache scope: the empty string).
    pub fn client(&self) -> ModelClient {
        let requests = self.requests.clone();
        let sink: Sink = Arc::new(move |request| requests.send(request).is_ok());
        ModelClient { sink, prompter: Arc::clone(&self.prompter), scope: String::new() }
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.prompter.info
    }

    /// Waits for the model's thread to end: when every client is dropped
    /// and the sequences they sent are done.
    pub fn join(mut self) -> Result<()> {
        let thread = self.thread.take();
        drop(self);
        match thread.map(JoinHandle::join) {
            Some(Err(_)) => Err(EngineError::Shared("the model's thread panicked".into())),
            _ => Ok(()),
        }
    }
}

/// One caller of a [`SharedModel`]: cheap to clone, and `Send`, so each
/// thread holds its own. Calls block until their sequences are done;
/// sequences of different clients are decoded together.
#[derive(Clone)]
pub struct ModelClient {
    sink: Sink,
    prompter: Arc<Prompter>,
    scope: String,
}

impl Prompter {
    fn of(model: &GgufChatModel) -> Arc<Prompter> {
        Arc::new(Prompter { info: model.info.clone(), tokenizer: model.tokenizer.clone(), template: model.template.clone(), add_bos: model.add_bos })
    }
}

impl std::fmt::Debug for ModelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelClient").field("model", &self.prompter.info.name).field("scope", &self.scope).finish()
    }
}

impl ModelClient {
    /// A caller of `model` for a loop that owns the model itself (a
    /// server's engine thread, say): `sink` hands each request to that
    /// loop, which runs it with [`ClientSequences`] in its own batch;
    /// `sink` returns false when the loop is gone. Default cache scope:
    /// the empty string.
    pub fn with_sink(model: &GgufChatModel, sink: impl Fn(ClientRequest) -> bool + Send + Sync + 'static) -> ModelClient {
        ModelClient { sink: Arc::new(sink), prompter: Prompter::of(model), scope: String::new() }
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.prompter.info
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.prompter.tokenizer
    }

    /// Renders messages with the model's chat template, ending where the
    /// assistant's reply starts.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        self.prompter.template.render(messages, true)
    }

    /// Tokenizes templated text the way generation does (special tokens
    /// parsed, BOS added when the model asks for it).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        prompt_ids(&self.prompter.tokenizer, self.prompter.add_bos, prompt)
    }

    /// Whose work this client's calls are: cached prompt state is reused
    /// only within one scope (see [`crate::ChatModel::set_cache_scope`]).
    pub fn set_scope(&mut self, scope: &str) {
        scope.clone_into(&mut self.scope);
    }

    /// The client's cache scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Continues a tokenized prompt, optionally under a constraint, in the
    /// model's running batch.
    pub fn generate(&self, prompt: Vec<u32>, params: &GenerationParams, constraint: Option<SendConstraint>) -> Result<Generation> {
        let reply = self.submit(prompt, params, constraint)?;
        receive(&reply)
    }

    /// Continues several prompts (each with an optional constraint) in the
    /// running batch, all at once; results in the order of `prompts`.
    pub fn generate_many(&self, prompts: Vec<(Vec<u32>, Option<SendConstraint>)>, params: &GenerationParams) -> Result<Vec<Generation>> {
        let replies = prompts.into_iter().map(|(prompt, constraint)| self.submit(prompt, params, constraint)).collect::<Result<Vec<_>>>()?;
        replies.iter().map(receive).collect()
    }

    /// The total log-probability of each continuation after `prompt`, in
    /// this client's scope (see [`GgufChatModel::score_continuations`]):
    /// the model's thread computes it between two steps of its batch.
    pub fn score_continuations(&self, prompt: Vec<u32>, continuations: Vec<Vec<u32>>, policy: ContextPolicy) -> Result<Vec<f32>> {
        let (reply, answer) = channel();
        self.send(prompt, Work::Score { continuations, policy, reply })?;
        answer.recv().map_err(|_| stopped())?
    }

    fn submit(&self, prompt: Vec<u32>, params: &GenerationParams, constraint: Option<SendConstraint>) -> Result<Receiver<Result<Generation>>> {
        let (reply, answer) = channel();
        self.send(prompt, Work::Generate { params: params.clone(), constraint, reply })?;
        Ok(answer)
    }

    fn send(&self, prompt: Vec<u32>, work: Work) -> Result<()> {
        if (self.sink)(ClientRequest { prompt, scope: self.scope.clone(), work }) {
            Ok(())
        } else {
            Err(stopped())
        }
    }
}

fn stopped() -> EngineError {
    EngineError::Shared("the model's thread has stopped".into())
}

fn receive(answer: &Receiver<Result<Generation>>) -> Result<Generation> {
    answer.recv().map_err(|_| stopped())?
}

/// The clients' sequences of a loop that owns a model: requests wait in
/// order, join the loop's batch when it has room, and each is answered
/// when its sequence is done. The loop steps the batch itself and passes
/// every event through [`ClientSequences::route`], so client sequences
/// can share a batch with the loop's own (a server's streamed chats).
#[derive(Debug, Default)]
pub struct ClientSequences {
    waiting: VecDeque<ClientRequest>,
    running: HashMap<SeqId, Sender<Result<Generation>>>,
}

impl ClientSequences {
    /// No sequences.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a request.
    pub fn push(&mut self, request: ClientRequest) {
        self.waiting.push_back(request);
    }

    /// Requests waiting for a place in the batch.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences in the batch.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Moves the oldest waiting request into `batch`; false when none was
    /// waiting. A request the model refuses (too long, say) is answered
    /// with the error at once; a scoring request is answered at once too,
    /// computed on the model's working cache (the batch's sequences have
    /// their own caches and wait for it).
    pub fn admit_next(&mut self, model: &mut GgufChatModel, batch: &mut Batch<'static>) -> bool {
        let Some(ClientRequest { prompt, scope, work }) = self.waiting.pop_front() else { return false };
        match work {
            Work::Generate { params, constraint, reply } => {
                let constraint = constraint.map(|c| c as Box<dyn TokenConstraint>);
                match model.join(batch, SeqRequest { prompt, params, constraint, scope }) {
                    Ok(id) => {
                        self.running.insert(id, reply);
                    }
                    // A caller that went away needs no answer.
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
            Work::Score { continuations, policy, reply } => {
                let owner = model.scope.clone();
                model.set_cache_scope(&scope);
                let scores = model.score_continuations(prompt, &continuations, policy);
                model.set_cache_scope(&owner);
                drop(reply.send(scores));
            }
        }
        true
    }

    /// Takes the event if it is about a client sequence (answering the
    /// client when the sequence is done or failed); gives it back otherwise.
    pub fn route(&mut self, event: SeqEvent) -> Option<SeqEvent> {
        let (id, result) = match event {
            SeqEvent::Done { id, generation } if self.running.contains_key(&id) => (id, Ok(generation)),
            SeqEvent::Failed { id, error } if self.running.contains_key(&id) => (id, Err(error)),
            SeqEvent::Text { id, .. } if self.running.contains_key(&id) => return None,
            other => return Some(other),
        };
        if let Some(reply) = self.running.remove(&id) {
            drop(reply.send(result));
        }
        None
    }

    /// Answers every running sequence with an error (the batch they were
    /// in failed a step and was dropped); waiting requests stay.
    pub fn fail_running(&mut self, reason: &str) {
        for (_, reply) in self.running.drain() {
            drop(reply.send(Err(EngineError::Shared(format!("a batched step failed: {reason}")))));
        }
    }
}

/// The model's thread: admits requests into the batch (at most `parallel`
/// running), steps it, and answers each sequence when it is done. Returns
/// when every sender is gone and nothing is left to run.
fn serve(mut model: GgufChatModel, inbox: &Receiver<ClientRequest>, parallel: usize) {
    let mut batch: Batch<'static> = Batch::new();
    let mut clients = ClientSequences::new();
    let mut events = Vec::new();
    let mut open = true;
    loop {
        if batch.is_empty() && clients.waiting() == 0 {
            if !open {
                return;
            }
            match inbox.recv() {
                Ok(request) => clients.push(request),
                Err(_) => return,
            }
        }
        loop {
            match inbox.try_recv() {
                Ok(request) => clients.push(request),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        while batch.len() < parallel && clients.admit_next(&mut model, &mut batch) {}
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = model.step(&mut batch, &mut events) {
            let reason = e.to_string();
            tracing::error!(error = %reason, sequences = clients.running(), "a step of the shared model's batch failed");
            clients.fail_running(&reason);
            batch = Batch::new();
            events.clear();
            continue;
        }
        for event in events.drain(..) {
            clients.route(event);
        }
    }
}
