//! Test-time persona alignment (the paper's Algorithm 1): for E iterations,
//! replay the user's n most recent interactions with the current persona,
//! ask the model for feedback on each gap between the simulated and the real
//! response, and have it rewrite the persona from the feedback. A rewrite
//! that fails the guards ([`crate::persona::check`]) is not stored; the
//! previous version stays.

use std::time::Instant;

use persona_engine::{ContextPolicy, Encoder, GenerationParams, SamplingParams};
use persona_memory::{Memory, Record, SemanticConfig};
use serde::Serialize;

use crate::action::{run_agents, AgentConfig, Question};
use crate::error::{AgentError, Result};
use crate::llm::AgentLlm;
use crate::orders::Reordered;
use crate::persona::{self, Rejection};
use crate::prompts::{fill, FEEDBACK_SYSTEM, FEEDBACK_USER, REWRITE_SYSTEM, REWRITE_USER};
use crate::tools::{Encyclopedia, EncyclopediaSearch, MemorySearch, ToolRegistry};
use crate::trace::Trace;

/// Settings of alignment (paper defaults: n = 3, E = 3, K = 4, T = 0.1).
#[derive(Debug, Clone)]
pub struct AlignConfig {
    /// Interactions replayed per iteration (n).
    pub batch: usize,
    /// Iterations (E).
    pub iterations: usize,
    /// What the tools return (K records per memory search).
    pub tools: ToolConfig,
    /// The action loop's settings.
    pub agent: AgentConfig,
    /// Most tokens of one feedback.
    pub feedback_tokens: usize,
    /// Most tokens of a rewritten description.
    pub rewrite_tokens: usize,
    /// Budget of the whole persona, in tokens.
    pub max_persona_tokens: usize,
    /// Settings for building the semantic memory when it is missing.
    pub semantic: SemanticConfig,
    /// When every rewrite is rejected, still store a version (same text,
    /// note [`UNCHANGED_NOTE`]) so that the store shows alignment ran. The
    /// LaMP runner uses this to align each user once; `persona align` does
    /// not (an unchanged persona keeps its version there).
    pub record_unchanged: bool,
    /// Keep a rewrite only if it scores at least as well on the replays as
    /// the persona it would replace (one more replay batch per iteration).
    pub score_guard: bool,
    /// With the score guard, a rewrite that only ties with the current
    /// persona on the replays is refused too ([`Rejection::NoBetter`]): a
    /// few replays often tie, and a tying rewrite can still drop what the
    /// persona knew (the semantic memory's figures, say).
    pub strict_score_guard: bool,
    /// Replay the n interactions of an iteration in lock step, one batch
    /// per step ([`run_agents`]), instead of one after another. The traces
    /// are the same up to the last bits of batched arithmetic. On a 2-core
    /// CPU it measured slower (the work there is compute-bound, so batching
    /// saves no memory traffic worth having); on a GPU or a CPU with memory
    /// bandwidth to spare it reads the weights once for the batch.
    pub lock_step: bool,
}

/// The note of a version stored when alignment ran but no rewrite passed
/// the persona guards (see [`AlignConfig::record_unchanged`]).
pub const UNCHANGED_NOTE: &str = "alignment ran; no rewrite passed the persona guards";

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig {
            batch: 3,
            iterations: 3,
            tools: ToolConfig::default(),
            agent: AgentConfig::default(),
            feedback_tokens: 96,
            rewrite_tokens: 256,
            max_persona_tokens: 768,
            semantic: SemanticConfig::default(),
            record_unchanged: false,
            score_guard: true,
            strict_score_guard: false,
            lock_step: false,
        }
    }
}

impl AlignConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let values = [
            ("batch", self.batch),
            ("iterations", self.iterations),
            ("k", self.tools.k),
            ("feedback_tokens", self.feedback_tokens),
            ("rewrite_tokens", self.rewrite_tokens),
        ];
        for (name, v) in values {
            if v == 0 {
                return Err(AgentError::Config { name, reason: "must be at least 1".into() });
            }
        }
        self.agent.validate()
    }

    fn params(&self, max_tokens: usize) -> GenerationParams {
        GenerationParams {
            max_tokens,
            stop: Vec::new(),
            sampling: SamplingParams { temperature: self.agent.temperature, seed: self.agent.seed, repeat_penalty: 1.15, ..SamplingParams::default() },
            context_policy: ContextPolicy::TruncateStart,
            ignore_eos: false,
        }
    }
}

fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// One replayed interaction.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// The question replayed.
    pub query: String,
    /// The agent's answer with the current persona.
    pub simulated: String,
    /// The user's real response.
    pub real: String,
    /// How close the answer is to the real one ([`replay_score`]).
    pub score: f64,
    /// The model's feedback on the gap.
    pub feedback: String,
    /// The agent's run.
    pub trace: Trace,
}

/// What happened to an iteration's rewrite.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Stored as a new version.
    Accepted {
        /// The new version number.
        version: i64,
    },
    /// Every replay already matched the user's answer: nothing to give
    /// feedback on, no rewrite written; alignment ends here.
    NoGap,
    /// The rewrite is the current persona word for word: nothing new to
    /// store or replay. Sampling is seeded, so every further iteration
    /// would write the same feedback and rewrite again: alignment ends here.
    Unchanged,
    /// Refused by a guard; the previous version stays.
    Rejected {
        /// Why.
        rejection: Rejection,
        /// The text that was refused.
        text: String,
    },
}

/// One iteration.
#[derive(Debug, Clone, Serialize)]
pub struct Iteration {
    /// 1-based.
    pub iteration: usize,
    /// The persona version used.
    pub from_version: i64,
    /// The replays.
    pub simulations: Vec<Simulation>,
    /// The feedback as given to the rewrite.
    pub feedback: String,
    /// The rewrite's score on the same replays, when it was replayed.
    pub candidate_score: Option<f64>,
    /// The result.
    pub outcome: Outcome,
}

impl Iteration {
    /// The score of the persona this iteration started from.
    pub fn score(&self) -> f64 {
        self.simulations.iter().map(|s| s.score).sum()
    }
}

/// A whole alignment run.
#[derive(Debug, Clone, Serialize)]
pub struct AlignReport {
    /// The user.
    pub user: String,
    /// The version alignment started from.
    pub initial_version: i64,
    /// The version it ended with.
    pub final_version: i64,
    /// The persona text at the start.
    pub initial_text: String,
    /// The persona text at the end.
    pub final_text: String,
    /// The starting persona's score on the replays ([`replay_score`], summed).
    pub initial_score: f64,
    /// The final persona's score on the same replays.
    pub final_score: f64,
    /// The iterations.
    pub iterations: Vec<Iteration>,
}

/// Progress events, for a progress bar.
#[derive(Debug, Clone)]
pub enum AlignEvent<'a> {
    /// An iteration starts.
    IterationStart {
        /// 1-based.
        iteration: usize,
        /// Of how many.
        of: usize,
    },
    /// A replay finished (its feedback comes later, with the others).
    Simulated {
        /// The replayed query.
        query: &'a str,
        /// The agent's answer.
        simulated: &'a str,
        /// The user's real answer.
        real: &'a str,
    },
    /// An iteration finished.
    IterationEnd(&'a Iteration),
}

/// What the standard tools return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolConfig {
    /// Records returned by a memory search (K; the paper uses 4).
    pub k: usize,
    /// Articles returned by an encyclopedia search.
    pub encyclopedia_k: usize,
    /// Longest text of one record or article, in characters.
    pub observation_chars: usize,
}

impl Default for ToolConfig {
    fn default() -> Self {
        ToolConfig { k: 4, encyclopedia_k: 2, observation_chars: 240 }
    }
}

/// The tools of one question: the user's memory (leaving out the records
/// in `exclude`) and, when given, the encyclopedia.
pub fn standard_tools<'a>(
    memory: &'a mut Memory,
    encoder: &'a dyn Encoder,
    encyclopedia: Option<&'a Encyclopedia>,
    user: &str,
    config: &ToolConfig,
    exclude: &[i64],
) -> Result<ToolRegistry<'a>> {
    let mut tools = ToolRegistry::new();
    if let Some(e) = encyclopedia {
        tools.register(EncyclopediaSearch::new(e, config.encyclopedia_k, config.observation_chars))?;
    }
    tools.register(MemorySearch::new(memory, encoder, user, config.k, config.observation_chars).excluding(exclude.iter().copied()))?;
    Ok(tools)
}

