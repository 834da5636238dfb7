//! `persona bench engine`: the engine against llama.cpp and
//! sentence-transformers, side by side in one run, same files, same threads.
//!
//! Each side runs in its own child process so load time and peak RSS are
//! measured per engine and per model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use persona_engine::bench::{self, ChatBench, Measurement};
use persona_engine::BertEncoder;

use crate::cmd::report::{git_revision, machine, write_section};
use crate::resolve::Context;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Engine speed vs llama.cpp (chat models) and sentence-transformers (encoder).
    Engine(EngineArgs),
    /// Vector search: HNSW insert and search throughput, latency and
    /// recall against brute force, on real MiniLM embeddings.
    Memory(crate::cmd::bench_memory::MemoryBenchArgs),
    /// The LaMP benchmark: the paper's methods and ablations on a set in
    /// the official format (e.g. one made by `persona data build`).
    ///
    /// Prints the report (also written to OUT/report.md and report.json);
    /// a run of at most 10 questions then prints each method's answer to
    /// each question beside the user's own.
    Lamp(crate::cmd::bench_lamp::LampArgs),
    /// Test-time scaling: the methods at several values of n, E or K
    /// (paper Fig. 3).
    Scaling(crate::cmd::bench_lamp::ScalingArgs),
    /// Persona analysis: pairwise Jaccard similarity of the users' personas
    /// and a 2-D map of their embeddings.
    Personas(crate::cmd::bench_personas::PersonasArgs),
    /// Finished LaMP runs side by side (e.g. backbones, paper Fig. 4):
    /// table, JSON and a bar chart per task; runs that kept their rows are
    /// also paired with the task's first run, method by method.
    Compare(crate::cmd::bench_compare::CompareArgs),
    /// One report from runs that split a LaMP benchmark by method (same
    /// set, model, seed and settings).
    Merge(crate::cmd::bench_merge::MergeArgs),
    /// Internal: measure one model in this process and print JSON.
    #[command(hide = true)]
    EngineWorker(WorkerArgs),
}

#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Chat models to measure (manifest names).
    #[arg(long, value_delimiter = ',', default_value = "tiny,small")]
    pub models: Vec<String>,
    /// Approximate prompt length for the prefill measurement.
    #[arg(long, default_value_t = 500)]
    pub prompt_tokens: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Measured runs per model (median reported; one warm-up run first).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Rounds per model: persona-engine and llama.cpp measured in turn this
    /// many times, each figure the median over the rounds, and the ratios
    /// of every round listed. On a machine whose memory bandwidth drifts
    /// (a shared VM) this keeps a slow minute from landing on one engine
    /// only.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Python with llama-cpp-python installed (the llama.cpp reference); skipped if absent.
    #[arg(long, env = "PERSONA_LLAMA_PYTHON", value_name = "PYTHON")]
    pub llama_python: Option<PathBuf>,
    /// Python with sentence-transformers installed (the encoder reference); skipped if absent.
    #[arg(long, env = "PERSONA_ST_PYTHON", value_name = "PYTHON")]
    pub st_python: Option<PathBuf>,
    /// Also measure the encoder.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub encoder: bool,
    /// Length of the shared system prompt for the prefix-reuse measurement
    /// (0 skips it).
    #[arg(long, default_value_t = 1000)]
    pub prefix_tokens: usize,
    /// Batch sizes for the batched-decoding measurement, comma-separated
    /// (`--batches ""` skips it).
    #[arg(long, value_parser = parse_batches, default_value = "1,2,4,8")]
    pub batches: BatchSizes,
    /// Write the markdown report here (the engine section is replaced in place).
    #[arg(long, default_value = "benches/RESULTS.md")]
    pub out: PathBuf,
}

/// Batch sizes of `bench engine --batches` (none: the measurement is
/// skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSizes(pub Vec<usize>);

/// `1,2,4` to the sizes, `""` to none; each a positive integer.
fn parse_batches(s: &str) -> Result<BatchSizes, String> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| match v.parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("batch size '{v}' is not a positive integer")),
            Ok(n) => Ok(n),
        })
        .collect::<Result<_, _>>()
        .map(BatchSizes)
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// `llama` or `encoder`.
    pub kind: String,
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub input_file: PathBuf,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, default_value_t = 0)]
    pub prefix_tokens: usize,
    #[arg(long, value_delimiter = ',')]
    pub batches: Vec<usize>,
}

