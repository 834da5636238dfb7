//! The methods the benchmark compares, all over the same model: the
//! paper's baselines (Prompt, ICL, RAG-1, RAG-4, PAG-4, ReAct, MemBank),
//! PersonaAgent, and its ablations (no alignment, no persona, no memory, no
//! action). ARCHITECTURE.md section 4 defines each.

use persona_agent::tools::memory_search::render_shaped;
use persona_agent::{
    align_with, complete_choice_both_orders, persona, run_agents, standard_tools, AgentConfig, AgentLlm, AlignConfig, AlignContext, AlignReport, Choices,
    Parts, Question, Reordered, Runtime, ToolRegistry,
};
use persona_engine::{ContextPolicy, GenerationParams, SamplingParams};
use persona_memory::text::{fill, one_line};
use persona_memory::{NewRecord, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{LampError, Result};
use crate::format::Example;
use crate::replay;
use crate::task::Task;

const SYSTEM: &str = include_str!("../prompts/system.txt");
const ICL: &str = include_str!("../prompts/icl.txt");
const RAG: &str = include_str!("../prompts/rag.txt");
const PAG: &str = include_str!("../prompts/pag.txt");
const MEMBANK: &str = include_str!("../prompts/membank.txt");
const GENERIC_PERSONA: &str = include_str!("../prompts/generic_persona.txt");

/// The user id of the MemBank agent's own memory.
const MEMBANK_USER: &str = "membank-agent";

/// A method of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The task input alone.
    Prompt,
    /// A few fixed demonstrations (not from this user).
    Icl,
    /// The most similar profile item prepended.
    Rag1,
    /// The four most similar profile items prepended.
    Rag4,
    /// An LLM-written profile summary plus four retrieved items.
    Pag4,
    /// A generic tool-using agent (encyclopedia only, no persona or personal memory).
    React,
    /// A generic agent with a memory of its own past answers (not user-conditioned).
    Membank,
    /// No language model: the answer the user's nearest records point to,
    /// by the sentence encoder alone (a reference line; see [`crate::nearest`]).
    Nearest,
    /// The full method: persona, memory, tools, test-time alignment.
    PersonaAgent,
    /// Ablation: the initial persona, not aligned.
    NoAlignment,
    /// Ablation: no user system prompt (generic persona), memory and tools kept.
    NoPersona,
    /// Ablation: no episodic or semantic memory (no user description, no memory tool).
    NoMemory,
    /// Ablation: no tools; the aligned persona and retrieved memory in one prompt.
    NoAction,
}

impl Method {
    /// Every method: baselines, PersonaAgent, ablations.
    pub const ALL: [Method; 13] = [
        Method::Prompt,
        Method::Icl,
        Method::Rag1,
        Method::Rag4,
        Method::Pag4,
        Method::React,
        Method::Membank,
        Method::Nearest,
        Method::PersonaAgent,
        Method::NoAlignment,
        Method::NoPersona,
        Method::NoMemory,
        Method::NoAction,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Prompt => "prompt",
            Method::Icl => "icl",
            Method::Rag1 => "rag-1",
            Method::Rag4 => "rag-4",
            Method::Pag4 => "pag-4",
            Method::React => "react",
            Method::Membank => "membank",
            Method::Nearest => "nearest",
            Method::PersonaAgent => "persona-agent",
            Method::NoAlignment => "no-alignment",
            Method::NoPersona => "no-persona",
            Method::NoMemory => "no-memory",
            Method::NoAction => "no-action",
        }
    }

    /// Whether it is an ablation of PersonaAgent.
    pub fn is_ablation(self) -> bool {
        matches!(self, Method::NoAlignment | Method::NoPersona | Method::NoMemory | Method::NoAction)
    }

    /// Whether its answers come from the action loop (itself or in
    /// alignment's replays): ReAct, PersonaAgent and its ablations.
    pub fn uses_agent(self) -> bool {
        matches!(self, Method::React | Method::PersonaAgent) || self.is_ablation()
    }

    /// Whether it answers with a persona aligned by test-time alignment
    /// (PersonaAgent, and no-action's one call): the methods that
    /// `--align-model` changes.
    pub fn aligns(self) -> bool {
        matches!(self, Method::PersonaAgent | Method::NoAction)
    }

    /// Whether it needs the user's profile in the memory store.
    fn needs_memory(self) -> bool {
        !matches!(self, Method::Prompt | Method::Icl | Method::React | Method::Membank)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = LampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s.trim().to_lowercase())
            .ok_or_else(|| LampError::UnknownMethod { name: s.to_string(), known: Method::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ") })
    }
}

