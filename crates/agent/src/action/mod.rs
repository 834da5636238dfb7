//! The personalized action loop (ReAct-style): the persona conditions the
//! model; each step it writes a thought and then a tool call whose form is
//! fixed by a grammar (constrained decoding), so even a small model cannot
//! write a broken call. The loop, not only the prompt, enforces the rules:
//! the final answer is not allowed until the user's memory has been
//! searched and the minimum number of tool calls made, and the step limit
//! leaves room for them.

use std::time::Instant;

use persona_engine::{ContextPolicy, GenerationParams, SamplingParams};
use serde_json::Value;

use crate::choice::{ChoiceGrammar, Choices};
use crate::error::{AgentError, Result};
use crate::grammar::{ParamKind, StepGrammar};
use crate::llm::{AgentLlm, Continuation, Transcript};
use crate::orders::Reordered;
use crate::prompts::{fill, AGENT_FORMAT, ANSWER_TURN, ANSWER_TURN_RECORDS, ANSWER_TURN_START, FALLBACK_ANSWER};
use crate::tools::{parse_call, CallContext, ToolRegistry, ToolSpec};
use crate::trace::{Finish, Trace, TraceStep};

/// What the loop writes before a forced final call at the step limit.
const FALLBACK_ACTION: &str = "\nThought: I must answer now.\nAction: ";

/// The pseudo-tool that ends a run.
pub const FINAL_ANSWER: &str = "final_answer";

/// Settings of the action loop.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Most steps (tool calls plus the final answer).
    pub max_steps: usize,
    /// Tool calls required before the final answer.
    pub min_tool_calls: usize,
    /// Require at least one search of the user's memory.
    pub require_memory: bool,
    /// Most tokens of one thought.
    pub thought_tokens: usize,
    /// Longest final answer, in bytes.
    pub answer_bytes: u32,
    /// Sampling temperature (the paper uses 0.1).
    pub temperature: f64,
    /// Penalty on recently generated tokens, in thoughts.
    pub repeat_penalty: f32,
    /// The same in tool calls (queries and the final answer). It keeps a
    /// small model from repeating its last query word for word; it also
    /// pushes down the label words the observations just showed.
    pub call_repeat_penalty: f32,
    /// The same while a label is decoded (a step that can only answer,
    /// with [`AgentConfig::choices`]). Off (1.0) by default, as the
    /// one-call methods decode theirs: over the last 64 tokens a penalty
    /// pushes down exactly the labels the user's records just showed.
    pub label_repeat_penalty: f32,
    /// Seed for sampling.
    pub seed: u64,
    /// The labels a final answer must be one of (a task with a label list);
    /// `None` for open questions (any text up to `answer_bytes`).
    pub choices: Option<Choices>,
    /// Once the required tool calls are made (the memory searched), answer
    /// at the next step, without another thought: the answer is decoded
    /// right after the last observation. Off, the agent may go on calling
    /// tools until the step limit.
    pub answer_when_done: bool,
    /// With [`AgentConfig::choices`]: a step that can only answer closes
    /// the agent's turn and asks the question again in a new user turn
    /// (after every tool result); the assistant's reply opens with
    /// `Final answer:` and the bare label is decoded right after it, close
    /// to the shape in which the one-call methods answer, instead of a
    /// `final_answer` call written after the observations.
    pub answer_turn: bool,
    /// In the answer turn, show again the records the run's memory
    /// searches returned (each once) right before the question, as the RAG
    /// prompt shows them.
    pub answer_turn_records: bool,
    /// In the answer turn, name the answer the user's own records support
    /// most (the memory tool's [`crate::tools::Tool::closeness`]): for a
    /// question with [`Question::options`] the option closest to the
    /// user's records, otherwise the label the records nearest to the
    /// question vote for. A small model cannot compare two titles' topics
    /// or weigh a dozen records; the encoder can.
    pub answer_turn_closeness: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_steps: 4,
            min_tool_calls: 2,
            require_memory: true,
            thought_tokens: 48,
            answer_bytes: 300,
            temperature: 0.1,
            repeat_penalty: 1.1,
            call_repeat_penalty: 1.1,
            label_repeat_penalty: 1.0,
            seed: 42,
            choices: None,
            answer_when_done: false,
            answer_turn: false,
            answer_turn_records: false,
            answer_turn_closeness: false,
        }
    }
}

