//! The decoding step every generation shares, alone or in a batch: given a
//! sequence's latest logits, choose what comes next (a sampled token under
//! the constraint's mask, or text the constraint forces), append it, turn
//! it into text, and decide whether the sequence has ended (end of turn,
//! stop string, length, complete constrained text).
//!
//! [`crate::GgufChatModel::generate_constrained`] runs one sequence through
//! it and [`crate::Batch`] runs many; they differ only in how the logits
//! are computed (one sequence's forward, or one forward for the batch).

use crate::constraint::TokenConstraint;
use crate::error::{EngineError, Result};
use crate::generation::{FinishReason, GenerationParams, StopMatcher};
use crate::sampling::Sampler;
use crate::tokenizer::GgufTokenizer;

/// Incremental detokenization state (as `tokenizers`' decode stream keeps it).
#[derive(Default)]
struct DecodeState {
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

/// One sequence's decoding state.
pub(crate) struct Decoding<'c> {
    pub(crate) params: GenerationParams,
    /// Prompt and generated tokens.
    pub(crate) history: Vec<u32>,
    /// Generated (sampled or forced) tokens.
    pub(crate) generated: Vec<u32>,
    sampler: Sampler,
    pub(crate) stops: StopMatcher,
    decode: DecodeState,
    pub(crate) constraint: Option<Box<dyn TokenConstraint + 'c>>,
    /// Why the sequence ended, once it has.
    pub(crate) finish: Option<FinishReason>,
    /// Text produced since it was last taken, held back from stop strings.
    pub(crate) out: String,
}

impl<'c> Decoding<'c> {
    /// A sequence that will continue `prompt`.
    pub(crate) fn new(prompt: Vec<u32>, params: GenerationParams, constraint: Option<Box<dyn TokenConstraint + 'c>>) -> Result<Self> {
        Ok(Decoding {
            sampler: Sampler::new(params.sampling.clone())?,
            stops: StopMatcher::new(&params.stop),
            generated: Vec::with_capacity(params.max_tokens),
            params,
            history: prompt,
            decode: DecodeState::default(),
            constraint,
            finish: None,
            out: String::new(),
        })
    }

    /// Appends tokens the sequence produced (sampled or forced), ending it
    /// at a stop string or the length limit.
    fn push(&mut self, tokenizer: &GgufTokenizer, ids: &[u32]) -> Result<()> {
        for &id in ids {
            self.history.push(id);
            self.generated.push(id);
            let d = &mut self.decode;
            let piece = tokenizers::tokenizer::step_decode_stream(
                std::ops::Deref::deref(tokenizer.inner()),
                vec![id],
                true,
                &mut d.ids,
                &mut d.prefix,
                &mut d.prefix_index,
            )
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?
            .unwrap_or_default();
            let (out, hit_stop) = self.stops.push(&piece);
            self.out.push_str(&out);
            if hit_stop {
                self.finish = Some(FinishReason::StopString);
                return Ok(());
            }
        }
        if self.constraint.as_deref().is_some_and(|c| c.is_complete()) {
            self.finish = Some(FinishReason::Complete);
        } else if self.generated.len() >= self.params.max_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(())
    }

    /// One decoding step on fresh `logits` (masked in place): a sampled
    /// token when the constraint forces nothing, then any text the
    /// constraint forces. Afterwards an unfinished sequence has tokens to
    /// feed.
    pub(crate) fn step(&mut self, tokenizer: &GgufTokenizer, logits: &mut [f32]) -> Result<()> {
        let forced = |s: &Self| s.constraint.as_deref().and_then(|c| c.forced_text());
        if self.constraint.as_deref().is_some_and(|c| c.is_complete()) {
            self.finish = Some(FinishReason::Complete);
            return Ok(());
        }
        if forced(self).is_none() {
            if let Some(c) = self.constraint.as_deref_mut() {
                c.mask_logits(logits)?;
            }
            let next = self.sampler.sample(logits, &self.history);
            if !self.params.ignore_eos && tokenizer.is_end_of_generation(next) {
                self.finish = Some(FinishReason::EndOfTurn);
                return Ok(());
            }
            if let Some(c) = self.constraint.as_deref_mut() {
                c.accept_token(next)?;
            }
            self.push(tokenizer, &[next])?;
        }
        while self.finish.is_none() {
            let Some(text) = forced(self) else { break };
            let ids = tokenizer.encode(&text, false)?;
            if let Some(c) = self.constraint.as_deref_mut() {
                c.accept_text(&text)?;
            }
            self.push(tokenizer, &ids)?;
        }
        Ok(())
    }

    /// The ending (length when none was set) and the text held back for
    /// stop strings that may now be streamed (none after a stop string).
    pub(crate) fn end(&mut self) -> (FinishReason, String) {
        let finish = self.finish.unwrap_or(FinishReason::Length);
        let tail = if finish == FinishReason::StopString { String::new() } else { self.stops.flush() };
        (finish, tail)
    }
}
