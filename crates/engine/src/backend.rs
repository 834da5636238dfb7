//! The forward pass behind [`crate::GgufChatModel`] and the state it keeps
//! between calls: the project's own decoder (Llama, Qwen2) with a working KV
//! cache and a per-scope prefix cache, or one of candle-transformers'
//! quantized models (Qwen3, Phi-3, Gemma 3), which only reuse a cache that
//! the next prompt extends.

use std::fs::File;
use std::io::BufReader;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_phi3, quantized_qwen3};

use crate::decoder::prefix::{common_prefix, PrefixCache, PrefixStats, DEFAULT_BUDGET_BYTES};
use crate::decoder::{Decoder, KvCache, ModelMap, SeqInput};
use crate::error::{CandleContext, Result};
use crate::gguf::Architecture;

/// Prompts longer than this are prefilled in chunks, bounding the size of the
/// attention matrices.
pub(crate) const PREFILL_CHUNK: usize = 512;

/// candle-transformers' models (each keeps its own KV cache).
pub(crate) enum CandleWeights {
    Qwen3(quantized_qwen3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

/// The project's decoder and its caches.
pub(crate) struct Own {
    pub(crate) decoder: Decoder,
    /// The cache of the latest single-sequence call.
    pub(crate) kv: KvCache,
    pub(crate) prefixes: PrefixCache,
}

/// Weights plus KV state.
// One per loaded model: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Own(Box<Own>),
    Candle(CandleWeights, Device),
}

/// The part of a prompt that was found in a cache.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reuse {
    /// Prompt tokens not prefilled again.
    pub(crate) tokens: usize,
}

impl Backend {
    /// Loads the weights; `native` lets the own decoder use its Q4_1/Q5_0
    /// kernels, reading their matrices in place from the mapped file (CPU).
    pub(crate) fn load(arch: Architecture, content: Content, file: &File, device: &Device, native: bool) -> candle_core::Result<Self> {
        // candle's models read their tensors through a buffered reader.
        let reader = || BufReader::new(file);
        let weights = match arch {
            Architecture::Llama | Architecture::Qwen2 => return Self::load_own(arch, &content, file, device, native, false),
            Architecture::Qwen3 => CandleWeights::Qwen3(quantized_qwen3::ModelWeights::from_gguf(content, &mut reader(), device)?),
            Architecture::Phi3 => CandleWeights::Phi3(quantized_phi3::ModelWeights::from_gguf(false, content, &mut reader(), device)?),
            Architecture::Gemma3 => CandleWeights::Gemma3(quantized_gemma3::ModelWeights::from_gguf(content, &mut reader(), device)?),
        };
        Ok(Backend::Candle(weights, device.clone()))
    }

    /// Loads a model the own decoder runs ([`Decoder::supports`]); the
    /// header is only borrowed, so the tokenizer can be built from it at
    /// the same time.
    pub(crate) fn load_own(arch: Architecture, content: &Content, file: &File, device: &Device, native: bool, device_ops: bool) -> candle_core::Result<Self> {
        let mut reader = BufReader::new(file);
        let map = if native && device.is_cpu() { Some(ModelMap::new(file)?) } else { None };
        let decoder = Decoder::from_gguf(arch, content, &mut reader, map.as_ref(), device, native, device_ops)?;
        let kv = decoder.new_cache();
        Ok(Backend::Own(Box::new(Own { decoder, kv, prefixes: PrefixCache::new(DEFAULT_BUDGET_BYTES) })))
    }

    /// Forgets the working KV cache (the prefix cache stays).
    pub(crate) fn reset(&mut self, kv_tokens: &mut Vec<u32>) {
        kv_tokens.clear();
        match self {
            Backend::Own(own) => own.kv.truncate(0),
            Backend::Candle(CandleWeights::Qwen3(m), _) => m.clear_kv_cache(),
            // Phi-3 and Gemma 3 reset their cache whenever a forward starts at 0.
            Backend::Candle(..) => {}
        }
    }

