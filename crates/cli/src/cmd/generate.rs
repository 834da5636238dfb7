//! `persona generate`: one prompt in, a streamed answer out.

use std::io::{Read, Write};

use anyhow::{Context as _, Result};
use clap::Args;
use persona_engine::{ChatMessage, ChatModel, ContextPolicy, GenerationParams, GgufChatModel, SamplingParams};
use serde_json::json;

use crate::resolve::{Context, DEFAULT_CHAT_MODEL};

/// Options shared by the commands that generate text.
#[derive(Debug, Clone, Args)]
pub struct GenOptions {
    /// Chat model: a manifest name (tiny, small, large) or a path to a GGUF file.
    #[arg(short, long, default_value = DEFAULT_CHAT_MODEL, env = "PERSONA_MODEL")]
    pub model: String,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Random seed.
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// Repeat penalty (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Drop the start of an over-long prompt instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Do not install a missing manifest model.
    #[arg(long)]
    pub no_fetch: bool,
}

impl GenOptions {
    pub fn params(&self) -> GenerationParams {
        GenerationParams {
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
                repeat_penalty: self.repeat_penalty,
                ..SamplingParams::default()
            },
            context_policy: if self.truncate { ContextPolicy::TruncateStart } else { ContextPolicy::Error },
            ignore_eos: false,
        }
    }

    pub fn load(&self, ctx: &Context) -> Result<GgufChatModel> {
        let path = ctx.model_path(&self.model, self.no_fetch)?;
        ctx.load_chat_model(&path)
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub options: GenOptions,
    /// Print one JSON object (text, token counts, timings) instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Treat PROMPT as raw model input (no chat template).
    #[arg(long)]
    pub raw: bool,
    /// The prompt; `-` reads it from stdin.
    pub prompt: String,
}

pub fn run(ctx: &Context, args: GenerateArgs) -> Result<()> {
    let prompt = if args.prompt == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the prompt from stdin")?;
        s
    } else {
        args.prompt.clone()
    };
    let mut model = args.options.load(ctx)?;
    let params = args.options.params();
    let text = if args.raw {
        prompt
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.options.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(prompt));
        model.render_chat(&messages)?
    };
    let stream = !args.json;
    let mut stdout = std::io::stdout();
    let generation = model.generate(&text, &params, &mut |piece| {
        if stream {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
        true
    })?;
    if args.json {
        let info = model.info();
        let out = json!({
            "model": info.name,
            "path": info.path,
            "text": generation.text,
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "finish_reason": generation.finish_reason,
            "load_ms": info.load_ms,
            "prefill_ms": generation.prefill_ms,
            "decode_ms": generation.decode_ms,
            "prefill_tokens_per_s": generation.prefill_tokens_per_s(),
            "decode_tokens_per_s": generation.decode_tokens_per_s(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!();
    }
    Ok(())
}
