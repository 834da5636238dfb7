//! Batched generation: several independent prompts decoded together.
//!
//! Each prompt gets its own KV cache (seeded from the prefix cache when it
//! shares a prefix with an earlier call of the same scope) and is prefilled
//! on its own; then every decode step runs one token of each unfinished
//! sequence in a single forward, so the weights are read once per step for
//! the whole batch instead of once per sequence.

use std::time::Instant;

use crate::backend::{Backend, PREFILL_CHUNK};
use crate::chat_model::{ChatModel, GgufChatModel};
use crate::decoder::{KvCache, SeqInput};
use crate::error::{CandleContext, EngineError, Result};
use crate::generation::{fit_context, FinishReason, Generation, GenerationParams, StopMatcher};
use crate::sampling::Sampler;

/// One sequence's decoding state.
struct Seq {
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
    finish: Option<FinishReason>,
    prefill_ms: f64,
}

impl GgufChatModel {
    /// Generates a continuation of each tokenized prompt, decoding them
    /// together. Every sequence follows `params` on its own (its own
    /// sampler, seeded alike, stop strings, end of turn, length limit);
    /// greedy results are the tokens one-by-one calls would give.
    /// Architectures on candle-transformers' models run the prompts one
    /// after another.
    pub fn generate_batch(&mut self, prompts: Vec<Vec<u32>>, params: &GenerationParams) -> Result<Vec<Generation>> {
        if params.max_tokens == 0 {
            return Err(EngineError::InvalidParameter { name: "max_tokens", reason: "must be at least 1".into() });
        }
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(EngineError::InvalidParameter { name: "prompt", reason: format!("prompt {i} of the batch is empty") });
        }
        let context = self.info().context_length;
        let prompts = prompts.into_iter().map(|p| fit_context(p, params.max_tokens, context, params.context_policy)).collect::<Result<Vec<_>>>()?;
        let own = match &mut self.backend {
            Backend::Own(own) => own,
            Backend::Candle(..) => return prompts.into_iter().map(|p| self.generate_constrained(p, params, None, &mut |_| true)).collect(),
        };
        let mut seqs = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let start = Instant::now();
            let mut cache = own.decoder.new_cache();
            let mut cached = 0;
            if let Some((entry, len)) = own.prefixes.lookup(&self.scope, &prompt) {
                cached = len.min(prompt.len() - 1);
                cache.restore_from(entry, cached).during("restoring a cached prefix")?;
            }
            let mut logits = Vec::new();
            for part in prompt[cached..].chunks(PREFILL_CHUNK) {
                let out = own.decoder.forward(&mut [SeqInput { tokens: part, cache: &mut cache }]).during("running the model forward")?;
                crate::backend::copy_last_row(&out, &mut logits)?;
            }
            seqs.push(Seq {
                prompt_tokens: prompt.len(),
                cached_tokens: cached,
                fed: prompt.len(),
                history: prompt,
                generated: Vec::with_capacity(params.max_tokens),
                cache,
                logits,
                sampler: Sampler::new(params.sampling.clone())?,
                stops: StopMatcher::new(&params.stop),
                finish: None,
                prefill_ms: start.elapsed().as_secs_f64() * 1000.0,
            });
        }
        let decode_start = Instant::now();
        let mut streams: Vec<_> = seqs.iter().map(|_| self.tokenizer.inner().decode_stream(true)).collect();
        loop {
            // Sample the next token of every unfinished sequence.
            for (seq, stream) in seqs.iter_mut().zip(&mut streams) {
                if seq.finish.is_some() {
                    continue;
                }
                let next = seq.sampler.sample(&mut seq.logits, &seq.history);
                if !params.ignore_eos && self.tokenizer.is_end_of_generation(next) {
                    seq.finish = Some(FinishReason::EndOfTurn);
                    continue;
                }
                seq.history.push(next);
                seq.generated.push(next);
                let piece = stream.step(next).map_err(|e| EngineError::Tokenizer(e.to_string()))?.unwrap_or_default();
                if seq.stops.push(&piece).1 {
                    seq.finish = Some(FinishReason::StopString);
                } else if seq.generated.len() >= params.max_tokens {
                    seq.finish = Some(FinishReason::Length);
                }
            }
            // One forward for all of them.
            let mut inputs: Vec<SeqInput<'_>> = seqs
                .iter_mut()
                .filter(|s| s.finish.is_none())
                .map(|s| SeqInput { tokens: &s.history[s.fed..], cache: &mut s.cache })
                .collect();
            if inputs.is_empty() {
                break;
            }
            let logits = own.decoder.forward(&mut inputs).during("running the batched forward")?;
            let rows = logits.to_vec2::<f32>().during("reading logits")?;
            for (seq, row) in seqs.iter_mut().filter(|s| s.finish.is_none()).zip(rows) {
                seq.fed = seq.history.len();
                seq.logits = row;
            }
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
                prefill_ms: seq.prefill_ms,
                decode_ms,
            });
        }
        Ok(out)
    }
}