impl AgentConfig {
    /// Checks that the rules can be met within the step limit.
    pub fn validate(&self) -> Result<()> {
        let needed = self.min_tool_calls.max(usize::from(self.require_memory)) + 1;
        if self.max_steps < needed {
            return Err(AgentError::Config {
                name: "max_steps",
                reason: format!("{} steps cannot fit {} tool calls and an answer", self.max_steps, needed - 1),
            });
        }
        if self.answer_bytes == 0 {
            return Err(AgentError::Config { name: "answer_bytes", reason: "must be at least 1".into() });
        }
        Ok(())
    }

    fn params(&self, max_tokens: usize, stop: &[&str]) -> GenerationParams {
        GenerationParams {
            max_tokens,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            sampling: SamplingParams { temperature: self.temperature, seed: self.seed, repeat_penalty: self.repeat_penalty, ..SamplingParams::default() },
            context_policy: ContextPolicy::Error,
            ignore_eos: false,
        }
    }

    /// Whether a step allowed only `allowed` decodes a label and nothing
    /// else the model chooses.
    fn is_label_step(&self, allowed: &[String]) -> bool {
        self.choices.is_some() && allowed == [FINAL_ANSWER]
    }

    /// Whether a step allowed only `allowed` is the answer turn.
    fn is_answer_turn(&self, allowed: &[String]) -> bool {
        self.answer_turn && self.choices.is_some() && allowed == [FINAL_ANSWER]
    }

    /// The final-answer pseudo-tool: its answer is one of the labels when
    /// the run has [`AgentConfig::choices`], else a string.
    pub fn final_answer_spec(&self) -> ToolSpec {
        let mut spec = ToolSpec::with_string(
            FINAL_ANSWER,
            "Gives the final answer and ends.",
            "answer",
            "the answer alone, in the form the question asks for",
            self.answer_bytes,
        );
        if let Some(choices) = &self.choices {
            spec.params[0].kind = ParamKind::Choice { choices: choices.clone() };
        }
        spec
    }
}

/// Which tools a step may call, given what has been done so far. A run
/// that repeated a call word for word (`stuck`) has nothing new to look up:
/// it must answer next, or search the memory first if the rule still asks
/// for that (a small model that repeats itself once repeats itself until
/// the step limit, with sampling seeded).
pub(crate) fn allowed_tools(tools: &ToolRegistry<'_>, config: &AgentConfig, step: usize, calls: usize, memory_used: bool, stuck: bool) -> Vec<String> {
    let memory_tools = tools.memory_tools();
    let memory_needed = config.require_memory && !memory_used && !memory_tools.is_empty();
    if stuck {
        return if memory_needed { memory_tools.iter().map(|s| s.to_string()).collect() } else { vec![FINAL_ANSWER.to_string()] };
    }
    let calls_needed = config.min_tool_calls.saturating_sub(calls).max(usize::from(memory_needed));
    if config.answer_when_done && calls_needed == 0 {
        return vec![FINAL_ANSWER.to_string()];
    }
    let steps_left = config.max_steps + 1 - step; // including this one
    let mut allowed: Vec<String> = Vec::new();
    if steps_left > 1 && !tools.specs().is_empty() {
        // The last tool step left must search the memory if nothing has yet.
        if memory_needed && steps_left - 1 <= 1 {
            allowed.extend(memory_tools.iter().map(|s| s.to_string()));
        } else {
            allowed.extend(tools.specs().iter().map(|s| s.name.clone()));
        }
    }
    if calls_needed == 0 || steps_left <= 1 || allowed.is_empty() {
        allowed.push(FINAL_ANSWER.to_string());
    }
    allowed
}

