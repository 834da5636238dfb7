//! `persona embed`: sentence embeddings.

use anyhow::Result;
use clap::Args;
use persona_engine::Encoder;

use crate::resolve::{Context, DEFAULT_ENCODER};

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Encoder: a manifest name or a folder with config.json, tokenizer.json, model.safetensors.
    #[arg(short, long, default_value = DEFAULT_ENCODER)]
    pub model: String,
    /// Print JSON: a list of {text, embedding}.
    #[arg(long)]
    pub json: bool,
    /// Do not install a missing manifest model.
    #[arg(long)]
    pub no_fetch: bool,
    /// The texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

pub fn run(ctx: &Context, args: EmbedArgs) -> Result<()> {
    let encoder = ctx.load_encoder(&args.model, args.no_fetch)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vectors = encoder.embed(&texts)?;
    if args.json {
        let rows: Vec<_> = texts.iter().zip(&vectors).map(|(t, v)| serde_json::json!({"text": t, "embedding": v})).collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for (t, v) in texts.iter().zip(&vectors) {
            let head: Vec<String> = v.iter().take(8).map(|x| format!("{x:+.4}")).collect();
            println!("{t}\n  [{} ... ] ({} dims)", head.join(", "), v.len());
        }
    }
    Ok(())
}
