//! The aarch64 prefill tiles on the 8-bit matrix-multiply extension
//! (`i8mm`: Cortex-A510/A710/X2 and newer, Apple M2 and newer, Graviton 3
//! and newer): `smmla` multiplies two rows of eight bytes by two columns of
//! eight bytes into a 2x2 tile of 32-bit sums, so one instruction gives two
//! weight rows times two activation rows, where `sdot` gives one row times
//! one. A tile's four integer block sums are exact, as on every path, and
//! the scaling is the reference's fused multiply-adds in the same order,
//! four lanes at a time (one lane per weight row and activation row), so
//! each output has the bits of [`super::super::dot_reference`].

// SIMD intrinsics need `unsafe`: the entry point is only called after a
// runtime check of the CPU features it is compiled for, and all memory
// access goes through bounds-checked slices (loads read exactly one block).
#![allow(unsafe_code)]

use std::arch::aarch64::*;

use super::{load16_i8, q4k_head, q4k_pair, q6k_block, q6k_d, q6k_scales, row, rows_dot, small_block};
use crate::decoder::qkernels::{ActBlock, Kind, Weights};

/// A block of two activation rows as `smmla` reads them: the 64 bytes
/// regrouped by eight (`[row 0: 0-7 | row 1: 0-7]`, then bytes 8-15, 16-23
/// and 24-31 alike).
type ActPair = [int8x16_t; 4];

/// Dot products of every weight row of `w` with the `m` activation rows of
/// `acts` (`blocks` blocks each), into `out[r * m + i]`: tiles of two
/// weight rows by two activation rows, an odd last row of either on the
/// dot-product row kernel.
///
/// # Safety
/// The CPU must have NEON, the dot-product extension and `i8mm`.
#[target_feature(enable = "neon,dotprod,i8mm")]
pub(in crate::decoder::qkernels) unsafe fn times_acts(w: &Weights<'_>, acts: &[ActBlock], blocks: usize, out: &mut [f32], m: usize) {
    let rows = w.rows();
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    let mut pairs: Vec<ActPair> = Vec::with_capacity(blocks);
    for i in (0..m - m % 2).step_by(2) {
        let (a0, a1) = (act(i), act(i + 1));
        pairs.clear();
        pairs.extend(a0.iter().zip(a1).map(|(x, y)| act_pair(x, y)));
        for r in (0..rows - rows % 2).step_by(2) {
            let t = tile(w.kind, w.row(r), w.row(r + 1), a0, a1, &pairs);
            out[r * m + i] = t[0];
            out[r * m + i + 1] = t[1];
            out[(r + 1) * m + i] = t[2];
            out[(r + 1) * m + i + 1] = t[3];
        }
        if rows % 2 == 1 {
            let r = rows - 1;
            out[r * m + i] = row::<true>(w.kind, w.row(r), a0);
            out[r * m + i + 1] = row::<true>(w.kind, w.row(r), a1);
        }
    }
    if m % 2 == 1 {
        // SAFETY: this function's features include the dot-product ones.
        unsafe { rows_dot(w, act(m - 1), out, m, m - 1) };
    }
}

/// The activation block pair `x`, `y` regrouped for `smmla`.
#[inline]
#[target_feature(enable = "neon")]
fn act_pair(x: &ActBlock, y: &ActBlock) -> ActPair {
    let half = |a: &ActBlock, h: usize| vreinterpretq_s64_s8(load16_i8(&a.qs[16 * h..16 * h + 16]));
    let (x0, x1, y0, y1) = (half(x, 0), half(x, 1), half(y, 0), half(y, 1));
    [vzip1q_s64(x0, y0), vzip2q_s64(x0, y0), vzip1q_s64(x1, y1), vzip2q_s64(x1, y1)].map(|v| vreinterpretq_s8_s64(v))
}