/// Settings shared by the methods.
#[derive(Debug, Clone)]
pub struct MethodConfig {
    /// Alignment settings (n, E, K, temperature) for PersonaAgent.
    pub align: AlignConfig,
    /// Demonstrations for ICL.
    pub icl_demos: usize,
    /// Most tokens of a direct answer.
    pub answer_tokens: usize,
    /// Longest profile item text in a prompt, in characters.
    pub item_chars: usize,
    /// Read answers as free text (the old reader, for comparison) instead
    /// of decoding them under the task's labels.
    pub free_text: bool,
    /// Where the labels name positions in the question (LaMP-1), ask it in
    /// both orders and take the label whose scores over both are best
    /// ([`persona_agent::orders`]); agents do so in their answer turn,
    /// alignment's replays too.
    pub both_orders: bool,
}

impl MethodConfig {
    /// The paper's defaults with a seed.
    pub fn with_seed(seed: u64) -> Self {
        // Each user is aligned once, also when no rewrite passes the guards.
        let mut align = AlignConfig { record_unchanged: true, ..AlignConfig::default() };
        align.agent.seed = seed;
        align.semantic.seed = seed;
        MethodConfig { align, icl_demos: 3, answer_tokens: 48, item_chars: 300, free_text: false, both_orders: false }
    }

    fn params(&self) -> GenerationParams {
        GenerationParams {
            max_tokens: self.answer_tokens,
            stop: vec!["\n".into()],
            sampling: SamplingParams { temperature: self.align.agent.temperature, seed: self.align.agent.seed, ..SamplingParams::default() },
            context_policy: ContextPolicy::TruncateStart,
            ignore_eos: false,
        }
    }
}

/// A profile item as a memory record (what the user was given, how they
/// responded), tagged with its task (`lamp_task` metadata) so that the
/// semantic memory uses the task's summary prompt and memory search shows
/// the record in the task's shape. LaMP-1 profiles hold only the user's
/// papers: the record is the title (as query and response).
pub fn profile_record(task: Task, item: &Map<String, Value>) -> NewRecord {
    let field = |k: &str| {
        item.get(k).map(|v| match v {
            Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        })
    };
    let (query, response) = match task {
        Task::Citation => {
            let title = field("title").unwrap_or_default();
            (title.clone(), title)
        }
        Task::MovieTagging => (field("description").unwrap_or_default(), field("tag").unwrap_or_default()),
        Task::NewsCategorization => {
            let (title, text) = (field("title").unwrap_or_default(), field("text").unwrap_or_default());
            (if text.is_empty() { title } else { format!("{title}. {text}") }, field("category").unwrap_or_default())
        }
        Task::ProductRating => (field("text").unwrap_or_default(), field("score").unwrap_or_default()),
    };
    let timestamp = item.get("time").and_then(Value::as_i64);
    let mut metadata = Map::new();
    metadata.insert("lamp_task".into(), Value::String(task.memory_kind().name().to_string()));
    NewRecord { timestamp, metadata, ..NewRecord::new(query, response) }
}

/// Records of some agent's own past (MemBank's answers): what it was
/// given and what it answered.
fn render_items(items: &[(String, String)], max: usize) -> String {
    items.iter().map(|(q, r)| format!("- Given: {}\n  Response: {}", one_line(q, max), one_line(r, 80))).collect::<Vec<_>>().join("\n")
}

/// This user's records in the task's shape, as memory search shows them.
fn render_user_items(task: Task, items: &[(String, String)], max: usize) -> String {
    items.iter().map(|(q, r)| format!("- {}", render_shaped(task.memory_kind(), q, r, max))).collect::<Vec<_>>().join("\n")
}

