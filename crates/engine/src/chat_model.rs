//! The [`ChatModel`] trait and its GGUF implementation on candle's quantized
//! model loaders.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use serde::Serialize;

use crate::backend::Backend;
use crate::chat::{ChatMessage, ChatTemplate};
use crate::constraint::TokenConstraint;
use crate::decoder::prefix::PrefixStats;
use crate::decoding::Decoding;
use crate::error::{CandleContext, EngineError, Result};
use crate::generation::{fit_context, ContextPolicy, FinishReason, Generation, GenerationParams};
use crate::gguf::GgufFile;
use crate::tokenizer::GgufTokenizer;

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
    /// converted (see `crate::repack`).
    pub repacked: Option<PathBuf>,
}

/// Tokenizes templated text for generation: special tokens parsed, BOS
/// first when the model asks for it.
pub(crate) fn prompt_ids(tokenizer: &GgufTokenizer, add_bos: bool, prompt: &str) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    if add_bos {
        ids.extend(tokenizer.bos_id());
    }
    ids.extend(tokenizer.encode(prompt, true)?);
    Ok(ids)
}

/// How a model is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Convert matrices whose quantization type has no SIMD CPU kernel to
    /// Q8_0 (once, cached in `repack_dir`). Only applies on the CPU.
    pub repack: bool,
    /// Where repacked copies are cached; `None`: a `.repacked` folder
    /// beside the model file.
    pub repack_dir: Option<PathBuf>,
    /// Multiply Q4_1 and Q5_0 weights with the project's AVX2 kernels
    /// (Llama and Qwen2 on x86-64 CPUs that have AVX2 and FMA) instead of
    /// converting them to Q8_0.
    pub native_kernels: bool,
    /// Run the forward pass as it runs on a GPU, through candle's tensor
    /// ops (a dense embedding table, candle's quantized matmuls on the
    /// file's own types, attention as matrix products under a causal mask),
    /// on whatever device the model loads on. On the CPU this is slower
    /// than the default path; it is how tests check the GPU's code path on
    /// machines without a GPU. Implies no native kernels and no repacking.
    pub device_ops: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { repack: true, repack_dir: None, native_kernels: true, device_ops: false }
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

    /// Generates a continuation of each prompt (already tokenized). The
    /// default runs them one after another; [`GgufChatModel`] decodes them
    /// together in one batch. Greedy results equal one-by-one calls.
    fn generate_batch(&mut self, prompts: Vec<Vec<u32>>, params: &GenerationParams) -> Result<Vec<Generation>> {
        prompts.into_iter().map(|p| self.generate_tokens(p, params, None, &mut |_| true)).collect()
    }

    /// [`ChatModel::generate_batch`] with an optional token constraint per
    /// prompt (`constraints[i]` applies to `prompts[i]`). The default runs
    /// them one after another.
    fn generate_batch_constrained(
        &mut self,
        prompts: Vec<Vec<u32>>,
        params: &GenerationParams,
        constraints: Vec<Option<&mut dyn TokenConstraint>>,
    ) -> Result<Vec<Generation>> {
        if constraints.len() != prompts.len() {
            return Err(EngineError::InvalidParameter {
                name: "constraints",
                reason: format!("{} constraints for {} prompts", constraints.len(), prompts.len()),
            });
        }
        prompts.into_iter().zip(constraints).map(|(p, c)| self.generate_tokens(p, params, c, &mut |_| true)).collect()
    }

    /// The log-probability (natural log, summed over its tokens) of each
    /// continuation right after `prompt`, by teacher forcing: how likely
    /// the model finds each text as the next thing it writes. Used to
    /// compare a fixed set of answers (labels) without sampling. A prompt
    /// longer than the context is handled by `policy` (room is left for the
    /// longest continuation).
    fn score_continuations(&mut self, prompt: Vec<u32>, continuations: &[Vec<u32>], policy: ContextPolicy) -> Result<Vec<f32>>;

    /// Names who the following calls work for (a user id). Cached prompt
    /// state is only reused within one scope, so one user's persona is never
    /// served to another. The default scope is the empty string.
    fn set_cache_scope(&mut self, _scope: &str) {}

    /// Answers a conversation: renders the template and generates.
    fn chat(&mut self, messages: &[ChatMessage], params: &GenerationParams, sink: &mut TextSink<'_>) -> Result<Generation> {
        let prompt = self.render_chat(messages)?;
        self.generate(&prompt, params, sink)
    }
}