/// Weight rows `w0`, `w1` against activation rows `a0`, `a1` (`pairs` their
/// blocks regrouped): `[w0 a0, w0 a1, w1 a0, w1 a1]`, each with the bits of
/// the reference.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn tile(kind: Kind, w0: &[u8], w1: &[u8], a0: &[ActBlock], a1: &[ActBlock], pairs: &[ActPair]) -> [f32; 4] {
    let bb = kind.block_bytes();
    let (mut acc, mut off) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    match kind {
        Kind::Q4_1 | Kind::Q5_0 => {
            for (((b0, b1), (x, y)), p) in w0.chunks_exact(bb).zip(w1.chunks_exact(bb)).zip(a0.iter().zip(a1)).zip(pairs) {
                let (d0, m0, lo0, hi0) = small_block(kind, b0);
                let (d1, m1, lo1, hi1) = small_block(kind, b1);
                let [lo, hi] = halves(lo0, hi0, lo1, hi1, p);
                let isum = vaddq_s32(lo, hi);
                acc = vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_f32(by_weight(d0, d1), by_act(x.d, y.d)));
                off = vfmaq_f32(off, by_weight(m0, m1), by_act(x.s, y.s));
            }
        }
        Kind::Q6K => {
            let z = vdupq_n_s32(Kind::Q6K.zero());
            let supers = w0.chunks_exact(bb).zip(w1.chunks_exact(bb)).zip(a0.chunks_exact(8).zip(a1.chunks_exact(8))).zip(pairs.chunks_exact(8));
            for (((b0, b1), (x8, y8)), p8) in supers {
                let mut sum = vdupq_n_s32(0);
                for (j, p) in p8.iter().enumerate() {
                    let (lo0, hi0) = q6k_block(b0, j);
                    let (lo1, hi1) = q6k_block(b1, j);
                    let [lo, hi] = halves(lo0, hi0, lo1, hi1, p);
                    let ([s00, s01], [s10, s11]) = (q6k_scales(b0, j), q6k_scales(b1, j));
                    let (x, y) = (&x8[j], &y8[j]);
                    let lo = vsubq_s32(lo, vmulq_s32(z, by_act_i32(x.hs[0], y.hs[0])));
                    let hi = vsubq_s32(hi, vmulq_s32(z, by_act_i32(x.hs[1], y.hs[1])));
                    sum = vmlaq_s32(vmlaq_s32(sum, lo, by_weight_i32(s00, s10)), hi, by_weight_i32(s01, s11));
                }
                let ad = by_act(x8[7].d, y8[7].d);
                acc = vfmaq_f32(acc, vcvtq_f32_s32(sum), vmulq_f32(by_weight(q6k_d(b0), q6k_d(b1)), ad));
            }
            // The reference's offset sums stay +0 (Q6_K has no offset).
        }
        Kind::Q4K => {
            let supers = w0.chunks_exact(bb).zip(w1.chunks_exact(bb)).zip(a0.chunks_exact(8).zip(a1.chunks_exact(8))).zip(pairs.chunks_exact(8));
            for (((b0, b1), (x8, y8)), p8) in supers {
                let (d0, dmin0, sc0, mn0) = q4k_head(b0);
                let (d1, dmin1, sc1, mn1) = q4k_head(b1);
                let (mut isum, mut msum) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for p in 0..4 {
                    for (h, ((lo0, hi0), (lo1, hi1))) in q4k_pair(b0, p).into_iter().zip(q4k_pair(b1, p)).enumerate() {
                        let j = 2 * p + h;
                        let [lo, hi] = halves(lo0, hi0, lo1, hi1, &p8[j]);
                        isum = vmlaq_s32(isum, vaddq_s32(lo, hi), by_weight_i32(sc0[j] as i32, sc1[j] as i32));
                        let (x, y) = (&x8[j], &y8[j]);
                        let sums = by_act_i32(x.hs[0] + x.hs[1], y.hs[0] + y.hs[1]);
                        msum = vmlaq_s32(msum, sums, by_weight_i32(mn0[j] as i32, mn1[j] as i32));
                    }
                }
                let ad = by_act(x8[7].d, y8[7].d);
                acc = vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_f32(by_weight(d0, d1), ad));
                off = vfmaq_f32(off, vcvtq_f32_s32(msum), vmulq_f32(by_weight(-dmin0, -dmin1), ad));
            }
        }
    }
    let mut out = [0f32; 4];
    // SAFETY: `out` is four writable floats.
    unsafe { vst1q_f32(out.as_mut_ptr(), vaddq_f32(acc, off)) };
    out
}

/// The exact 2x2 integer products of one block: weight rows 0 and 1
/// (`lo*`: values 0-15, `hi*`: 16-31, unsigned below 128) by the activation
/// pair `p`, over values 0-15 and over 16-31, each as `[w0 a0, w0 a1,
/// w1 a0, w1 a1]`.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn halves(lo0: uint8x16_t, hi0: uint8x16_t, lo1: uint8x16_t, hi1: uint8x16_t, p: &ActPair) -> [int32x4_t; 2] {
    // Weights below 128 read the same as signed bytes.
    let rows = |a: uint8x16_t, b: uint8x16_t| {
        let (a, b) = (vreinterpretq_s64_u8(a), vreinterpretq_s64_u8(b));
        (vreinterpretq_s8_s64(vzip1q_s64(a, b)), vreinterpretq_s8_s64(vzip2q_s64(a, b)))
    };
    let (l0, l1) = rows(lo0, lo1);
    let (h0, h1) = rows(hi0, hi1);
    let zero = vdupq_n_s32(0);
    [smmla(smmla(zero, l0, p[0]), l1, p[1]), smmla(smmla(zero, h0, p[2]), h1, p[3])]
}

/// `[a, a, b, b]`: one value per weight row of a tile.
#[inline]
#[target_feature(enable = "neon")]
fn by_weight(a: f32, b: f32) -> float32x4_t {
    vcombine_f32(vdup_n_f32(a), vdup_n_f32(b))
}

/// `[a, b, a, b]`: one value per activation row of a tile.
#[inline]
#[target_feature(enable = "neon")]
fn by_act(a: f32, b: f32) -> float32x4_t {
    let ab = vset_lane_f32::<1>(b, vdup_n_f32(a));
    vcombine_f32(ab, ab)
}

/// [`by_weight`] for integers.
#[inline]
#[target_feature(enable = "neon")]
fn by_weight_i32(a: i32, b: i32) -> int32x4_t {
    vcombine_s32(vdup_n_s32(a), vdup_n_s32(b))
}

/// [`by_act`] for integers.
#[inline]
#[target_feature(enable = "neon")]
fn by_act_i32(a: i32, b: i32) -> int32x4_t {
    let ab = vset_lane_s32::<1>(b, vdup_n_s32(a));
    vcombine_s32(ab, ab)
}

/// `acc + a b^T` for `a`, `b` two rows of eight signed bytes each: `[a0 b0,
/// a0 b1, a1 b0, a1 b1]` (`smmla`), through inline assembly since the
/// intrinsic is not stable Rust yet.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the function's target features include `i8mm`; registers
    // only, no memory.
    unsafe {
        std::arch::asm!(
            ".arch_extension i8mm",
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}
