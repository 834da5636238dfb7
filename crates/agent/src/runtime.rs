//! What serves users: the chat model, the sentence encoder, the user store
//! and the encyclopedia, owned together. Everything done for one user goes
//! through [`Runtime::user`], which names the user to the model's caches
//! first: cached prompt state (a persona prefix) is only reused within one
//! user's scope, so no caller can serve user B from user A's cache by
//! forgetting a step.

use std::sync::Arc;

use persona_engine::Encoder;
use persona_memory::{Hit, Memory, PersonaVersion, SemanticConfig};

use crate::action::{run_agent, AgentConfig};
use crate::align::{align_with, standard_tools, AlignConfig, AlignContext, AlignEvent, AlignReport, Replay, ToolConfig};
use crate::error::Result;
use crate::llm::AgentLlm;
use crate::persona;
use crate::tools::Encyclopedia;
use crate::trace::Trace;

/// The cache scope of work done for no user (plain chat).
pub const ANONYMOUS_SCOPE: &str = "";

/// The sentence encoder, shareable between runtimes on several threads.
pub type SharedEncoder = Arc<dyn Encoder + Send + Sync>;

/// The loaded parts that answer users (see the module docs). The encoder
/// and the encyclopedia are read-only and may be shared by several
/// runtimes (one per thread, each with its own store connection and a
/// client of one shared model).
pub struct Runtime<M> {
    model: M,
    encoder: SharedEncoder,
    memory: Memory,
    encyclopedia: Option<Arc<Encyclopedia>>,
    /// Settings of the tools (K records per memory search...).
    pub tools: ToolConfig,
    /// Settings of the semantic memory written on a user's first use.
    pub semantic: SemanticConfig,
}

impl<M: AgentLlm> Runtime<M> {
    /// Puts the parts together, with default tool and semantic settings.
    pub fn new(model: M, encoder: SharedEncoder, memory: Memory, encyclopedia: Option<Arc<Encyclopedia>>) -> Self {
        Runtime { model, encoder, memory, encyclopedia, tools: ToolConfig::default(), semantic: SemanticConfig::default() }
    }

    /// A runtime for another thread that works with `model` (a client of
    /// a shared model, say): the same encoder, encyclopedia and settings,
    /// and its own connection to the same user store.
    pub fn fork<N: AgentLlm>(&self, model: N) -> Result<Runtime<N>> {
        Ok(Runtime {
            model,
            encoder: Arc::clone(&self.encoder),
            memory: self.memory.reopen()?,
            encyclopedia: self.encyclopedia.clone(),
            tools: self.tools,
            semantic: self.semantic.clone(),
        })
    }

    /// Work for the user `id`, who must be in the store; the model's cache
    /// scope is set to the user before anything else can use it.
    pub fn user(&mut self, id: &str) -> Result<UserScope<'_, M>> {
        self.memory.store().require_user(id)?;
        self.model.set_scope(id);
        Ok(UserScope { runtime: self, user: id.to_string() })
    }

    /// The model for work done for no user (the anonymous cache scope).
    pub fn anonymous_model(&mut self) -> &mut M {
        self.model.set_scope(ANONYMOUS_SCOPE);
        &mut self.model
    }

    /// The model, for calls that name the scope of each sequence
    /// themselves (the batched engine API); `set_scope` calls and
    /// single-sequence calls on it go through [`Runtime::user`] or
    /// [`Runtime::anonymous_model`] instead.
    pub fn scoped_model(&mut self) -> &mut M {
        &mut self.model
    }

    /// The sentence encoder (the one the users' records are embedded with).
    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    /// The user store.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The user store with the encoder, for imports, searches and deletes
    /// (these touch no model cache).
    pub fn memory_mut(&mut self) -> (&mut Memory, &dyn Encoder) {
        (&mut self.memory, self.encoder.as_ref())
    }

    /// The encyclopedia, when one is loaded.
    pub fn encyclopedia(&self) -> Option<&Encyclopedia> {
        self.encyclopedia.as_deref()
    }

    /// Makes sure the user `id` is in the store (an empty history if new).
    pub fn ensure_user(&mut self, id: &str) -> Result<()> {
        self.memory.store().ensure_user(id)?;
        Ok(())
    }
}

