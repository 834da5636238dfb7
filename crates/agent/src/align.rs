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
            lock_step: false,
        }
    }
}

impl AlignConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let values = [("batch", self.batch), ("iterations", self.iterations), ("k", self.tools.k), ("feedback_tokens", self.feedback_tokens), ("rewrite_tokens", self.rewrite_tokens)];
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
    /// The record replayed.
    pub record_id: i64,
    /// Its query.
    pub query: String,
    /// The agent's answer with the current persona.
    pub simulated: String,
    /// The user's real response.
    pub real: String,
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
    /// The result.
    pub outcome: Outcome,
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

/// Runs alignment for `user`, storing each accepted persona version.
pub fn align(
    model: &mut dyn AgentLlm,
    memory: &mut Memory,
    encoder: &dyn Encoder,
    encyclopedia: Option<&Encyclopedia>,
    user: &str,
    config: &AlignConfig,
    progress: &mut dyn FnMut(AlignEvent<'_>),
) -> Result<AlignReport> {
    config.validate()?;
    model.set_scope(user);
    let phase = Instant::now();
    let current = persona::current_or_init(model, memory, user, &config.semantic)?;
    tracing::info!(user, version = current.version, ms = ms_since(phase), "alignment: starting persona");
    let u = memory.store().require_user(user)?;
    let (initial_version, initial_text) = (current.version, current.text.clone());
    let mut version = current.version;
    let mut text = current.text;
    let mut iterations = Vec::with_capacity(config.iterations);
    for iteration in 1..=config.iterations {
        progress(AlignEvent::IterationStart { iteration, of: config.iterations });
        let from_version = version;
        // The n most recent interactions, oldest first.
        let mut batch: Vec<Record> = memory.store().latest_records(&u, config.batch)?;
        batch.reverse();
        // Each replay hides its own record from the memory search.
        let hidden: Vec<[i64; 1]> = batch.iter().map(|r| [r.id]).collect();
        let questions: Vec<Question<'_>> = batch.iter().zip(&hidden).map(|(r, h)| Question { text: &r.query, hidden_records: h }).collect();
        let phase = Instant::now();
        let group = if config.lock_step { questions.len() } else { 1 };
        let mut traces = Vec::with_capacity(questions.len());
        for chunk in questions.chunks(group) {
            let mut tools = standard_tools(memory, encoder, encyclopedia, user, &config.tools, &[])?;
            traces.extend(run_agents(model, &text, &mut tools, chunk, &config.agent)?);
        }
        let tokens: usize = traces.iter().map(|t| t.completion_tokens).sum();
        tracing::info!(user, iteration, replays = traces.len(), completion_tokens = tokens, ms = ms_since(phase), "alignment: replayed the interactions");
        for (record, trace) in batch.iter().zip(&traces) {
            progress(AlignEvent::Simulated { query: &record.query, simulated: &trace.answer, real: &record.response });
        }
        // The feedback calls are independent of each other.
        let turns: Vec<(String, String)> = batch
            .iter()
            .zip(&traces)
            .map(|(record, trace)| {
                let prompt = fill(
                    FEEDBACK_USER,
                    &[("persona", persona::profile_of(&text)), ("query", &record.query), ("simulated", &trace.answer), ("real", &record.response)],
                );
                (FEEDBACK_SYSTEM.to_string(), prompt)
            })
            .collect();
        let phase = Instant::now();
        let feedbacks = model.complete_batch(&turns, &config.params(config.feedback_tokens))?;
        tracing::info!(user, iteration, calls = turns.len(), ms = ms_since(phase), "alignment: feedback written");
        let simulations: Vec<Simulation> = batch
            .iter()
            .zip(traces)
            .zip(feedbacks)
            .map(|((record, trace), feedback)| Simulation {
                record_id: record.id,
                query: record.query.clone(),
                simulated: trace.answer.clone(),
                real: record.response.clone(),
                feedback: feedback.trim().to_string(),
                trace,
            })
            .collect();
        let feedback = simulations
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {}", i + 1, s.feedback.replace('\n', " ")))
            .collect::<Vec<_>>()
            .join("\n");
        let rewrite_prompt = fill(REWRITE_USER, &[("profile", persona::profile_of(&text)), ("feedback", &feedback)]);
        let phase = Instant::now();
        let rewrite = model.complete(REWRITE_SYSTEM, &rewrite_prompt, &config.params(config.rewrite_tokens))?;
        tracing::info!(user, iteration, ms = ms_since(phase), "alignment: persona rewritten");
        let candidate = persona::from_rewrite(&rewrite);
        let count = |s: &str| -> Result<usize> { Ok(model.count_tokens(s)?) };
        let outcome = match persona::check(&candidate, config.max_persona_tokens, &count)? {
            Ok(()) => {
                let stored = memory.store_mut().add_persona_version(&u, &candidate, Some(version), Some(&feedback))?;
                version = stored.version;
                text = candidate;
                Outcome::Accepted { version }
            }
            Err(rejection) => {
                tracing::warn!(user, iteration, %rejection, "persona rewrite rejected; keeping the previous version");
                Outcome::Rejected { rejection, text: candidate }
            }
        };
        let it = Iteration { iteration, from_version, simulations, feedback, outcome };
        progress(AlignEvent::IterationEnd(&it));
        iterations.push(it);
    }
    if version == initial_version && config.record_unchanged {
        version = memory.store_mut().add_persona_version(&u, &text, Some(initial_version), Some(UNCHANGED_NOTE))?.version;
    }
    Ok(AlignReport { user: user.to_string(), initial_version, final_version: version, initial_text, final_text: text, iterations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scripted::{Scripted, WordEncoder};
    use persona_memory::NewRecord;

    fn memory_with_user(dir: &std::path::Path) -> Memory {
        let mut memory = Memory::open(dir).unwrap();
        let records: Vec<NewRecord> = (0..5).map(|i| NewRecord { timestamp: Some(1_000 + i), ..NewRecord::new(format!("movie {i} plot"), format!("tag{i}")) }).collect();
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

    #[test]
    fn an_iteration_replays_the_latest_records_and_stores_the_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut script: Vec<String> = Vec::new();
        script.extend(lock_step(&[replay("tag9"), replay("tag4")]));
        script.push("Ann prefers tags about plot.".into());
        script.push("Good.".into());
        script.push("Ann likes jazz and tags movies by their plot.".into());
        let refs: Vec<&str> = script.iter().map(String::as_str).collect();
        let mut model = Scripted::new(&refs);
        let mut events = 0;
        let lock_step = AlignConfig { lock_step: true, ..config(2, 1) };
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &lock_step, &mut |_| events += 1).unwrap();
        assert_eq!(events, 4, "start, two replays, end");
        let it = &report.iterations[0];
        // The two most recent records, oldest first, with their real answers.
        assert_eq!(it.simulations.iter().map(|s| s.real.as_str()).collect::<Vec<_>>(), ["tag3", "tag4"]);
        assert_eq!(it.simulations[0].simulated, "tag9");
        assert_eq!(it.simulations[1].simulated, "tag4");
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
        assert_eq!(versions[1].feedback.as_deref(), Some("1. Ann prefers tags about plot.\n2. Good."));
        assert_eq!(persona::profile_of(&versions[1].text), "Ann likes jazz and tags movies by their plot.");
        assert_eq!(persona::profile_of(&versions[0].text), "Ann likes jazz.");
        assert_eq!(report.final_version, 2);
    }

    #[test]
    fn replays_run_one_after_another_unless_lock_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut script: Vec<String> = Vec::new();
        script.extend(replay("tag9"));
        script.extend(replay("tag4"));
        script.extend(["f1".to_string(), "f2".to_string(), "Ann tags by plot.".to_string()]);
        let refs: Vec<&str> = script.iter().map(String::as_str).collect();
        let mut model = Scripted::new(&refs);
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config(2, 1), &mut |_| {}).unwrap();
        let it = &report.iterations[0];
        assert_eq!(it.simulations.iter().map(|s| s.simulated.as_str()).collect::<Vec<_>>(), ["tag9", "tag4"]);
        for s in &it.simulations {
            let obs = s.trace.steps[0].observation.as_deref().unwrap();
            assert!(!obs.contains(&s.real), "{obs}");
        }
        assert!(model.replies.is_empty());
    }

    #[test]
    fn an_alignment_without_accepted_rewrites_is_recorded_only_on_request() {
        for record in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut memory = memory_with_user(dir.path());
            let mut script: Vec<String> = replay("x");
            script.push("f1".into());
            script.push("   ".into()); // empty rewrite: rejected
            let refs: Vec<&str> = script.iter().map(String::as_str).collect();
            let config = AlignConfig { record_unchanged: record, ..config(1, 1) };
            let report = align(&mut Scripted::new(&refs), &mut memory, &WordEncoder, None, "ann", &config, &mut |_| {}).unwrap();
            let u = memory.store().require_user("ann").unwrap();
            let versions = memory.store().persona_versions(&u).unwrap();
            if record {
                assert_eq!(versions.len(), 2);
                assert_eq!(versions[1].text, versions[0].text);
                assert_eq!(versions[1].feedback.as_deref(), Some(UNCHANGED_NOTE));
                assert_eq!((report.initial_version, report.final_version), (1, 2));
            } else {
                assert_eq!(versions.len(), 1);
                assert_eq!(report.final_version, report.initial_version);
            }
        }
    }

    #[test]
    fn rejected_rewrites_keep_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = memory_with_user(dir.path());
        let mut script: Vec<String> = Vec::new();
        script.extend(replay("x"));
        script.push("f1".into());
        script.push("   ".into()); // empty rewrite
        script.extend(replay("x"));
        script.push("f2".into());
        script.push("word ".repeat(2000)); // over the budget
        script.extend(replay("x"));
        script.push("f3".into());
        script.push("Ann tags by plot.".into());
        let refs: Vec<&str> = script.iter().map(String::as_str).collect();
        let mut model = Scripted::new(&refs);
        let report = align(&mut model, &mut memory, &WordEncoder, None, "ann", &config(1, 3), &mut |_| {}).unwrap();
        assert!(matches!(report.iterations[0].outcome, Outcome::Rejected { rejection: Rejection::Empty, .. }));
        assert!(matches!(report.iterations[1].outcome, Outcome::Rejected { rejection: Rejection::TooLong { .. }, .. }));
        assert!(matches!(report.iterations[2].outcome, Outcome::Accepted { version: 2 }));
        assert_eq!(report.iterations[2].from_version, 1);
        let u = memory.store().require_user("ann").unwrap();
        assert_eq!(memory.store().persona_versions(&u).unwrap().len(), 2);
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
