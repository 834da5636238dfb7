//! The [`ChatModel`] trait and its GGUF implementation on candle's quantized
//! model loaders.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3};
use serde::Serialize;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::constraint::TokenConstraint;
use crate::error::{CandleContext, EngineError, Result};
use crate::generation::{fit_context, FinishReason, Generation, GenerationParams, StopMatcher};
use crate::gguf::{Architecture, GgufFile};
use crate::sampling::Sampler;
use crate::tokenizer::GgufTokenizer;

/// Prompts longer than this are prefilled in chunks, bounding the size of the
/// attention matrices.
const PREFILL_CHUNK: usize = 512;

/// Facts about a loaded chat model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Display name (`general.name` or the file stem).
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
    /// Model family.
    pub architecture: String,
    /// Usable context window in tokens.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Wall time to load weights and tokenizer, ms.
    pub load_ms: f64,
    /// The repacked copy actually loaded, when slow quantization types were
    /// converted (see [`crate::repack`]).
    pub repacked: Option<PathBuf>,
}

/// How a model is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Convert matrices whose quantization type has no SIMD CPU kernel to
    /// Q8_0 (once, cached in `repack_dir`). Only applies on the CPU.
    pub repack: bool,
    /// Where repacked copies are cached.
    pub repack_dir: PathBuf,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { repack: true, repack_dir: crate::registry::ModelStore::from_env().root().join(".repacked") }
    }
}

/// A callback that receives streamed text; returning `false` stops generation.
pub type TextSink<'a> = dyn FnMut(&str) -> bool + 'a;

/// A chat model the rest of PersonaAgent talks to.
pub trait ChatModel {
    /// Facts about the model.
    fn info(&self) -> &ModelInfo;

    /// The model's tokenizer.
    fn tokenizer(&self) -> &GgufTokenizer;

    /// Renders messages with the model's chat template, ending where the
    /// assistant's reply starts.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String>;

    /// Tokenizes templated text the way generation does (special tokens
    /// parsed, BOS added when the model asks for it).
    fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>>;

    /// Continues a tokenized prompt, optionally under a token constraint,
    /// streaming text pieces to `sink`. A prompt that extends the previous
    /// call's prompt and output reuses the KV cache.
    fn generate_tokens(
        &mut self,
        prompt: Vec<u32>,
        params: &GenerationParams,
        constraint: Option<&mut dyn TokenConstraint>,
        sink: &mut TextSink<'_>,
    ) -> Result<Generation>;

    /// Continues `prompt` (already templated text; special tokens in it are
    /// parsed), streaming text pieces to `sink`.
    fn generate(&mut self, prompt: &str, params: &GenerationParams, sink: &mut TextSink<'_>) -> Result<Generation> {
        let tokens = self.encode_prompt(prompt)?;
        self.generate_tokens(tokens, params, None, sink)
    }

    /// Answers a conversation: renders the template and generates.
    fn chat(&mut self, messages: &[ChatMessage], params: &GenerationParams, sink: &mut TextSink<'_>) -> Result<Generation> {
        let prompt = self.render_chat(messages)?;
        self.generate(&prompt, params, sink)
    }
}

/// The per-architecture weights (each keeps its own KV cache).
enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

impl Weights {
    fn load(arch: Architecture, content: candle_core::quantized::gguf_file::Content, reader: &mut BufReader<File>, device: &Device) -> candle_core::Result<Self> {
        Ok(match arch {
            Architecture::Llama => Weights::Llama(quantized_llama::ModelWeights::from_gguf(content, reader, device)?),
            Architecture::Qwen2 => Weights::Qwen2(quantized_qwen2::ModelWeights::from_gguf(content, reader, device)?),
            Architecture::Qwen3 => Weights::Qwen3(quantized_qwen3::ModelWeights::from_gguf(content, reader, device)?),
            Architecture::Phi3 => Weights::Phi3(quantized_phi3::ModelWeights::from_gguf(false, content, reader, device)?),
            Architecture::Gemma3 => Weights::Gemma3(quantized_gemma3::ModelWeights::from_gguf(content, reader, device)?),
        })
    }

