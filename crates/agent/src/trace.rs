//! What an agent run leaves behind: every step with its thought, call,
//! observation, tokens and time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step of the action loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// 1-based step number.
    pub step: usize,
    /// The model's reasoning for this step.
    pub thought: String,
    /// The tool called; `None` for the final answer.
    pub tool: Option<String>,
    /// The call's arguments (for the final answer: `{"answer": ...}`).
    pub arguments: Value,
    /// The tool's result.
    pub observation: Option<String>,
    /// What was wrong with the call, when it could not be run.
    pub error: Option<String>,
    /// The tools the grammar allowed at this step.
    pub allowed: Vec<String>,
    /// The earlier step this call repeats (it was not run again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_of: Option<usize>,
    /// Tokens the model generated in this step (forced ones included).
    pub completion_tokens: usize,
    /// Prompt tokens served from the KV cache in this step.
    pub cached_tokens: usize,
    /// Tokens the model had to read in this step (not from the cache).
    pub prefilled_tokens: usize,
    /// Wall time of the step (model and tool), ms.
    pub ms: f64,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model called `final_answer`.
    Answer,
    /// The step limit was reached; the answer was asked for directly.
    StepLimit,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The question.
    pub question: String,
    /// The answer.
    pub answer: String,
    /// How the run ended.
    pub finish: Finish,
    /// The steps, in order.
    pub steps: Vec<TraceStep>,
    /// Total tokens generated.
    pub completion_tokens: usize,
    /// Total prompt tokens read from the KV cache.
    pub cached_tokens: usize,
    /// Total prompt tokens prefilled.
    pub prefilled_tokens: usize,
    /// Model calls made.
    pub model_calls: usize,
    /// Wall time, ms.
    pub ms: f64,
}

impl Trace {
    /// The tool calls made (final answer excluded).
    pub fn tool_calls(&self) -> impl Iterator<Item = &TraceStep> {
        self.steps.iter().filter(|s| s.tool.is_some() && s.error.is_none())
    }

    /// A readable rendering for `--verbose`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            out.push_str(&format!("[step {}] Thought: {}\n", s.step, s.thought.trim()));
            match &s.tool {
                Some(tool) => out.push_str(&format!("  Action: {tool} {}\n", s.arguments)),
                None => {
                    if let Some(Value::Array(c)) = s.arguments.get("closeness") {
                        // Each label's support from the user's records, in the labels' order.
                        let c: Vec<String> = c.iter().map(|v| format!("{:.2}", v.as_f64().unwrap_or(f64::NAN))).collect();
                        out.push_str(&format!("  Closeness (per label): {}\n", c.join(", ")));
                    }
                    out.push_str(&format!("  Final answer: {}\n", s.arguments.get("answer").and_then(Value::as_str).unwrap_or_default()));
                }
            }
            if let Some(e) = &s.error {
                out.push_str(&format!("  Error: {e}\n"));
            }
            if let Some(o) = &s.observation {
                for (i, line) in o.lines().enumerate() {
                    out.push_str(if i == 0 { "  Observation: " } else { "               " });
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out.push_str(&format!(
                "  ({} tokens generated, {} prefilled, {} from cache, {:.1} s)\n",
                s.completion_tokens,
                s.prefilled_tokens,
                s.cached_tokens,
                s.ms / 1000.0
            ));
        }
        out.push_str(&format!(
            "{} steps, {} model calls, {} tokens generated, {} prefilled, {} from cache, {:.1} s\n",
            self.steps.len(),
            self.model_calls,
            self.completion_tokens,
            self.prefilled_tokens,
            self.cached_tokens,
            self.ms / 1000.0
        ));
        out
    }
}
