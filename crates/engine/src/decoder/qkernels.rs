//! AVX2 matrix multiplication for Q4_1 and Q5_0 weights.
//!
//! candle 0.11 has SIMD CPU kernels for Q4_0, Q8_0 and the k-quants only;
//! Q4_1 and Q5_0 (the tiny model is Q4_1, the small model mostly Q5_0) run
//! scalar code there. Converting them to Q8_0 at load made them fast but
//! 1.3-1.7x larger, and decoding is bound by memory bandwidth, so every
//! token read 30-70% more bytes than llama.cpp does. These kernels read the
//! original blocks: activations are quantized per 32 values to 8 bits (as
//! llama.cpp does: scale `max|x| / 127`), and each block product is an
//! integer dot product of 32 pairs (`maddubs`) scaled once.
//!
//! The work is split over output rows on candle's own CPU pool (the one
//! its quantized matmuls use: a second pool would make the two spin
//! against each other on a 2-core machine); a weight row is
//! decoded once per four activation rows (prefill), so a 512-token chunk
//! does not decode each weight block 512 times.

// SIMD intrinsics need `unsafe`: every call is guarded by a runtime check
// of the CPU features the function was compiled for, and all memory access
// goes through bounds-checked slices (loads read exactly one block).
#![allow(unsafe_code)]

use half::f16;
use std::sync::Mutex;

/// A quantization type these kernels handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `d * q + m`, 4-bit `q`: f16 d, f16 m, 16 bytes of nibbles.
    Q4_1,
    /// `d * (q - 16)`, 5-bit `q`: f16 d, 32 high bits, 16 bytes of nibbles.
    Q5_0,
}

impl Kind {
    /// Bytes per block of 32 weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => 20,
            Kind::Q5_0 => 22,
        }
    }
}

/// Values per block.
pub const BLOCK: usize = 32;

/// Output rows per unit of parallel work.
const ROWS_PER_TASK: usize = 16;

/// One block of quantized activations: `d * qs`, with `s = d * sum(qs)`.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub struct ActBlock {
    qs: [i8; BLOCK],
    d: f32,
    s: f32,
}

/// Whether this CPU runs the kernels (x86-64 with AVX2 and FMA).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Quantizes each row of `x` (`rows` rows of `k` values, `k` a multiple of
/// 32) to 8-bit blocks.
pub fn quantize_rows(x: &[f32], k: usize) -> Vec<ActBlock> {
    x.chunks_exact(BLOCK)
        .map(|v| {
            let amax = v.iter().fold(0f32, |m, &a| m.max(a.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; BLOCK];
            let mut sum = 0i32;
            for (q, &a) in qs.iter_mut().zip(v) {
                *q = (a * id).round() as i8;
                sum += *q as i32;
            }
            debug_assert_eq!(k % BLOCK, 0);
            ActBlock { qs, d, s: d * sum as f32 }
        })
        .collect()
}

/// `out[i * n + j] = dot(x row i, weight row j)` for `m` activation rows and
/// `n` weight rows of `k` values each. `weights` holds `n * k / 32` blocks of
/// `kind`. Callers check [`available`] first; without AVX2 the portable
/// reference is used.
pub fn matmul(kind: Kind, weights: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let blocks = k / BLOCK;
    let row_bytes = blocks * kind.block_bytes();
    debug_assert_eq!(weights.len(), n * row_bytes);
    debug_assert_eq!(x.len(), m * k);
    let acts = quantize_rows(x, k);
    // Results by weight row first (each task owns whole weight rows), then
    // transposed to `(m, n)`.
    let mut by_row = vec![0f32; n * m];
    let fast = available();
    {
        // One uncontended lock per task hands each worker its own rows.
        let tasks: Vec<Mutex<&mut [f32]>> = by_row.chunks_mut(ROWS_PER_TASK * m).map(Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(tasks.len(), |range| {
            for task in range {
                let Ok(mut out) = tasks[task].lock() else { continue };
                let first = task * ROWS_PER_TASK;
                for (r, out_row) in out.chunks_exact_mut(m).enumerate() {
                    let j = first + r;
                    let w = &weights[j * row_bytes..(j + 1) * row_bytes];
                    row_times_acts(kind, w, &acts, blocks, out_row, fast);
                }
            }
        });
    }
    if m == 1 {
        return by_row;
    }
    let mut out = vec![0f32; m * n];
    for (j, row) in by_row.chunks_exact(m).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            out[i * n + j] = v;
        }
    }
    out
}

