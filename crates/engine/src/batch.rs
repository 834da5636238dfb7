//! Batched generation: several independent prompts decoded together.
//!
//! Each prompt gets its own KV cache (seeded from the prefix cache when it
//! shares a prefix with an earlier call of the same scope); the prompts'
//! uncached tokens are prefilled together, and then every decode step runs
//! the new tokens of each unfinished sequence in a single forward, so the
//! weights are read once per step for the whole batch instead of once per
//! sequence. Each sequence may carry its own token constraint (a grammar):
//! the agent runs several tool-using conversations in lock step this way.

use std::time::Instant;

use crate::backend::{Backend, PREFILL_CHUNK};
use crate::chat_model::{ChatModel, GgufChatModel};
use crate::constraint::TokenConstraint;
use crate::decoder::{KvCache, SeqInput};
use crate::error::{CandleContext, EngineError, Result};
use crate::generation::{fit_context, FinishReason, Generation, GenerationParams, StopMatcher};
use crate::sampling::Sampler;
use crate::tokenizer::GgufTokenizer;

/// The streaming decoder of the HuggingFace tokenizer.
type TextStream<'t> = tokenizers::DecodeStream<
    't,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// One sequence's decoding state.
struct Seq<'t, 'c> {
    prompt_tokens: usize,
    cached_tokens: usize,
    history: Vec<u32>,
    generated: Vec<u32>,
    /// Tokens of `history` whose keys and values are in `cache`.
    fed: usize,
    cache: KvCache,
    logits: Vec<f32>,
    sampler: Sampler,
    stops: StopMatcher,
    stream: TextStream<'t>,
    constraint: Option<&'c mut dyn TokenConstraint>,
    finish: Option<FinishReason>,
}

impl Seq<'_, '_> {
    /// Appends tokens the sequence produced (sampled or forced), ending it
    /// at a stop string or the length limit.
    fn push(&mut self, ids: &[u32], max_tokens: usize) -> Result<()> {
        for &id in ids {
            self.history.push(id);
            self.generated.push(id);
            let piece = self.stream.step(id).map_err(|e| EngineError::Tokenizer(e.to_string()))?.unwrap_or_default();
            if self.stops.push(&piece).1 {
                self.finish = Some(FinishReason::StopString);
                return Ok(());
            }
        }
        if self.constraint.as_deref().is_some_and(|c| c.is_complete()) {
            self.finish = Some(FinishReason::Complete);
        } else if self.generated.len() >= max_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(())
    }

    /// One decoding step: a sampled token when the logits are fresh and
    /// the constraint forces nothing, then any text the constraint forces.
    /// Afterwards an unfinished sequence has tokens to feed.
    fn step(&mut self, tokenizer: &GgufTokenizer, params: &GenerationParams) -> Result<()> {
        let forced = |s: &Self| s.constraint.as_deref().and_then(|c| c.forced_text());
        if self.constraint.as_deref().is_some_and(|c| c.is_complete()) {
            self.finish = Some(FinishReason::Complete);
            return Ok(());
        }
        if self.fed == self.history.len() && forced(self).is_none() {
            if let Some(c) = self.constraint.as_deref_mut() {
                c.mask_logits(&mut self.logits)?;
            }
            let next = self.sampler.sample(&mut self.logits, &self.history);
            if !params.ignore_eos && tokenizer.is_end_of_generation(next) {
                self.finish = Some(FinishReason::EndOfTurn);
                return Ok(());
            }
            if let Some(c) = self.constraint.as_deref_mut() {
                c.accept_token(next)?;
            }
            self.push(&[next], params.max_tokens)?;
        }
        while self.finish.is_none() {
            let Some(text) = forced(self) else { break };
            let ids = tokenizer.encode(&text, false)?;
            if let Some(c) = self.constraint.as_deref_mut() {
                c.accept_text(&text)?;
            }
            self.push(&ids, params.max_tokens)?;
        }
        Ok(())
    }
}

/// Runs every listed sequence's unfed tokens (at most `PREFILL_CHUNK` of
/// each per forward) until all are fed, leaving each one's last logits.
fn feed_all(own: &mut crate::backend::Own, seqs: &mut [Seq<'_, '_>], which: &[usize]) -> Result<()> {
    loop {
        let mut picked: Vec<usize> = which.iter().copied().filter(|&i| seqs[i].fed < seqs[i].history.len()).collect();
        if picked.is_empty() {
            return Ok(());
        }
        picked.sort_unstable();
        let mut inputs: Vec<SeqInput<'_>> = Vec::with_capacity(picked.len());
        let mut ends = Vec::with_capacity(picked.len());
        for (i, seq) in seqs.iter_mut().enumerate().filter(|(i, _)| picked.contains(i)) {
            let end = seq.history.len().min(seq.fed + PREFILL_CHUNK);
            ends.push((i, end));
            inputs.push(SeqInput { tokens: &seq.history[seq.fed..end], cache: &mut seq.cache });
        }
        let logits = own.decoder.forward(&mut inputs).during("running the batched forward")?;
        let rows = logits.to_vec2::<f32>().during("reading logits")?;
        for ((i, end), row) in ends.into_iter().zip(rows) {
            seqs[i].fed = end;
            seqs[i].logits = row;
        }
    }
}

