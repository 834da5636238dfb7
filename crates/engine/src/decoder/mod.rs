//! The project's own forward pass for Llama- and Qwen2-style decoders on
//! candle's quantized matmuls.
//!
//! candle-transformers' quantized models keep their KV cache private and
//! concatenate it on every step, which rules out reusing a cached prefix
//! and decoding several sequences together. This decoder keeps the weights
//! apart from the state: every sequence owns a [`KvCache`], and one forward
//! call runs any number of sequences, each with its own new tokens and
//! position. The token rows of all sequences go through the linear layers
//! together (one pass over the weights for the whole batch); attention runs
//! per sequence over its own cache. Quantized matmuls compute every row
//! independently, so a sequence's logits do not depend on what else is in
//! the batch (tests check batched and one-by-one greedy decoding agree).

mod arena;
mod attention;
mod embed;
mod f8;
mod kv;
mod linear;
mod mapped;
pub mod prefix;
mod qblock;
pub mod qkernels;
pub(crate) mod qtile;

use std::collections::HashMap;

use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Module, Tensor};
use candle_transformers::quantized_nn::RmsNorm;

pub use kv::KvCache;

use crate::gguf::Architecture;
use embed::Embeddings;
use linear::Linear;
pub(crate) use mapped::ModelMap;

pub(crate) use linear::native_kind;

/// Shape facts read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Model width.
    pub hidden: usize,
    /// Longest sequence (positions with rotary tables).
    pub context_length: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// NeoX-style rotary pairs `(i, i + d/2)` (Qwen2) instead of
    /// interleaved `(2i, 2i + 1)` (Llama as stored in GGUF).
    pub rope_neox: bool,
}

struct Layer {
    attn_norm: RmsNorm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    bias: Option<(Tensor, Tensor, Tensor)>,
    wo: Linear,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The weights of a decoder-only transformer (no per-sequence state).
pub struct Decoder {
    config: DecoderConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    /// Attention by the CPU kernel of [`attention`] (masking by
    /// construction); otherwise by tensor ops under a causal mask, as on a
    /// GPU.
    cpu_attention: bool,
    masks: HashMap<(usize, usize), Tensor>,
}

/// One sequence's part of a forward call: its new tokens and its cache
/// (the tokens go at position `cache.len()`).
pub struct SeqInput<'a> {
    /// Tokens to run, at least one.
    pub tokens: &'a [u32],
    /// The sequence's cache; it grows by `tokens.len()`.
    pub cache: &'a mut KvCache,
}

impl Decoder {
    /// Whether this decoder implements `arch`.
    pub fn supports(arch: Architecture) -> bool {
        matches!(arch, Architecture::Llama | Architecture::Qwen2)
    }

