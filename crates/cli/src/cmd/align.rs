//! `persona align`: test-time alignment of a user's persona (replay the
//! latest interactions, collect feedback, rewrite the persona).

use anyhow::{Context as _, Result};
use clap::Args;
use persona_agent::{AgentLlm, AlignConfig, AlignEvent, Choices, Outcome};
use similar::TextDiff;

use crate::cmd::agent::{load, persona, AgentArgs};
use crate::display::one_line;
use crate::progress::item_bar;
use crate::resolve::Context;

#[derive(Debug, Args)]
pub struct AlignArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Interactions replayed per iteration: the user's N most recent (n).
    #[arg(long, value_name = "N", default_value_t = AlignConfig::default().batch)]
    pub batch: usize,
    /// Iterations (E).
    #[arg(long, value_name = "E", default_value_t = AlignConfig::default().iterations)]
    pub iterations: usize,
    /// Budget of the whole persona in tokens; longer rewrites are rejected.
    #[arg(long, default_value_t = AlignConfig::default().max_persona_tokens)]
    pub max_persona_tokens: usize,
    /// Replay an iteration's interactions together, one batch per step
    /// (faster where decoding is limited by memory bandwidth, e.g. on a
    /// GPU; slower on a small CPU, see benches/RESULTS.md).
    #[arg(long)]
    pub lock_step: bool,
    /// The model that writes feedback and rewrites (a manifest name or GGUF
    /// path, e.g. `large`); the replays stay on --model [default: --model].
    #[arg(long, value_name = "MODEL")]
    pub align_model: Option<String>,
    /// The replays' answers must be one of these labels (comma-separated),
    /// as in `persona ask --choices`.
    #[arg(long, value_name = "A,B,...")]
    pub choices: Option<String>,
    /// Keep every rewrite that passes the text guards, without replaying it
    /// to check that it scores at least as well.
    #[arg(long)]
    pub no_score_guard: bool,
    /// Keep a rewrite only if it scores strictly better on the replays
    /// than the persona it would replace (a tie keeps the current one).
    #[arg(long, conflicts_with = "no_score_guard")]
    pub strict_score_guard: bool,
    /// Print the report as JSON (iterations, replays with traces,
    /// feedback, outcomes, initial and final persona).
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: AlignArgs) -> Result<()> {
    let config = AlignConfig {
        batch: args.batch,
        iterations: args.iterations,
        tools: args.agent.tool_config(),
        agent: args.agent.agent_config(),
        max_persona_tokens: args.max_persona_tokens,
        semantic: args.agent.semantic_config(),
        lock_step: args.lock_step,
        score_guard: !args.no_score_guard,
        strict_score_guard: args.strict_score_guard,
        ..AlignConfig::default()
    };
    let mut config = config;
    if let Some(list) = &args.choices {
        config.agent.choices = Some(Choices::parse_list(list).context("--choices")?);
    }
    // Refuse bad settings before loading anything.
    config.validate()?;
    let mut runtime = load(ctx, &args.agent)?;
    let mut user = runtime.user(&args.agent.user)?;
    persona(&mut user)?;
    let bar = item_bar((args.batch * args.iterations) as u64, "aligning", "replays");
    let json = args.json;
    let mut writer = match &args.align_model {
        Some(name) => Some(ctx.load_chat_model(&ctx.model_path(name, false)?)?),
        None => None,
    };
    let report = user.align(&config, writer.as_mut().map(|w| w as &mut dyn AgentLlm), None, &mut |event| match event {
        AlignEvent::IterationStart { iteration, of } => bar.set_message(format!("iteration {iteration}/{of}")),
        AlignEvent::Simulated { .. } => bar.inc(1),
        AlignEvent::IterationEnd(it) => {
            if !json {
                let line = match &it.outcome {
                    Outcome::Accepted { version } => format!("iteration {}: persona v{} -> v{version}", it.iteration, it.from_version),
                    Outcome::Rejected { rejection, .. } => {
                        format!("iteration {}: rewrite rejected ({rejection}); keeping v{} and stopping", it.iteration, it.from_version)
                    }
                    Outcome::NoGap => format!("iteration {}: every replay matched the user's answer; nothing to align (v{})", it.iteration, it.from_version),
                    Outcome::Unchanged => format!("iteration {}: the rewrite repeats persona v{}; nothing new, stopping", it.iteration, it.from_version),
                };
                bar.suspend(|| {
                    println!("{line}");
                    for s in &it.simulations {
                        println!("  {}\n    simulated: {}  real: {}", one_line(&s.query, 90), one_line(&s.simulated, 40), one_line(&s.real, 40));
                    }
                });
            }
        }
    });
    bar.finish_and_clear();
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("score on the replays: {} -> {} (summed; 1 per matched answer, minus the distance for ratings)", report.initial_score, report.final_score);
    if report.initial_version == report.final_version {
        println!("persona of '{}' unchanged (v{})", report.user, report.final_version);
        return Ok(());
    }
    println!("persona of '{}': v{} -> v{}", report.user, report.initial_version, report.final_version);
    let diff = TextDiff::from_lines(&report.initial_text, &report.final_text);
    print!("{}", diff.unified_diff().context_radius(2).header(&format!("v{}", report.initial_version), &format!("v{}", report.final_version)));
    Ok(())
}
