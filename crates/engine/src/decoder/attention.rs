//! Causal attention on the CPU, one query row at a time.
//!
//! Each query row's scores, softmax and weighted sum are computed in a fixed
//! order over its visible keys, independent of how many rows run together.
//! So a prompt's last token gets bit-identical logits whether it is
//! prefilled in one chunk or alone after a cached prefix (batched matrix
//! products choose their kernels by shape and do not promise that), and a
//! decode step costs a handful of loops instead of a dozen tensor ops.
//!
//! A prefill's unit of work is a few query rows of all the query heads
//! that share one key/value head: they walk the keys and values together in
//! blocks that stay in the L1 cache, so each block is read from memory once
//! for all of them instead of once per row and head (the keys and values of
//! a long prompt outgrow the L2 cache, and one row at a time was bound by
//! that traffic). Sharing reads changes no arithmetic: every score is the
//! same chain of fused multiply-adds over the head's lanes, and every
//! output value the same sum over the keys in order.

use super::f8::{self, F8, LANES};
use std::sync::Mutex;

use candle_core::{Storage, Tensor};

/// Query rows per unit of work in a prefill.
const ROWS: usize = 4;

/// Bytes of keys (or values) per block walked together: half a 32 KiB L1.
const BLOCK_BYTES: usize = 16 * 1024;

/// Output values of one query held in registers while a block of values is
/// added (eight lane arrays).
const PASS: usize = 8 * LANES;

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
/// A decode step (one row) makes each query head a unit, so that its heads
/// spread over every thread; a prefill groups [`ROWS`] rows of one
/// key/value head's query heads. Each output's arithmetic is the same
/// however the units are formed and split.
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
    let block = (BLOCK_BYTES / (4 * s.head_dim)).max(1);
    let (rows, heads_per_unit) = if seq == 1 { (1, 1) } else { (ROWS, group) };
    let head_runs = s.heads / heads_per_unit;
    let mut out = vec![0f32; q.len()];
    // Output `(t, h)` is the `(t * heads + h)`-th run of `head_dim` values.
    let outputs: Vec<Mutex<&mut [f32]>> = out.chunks_mut(s.head_dim).map(Mutex::new).collect();
    let units = seq.div_ceil(rows) * head_runs;
    candle_core::utils::barrier_pool().execute_chunked(units, |range| {
        let mut scratch = Scratch::default();
        for u in range {
            // Unit `u`: rows `rows * (u / head_runs)..`, query heads
            // `heads_per_unit * (u % head_runs)..`, which share one
            // key/value head.
            let t0 = rows * (u / head_runs);
            let h0 = heads_per_unit * (u % head_runs);
            let kv = (h0 / group) * s.capacity * s.head_dim;
            let queries: Vec<Query<'_>> = (t0..(t0 + rows).min(seq))
                .flat_map(|t| (h0..h0 + heads_per_unit).map(move |h| (t, h)))
                .map(|(t, h)| Query { q: &q[t * width + h * s.head_dim..t * width + (h + 1) * s.head_dim], visible: s.pos + t + 1, out: t * s.heads + h })
                .collect();
            let span = s.pos + (t0 + rows).min(seq);
            let (k, v) = (&k_all[kv..kv + span * s.head_dim], &v_all[kv..kv + span * s.head_dim]);
            scratch.attend(&queries, k, v, s.head_dim, block, scale);
            for (i, query) in queries.iter().enumerate() {
                if let Ok(mut o) = outputs[query.out].lock() {
                    o.copy_from_slice(scratch.output(i, s.head_dim));
                }
            }
        }
    });
    drop(outputs);
    Ok(out)
}

/// One query row of one head in a unit.
struct Query<'a> {
    /// Its `head_dim` values.
    q: &'a [f32],
    /// Keys it sees (causal).
    visible: usize,
    /// Its output's index (row times heads plus head).
    out: usize,
}