/// A quantized GGUF chat model running on candle.
pub struct GgufChatModel {
    pub(crate) backend: Backend,
    pub(crate) tokenizer: GgufTokenizer,
    pub(crate) template: ChatTemplate,
    pub(crate) add_bos: bool,
    pub(crate) info: ModelInfo,
    logits: Vec<f32>,
    /// The tokens in the working KV cache, in order.
    kv_tokens: Vec<u32>,
    /// Who the cached state belongs to (see [`ChatModel::set_cache_scope`]).
    pub(crate) scope: String,
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
        let arch = gguf.architecture();
        let beside = path.with_file_name("tokenizer.json");
        let make_tokenizer = |gguf: &GgufFile| if beside.exists() { GgufTokenizer::from_file(&beside, Some(gguf)) } else { GgufTokenizer::from_gguf(gguf) };
        let chat_template = gguf.get_str("tokenizer.chat_template").map(str::to_string);
        let add_bos = gguf.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(gguf.get_str("tokenizer.ggml.model") == Some("llama"));
        let context_length = gguf.context_length();
        let name = gguf.model_name();
        let own = crate::decoder::Decoder::supports(arch);
        if device.is_cpu() {
            tracing::info!(kernels = crate::decoder::qkernels::isa().name(), "CPU instruction set of the own quantized kernels");
        }
        // Types the own decoder multiplies natively need no conversion.
        let native: Vec<GgmlDType> = if options.native_kernels && own && !options.device_ops {
            [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q4K, GgmlDType::Q6K]
                .into_iter()
                .filter(|t| crate::decoder::native_kind(*t, device).is_some())
                .collect()
        } else {
            Vec::new()
        };
        let repacked = if options.repack && device.is_cpu() && !options.device_ops && crate::repack::needs_repack(gguf.content(), &native) {
            let beside = || path.parent().unwrap_or(Path::new(".")).join(".repacked");
            let dir = options.repack_dir.clone().unwrap_or_else(beside);
            let target = crate::repack::repacked_path(&dir, gguf.path())?;
            if !target.exists() {
                tracing::info!(from = %path.display(), to = %target.display(), "repacking slow quantization types to Q8_0 (once)");
                crate::repack::repack(gguf.path(), gguf.content(), &target)?;
            }
            Some(GgufFile::open(&target)?)
        } else {
            None
        };
        let weights_path = repacked.as_ref().map_or_else(|| gguf.path().to_path_buf(), |r| r.path().to_path_buf());
        let file = File::open(&weights_path).map_err(|e| EngineError::io(&weights_path, e))?;
        let during = format!("loading {} weights from {}", arch, weights_path.display());
        let repacked_path = repacked.as_ref().map(|r| r.path().to_path_buf());
        let path = gguf.path().to_path_buf();
        let (tokenizer, backend) = if own {
            // The tokenizer (vocabularies of 150,000 entries and merges) is
            // built on a second thread while the weights load.
            let weights = repacked.as_ref().unwrap_or(&gguf);
            std::thread::scope(|s| {
                let tokenizer = s.spawn(|| make_tokenizer(&gguf));
                let backend = Backend::load_own(arch, weights.content(), &file, device, !native.is_empty(), options.device_ops).during(&during);
                let tokenizer = tokenizer.join().unwrap_or_else(|_| Err(EngineError::Tokenizer("building the tokenizer panicked".into())));
                (tokenizer, backend)
            })
        } else {
            let tokenizer = make_tokenizer(&gguf);
            let (_, content, _) = repacked.unwrap_or(gguf).into_parts();
            (tokenizer, Backend::load(arch, content, &file, device, !native.is_empty()).during(&during))
        };
        let (tokenizer, backend) = (tokenizer?, backend?);
        let token_text = |id: Option<u32>| id.and_then(|i| tokenizer.token(i)).unwrap_or_default();
        let template = ChatTemplate::new(chat_template.as_deref(), &token_text(tokenizer.bos_id()), &token_text(tokenizer.eos_id()))?;
        let repacked = repacked_path;
        let info = ModelInfo {
            name,
            path,
            architecture: arch.to_string(),
            context_length,
            vocab_size: tokenizer.vocab_size(),
            load_ms: start.elapsed().as_secs_f64() * 1000.0,
            repacked,
        };
        Ok(GgufChatModel { backend, tokenizer, template, add_bos, info, logits: Vec::new(), kv_tokens: Vec::new(), scope: String::new() })
    }

    /// Tokenizes a templated prompt the way [`ChatModel::generate`] does
    /// (special tokens parsed, BOS added when the model asks for it).
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>> {
        prompt_ids(&self.tokenizer, self.add_bos, prompt)
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
        constraint: Option<&mut dyn TokenConstraint>,
        sink: &mut TextSink<'_>,
    ) -> Result<Generation> {
        if params.max_tokens == 0 {
            return Err(EngineError::InvalidParameter { name: "max_tokens", reason: "must be at least 1".into() });
        }
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter { name: "prompt", reason: "the prompt is empty".into() });
        }
        let prompt = fit_context(prompt, params.max_tokens, self.info.context_length, params.context_policy)?;
        let constraint = constraint.map(|c| Box::new(c) as Box<dyn TokenConstraint + '_>);
        let mut decoding = Decoding::new(prompt, params.clone(), constraint)?;
        let start = Instant::now();
        let cached_tokens = match self.backend.prefill(&self.scope, &mut self.kv_tokens, &decoding.history, &mut self.logits) {
            Ok(reuse) => reuse.tokens,
            Err(e) => {
                self.reset_cache();
                return Err(e);
            }
        };
        let prefill_ms = start.elapsed().as_secs_f64() * 1000.0;
        let decode_start = Instant::now();
        let prompt_tokens = decoding.history.len();
        // The same step as a batch's, on this sequence's own forward: feed
        // what the last step appended, then decide what comes next.
        let mut fed = prompt_tokens;
        let mut cancelled = false;
        let result = (|| -> Result<()> {
            while decoding.finish.is_none() {
                if fed < decoding.history.len() {
                    self.backend.feed(&mut self.kv_tokens, &decoding.history[fed..], &mut self.logits)?;
                    fed = decoding.history.len();
                }
                decoding.step(&self.tokenizer, &mut self.logits)?;
                let out = std::mem::take(&mut decoding.out);
                if !out.is_empty() && !sink(&out) {
                    cancelled = true;
                    return Ok(());
                }
            }
            Ok(())
        })();
        if let Err(e) = result.and_then(|()| self.backend.remember(&self.scope, &self.kv_tokens)) {
            self.reset_cache();
            return Err(e);
        }
        let finish = if cancelled {
            FinishReason::Cancelled
        } else {
            let (finish, tail) = decoding.end();
            if !tail.is_empty() {
                sink(&tail);
            }
            finish
        };
        let generation = Generation {
            text: decoding.stops.text().to_string(),
            completion_tokens: decoding.generated.len(),
            tokens: decoding.generated,
            prompt_tokens,
            cached_tokens,
            finish_reason: finish,
            prefill_ms,
            decode_ms: decode_start.elapsed().as_secs_f64() * 1000.0,
        };
        tracing::debug!(
            model = %self.info.name,
            prompt_tokens,
            cached_tokens,
            completion_tokens = generation.completion_tokens,
            prefill_ms = generation.prefill_ms.round(),
            decode_ms = generation.decode_ms.round(),
            "generation"
        );
        Ok(generation)
    }

    /// See [`ChatModel::score_continuations`]. The prompt is prefilled
    /// once (the working and prefix caches serve what they hold); each
    /// continuation then costs one single-token forward per token.
    pub fn score_continuations(&mut self, prompt: Vec<u32>, continuations: &[Vec<u32>], policy: ContextPolicy) -> Result<Vec<f32>> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidParameter { name: "prompt", reason: "the prompt is empty".into() });
        }
        if let Some(i) = continuations.iter().position(Vec::is_empty) {
            return Err(EngineError::InvalidParameter { name: "continuations", reason: format!("continuation {i} has no tokens") });
        }
        let longest = continuations.iter().map(Vec::len).max().unwrap_or(1);
        let prompt = fit_context(prompt, longest, self.info.context_length, policy)?;
        let result = (|| -> Result<Vec<f32>> {
            let mut scores = Vec::with_capacity(continuations.len());
            for continuation in continuations {
                // Brings the working cache back to the prompt (it holds the
                // previous continuation), re-running only its last token.
                self.backend.prefill(&self.scope, &mut self.kv_tokens, &prompt, &mut self.logits)?;
                let mut total = 0.0f64;
                for (k, &token) in continuation.iter().enumerate() {
                    total += log_prob(&self.logits, token)?;
                    if k + 1 < continuation.len() {
                        self.backend.feed(&mut self.kv_tokens, &[token], &mut self.logits)?;
                    }
                }
                scores.push(total as f32);
            }
            self.backend.remember(&self.scope, &self.kv_tokens)?;
            Ok(scores)
        })();
        if result.is_err() {
            self.reset_cache();
        }
        result
    }

    /// Forgets the KV cache (after an error its content is unknown).
    pub(crate) fn reset_cache(&mut self) {
        self.backend.reset(&mut self.kv_tokens);
    }

    /// The tokens whose keys and values are in the working KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.kv_tokens
    }

    /// Size and budget of the prefix cache (`None` for architectures that
    /// run on candle-transformers' models, which have none).
    pub fn prefix_cache_stats(&self) -> Option<PrefixStats> {
        self.backend.prefix_stats()
    }

    /// Sets the prefix cache's byte budget; 0 turns prefix reuse across
    /// calls off (a prompt that extends the previous call still reuses it).
    pub fn set_prefix_cache_budget(&mut self, bytes: usize) {
        self.backend.set_prefix_budget(bytes);
    }

    /// Forgets the working KV cache and every cached prefix.
    pub fn clear_caches(&mut self) {
        self.reset_cache();
        self.backend.clear_prefixes();
    }
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

    fn generate_batch(&mut self, prompts: Vec<Vec<u32>>, params: &GenerationParams) -> Result<Vec<Generation>> {
        GgufChatModel::generate_batch(self, prompts, params)
    }

    fn generate_batch_constrained(
        &mut self,
        prompts: Vec<Vec<u32>>,
        params: &GenerationParams,
        constraints: Vec<Option<&mut dyn TokenConstraint>>,
    ) -> Result<Vec<Generation>> {
        GgufChatModel::generate_batch_constrained(self, prompts, params, constraints)
    }

    fn score_continuations(&mut self, prompt: Vec<u32>, continuations: &[Vec<u32>], policy: ContextPolicy) -> Result<Vec<f32>> {
        GgufChatModel::score_continuations(self, prompt, continuations, policy)
    }

    fn set_cache_scope(&mut self, scope: &str) {
        if self.scope != scope {
            self.reset_cache();
            self.scope = scope.to_string();
        }
    }
}

/// The natural log-probability of `token` under the softmax of `logits`.
fn log_prob(logits: &[f32], token: u32) -> Result<f64> {
    let Some(&chosen) = logits.get(token as usize) else {
        return Err(EngineError::InvalidParameter { name: "continuations", reason: format!("token {token} is outside the vocabulary ({})", logits.len()) });
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    Ok(f64::from(chosen - max) - sum.ln())
}