    /// Loads the weights of a Llama or Qwen2 GGUF. With `native`, Q4_1 and
    /// Q5_0 matrices use the AVX2 kernels of [`qkernels`] where the CPU has
    /// them (read in place from `map` when given); otherwise every matrix
    /// goes through candle's `QMatMul`. With `device_ops`, the CPU runs the
    /// path a GPU runs (dense embeddings, attention as tensor ops).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_gguf<R: std::io::Read + std::io::Seek>(
        arch: Architecture,
        ct: &gguf_file::Content,
        reader: &mut R,
        map: Option<&ModelMap>,
        device: &Device,
        native: bool,
        device_ops: bool,
    ) -> candle_core::Result<Self> {
        let prefix = arch.gguf_name();
        let md = |key: &str| match ct.metadata.get(&format!("{prefix}.{key}")) {
            Some(v) => Ok(v),
            None => candle_core::bail!("the GGUF has no {prefix}.{key}"),
        };
        let heads = md("attention.head_count")?.to_u32()? as usize;
        let hidden = md("embedding_length")?.to_u32()? as usize;
        let head_dim = hidden / heads;
        let config = DecoderConfig {
            layers: md("block_count")?.to_u32()? as usize,
            heads,
            kv_heads: md("attention.head_count_kv").and_then(|v| v.to_u32()).map(|v| v as usize).unwrap_or(heads),
            head_dim,
            hidden,
            context_length: md("context_length")?.to_u32()? as usize,
            rms_eps: md("attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: md("rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0),
            rope_neox: arch == Architecture::Qwen2,
        };
        if config.kv_heads == 0 || !heads.is_multiple_of(config.kv_heads) || head_dim * heads != hidden {
            candle_core::bail!("unsupported head layout: {heads} heads, {} kv heads, width {hidden}", config.kv_heads);
        }
        let embedded = Arc::new(ct.tensor(reader, "token_embd.weight", device)?);
        let norm = RmsNorm::from_qtensor(ct.tensor(reader, "output_norm.weight", device)?, config.rms_eps)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            Linear::load(native, ct, map, reader, "output.weight", device)?
        } else {
            Linear::from_arc(native, embedded.clone())?
        };
        let embeddings = Embeddings::new(embedded, device, !device_ops)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let name = |n: &str| format!("blk.{i}.{n}");
            let mut t = |n: &str| ct.tensor(reader, &name(n), device);
            let bias = match (t("attn_q.bias"), t("attn_k.bias"), t("attn_v.bias")) {
                (Ok(q), Ok(k), Ok(v)) => Some((q.dequantize(device)?, k.dequantize(device)?, v.dequantize(device)?)),
                _ => None,
            };
            let attn_norm = RmsNorm::from_qtensor(t("attn_norm.weight")?, config.rms_eps)?;
            let ffn_norm = RmsNorm::from_qtensor(t("ffn_norm.weight")?, config.rms_eps)?;
            let mut linear = |n: &str| Linear::load(native, ct, map, reader, &name(n), device);
            layers.push(Layer {
                attn_norm,
                wq: linear("attn_q.weight")?,
                wk: linear("attn_k.weight")?,
                wv: linear("attn_v.weight")?,
                bias,
                wo: linear("attn_output.weight")?,
                ffn_norm,
                gate: linear("ffn_gate.weight")?,
                up: linear("ffn_up.weight")?,
                down: linear("ffn_down.weight")?,
            });
        }
        let (cos, sin) = rotary_tables(head_dim, config.rope_base, config.context_length, device)?;
        let cpu_attention = device.is_cpu() && !device_ops;
        Ok(Decoder { config, embeddings, layers, norm, output, cos, sin, device: device.clone(), cpu_attention, masks: HashMap::new() })
    }

    /// An empty cache for one sequence of this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.layers, self.config.kv_heads, self.config.head_dim, self.config.context_length, &self.device)
    }

    /// Bytes one cached position takes.
    pub fn bytes_per_position(&self) -> usize {
        kv::bytes_for(1, self.config.layers, self.config.kv_heads, self.config.head_dim)
    }

    /// Runs every sequence's new tokens after its cache and returns the
    /// logits of each sequence's last new token, shape `(sequences, vocab)`.
    /// On error the caches may hold partial layers: callers reset them.
    pub fn forward(&mut self, seqs: &mut [SeqInput<'_>]) -> candle_core::Result<Tensor> {
        if seqs.is_empty() || seqs.iter().any(|s| s.tokens.is_empty()) {
            candle_core::bail!("a forward needs at least one sequence with at least one token");
        }
        for s in seqs.iter_mut() {
            s.cache.reserve(s.tokens.len())?;
        }
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        let mut x = self.embeddings.lookup(&ids, &self.device)?;
        // Row ranges and masks of each sequence.
        let mut spans = Vec::with_capacity(seqs.len());
        let mut offset = 0;
        for s in seqs.iter() {
            let (pos, len) = (s.cache.len(), s.tokens.len());
            // The CPU attention masks by construction (each row reads only
            // the keys it may see).
            let mask = if len > 1 && !self.cpu_attention { Some(self.mask(len, pos)?) } else { None };
            spans.push((offset, len, pos, mask));
            offset += len;
        }
        for li in 0..self.layers.len() {
            let layer = &self.layers[li];
            let h = layer.attn_norm.forward(&x)?;
            let [mut q, mut k, mut v] = Linear::forward_all([&layer.wq, &layer.wk, &layer.wv], &h)?;
            if let Some((bq, bk, bv)) = &layer.bias {
                q = q.broadcast_add(bq)?;
                k = k.broadcast_add(bk)?;
                v = v.broadcast_add(bv)?;
            }
            let mut outs = Vec::with_capacity(seqs.len());
            for (s, (start, len, pos, mask)) in seqs.iter_mut().zip(&spans) {
                let y = self.attend(li, s.cache, &q.narrow(0, *start, *len)?, &k.narrow(0, *start, *len)?, &v.narrow(0, *start, *len)?, *pos, mask.as_ref())?;
                outs.push(y);
            }
            let attn = if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(&outs, 0)? };
            let layer = &self.layers[li];
            x = (layer.wo.forward(&attn)? + x)?;
            let h = layer.ffn_norm.forward(&x)?;
            let ff = Linear::forward_swiglu(&layer.gate, &layer.up, &h)?;
            x = (layer.down.forward(&ff)? + x)?;
        }
        for (s, (_, len, _, _)) in seqs.iter_mut().zip(&spans) {
            s.cache.advance(*len);
        }
        let last: Vec<u32> = spans.iter().map(|(start, len, _, _)| (start + len - 1) as u32).collect();
        let x = x.index_select(&Tensor::new(last.as_slice(), &self.device)?, 0)?;
        let x = self.norm.forward(&x)?;
        self.output.forward(&x)?.to_dtype(DType::F32)
    }

    /// Attention of one sequence's `seq` new rows (`q`: `(seq, heads *
    /// head_dim)`, `k`/`v`: `(seq, kv_heads * head_dim)`) over its cache.
    #[allow(clippy::too_many_arguments)]
    fn attend(&self, layer: usize, cache: &mut KvCache, q: &Tensor, k: &Tensor, v: &Tensor, pos: usize, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let seq = q.dim(0)?;
        let group = c.heads / c.kv_heads;
        let heads_first = |t: &Tensor, n: usize| t.reshape((1, seq, n, c.head_dim))?.transpose(1, 2)?.contiguous();
        let (cos, sin) = (self.cos.narrow(0, pos, seq)?, self.sin.narrow(0, pos, seq)?);
        let rope = |t: &Tensor| if c.rope_neox { candle_nn::rotary_emb::rope(t, &cos, &sin) } else { candle_nn::rotary_emb::rope_i(t, &cos, &sin) };
        let q = rope(&heads_first(q, c.heads)?)?;
        let k = rope(&heads_first(k, c.kv_heads)?)?.squeeze(0)?;
        let v = heads_first(v, c.kv_heads)?.squeeze(0)?;
        let pos_in_cache = cache.len();
        let (keys, values) = cache.append(layer, &k, &v)?;
        if self.cpu_attention {
            if let Some((kt, vt)) = cache.layer(layer) {
                let rows = q.squeeze(0)?.transpose(0, 1)?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let shape = attention::Shape { heads: c.heads, kv_heads: c.kv_heads, head_dim: c.head_dim, capacity: cache.capacity(), pos: pos_in_cache };
                let out = attention::attend(&rows, kt, vt, &shape)?;
                return Tensor::from_vec(out, (seq, c.hidden), &self.device);
            }
        }
        // Grouped-query attention without copying keys: the `group` query
        // heads of one KV head are stacked as rows of one matrix.
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let q = (q.reshape((c.kv_heads, group * seq, c.head_dim))? * scale)?;
        let mut att = q.matmul(&keys.t()?)?;
        if let Some(mask) = mask {
            let kv_len = pos + seq;
            att = att.reshape((c.kv_heads, group, seq, kv_len))?.broadcast_add(mask)?.reshape((c.kv_heads, group * seq, kv_len))?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&values)?;
        y.reshape((c.heads, seq, c.head_dim))?.transpose(0, 1)?.contiguous()?.reshape((seq, c.hidden))
    }

    /// The additive causal mask for `seq` new tokens at position `pos`:
    /// shape `(seq, pos + seq)`, `-inf` where a token would see the future.
    fn mask(&mut self, seq: usize, pos: usize) -> candle_core::Result<Tensor> {
        if let Some(m) = self.masks.get(&(seq, pos)) {
            return Ok(m.clone());
        }
        let kv_len = pos + seq;
        let values: Vec<f32> = (0..seq).flat_map(|i| (0..kv_len).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })).collect();
        let mask = Tensor::from_vec(values, (seq, kv_len), &self.device)?;
        if self.masks.len() > 64 {
            self.masks.clear();
        }
        self.masks.insert((seq, pos), mask.clone());
        Ok(mask)
    }
}

/// Rotary cos/sin tables, `(positions, head_dim / 2)`.
fn rotary_tables(head_dim: usize, base: f32, positions: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..head_dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / head_dim as f32)).collect();
    let inv = Tensor::new(inv.as_slice(), device)?;
    let pos = Tensor::arange(0u32, positions as u32, device)?.to_dtype(DType::F32)?.reshape((positions, 1))?;
    let angles = pos.broadcast_mul(&inv.reshape((1, head_dim / 2))?)?;
    Ok((angles.cos()?, angles.sin()?))
}
