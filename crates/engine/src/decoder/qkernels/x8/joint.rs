//! Products of several interleaved matrices that read the same input, for
//! decoding: one pass of the CPU pool over all their row groups
//! ([`matmul_parts`]), and the gated feed-forward's gate and up
//! projections with their combination `silu(gate) * up` in the same tasks
//! ([`matmul_swiglu`]). A decode step's products are small: alone, each
//! pays its own activation quantization, dispatch and tail (the 256-row
//! key and value projections of the 1.5B model stream at a third of the
//! bandwidth of one large matrix), and the combination took two more
//! passes of candle's, each with its own allocation and dispatch.

// Elsewhere than x86-64 these products are never taken (`decoding_acts`
// says `None`), and their kernel calls compile away.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused))]

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::{group_at, packed_len, quantize_rows, Isa, Kind, BLOCK, ROWS};
use crate::decoder::qblock::ActBlock;

/// One matrix of a [`matmul_parts`] product: `n` rows of `kind`
/// interleaved by [`pack`](super::pack).
#[derive(Clone, Copy)]
pub struct Part<'a> {
    /// The quantization type.
    pub kind: Kind,
    /// The interleaved bytes ([`packed_len`] of `n` rows).
    pub packed: &'a [u8],
    /// Rows (a multiple of [`ROWS`]).
    pub n: usize,
}

/// Several interleaved matrices of `k` values per row times the same `m`
/// activation rows, in one pass: the activations are quantized once and
/// the CPU pool goes over all the matrices' row groups as one list, so a
/// small matrix (a 256-row key or value projection) costs no dispatch and
/// no tail of its own. Each part's result is `(m, n)` as [`matmul`](super::matmul) gives
/// it, with the same bits. `None` where this decoding path does not apply:
/// no parts, more than four activation rows, a CPU without AVX2, parts
/// whose kinds group activations differently ([`Kind::act_group`]), or
/// bytes that do not hold a part's rows.
pub fn matmul_parts(parts: &[Part<'_>], k: usize, x: &[f32], m: usize) -> Option<Vec<Vec<f32>>> {
    matmul_parts_on(super::super::isa(), parts, k, x, m)
}

/// [`matmul_parts`] on a given instruction set (one this CPU lacks falls
/// back to the best it has).
pub fn matmul_parts_on(isa: Isa, parts: &[Part<'_>], k: usize, x: &[f32], m: usize) -> Option<Vec<Vec<f32>>> {
    let acts = decoding_acts(isa, parts, k, x, m)?;
    let blocks = k / BLOCK;
    // Each part's first row in the joint list of rows.
    let starts: Vec<usize> = parts.iter().scan(0, |at, p| Some(std::mem::replace(at, *at + p.n))).collect();
    let total: usize = parts.iter().map(|p| p.n).sum();
    let y = super::super::over_tasks(total, m, |first, out, _| {
        #[cfg(target_arch = "x86_64")]
        for g in 0..out.len() / m / ROWS {
            let row = first + g * ROWS;
            let p = starts.partition_point(|&s| s <= row) - 1;
            let part = &parts[p];
            let y = avx2::group(part.kind, group_of(part, k, (row - starts[p]) / ROWS), &acts, blocks, m, true);
            for (r, lanes) in y.iter().enumerate() {
                let to = (g * ROWS + r) * m;
                out[to..to + m].copy_from_slice(&lanes[..m]);
            }
        }
    });
    let columns = |p: &Part<'_>, start: usize| {
        let mut out = Vec::with_capacity(m * p.n);
        for i in 0..m {
            out.extend_from_slice(&y[i * total + start..i * total + start + p.n]);
        }
        out
    };
    Some(parts.iter().zip(&starts).map(|(p, &start)| columns(p, start)).collect())
}

/// The activations of `x` (`m` rows of `k`) quantized for `parts`, where
/// the decoding kernel takes them: at most four activation rows, AVX2, all
/// parts grouping activations alike ([`Kind::act_group`]) and their bytes
/// holding their rows.
fn decoding_acts(isa: Isa, parts: &[Part<'_>], k: usize, x: &[f32], m: usize) -> Option<Vec<ActBlock>> {
    let isa = isa.or_supported_below();
    let act_group = parts.first()?.kind.act_group();
    let fits = |p: &Part<'_>| p.kind.act_group() == act_group && packed_len(p.kind, p.n, k) == Some(p.packed.len());
    if !cfg!(target_arch = "x86_64") || isa < Isa::Avx2 || m == 0 || m > 4 || x.len() != m * k || !parts.iter().all(fits) {
        return None;
    }
    Some(quantize_rows(x, k, act_group))
}

/// The bytes of group `g` (rows `8g..8g + 8`) of `part`.
fn group_of<'a>(part: &Part<'a>, k: usize, g: usize) -> &'a [u8] {
    group_at(part.packed, part.kind, k, g)
}

/// `silu(x G^T) * (x U^T)`, `(m, n)`, for the gate `G` and up `U`
/// projections (`n` rows each) of a gated feed-forward layer: each task
/// multiplies a group of gate rows and the same group of up rows and
/// combines them, so the combination runs in the pool too and no
/// intermediate result is kept. The same bits as the two products followed
/// by candle's `silu` (`v / (1 + exp(-v))`) and product. `None` where
/// [`matmul_parts`] is, or for projections of different sizes.
pub fn matmul_swiglu(gate: Part<'_>, up: Part<'_>, k: usize, x: &[f32], m: usize) -> Option<Vec<f32>> {
    matmul_swiglu_on(super::super::isa(), gate, up, k, x, m)
}