/// One interaction that alignment replays: the question as the task asks
/// it, the user's real answer, and the memory records its replay must not
/// retrieve (the record it was built from, whose answer is the gold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replay {
    /// The question, in the shape the user's task asks it.
    pub question: String,
    /// The user's real answer.
    pub real: String,
    /// Records hidden from the memory search while this is replayed.
    pub hidden: Vec<i64>,
    /// The question with its options in another order, answered over both
    /// orders as the test question is (see [`crate::orders`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reordered: Option<Reordered>,
    /// What each label stands for (LaMP-1: the two references' titles),
    /// for the answer turn's closeness note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
}

impl Replay {
    /// A stored interaction replayed as it was recorded.
    pub fn from_record(record: &Record) -> Replay {
        Replay { question: record.query.clone(), real: record.response.clone(), hidden: vec![record.id], reordered: None, options: None }
    }
}

/// How close a simulated answer is to the real one: for two numbers
/// (ratings) minus their distance, otherwise 1 when they are the same
/// answer (case and surrounding spaces aside) and 0 when not. Higher is
/// better.
pub fn replay_score(simulated: &str, real: &str) -> f64 {
    let (s, r) = (simulated.trim(), real.trim());
    match (s.parse::<f64>(), r.parse::<f64>()) {
        (Ok(a), Ok(b)) if a.is_finite() && b.is_finite() => -(a - b).abs(),
        _ => f64::from(u8::from(s.eq_ignore_ascii_case(r))),
    }
}