/// Solved questions of the task (ICL): the whole question and its answer.
fn render_demos(items: &[(String, String)], max: usize) -> String {
    items.iter().map(|(q, a)| format!("- Question: {}\n  Answer: {}", one_line(q, max), a)).collect::<Vec<_>>().join("\n")
}

/// Everything a method needs besides the example.
pub struct Resources<'a, M> {
    /// The model, encoder, user store (one user per benchmark user, plus
    /// MemBank's own) and encyclopedia. Every method works for its user
    /// through [`Runtime::user`], which scopes the model's caches to that
    /// user first.
    pub runtime: &'a mut Runtime<M>,
    /// Settings.
    pub config: &'a MethodConfig,
    /// ICL's fixed demonstrations (from another user).
    pub demos: &'a [(String, String)],
    /// Papers of another user, for LaMP-1's replays ([`distractors`]).
    pub distractors: &'a [String],
    /// The model that writes alignment's feedback and rewrites (`None`:
    /// `model` does).
    pub writer: Option<&'a mut (dyn AgentLlm + Send)>,
    /// Where each alignment run's report goes (the runner logs them).
    pub alignments: Vec<AlignReport>,
}

/// The store id of a benchmark user.
pub fn user_id(index: usize) -> String {
    format!("lamp-{index}")
}

/// Makes sure the user's profile is in the store (imports are idempotent).
fn ensure_profile<M: AgentLlm>(runtime: &mut Runtime<M>, task: Task, example: &Example, user: &str) -> Result<()> {
    let records: Vec<NewRecord> = example.question.profile.iter().map(|item| profile_record(task, item)).filter(|r| !r.query.is_empty()).collect();
    if records.is_empty() {
        return Ok(runtime.ensure_user(user)?);
    }
    let (memory, encoder) = runtime.memory_mut();
    memory.import(user, &records, encoder, 32, &mut |_, _| {})?;
    Ok(())
}

fn retrieve<M>(p: &mut Parts<'_, M>, user: &str, input: &str, k: usize) -> Result<Vec<(String, String)>> {
    let hits = p.memory.search(user, input, k, p.encoder)?;
    Ok(hits.into_iter().map(|h| (h.record.query, h.record.response)).collect())
}

/// The question a one-call method asks: its prompt, built around the
/// input (as is, and reordered where the run asks in both orders).
struct Ask<'a> {
    input: &'a str,
    reordered: Option<&'a Reordered>,
    /// What each label stands for (LaMP-1: the references' titles).
    options: Option<&'a [String]>,
}

/// One model call (two with `reordered`: the prompt built around each
/// order, labels scored over both); under the task's labels unless the
/// run reads free text.
fn direct<M: AgentLlm>(
    p: &mut Parts<'_, M>,
    config: &MethodConfig,
    choices: Option<&Choices>,
    system: &str,
    ask: &Ask<'_>,
    prompt: impl Fn(&str) -> String,
) -> Result<String> {
    let params = config.params();
    match (choices, ask.reordered) {
        (Some(c), Some(re)) => {
            let re = Reordered { text: prompt(&re.text), labels: re.labels.clone() };
            Ok(complete_choice_both_orders(&mut *p.model, system, &prompt(ask.input), &re, c)?.0)
        }
        (Some(c), None) => Ok(p.model.complete_choice(system, &prompt(ask.input), c, &params)?),
        (None, _) => Ok(p.model.complete(system, &prompt(ask.input), &params)?),
    }
}

/// The action loop; with `user`, its memory is one of the tools.
fn agent<M: AgentLlm>(
    p: &mut Parts<'_, M>,
    config: &MethodConfig,
    persona_text: &str,
    user: Option<&str>,
    ask: &Ask<'_>,
    agent_config: &AgentConfig,
) -> Result<String> {
    let mut tools = match user {
        Some(u) => standard_tools(p.memory, p.encoder, p.encyclopedia, u, &config.align.tools, &[])?,
        None => {
            let mut tools = ToolRegistry::new();
            if let Some(e) = p.encyclopedia {
                tools.register(persona_agent::EncyclopediaSearch::new(e, config.align.tools.encyclopedia_k, config.align.tools.observation_chars))?;
            }
            tools
        }
    };
    let question = Question { text: ask.input, hidden_records: &[], reordered: ask.reordered, options: ask.options };
    let trace = run_agents(p.model, persona_text, &mut tools, &[question], agent_config)?.pop();
    Ok(trace.map(|t| t.answer).unwrap_or_default())
}

