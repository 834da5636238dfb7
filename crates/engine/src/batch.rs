//! Batched generation: several independent sequences decoded together, with
//! sequences joining and leaving between steps (continuous batching).
//!
//! Each sequence gets its own KV cache, seeded from the prefix cache when it
//! shares a prefix with an earlier call of the same scope, or from another
//! sequence of the batch (same scope) whose prompt starts with the same
//! tokens: several prompts that join together with one system prompt (the
//! agent's lock-step replays, alignment's feedback calls, a server's
//! concurrent requests) prefill it once, the others wait for it and copy its
//! keys and values. A step runs one
//! forward for every sequence that has tokens to feed, a chunk of a new
//! prompt or the token sampled at the previous step, so the weights are read
//! once per step for the whole batch instead of once per sequence; then each
//! sequence whose prompt is fed samples its next token. Each sequence has its
//! own parameters, scope and optional token constraint (a grammar): the agent
//! runs several tool-using conversations in lock step this way, and a server
//! lets requests join a running batch.

use std::time::Instant;

use crate::backend::{Backend, Own, PREFILL_CHUNK};
use crate::chat_model::{ChatModel, GgufChatModel};
use crate::constraint::TokenConstraint;
use crate::decoder::prefix::common_prefix;
use crate::decoder::{KvCache, SeqInput};
use crate::decoding::Decoding;
use crate::error::{CandleContext, EngineError, Result};
use crate::generation::{fit_context, FinishReason, Generation, GenerationParams};

/// Names a sequence of a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(u64);

/// A sequence to add to a [`Batch`].
pub struct SeqRequest<'c> {
    /// The tokenized prompt.
    pub prompt: Vec<u32>,
    /// Limits, stop strings, sampling and context policy of this sequence.
    pub params: GenerationParams,
    /// An optional constraint on the generated tokens (see
    /// [`GgufChatModel::generate_constrained`]).
    pub constraint: Option<Box<dyn TokenConstraint + 'c>>,
    /// Who the sequence works for: a cached prefix is reused, and the
    /// sequence's own prefix remembered, only within this scope (see
    /// [`ChatModel::set_cache_scope`]).
    pub scope: String,
}

/// What a [`GgufChatModel::step`] produced for one sequence.
#[derive(Debug)]
pub enum SeqEvent {
    /// Text that is safe to stream (no stop string can begin in it).
    Text {
        /// The sequence.
        id: SeqId,
        /// The new text.
        text: String,
    },
    /// The sequence ended and left the batch.
    Done {
        /// The sequence.
        id: SeqId,
        /// Its whole result.
        generation: Generation,
    },
    /// The sequence failed on its own (its constraint allowed no token, a
    /// forced text would not tokenize...) and left the batch; the others
    /// go on.
    Failed {
        /// The sequence.
        id: SeqId,
        /// Why.
        error: EngineError,
    },
}

/// Sequences being decoded together. Add them with [`GgufChatModel::join`],
/// advance them all with [`GgufChatModel::step`].
#[derive(Default)]
pub struct Batch<'c> {
    seqs: Vec<Seq<'c>>,
    next: u64,
}

impl Batch<'_> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sequences still running.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no sequence is running.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Whether the sequence is still running.
    pub fn contains(&self, id: SeqId) -> bool {
        self.seqs.iter().any(|s| s.id == id)
    }

    /// Whether the sequence has produced its first token (its prompt is
    /// prefilled); `false` for one that is not in the batch.
    pub fn started(&self, id: SeqId) -> bool {
        self.seqs.iter().any(|s| s.id == id && s.first_token.is_some())
    }

    /// Drops a sequence at once (a client went away), wherever it is, even
    /// in the middle of its prompt; its KV cache is freed. Returns whether
    /// it was running.
    pub fn cancel(&mut self, id: SeqId) -> bool {
        let before = self.seqs.len();
        self.seqs.retain(|s| s.id != id);
        self.seqs.len() != before
    }
}

