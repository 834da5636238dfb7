//! Per-sequence key/value caches with preallocated, growable storage.
//!
//! Each layer keeps one key and one value tensor of shape
//! `(kv_heads, capacity, head_dim)`. New positions are written in place
//! (`slice_set`), so a decode step copies only its own keys and values
//! instead of concatenating the whole cache as candle's models do; attention
//! reads a narrowed view. Truncating a cache (to reuse a shared prefix) only
//! moves its length.

use candle_core::{DType, Device, Tensor};

/// Capacity grows in steps of this many positions.
const GROW_STEP: usize = 256;

/// The key/value cache of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Empty until the first write allocates storage.
    layers: Vec<(Tensor, Tensor)>,
    n_layers: usize,
    len: usize,
    capacity: usize,
    kv_heads: usize,
    head_dim: usize,
    max_len: usize,
    device: Device,
}

impl KvCache {
    /// An empty cache for `layers` layers that may hold up to `max_len`
    /// positions. Storage is allocated on first use.
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, max_len: usize, device: &Device) -> Self {
        KvCache { layers: Vec::new(), n_layers: layers, len: 0, capacity: 0, kv_heads, head_dim, max_len, device: device.clone() }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets every position after the first `len` (no copy).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes of key/value data actually held (not the reserved capacity).
    pub fn bytes(&self) -> usize {
        bytes_for(self.len, self.n_layers, self.kv_heads, self.head_dim)
    }

    /// Makes room for `extra` more positions, growing every layer's storage
    /// (once per [`GROW_STEP`] positions).
    pub(crate) fn reserve(&mut self, extra: usize) -> candle_core::Result<()> {
        let needed = self.len + extra;
        if needed > self.max_len {
            candle_core::bail!("the KV cache would hold {needed} positions, more than the context length {}", self.max_len);
        }
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed.div_ceil(GROW_STEP).saturating_mul(GROW_STEP).max(self.capacity * 2).min(self.max_len);
        if self.layers.is_empty() {
            for _ in 0..self.n_layers {
                let fresh = || Tensor::zeros((self.kv_heads, capacity, self.head_dim), DType::F32, &self.device);
                self.layers.push((fresh()?, fresh()?));
            }
            self.capacity = capacity;
            return Ok(());
        }
        for (k, v) in &mut self.layers {
            *k = grow(k, self.len, capacity, self.kv_heads, self.head_dim, &self.device)?;
            *v = grow(v, self.len, capacity, self.kv_heads, self.head_dim, &self.device)?;
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes layer `layer`'s keys and values (each `(kv_heads, seq, head_dim)`)
    /// at the current end, and returns views of the layer's whole cache
    /// including them. The length only moves with [`KvCache::advance`].
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let seq = k.dim(1)?;
        let (kc, vc) = &self.layers[layer];
        kc.slice_set(k, 1, self.len)?;
        vc.slice_set(v, 1, self.len)?;
        Ok((kc.narrow(1, 0, self.len + seq)?, vc.narrow(1, 0, self.len + seq)?))
    }

    /// Layer `layer`'s whole key and value storage, `(kv_heads, capacity,
    /// head_dim)`.
    pub(crate) fn layer(&self, layer: usize) -> Option<&(Tensor, Tensor)> {
        self.layers.get(layer)
    }

    /// Positions the storage has room for.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Marks `seq` more positions as written (after every layer appended).
    pub(crate) fn advance(&mut self, seq: usize) {
        self.len += seq;
    }

    /// A compact copy of the first `len` positions.
    pub fn snapshot(&self, len: usize) -> candle_core::Result<KvCache> {
        let len = len.min(self.len);
        let layers =
            self.layers.iter().map(|(k, v)| Ok((compact(&k.narrow(1, 0, len)?)?, compact(&v.narrow(1, 0, len)?)?))).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            n_layers: self.n_layers,
            len,
            capacity: len,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            max_len: self.max_len,
            device: self.device.clone(),
        })
    }

    /// Replaces this cache's content with the first `len` positions of
    /// `other` (same model), keeping this cache's storage when it is large
    /// enough.
    pub fn restore_from(&mut self, other: &KvCache, len: usize) -> candle_core::Result<()> {
        let len = len.min(other.len);
        self.len = 0;
        self.reserve(len)?;
        for ((k, v), (ok, ov)) in self.layers.iter().zip(&other.layers) {
            k.slice_set(&ok.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
            v.slice_set(&ov.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
        }
        self.len = len;
        Ok(())
    }
}

/// Bytes of f32 keys and values for `len` positions.
pub(crate) fn bytes_for(len: usize, layers: usize, kv_heads: usize, head_dim: usize) -> usize {
    len * layers * kv_heads * head_dim * 2 * std::mem::size_of::<f32>()
}

fn grow(old: &Tensor, len: usize, capacity: usize, kv_heads: usize, head_dim: usize, device: &Device) -> candle_core::Result<Tensor> {
    let fresh = Tensor::zeros((kv_heads, capacity, head_dim), DType::F32, device)?;
    if len > 0 {
        fresh.slice_set(&old.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
    }
    Ok(fresh)
}

/// A copy of `t` that owns exactly its elements (no shared storage, no
/// unused capacity): an exact `x * 1 + 0` for a contiguous view, whose
/// `copy` would clone the whole underlying buffer.
fn compact(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.is_contiguous() {
        t.affine(1.0, 0.0)
    } else {
        t.contiguous()
    }
}
