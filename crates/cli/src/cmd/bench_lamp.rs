//! `persona bench lamp`: run the paper's methods on a LaMP-format set and
//! write the report (resumable: finished queries are kept in the output
//! folder and skipped on a rerun).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use std::sync::Arc;

use persona_agent::{AgentLlm, Encyclopedia, Runtime, SharedEncoder, SharedLlm};
use persona_engine::SharedModel;
use std::collections::BTreeMap;

use persona_lamp::plot::{line_chart, Labels, Point, Series};
use persona_lamp::{
    build, first_users, markdown, pin_settings, read_examples, read_oppu, read_outputs, run, scaling_markdown, score_all, user_ordinals, BuildOptions, Method,
    MethodConfig, MethodScores, Resources, RunEvent, Task,
};
use serde_json::json;

use crate::cmd::report::git_revision;
use crate::progress::item_bar;
use crate::resolve::{Context, DEFAULT_CHAT_MODEL, DEFAULT_ENCODER};

#[derive(Debug, Clone, Args)]
pub struct LampArgs {
    /// The questions file (official LaMP format) [default: rebuild the
    /// --task set from the raw data into OUT/set/].
    #[arg(long, requires = "outputs", conflicts_with = "oppu")]
    pub questions: Option<PathBuf>,
    /// The outputs file with the gold answers (with --questions, or with
    /// --oppu when its queries carry no `gold` field).
    #[arg(long)]
    pub outputs: Option<PathBuf>,
    /// A per-user file in the OPPU layout (`[{user_id, profile, query:
    /// [{id, input, gold}]}]`, or a folder holding
    /// `user_top_100_history.json`): every query is asked, a user's
    /// queries share their memory and persona.
    #[arg(long, value_name = "PATH")]
    pub oppu: Option<PathBuf>,
    /// The task [default: from the outputs file's `task` field].
    #[arg(long, required_unless_present_any = ["questions", "outputs"])]
    pub task: Option<Task>,
    /// The raw data folder to rebuild the set from when no questions file
    /// is given.
    #[arg(long, env = "PERSONA_SHARED_DATA", default_value = "../shared/data")]
    pub raw: PathBuf,
    /// Methods, comma-separated, or `all`: prompt, icl, rag-1, rag-4,
    /// pag-4, react, membank, nearest (no language model: the encoder over
    /// the user's records), persona-agent, no-alignment, no-persona,
    /// no-memory, no-action.
    #[arg(long, default_value = "all")]
    pub method: String,
    /// Use only the first N users of the set (all their queries), after
    /// --skip-users.
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,
    /// Run shard I of N (0-based): a contiguous block of the users chosen
    /// by --skip-users/--users, so that N machines (or N runs one after
    /// another) share a set; `bench merge` joins the shards' folders.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<persona_lamp::shard::Shard>,
    /// Leave out the first N users of the set (e.g. the 20 users a design
    /// was chosen on, to report on the others).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip_users: usize,
    /// Chat model: a manifest name (tiny, small, large) or a GGUF path.
    #[arg(short, long, default_value = DEFAULT_CHAT_MODEL)]
    pub model: String,
    /// Encoder for retrieval.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Sampling seed (runs are deterministic for a seed).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Alignment: interactions replayed per iteration (n).
    #[arg(long, default_value_t = 3)]
    pub batch: usize,
    /// Alignment: iterations (E).
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Alignment: replay an iteration's interactions together, one batch
    /// per step (see `persona align --lock-step`).
    #[arg(long)]
    pub lock_step: bool,
    /// Agents answer right after their required tool calls (the memory
    /// searched), without another thought (see `AgentConfig::answer_when_done`).
    #[arg(long)]
    pub answer_when_done: bool,
    /// Agents (and alignment's replays) answer in an answer turn: once the
    /// tool calls are made, the question is asked again after their
    /// results and the bare label is decoded right after it, as the
    /// one-call methods answer, instead of a `final_answer` call (see
    /// `AgentConfig::answer_turn`). Not with --free-text.
    #[arg(long, conflicts_with = "free_text")]
    pub answer_turn: bool,
    /// The answer turn shows again the records the agent's memory searches
    /// returned (each once) right before the question, as the RAG prompt
    /// does (implies --answer-turn).
    #[arg(long, conflicts_with = "free_text")]
    pub answer_turn_records: bool,
    /// Where the labels stand for options written in the question
    /// (LaMP-1's two references), the answer turn also says how close each
    /// option is to the user's own records (the sentence encoder's
    /// similarity of the closest record), closest first (implies
    /// --answer-turn).
    #[arg(long, conflicts_with = "free_text")]
    pub answer_turn_closeness: bool,
    /// Agents: penalty on the last 64 tokens while a label is decoded
    /// (1.0: none, as the one-call methods decode theirs; the agents' tool
    /// calls keep 1.1). Above 1.0 it pushes down the labels the memory
    /// search just showed; 1.1 answers as runs before this flag did.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub label_repeat_penalty: f32,
    /// Where the labels name positions in the question (LaMP-1's `[1]` /
    /// `[2]`), every method asks it twice, the options as given and
    /// swapped, and takes the label whose log-probabilities over both
    /// orders add up best: small models otherwise answer by position
    /// (the 0.5B model answers `[1]` for every LaMP-1 user). Agents (and
    /// alignment's replays) do so in the answer turn, so it needs
    /// --answer-turn for them; not with --free-text. With --jobs above 1
    /// the shared model scores between its batch's steps.
    #[arg(long, conflicts_with = "free_text")]
    pub both_orders: bool,
    /// Records per memory search (K).
    #[arg(short, default_value_t = 4)]
    pub k: usize,
    /// Semantic memory (PAG-4's profile, the initial persona): summarise
    /// the user's N most recent profile records (0: all of them; long
    /// histories take many summarisation calls).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub summary_records: usize,
    /// Read answers as free text with the fair reader (the old way, for
    /// comparison) instead of decoding them under the task's labels.
    #[arg(long)]
    pub free_text: bool,
    /// Alignment: the model that writes feedback and rewrites (a manifest
    /// name or GGUF path, e.g. `large`); replays and answers stay on
    /// --model [default: --model].
    #[arg(long, value_name = "MODEL")]
    pub align_model: Option<String>,
    /// Alignment: keep every rewrite that passes the text guards, without
    /// replaying it to check that it scores at least as well.
    #[arg(long)]
    pub no_score_guard: bool,
    /// Alignment: keep a rewrite only if it scores strictly better on the
    /// replays than the persona it would replace (a tie keeps the current
    /// one).
    #[arg(long, conflicts_with = "no_score_guard")]
    pub strict_score_guard: bool,
    /// Semantic memory: begin each user's profile (and so the initial
    /// persona and PAG's profile) with the counts of the user's past labels,
    /// counted rather than written by the model.
    #[arg(long)]
    pub counts_in_profile: bool,
    /// Do not give the agents the encyclopedia.
    #[arg(long)]
    pub no_encyclopedia: bool,
    /// Users in flight at once, each on its own thread: their model calls
    /// are decoded together in one batch (a shared model per model), which
    /// raises users per hour on the same cores. MemBank always runs its
    /// users one after another. Results are written as users finish.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Output folder: results.jsonl (appended as queries finish),
    /// report.json, report.md, and the users' memory.
    #[arg(long)]
    pub out: PathBuf,
}