/// What alignment needs besides the runtime's parts.
struct AlignInputs<'r, 'a> {
    config: &'r MethodConfig,
    writer: Option<&'r mut (dyn AgentLlm + Send + 'a)>,
    distractors: &'r [String],
    alignments: &'r mut Vec<AlignReport>,
}

/// The user's aligned persona: the latest version if alignment has run for
/// this user (any version after the first), else align now (initialising
/// from the semantic memory) on replays in the task's shape, answered
/// under the task's labels like the questions themselves.
fn aligned_persona<M: AgentLlm>(p: &mut Parts<'_, M>, inputs: AlignInputs<'_, '_>, task: Task, user: &str, choices: Option<&Choices>) -> Result<String> {
    let u = p.memory.store().require_user(user)?;
    let versions = p.memory.store().persona_versions(&u)?;
    if versions.len() > 1 {
        return Ok(versions.last().map(|v| v.text.clone()).unwrap_or_default());
    }
    let mut config = inputs.config.align.clone();
    config.agent.choices = choices.cloned();
    // LaMP-1 replays need one more paper than replays.
    let latest = p.memory.store().latest_records(&u, config.batch + 1)?;
    let replays = replay::task_replays(task, &latest, config.batch, inputs.distractors, inputs.config.both_orders);
    // A profile too short for the task's shape replays its records as they are.
    let replays = (!replays.is_empty()).then_some(replays);
    // With `record_unchanged` (the default here) alignment always stores a
    // version, so the next method finds this user aligned.
    let writer = inputs.writer.map(|w| w as &mut dyn AgentLlm);
    let ctx = AlignContext { model: &mut *p.model, writer, memory: &mut *p.memory, encoder: p.encoder, encyclopedia: p.encyclopedia };
    let report = align_with(ctx, user, &config, replays, &mut |_| {})?;
    let text = report.final_text.clone();
    inputs.alignments.push(report);
    Ok(text)
}

/// The user's initial persona (version 1, built from the semantic memory).
fn initial_persona<M: AgentLlm>(p: &mut Parts<'_, M>, config: &MethodConfig, user: &str) -> Result<String> {
    persona::current_or_init(&mut *p.model, p.memory, user, &config.align.semantic)?;
    let u = p.memory.store().require_user(user)?;
    let versions = p.memory.store().persona_versions(&u)?;
    Ok(versions.first().map(|v| v.text.clone()).unwrap_or_default())
}

