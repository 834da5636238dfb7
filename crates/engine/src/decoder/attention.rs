//! Causal attention on the CPU, one query row at a time.
//!
//! Each query row's scores, softmax and weighted sum are computed in a fixed
//! order over its visible keys, independent of how many rows run together.
//! So a prompt's last token gets bit-identical logits whether it is
//! prefilled in one chunk or alone after a cached prefix (batched matrix
//! products choose their kernels by shape and do not promise that), and a
//! decode step costs a handful of loops instead of a dozen tensor ops.

use crate::encoder::dot;
use std::sync::Mutex;

use candle_core::{Storage, Tensor};

/// Shapes of one attention call.
pub(crate) struct Shape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Positions the cache tensors have room for (their row stride).
    pub capacity: usize,
    /// Position of the first query row.
    pub pos: usize,
}

/// `q`: `(seq, heads * head_dim)` after rotary embedding; `keys`/`values`:
/// the cache tensors `(kv_heads, capacity, head_dim)` already holding the
/// new positions. Returns `(seq, heads * head_dim)`.
///
/// The unit of parallel work is one query row of one head, so that a
/// decode step (one row) spreads its heads over every thread; each unit's
/// arithmetic is the same however the units are split.
pub(crate) fn attend(q: &[f32], keys: &Tensor, values: &Tensor, s: &Shape) -> candle_core::Result<Vec<f32>> {
    let (k_store, k_layout) = keys.storage_and_layout();
    let (v_store, v_layout) = values.storage_and_layout();
    let (Storage::Cpu(k_cpu), Storage::Cpu(v_cpu)) = (&*k_store, &*v_store) else {
        candle_core::bail!("CPU attention needs CPU tensors");
    };
    let k_all = &k_cpu.as_slice::<f32>()?[k_layout.start_offset()..];
    let v_all = &v_cpu.as_slice::<f32>()?[v_layout.start_offset()..];
    let width = s.heads * s.head_dim;
    let seq = q.len() / width;
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let mut out = vec![0f32; q.len()];
    // Unit `u` is query row `u / heads`, head `u % heads`: its output is the
    // `u`-th run of `head_dim` values of `out`.
    let units: Vec<Mutex<&mut [f32]>> = out.chunks_mut(s.head_dim).map(Mutex::new).collect();
    candle_core::utils::barrier_pool().execute_chunked(units.len(), |range| {
        let mut scores = Vec::with_capacity(s.pos + seq);
        for u in range {
            let Ok(mut o) = units[u].lock() else { continue };
            let (t, h) = (u / s.heads, u % s.heads);
            let visible = s.pos + t + 1;
            let base = (h / group) * s.capacity * s.head_dim;
            let q_row = &q[t * width + h * s.head_dim..t * width + (h + 1) * s.head_dim];
            scores.clear();
            for j in 0..visible {
                let k_row = &k_all[base + j * s.head_dim..base + (j + 1) * s.head_dim];
                scores.push(dot(q_row, k_row) * scale);
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0f32;
            for v in scores.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            o.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                let v_row = &v_all[base + j * s.head_dim..base + (j + 1) * s.head_dim];
                for (a, &b) in o.iter_mut().zip(v_row) {
                    *a += p * b;
                }
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|a| *a *= inv);
        }
    });
    drop(units);
    Ok(out)
}