/// A thread's buffers: each query's scores (then weights) and sums.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    sums: Vec<f32>,
    acc: Vec<f32>,
    stride: usize,
}

impl Scratch {
    /// Softmax attention of `queries` over the keys `k` and values `v`
    /// (rows of `d` values; each query sees its first `visible` rows),
    /// walked in blocks of `block` rows.
    fn attend(&mut self, queries: &[Query<'_>], k: &[f32], v: &[f32], d: usize, block: usize, scale: f32) {
        let span = queries.iter().map(|x| x.visible).max().unwrap_or(0);
        self.stride = span.max(d);
        self.scores.clear();
        self.scores.resize(queries.len() * self.stride, 0.0);
        for start in (0..span).step_by(block) {
            for (x, row) in queries.iter().zip(self.scores.chunks_exact_mut(self.stride)) {
                let end = (start + block).min(x.visible);
                if end > start {
                    scores(x.q, &k[start * d..end * d], scale, &mut row[start..end]);
                }
            }
        }
        self.sums.clear();
        for (x, row) in queries.iter().zip(self.scores.chunks_exact_mut(self.stride)) {
            let row = &mut row[..x.visible];
            let max = max(row);
            self.sums.push(exp_shifted_sum(row, max));
        }
        // The weighted sums go into each query's row of `acc` (held apart
        // from the weights), block by block of values.
        self.acc.clear();
        self.acc.resize(queries.len() * d, 0.0);
        for start in (0..span).step_by(block) {
            for ((x, row), a) in queries.iter().zip(self.scores.chunks_exact(self.stride)).zip(self.acc.chunks_exact_mut(d)) {
                let end = (start + block).min(x.visible);
                if end > start {
                    add_weighted(&row[start..end], &v[start * d..end * d], a);
                }
            }
        }
        for ((a, sum), row) in self.acc.chunks_exact(d).zip(&self.sums).zip(self.scores.chunks_exact_mut(self.stride)) {
            let inv = 1.0 / sum;
            for (o, x) in row[..d].iter_mut().zip(a) {
                *o = x * inv;
            }
        }
    }

    /// Query `i`'s output after [`Scratch::attend`].
    fn output(&self, i: usize, d: usize) -> &[f32] {
        &self.scores[i * self.stride..i * self.stride + d]
    }
}

/// Adds the products past the last full lane array to `s`.
#[inline(always)]
fn tail(mut s: f32, q: &[f32], k: &[f32]) -> f32 {
    for (a, b) in q.iter().zip(k) {
        s = a.mul_add(*b, s);
    }
    s
}

/// `out[j] = dot(q, k_j) * scale` for the rows `k_j` of `keys` (each
/// `q.len()` values). Four keys at a time keep four independent chains of
/// fused multiply-adds; each key's dot product takes the same steps either
/// way (the lanes in order, [`F8::sum`], the tail).
fn scores(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
    let d = q.len();
    let (qv, qt) = q.as_chunks::<LANES>();
    let row = |j: usize| keys[j * d..(j + 1) * d].as_chunks::<LANES>();
    let mut groups = out.chunks_exact_mut(4);
    let mut j = 0;
    for o in &mut groups {
        let ((k0, t0), (k1, t1), (k2, t2), (k3, t3)) = (row(j), row(j + 1), row(j + 2), row(j + 3));
        let (mut a0, mut a1, mut a2, mut a3) = (F8::zero(), F8::zero(), F8::zero(), F8::zero());
        for (i, x) in qv.iter().enumerate() {
            let x = F8::load(x);
            a0 = x.mul_add(F8::load(&k0[i]), a0);
            a1 = x.mul_add(F8::load(&k1[i]), a1);
            a2 = x.mul_add(F8::load(&k2[i]), a2);
            a3 = x.mul_add(F8::load(&k3[i]), a3);
        }
        o[0] = tail(a0.sum(), qt, t0) * scale;
        o[1] = tail(a1.sum(), qt, t1) * scale;
        o[2] = tail(a2.sum(), qt, t2) * scale;
        o[3] = tail(a3.sum(), qt, t3) * scale;
        j += 4;
    }
    for o in groups.into_remainder() {
        let (k, t) = row(j);
        let mut a = F8::zero();
        for (x, y) in qv.iter().zip(k) {
            a = F8::load(x).mul_add(F8::load(y), a);
        }
        *o = tail(a.sum(), qt, t) * scale;
        j += 1;
    }
}

/// The largest value (`-inf` for none).
fn max(v: &[f32]) -> f32 {
    let (full, rest) = v.as_chunks::<LANES>();
    let m = full.iter().fold(F8::splat(f32::NEG_INFINITY), |m, x| m.max(F8::load(x)));
    rest.iter().fold(m.max_lane(), |m, &x| m.max(x))
}

/// Replaces every `v` by `e^(v - max)` ([`f8::exp`]) and returns their sum,
/// in one order for a given length.
fn exp_shifted_sum(v: &mut [f32], max: f32) -> f32 {
    let (full, rest) = v.as_chunks_mut::<LANES>();
    // `x + (-max)` has the bits of `x - max`.
    let shift = F8::splat(-max);
    let mut acc = F8::zero();
    for x in full {
        let e = f8::exp(F8::load(x).add(shift));
        e.store(x);
        acc = acc.add(e);
    }
    let mut sum = acc.sum();
    for x in rest {
        *x = f8::exp1(*x - max);
        sum += *x;
    }
    sum
}

/// `acc += sum_j w[j] * v_j` over the rows `v_j` of `values` (each
/// `acc.len()` values), each output value's sum taken over the rows in
/// order with fused multiply-adds; [`PASS`] values at a time stay in
/// registers for the whole block.
fn add_weighted(w: &[f32], values: &[f32], acc: &mut [f32]) {
    let d = acc.len();
    let (passes, rest) = acc.as_chunks_mut::<PASS>();
    for (p, out) in passes.iter_mut().enumerate() {
        let (out, _) = out.as_chunks_mut::<LANES>();
        let mut a = [F8::zero(); PASS / LANES];
        for (c, o) in a.iter_mut().zip(out.iter()) {
            *c = F8::load(o);
        }
        for (j, &x) in w.iter().enumerate() {
            let x = F8::splat(x);
            let (row, _) = values[j * d + p * PASS..j * d + (p + 1) * PASS].as_chunks::<LANES>();
            for (c, r) in a.iter_mut().zip(row) {
                *c = x.mul_add(F8::load(r), *c);
            }
        }
        for (c, o) in a.iter().zip(out.iter_mut()) {
            c.store(o);
        }
    }
    let off = d - rest.len();
    for (j, &x) in w.iter().enumerate() {
        for (o, y) in rest.iter_mut().zip(&values[j * d + off..(j + 1) * d]) {
            *o = x.mul_add(*y, *o);
        }
    }
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
        // (query heads, key/value heads, head width, cached positions, new
        // rows, capacity): a small head; a 128-wide one whose keys span
        // several blocks; a width with a tail past its last lane array and
        // keys past one block; one query head per key/value head.
        for (heads, kv_heads, head_dim, pos, seq, capacity) in [(6, 2, 16, 5, 11, 32), (4, 2, 128, 70, 9, 96), (3, 1, 20, 300, 6, 320), (2, 2, 8, 0, 5, 8)] {
            check_attention(heads, kv_heads, head_dim, pos, seq, capacity);
        }
    }

    fn check_attention(heads: usize, kv_heads: usize, head_dim: usize, pos: usize, seq: usize, capacity: usize) {
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
                "head width {head_dim}, row {t}"
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
                    assert!((want - got).abs() < 1e-5, "head width {head_dim}, row {t} head {h} dim {d}: {got} vs {want}");
                }
            }
        }
    }
}