/// [`matmul_swiglu`] on a given instruction set (one this CPU lacks falls
/// back to the best it has).
pub fn matmul_swiglu_on(isa: Isa, gate: Part<'_>, up: Part<'_>, k: usize, x: &[f32], m: usize) -> Option<Vec<f32>> {
    if gate.n != up.n {
        return None;
    }
    let acts = decoding_acts(isa, &[gate, up], k, x, m)?;
    let blocks = k / BLOCK;
    Some(super::super::over_tasks(gate.n, m, |first, out, _| {
        #[cfg(target_arch = "x86_64")]
        for g in 0..out.len() / m / ROWS {
            let group = first / ROWS + g;
            let a = avx2::group(gate.kind, group_of(&gate, k, group), &acts, blocks, m, true);
            let b = avx2::group(up.kind, group_of(&up, k, group), &acts, blocks, m, true);
            for r in 0..ROWS {
                for i in 0..m {
                    let v = a[r][i];
                    out[(g * ROWS + r) * m + i] = v / (1.0 + (-v).exp()) * b[r][i];
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::qkernels::tests::blocks;

    #[test]
    fn parts_multiply_as_one_with_the_same_bits_as_each_alone() {
        // A 256-row part of each k-quant between longer ones, and part
        // sizes that are not multiples of a task's rows.
        let k = 512;
        let shapes = [(Kind::Q4K, 40), (Kind::Q6K, 8), (Kind::Q4K, 256), (Kind::Q6K, 24)];
        let packed: Vec<Vec<u8>> =
            shapes.iter().enumerate().map(|(i, &(kind, n))| super::super::pack(kind, &blocks(kind, n * k / 256, 3 + i as u32), n, k).unwrap()).collect();
        let parts: Vec<Part<'_>> = shapes.iter().zip(&packed).map(|(&(kind, n), p)| Part { kind, packed: p, n }).collect();
        for m in 1..=4 {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
            for isa in Isa::ALL.into_iter().filter(|isa| isa.or_supported_below() >= Isa::Avx2) {
                let got = matmul_parts_on(isa, &parts, k, &x, m).unwrap();
                for (part, y) in parts.iter().zip(&got) {
                    let alone = super::super::matmul_on(isa, part.kind, part.packed, part.n, k, &x, m);
                    assert!(
                        y.len() == alone.len() && y.iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{:?} n={} m={m} {isa:?}",
                        part.kind,
                        part.n
                    );
                }
            }
            assert!(matmul_parts_on(Isa::Portable, &parts, k, &x, m).is_none(), "no AVX2: the caller multiplies each");
        }
        let x = vec![0.5; 5 * k];
        assert!(matmul_parts(&parts, k, &x, 5).is_none(), "prefill goes matrix by matrix");
        let q4_1 = super::super::pack(Kind::Q4_1, &blocks(Kind::Q4_1, 8 * k / 32, 9), 8, k).unwrap();
        let mixed = [parts[0], Part { kind: Kind::Q4_1, packed: &q4_1, n: 8 }];
        assert!(matmul_parts(&mixed, k, &x[..k], 1).is_none(), "activations grouped by 256 and by 32");
        let short = [Part { n: 48, ..parts[0] }];
        assert!(matmul_parts(&short, k, &x[..k], 1).is_none(), "bytes for 40 rows called 48");
    }

    #[test]
    fn the_gated_product_is_silu_of_one_times_the_other_bit_for_bit() {
        let (n, k) = (24, 512);
        let gate_bytes = super::super::pack(Kind::Q4K, &blocks(Kind::Q4K, n * k / 256, 11), n, k).unwrap();
        let up_bytes = super::super::pack(Kind::Q6K, &blocks(Kind::Q6K, n * k / 256, 12), n, k).unwrap();
        let (gate, up) = (Part { kind: Kind::Q4K, packed: &gate_bytes, n }, Part { kind: Kind::Q6K, packed: &up_bytes, n });
        for m in 1..=4 {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 2001) as f32 / 100.0 - 10.0).collect();
            for isa in Isa::ALL.into_iter().filter(|isa| isa.or_supported_below() >= Isa::Avx2) {
                let got = matmul_swiglu_on(isa, gate, up, k, &x, m).unwrap();
                let g = super::super::matmul_on(isa, gate.kind, gate.packed, n, k, &x, m);
                let u = super::super::matmul_on(isa, up.kind, up.packed, n, k, &x, m);
                let device = candle_core::Device::Cpu;
                let want = (candle_nn::ops::silu(&candle_core::Tensor::from_vec(g, (m, n), &device).unwrap()).unwrap()
                    * candle_core::Tensor::from_vec(u, (m, n), &device).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "m={m} {isa:?}: {got:?} vs {want:?}");
                assert!(want.iter().any(|v| *v != 0.0));
            }
        }
        assert!(matmul_swiglu(gate, Part { n: 16, packed: &gate_bytes[..gate_bytes.len() / 3 * 2], ..gate }, k, &vec![1.0; k], 1).is_none(), "sizes differ");
    }
}
