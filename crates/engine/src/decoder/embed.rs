//! Token embeddings: kept quantized on the CPU, rows dequantized on lookup.
//!
//! Dequantizing the whole table at load is what candle's models do; for
//! Qwen2.5-0.5B that is 151,936 x 896 f32 values, 545 MB of memory that
//! llama.cpp never allocates. On the CPU only the rows a forward needs are
//! dequantized (the quantized bytes are read in place). Other devices keep
//! a dense table, where reading the quantized bytes back would copy them.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};

/// The embedding table.
pub(crate) enum Embeddings {
    /// Dequantized `(vocab, hidden)` table.
    Dense(Tensor),
    /// The quantized table (shared with a tied output layer).
    Quantized { table: Arc<QTensor>, vocab: usize, hidden: usize },
}

impl Embeddings {
    /// The table on `device`; `quantized` keeps it quantized where the
    /// device is the CPU.
    pub(crate) fn new(table: Arc<QTensor>, device: &Device, quantized: bool) -> candle_core::Result<Self> {
        let (vocab, hidden) = table.shape().dims2()?;
        let dtype = table.dtype();
        let row_blocks = hidden.checked_div(dtype.block_size()).unwrap_or(0);
        if quantized && device.is_cpu() && row_blocks > 0 && hidden % dtype.block_size() == 0 {
            Ok(Embeddings::Quantized { table, vocab, hidden })
        } else {
            Ok(Embeddings::Dense(table.dequantize(device)?))
        }
    }

    /// The `(ids.len(), hidden)` embeddings of `ids`.
    pub(crate) fn lookup(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Embeddings::Dense(t) => t.embedding(&Tensor::new(ids, device)?),
            Embeddings::Quantized { table, vocab, hidden } => {
                let dtype = table.dtype();
                let row_bytes = hidden / dtype.block_size() * dtype.type_size();
                let data = table.data()?;
                let mut rows = Vec::with_capacity(ids.len() * row_bytes);
                for &id in ids {
                    let id = id as usize;
                    if id >= *vocab {
                        candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
                    }
                    rows.extend_from_slice(&data[id * row_bytes..(id + 1) * row_bytes]);
                }
                let storage = QStorage::from_data(Cow::Owned(rows), device, dtype)?;
                QTensor::new(storage, (ids.len(), *hidden))?.dequantize(device)
            }
        }
    }
}