    /// Brings the working cache to hold `tokens` and leaves the last
    /// position's logits in `logits`. `kv_tokens` lists the tokens in the
    /// working cache, which belongs to `scope`. Reuses the longest prefix
    /// found in the working cache or, for the own decoder, in the prefix
    /// cache of `scope`.
    pub(crate) fn prefill(&mut self, scope: &str, kv_tokens: &mut Vec<u32>, tokens: &[u32], logits: &mut Vec<f32>) -> Result<Reuse> {
        // At least the last prompt token is always run: its logits are needed.
        let limit = tokens.len().saturating_sub(1);
        let reuse = match self {
            Backend::Own(own) => {
                let mut reuse = common_prefix(kv_tokens, tokens).min(limit);
                if let Some((entry, len)) = own.prefixes.lookup(scope, tokens) {
                    let len = len.min(limit);
                    if len > reuse {
                        own.kv.restore_from(entry, len).during("restoring a cached prefix")?;
                        kv_tokens.clear();
                        kv_tokens.extend_from_slice(&tokens[..len]);
                        reuse = len;
                    }
                }
                own.kv.truncate(reuse);
                kv_tokens.truncate(reuse);
                reuse
            }
            Backend::Candle(w, _) => {
                let extends = matches!(w, CandleWeights::Qwen3(_)) && !kv_tokens.is_empty() && tokens.len() > kv_tokens.len() && tokens.starts_with(kv_tokens);
                if extends {
                    kv_tokens.len()
                } else {
                    self.reset(kv_tokens);
                    0
                }
            }
        };
        self.feed(kv_tokens, &tokens[reuse..], logits)?;
        Ok(Reuse { tokens: reuse })
    }

    /// Feeds `tokens` after the `kv_tokens` already in the working cache,
    /// in chunks where the architecture allows, leaving the last logits in
    /// `logits`.
    pub(crate) fn feed(&mut self, kv_tokens: &mut Vec<u32>, tokens: &[u32], logits: &mut Vec<f32>) -> Result<()> {
        let chunk = match self {
            Backend::Own(_) | Backend::Candle(CandleWeights::Qwen3(_), _) => PREFILL_CHUNK,
            // Phi-3 and Gemma 3 take a multi-token forward only at position 0.
            Backend::Candle(..) if kv_tokens.is_empty() => tokens.len().max(1),
            Backend::Candle(..) => 1,
        };
        for part in tokens.chunks(chunk) {
            let out = match self {
                Backend::Own(own) => own.decoder.forward(&mut [SeqInput { tokens: part, cache: &mut own.kv }]),
                Backend::Candle(w, device) => candle_forward(w, device, part, kv_tokens.len()),
            }
            .during("running the model forward")?;
            copy_last_row(&out, logits)?;
            kv_tokens.extend_from_slice(part);
        }
        Ok(())
    }

    /// Keeps the working cache's state of `kv_tokens` in the prefix cache of
    /// `scope` (own decoder only).
    pub(crate) fn remember(&mut self, scope: &str, kv_tokens: &[u32]) -> Result<()> {
        if let Backend::Own(own) = self {
            // Copy the state only when the cache would keep it: it fits the
            // budget and no entry of the scope holds these tokens already
            // (a call that added nothing new, e.g. a repeated prompt).
            let fits = own.decoder.bytes_per_position() * kv_tokens.len() <= own.prefixes.stats().budget;
            if own.kv.len() == kv_tokens.len() && !kv_tokens.is_empty() && fits && !own.prefixes.covers(scope, kv_tokens) {
                let snapshot = own.kv.snapshot(kv_tokens.len()).during("copying the KV cache")?;
                own.prefixes.insert(scope, kv_tokens.to_vec(), snapshot);
            }
        }
        Ok(())
    }

    /// The prefix cache's size, for the own decoder.
    pub(crate) fn prefix_stats(&self) -> Option<PrefixStats> {
        match self {
            Backend::Own(own) => Some(own.prefixes.stats()),
            Backend::Candle(..) => None,
        }
    }

    /// Drops every cached prefix.
    pub(crate) fn clear_prefixes(&mut self) {
        if let Backend::Own(own) = self {
            own.prefixes.clear();
        }
    }

    /// Sets the prefix cache's byte budget (0 turns it off).
    pub(crate) fn set_prefix_budget(&mut self, bytes: usize) {
        if let Backend::Own(own) = self {
            own.prefixes.set_budget(bytes);
        }
    }
}

fn candle_forward(w: &mut CandleWeights, device: &Device, tokens: &[u32], pos: usize) -> candle_core::Result<Tensor> {
    let input = Tensor::new(tokens, device).and_then(|t| t.unsqueeze(0))?;
    match w {
        CandleWeights::Qwen3(m) => m.forward(&input, pos),
        CandleWeights::Phi3(m) => m.forward(&input, pos),
        CandleWeights::Gemma3(m) => m.forward(&input, pos),
    }
}

/// Copies the last row of `(.., vocab)` logits into `out` (reusing its
/// allocation).
pub(crate) fn copy_last_row(logits: &Tensor, out: &mut Vec<f32>) -> Result<()> {
    let width = logits.dims().last().copied().unwrap_or(0);
    let values = logits.to_dtype(DType::F32).and_then(|l| l.flatten_all()).and_then(|l| l.to_vec1::<f32>()).during("reading logits")?;
    out.clear();
    out.extend_from_slice(&values[values.len().saturating_sub(width)..]);
    Ok(())
}
