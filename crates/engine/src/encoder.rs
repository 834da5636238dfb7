//! Sentence embeddings: a BERT-family encoder (all-MiniLM-L6-v2) on candle,
//! batched, with padding-aware mean pooling and L2 normalisation, exactly as
//! sentence-transformers computes them.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{CandleContext, EngineError, Result};

/// Turns texts into unit-length vectors whose dot product is their cosine
/// similarity.
pub trait Encoder {
    /// The model's name (stored beside every vector made with it).
    fn name(&self) -> &str;

    /// The vector length.
    fn dimension(&self) -> usize;

    /// Embeds a batch of texts; one L2-normalised vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// How many texts go through the model at once.
const DEFAULT_BATCH: usize = 32;

/// A sentence-transformers BERT model loaded from a folder holding
/// `config.json`, `tokenizer.json` and `model.safetensors`.
pub struct BertEncoder {
    name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimension: usize,
    batch_size: usize,
}

impl std::fmt::Debug for BertEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEncoder").field("name", &self.name).field("dimension", &self.dimension).finish()
    }
}

fn need(dir: &Path, file: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    if path.exists() {
        Ok(path)
    } else {
        Err(EngineError::FileNotFound { path })
    }
}

impl BertEncoder {
    /// Loads the encoder from `dir`; `name` labels its vectors.
    pub fn load(dir: impl AsRef<Path>, name: &str, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let bad = |reason: String| EngineError::Encoder { path: dir.to_path_buf(), reason };
        let config_path = need(dir, "config.json")?;
        let config_text = std::fs::read_to_string(&config_path).map_err(|e| EngineError::io(&config_path, e))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|e| bad(format!("config.json: {e}")))?;
        let hidden: serde_json::Value = serde_json::from_str(&config_text).map_err(|e| bad(format!("config.json: {e}")))?;
        let dimension = hidden.get("hidden_size").and_then(|v| v.as_u64()).ok_or_else(|| bad("config.json has no hidden_size".into()))? as usize;
        // sentence-transformers truncates to max_seq_length (256 for MiniLM).
        let max_len = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
            .unwrap_or(512) as usize;
        let tokenizer_path = need(dir, "tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| bad(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| bad(format!("tokenizer truncation: {e}")))?;
        let weights_path = need(dir, "model.safetensors")?;
        let bytes = std::fs::read(&weights_path).map_err(|e| EngineError::io(&weights_path, e))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).during("reading model.safetensors")?;
        let model = BertModel::load(vb, &config).during("building the BERT model")?;
        Ok(BertEncoder { name: name.to_string(), model, tokenizer, device: device.clone(), dimension, batch_size: DEFAULT_BATCH })
    }

    /// Sets how many texts are encoded per forward pass.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Result<Tensor> {
            let data: Vec<Tensor> =
                encodings.iter().map(|e| Tensor::new(f(e).as_slice(), &self.device)).collect::<candle_core::Result<_>>().during("building encoder inputs")?;
            Tensor::stack(&data, 0).during("stacking encoder inputs")
        };
        let ids = rows(&|e| e.get_ids().to_vec())?;
        let type_ids = rows(&|e| e.get_type_ids().to_vec())?;
        let mask = rows(&|e| e.get_attention_mask().to_vec())?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask)).during("running the encoder")?;
        let pooled = (|| {
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        })()
        .during("mean pooling")?;
        Ok(pooled)
    }
}

impl Encoder for BertEncoder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        // Batches pad to their longest text: batching texts of similar
        // length (as sentence-transformers does) wastes far less compute.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(self.batch_size) {
            let batch_texts: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            for (&i, v) in batch.iter().zip(self.embed_batch(&batch_texts)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// Dot product with eight independent accumulators, which the compiler
/// turns into SIMD (a plain `zip().sum()` is a serial chain of adds, since
/// float addition is not associative).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Cosine similarity of two vectors (any length; 0 for a zero vector).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