/// Dot products of one weight row with every activation row.
fn row_times_acts(kind: Kind, w: &[u8], acts: &[ActBlock], blocks: usize, out: &mut [f32], fast: bool) {
    let m = out.len();
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if fast {
        while i + 4 <= m {
            let rows = [&acts[i * blocks..(i + 1) * blocks], &acts[(i + 1) * blocks..(i + 2) * blocks], &acts[(i + 2) * blocks..(i + 3) * blocks], &acts[(i + 3) * blocks..(i + 4) * blocks]];
            // SAFETY: `fast` is `available()`: the CPU has AVX2 and FMA.
            let r = unsafe { avx2::dot_rows::<4>(kind, w, rows) };
            out[i..i + 4].copy_from_slice(&r);
            i += 4;
        }
        while i < m {
            // SAFETY: as above.
            out[i] = unsafe { avx2::dot_rows::<1>(kind, w, [&acts[i * blocks..(i + 1) * blocks]]) }[0];
            i += 1;
        }
        return;
    }
    let _ = fast;
    while i < m {
        out[i] = dot_reference(kind, w, &acts[i * blocks..(i + 1) * blocks]);
        i += 1;
    }
}

/// The 32 integer weights of a block and its scale(s): `(q, d, m)` meaning
/// `d * q + m` (Q5_0: `q` already centred, `m = 0`).
fn decode_block(kind: Kind, b: &[u8]) -> ([i8; BLOCK], f32, f32) {
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut q = [0i8; BLOCK];
    match kind {
        Kind::Q4_1 => {
            let min = f16::from_le_bytes([b[2], b[3]]).to_f32();
            for (j, &byte) in b[4..20].iter().enumerate() {
                q[j] = (byte & 0x0f) as i8;
                q[j + 16] = (byte >> 4) as i8;
            }
            (q, d, min)
        }
        Kind::Q5_0 => {
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for (j, &byte) in b[6..22].iter().enumerate() {
                let lo = (byte & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
                let hi = (byte >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                q[j] = lo as i8 - 16;
                q[j + 16] = hi as i8 - 16;
            }
            (q, d, 0.0)
        }
    }
}

/// Portable dot product of one weight row with one activation row (the
/// definition the SIMD code must match).
pub fn dot_reference(kind: Kind, w: &[u8], acts: &[ActBlock]) -> f32 {
    w.chunks_exact(kind.block_bytes())
        .zip(acts)
        .map(|(b, a)| {
            let (q, d, min) = decode_block(kind, b);
            let dot: i32 = q.iter().zip(&a.qs).map(|(&x, &y)| x as i32 * y as i32).sum();
            d * a.d * dot as f32 + min * a.s
        })
        .sum()
}

/// Dequantizes a whole tensor (tests and checks).
pub fn dequantize(kind: Kind, data: &[u8]) -> Vec<f32> {
    data.chunks_exact(kind.block_bytes())
        .flat_map(|b| {
            let (q, d, min) = decode_block(kind, b);
            q.map(|v| d * v as f32 + min)
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ActBlock, Kind, BLOCK};
    use half::f16;

    /// 32 bytes: nibbles of `qs` in element order (low nibbles are elements
    /// 0-15, high nibbles 16-31).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn nibbles(qs: &[u8; 16]) -> __m256i {
        // SAFETY: `qs` is 16 readable bytes; unaligned load.
        let raw = unsafe { _mm_loadu_si128(qs.as_ptr() as *const __m128i) };
        let low = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(raw, low);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low);
        _mm256_set_m128i(hi, lo)
    }

    /// 32 bytes: 0x10 where bit `i` of `bits` is set, else 0.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn high_bits(bits: u32) -> __m256i {
        let v = _mm256_set1_epi32(bits as i32);
        // Byte i of the result looks at byte i / 8 of `bits` (the 32-bit
        // value is repeated in both 128-bit lanes, so lane-local shuffles
        // reach bytes 2 and 3 from the upper lane).
        let pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        let spread = _mm256_shuffle_epi8(v, pick);
        let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    /// Sum of the products of 32 unsigned bytes `u` (< 128) and 32 signed
    /// bytes `s`, as 8 floats to be added up later.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load_acts(a: &ActBlock) -> __m256i {
        // SAFETY: `qs` is 32 readable bytes; unaligned load.
        unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Dot products of weight row `w` with `R` activation rows, decoding
    /// each weight block once.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_rows<const R: usize>(kind: Kind, w: &[u8], rows: [&[ActBlock]; R]) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut mins = [0f32; R];
        let size = kind.block_bytes();
        for (b, block) in w.chunks_exact(size).enumerate() {
            let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
            match kind {
                Kind::Q4_1 => {
                    let min = f16::from_le_bytes([block[2], block[3]]).to_f32();
                    let qs: &[u8; 16] = match block[4..20].try_into() {
                        Ok(q) => q,
                        Err(_) => return [0.0; R],
                    };
                    let q = nibbles(qs);
                    for r in 0..R {
                        let a = &rows[r][b];
                        let dot = dot_u8_i8(q, load_acts(a));
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), dot, acc[r]);
                        mins[r] += min * a.s;
                    }
                }
                Kind::Q5_0 => {
                    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                    let qs: &[u8; 16] = match block[6..22].try_into() {
                        Ok(q) => q,
                        Err(_) => return [0.0; R],
                    };
                    // The unsigned 5-bit values u = q + 16 in [0, 31] go
                    // straight into maddubs; the offset comes back as
                    // -16 * d * sum(a), from the activation block's sum.
                    let u = _mm256_or_si256(nibbles(qs), high_bits(qh));
                    for r in 0..R {
                        let a = &rows[r][b];
                        let dot = dot_u8_i8(u, load_acts(a));
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), dot, acc[r]);
                        mins[r] -= 16.0 * d * a.s;
                    }
                }
            }
        }
        let _ = BLOCK;
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum(acc[r]) + mins[r];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random-looking blocks of `kind` with scales around 0.01.
    fn blocks(kind: Kind, count: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut out = Vec::new();
        for _ in 0..count {
            let d = f16::from_f32(0.005 + (next() % 100) as f32 * 0.0001);
            out.extend_from_slice(&d.to_le_bytes());
            match kind {
                Kind::Q4_1 => out.extend_from_slice(&f16::from_f32(-0.08 + (next() % 100) as f32 * 0.001).to_le_bytes()),
                Kind::Q5_0 => out.extend_from_slice(&next().to_le_bytes()),
            }
            for _ in 0..16 {
                out.push(next() as u8);
            }
        }
        out
    }

    #[test]
    fn simd_matches_the_reference_and_the_dequantized_product() {
        for kind in [Kind::Q4_1, Kind::Q5_0] {
            let (n, k) = (37, 96); // n not a multiple of the task size
            let w = blocks(kind, n * k / BLOCK, 7);
            for m in [1, 3, 4, 9] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                let out = matmul(kind, &w, n, k, &x, m);
                let acts = quantize_rows(&x, k);
                let dense = dequantize(kind, &w);
                for i in 0..m {
                    for j in 0..n {
                        let reference = dot_reference(kind, &w[j * k / BLOCK * kind.block_bytes()..(j + 1) * k / BLOCK * kind.block_bytes()], &acts[i * k / BLOCK..(i + 1) * k / BLOCK]);
                        let got = out[i * n + j];
                        assert!((got - reference).abs() <= 1e-4 * reference.abs().max(1.0), "{kind:?} m={m} ({i},{j}): {got} vs {reference}");
                        let exact: f32 = (0..k).map(|t| dense[j * k + t] * x[i * k + t]).sum();
                        // 8-bit activations: within a small fraction of the row's magnitude.
                        let scale: f32 = (0..k).map(|t| (dense[j * k + t] * x[i * k + t]).abs()).sum();
                        assert!((got - exact).abs() <= 0.02 * scale.max(1e-3), "{kind:?} ({i},{j}): {got} vs exact {exact}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_or_in_a_batch() {
        for kind in [Kind::Q4_1, Kind::Q5_0] {
            let (n, k, m) = (20, 64, 6);
            let w = blocks(kind, n * k / BLOCK, 11);
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 17.0).collect();
            let all = matmul(kind, &w, n, k, &x, m);
            for i in 0..m {
                let alone = matmul(kind, &w, n, k, &x[i * k..(i + 1) * k], 1);
                assert_eq!(alone, all[i * n..(i + 1) * n].to_vec(), "{kind:?} row {i}");
            }
        }
    }

    #[test]
    fn q5_0_decoding_matches_the_exact_q8_0_conversion() {
        let w = blocks(Kind::Q5_0, 4, 3);
        let q8 = crate::repack::q5_0_to_q8_0(&w).unwrap();
        for (b, (q5, q8)) in w.chunks_exact(22).zip(q8.chunks_exact(34)).enumerate() {
            let (q, _, _) = decode_block(Kind::Q5_0, q5);
            let expected: Vec<i8> = q8[2..].iter().map(|&v| v as i8).collect();
            assert_eq!(q.to_vec(), expected, "block {b}");
        }
    }
}
