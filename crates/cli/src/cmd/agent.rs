//! What `persona ask` and `persona align` share: the model, the user's
//! memory, the tools and the loop's settings.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use persona_agent::{AgentConfig, Encyclopedia, ToolConfig};
use persona_engine::{BertEncoder, GgufChatModel};
use persona_memory::{Memory, PersonaVersion, SemanticConfig};

use crate::progress::spinner;
use crate::resolve::{Context, DEFAULT_CHAT_MODEL, DEFAULT_ENCODER};

/// Options of the agent (shared by `ask` and `align`).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The user id.
    #[arg(long)]
    pub user: String,
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

/// Everything loaded for an agent command.
pub struct Loaded {
    pub memory: Memory,
    pub model: GgufChatModel,
    pub encoder: BertEncoder,
    pub encyclopedia: Option<Encyclopedia>,
}

pub fn load(ctx: &Context, args: &AgentArgs) -> Result<Loaded> {
    let memory = ctx.memory()?;
    memory.store().require_user(&args.user)?;
    let path = ctx.model_path(&args.model, false)?;
    let bar = spinner(&format!("loading {}", args.model));
    let model = ctx.load_chat_model(&path);
    bar.finish_and_clear();
    let mut model = model?;
    // Cached prompt state (the persona prefix) is only reused for this user.
    persona_engine::ChatModel::set_cache_scope(&mut model, &args.user);
    let encoder = ctx.load_encoder(&args.encoder, false)?;
    let encyclopedia = if args.no_encyclopedia {
        None
    } else {
        let corpus = match &args.corpus {
            Some(p) => p.clone(),
            None => ctx.model_path("wiki", false)?,
        };
        let bar = spinner(&format!("opening the encyclopedia {}", corpus.display()));
        let e = Encyclopedia::open(&corpus, Some(&ctx.data_dir.join("encyclopedia")));
        bar.finish_and_clear();
        Some(e.with_context(|| format!("opening the encyclopedia corpus {}", corpus.display()))?)
    };
    Ok(Loaded { memory, model, encoder, encyclopedia })
}

/// The user's current persona, building it (and the semantic memory) on
/// first use.
pub fn persona(loaded: &mut Loaded, args: &AgentArgs) -> Result<PersonaVersion> {
    let user = loaded.memory.store().require_user(&args.user)?;
    if let Some(p) = loaded.memory.store().latest_persona(&user)? {
        return Ok(p);
    }
    let bar = spinner(&format!("building the persona of '{}' from its history (first use)", args.user));
    let p = persona_agent::persona::current_or_init(&mut loaded.model, &mut loaded.memory, &args.user, &args.semantic_config());
    bar.finish_and_clear();
    Ok(p?)
}