fn account(step: &mut TraceStep, c: &Continuation) {
    step.completion_tokens += c.completion_tokens;
    step.cached_tokens += c.cached_tokens;
    step.prefilled_tokens += c.prompt_tokens.saturating_sub(c.cached_tokens);
}

/// One question of a batch of agent runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Question<'q> {
    /// The question.
    pub text: &'q str,
    /// Memory records its tool calls must not return (see
    /// [`CallContext::hidden_records`]).
    pub hidden_records: &'q [i64],
    /// The question with its options in another order: with the answer
    /// turn and labels, the answer is then chosen by the labels' scores
    /// over both orders ([`crate::orders`]) instead of being decoded.
    pub reordered: Option<&'q Reordered>,
    /// What each label stands for, in the order of the labels (LaMP-1: the
    /// two references' titles), for [`AgentConfig::answer_turn_closeness`]
    /// (without them the labels themselves are voted for).
    pub options: Option<&'q [String]>,
}

/// Answers `question` as the user of `persona` would, using `tools`.
pub fn run_agent(model: &mut dyn AgentLlm, persona: &str, tools: &mut ToolRegistry<'_>, question: &str, config: &AgentConfig) -> Result<Trace> {
    let questions = [Question { text: question, hidden_records: &[], reordered: None, options: None }];
    run_agents(model, persona, tools, &questions, config)?.pop().ok_or_else(|| AgentError::Config { name: "questions", reason: "the run gave no trace".into() })
}

/// The state of one run of a batch.
struct Run<'q> {
    question: Question<'q>,
    transcript: Transcript,
    /// Where the loop's own text begins in the transcript (after the
    /// system and user turns), in bytes of text and in tokens.
    opened: (usize, usize),
    steps: Vec<TraceStep>,
    calls: usize,
    memory_used: bool,
    /// The last call repeated an earlier one word for word.
    stuck: bool,
    /// The lines the memory searches returned, each once, in order.
    memory_lines: Vec<String>,
    answer: Option<String>,
    finish: Finish,
    model_calls: usize,
    ms: f64,
}