/// Whether a simulated answer is the user's: the same text (case and
/// surrounding spaces aside) or the same number.
fn matched(simulated: &str, real: &str) -> bool {
    let (s, r) = (simulated.trim(), real.trim());
    s.eq_ignore_ascii_case(r) || matches!((s.parse::<f64>(), r.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// The models and stores alignment works with.
pub struct AlignContext<'a> {
    /// The serving model: it replays the interactions (and answers later).
    pub model: &'a mut dyn AgentLlm,
    /// The model that writes feedback and rewrites (`None`: the serving
    /// model does).
    pub writer: Option<&'a mut dyn AgentLlm>,
    /// The user store.
    pub memory: &'a mut Memory,
    /// The encoder for memory search.
    pub encoder: &'a dyn Encoder,
    /// The encyclopedia for the general tool.
    pub encyclopedia: Option<&'a Encyclopedia>,
}

/// Runs alignment for `user` on their latest stored interactions, with one
/// model for everything; see [`align_with`].
pub fn align(
    model: &mut dyn AgentLlm,
    memory: &mut Memory,
    encoder: &dyn Encoder,
    encyclopedia: Option<&Encyclopedia>,
    user: &str,
    config: &AlignConfig,
    progress: &mut dyn FnMut(AlignEvent<'_>),
) -> Result<AlignReport> {
    align_with(AlignContext { model, writer: None, memory, encoder, encyclopedia }, user, config, None, progress)
}

/// Replays `replays` with `persona` and scores each answer.
fn replay_all(ctx: &mut AlignContext<'_>, user: &str, persona: &str, replays: &[Replay], config: &AlignConfig) -> Result<(Vec<Trace>, f64)> {
    let questions: Vec<Question<'_>> = replays
        .iter()
        .map(|r| Question { text: &r.question, hidden_records: &r.hidden, reordered: r.reordered.as_ref(), options: r.options.as_deref() })
        .collect();
    let group = if config.lock_step { questions.len().max(1) } else { 1 };
    let mut traces = Vec::with_capacity(questions.len());
    for chunk in questions.chunks(group) {
        let mut tools = standard_tools(ctx.memory, ctx.encoder, ctx.encyclopedia, user, &config.tools, &[])?;
        traces.extend(run_agents(ctx.model, persona, &mut tools, chunk, &config.agent)?);
    }
    let score = replays.iter().zip(&traces).map(|(r, t)| replay_score(&t.answer, &r.real)).sum();
    Ok((traces, score))
}

/// Runs alignment for `user` (the paper's Algorithm 1 with guards),
/// storing each accepted persona version.
///
/// The interactions replayed are `replays` (the task's own questions, say)
/// or, when `None`, the user's `config.batch` latest stored records, oldest
/// first. Each iteration writes feedback on the gaps of the current
/// persona's replays and a rewrite from it. A rewrite is kept only if it
/// passes [`persona::check`], copies no replayed record and is not mostly
/// pasted feedback ([`persona::check_copies`]) and, with
/// [`AlignConfig::score_guard`], scores at least as well on the same
/// replays as the persona it would replace (better, with
/// [`AlignConfig::strict_score_guard`]) (its replays then serve the
/// next iteration). Feedback is written only for replays that missed the
/// user's answer; when none missed there is nothing to align and
/// alignment stops ([`Outcome::NoGap`]). Sampling is seeded, so an
/// iteration after a rejected rewrite, or after a rewrite that repeats the
/// current persona ([`Outcome::Unchanged`]), would write the same rewrite
/// again: alignment stops there too.
pub fn align_with(
    mut ctx: AlignContext<'_>,
    user: &str,
    config: &AlignConfig,
    replays: Option<Vec<Replay>>,
    progress: &mut dyn FnMut(AlignEvent<'_>),
) -> Result<AlignReport> {
    config.validate()?;
    ctx.model.set_scope(user);
    if let Some(w) = ctx.writer.as_deref_mut() {
        w.set_scope(user);
    }
    let phase = Instant::now();
    let current = persona::current_or_init(ctx.writer.as_deref_mut().unwrap_or(&mut *ctx.model), ctx.memory, user, &config.semantic)?;
    tracing::info!(user, version = current.version, ms = ms_since(phase), "alignment: starting persona");
    let u = ctx.memory.store().require_user(user)?;
    let replays = match replays {
        Some(r) => r,
        None => {
            let mut latest = ctx.memory.store().latest_records(&u, config.batch)?;
            latest.reverse();
            latest.iter().map(Replay::from_record).collect()
        }
    };
    if replays.is_empty() {
        return Err(AgentError::NoPersona { user: user.to_string(), reason: "no interactions to replay; import some with `persona user import`".into() });
    }
    let (initial_version, initial_text) = (current.version, current.text.clone());
    let mut version = current.version;
    let mut text = current.text;
    let phase = Instant::now();
    let (mut traces, mut score) = replay_all(&mut ctx, user, &text, &replays, config)?;
    tracing::info!(user, replays = traces.len(), score, ms = ms_since(phase), "alignment: replayed the interactions");
    let mut iterations = Vec::with_capacity(config.iterations);
    for iteration in 1..=config.iterations {
        progress(AlignEvent::IterationStart { iteration, of: config.iterations });
        let from_version = version;
        for (replay, trace) in replays.iter().zip(&traces) {
            progress(AlignEvent::Simulated { query: &replay.question, simulated: &trace.answer, real: &replay.real });
        }
        // Feedback only where the answer missed: a matched replay has no gap.
        let gaps: Vec<usize> = (0..replays.len()).filter(|&i| !matched(&traces[i].answer, &replays[i].real)).collect();
        let turns: Vec<(String, String)> = gaps
            .iter()
            .map(|&i| {
                let (replay, trace) = (&replays[i], &traces[i]);
                let prompt = fill(
                    FEEDBACK_USER,
                    &[("persona", persona::profile_of(&text)), ("query", &replay.question), ("simulated", &trace.answer), ("real", &replay.real)],
                );
                (FEEDBACK_SYSTEM.to_string(), prompt)
            })
            .collect();
        let writer: &mut dyn AgentLlm = ctx.writer.as_deref_mut().unwrap_or(&mut *ctx.model);
        let phase = Instant::now();
        // The feedback calls are independent of each other.
        let written = if turns.is_empty() { Vec::new() } else { writer.complete_batch(&turns, &config.params(config.feedback_tokens))? };
        tracing::info!(user, iteration, calls = turns.len(), ms = ms_since(phase), "alignment: feedback written");
        let mut feedbacks = vec![String::new(); replays.len()];
        for (&i, f) in gaps.iter().zip(written) {
            feedbacks[i] = f.trim().to_string();
        }
        let simulations: Vec<Simulation> = replays
            .iter()
            .zip(std::mem::take(&mut traces))
            .zip(feedbacks)
            .map(|((replay, trace), feedback)| Simulation {
                query: replay.question.clone(),
                simulated: trace.answer.clone(),
                real: replay.real.clone(),
                score: replay_score(&trace.answer, &replay.real),
                feedback,
                trace,
            })
            .collect();
        if gaps.is_empty() {
            let it = Iteration { iteration, from_version, simulations, feedback: String::new(), candidate_score: None, outcome: Outcome::NoGap };
            progress(AlignEvent::IterationEnd(&it));
            iterations.push(it);
            break;
        }
        let feedback =
            gaps.iter().enumerate().map(|(k, &i)| format!("{}. {}", k + 1, simulations[i].feedback.replace('\n', " "))).collect::<Vec<_>>().join("\n");
        let rewrite_prompt = fill(REWRITE_USER, &[("profile", persona::profile_of(&text)), ("feedback", &feedback)]);
        let phase = Instant::now();
        let rewrite = writer.complete(REWRITE_SYSTEM, &rewrite_prompt, &config.params(config.rewrite_tokens))?;
        tracing::info!(user, iteration, ms = ms_since(phase), "alignment: persona rewritten");
        let candidate = persona::from_rewrite(&rewrite, &text);
        if candidate == text {
            tracing::info!(user, iteration, "alignment: the rewrite repeats the current persona; stopping");
            let it = Iteration { iteration, from_version, simulations, feedback, candidate_score: None, outcome: Outcome::Unchanged };
            progress(AlignEvent::IterationEnd(&it));
            iterations.push(it);
            break;
        }
        let count = |s: &str| -> Result<usize> { Ok(ctx.model.count_tokens(s)?) };
        let mut verdict = persona::check(&candidate, config.max_persona_tokens, &count)?;
        if verdict.is_ok() {
            let sources: Vec<&str> = replays.iter().map(|r| r.question.as_str()).collect();
            let feedback_texts: Vec<&str> = simulations.iter().map(|s| s.feedback.as_str()).collect();
            verdict = persona::check_copies(&candidate, &sources, &feedback_texts);
        }
        let mut candidate_score = None;
        if verdict.is_ok() && config.score_guard {
            let phase = Instant::now();
            let (candidate_traces, s) = replay_all(&mut ctx, user, &candidate, &replays, config)?;
            tracing::info!(user, iteration, score = s, current = score, ms = ms_since(phase), "alignment: rewrite replayed");
            candidate_score = Some(s);
            if s < score {
                verdict = Err(Rejection::Worse { candidate: s, current: score });
            } else if s == score && config.strict_score_guard {
                verdict = Err(Rejection::NoBetter { score: s });
            } else {
                traces = candidate_traces;
            }
        }
        let outcome = match verdict {
            Ok(()) => {
                let stored = ctx.memory.store_mut().add_persona_version(&u, &candidate, Some(version), Some(&feedback))?;
                version = stored.version;
                text = candidate;
                if let Some(s) = candidate_score {
                    score = s;
                } else {
                    // Without the score guard the next feedback needs the new persona's replays.
                    (traces, score) = replay_all(&mut ctx, user, &text, &replays, config)?;
                }
                Outcome::Accepted { version }
            }
            Err(rejection) => {
                tracing::warn!(user, iteration, %rejection, "persona rewrite rejected; keeping the previous version");
                Outcome::Rejected { rejection, text: candidate }
            }
        };
        let rejected = matches!(outcome, Outcome::Rejected { .. });
        let it = Iteration { iteration, from_version, simulations, feedback, candidate_score, outcome };
        progress(AlignEvent::IterationEnd(&it));
        iterations.push(it);
        if rejected {
            // The same persona on the same replays would write the same rewrite.
            break;
        }
    }
    if version == initial_version && config.record_unchanged {
        version = ctx.memory.store_mut().add_persona_version(&u, &text, Some(initial_version), Some(UNCHANGED_NOTE))?.version;
    }
    Ok(AlignReport {
        user: user.to_string(),
        initial_version,
        final_version: version,
        initial_text,
        final_text: text,
        initial_score: iterations.first().map_or(score, Iteration::score),
        final_score: score,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::{Scripted, WordEncoder};
    use persona_memory::NewRecord;

    fn memory_with_user(dir: &std::path::Path) -> Memory {
        let mut memory = Memory::open(dir).unwrap();
        let records: Vec<NewRecord> =
            (0..5).map(|i| NewRecord { timestamp: Some(1_000 + i), ..NewRecord::new(format!("movie {i} plot"), format!("tag{i}")) }).collect();
        memory.import("ann", &records, &WordEncoder, 8, &mut |_, _| {}).unwrap();
        let u = memory.store().require_user("ann").unwrap();
        memory.store_mut().add_semantic_profile(&u, "general", "p", "scripted", "Ann likes jazz.", 5).unwrap();
        memory
    }

    /// One replayed record: thought, memory call, thought, second call,
    /// thought, answer (the feedback calls come after all replays).
    fn replay(answer: &str) -> Vec<String> {
        let mem = r#"{"tool": "memory_search", "arguments": {"query": "movie"}}"#.to_string();
        let again = r#"{"tool": "memory_search", "arguments": {"query": "plot"}}"#.to_string();
        let fin = format!(r#"{{"tool": "final_answer", "arguments": {{"answer": "{answer}"}}}}"#);
        vec!["".into(), mem, "".into(), again, "".into(), fin]
    }

    /// Replays run in lock step: at each step every run's thought, then
    /// every run's call.
    fn lock_step(replays: &[Vec<String>]) -> Vec<String> {
        let mut script = Vec::new();
        for step in 0..replays[0].len() / 2 {
            script.extend(replays.iter().map(|r| r[2 * step].clone()));
            script.extend(replays.iter().map(|r| r[2 * step + 1].clone()));
        }
        script
    }

    fn config(batch: usize, iterations: usize) -> AlignConfig {
        AlignConfig { batch, iterations, ..AlignConfig::default() }
    }

    fn script(parts: &[Vec<String>]) -> Scripted {
        let all: Vec<String> = parts.concat();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        Scripted::new(&refs)
    }

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_iteration_replays_the_latest_records_and_stores_the_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut model = script(&[
            lock_step(&[replay("tag9"), replay("tag4")]),
            // Feedback on the missed replay only.
            lines(&["Ann prefers tags about plot.", "Ann likes jazz and tags movies by their plot."]),
            // The rewrite replayed: both right, better than before.
            lock_step(&[replay("tag3"), replay("tag4")]),
        ]);
        let mut events = 0;
        let lock_step = AlignConfig { lock_step: true, ..config(2, 1) };
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &lock_step, &mut |_| events += 1).unwrap();
        assert_eq!(events, 4, "start, two replays, end");
        assert!(model.replies.is_empty());
        let it = &report.iterations[0];
        // The two most recent records, oldest first, with their real answers.
        assert_eq!(it.simulations.iter().map(|s| s.real.as_str()).collect::<Vec<_>>(), ["tag3", "tag4"]);
        assert_eq!(it.simulations[0].simulated, "tag9");
        assert_eq!(it.simulations[1].simulated, "tag4");
        assert_eq!((it.score(), it.candidate_score), (1.0, Some(2.0)));
        assert_eq!((report.initial_score, report.final_score), (1.0, 2.0));
        // The replayed record itself is never retrieved.
        for s in &it.simulations {
            let obs = s.trace.steps[0].observation.as_deref().unwrap();
            assert!(!obs.contains(&s.real), "{obs}");
        }
        assert!(matches!(it.outcome, Outcome::Accepted { version: 2 }));
        let u = memory.store().require_user("ann").unwrap();
        let versions = memory.store().persona_versions(&u).unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[1].parent, Some(1));
        assert_eq!(versions[1].feedback.as_deref(), Some("1. Ann prefers tags about plot."));
        assert_eq!(it.simulations[1].feedback, "", "no feedback where the answer matched");
        assert_eq!(persona::profile_of(&versions[1].text), "Ann likes jazz and tags movies by their plot.");
        assert_eq!(persona::profile_of(&versions[0].text), "Ann likes jazz.");
        assert_eq!(report.final_version, 2);
    }

    #[test]
    fn an_accepted_rewrite_s_replays_feed_the_next_iteration() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut model = script(&[
            replay("tag9"),
            replay("tag4"),
            lines(&["f1", "Ann tags by plot."]),
            replay("tag9"),
            replay("tag4"),
            // Iteration 2 starts from the accepted rewrite's replays.
            lines(&["g1", "Ann tags every movie by its plot."]),
            replay("tag3"),
            replay("tag4"),
        ]);
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config(2, 2), &mut |_| {}).unwrap();
        assert!(model.replies.is_empty());
        assert_eq!(report.iterations.len(), 2);
        assert_eq!(report.iterations[1].from_version, 2);
        assert!(matches!(report.iterations[1].outcome, Outcome::Accepted { version: 3 }));
        assert_eq!(report.iterations[1].feedback, "1. g1");
        assert_eq!(report.final_score, 2.0);
    }

    #[test]
    fn a_worse_scoring_rewrite_is_rejected_and_alignment_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut model = script(&[replay("tag3"), replay("tag0"), lines(&["f1", "Ann likes horror films."]), replay("tag0"), replay("tag0")]);
        let config = AlignConfig { record_unchanged: true, ..config(2, 3) };
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config, &mut |_| {}).unwrap();
        assert!(model.replies.is_empty(), "no second iteration");
        assert_eq!(report.iterations.len(), 1);
        match &report.iterations[0].outcome {
            Outcome::Rejected { rejection: Rejection::Worse { candidate, current }, text } => {
                assert_eq!((*candidate, *current), (0.0, 1.0));
                assert!(text.contains("horror"));
            }
            other => panic!("expected a worse-score rejection, got {other:?}"),
        }
        assert_eq!(report.final_text, report.initial_text);
        assert_eq!((report.initial_score, report.final_score), (1.0, 1.0));
        let u = memory.store().require_user("ann").unwrap();
        let versions = memory.store().persona_versions(&u).unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[1].text, versions[0].text);
        assert_eq!(versions[1].feedback.as_deref(), Some(UNCHANGED_NOTE));
    }

    #[test]
    fn a_strict_guard_refuses_a_tying_rewrite_that_the_default_keeps() {
        for (strict, kept) in [(false, true), (true, false)] {
            let dir = tempfile::tempdir().unwrap();
            let mut memory = memory_with_user(dir.path());
            // The rewrite's replays score as the persona's did (one of two right).
            let mut model = script(&[replay("tag9"), replay("tag4"), lines(&["f1", "Ann tags by plot."]), replay("tag9"), replay("tag4")]);
            let config = AlignConfig { strict_score_guard: strict, ..config(2, 1) };
            let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config, &mut |_| {}).unwrap();
            assert!(model.replies.is_empty());
            let it = &report.iterations[0];
            assert_eq!((it.score(), it.candidate_score), (1.0, Some(1.0)));
            match (&it.outcome, kept) {
                (Outcome::Accepted { version: 2 }, true) => assert_eq!(persona::profile_of(&report.final_text), "Ann tags by plot."),
                (Outcome::Rejected { rejection: Rejection::NoBetter { score }, .. }, false) => {
                    assert_eq!(*score, 1.0);
                    assert_eq!(report.final_text, report.initial_text);
                }
                (other, _) => panic!("strict {strict}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_rewrite_that_repeats_the_persona_ends_alignment_without_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        // Iteration 1 is accepted; iteration 2's rewrite is that persona again.
        let mut model = script(&[
            replay("tag9"),
            replay("tag4"),
            lines(&["f1", "Ann tags by plot."]),
            replay("tag9"),
            replay("tag4"),
            lines(&["g1", "  Ann tags by plot.  "]),
        ]);
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config(2, 3), &mut |_| {}).unwrap();
        assert!(model.replies.is_empty(), "the repeated persona is not replayed and no third iteration runs");
        assert_eq!(report.iterations.len(), 2);
        assert!(matches!(report.iterations[1].outcome, Outcome::Unchanged), "{:?}", report.iterations[1].outcome);
        assert_eq!(report.iterations[1].candidate_score, None);
        assert_eq!((report.final_version, report.final_score), (2, 1.0));
        assert_eq!(persona::profile_of(&report.final_text), "Ann tags by plot.");
        let u = memory.store().require_user("ann").unwrap();
        assert_eq!(memory.store().persona_versions(&u).unwrap().len(), 2, "nothing stored for the repeat");
    }

    #[test]
    fn a_rewrite_that_copies_a_record_is_rejected_before_any_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let question = "Which tag does this movie relate to? description: a lonely robot cleans an empty earth for seven hundred years";
        let u = memory.store().require_user("ann").unwrap();
        let id = memory.store().latest_records(&u, 1).unwrap()[0].id;
        let replays = vec![Replay { question: question.into(), real: "tag4".into(), hidden: vec![id], reordered: None, options: None }];
        let copy = "This user likes a lonely robot cleans an empty earth for seven hundred years.";
        let mut model = script(&[replay("tag9"), lines(&["f1", copy])]);
        let ctx = AlignContext { model: &mut model, writer: None, memory: &mut memory, encoder: &WordEncoder, encyclopedia: None };
        let report = align_with(ctx, "ann", &config(1, 2), Some(replays), &mut |_| {}).unwrap();
        assert!(model.replies.is_empty(), "a copy is not replayed");
        let it = &report.iterations[0];
        assert_eq!(it.simulations[0].query, question);
        assert!(!it.simulations[0].trace.steps[0].observation.as_deref().unwrap().contains("tag4"), "the gold's record is hidden");
        assert!(matches!(&it.outcome, Outcome::Rejected { rejection: Rejection::Copied { from: "record", .. }, .. }), "{:?}", it.outcome);
        assert_eq!(it.candidate_score, None);
    }

    #[test]
    fn a_separate_writer_writes_feedback_and_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut model = script(&[replay("tag9"), replay("tag4")]);
        let mut writer = script(&[lines(&["f1", "Ann tags by plot."])]);
        let ctx = AlignContext { model: &mut model, writer: Some(&mut writer), memory: &mut memory, encoder: &WordEncoder, encyclopedia: None };
        let report = align_with(ctx, "ann", &config(1, 1), None, &mut |_| {}).unwrap();
        assert!(model.replies.is_empty() && writer.replies.is_empty());
        assert!(matches!(report.iterations[0].outcome, Outcome::Accepted { .. }));
        assert_eq!(writer.completions.len(), 2, "feedback and rewrite");
    }

    #[test]
    fn guards_refuse_empty_and_over_budget_rewrites() {
        for (rewrite, guard) in [("   ".to_string(), "empty"), ("word ".repeat(2000), "too_long")] {
            let dir = tempfile::tempdir().unwrap();
            let mut memory = memory_with_user(dir.path());
            let mut model = script(&[replay("x"), vec!["f1".into(), rewrite]]);
            let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config(1, 3), &mut |_| {}).unwrap();
            assert!(model.replies.is_empty());
            match &report.iterations[0].outcome {
                Outcome::Rejected { rejection, .. } => assert_eq!(rejection.guard(), guard),
                other => panic!("expected a rejection, got {other:?}"),
            }
            let u = memory.store().require_user("ann").unwrap();
            assert_eq!(memory.store().persona_versions(&u).unwrap().len(), 1, "unchanged personas are not recorded by default");
        }
    }

    #[test]
    fn without_a_gap_there_is_no_feedback_and_no_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut model = script(&[replay("tag3"), replay(" TAG4 ")]);
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config(2, 3), &mut |_| {}).unwrap();
        assert!(model.replies.is_empty() && model.completions.is_empty(), "no feedback or rewrite call");
        assert_eq!(report.iterations.len(), 1);
        assert!(matches!(report.iterations[0].outcome, Outcome::NoGap));
        assert_eq!((report.initial_score, report.final_score, report.final_version), (2.0, 2.0, 1));
        assert!(matched("4.0", "4") && !matched("4", "5") && matched("Politics", "politics"));
    }

    #[test]
    fn replay_scores() {
        assert_eq!(replay_score("politics", " Politics "), 1.0);
        assert_eq!(replay_score("sports", "politics"), 0.0);
        assert_eq!(replay_score("4", "2"), -2.0);
        assert_eq!(replay_score("[1]", "[2]"), 0.0);
    }

    #[test]
    fn a_user_without_history_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = Memory::open(dir.path()).unwrap();
        memory.store().ensure_user("bob").unwrap();
        let err = align(&mut Scripted::new(&[]), &mut memory, &WordEncoder, None, "bob", &config(1, 1), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("bob") && err.to_string().contains("import"), "{err}");
        let err = align(&mut Scripted::new(&[]), &mut memory, &WordEncoder, None, "nobody", &config(1, 1), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("nobody"), "{err}");
    }
}