    /// Runs `input` (shape `(1, seq)`) at position `pos`; returns the last
    /// position's logits. Position 0 starts a fresh sequence.
    fn forward(&mut self, input: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama(m) => m.forward(input, pos),
            Weights::Qwen2(m) => m.forward(input, pos),
            Weights::Qwen3(m) => m.forward(input, pos),
            Weights::Phi3(m) => m.forward(input, pos),
            Weights::Gemma3(m) => m.forward(input, pos),
        }
    }

    /// Drops the KV cache so the next request starts clean. Phi-3 and Gemma 3
    /// reset their cache themselves whenever a forward starts at position 0.
    fn clear_kv_cache(&mut self) {
        match self {
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Qwen3(m) => m.clear_kv_cache(),
            Weights::Phi3(_) | Weights::Gemma3(_) => {}
        }
    }

    /// Whether a multi-token forward may start after position 0 (chunked prefill).
    fn supports_chunked_prefill(&self) -> bool {
        matches!(self, Weights::Llama(_) | Weights::Qwen2(_) | Weights::Qwen3(_))
    }
}

/// A quantized GGUF chat model running on candle.
pub struct GgufChatModel {
    weights: Weights,
    tokenizer: GgufTokenizer,
    template: ChatTemplate,
    device: Device,
    add_bos: bool,
    info: ModelInfo,
    logits: Vec<f32>,
    /// The tokens in the KV cache, in order (the cache can be extended when
    /// a new prompt starts with them).
    kv_tokens: Vec<u32>,
}

impl std::fmt::Debug for GgufChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufChatModel").field("info", &self.info).finish()
    }
}

