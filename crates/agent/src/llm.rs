//! What the agent needs from a language model: a transcript it can extend
//! with free text, with grammar-constrained text, and with text of its own
//! (observations). Implemented for every [`ChatModel`]; tests use a scripted
//! model.

use std::time::Instant;

use persona_engine::{ChatMessage, ChatModel, ContextPolicy, FinishReason, Generation, GenerationParams, GgufTokenizer, GrammarConstraint, TokenConstraint};
use persona_memory::Summarizer;
use serde::Serialize;

use crate::choice::{ChoiceGrammar, Choices};
use crate::error::{AgentError, Result};
use crate::grammar::StepGrammar;

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
    /// Ends the assistant's turn, adds a user turn saying `user` and opens
    /// the assistant's next turn, in the same transcript (the KV cache
    /// keeps serving everything before). Special token text in `user`
    /// stays plain text.
    fn ask(&mut self, transcript: &mut Transcript, user: &str) -> Result<()>;
    /// Generates free text at the end of the transcript (appended to it).
    fn extend(&mut self, transcript: &mut Transcript, params: &GenerationParams) -> Result<Continuation>;
    /// Generates a tool call that the grammar accepts (appended to it).
    fn extend_constrained(&mut self, transcript: &mut Transcript, grammar: StepGrammar, params: &GenerationParams) -> Result<Continuation>;

    /// Continues several transcripts together, each with free text
    /// (`grammars[i]` is `None`) or with a call its grammar accepts, as
    /// [`AgentLlm::extend`] and [`AgentLlm::extend_constrained`] would one
    /// after another (which is what the default does); an engine that
    /// batches sequences decodes them in one batch.
    fn extend_batch(
        &mut self,
        transcripts: &mut [&mut Transcript],
        grammars: Vec<Option<StepGrammar>>,
        params: &GenerationParams,
    ) -> Result<Vec<Continuation>> {
        check_batch(transcripts.len(), grammars.len())?;
        transcripts
            .iter_mut()
            .zip(grammars)
            .map(|(t, g)| match g {
                Some(g) => self.extend_constrained(t, g, params),
                None => self.extend(t, params),
            })
            .collect()
    }

    /// Answers independent (system, user) turns. The default runs them one
    /// after another; an engine that batches sequences can run them
    /// together.
    fn complete_batch(&mut self, turns: &[(String, String)], params: &GenerationParams) -> Result<Vec<String>> {
        turns.iter().map(|(system, user)| Ok(self.complete(system, user, params)?)).collect()
    }

    /// Answers one (system, user) turn with exactly one label of `choices`
    /// (constrained decoding: nothing else can be written).
    fn complete_choice(&mut self, system: &str, user: &str, choices: &Choices, params: &GenerationParams) -> Result<String>;

    /// The log-probability (natural log, over its tokens) of each label of
    /// `choices`, written as `lead` + label right after the transcript, by
    /// teacher forcing; the transcript is left as it was. The default
    /// refuses: only models that expose their logits can score.
    fn score_choices(&mut self, _transcript: &Transcript, _lead: &str, _choices: &Choices) -> Result<Vec<f32>> {
        Err(AgentError::Unsupported("this model cannot score labels (it does not expose its logits)".into()))
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

    fn ask(&mut self, transcript: &mut Transcript, user: &str) -> Result<()> {
        let (before, after) = turn_text(|m| self.render_chat(m))?;
        append_turn(self.tokenizer(), transcript, &before, user, &after)
    }

    fn extend(&mut self, transcript: &mut Transcript, params: &GenerationParams) -> Result<Continuation> {
        run(self, transcript, params, None)
    }

    fn extend_constrained(&mut self, transcript: &mut Transcript, grammar: StepGrammar, params: &GenerationParams) -> Result<Continuation> {
        let vocab = self.tokenizer().token_bytes();
        let mut constraint = GrammarConstraint::new(grammar, vocab);
        run(self, transcript, params, Some(&mut constraint))
    }

    fn extend_batch(
        &mut self,
        transcripts: &mut [&mut Transcript],
        grammars: Vec<Option<StepGrammar>>,
        params: &GenerationParams,
    ) -> Result<Vec<Continuation>> {
        check_batch(transcripts.len(), grammars.len())?;
        let start = Instant::now();
        let vocab = self.tokenizer().token_bytes();
        let mut constraints: Vec<Option<GrammarConstraint<StepGrammar>>> =
            grammars.into_iter().map(|g| g.map(|g| GrammarConstraint::new(g, vocab.clone()))).collect();
        let refs: Vec<Option<&mut dyn TokenConstraint>> = constraints.iter_mut().map(|c| c.as_mut().map(|c| c as &mut dyn TokenConstraint)).collect();
        let prompts = transcripts.iter().map(|t| t.tokens.clone()).collect();
        let generations = self.generate_batch_constrained(prompts, params, refs)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        transcripts.iter_mut().zip(generations).map(|(t, g)| append_generation(self.tokenizer(), t, g, ms)).collect()
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

    fn complete_choice(&mut self, system: &str, user: &str, choices: &Choices, params: &GenerationParams) -> Result<String> {
        let text = self.render_chat(&[ChatMessage::system(system), ChatMessage::user(user)])?;
        let tokens = self.encode_prompt(&text)?;
        let mut constraint = GrammarConstraint::new(ChoiceGrammar::new(choices), self.tokenizer().token_bytes());
        let generation = self.generate_tokens(tokens, params, Some(&mut constraint), &mut |_| true)?;
        choice_answer(&generation, choices, params)
    }

    fn score_choices(&mut self, transcript: &Transcript, lead: &str, choices: &Choices) -> Result<Vec<f32>> {
        let continuations = label_continuations(self.tokenizer(), lead, choices)?;
        Ok(self.score_continuations(transcript.tokens.clone(), &continuations, ContextPolicy::TruncateStart)?)
    }

    fn set_scope(&mut self, scope: &str) {
        self.set_cache_scope(scope);
    }
}

/// The tokens of `lead` + each label of `choices`, to score after a
/// transcript.
pub(crate) fn label_continuations(tokenizer: &persona_engine::GgufTokenizer, lead: &str, choices: &Choices) -> Result<Vec<Vec<u32>>> {
    Ok(choices.labels().iter().map(|l| tokenizer.encode(&format!("{lead}{l}"), false)).collect::<persona_engine::Result<Vec<_>>>()?)
}

fn run<M: ChatModel>(
    model: &mut M,
    transcript: &mut Transcript,
    params: &GenerationParams,
    constraint: Option<&mut dyn persona_engine::TokenConstraint>,
) -> Result<Continuation> {
    let start = Instant::now();
    let generation = model.generate_tokens(transcript.tokens.clone(), params, constraint, &mut |_| true)?;
    append_generation(model.tokenizer(), transcript, generation, start.elapsed().as_secs_f64() * 1000.0)
}

/// The chat template's text around a user turn that follows the
/// assistant's: `before + user + after` closes the assistant's turn, gives
/// the user's and opens the assistant's next one. Found by rendering a
/// conversation with marker contents and cutting at the markers.
pub(crate) fn turn_text(render: impl Fn(&[ChatMessage]) -> persona_engine::Result<String>) -> Result<(String, String)> {
    const SAID: &str = "\u{E000}said\u{E000}";
    const ASKED: &str = "\u{E001}asked\u{E001}";
    let open = render(&[ChatMessage::system("s"), ChatMessage::user("u")])?;
    let full = render(&[ChatMessage::system("s"), ChatMessage::user("u"), ChatMessage::assistant(SAID), ChatMessage::user(ASKED)])?;
    let rest = full
        .strip_prefix(open.as_str())
        .and_then(|r| r.strip_prefix(SAID))
        .ok_or_else(|| AgentError::Template("a conversation with an assistant turn does not begin with the one-turn prompt".into()))?;
    let (before, after) = rest.split_once(ASKED).ok_or_else(|| AgentError::Template("the new user turn's text is not rendered as given".into()))?;
    Ok((before.to_string(), after.to_string()))
}

/// Appends a user turn (see [`AgentLlm::ask`]): the template's text with
/// its special tokens, the user's text as plain text.
pub(crate) fn append_turn(tokenizer: &GgufTokenizer, transcript: &mut Transcript, before: &str, user: &str, after: &str) -> Result<()> {
    for (text, special) in [(before, true), (user, false), (after, true)] {
        transcript.tokens.extend(tokenizer.encode(text, special)?);
        transcript.text.push_str(text);
    }
    Ok(())
}

/// Adds what the model generated to the transcript. Everything it produced
/// stays (also what follows a stop string inside the last token), so the
/// next call extends exactly the tokens in the KV cache.
pub(crate) fn append_generation(tokenizer: &GgufTokenizer, transcript: &mut Transcript, generation: Generation, ms: f64) -> Result<Continuation> {
    let full = tokenizer.decode(&generation.tokens, false)?;
    transcript.tokens.extend_from_slice(&generation.tokens);
    transcript.text.push_str(&full);
    Ok(Continuation {
        text: generation.text,
        prompt_tokens: generation.prompt_tokens,
        cached_tokens: generation.cached_tokens,
        completion_tokens: generation.completion_tokens,
        ms,
        truncated: generation.finish_reason == FinishReason::Length,
    })
}

/// The label a generation under a [`ChoiceGrammar`] wrote.
pub(crate) fn choice_answer(generation: &Generation, choices: &Choices, params: &GenerationParams) -> Result<String> {
    let answer = generation.text.trim();
    // The grammar admits labels only; a length cut is the one way out.
    choices.find(answer).map(str::to_string).ok_or_else(|| AgentError::Config {
        name: "max_tokens",
        reason: format!("{} tokens ended the answer {answer:?} before it was a whole label", params.max_tokens),
    })
}

pub(crate) fn check_batch(transcripts: usize, grammars: usize) -> Result<()> {
    if transcripts == grammars {
        return Ok(());
    }
    Err(AgentError::Config { name: "grammars", reason: format!("{grammars} grammars for {transcripts} transcripts") })
}