pub fn run(ctx: &Context, command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Engine(args) => run_engine(ctx, args),
        BenchCommand::Memory(args) => crate::cmd::bench_memory::run(ctx, args),
        BenchCommand::Lamp(args) => crate::cmd::bench_lamp::run_lamp(ctx, args),
        BenchCommand::Scaling(args) => crate::cmd::bench_lamp::run_scaling(ctx, args),
        BenchCommand::Personas(args) => crate::cmd::bench_personas::run(ctx, args),
        BenchCommand::Compare(args) => crate::cmd::bench_compare::run(args),
        BenchCommand::Merge(args) => crate::cmd::bench_merge::run(args),
        BenchCommand::EngineWorker(args) => {
            let m = match args.kind.as_str() {
                "llama" => worker_llama(ctx, &args)?,
                "prepare" => {
                    // Load once so any one-time repack happens outside the measured process.
                    let start = Instant::now();
                    ctx.load_chat_model(&args.model)?;
                    Measurement { engine: "prepare".into(), load_ms: start.elapsed().as_secs_f64() * 1000.0, ..Default::default() }
                }
                "encoder" => worker_encoder(ctx, &args)?,
                other => bail!("unknown worker kind `{other}`"),
            };
            println!("{}", serde_json::to_string(&m)?);
            Ok(())
        }
    }
}

fn worker_llama(ctx: &Context, args: &WorkerArgs) -> Result<Measurement> {
    let prompt = std::fs::read_to_string(&args.input_file)?;
    let start = Instant::now();
    let mut model = ctx.load_chat_model(&args.model)?;
    let load_ms = start.elapsed().as_secs_f64() * 1000.0;
    let bench = ChatBench { prompt, gen_tokens: args.gen_tokens, runs: args.runs, prefix_tokens: args.prefix_tokens, batches: args.batches.clone() };
    Ok(bench::measure_chat(&mut model, load_ms, &bench)?)
}

fn worker_encoder(ctx: &Context, args: &WorkerArgs) -> Result<Measurement> {
    let text = std::fs::read_to_string(&args.input_file)?;
    let sentences: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = Instant::now();
    let encoder = BertEncoder::load(&args.model, "minilm", &ctx.device()?)?;
    let load_ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(bench::measure_encoder(&encoder, load_ms, &sentences, args.runs)?)
}

fn spawn_json(mut cmd: Command, what: &str) -> Result<Measurement> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading {what} output: {text}"))
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn script_path() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_reference.py");
    if here.exists() {
        here
    } else {
        PathBuf::from("scripts/bench_reference.py")
    }
}

struct Row {
    model: String,
    sha256: String,
    ours: Measurement,
    reference: Option<Measurement>,
    /// Each round's (prefill, decode) ratio, with `--rounds` above 1.
    rounds: Vec<(f64, f64)>,
}

/// One measurement from several rounds: each figure the median over them
/// (prefix reuse and batching from the round with the median decode).
fn median_of(rounds: &[Measurement]) -> Option<Measurement> {
    let pick = |f: fn(&Measurement) -> f64| bench::median(rounds.iter().map(f).collect());
    let decode = pick(|m| m.decode_tok_s);
    let mut m = rounds.iter().find(|m| m.decode_tok_s == decode)?.clone();
    m.load_ms = pick(|m| m.load_ms);
    m.prefill_tok_s = pick(|m| m.prefill_tok_s);
    m.ttft_ms = pick(|m| m.ttft_ms);
    m.peak_rss_mb = pick(|m| m.peak_rss_mb);
    Some(m)
}