/// The methods of a `--method` list: names, comma-separated, or `all`.
pub(crate) fn methods(spec: &str) -> Result<Vec<Method>> {
    if spec.trim() == "all" {
        return Ok(Method::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in spec.split(',').filter(|s| !s.trim().is_empty()) {
        let m: Method = name.parse()?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        bail!("no method given");
    }
    Ok(out)
}

/// Runs of at most this many questions also print each method's answers.
const ANSWERS_SHOWN_UP_TO: usize = 10;

pub fn run_lamp(ctx: &Context, args: LampArgs) -> Result<()> {
    let run = evaluate(ctx, &args)?;
    println!("{}", run.markdown);
    if let Some(answers) = persona_lamp::answers_markdown(&run.rows, ANSWERS_SHOWN_UP_TO) {
        println!("{answers}");
    }
    Ok(())
}

/// What one `bench lamp` run found.
pub struct Evaluation {
    /// The task.
    pub task: Task,
    /// Each method's scores.
    pub scores: BTreeMap<String, MethodScores>,
    /// The markdown report (as written to report.md).
    pub markdown: String,
    /// Every answer, this run's and the resumed ones.
    pub rows: Vec<persona_lamp::ResultRow>,
}

/// The examples without those of the first `n` users.
fn skip_users(examples: Vec<persona_lamp::Example>, n: usize) -> Vec<persona_lamp::Example> {
    persona_lamp::shard::users_in(examples, n..usize::MAX)
}

fn task_of_outputs(outputs: &std::path::Path) -> Result<Task> {
    let name = read_outputs(outputs)?.task;
    name.parse().with_context(|| format!("{} names task '{name}'; pass --task", outputs.display()))
}

/// Runs the methods and writes report.json and report.md.
pub fn evaluate(ctx: &Context, args: &LampArgs) -> Result<Evaluation> {
    let methods = methods(&args.method)?;
    let args = args.clone();
    if args.outputs.is_some() && args.questions.is_none() && args.oppu.is_none() {
        bail!("--outputs goes with --questions or --oppu");
    }
    let (source, examples, task) = if let Some(oppu) = &args.oppu {
        let examples = read_oppu(oppu, args.outputs.as_deref())?;
        let task = match (args.task, &args.outputs) {
            (Some(t), _) => t,
            (None, Some(o)) => task_of_outputs(o)?,
            (None, None) => bail!("pass --task with --oppu (the users file does not name its task)"),
        };
        (oppu.display().to_string(), examples, task)
    } else {
        let (questions, outputs) = match (&args.questions, &args.outputs) {
            (Some(q), Some(o)) => (q.clone(), o.clone()),
            _ => {
                let task = args.task.context("--task is needed to rebuild a set")?;
                let dir = args.out.join("set");
                let built = build(task, &args.raw, &BuildOptions::default()).with_context(|| format!("rebuilding {task} from {}", args.raw.display()))?;
                built.write(&dir)?;
                eprintln!("{}: {} users, written to {}", built.manifest.name, built.manifest.users_kept, dir.display());
                (dir.join("questions.json"), dir.join("outputs.json"))
            }
        };
        let task = match args.task {
            Some(t) => t,
            None => task_of_outputs(&outputs)?,
        };
        (questions.display().to_string(), read_examples(&questions, &outputs)?, task)
    };
    // Users: skip the dev split, keep --users, then this shard's block;
    // ordinals stay those of the whole set.
    let examples = skip_users(examples, args.skip_users);
    let examples = match args.users {
        Some(n) => first_users(examples, n),
        None => examples,
    };
    let mut first_user = args.skip_users;
    let examples = match args.shard {
        Some(shard) => {
            let range = shard.users(user_ordinals(&examples).into_iter().max().map_or(0, |m| m + 1));
            first_user += range.start;
            persona_lamp::shard::users_in(examples, range)
        }
        None => examples,
    };
    if examples.is_empty() {
        bail!("{source} has no questions");
    }
    let users = user_ordinals(&examples).into_iter().max().map_or(0, |m| m + 1);
    let mut config = MethodConfig::with_seed(args.seed);
    config.align.batch = args.batch;
    config.align.iterations = args.iterations;
    config.align.lock_step = args.lock_step;
    config.align.agent.answer_when_done = args.answer_when_done;
    config.align.agent.answer_turn = args.answer_turn || args.answer_turn_records || args.answer_turn_closeness;
    config.align.agent.answer_turn_records = args.answer_turn_records;
    config.align.agent.answer_turn_closeness = args.answer_turn_closeness;
    config.align.agent.label_repeat_penalty = args.label_repeat_penalty;
    config.align.tools.k = args.k;
    config.align.semantic.max_records = (args.summary_records > 0).then_some(args.summary_records);
    config.align.score_guard = !args.no_score_guard;
    config.align.strict_score_guard = args.strict_score_guard;
    config.align.semantic.counts_in_profile = args.counts_in_profile;
    config.free_text = args.free_text;
    config.both_orders = args.both_orders;
    if args.both_orders && !config.align.agent.answer_turn {
        if let Some(m) = methods.iter().find(|m| m.uses_agent()) {
            bail!("--both-orders: the agent of method {m} answers in both orders in its answer turn: add --answer-turn (or --answer-turn-records, --answer-turn-closeness)");
        }
    }
    config.align.validate()?;
    let sha = ctx.manifest.get(&args.model).ok().and_then(|e| e.primary_file().map(|f| f.sha256.clone()));
    let mut run_config = json!({"n": args.batch, "E": args.iterations, "K": args.k, "temperature": config.align.agent.temperature, "max_steps": config.align.agent.max_steps, "summary_records": config.align.semantic.max_records, "encyclopedia": !args.no_encyclopedia, "lock_step": args.lock_step, "answers": if args.free_text { "free-text" } else { "labels" }, "align_model": args.align_model, "score_guard": !args.no_score_guard, "skip_users": args.skip_users, "shard": args.shard.map(|s| s.to_string()), "label_repeat_penalty": args.label_repeat_penalty});
    if args.answer_when_done {
        // Only when set, so that the settings of earlier runs still match.
        run_config["answer_when_done"] = json!(true);
    }
    if config.align.agent.answer_turn {
        // Likewise.
        run_config["answer_turn"] = json!(true);
    }
    if args.answer_turn_records {
        run_config["answer_turn_records"] = json!(true);
    }
    if args.answer_turn_closeness {
        run_config["answer_turn_closeness"] = json!(true);
    }
    if args.strict_score_guard {
        // Likewise.
        run_config["strict_score_guard"] = json!(true);
    }
    if args.counts_in_profile {
        run_config["counts_in_profile"] = json!(true);
    }
    if args.both_orders {
        run_config["both_orders"] = json!(true);
    }
    let settings = json!({"task": task, "model": args.model, "model_sha256": sha, "encoder": args.encoder, "seed": args.seed, "config": run_config});
    pin_settings(&args.out, &settings)?;
    let path = ctx.model_path(&args.model, false)?;
    let model = ctx.load_chat_model(&path)?;
    let encoder: SharedEncoder = Arc::new(ctx.load_encoder(&args.encoder, false)?);
    let encyclopedia = if args.no_encyclopedia {
        None
    } else {
        let corpus = ctx.model_path("wiki", false)?;
        Some(Arc::new(Encyclopedia::open(&corpus, Some(&ctx.data_dir.join("encyclopedia")))?))
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let writer = match &args.align_model {
        Some(name) => Some(ctx.load_chat_model(&ctx.model_path(name, false)?)?),
        None => None,
    };
    let jobs = usize::from(args.jobs);
    let inputs = RunInputs { task, examples: &examples, methods: &methods, out: &args.out, first_user, config: &config, encoder, encyclopedia };
    let rows = if jobs == 1 {
        run_workers(vec![model], vec![writer.map(boxed)], &inputs)?
    } else {
        // Room for every worker's lock-step replays at once, and for every
        // user in flight's prompts in the prefix cache (one user's worth
        // each, as with one worker).
        let parallel = 4 * jobs;
        let (mut model, mut writer) = (model, writer);
        for m in std::iter::once(&mut model).chain(writer.as_mut()) {
            if let Some(stats) = m.prefix_cache_stats() {
                m.set_prefix_cache_budget(stats.budget * jobs);
            }
        }
        let shared = SharedModel::spawn(model, parallel).context("sharing the chat model between workers")?;
        let writer = writer.map(|w| SharedModel::spawn(w, parallel)).transpose().context("sharing the alignment model between workers")?;
        let models = (0..jobs).map(|_| SharedLlm(shared.client())).collect();
        let writers = (0..jobs).map(|_| writer.as_ref().map(|w| boxed(SharedLlm(w.client())))).collect();
        run_workers(models, writers, &inputs)?
    };
    let scores = score_all(task, &rows, args.seed)?;
    let meta = json!({
        "questions": source,
        "model": args.model,
        "model_sha256": sha,
        "config": run_config,
        "seed": args.seed,
        "users": users,
        "questions_asked": examples.len(),
        "git_revision": git_revision(),
        "jobs": jobs,
    });
    let report = json!({"task": task, "meta": meta, "methods": scores});
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let md = markdown(task, &source, &scores, &meta);
    std::fs::write(args.out.join("report.md"), &md)?;
    Ok(Evaluation { task, scores, markdown: md, rows })
}

/// What every worker of a run shares.
struct RunInputs<'a> {
    task: Task,
    examples: &'a [persona_lamp::Example],
    methods: &'a [Method],
    out: &'a std::path::Path,
    first_user: usize,
    config: &'a MethodConfig,
    encoder: SharedEncoder,
    encyclopedia: Option<Arc<Encyclopedia>>,
}

fn boxed(model: impl AgentLlm + Send + 'static) -> Box<dyn AgentLlm + Send> {
    Box::new(model)
}

/// Runs the methods with one worker per model: its own runtime (model,
/// store connection; the encoder and encyclopedia shared) and writer.
fn run_workers<M: AgentLlm + Send>(
    models: Vec<M>,
    mut writers: Vec<Option<Box<dyn AgentLlm + Send>>>,
    inputs: &RunInputs<'_>,
) -> Result<Vec<persona_lamp::ResultRow>> {
    let memory_dir = inputs.out.join("memory");
    let mut runtimes = models
        .into_iter()
        .map(|m| Ok(Runtime::new(m, Arc::clone(&inputs.encoder), persona_memory::Memory::open(&memory_dir)?, inputs.encyclopedia.clone())))
        .collect::<Result<Vec<_>>>()?;
    let mut workers: Vec<Resources<'_, M>> = runtimes
        .iter_mut()
        .zip(writers.iter_mut())
        .map(|(runtime, writer)| Resources {
            runtime,
            config: inputs.config,
            demos: &[],
            distractors: &[],
            writer: writer.as_deref_mut().map(|w| w as &mut (dyn AgentLlm + Send)),
            alignments: Vec::new(),
        })
        .collect();
    let task = inputs.task;
    let mut bar = item_bar(0, "", "users");
    let rows = run(task, inputs.examples, inputs.methods, inputs.out, inputs.first_user, &mut workers, &mut |event| match event {
        RunEvent::Method { method, todo, total } => {
            bar.finish_and_clear();
            bar = item_bar(todo as u64, &format!("{task} {method} ({} of {total} done)", total - todo), "users");
        }
        RunEvent::Done(_) => bar.inc(1),
    })?;
    bar.finish_and_clear();
    Ok(rows)
}

/// Which alignment setting a scaling sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScalingParam {
    /// Interactions replayed per iteration.
    #[value(name = "n")]
    Batch,
    /// Iterations.
    #[value(name = "E")]
    Iterations,
    /// Records per memory search.
    #[value(name = "K")]
    K,
}

#[derive(Debug, Args)]
pub struct ScalingArgs {
    #[command(flatten)]
    pub lamp: LampArgs,
    /// The setting to vary: n (batch), E (iterations) or K (retrieved records).
    #[arg(long, value_enum)]
    pub param: ScalingParam,
    /// Its values.
    #[arg(long, value_delimiter = ',', required = true)]
    pub values: Vec<usize>,
}

/// `persona bench scaling`: the same methods at each value of n, E or K
/// (paper Fig. 3), each in its own OUT/<param>-<value>/ (resumable, with its
/// own report.json and report.md), then
/// OUT/scaling.json and OUT/scaling.md.
pub fn run_scaling(ctx: &Context, args: ScalingArgs) -> Result<()> {
    let name = match args.param {
        ScalingParam::Batch => "n",
        ScalingParam::Iterations => "E",
        ScalingParam::K => "K",
    };
    // Check every value before the first (long) run starts.
    if args.values.contains(&0) {
        bail!("--values: {name} must be at least 1 (got 0)");
    }
    if let Some(v) = args.values.iter().enumerate().find_map(|(i, v)| args.values[..i].contains(v).then_some(v)) {
        bail!("--values: {name} = {v} is given twice");
    }
    let mut points = Vec::new();
    let mut task = None;
    for &value in &args.values {
        let mut lamp = args.lamp.clone();
        match args.param {
            ScalingParam::Batch => lamp.batch = value,
            ScalingParam::Iterations => lamp.iterations = value,
            ScalingParam::K => lamp.k = value,
        }
        lamp.out = args.lamp.out.join(format!("{name}-{value}"));
        eprintln!("{name} = {value}");
        let Evaluation { task: t, scores, .. } = evaluate(ctx, &lamp)?;
        task = Some(t);
        points.push((value, scores));
    }
    let task = task.context("no values")?;
    let md = scaling_markdown(task, name, &points);
    let json = json!({"task": task, "param": name, "points": points.iter().map(|(v, s)| json!({"value": v, "methods": s})).collect::<Vec<_>>()});
    std::fs::create_dir_all(&args.lamp.out)?;
    std::fs::write(args.lamp.out.join("scaling.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(args.lamp.out.join("scaling.md"), &md)?;
    let files = plot_scaling(&args.lamp.out.join(format!("scaling-{name}")), task, name, &points)?;
    println!("{md}");
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

/// The scaling plot: the main metric per method against the swept value,
/// with the bootstrap intervals.
fn plot_scaling(stem: &std::path::Path, task: Task, name: &str, points: &[(usize, BTreeMap<String, MethodScores>)]) -> Result<Vec<PathBuf>> {
    let metric = if task.is_rating() { "mae" } else { "accuracy" };
    let mut by_method: BTreeMap<&str, Vec<Point>> = BTreeMap::new();
    for (value, scores) in points {
        for (method, s) in scores {
            let y = if task.is_rating() { s.mae } else { s.accuracy };
            if let Some(y) = y {
                let interval = s.ci.get(metric).map(|i| (i.low, i.high));
                by_method.entry(method).or_default().push(Point { x: *value as f64, y, interval });
            }
        }
    }
    let series: Vec<Series> = by_method.into_iter().map(|(m, points)| Series { name: m.to_string(), points }).collect();
    let labels = Labels { title: format!("{task}: {metric} over {name} (95% CI over users)"), x: name.to_string(), y: metric.to_string() };
    Ok(line_chart(stem, &labels, &series)?)
}