/// Runs one method on one example of user `index`; returns the raw output.
pub fn answer<M: AgentLlm>(method: Method, task: Task, example: &Example, index: usize, res: &mut Resources<'_, M>) -> Result<String> {
    let user = user_id(index);
    if method.needs_memory() {
        ensure_profile(res.runtime, task, example, &user)?;
    } else {
        res.runtime.ensure_user(&user)?;
    }
    if method == Method::Membank {
        res.runtime.ensure_user(MEMBANK_USER)?;
    }
    let Resources { runtime, config, demos, distractors, writer, alignments } = res;
    let config: &MethodConfig = config;
    // Cached prompt state (a persona prefix) never serves another user:
    // the scope sets the model's cache scope to this user.
    let mut scope = runtime.user(&user)?;
    let p = &mut scope.parts();
    let input = example.question.input.as_str();
    let item_chars = config.item_chars;
    let choices = if config.free_text { None } else { Some(task.choices()?) };
    let choices = choices.as_ref();
    let agent_config = AgentConfig { choices: choices.cloned(), ..config.align.agent.clone() };
    let reordered = if config.both_orders && choices.is_some() { task.reordered(input) } else { None };
    let options = if choices.is_some() { task.options(input) } else { None };
    let ask = Ask { input, reordered: reordered.as_ref(), options: options.as_deref() };
    let ask = &ask;
    match method {
        Method::Prompt => direct(p, config, choices, SYSTEM, ask, str::to_string),
        Method::Icl => {
            // The demonstrations carry the task's instruction and labels too.
            let demos = render_demos(demos, item_chars + 400);
            direct(p, config, choices, SYSTEM, ask, |input| fill(ICL, &[("items", &demos), ("input", input)]))
        }
        Method::Rag1 | Method::Rag4 => {
            let k = if method == Method::Rag1 { 1 } else { 4 };
            let items = render_user_items(task, &retrieve(p, &user, input, k)?, item_chars);
            direct(p, config, choices, SYSTEM, ask, |input| fill(RAG, &[("items", &items), ("input", input)]))
        }
        Method::Pag4 => {
            persona::current_or_init(&mut *p.model, p.memory, &user, &config.align.semantic)?;
            let u = p.memory.store().require_user(&user)?;
            let profile = p.memory.store().latest_semantic_profile(&u, None)?.map(|p| p.summary).unwrap_or_default();
            let items = render_user_items(task, &retrieve(p, &user, input, 4)?, item_chars);
            direct(p, config, choices, SYSTEM, ask, |input| fill(PAG, &[("profile", &profile), ("items", &items), ("input", input)]))
        }
        Method::React => {
            let agent_config = AgentConfig { require_memory: false, min_tool_calls: 1, ..agent_config.clone() };
            agent(p, config, GENERIC_PERSONA, None, ask, &agent_config)
        }
        Method::Membank => {
            let items = render_items(&retrieve(p, MEMBANK_USER, input, 4)?, item_chars);
            let out = direct(p, config, choices, SYSTEM, ask, |input| fill(MEMBANK, &[("items", &items), ("input", input)]))?;
            // The agent remembers its own answer (not the user's).
            p.memory.import(MEMBANK_USER, &[NewRecord::new(input, out.trim())], p.encoder, 1, &mut |_, _| {})?;
            Ok(out)
        }
        Method::Nearest => crate::nearest::answer(p.memory, p.encoder, &user, input, choices, ask.options, config.align.tools.k),
        Method::PersonaAgent => {
            let persona_text = aligned_persona(p, AlignInputs { config, writer: writer.as_deref_mut(), distractors, alignments }, task, &user, choices)?;
            agent(p, config, &persona_text, Some(&user), ask, &agent_config)
        }
        Method::NoAlignment => {
            let persona_text = initial_persona(p, config, &user)?;
            agent(p, config, &persona_text, Some(&user), ask, &agent_config)
        }
        Method::NoPersona => agent(p, config, GENERIC_PERSONA, Some(&user), ask, &agent_config),
        Method::NoMemory => {
            let persona_text = persona::compose("(nothing is known about this user)");
            let agent_config = AgentConfig { require_memory: false, min_tool_calls: 1, ..agent_config.clone() };
            agent(p, config, &persona_text, None, ask, &agent_config)
        }
        Method::NoAction => {
            let persona_text = aligned_persona(p, AlignInputs { config, writer: writer.as_deref_mut(), distractors, alignments }, task, &user, choices)?;
            let items = render_user_items(task, &retrieve(p, &user, input, config.align.tools.k)?, item_chars);
            direct(p, config, choices, &persona_text, ask, |input| fill(RAG, &[("items", &items), ("input", input)]))
        }
    }
}

/// ICL's fixed demonstrations: the first user (by position in the set)
/// other than `exclude` with enough history, their latest `n` profile
/// items asked as the task asks them (see [`replay::task_replays`]), with
/// their answers. LaMP-1's take their other option from [`distractors`].
pub fn demonstrations(task: Task, examples: &[Example], exclude: usize, n: usize) -> Vec<(String, String)> {
    let Some((at, demo)) = examples.iter().enumerate().find(|(i, e)| *i != exclude && e.question.profile.len() > n) else {
        return Vec::new();
    };
    // Newest first, as the store lists them.
    let records: Vec<Record> = demo
        .question
        .profile
        .iter()
        .rev()
        .take(n + 1)
        .enumerate()
        .map(|(k, item)| {
            let r = profile_record(task, item);
            Record { id: k as i64, query: r.query, response: r.response, metadata: Value::Object(r.metadata), timestamp: r.timestamp, created_at: 0 }
        })
        .collect();
    let others = distractors(task, examples, &[exclude, at]);
    replay::task_replays(task, &records, n, &others, false).into_iter().map(|r| (r.question, r.real)).collect()
}