/// Answers several questions with the same persona and tools in lock step:
/// at each step the thoughts of all unfinished runs are generated in one
/// batch, then their tool calls (each under its own grammar) in another,
/// and the calls run in question order. The model reads its weights once
/// per token for the whole batch, which is how alignment replays its n
/// interactions. Each run follows the same rules as [`run_agent`] and gets
/// the trace it would get alone, up to the last bits of the engine's
/// batched arithmetic. A step's `ms` is the wall time of that step for
/// the whole batch.
pub fn run_agents(
    model: &mut dyn AgentLlm,
    persona: &str,
    tools: &mut ToolRegistry<'_>,
    questions: &[Question<'_>],
    config: &AgentConfig,
) -> Result<Vec<Trace>> {
    config.validate()?;
    let start = Instant::now();
    let final_spec = config.final_answer_spec();
    let system = format!("{}\n\n{}", persona.trim(), fill(AGENT_FORMAT, &[("tools", &tools.describe(&[&final_spec]))]).trim());
    let mut runs = Vec::with_capacity(questions.len());
    for question in questions {
        let transcript = model.start(&system, question.text)?;
        runs.push(Run {
            question: *question,
            opened: (transcript.text.len(), transcript.tokens.len()),
            transcript,
            steps: Vec::new(),
            calls: 0,
            memory_used: false,
            stuck: false,
            memory_lines: Vec::new(),
            answer: None,
            finish: Finish::Answer,
            model_calls: 0,
            ms: 0.0,
        });
    }

    for step_no in 1..=config.max_steps {
        let live: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].answer.is_none()).collect();
        if live.is_empty() {
            break;
        }
        let step_start = Instant::now();
        let steps: Vec<TraceStep> =
            live.iter().map(|&i| new_step(step_no, allowed_tools(tools, config, step_no, runs[i].calls, runs[i].memory_used, runs[i].stuck))).collect();
        // An answer turn whose question comes in two orders is scored, not decoded.
        let (scored, rest): (Vec<_>, Vec<_>) =
            live.into_iter().zip(steps).partition(|(i, step)| config.is_answer_turn(&step.allowed) && runs[*i].question.reordered.is_some());
        for (i, mut step) in scored {
            answer_both_orders(model, tools, config, &system, &mut runs[i], &mut step)?;
            step.ms = step_start.elapsed().as_secs_f64() * 1000.0;
            runs[i].steps.push(step);
            runs[i].ms = start.elapsed().as_secs_f64() * 1000.0;
        }
        let (live, mut steps): (Vec<usize>, Vec<TraceStep>) = rest.into_iter().unzip();
        if live.is_empty() {
            continue;
        }
        // A step that can only answer goes straight to the action when the
        // run answers once its calls are done.
        let thinking: Vec<usize> = live
            .iter()
            .zip(&steps)
            .filter(|(_, step)| !((config.answer_when_done && step.allowed == [FINAL_ANSWER]) || config.is_answer_turn(&step.allowed)))
            .map(|(&i, _)| i)
            .collect();
        for &i in &thinking {
            model.append(&mut runs[i].transcript, if step_no == 1 { "Thought:" } else { "\nThought:" })?;
        }
        let mut thoughts =
            extend_runs(model, &mut runs, &thinking, vec![None; thinking.len()], &config.params(config.thought_tokens, &["\n", "Action:"]))?.into_iter();
        let mut grammars = Vec::with_capacity(live.len());
        for (&i, step) in live.iter().zip(&mut steps) {
            if thinking.contains(&i) {
                let Some(thought) = thoughts.next() else { break };
                account(step, &thought);
                step.thought = thought.text.trim().to_string();
            }
            if let (true, Some(choices)) = (config.is_answer_turn(&step.allowed), &config.choices) {
                let support = closeness::of_question(tools, config, &runs[i].question)?;
                let note = support.as_ref().map(|s| closeness::note(&choices.labels().iter().map(String::as_str).collect::<Vec<_>>(), s));
                let text = answer_turn_text(config, runs[i].question.text, &runs[i].memory_lines, note.as_deref());
                if let Some(support) = support {
                    step.arguments = serde_json::json!({ "closeness": support.scores });
                }
                let transcript = &mut runs[i].transcript;
                model.ask(transcript, &text)?;
                model.append(transcript, ANSWER_TURN_START)?;
                grammars.push(Some(StepGrammar::Label(ChoiceGrammar::after_space(choices))));
                continue;
            }
            let transcript = &mut runs[i].transcript;
            let label = if transcript.text.ends_with('\n') { "Action: " } else { "\nAction: " };
            model.append(transcript, label)?;
            let names: Vec<&str> = step.allowed.iter().map(String::as_str).collect();
            grammars.push(Some(tools.grammar(&names, &[&final_spec])?.into()));
        }
        // Enough room for the longest string argument at one byte a token.
        let call_params = GenerationParams {
            sampling: SamplingParams { repeat_penalty: config.call_repeat_penalty, ..config.params(0, &[]).sampling },
            ..config.params(config.answer_bytes as usize + 96, &[])
        };
        let label_params =
            GenerationParams { sampling: SamplingParams { repeat_penalty: config.label_repeat_penalty, ..call_params.sampling }, ..call_params.clone() };
        let labelled: Vec<bool> = steps.iter().map(|s| config.is_label_step(&s.allowed)).collect();
        let actions = extend_groups(model, &mut runs, &live, grammars, &labelled, [&call_params, &label_params])?;
        for ((&i, mut step), action) in live.iter().zip(steps).zip(&actions) {
            let run = &mut runs[i];
            run.model_calls += 1 + usize::from(thinking.contains(&i));
            account(&mut step, action);
            if config.is_answer_turn(&step.allowed) {
                answer_label(config, run, &mut step, &action.text);
                step.ms = step_start.elapsed().as_secs_f64() * 1000.0;
                run.steps.push(step);
                run.ms = start.elapsed().as_secs_f64() * 1000.0;
                continue;
            }
            let observation = resolve(tools, &final_spec, run, &mut step, &action.text)?;
            if run.answer.is_none() {
                model.append(&mut run.transcript, &format!("\nObservation: {}", observation.trim()))?;
                step.observation = Some(observation);
            }
            step.ms = step_start.elapsed().as_secs_f64() * 1000.0;
            run.steps.push(step);
            if run.answer.is_some() {
                run.ms = start.elapsed().as_secs_f64() * 1000.0;
            }
        }
    }

    // Runs that reached the step limit are asked for the answer directly:
    // as a `final_answer` call when there are labels, else as free text.
    // (With the answer turn the last step is the answer turn, which always
    // answers, so no run gets here.)
    let unanswered: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].answer.is_none()).collect();
    if !unanswered.is_empty() {
        let grammar: Option<StepGrammar> = match &config.choices {
            Some(_) => Some(tools.grammar(&[FINAL_ANSWER], &[&final_spec])?.into()),
            None => None,
        };
        for &i in &unanswered {
            model.append(&mut runs[i].transcript, if grammar.is_some() { FALLBACK_ACTION } else { FALLBACK_ANSWER })?;
        }
        let grammars = vec![grammar; unanswered.len()];
        let mut params = config.params(config.answer_bytes as usize + 96, &["\n"]);
        if config.choices.is_some() {
            params.sampling.repeat_penalty = config.label_repeat_penalty;
        }
        let answers = extend_runs(model, &mut runs, &unanswered, grammars, &params)?;
        for (&i, c) in unanswered.iter().zip(answers) {
            let run = &mut runs[i];
            run.model_calls += 1;
            let answer = match &config.choices {
                Some(_) => {
                    parse_call(&c.text).ok().and_then(|call| call.arguments.get("answer").and_then(Value::as_str).map(str::to_string)).unwrap_or_default()
                }
                None => c.text.trim().to_string(),
            };
            run.answer = Some(answer);
            run.finish = Finish::StepLimit;
            run.ms = start.elapsed().as_secs_f64() * 1000.0;
        }
    }
    Ok(runs.into_iter().map(into_trace).collect())
}

