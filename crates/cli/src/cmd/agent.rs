//! What `persona ask` and `persona align` share: the model, the user's
//! memory, the tools and the loop's settings.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use persona_agent::{AgentConfig, Encyclopedia, Runtime, ToolConfig, UserScope};
use persona_engine::GgufChatModel;
use persona_memory::{PersonaVersion, SemanticConfig};

use crate::progress::spinner;
use crate::resolve::{Context, DEFAULT_CHAT_MODEL, DEFAULT_ENCODER};

/// The models and the encyclopedia (shared by `ask`, `align` and `serve`).
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Chat model: a manifest name (tiny, small, large) or a GGUF path.
    #[arg(short, long, default_value = DEFAULT_CHAT_MODEL)]
    pub model: String,
    /// Encoder: the one the user's records were embedded with.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Encyclopedia corpus for `encyclopedia_search`: a JSON object or array
    /// of articles ({title, extract|text|content, description?}) or JSON
    /// Lines [default: the offline Wikipedia summaries, `wiki`].
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Do not offer the encyclopedia tool.
    #[arg(long, conflicts_with = "corpus")]
    pub no_encyclopedia: bool,
}

impl RuntimeArgs {
    /// The encyclopedia corpus file (installed if needed), `None` without one.
    pub fn corpus_path(&self, ctx: &Context) -> Result<Option<PathBuf>> {
        if self.no_encyclopedia {
            return Ok(None);
        }
        Ok(Some(match &self.corpus {
            Some(p) => p.clone(),
            None => ctx.model_path("wiki", false)?,
        }))
    }
}

/// Options of the agent (shared by `ask` and `align`).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The user id.
    #[arg(long)]
    pub user: String,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Records returned by a memory search (K).
    #[arg(short, default_value_t = ToolConfig::default().k)]
    pub k: usize,
    /// Most steps of the action loop (tool calls plus the answer).
    #[arg(long, default_value_t = AgentConfig::default().max_steps)]
    pub max_steps: usize,
    /// Tool calls required before the answer (one of them always searches
    /// the user's memory).
    #[arg(long, default_value_t = AgentConfig::default().min_tool_calls)]
    pub min_tool_calls: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = AgentConfig::default().temperature)]
    pub temperature: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = AgentConfig::default().seed)]
    pub seed: u64,
}

impl AgentArgs {
    pub fn agent_config(&self) -> AgentConfig {
        AgentConfig { max_steps: self.max_steps, min_tool_calls: self.min_tool_calls, temperature: self.temperature, seed: self.seed, ..AgentConfig::default() }
    }

    pub fn tool_config(&self) -> ToolConfig {
        ToolConfig { k: self.k, ..ToolConfig::default() }
    }

    pub fn semantic_config(&self) -> SemanticConfig {
        SemanticConfig { temperature: self.temperature, seed: self.seed, ..SemanticConfig::default() }
    }
}

/// Loads the model, the encoder, the user store and the encyclopedia for
/// an agent command; the user must exist.
pub fn load(ctx: &Context, args: &AgentArgs) -> Result<Runtime<GgufChatModel>> {
    let memory = ctx.memory()?;
    memory.store().require_user(&args.user)?;
    let path = ctx.model_path(&args.runtime.model, false)?;
    let bar = spinner(&format!("loading {}", args.runtime.model));
    let model = ctx.load_chat_model(&path);
    bar.finish_and_clear();
    let model = model?;
    let encoder = ctx.load_encoder(&args.runtime.encoder, false)?;
    let encyclopedia = match args.runtime.corpus_path(ctx)? {
        None => None,
        Some(corpus) => {
            let bar = spinner(&format!("opening the encyclopedia {}", corpus.display()));
            let e = Encyclopedia::open(&corpus, Some(&ctx.data_dir.join("encyclopedia")));
            bar.finish_and_clear();
            Some(e.with_context(|| format!("opening the encyclopedia corpus {}", corpus.display()))?)
        }
    };
    let mut runtime = Runtime::new(model, std::sync::Arc::new(encoder), memory, encyclopedia.map(std::sync::Arc::new));
    runtime.tools = args.tool_config();
    runtime.semantic = args.semantic_config();
    Ok(runtime)
}

/// The user's current persona, building it (and the semantic memory) on
/// first use.
pub fn persona(user: &mut UserScope<'_, GgufChatModel>) -> Result<PersonaVersion> {
    if let Some(p) = user.latest_persona()? {
        return Ok(p);
    }
    let bar = spinner(&format!("building the persona of '{}' from its history (first use)", user.id()));
    let p = user.persona();
    bar.finish_and_clear();
    Ok(p?)
}