/// Titles of papers by a user other than those at `exclude` (LaMP-1's
/// replays and demonstrations need a paper the user did not write): the
/// profile of the first such user in the set; empty for other tasks.
pub fn distractors(task: Task, examples: &[Example], exclude: &[usize]) -> Vec<String> {
    if task != Task::Citation {
        return Vec::new();
    }
    examples
        .iter()
        .enumerate()
        .find(|(i, e)| !exclude.contains(i) && !e.question.profile.is_empty())
        .map(|(_, e)| e.question.profile.iter().map(|item| profile_record(task, item).query).filter(|t| !t.is_empty()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert!("best".parse::<Method>().is_err());
        assert_eq!(Method::ALL.iter().filter(|m| m.is_ablation()).count(), 4);
    }

    fn example(id: &str, profile: Vec<Value>) -> Example {
        let profile = profile.into_iter().map(|v| v.as_object().unwrap().clone()).collect();
        Example { question: crate::format::Question { id: id.into(), input: String::new(), profile }, gold: String::new(), user: None }
    }

    #[test]
    fn demonstrations_are_solved_questions_of_another_user() {
        let news = |t: &str, c: &str| serde_json::json!({"title": t, "text": "", "category": c});
        let set = [example("a", vec![news("A1", "sports")]), example("b", vec![news("B1", "crime"), news("B2", "politics"), news("B3", "travel")])];
        let demos = demonstrations(Task::NewsCategorization, &set, 0, 2);
        assert_eq!(demos.len(), 2);
        assert_eq!(demos[1], (crate::build::news::instruction("B3"), "travel".to_string()), "newest last");
        assert!(demonstrations(Task::NewsCategorization, &set, 1, 2).is_empty(), "user a's history is too short");
        let paper = |t: &str| serde_json::json!({"title": t});
        let papers = [example("a", vec![paper("A1"), paper("A2"), paper("A3")]), example("b", vec![paper("B1")]), example("c", vec![paper("C1"), paper("C2")])];
        let demos = demonstrations(Task::Citation, &papers, 2, 2);
        assert_eq!(demos.len(), 2);
        assert!(demos.iter().all(|(q, a)| q.contains("\"B1\"") && (a == "[1]" || a == "[2]")), "{demos:?}");
        assert_eq!(distractors(Task::Citation, &papers, &[0]), ["B1"]);
        assert!(distractors(Task::ProductRating, &papers, &[0]).is_empty());
    }

    #[test]
    fn profile_items_become_records() {
        let item = |v: Value| v.as_object().unwrap().clone();
        let r = profile_record(Task::NewsCategorization, &item(serde_json::json!({"title": "Vote", "text": "Polls open", "category": "politics"})));
        assert_eq!((r.query.as_str(), r.response.as_str()), ("Vote. Polls open", "politics"));
        let r = profile_record(Task::ProductRating, &item(serde_json::json!({"text": "Great", "score": "5", "time": 7})));
        assert_eq!((r.query.as_str(), r.response.as_str(), r.timestamp), ("Great", "5", Some(7)));
        let r = profile_record(Task::MovieTagging, &item(serde_json::json!({"description": "Space", "tag": "sci-fi"})));
        assert_eq!(r.response, "sci-fi");
        assert_eq!(r.metadata["lamp_task"], "movie-tags");
        let r = profile_record(Task::Citation, &item(serde_json::json!({"title": "Parsing with CRFs", "id": "p1"})));
        assert_eq!((r.query.as_str(), r.metadata["lamp_task"].as_str()), ("Parsing with CRFs", Some("citation")));
    }
}
