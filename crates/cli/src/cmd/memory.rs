//! `persona memory`: search a user's episodic memory, summarise it into a
//! semantic profile.

use anyhow::Result;
use clap::{Args, Subcommand};
use persona_memory::semantic::{summarize, SemanticConfig, TaskKind};

use crate::display::{date, one_line};
use crate::progress::spinner;
use crate::resolve::{Context, DEFAULT_CHAT_MODEL, DEFAULT_ENCODER};

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// The user's records most similar to QUERY (cosine similarity of
    /// sentence embeddings, through the user's HNSW index).
    Search(SearchArgs),
    /// Summarise the user's records into a profile of stable preferences
    /// (semantic memory), stored as a new version.
    Summarize(SummarizeArgs),
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The user id.
    #[arg(long)]
    pub user: String,
    /// How many records to return.
    #[arg(short, default_value_t = 4)]
    pub k: usize,
    /// Print JSON: a list of {score, id, query, response, metadata, timestamp, created_at}.
    #[arg(long)]
    pub json: bool,
    /// Encoder: the one the user's records were embedded with.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// What to look for.
    pub query: String,
}

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// The user id.
    #[arg(long)]
    pub user: String,
    /// Chat model: a manifest name (tiny, small, large) or a GGUF path.
    #[arg(short, long, default_value = DEFAULT_CHAT_MODEL)]
    pub model: String,
    /// Task kind, which picks the prompt: general, citation, movie-tags,
    /// news-category, product-rating [default: from LaMP imports, else general].
    #[arg(long)]
    pub task: Option<TaskKind>,
    /// Summarise only the N most recent records.
    #[arg(long, value_name = "N")]
    pub max_records: Option<usize>,
    /// Most tokens of records per model call (longer histories are
    /// summarised in chunks, then merged).
    #[arg(long, default_value_t = SemanticConfig::default().chunk_tokens)]
    pub chunk_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = SemanticConfig::default().temperature)]
    pub temperature: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, command: MemoryCommand) -> Result<()> {
    match command {
        MemoryCommand::Search(args) => search(ctx, args),
        MemoryCommand::Summarize(args) => summarize_user(ctx, args),
    }
}

fn search(ctx: &Context, args: SearchArgs) -> Result<()> {
    let mut memory = ctx.memory()?;
    memory.store().require_user(&args.user)?;
    let encoder = ctx.load_encoder(&args.encoder, false)?;
    let hits = memory.search(&args.user, &args.query, args.k, &encoder)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("user '{}' has no records", args.user);
    }
    for h in hits {
        println!("{:.3}  [{}] {}\n       -> {}", h.score, date(h.record.timestamp), one_line(&h.record.query, 100), one_line(&h.record.response, 100));
    }
    Ok(())
}

fn summarize_user(ctx: &Context, args: SummarizeArgs) -> Result<()> {
    let mut memory = ctx.memory()?;
    let user = memory.store().require_user(&args.user)?;
    let records = memory.store().records(&user)?;
    if records.is_empty() {
        anyhow::bail!("user '{}' has no records to summarise; import some first", args.user);
    }
    let task = args.task.unwrap_or_else(|| TaskKind::detect(&records));
    let path = ctx.model_path(&args.model, false)?;
    let mut model = ctx.load_chat_model(&path)?;
    let config = SemanticConfig { chunk_tokens: args.chunk_tokens, max_records: args.max_records, temperature: args.temperature, ..Default::default() };
    let bar = spinner(&format!("summarising {} records of '{}' ({task})", records.len(), args.user));
    let summary = summarize(&mut model, &records, task, &config);
    bar.finish_and_clear();
    let summary = summary?;
    let model_name = persona_memory::Summarizer::model_name(&model);
    let profile = memory.store_mut().add_semantic_profile(&user, task.name(), task.prompt(), &model_name, &summary.text, summary.records as i64)?;
    if args.json {
        let out = serde_json::json!({"user": args.user, "profile": profile, "chunks": summary.chunks, "calls": summary.calls});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "semantic profile v{} of '{}' ({task}, {} records, {} model calls):\n{}",
            profile.version, args.user, summary.records, summary.calls, profile.summary
        );
    }
    Ok(())
}