/// One sequence of a batch: its decoding state, its KV cache and logits.
struct Seq<'c> {
    id: SeqId,
    scope: String,
    prompt_tokens: usize,
    cached_tokens: usize,
    decoding: Decoding<'c>,
    /// Tokens of the history whose keys and values are in `cache`.
    fed: usize,
    cache: KvCache,
    logits: Vec<f32>,
    /// Why the sequence failed, if it did (it leaves at the end of the step).
    failed: Option<EngineError>,
    /// An earlier sequence of the batch whose history has this one's next
    /// tokens, up to the given length: this one is not fed until that one
    /// has fed them, then copies their keys and values.
    source: Option<(SeqId, usize)>,
    joined: Instant,
    first_token: Option<Instant>,
}

impl Seq<'_> {
    /// Whether it has ended (or failed) and leaves the batch.
    fn ended(&self) -> bool {
        self.decoding.finish.is_some() || self.failed.is_some()
    }

    /// The sequence's result once it has ended, and the text held back
    /// for stop strings that may now be streamed.
    fn finish(mut self, now: Instant) -> (Generation, String) {
        let (finish, tail) = self.decoding.end();
        let first = self.first_token.unwrap_or(now);
        let d = self.decoding;
        let generation = Generation {
            text: d.stops.text().to_string(),
            completion_tokens: d.generated.len(),
            tokens: d.generated,
            prompt_tokens: self.prompt_tokens,
            cached_tokens: self.cached_tokens,
            finish_reason: finish,
            prefill_ms: first.duration_since(self.joined).as_secs_f64() * 1000.0,
            decode_ms: now.duration_since(first).as_secs_f64() * 1000.0,
        };
        (generation, tail)
    }
}

