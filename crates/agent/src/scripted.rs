//! A scripted model and fake tools for unit tests of the loop's control
//! flow (the real-model tests are in `tests/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;

use persona_engine::{Encoder, GenerationParams};
use persona_memory::Summarizer;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::grammar::StepGrammar;
use crate::llm::{AgentLlm, Continuation, Transcript};
use crate::tools::{Tool, ToolSpec};

/// Replies in order to every generating call.
#[derive(Debug, Default)]
pub(crate) struct Scripted {
    pub replies: VecDeque<String>,
    /// For each constrained call: the allowed tools and whether the reply
    /// was a complete sentence of the grammar.
    pub constrained: Vec<(Vec<String>, bool)>,
    /// System prompts of `complete` calls.
    pub completions: Vec<String>,
    /// For each constrained call: its repeat penalty.
    pub penalties: Vec<f32>,
    /// Label scores returned in order by `score_choices`.
    pub scores: VecDeque<Vec<f32>>,
    /// The transcripts whose labels were scored.
    pub scored: Vec<String>,
    /// The transcript of each constrained call, as it stood before the reply.
    pub extended: Vec<String>,
}

impl Scripted {
    pub fn new(replies: &[&str]) -> Self {
        Scripted { replies: replies.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    fn next(&mut self) -> Result<String> {
        // A test whose script is too short is a broken test: say so loudly.
        Ok(self.replies.pop_front().unwrap_or_else(|| panic!("the scripted model ran out of replies")))
    }

    fn cont(&mut self, t: &mut Transcript) -> Result<Continuation> {
        let text = self.next()?;
        t.text.push_str(&text);
        Ok(Continuation { text, completion_tokens: 1, ..Default::default() })
    }
}

impl Summarizer for Scripted {
    fn model_name(&self) -> String {
        "scripted".into()
    }
    fn context_length(&self) -> usize {
        100_000
    }
    fn count_tokens(&self, text: &str) -> persona_memory::Result<usize> {
        Ok(text.split_whitespace().count())
    }
    fn complete(&mut self, system: &str, _user: &str, _params: &GenerationParams) -> persona_memory::Result<String> {
        self.completions.push(system.to_string());
        self.replies.pop_front().ok_or_else(|| persona_memory::MemoryError::Summary("no more replies".into()))
    }
}

impl AgentLlm for Scripted {
    fn start(&mut self, system: &str, user: &str) -> Result<Transcript> {
        Ok(Transcript { text: format!("[system]{system}[user]{user}[assistant]"), tokens: Vec::new() })
    }
    fn append(&mut self, t: &mut Transcript, text: &str) -> Result<()> {
        t.text.push_str(text);
        Ok(())
    }
    fn ask(&mut self, t: &mut Transcript, user: &str) -> Result<()> {
        t.text.push_str(&format!("[user]{user}[assistant]"));
        Ok(())
    }
    fn extend(&mut self, t: &mut Transcript, _params: &GenerationParams) -> Result<Continuation> {
        self.cont(t)
    }
    fn extend_constrained(&mut self, t: &mut Transcript, grammar: StepGrammar, params: &GenerationParams) -> Result<Continuation> {
        self.extended.push(t.text.clone());
        let c = self.cont(t)?;
        self.penalties.push(params.sampling.repeat_penalty);
        self.constrained.push((grammar.allowed(), grammar.accepts(&c.text)));
        Ok(c)
    }
    fn score_choices(&mut self, t: &Transcript, _lead: &str, _choices: &crate::Choices) -> Result<Vec<f32>> {
        self.scored.push(t.text.clone());
        Ok(self.scores.pop_front().unwrap_or_else(|| panic!("the scripted model ran out of scores")))
    }
    fn complete_choice(&mut self, system: &str, _user: &str, choices: &crate::Choices, _params: &GenerationParams) -> Result<String> {
        self.completions.push(system.to_string());
        let reply = self.next()?;
        self.constrained.push((choices.labels().to_vec(), crate::ChoiceGrammar::new(choices).accepts(&reply)));
        Ok(reply)
    }
}

/// A tool that returns a fixed text and counts its calls.
pub(crate) struct FakeTool {
    pub spec: ToolSpec,
    pub memory: bool,
    pub reply: String,
}

impl FakeTool {
    pub fn memory() -> Self {
        FakeTool {
            spec: ToolSpec::with_string("memory_search", "Searches the user's memory.", "query", "what", 100),
            memory: true,
            reply: "1. liked: jazz".into(),
        }
    }
    pub fn encyclopedia() -> Self {
        FakeTool {
            spec: ToolSpec::with_string("encyclopedia_search", "Looks things up.", "query", "what", 100),
            memory: false,
            reply: "1. Jazz: a music genre".into(),
        }
    }
}

impl Tool for FakeTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    fn is_personal_memory(&self) -> bool {
        self.memory
    }
    fn call(&mut self, _arguments: &Map<String, Value>) -> Result<String> {
        Ok(self.reply.clone())
    }
    /// The memory's closeness: 0.9 for an option its reply mentions, 0.2
    /// for another; a label's votes 1.0 where the reply mentions it;
    /// nothing to compare when the question hides records.
    fn closeness(&mut self, evidence: crate::tools::Evidence<'_>, context: &crate::tools::CallContext<'_>) -> Result<Option<Vec<f32>>> {
        if !self.memory || !context.hidden_records.is_empty() {
            return Ok(None);
        }
        Ok(Some(match evidence {
            crate::tools::Evidence::Options(texts) => texts.iter().map(|t| if self.reply.contains(t.as_str()) { 0.9 } else { 0.2 }).collect(),
            crate::tools::Evidence::Labels { labels, .. } => labels.iter().map(|l| if self.reply.contains(l.as_str()) { 1.0 } else { 0.0 }).collect(),
        }))
    }
}

/// An encoder that maps texts to fixed vectors by their words (for store
/// tests that need vectors, not meaning).
pub(crate) struct WordEncoder;

impl Encoder for WordEncoder {
    fn name(&self) -> &str {
        "word-hash"
    }
    fn dimension(&self) -> usize {
        16
    }
    fn embed(&self, texts: &[&str]) -> persona_engine::Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = [0.0f32; 16];
                for w in t.split_whitespace() {
                    let h = w.bytes().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
                    v[(h % 16) as usize] += 1.0;
                }
                v[0] += 0.01;
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / n).collect()
            })
            .collect())
    }
}