fn new_step(step: usize, allowed: Vec<String>) -> TraceStep {
    TraceStep {
        step,
        thought: String::new(),
        tool: None,
        arguments: Value::Null,
        observation: None,
        error: None,
        allowed,
        repeat_of: None,
        completion_tokens: 0,
        cached_tokens: 0,
        prefilled_tokens: 0,
        ms: 0.0,
    }
}

/// Continues the transcripts of the runs `which` (ascending) together; a
/// single run keeps the engine's one-sequence path (its working KV cache).
fn extend_runs(
    model: &mut dyn AgentLlm,
    runs: &mut [Run<'_>],
    which: &[usize],
    mut grammars: Vec<Option<StepGrammar>>,
    params: &GenerationParams,
) -> Result<Vec<Continuation>> {
    if let ([i], [_]) = (which, grammars.as_slice()) {
        let transcript = &mut runs[*i].transcript;
        return Ok(vec![match grammars.pop().flatten() {
            Some(g) => model.extend_constrained(transcript, g, params)?,
            None => model.extend(transcript, params)?,
        }]);
    }
    let mut transcripts: Vec<&mut Transcript> = runs.iter_mut().enumerate().filter(|(i, _)| which.contains(i)).map(|(_, r)| &mut r.transcript).collect();
    model.extend_batch(&mut transcripts, grammars, params)
}

/// Continues the runs `which` in two groups, those with `second[j]` set
/// under `params[1]` and the others under `params[0]`; the continuations
/// come back in the order of `which`.
fn extend_groups(
    model: &mut dyn AgentLlm,
    runs: &mut [Run<'_>],
    which: &[usize],
    grammars: Vec<Option<StepGrammar>>,
    second: &[bool],
    params: [&GenerationParams; 2],
) -> Result<Vec<Continuation>> {
    let mut out: Vec<Option<Continuation>> = which.iter().map(|_| None).collect();
    let mut grammars: Vec<Option<Option<StepGrammar>>> = grammars.into_iter().map(Some).collect();
    for (group, params) in params.into_iter().enumerate() {
        let members: Vec<usize> = (0..which.len()).filter(|&j| usize::from(second[j]) == group).collect();
        if members.is_empty() {
            continue;
        }
        let ids: Vec<usize> = members.iter().map(|&j| which[j]).collect();
        let gs: Vec<Option<StepGrammar>> = members.iter().map(|&j| grammars[j].take().flatten()).collect();
        for (j, c) in members.into_iter().zip(extend_runs(model, runs, &ids, gs, params)?) {
            out[j] = Some(c);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// Keeps the lines of a memory observation not seen before, without
/// their list numbers.
fn remember_lines(lines: &mut Vec<String>, observation: &str) {
    for line in observation.lines() {
        let line = line.trim();
        let text = line.split_once(". ").filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).map_or(line, |(_, rest)| rest).trim();
        if !text.is_empty() && !lines.iter().any(|l| l == text) {
            lines.push(text.to_string());
        }
    }
}

/// The user turn of the answer turn: the question, after the records the
/// memory searches found when [`AgentConfig::answer_turn_records`] is set.
fn answer_turn_text(config: &AgentConfig, question: &str, memory_lines: &[String], closeness: Option<&str>) -> String {
    let with_note;
    let question = match closeness {
        Some(note) => {
            with_note = format!("{}\n{note}", question.trim_end());
            with_note.as_str()
        }
        None => question,
    };
    if !config.answer_turn_records || memory_lines.is_empty() {
        return fill(ANSWER_TURN, &[("question", question)]);
    }
    let records: Vec<String> = memory_lines.iter().enumerate().map(|(i, l)| format!("{}. {l}", i + 1)).collect();
    fill(ANSWER_TURN_RECORDS, &[("records", &records.join("\n")), ("question", question)])
}

/// The answer turn of a question that comes in two orders: the turn is
/// asked twice, each label is scored in both, and the best label over
/// both orders is the answer (see [`crate::orders`]). The second
/// transcript has the reordered question in its first user turn too,
/// followed by the same calls and observations: with the original order
/// still in the context a small model keeps favouring the option it saw
/// first. The run's transcript goes on with the question as asked and
/// the chosen label.
fn answer_both_orders(
    model: &mut dyn AgentLlm,
    tools: &mut ToolRegistry<'_>,
    config: &AgentConfig,
    system: &str,
    run: &mut Run<'_>,
    step: &mut TraceStep,
) -> Result<()> {
    let (Some(choices), Some(re)) = (&config.choices, run.question.reordered) else {
        return Err(AgentError::Config { name: "reordered", reason: "an answer in both orders needs the task's labels".into() });
    };
    let support = closeness::of_question(tools, config, &run.question)?;
    let (note, other_note) = match &support {
        Some(support) => {
            let (asked, swapped) = closeness::names_in_both_orders(choices, re)?;
            (Some(closeness::note(&asked, support)), Some(closeness::note(&swapped, support)))
        }
        None => (None, None),
    };
    let mut other = model.start(system, &re.text)?;
    let (text_at, tokens_at) = run.opened;
    other.text.push_str(run.transcript.text.get(text_at..).unwrap_or_default());
    other.tokens.extend_from_slice(run.transcript.tokens.get(tokens_at..).unwrap_or_default());
    model.ask(&mut run.transcript, &answer_turn_text(config, run.question.text, &run.memory_lines, note.as_deref()))?;
    model.append(&mut run.transcript, ANSWER_TURN_START)?;
    model.ask(&mut other, &answer_turn_text(config, &re.text, &run.memory_lines, other_note.as_deref()))?;
    model.append(&mut other, ANSWER_TURN_START)?;
    let asked = model.score_choices(&run.transcript, " ", choices)?;
    let reordered = model.score_choices(&other, " ", choices)?;
    let (label, scores) = crate::orders::choose(choices, re, &asked, &reordered)?;
    model.append(&mut run.transcript, &format!(" {label}"))?;
    run.model_calls += 2;
    step.arguments = serde_json::json!({ "answer": label, "scores": scores });
    if let Some(support) = support {
        step.arguments["closeness"] = serde_json::json!(support.scores);
    }
    run.answer = Some(label);
    Ok(())
}

/// Takes the label the answer turn wrote as the run's answer (the grammar
/// admits nothing else; a length cut leaves an error and no label).
/// The label goes into the step's arguments beside what the turn put
/// there (the closeness, if it was shown).
fn answer_label(config: &AgentConfig, run: &mut Run<'_>, step: &mut TraceStep, text: &str) {
    let label = config.choices.as_ref().and_then(|c| c.find(text)).map(str::to_string);
    if label.is_none() {
        step.error = Some(format!("the answer {:?} is not one of the labels", text.trim()));
    }
    let label = label.unwrap_or_default();
    if !step.arguments.is_object() {
        step.arguments = serde_json::json!({});
    }
    step.arguments["answer"] = serde_json::json!(label);
    run.answer = Some(label);
}

/// Checks and carries out the call a step wrote; returns the observation
/// (empty when the run has its answer).
fn resolve(tools: &mut ToolRegistry<'_>, final_spec: &ToolSpec, run: &mut Run<'_>, step: &mut TraceStep, action: &str) -> Result<String> {
    let call = match parse_call(action) {
        Ok(call) => call,
        Err(e) => {
            step.error = Some(e.to_string());
            return Ok(format!("That was not a valid call ({e}). Write one JSON object as described."));
        }
    };
    step.arguments = Value::Object(call.arguments.clone());
    if !step.allowed.contains(&call.tool) {
        step.tool = (call.tool != FINAL_ANSWER).then(|| call.tool.clone());
        let why = if call.tool == FINAL_ANSWER {
            "you must first search the user's memory and make the required tool calls".to_string()
        } else {
            format!("allowed now: {}", step.allowed.join(", "))
        };
        step.error = Some(format!("`{}` is not allowed at this step: {why}", call.tool));
        return Ok(format!("Not allowed now: {why}."));
    }
    if call.tool == FINAL_ANSWER {
        return Ok(match final_spec.validate(&call.arguments) {
            Ok(()) => {
                run.answer = Some(call.arguments.get("answer").and_then(Value::as_str).map(|s| s.trim().to_string()).unwrap_or_default());
                String::new()
            }
            Err(e) => {
                step.error = Some(e.to_string());
                format!("{e}")
            }
        });
    }
    step.tool = Some(call.tool.clone());
    if let Some(earlier) = run.steps.iter().find(|s| s.error.is_none() && s.tool.as_deref() == Some(call.tool.as_str()) && s.arguments == step.arguments) {
        // A repeated call teaches nothing new and does not count toward
        // the required calls.
        step.repeat_of = Some(earlier.step);
        run.stuck = true;
        return Ok(format!("This is the same call as in step {}; its result is above. Use it now.", earlier.step));
    }
    let context = CallContext { hidden_records: run.question.hidden_records };
    match tools.call_in(&call, &context) {
        Ok(obs) => {
            run.calls += 1;
            if tools.memory_tools().contains(&call.tool.as_str()) {
                run.memory_used = true;
                remember_lines(&mut run.memory_lines, &obs);
            }
            Ok(obs)
        }
        Err(AgentError::ToolCall(e)) => {
            step.error = Some(e.clone());
            Ok(format!("The call failed: {e}"))
        }
        Err(e) => Err(e),
    }
}

fn into_trace(run: Run<'_>) -> Trace {
    let sum = |f: fn(&TraceStep) -> usize| run.steps.iter().map(f).sum();
    Trace {
        question: run.question.text.to_string(),
        answer: run.answer.clone().unwrap_or_default(),
        finish: run.finish,
        completion_tokens: sum(|s| s.completion_tokens),
        cached_tokens: sum(|s| s.cached_tokens),
        prefilled_tokens: sum(|s| s.prefilled_tokens),
        steps: run.steps,
        model_calls: run.model_calls,
        ms: run.ms,
    }
}

mod closeness;
#[cfg(test)]
mod tests;
