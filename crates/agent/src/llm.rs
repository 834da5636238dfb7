//! What the agent needs from a language model: a transcript it can extend
//! with free text, with grammar-constrained text, and with text of its own
//! (observations). Implemented for every [`ChatModel`]; tests use a scripted
//! model.

use std::time::Instant;

use persona_engine::{ChatMessage, ChatModel, FinishReason, GenerationParams, GrammarConstraint};
use persona_memory::Summarizer;
use serde::Serialize;

use crate::error::Result;
use crate::grammar::ToolCallGrammar;

/// A conversation prefix the model continues: the rendered chat (system and
/// user turns, the assistant turn opened) plus everything appended since.
/// `tokens` is exactly what the model has seen, so a continuation reuses
/// the engine's KV cache; `text` is the same content for people.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// The text of the transcript.
    pub text: String,
    /// Its token ids (empty for models that do not use tokens).
    pub tokens: Vec<u32>,
}

/// One continuation of a transcript.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Continuation {
    /// The generated text, cut before any stop string.
    pub text: String,
    /// Prompt tokens at the start of the call.
    pub prompt_tokens: usize,
    /// Prompt tokens served from the KV cache.
    pub cached_tokens: usize,
    /// Tokens generated (forced ones included).
    pub completion_tokens: usize,
    /// Wall time of the call, ms.
    pub ms: f64,
    /// Whether the generation stopped because the length limit was hit.
    pub truncated: bool,
}

/// The model operations the agent uses.
pub trait AgentLlm: Summarizer {
    /// Renders a system and a user turn and opens the assistant's turn.
    fn start(&mut self, system: &str, user: &str) -> Result<Transcript>;
    /// Appends text the model did not write (observations, labels). Special
    /// token text in it stays plain text.
    fn append(&mut self, transcript: &mut Transcript, text: &str) -> Result<()>;
    /// Generates free text at the end of the transcript (appended to it).
    fn extend(&mut self, transcript: &mut Transcript, params: &GenerationParams) -> Result<Continuation>;
    /// Generates a tool call that the grammar accepts (appended to it).
    fn extend_constrained(&mut self, transcript: &mut Transcript, grammar: ToolCallGrammar, params: &GenerationParams) -> Result<Continuation>;

    /// Answers independent (system, user) turns. The default runs them one
    /// after another; an engine that batches sequences can run them
    /// together.
    fn complete_batch(&mut self, turns: &[(String, String)], params: &GenerationParams) -> Result<Vec<String>> {
        turns.iter().map(|(system, user)| Ok(self.complete(system, user, params)?)).collect()
    }

    /// Says whose work the following calls are (a user id): an engine that
    /// caches prompt state reuses it only within one scope.
    fn set_scope(&mut self, _scope: &str) {}
}

impl<M: ChatModel> AgentLlm for M {
    fn start(&mut self, system: &str, user: &str) -> Result<Transcript> {
        let text = self.render_chat(&[ChatMessage::system(system), ChatMessage::user(user)])?;
        let tokens = self.encode_prompt(&text)?;
        Ok(Transcript { text, tokens })
    }

    fn append(&mut self, transcript: &mut Transcript, text: &str) -> Result<()> {
        let ids = self.tokenizer().encode(text, false)?;
        transcript.tokens.extend(ids);
        transcript.text.push_str(text);
        Ok(())
    }

    fn extend(&mut self, transcript: &mut Transcript, params: &GenerationParams) -> Result<Continuation> {
        run(self, transcript, params, None)
    }

    fn extend_constrained(&mut self, transcript: &mut Transcript, grammar: ToolCallGrammar, params: &GenerationParams) -> Result<Continuation> {
        let vocab = self.tokenizer().token_bytes();
        let mut constraint = GrammarConstraint::new(grammar, vocab);
        run(self, transcript, params, Some(&mut constraint))
    }

    fn complete_batch(&mut self, turns: &[(String, String)], params: &GenerationParams) -> Result<Vec<String>> {
        let prompts = turns
            .iter()
            .map(|(system, user)| {
                let text = self.render_chat(&[ChatMessage::system(system), ChatMessage::user(user)])?;
                self.encode_prompt(&text)
            })
            .collect::<persona_engine::Result<Vec<_>>>()?;
        Ok(self.generate_batch(prompts, params)?.into_iter().map(|g| g.text).collect())
    }

    fn set_scope(&mut self, scope: &str) {
        self.set_cache_scope(scope);
    }
}

fn run<M: ChatModel>(
    model: &mut M,
    transcript: &mut Transcript,
    params: &GenerationParams,
    constraint: Option<&mut dyn persona_engine::TokenConstraint>,
) -> Result<Continuation> {
    let start = Instant::now();
    let generation = model.generate_tokens(transcript.tokens.clone(), params, constraint, &mut |_| true)?;
    // Everything the model produced stays in the transcript (also what
    // follows a stop string inside the last token), so the next call extends
    // exactly the tokens in the KV cache.
    let full = model.tokenizer().decode(&generation.tokens, false)?;
    transcript.tokens.extend_from_slice(&generation.tokens);
    transcript.text.push_str(&full);
    Ok(Continuation {
        text: generation.text,
        prompt_tokens: generation.prompt_tokens,
        cached_tokens: generation.cached_tokens,
        completion_tokens: generation.completion_tokens,
        ms: start.elapsed().as_secs_f64() * 1000.0,
        truncated: generation.finish_reason == FinishReason::Length,
    })
}
