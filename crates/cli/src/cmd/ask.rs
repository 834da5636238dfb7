//! `persona ask`: answer a question as the user would, with the user's
//! persona, memory and tools.

use anyhow::{Context as _, Result};
use clap::Args;

use crate::cmd::agent::{load, persona, AgentArgs};
use crate::progress::spinner;
use crate::resolve::Context;

#[derive(Debug, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Print the trace: every step's thought, tool call, observation,
    /// tokens and time.
    #[arg(long)]
    pub verbose: bool,
    /// Print JSON: {user, persona_version, answer, finish, trace: [steps
    /// with tool (null for the answer) and arguments], stats}.
    #[arg(long)]
    pub json: bool,
    /// The answer must be exactly one of these labels, comma-separated
    /// (e.g. `--choices "sci-fi,comedy,romance"`): the final answer is
    /// decoded under their grammar, so nothing else can be written.
    #[arg(long, value_name = "A,B,...")]
    pub choices: Option<String>,
    /// With --choices: once the tool calls are made, ask the question
    /// again after their results and decode the bare label right after it
    /// (the shape in which one-call prompts answer) instead of a
    /// `final_answer` call.
    #[arg(long, requires = "choices")]
    pub answer_turn: bool,
    /// With --choices: the answer turn also names the label that the
    /// user's records nearest to the question vote for (each of the K
    /// nearest records votes for its own response with its similarity)
    /// (implies --answer-turn).
    #[arg(long, requires = "choices")]
    pub closeness: bool,
    /// The question.
    pub question: String,
}

pub fn run(ctx: &Context, args: AskArgs) -> Result<()> {
    let mut config = args.agent.agent_config();
    if let Some(list) = &args.choices {
        config.choices = Some(persona_agent::Choices::parse_list(list).context("--choices")?);
    }
    config.answer_turn = args.answer_turn || args.closeness;
    config.answer_turn_closeness = args.closeness;
    config.validate()?;
    let mut runtime = load(ctx, &args.agent)?;
    let mut user = runtime.user(&args.agent.user)?;
    let persona = persona(&mut user)?;
    let bar = spinner(&format!("thinking as '{}' (persona v{})", args.agent.user, persona.version));
    let trace = user.ask(&persona.text, &args.question, &config);
    bar.finish_and_clear();
    let trace = trace?;
    if args.json {
        let out = serde_json::json!({
            "user": args.agent.user,
            "persona_version": persona.version,
            "question": trace.question,
            "answer": trace.answer,
            "finish": trace.finish,
            "trace": trace.steps,
            "stats": {
                "model_calls": trace.model_calls,
                "completion_tokens": trace.completion_tokens,
                "prefilled_tokens": trace.prefilled_tokens,
                "cached_tokens": trace.cached_tokens,
                "ms": trace.ms,
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if args.verbose {
            println!("persona v{} of '{}'", persona.version, args.agent.user);
            print!("{}", trace.render());
        }
        println!("{}", trace.answer);
    }
    Ok(())
}
