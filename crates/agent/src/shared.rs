//! The agent's model operations on a [`ModelClient`] of a shared model
//! ([`persona_engine::SharedModel`]): several agents, each on its own
//! thread, have their calls decoded in one batch.

use std::time::Instant;

use persona_engine::{ChatMessage, ContextPolicy, GenerationParams, GrammarConstraint, ModelClient};
use persona_memory::Summarizer;

use crate::choice::{ChoiceGrammar, Choices};
use crate::error::Result;
use crate::grammar::StepGrammar;
use crate::llm::{append_generation, append_turn, check_batch, choice_answer, label_continuations, turn_text, AgentLlm, Continuation, Transcript};

/// An [`AgentLlm`] whose calls run in a shared model's batch. Cheap to
/// clone; give each thread its own.
#[derive(Debug, Clone)]
pub struct SharedLlm(pub ModelClient);

impl SharedLlm {
    fn prompt(&self, system: &str, user: &str) -> Result<(String, Vec<u32>)> {
        let text = self.0.render_chat(&[ChatMessage::system(system), ChatMessage::user(user)])?;
        let tokens = self.0.encode_prompt(&text)?;
        Ok((text, tokens))
    }
}

impl Summarizer for SharedLlm {
    fn model_name(&self) -> String {
        self.0.info().name.clone()
    }
    fn context_length(&self) -> usize {
        self.0.info().context_length
    }
    fn count_tokens(&self, text: &str) -> persona_memory::Result<usize> {
        Ok(self.0.tokenizer().encode(text, false)?.len())
    }
    fn complete(&mut self, system: &str, user: &str, params: &GenerationParams) -> persona_memory::Result<String> {
        let text = self.0.render_chat(&[ChatMessage::system(system), ChatMessage::user(user)])?;
        let tokens = self.0.encode_prompt(&text)?;
        Ok(self.0.generate(tokens, params, None)?.text)
    }
}

impl AgentLlm for SharedLlm {
    fn start(&mut self, system: &str, user: &str) -> Result<Transcript> {
        let (text, tokens) = self.prompt(system, user)?;
        Ok(Transcript { text, tokens })
    }

    fn append(&mut self, transcript: &mut Transcript, text: &str) -> Result<()> {
        let ids = self.0.tokenizer().encode(text, false)?;
        transcript.tokens.extend(ids);
        transcript.text.push_str(text);
        Ok(())
    }

    fn ask(&mut self, transcript: &mut Transcript, user: &str) -> Result<()> {
        let (before, after) = turn_text(|m| self.0.render_chat(m))?;
        append_turn(self.0.tokenizer(), transcript, &before, user, &after)
    }

    fn extend(&mut self, transcript: &mut Transcript, params: &GenerationParams) -> Result<Continuation> {
        let start = Instant::now();
        let generation = self.0.generate(transcript.tokens.clone(), params, None)?;
        append_generation(self.0.tokenizer(), transcript, generation, start.elapsed().as_secs_f64() * 1000.0)
    }

    fn extend_constrained(&mut self, transcript: &mut Transcript, grammar: StepGrammar, params: &GenerationParams) -> Result<Continuation> {
        let start = Instant::now();
        let constraint = GrammarConstraint::new(grammar, self.0.tokenizer().token_bytes());
        let generation = self.0.generate(transcript.tokens.clone(), params, Some(Box::new(constraint)))?;
        append_generation(self.0.tokenizer(), transcript, generation, start.elapsed().as_secs_f64() * 1000.0)
    }

    fn extend_batch(
        &mut self,
        transcripts: &mut [&mut Transcript],
        grammars: Vec<Option<StepGrammar>>,
        params: &GenerationParams,
    ) -> Result<Vec<Continuation>> {
        check_batch(transcripts.len(), grammars.len())?;
        let start = Instant::now();
        let vocab = self.0.tokenizer().token_bytes();
        let prompts = transcripts
            .iter()
            .zip(grammars)
            .map(|(t, g)| (t.tokens.clone(), g.map(|g| Box::new(GrammarConstraint::new(g, vocab.clone())) as persona_engine::shared::SendConstraint)))
            .collect();
        let generations = self.0.generate_many(prompts, params)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        transcripts.iter_mut().zip(generations).map(|(t, g)| append_generation(self.0.tokenizer(), t, g, ms)).collect()
    }

    fn complete_batch(&mut self, turns: &[(String, String)], params: &GenerationParams) -> Result<Vec<String>> {
        let prompts = turns.iter().map(|(system, user)| Ok((self.prompt(system, user)?.1, None))).collect::<Result<Vec<_>>>()?;
        Ok(self.0.generate_many(prompts, params)?.into_iter().map(|g| g.text).collect())
    }

    fn complete_choice(&mut self, system: &str, user: &str, choices: &Choices, params: &GenerationParams) -> Result<String> {
        let (_, tokens) = self.prompt(system, user)?;
        let constraint = GrammarConstraint::new(ChoiceGrammar::new(choices), self.0.tokenizer().token_bytes());
        let generation = self.0.generate(tokens, params, Some(Box::new(constraint)))?;
        choice_answer(&generation, choices, params)
    }

    fn score_choices(&mut self, transcript: &Transcript, lead: &str, choices: &Choices) -> Result<Vec<f32>> {
        let continuations = label_continuations(self.0.tokenizer(), lead, choices)?;
        Ok(self.0.score_continuations(transcript.tokens.clone(), continuations, ContextPolicy::TruncateStart)?)
    }

    fn set_scope(&mut self, scope: &str) {
        self.0.set_scope(scope);
    }
}