fn run_engine(ctx: &Context, args: EngineArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let threads = threads();
    let work = tempfile_dir()?;
    let prompt_file = work.join("prompt.txt");
    std::fs::write(&prompt_file, bench::filler_text(args.prompt_tokens))?;
    let sentences_file = work.join("sentences.txt");
    std::fs::write(&sentences_file, bench::bench_sentences())?;
    let worker = |kind: &str, model: &Path, input: &Path| {
        let mut c = Command::new(&exe);
        c.args(["--device", &ctx.device_choice.to_string(), "--threads", &threads.to_string()]);
        if !ctx.repack {
            c.arg("--no-repack");
        }
        c.args(["bench", "engine-worker", kind]).arg("--model").arg(model).arg("--input-file").arg(input).args([
            "--gen-tokens",
            &args.gen_tokens.to_string(),
            "--runs",
            &args.runs.to_string(),
        ]);
        if kind == "llama" {
            c.args(["--prefix-tokens", &args.prefix_tokens.to_string()]);
            if !args.batches.0.is_empty() {
                c.arg("--batches").arg(args.batches.0.iter().map(usize::to_string).collect::<Vec<_>>().join(","));
            }
        }
        c
    };
    let reference = |python: &Path, kind: &str, model: &Path, input_flag: &str, input: &Path| {
        let mut c = Command::new(python);
        c.arg(script_path()).arg(kind).arg("--model").arg(model).arg(input_flag).arg(input).args([
            "--gen-tokens",
            &args.gen_tokens.to_string(),
            "--threads",
            &threads.to_string(),
            "--runs",
            &args.runs.to_string(),
        ]);
        c
    };
    let mut rows = Vec::new();
    for name in &args.models {
        let entry = ctx.manifest.get(name)?;
        let path = ctx.ensure_installed(entry)?;
        let prepared = spawn_json(worker("prepare", &path, &prompt_file), "the persona-engine prepare step")?;
        eprintln!("measuring {name} (persona-engine; first load incl. any one-time repack: {:.0} ms)...", prepared.load_ms);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 1..=args.rounds {
            if args.rounds > 1 {
                eprintln!("round {round} of {}", args.rounds);
            }
            ours.push(spawn_json(worker("llama", &path, &prompt_file), "the persona-engine worker")?);
            if let Some(py) = &args.llama_python {
                eprintln!("measuring {name} (llama.cpp)...");
                theirs.push(spawn_json(reference(py, "llama", &path, "--prompt-file", &prompt_file), "the llama.cpp reference")?);
            }
        }
        let rounds = if args.rounds > 1 {
            ours.iter().zip(&theirs).map(|(a, b)| (a.prefill_tok_s / b.prefill_tok_s, a.decode_tok_s / b.decode_tok_s)).collect()
        } else {
            Vec::new()
        };
        let Some(ours) = median_of(&ours) else { bail!("no measurement of {name}") };
        rows.push(Row { model: name.clone(), sha256: entry.files[0].sha256.clone(), ours, reference: median_of(&theirs), rounds });
    }
    let mut encoder_row = None;
    if args.encoder {
        let entry = ctx.manifest.get("minilm")?;
        let path = ctx.ensure_installed(entry)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        eprintln!("measuring the encoder (persona-engine)...");
        let ours = spawn_json(worker("encoder", &dir, &sentences_file), "the encoder worker")?;
        let reference = match &args.st_python {
            Some(py) => {
                eprintln!("measuring the encoder (sentence-transformers)...");
                Some(spawn_json(reference(py, "encoder", &dir, "--sentences-file", &sentences_file), "the sentence-transformers reference")?)
            }
            None => None,
        };
        encoder_row = Some(Row { model: "minilm".into(), sha256: entry.files[0].sha256.clone(), ours, reference, rounds: Vec::new() });
    }
    let section = render_section(&args, threads, &rows, encoder_row.as_ref());
    println!("{section}");
    // One table per CPU class and kernel choice: a run replaces the table
    // of the class it ran on (with `PERSONA_SIMD` below the CPU's best, a
    // table of its own).
    write_section(&args.out, &format!("engine-bench-{}", kernel_class().0), &section)?;
    eprintln!("wrote {}", args.out.display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("persona-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// The kernels this run uses and the CPU's best: a section key
/// (`avx2`, or `avx2-on-avx512vnni` when `PERSONA_SIMD` caps them) and
/// the heading's words for it.
fn kernel_class() -> (String, String) {
    use persona_engine::kernels::{detected_isa, isa};
    let (used, best) = (isa(), detected_isa());
    if used == best {
        (used.name().to_string(), format!("{} kernels ({} CPU)", used.name(), best.name()))
    } else {
        (format!("{}-on-{}", used.name(), best.name()), format!("{} kernels on a {} CPU (`PERSONA_SIMD={}`)", used.name(), best.name(), used.name()))
    }
}

fn render_section(args: &EngineArgs, threads: usize, rows: &[Row], encoder: Option<&Row>) -> String {
    let mut s = String::new();
    s.push_str(&format!("## Engine: persona-engine vs llama.cpp, {}\n\n", kernel_class().1));
    s.push_str(&format!(
        "Command: `persona --threads {threads} bench engine --models {} --prompt-tokens {} --gen-tokens {} --runs {}{} --prefix-tokens {} --batches {}{}{}`\n\n",
        args.models.join(","),
        args.prompt_tokens,
        args.gen_tokens,
        args.runs,
        if args.rounds > 1 { format!(" --rounds {}", args.rounds) } else { String::new() },
        args.prefix_tokens,
        args.batches.0.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        if args.llama_python.is_some() { " --llama-python PY" } else { "" },
        if args.st_python.is_some() { " --st-python PY" } else { "" },
    ));
    let profile = if cfg!(debug_assertions) {
        "dev profile (`cargo run`; dependencies such as candle at opt-level 3, this workspace's crates unoptimized)"
    } else {
        "release profile"
    };
    s.push_str(&format!("Build: {profile}.\n\n"));
    s.push_str(&format!(
        "Machine: {}. Threads: {threads} (both engines). Git revision: {}. Median of {} runs after one warm-up; greedy decoding, EOS ignored.\n\n",
        machine(),
        git_revision(),
        args.runs
    ));
    s.push_str("| model | engine | load ms | prompt tok | prefill tok/s | TTFT ms | decode tok/s | peak RSS MB |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        for m in std::iter::once(&r.ours).chain(r.reference.as_ref()) {
            s.push_str(&format!(
                "| {} | {} | {:.0} | {} | {:.1} | {:.0} | {:.1} | {:.0} |\n",
                r.model, m.engine, m.load_ms, m.prompt_tokens, m.prefill_tok_s, m.ttft_ms, m.decode_tok_s, m.peak_rss_mb
            ));
        }
    }
    s.push_str("\nRatios (persona-engine / llama.cpp; above 1.0x is faster for speeds, smaller for load time and memory):\n\n");
    s.push_str("| model | sha256 | prefill | decode | TTFT | load time | peak RSS |\n|---|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        if let Some(b) = &r.reference {
            let a = &r.ours;
            s.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} | {} |\n",
                r.model,
                &r.sha256[..16],
                ratio(a.prefill_tok_s, b.prefill_tok_s),
                ratio(a.decode_tok_s, b.decode_tok_s),
                ratio(a.ttft_ms, b.ttft_ms),
                ratio(a.load_ms, b.load_ms),
                ratio(a.peak_rss_mb, b.peak_rss_mb)
            ));
        }
    }
    if rows.iter().any(|r| !r.rounds.is_empty()) {
        s.push_str(&format!(
            "\nRounds: the two engines measured in turn {} times; the tables give each figure's median over the rounds, and each round's ratios (prefill / decode) were:\n\n",
            args.rounds
        ));
        for r in rows.iter().filter(|r| !r.rounds.is_empty()) {
            let each: Vec<String> = r.rounds.iter().map(|(p, d)| format!("{p:.2}x / {d:.2}x")).collect();
            s.push_str(&format!("- {}: {}\n", r.model, each.join(", ")));
        }
    }
    let reuse: Vec<_> = rows.iter().map(|r| (r.model.as_str(), r.ours.prefix.as_ref(), r.ours.batches.as_slice())).collect();
    s.push_str(&crate::cmd::bench_reuse::render(&reuse));
    if let Some(r) = encoder {
        s.push_str("\n### Encoder: all-MiniLM-L6-v2\n\n| engine | load ms | sentences | sentences/s | peak RSS MB |\n|---|---:|---:|---:|---:|\n");
        for m in std::iter::once(&r.ours).chain(r.reference.as_ref()) {
            s.push_str(&format!("| {} | {:.0} | {} | {:.1} | {:.0} |\n", m.engine, m.load_ms, m.sentences, m.sentences_per_s, m.peak_rss_mb));
        }
        if let Some(b) = &r.reference {
            s.push_str(&format!(
                "\nRatio sentences/s (persona-engine / sentence-transformers): {}; weights sha256 `{}`\n",
                ratio(r.ours.sentences_per_s, b.sentences_per_s),
                r.sha256
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_parse_and_empty_skips() {
        assert_eq!(parse_batches("1,2,4,8"), Ok(BatchSizes(vec![1, 2, 4, 8])));
        assert_eq!(parse_batches(""), Ok(BatchSizes(vec![])));
        assert_eq!(parse_batches(" 4 "), Ok(BatchSizes(vec![4])));
        assert!(parse_batches("0").unwrap_err().contains("'0'"));
        assert!(parse_batches("1,x").unwrap_err().contains("'x'"));
    }

    #[test]
    fn rounds_give_each_figure_s_median() {
        let m = |decode: f64, prefill: f64, rss: f64, engine: &str| Measurement {
            engine: engine.into(),
            decode_tok_s: decode,
            prefill_tok_s: prefill,
            peak_rss_mb: rss,
            ..Default::default()
        };
        let got = median_of(&[m(24.0, 90.0, 1300.0, "a"), m(27.0, 80.0, 1310.0, "b"), m(25.0, 95.0, 1290.0, "c")]).unwrap();
        assert_eq!((got.decode_tok_s, got.prefill_tok_s, got.peak_rss_mb), (25.0, 90.0, 1300.0));
        assert_eq!(got.engine, "c", "the rest from the round with the median decode");
        assert!(median_of(&[]).is_none());
    }
}