impl GgufChatModel {
    /// Generates a continuation of each tokenized prompt, decoding them
    /// together. Every sequence follows `params` on its own (its own
    /// sampler, seeded alike, stop strings, end of turn, length limit);
    /// greedy results are the tokens one-by-one calls would give.
    /// Architectures on candle-transformers' models run the prompts one
    /// after another.
    pub fn generate_batch(&mut self, prompts: Vec<Vec<u32>>, params: &GenerationParams) -> Result<Vec<Generation>> {
        let constraints = prompts.iter().map(|_| None).collect();
        self.generate_batch_constrained(prompts, params, constraints)
    }

    /// [`GgufChatModel::generate_batch`] with an optional token constraint
    /// per prompt (`constraints[i]` applies to `prompts[i]`), as in
    /// [`GgufChatModel::generate_constrained`]: text a constraint forces is
    /// fed without sampling and counts as generated, and a sequence ends
    /// when its constrained text is complete.
    pub fn generate_batch_constrained(
        &mut self,
        prompts: Vec<Vec<u32>>,
        params: &GenerationParams,
        constraints: Vec<Option<&mut dyn TokenConstraint>>,
    ) -> Result<Vec<Generation>> {
        if params.max_tokens == 0 {
            return Err(EngineError::InvalidParameter { name: "max_tokens", reason: "must be at least 1".into() });
        }
        if constraints.len() != prompts.len() {
            return Err(EngineError::InvalidParameter { name: "constraints", reason: format!("{} constraints for {} prompts", constraints.len(), prompts.len()) });
        }
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(EngineError::InvalidParameter { name: "prompt", reason: format!("prompt {i} of the batch is empty") });
        }
        let context = self.info().context_length;
        let prompts = prompts.into_iter().map(|p| fit_context(p, params.max_tokens, context, params.context_policy)).collect::<Result<Vec<_>>>()?;
        let own = match &mut self.backend {
            Backend::Own(own) => own,
            Backend::Candle(..) => {
                return prompts.into_iter().zip(constraints).map(|(p, c)| self.generate_constrained(p, params, c, &mut |_| true)).collect();
            }
        };
        let tokenizer = &self.tokenizer;
        let start = Instant::now();
        let mut seqs = Vec::with_capacity(prompts.len());
        for (prompt, constraint) in prompts.into_iter().zip(constraints) {
            let mut cache = own.decoder.new_cache();
            let mut cached = 0;
            if let Some((entry, len)) = own.prefixes.lookup(&self.scope, &prompt) {
                cached = len.min(prompt.len() - 1);
                cache.restore_from(entry, cached).during("restoring a cached prefix")?;
            }
            seqs.push(Seq {
                prompt_tokens: prompt.len(),
                cached_tokens: cached,
                fed: cached,
                history: prompt,
                generated: Vec::with_capacity(params.max_tokens),
                cache,
                logits: Vec::new(),
                sampler: Sampler::new(params.sampling.clone())?,
                stops: StopMatcher::new(&params.stop),
                stream: tokenizer.inner().decode_stream(true),
                constraint,
                finish: None,
            });
        }
        let all: Vec<usize> = (0..seqs.len()).collect();
        feed_all(own, &mut seqs, &all)?;
        let prefill_ms = start.elapsed().as_secs_f64() * 1000.0;
        let decode_start = Instant::now();
        loop {
            for seq in seqs.iter_mut().filter(|s| s.finish.is_none()) {
                seq.step(tokenizer, params)?;
            }
            // One forward for the new tokens of all unfinished sequences.
            let live: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].finish.is_none()).collect();
            if live.is_empty() {
                break;
            }
            feed_all(own, &mut seqs, &live)?;
        }
        let decode_ms = decode_start.elapsed().as_secs_f64() * 1000.0;
        let mut out = Vec::with_capacity(seqs.len());
        for mut seq in seqs {
            let finish = seq.finish.unwrap_or(FinishReason::Length);
            if finish != FinishReason::StopString {
                seq.stops.flush();
            }
            let fed = &seq.history[..seq.fed];
            if !own.prefixes.covers(&self.scope, fed) {
                let snapshot = seq.cache.snapshot(seq.fed).during("copying the KV cache")?;
                own.prefixes.insert(&self.scope, fed.to_vec(), snapshot);
            }
            out.push(Generation {
                text: seq.stops.text().to_string(),
                completion_tokens: seq.generated.len(),
                tokens: seq.generated,
                prompt_tokens: seq.prompt_tokens,
                cached_tokens: seq.cached_tokens,
                finish_reason: finish,
                prefill_ms,
                decode_ms,
            });
        }
        Ok(out)
    }
}
