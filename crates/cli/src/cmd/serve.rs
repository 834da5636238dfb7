//! `persona serve`: the OpenAI-compatible local server (crate
//! `persona-server`), personalized per user.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use persona_agent::{Encyclopedia, Runtime};
use persona_engine::{BertEncoder, GgufChatModel};
use persona_memory::Memory;
use persona_server::{Limits, Loader, Server, ServerConfig};

use crate::cmd::agent::RuntimeArgs;
use crate::resolve::Context;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. The default serves this machine only; use
    /// 0.0.0.0 (with --api-key) to serve the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "PERSONA_API_KEY", conflicts_with = "api_key_file", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read the API key from a file (its first line).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Chat requests decoded together in one batch.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Chat requests that may wait for a place; more are answered 503 with
    /// Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Alignment jobs (POST /v1/users/{id}/align) run at once; more wait in
    /// order, up to --queue. Each shares the model with the chats.
    #[arg(long, default_value_t = 1)]
    pub align_jobs: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Allow browser requests from this origin (repeatable), e.g.
    /// http://localhost:3000.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
}

pub fn run(ctx: &Context, args: ServeArgs) -> Result<()> {
    let api_key = match (&args.api_key, &args.api_key_file) {
        (Some(k), _) => Some(k.trim().to_string()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading --api-key-file {}", f.display()))?;
            let key = text.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(!key.is_empty(), "--api-key-file {}: the first line is empty", f.display());
            Some(key)
        }
        (None, None) => None,
    };
    // Resolve (and fetch) every file before binding, so a missing model is
    // an error at once; loading happens on the engine thread.
    let model_path = ctx.model_path(&args.runtime.model, false)?;
    let encoder_path = ctx.model_path(&args.runtime.encoder, false)?;
    let corpus = args.runtime.corpus_path(ctx)?;
    let device = ctx.device()?;
    let options = ctx.load_options();
    let data_dir = ctx.data_dir.clone();
    let encoder_name = args.runtime.encoder.clone();
    let loader: Loader = Box::new(move || {
        let model = GgufChatModel::load_with(&model_path, &device, &options).map_err(|e| format!("loading chat model {}: {e}", model_path.display()))?;
        let dir = if encoder_path.is_dir() { encoder_path.clone() } else { encoder_path.parent().map(PathBuf::from).unwrap_or_default() };
        let encoder = BertEncoder::load(&dir, &encoder_name, &device).map_err(|e| format!("loading encoder {}: {e}", dir.display()))?;
        let memory = Memory::open(&data_dir).map_err(|e| format!("opening the data folder {}: {e}", data_dir.display()))?;
        let encyclopedia = match &corpus {
            Some(c) => Some(Encyclopedia::open(c, Some(&data_dir.join("encyclopedia"))).map_err(|e| format!("opening the encyclopedia {}: {e}", c.display()))?),
            None => None,
        };
        Ok(Runtime::new(model, std::sync::Arc::new(encoder), memory, encyclopedia.map(std::sync::Arc::new)))
    });
    let config = ServerConfig {
        host: args.host,
        port: args.port,
        model_name: args.runtime.model.clone(),
        encoder_name: args.runtime.encoder.clone(),
        api_key,
        limits: Limits { parallel: args.parallel, queue: args.queue, max_body_bytes: args.max_body_bytes, align_jobs: args.align_jobs },
        cors_origins: args.cors_origins,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        // One line a script can wait for.
        println!("persona serve: listening on http://{addr} (model {}, data {})", args.runtime.model, ctx.data_dir.display());
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server.run(loader, shutdown).await?;
        anyhow::Ok(())
    })
}