/// The parts of a runtime, lent for one user's work (see
/// [`UserScope::parts`]): the model is scoped to the user.
pub struct Parts<'p, M> {
    /// The model, its cache scope set to the user.
    pub model: &'p mut M,
    /// The user store.
    pub memory: &'p mut Memory,
    /// The sentence encoder.
    pub encoder: &'p dyn Encoder,
    /// The encyclopedia, when one is loaded.
    pub encyclopedia: Option<&'p Encyclopedia>,
    /// Tool settings.
    pub tools: &'p ToolConfig,
    /// Semantic memory settings.
    pub semantic: &'p SemanticConfig,
}

/// The runtime working for one user (see [`Runtime::user`]).
pub struct UserScope<'r, M> {
    runtime: &'r mut Runtime<M>,
    user: String,
}

impl<M: AgentLlm> UserScope<'_, M> {
    /// The user's id.
    pub fn id(&self) -> &str {
        &self.user
    }

    /// The user's current persona; on first use it is built from the
    /// semantic memory (written from the user's records when missing).
    pub fn persona(&mut self) -> Result<PersonaVersion> {
        let rt = &mut *self.runtime;
        persona::current_or_init(&mut rt.model, &mut rt.memory, &self.user, &rt.semantic)
    }

    /// The user's latest persona, without building one.
    pub fn latest_persona(&self) -> Result<Option<PersonaVersion>> {
        let store = self.runtime.memory.store();
        let u = store.require_user(&self.user)?;
        Ok(store.latest_persona(&u)?)
    }

    /// The `k` records of the user's episodic memory nearest to `query`.
    pub fn search(&mut self, query: &str, k: usize) -> Result<Vec<Hit>> {
        let rt = &mut *self.runtime;
        Ok(rt.memory.search(&self.user, query, k, rt.encoder.as_ref())?)
    }

    /// Answers `question` as the user would: the action loop with the
    /// user's persona, memory and the encyclopedia.
    pub fn ask(&mut self, persona_text: &str, question: &str, config: &AgentConfig) -> Result<Trace> {
        let rt = &mut *self.runtime;
        let mut tools = standard_tools(&mut rt.memory, rt.encoder.as_ref(), rt.encyclopedia.as_deref(), &self.user, &rt.tools, &[])?;
        run_agent(&mut rt.model, persona_text, &mut tools, question, config)
    }

    /// Test-time alignment of the user's persona (Algorithm 1); `writer`
    /// writes feedback and rewrites when given (it is scoped to the user
    /// too), `replays` replace the user's latest records as the replayed
    /// interactions.
    pub fn align<'w>(
        &'w mut self,
        config: &AlignConfig,
        writer: Option<&'w mut dyn AgentLlm>,
        replays: Option<Vec<Replay>>,
        on_event: &mut dyn FnMut(AlignEvent<'_>),
    ) -> Result<AlignReport> {
        let rt = &mut *self.runtime;
        let ctx = AlignContext { model: &mut rt.model, writer, memory: &mut rt.memory, encoder: rt.encoder.as_ref(), encyclopedia: rt.encyclopedia.as_deref() };
        align_with(ctx, &self.user, config, replays, on_event)
    }

    /// The model, scoped to this user.
    pub fn model(&mut self) -> &mut M {
        &mut self.runtime.model
    }

    /// Every part at once, for work the methods above do not cover (the
    /// benchmark's baselines); the model stays scoped to this user.
    pub fn parts(&mut self) -> Parts<'_, M> {
        let rt = &mut *self.runtime;
        Parts {
            model: &mut rt.model,
            memory: &mut rt.memory,
            encoder: rt.encoder.as_ref(),
            encyclopedia: rt.encyclopedia.as_deref(),
            tools: &rt.tools,
            semantic: &rt.semantic,
        }
    }
}
