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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn a_prefill_gives_the_bits_of_one_row_at_a_time_and_matches_a_reference() {
        // 6 query heads over 2 key/value heads, 5 cached positions, 11 new rows.
        let (heads, kv_heads, head_dim, pos, seq, capacity) = (6, 2, 16, 5, 11, 32);
        let k = values(kv_heads * capacity * head_dim, 1);
        let v = values(kv_heads * capacity * head_dim, 2);
        let q = values(seq * heads * head_dim, 3);
        let keys = Tensor::from_vec(k.clone(), (kv_heads, capacity, head_dim), &Device::Cpu).unwrap();
        let vals = Tensor::from_vec(v.clone(), (kv_heads, capacity, head_dim), &Device::Cpu).unwrap();
        let shape = |pos| Shape { heads, kv_heads, head_dim, capacity, pos };
        let all = attend(&q, &keys, &vals, &shape(pos)).unwrap();
        let width = heads * head_dim;
        for t in 0..seq {
            let one = attend(&q[t * width..(t + 1) * width], &keys, &vals, &shape(pos + t)).unwrap();
            assert_eq!(
                one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                all[t * width..(t + 1) * width].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "row {t}"
            );
        }
        // Against softmax(q k / sqrt(d)) v in f64, causal.
        for t in 0..seq {
            for h in 0..heads {
                let base = (h / (heads / kv_heads)) * capacity * head_dim;
                let qr = &q[t * width + h * head_dim..t * width + (h + 1) * head_dim];
                let visible = pos + t + 1;
                let s: Vec<f64> = (0..visible)
                    .map(|j| qr.iter().zip(&k[base + j * head_dim..]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (head_dim as f64).sqrt())
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..head_dim {
                    let want: f64 = (0..visible).map(|j| e[j] / sum * v[base + j * head_dim + d] as f64).sum();
                    let got = all[t * width + h * head_dim + d] as f64;
                    assert!((want - got).abs() < 1e-5, "row {t} head {h} dim {d}: {got} vs {want}");
                }
            }
        }
    }
}