/// One forward for the unfed tokens of every sequence that has some (at
/// most `PREFILL_CHUNK` of each), leaving each one's last logits.
fn feed(own: &mut Own, seqs: &mut [Seq<'_>]) -> Result<()> {
    let mut inputs: Vec<SeqInput<'_>> = Vec::new();
    let mut ends = Vec::new();
    for (i, seq) in seqs.iter_mut().enumerate().filter(|(_, s)| s.decoding.finish.is_none() && s.source.is_none() && s.fed < s.decoding.history.len()) {
        let end = seq.decoding.history.len().min(seq.fed + PREFILL_CHUNK);
        ends.push((i, end));
        inputs.push(SeqInput { tokens: &seq.decoding.history[seq.fed..end], cache: &mut seq.cache });
    }
    if inputs.is_empty() {
        return Ok(());
    }
    let logits = own.decoder.forward(&mut inputs).during("running the batched forward")?;
    let rows = logits.to_vec2::<f32>().during("reading logits")?;
    for ((i, end), row) in ends.into_iter().zip(rows) {
        seqs[i].fed = end;
        seqs[i].logits = row;
    }
    Ok(())
}

/// A sequence shares a prompt prefix with another sequence of its batch
/// only when that saves prefilling at least this many tokens (waiting for a
/// few tokens is not worth a step of delay).
const MIN_SHARED_TOKENS: usize = 32;

/// Seeds `cache` with the longest prefix of `prompt` held by the prefix
/// cache in `scope`; returns its length. The last prompt token is always
/// left to feed: its logits start decoding.
fn restore_cached(own: &mut Own, scope: &str, prompt: &[u32], cache: &mut KvCache) -> Result<usize> {
    let Some((entry, len)) = own.prefixes.lookup(scope, prompt) else { return Ok(0) };
    let cached = len.min(prompt.len() - 1);
    cache.restore_from(entry, cached).during("restoring a cached prefix")?;
    Ok(cached)
}

/// The running sequence of `scope` whose history shares the longest prefix
/// with `prompt` (the earliest on a tie: it is the furthest fed), and that
/// length, short of the prompt's last token.
fn best_source<'a, 'c>(seqs: &'a [Seq<'c>], scope: &str, prompt: &[u32]) -> Option<(&'a Seq<'c>, usize)> {
    let mut best: Option<(&Seq<'c>, usize)> = None;
    for seq in seqs.iter().filter(|s| s.scope == scope && !s.ended()) {
        let shared = common_prefix(&seq.decoding.history, prompt).min(prompt.len() - 1);
        if best.is_none_or(|(_, longest)| shared > longest) {
            best = Some((seq, shared));
        }
    }
    best
}

/// Sequences waiting for a shared prefix copy it from their source once the
/// source has fed it. When the source left the batch before (it ended or
/// was cancelled), the waiting one looks in the prefix cache again (an
/// ended sequence leaves its tokens there) and feeds the rest itself.
fn take_shared_prefixes(own: &mut Own, seqs: &mut [Seq<'_>]) -> Result<()> {
    for i in 0..seqs.len() {
        let Some((source, shared)) = seqs[i].source else { continue };
        // A source joined earlier, so it sits before the waiting sequence.
        let (before, rest) = seqs.split_at_mut(i);
        let seq = &mut rest[0];
        match before.iter().find(|s| s.id == source) {
            Some(s) if s.fed >= shared => {
                seq.cache.restore_from(&s.cache, shared).during("copying a shared prefix")?;
                seq.fed = shared;
            }
            Some(s) if !s.ended() => continue,
            _ => seq.fed = restore_cached(own, &seq.scope, &seq.decoding.history, &mut seq.cache)?,
        }
        seq.cached_tokens = seq.fed;
        seq.source = None;
    }
    Ok(())
}

impl GgufChatModel {
    fn own_decoder(&mut self) -> Result<&mut Own> {
        let architecture = &self.info.architecture;
        match &mut self.backend {
            Backend::Own(own) => Ok(own),
            Backend::Candle(..) => Err(EngineError::InvalidParameter {
                name: "model",
                reason: format!("batched decoding runs on the own decoder (Llama, Qwen2); this model is {architecture}"),
            }),
        }
    }

    /// Adds a sequence to the batch; its prompt is fed by the next
    /// [`GgufChatModel::step`]s (a chunk per step), together with the other
    /// sequences' tokens. The longest cached prefix of the prompt in the
    /// request's scope is reused. Fails for architectures that run on
    /// candle-transformers' models, and for a prompt that does not fit the
    /// context under the request's policy.
    pub fn join<'c>(&mut self, batch: &mut Batch<'c>, request: SeqRequest<'c>) -> Result<SeqId> {
        let SeqRequest { prompt, params, constraint, scope } = request;
        if params.max_tokens == 0 {
            return Err(EngineError::InvalidParameter { name: "max_tokens", reason: "must be at least 1".into() });
        }
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter { name: "prompt", reason: "the prompt is empty".into() });
        }
        let prompt = fit_context(prompt, params.max_tokens, self.info().context_length, params.context_policy)?;
        let own = self.own_decoder()?;
        let mut cache = own.decoder.new_cache();
        let cached = restore_cached(own, &scope, &prompt, &mut cache)?;
        // A sequence of the batch that shares more of the prompt than the
        // prefix cache: copy what it has fed, wait for the rest.
        let mut source = None;
        let mut fed = cached;
        if let Some((leader, shared)) = best_source(&batch.seqs, &scope, &prompt).filter(|&(_, shared)| shared >= cached + MIN_SHARED_TOKENS) {
            if leader.fed >= shared {
                cache.restore_from(&leader.cache, shared).during("copying a shared prefix")?;
                fed = shared;
            } else {
                source = Some((leader.id, shared));
            }
        }
        let id = SeqId(batch.next);
        batch.next += 1;
        batch.seqs.push(Seq {
            id,
            scope,
            prompt_tokens: prompt.len(),
            cached_tokens: fed,
            decoding: Decoding::new(prompt, params, constraint)?,
            fed,
            cache,
            logits: Vec::new(),
            failed: None,
            source,
            joined: Instant::now(),
            first_token: None,
        });
        Ok(id)
    }

    /// Advances every sequence of the batch by one forward: prompt chunks
    /// of new sequences and the latest token of the others run together;
    /// each sequence whose prompt is fed then samples its next token. Text
    /// is reported as [`SeqEvent::Text`]; a sequence that ends leaves the
    /// batch with [`SeqEvent::Done`] (after its last text), and its prompt
    /// and output are remembered in its scope's prefix cache.
    pub fn step(&mut self, batch: &mut Batch<'_>, events: &mut Vec<SeqEvent>) -> Result<()> {
        let own = self.own_decoder()?;
        feed(own, &mut batch.seqs)?;
        take_shared_prefixes(own, &mut batch.seqs)?;
        let tokenizer = &self.tokenizer;
        let now = Instant::now();
        for seq in batch.seqs.iter_mut().filter(|s| s.decoding.finish.is_none() && s.fed == s.decoding.history.len() && !s.logits.is_empty()) {
            seq.first_token.get_or_insert(now);
            if let Err(error) = seq.decoding.step(tokenizer, &mut seq.logits) {
                seq.failed = Some(error);
                continue;
            }
            if !seq.decoding.out.is_empty() {
                events.push(SeqEvent::Text { id: seq.id, text: std::mem::take(&mut seq.decoding.out) });
            }
        }
        let Backend::Own(own) = &mut self.backend else { return Ok(()) };
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut batch.seqs).into_iter().partition(Seq::ended);
        batch.seqs = running;
        let now = Instant::now();
        for mut seq in done {
            if let Some(error) = seq.failed.take() {
                events.push(SeqEvent::Failed { id: seq.id, error });
                continue;
            }
            let fed = &seq.decoding.history[..seq.fed];
            if !own.prefixes.covers(&seq.scope, fed) {
                let snapshot = seq.cache.snapshot(seq.fed).during("copying the KV cache")?;
                own.prefixes.insert(&seq.scope, fed.to_vec(), snapshot);
            }
            let id = seq.id;
            let (generation, tail) = seq.finish(now);
            tracing::debug!(
                model = %self.info.name,
                prompt_tokens = generation.prompt_tokens,
                cached_tokens = generation.cached_tokens,
                completion_tokens = generation.completion_tokens,
                prefill_ms = generation.prefill_ms.round(),
                decode_ms = generation.decode_ms.round(),
                "batched generation"
            );
            if !tail.is_empty() {
                events.push(SeqEvent::Text { id, text: tail });
            }
            events.push(SeqEvent::Done { id, generation });
        }
        Ok(())
    }

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
            return Err(EngineError::InvalidParameter {
                name: "constraints",
                reason: format!("{} constraints for {} prompts", constraints.len(), prompts.len()),
            });
        }
        if let Some(i) = prompts.iter().position(Vec::is_empty) {
            return Err(EngineError::InvalidParameter { name: "prompt", reason: format!("prompt {i} of the batch is empty") });
        }
        if let Backend::Candle(..) = self.backend {
            return prompts.into_iter().zip(constraints).map(|(p, c)| self.generate_constrained(p, params, c, &mut |_| true)).collect();
        }
        let mut batch = Batch::new();
        let mut ids = Vec::with_capacity(prompts.len());
        for (prompt, constraint) in prompts.into_iter().zip(constraints) {
            let constraint = constraint.map(|c| Box::new(c) as Box<dyn TokenConstraint + '_>);
            ids.push(self.join(&mut batch, SeqRequest { prompt, params: params.clone(), constraint, scope: self.scope.clone() })?);
        }
        let mut results: Vec<Option<Generation>> = vec![None; ids.len()];
        let mut events = Vec::new();
        while !batch.is_empty() {
            self.step(&mut batch, &mut events)?;
            for event in events.drain(..) {
                match event {
                    SeqEvent::Done { id, generation } => results[id.0 as usize] = Some(generation),
                    SeqEvent::Failed { error, .. } => return Err(error),
                    SeqEvent::Text { .. } => {}
                }
            }
        }
        Ok(results.into_iter().map(|g| g.unwrap_or_else(unreachable_generation)).collect())
    }
}

/// Every joined sequence ends with a `Done` event before the batch is
/// empty; this stands in for the impossible other case.
fn unreachable_generation() -> Generation {
    Generation {
        text: String::new(),
        tokens: Vec::new(),
        prompt_tokens: 0,
        cached_tokens: 0,
        completion_tokens: 0,
        finish_reason: FinishReason::Cancelled,
        prefill_ms: 0.0,
        decode_ms: 0.0,
    }
}