impl GgufChatModel {
    /// Loads a GGUF chat model. A `tokenizer.json` in the same folder wins
    /// over the tokenizer in the GGUF metadata.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load_with(path, device, &LoadOptions::default())
    }

    /// Loads a GGUF chat model with explicit options.
    pub fn load_with(path: impl AsRef<Path>, device: &Device, options: &LoadOptions) -> Result<Self> {
        let start = Instant::now();
        let path = path.as_ref();
        let gguf = GgufFile::open(path)?;
        let beside = path.with_file_name("tokenizer.json");
        let tokenizer = if beside.exists() { GgufTokenizer::from_file(&beside, Some(&gguf))? } else { GgufTokenizer::from_gguf(&gguf)? };
        let token_text = |id: Option<u32>| id.and_then(|i| tokenizer.token(i)).unwrap_or_default();
        let template = ChatTemplate::new(
            gguf.get_str("tokenizer.chat_template"),
            &token_text(tokenizer.bos_id()),
            &token_text(tokenizer.eos_id()),
        )?;
        let add_bos = gguf
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(gguf.get_str("tokenizer.ggml.model") == Some("llama"));
        let context_length = gguf.context_length();
        let name = gguf.model_name();
        let (path, content, arch) = gguf.into_parts();
        let (weights_path, content, repacked) = if options.repack && device.is_cpu() && crate::repack::needs_repack(&content) {
            let target = crate::repack::repacked_path(&options.repack_dir, &path)?;
            if !target.exists() {
                tracing::info!(from = %path.display(), to = %target.display(), "repacking slow quantization types to Q8_0 (once)");
                crate::repack::repack(&path, &content, &target)?;
            }
            let repacked = GgufFile::open(&target)?;
            let (p, c, _) = repacked.into_parts();
            (p.clone(), c, Some(p))
        } else {
            (path.clone(), content, None)
        };
        let file = File::open(&weights_path).map_err(|e| EngineError::io(&weights_path, e))?;
        let mut reader = BufReader::new(file);
        let weights = Weights::load(arch, content, &mut reader, device).during(&format!("loading {} weights from {}", arch, weights_path.display()))?;
        let info = ModelInfo {
            name,
            path,
            architecture: arch.to_string(),
            context_length,
            vocab_size: tokenizer.vocab_size(),
            load_ms: start.elapsed().as_secs_f64() * 1000.0,
            repacked,
        };
        Ok(GgufChatModel { weights, tokenizer, template, device: device.clone(), add_bos, info, logits: Vec::new(), kv_tokens: Vec::new() })
    }

    /// Tokenizes a templated prompt the way [`ChatModel::generate`] does
    /// (special tokens parsed, BOS added when the model asks for it).
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.tokenizer.bos_id());
        }
        ids.extend(self.tokenizer.encode(prompt, true)?);
        Ok(ids)
    }

    /// Brings the KV cache to hold exactly `tokens` minus nothing: when the
    /// cache holds a proper prefix of `tokens` (the previous request's prompt
    /// and output, for an agent that appends to its transcript), only the
    /// rest is fed; otherwise the cache is cleared and everything is fed, in
    /// chunks where the architecture allows. Leaves the last position's
    /// logits in `self.logits`; returns how many tokens were reused.
    fn prefill(&mut self, tokens: &[u32]) -> Result<usize> {
        let chunked = self.weights.supports_chunked_prefill();
        let reuse = if chunked && !self.kv_tokens.is_empty() && tokens.len() > self.kv_tokens.len() && tokens.starts_with(&self.kv_tokens) {
            self.kv_tokens.len()
        } else {
            self.weights.clear_kv_cache();
            self.kv_tokens.clear();
            0
        };
        self.feed(&tokens[reuse..], chunked)?;
        Ok(reuse)
    }

    /// Feeds `tokens` after the ones already in the KV cache.
    fn feed(&mut self, tokens: &[u32], chunked: bool) -> Result<()> {
        feed_tokens(&mut self.weights, &self.device, &mut self.kv_tokens, &mut self.logits, tokens, chunked)
    }

    /// Generates from already tokenized input.
    pub fn generate_from_tokens(&mut self, prompt: Vec<u32>, params: &GenerationParams, sink: &mut TextSink<'_>) -> Result<Generation> {
        self.generate_constrained(prompt, params, None, sink)
    }

    /// Generates from already tokenized input, with an optional constraint
    /// on the tokens (see [`crate::constraint`]). With a constraint,
    /// generation ends when the constrained text is complete
    /// ([`FinishReason::Complete`]); text the constraint forces is fed in one
    /// forward pass and counts as generated.
    pub fn generate_constrained(
        &mut self,
        prompt: Vec<u32>,
        params: &GenerationParams,
        mut constraint: Option<&mut dyn TokenConstraint>,
        sink: &mut TextSink<'_>,
    ) -> Result<Generation> {
        let mut sampler = Sampler::new(params.sampling.clone())?;
        if params.max_tokens == 0 {
            return Err(EngineError::InvalidParameter { name: "max_tokens", reason: "must be at least 1".into() });
        }
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter { name: "prompt", reason: "the prompt is empty".into() });
        }
        let prompt = fit_context(prompt, params.max_tokens, self.info.context_length, params.context_policy)?;
        let start = Instant::now();
        let cached_tokens = match self.prefill(&prompt) {
            Ok(n) => n,
            Err(e) => {
                self.reset_cache();
                return Err(e);
            }
        };
        let prefill_ms = start.elapsed().as_secs_f64() * 1000.0;
        let decode_start = Instant::now();
        let chunked = self.weights.supports_chunked_prefill();

        let mut history = prompt.clone();
        // Tokens in `history` but not yet in the KV cache.
        let mut pending: Vec<u32> = Vec::new();
        let mut generated = Vec::with_capacity(params.max_tokens);
        let mut stops = StopMatcher::new(&params.stop);
        let mut stream = self.tokenizer.inner().decode_stream(true);
        let mut finish = FinishReason::Length;
        let result = (|| -> Result<()> {
            while generated.len() < params.max_tokens {
                // The next tokens: text the constraint forces, or one sampled token.
                let mut forced = None;
                if let Some(c) = constraint.as_deref_mut() {
                    if c.is_complete() {
                        finish = FinishReason::Complete;
                        return Ok(());
                    }
                    if let Some(text) = c.forced_text() {
                        let ids = self.tokenizer.encode(&text, false)?;
                        c.accept_text(&text)?;
                        forced = Some(ids);
                    }
                }
                let new = match forced {
                    Some(ids) => ids,
                    None => {
                        if !pending.is_empty() {
                            let feed = std::mem::take(&mut pending);
                            feed_tokens(&mut self.weights, &self.device, &mut self.kv_tokens, &mut self.logits, &feed, chunked)?;
                        }
                        let mut logits = std::mem::take(&mut self.logits);
                        if let Some(c) = constraint.as_deref_mut() {
                            c.mask_logits(&mut logits)?;
                        }
                        let next = sampler.sample(&mut logits, &history);
                        self.logits = logits;
                        if !params.ignore_eos && self.tokenizer.is_end_of_generation(next) {
                            finish = FinishReason::EndOfTurn;
                            return Ok(());
                        }
                        if let Some(c) = constraint.as_deref_mut() {
                            c.accept_token(next)?;
                        }
                        vec![next]
                    }
                };
                for id in new {
                    history.push(id);
                    generated.push(id);
                    pending.push(id);
                    let piece = stream.step(id).map_err(|e| EngineError::Tokenizer(e.to_string()))?.unwrap_or_default();
                    let (out, hit_stop) = stops.push(&piece);
                    if !out.is_empty() && !sink(&out) {
                        finish = FinishReason::Cancelled;
                        return Ok(());
                    }
                    if hit_stop {
                        finish = FinishReason::StopString;
                        return Ok(());
                    }
                }
            }
            if let Some(c) = constraint.as_deref() {
                if c.is_complete() {
                    finish = FinishReason::Complete;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.reset_cache();
            return Err(e);
        }
        if finish != FinishReason::StopString && finish != FinishReason::Cancelled {
            let rest = stops.flush();
            if !rest.is_empty() {
                sink(&rest);
            }
        }
        Ok(Generation {
            text: stops.text().to_string(),
            completion_tokens: generated.len(),
            tokens: generated,
            prompt_tokens: prompt.len(),
            cached_tokens,
            finish_reason: finish,
            prefill_ms,
            decode_ms: decode_start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Forgets the KV cache (after an error its content is unknown).
    fn reset_cache(&mut self) {
        self.weights.clear_kv_cache();
        self.kv_tokens.clear();
    }

    /// The tokens whose keys and values are in the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.kv_tokens
    }
}

/// Feeds `tokens` after the `kv_tokens` already in the KV cache, in chunks
/// where the architecture allows, leaving the last logits in `logits`.
fn feed_tokens(weights: &mut Weights, device: &Device, kv_tokens: &mut Vec<u32>, logits: &mut Vec<f32>, tokens: &[u32], chunked: bool) -> Result<()> {
    // Architectures without chunked prefill take a multi-token forward only
    // at position 0; after that they are fed one token at a time.
    let chunk = if chunked {
        PREFILL_CHUNK
    } else if kv_tokens.is_empty() {
        tokens.len().max(1)
    } else {
        1
    };
    for part in tokens.chunks(chunk) {
        forward(weights, device, part, kv_tokens.len(), logits)?;
        kv_tokens.extend_from_slice(part);
    }
    Ok(())
}

/// Runs `tokens` at position `pos` and writes the last position's logits
/// into `out` (reusing its allocation).
fn forward(weights: &mut Weights, device: &Device, tokens: &[u32], pos: usize, out: &mut Vec<f32>) -> Result<()> {
    let input = Tensor::new(tokens, device).and_then(|t| t.unsqueeze(0)).during("building the input tensor")?;
    let logits = weights.forward(&input, pos).during("running the model forward")?;
    let width = logits.dims().last().copied().unwrap_or(0);
    let logits = logits.to_dtype(DType::F32).and_then(|l| l.flatten_all()).during("reading logits")?;
    let values = logits.to_vec1::<f32>().during("copying logits")?;
    out.clear();
    out.extend_from_slice(&values[values.len().saturating_sub(width)..]);
    Ok(())
}

impl ChatModel for GgufChatModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        self.template.render(messages, true)
    }

    fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        self.prompt_tokens(prompt)
    }

    fn generate_tokens(
        &mut self,
        prompt: Vec<u32>,
        params: &GenerationParams,
        constraint: Option<&mut dyn TokenConstraint>,
        sink: &mut TextSink<'_>,
    ) -> Result<Generation> {
        self.generate_constrained(prompt, params, constraint, sink)
    }
}
