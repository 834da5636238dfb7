//! Prefill tiles: a task's weight rows (up to 16) repacked so that each
//! 32-bit lane of a register belongs to a different row.
//!
//! For every block of 32 weights and every group of four of them, the
//! packed layout holds those four bytes of all sixteen rows side by side.
//! On AVX-512 VNNI one 512-bit register takes all sixteen rows and
//! `vpdpbusd` with the activation's four bytes broadcast adds them into
//! sixteen integer sums at once. On AVX2 (and AVX-VNNI, the same
//! instruction on 256-bit registers) a register takes eight rows, the two
//! halves of a task run one after the other, and each loaded weight
//! register serves several activation rows; without VNNI the byte products
//! are `maddubs` pairs summed in 16 bits over four groups (exact: weights
//! below 32 and activations within +-127 stay below 2^15) and widened once
//! per half block. A block's integer sums are then scaled and accumulated exactly as
//! [`super::qkernels::dot_reference`] does for one row (`fma(isum, d_w *
//! d_a, acc)`, `fma(m_w, s_a, off)`, `acc + off` at the end), lane by lane,
//! so the results have the same bits as the row-by-row decode path.
//!
//! The repacked copy lives only while the task runs (about 640 bytes per
//! block: 18 KB for a 896-wide row, 97 KB for 4,864), so no second copy of
//! the weights stays in memory; its cost is spread over the activation rows
//! (prefill only: [`super::qkernels`] decodes single rows directly).

// SIMD intrinsics need `unsafe`: the entry point is only called after a
// runtime check of the CPU features it is compiled for, and all memory
// access goes through bounds-checked slices and arrays.
#![allow(unsafe_code)]
// The tiles are x86-64 code; elsewhere only the type is named.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use super::qblock::{for_each_block, ActBlock, Weights, BLOCK};

/// Rows per repacked block (the 32-bit lanes of a 512-bit register).
pub(crate) const LANES: usize = 16;

/// Rows per 256-bit register (AVX2 and AVX-VNNI tiles).
#[cfg(target_arch = "x86_64")]
const HALF: usize = LANES / 2;

/// One block of up to sixteen weight rows, repacked.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Packed {
    /// `q[t][4 * r..4 * r + 4]`: bytes `4t..4t + 4` of row `r`'s unsigned
    /// weights.
    q: [[u8; 4 * LANES]; BLOCK / 4],
    /// Each row's scale `d`.
    d: [f32; LANES],
    /// Each row's offset per unit of activation sum (`m`).
    m: [f32; LANES],
}

impl Packed {
    const ZERO: Packed = Packed { q: [[0; 4 * LANES]; BLOCK / 4], d: [0.0; LANES], m: [0.0; LANES] };
}

/// Repacks the rows of `w` (at most [`LANES`]) into `out`, one [`Packed`]
/// per block; missing rows are zero.
pub(crate) fn pack(w: &Weights<'_>, out: &mut Vec<Packed>) {
    let blocks = w.row_bytes / w.kind.block_bytes() * (w.kind.block_values() / BLOCK);
    out.clear();
    out.resize(blocks, Packed::ZERO);
    for r in 0..w.rows().min(LANES) {
        let mut b = 0;
        for_each_block(w.kind, w.row(r), |u, d, m| {
            if let Some(p) = out.get_mut(b) {
                for (t, quad) in u.chunks_exact(4).enumerate() {
                    p.q[t][4 * r..4 * r + 4].copy_from_slice(quad);
                }
                p.d[r] = d;
                p.m[r] = m;
            }
            b += 1;
        });
    }
}

/// Dot products of the packed rows (`rows` of them) with every activation
/// row (`acts`, `blocks` per row) into `out` (by weight row: `out[r * m +
/// i]`, `m = out.len() / rows`).
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL and VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(crate) unsafe fn times_acts(packed: &[Packed], acts: &[ActBlock], blocks: usize, rows: usize, out: &mut [f32]) {
    let m = out.len() / rows.max(1);
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    let mut put = |i: usize, lanes: &[f32; LANES]| {
        for (r, &v) in lanes.iter().enumerate().take(rows) {
            out[r * m + i] = v;
        }
    };
    let mut i = 0;
    while i + 4 <= m {
        let y = x86::tile::<4>(packed, [act(i), act(i + 1), act(i + 2), act(i + 3)]);
        for (k, lanes) in y.iter().enumerate() {
            put(i + k, lanes);
        }
        i += 4;
    }
    while i < m {
        put(i, &x86::tile::<1>(packed, [act(i)])[0]);
        i += 1;
    }
}

/// [`times_acts`] on 256-bit registers: AVX2 + FMA (`vnni` false) or
/// AVX-VNNI (`vnni` true). Same bits as every other path.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and AVX-VNNI when `vnni` is set.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn times_acts_256(vnni: bool, packed: &[Packed], acts: &[ActBlock], blocks: usize, rows: usize, out: &mut [f32]) {
    let m = out.len() / rows.max(1);
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    let halves = rows.div_ceil(HALF);
    let mut put = |half: usize, i: usize, lanes: &[f32; HALF]| {
        for (r, &v) in lanes.iter().enumerate().take(rows - half * HALF) {
            out[(half * HALF + r) * m + i] = v;
        }
    };
    // Both halves of the task for one group of activation rows before the
    // next group, so that the group stays in the L1 cache.
    let mut i = 0;
    while i + TILE_ROWS <= m {
        let group = std::array::from_fn(|k| act(i + k));
        for half in 0..halves {
            // SAFETY: the caller checked the CPU features.
            let y = unsafe {
                if vnni {
                    x86::tile_vnni::<TILE_ROWS>(packed, half, group)
                } else {
                    x86::tile_avx2::<TILE_ROWS>(packed, half, group)
                }
            };
            for (k, lanes) in y.iter().enumerate() {
                put(half, i + k, lanes);
            }
        }
        i += TILE_ROWS;
    }
    while i < m {
        for half in 0..halves {
            // SAFETY: as above.
            let y = unsafe {
                if vnni {
                    x86::tile_vnni::<1>(packed, half, [act(i)])
                } else {
                    x86::tile_avx2::<1>(packed, half, [act(i)])
                }
            };
            put(half, i, &y[0]);
        }
        i += 1;
    }
}

/// Activation rows per 256-bit tile: each loaded weight register serves
/// this many. Two, three and four ran within noise of each other on a
/// 2-core AVX2 EPYC (`qmatmul_speed`, 512 rows); four keeps the most work
/// per weight load.
#[cfg(target_arch = "x86_64")]
const TILE_ROWS: usize = 4;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Packed, HALF, LANES};
    use crate::decoder::qblock::{ActBlock, BLOCK};

    /// Activation bytes `4t..4t + 4` in every 32-bit lane (`t < 8`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn four(a: &ActBlock, t: usize) -> __m256i {
        debug_assert!(t < 8);
        // SAFETY: `qs` has 32 bytes and `4t + 4 <= 32`; unaligned read.
        _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(a.qs.as_ptr().add(4 * (t & 7)) as *const i32) })
    }

    /// Byte group `t` of the eight packed rows of half `half` (`t < 8`,
    /// `half < 2`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn half_row(p: &Packed, t: usize, half: usize) -> __m256i {
        debug_assert!(t < 8 && half < 2);
        // SAFETY: `q[t]` has 64 bytes, this half 32 of them; unaligned load.
        unsafe { _mm256_loadu_si256(p.q[t & 7].as_ptr().add(4 * HALF * (half & 1)) as *const __m256i) }
    }

    /// `tile_avx2` / `tile_vnni`: eight outputs (one per row of half `half`
    /// of the packed rows) for each of `R` activation rows; `$block`
    /// computes a block's eight integer sums.
    macro_rules! tile_256 {
        ($name:ident, $features:literal, $block:ident) => {
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn $name<const R: usize>(packed: &[Packed], half: usize, rows: [&[ActBlock]; R]) -> [[f32; HALF]; R] {
                let mut acc = [_mm256_setzero_ps(); R];
                let mut off = [_mm256_setzero_ps(); R];
                for (b, p) in packed.iter().enumerate() {
                    let acts: [&ActBlock; R] = std::array::from_fn(|r| &rows[r][b]);
                    let isum = $block::<R>(p, half, &acts);
                    // SAFETY: `d` and `m` hold 16 f32 each, this half 8 of them; unaligned loads.
                    let (d, m) = unsafe { (_mm256_loadu_ps(p.d[HALF * half..].as_ptr()), _mm256_loadu_ps(p.m[HALF * half..].as_ptr())) };
                    for r in 0..R {
                        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_mul_ps(d, _mm256_set1_ps(acts[r].d)), acc[r]);
                        off[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(acts[r].s), off[r]);
                    }
                }
                let mut out = [[0f32; HALF]; R];
                for r in 0..R {
                    // SAFETY: `out[r]` is 8 writable f32; unaligned store.
                    unsafe { _mm256_storeu_ps(out[r].as_mut_ptr(), _mm256_add_ps(acc[r], off[r])) };
                }
                out
            }
        };
    }

    /// A block's integer sums on AVX2: `maddubs` pairs added in 16 bits
    /// over four byte groups, then widened.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn block_avx2<const R: usize>(p: &Packed, half: usize, acts: &[&ActBlock; R]) -> [__m256i; R] {
        let ones = _mm256_set1_epi16(1);
        let mut isum = [_mm256_setzero_si256(); R];
        for quarter in 0..2 {
            let mut s16 = [_mm256_setzero_si256(); R];
            for t in 4 * quarter..4 * quarter + 4 {
                let w = half_row(p, t, half);
                for r in 0..R {
                    s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(w, four(acts[r], t)));
                }
            }
            for r in 0..R {
                isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(s16[r], ones));
            }
        }
        isum
    }

    /// A block's integer sums on AVX-VNNI: one `vpdpbusd` per byte group.
    #[inline]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    fn block_vnni<const R: usize>(p: &Packed, half: usize, acts: &[&ActBlock; R]) -> [__m256i; R] {
        let mut isum = [_mm256_setzero_si256(); R];
        for t in 0..BLOCK / 4 {
            let w = half_row(p, t, half);
            for r in 0..R {
                isum[r] = _mm256_dpbusd_avx_epi32(isum[r], w, four(acts[r], t));
            }
        }
        isum
    }

    tile_256!(tile_avx2, "avx2,fma", block_avx2);
    tile_256!(tile_vnni, "avx2,fma,avxvnni", block_vnni);

    /// Sixteen outputs (one per packed row) for each of `R` activation rows.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
    pub(super) fn tile<const R: usize>(packed: &[Packed], rows: [&[ActBlock]; R]) -> [[f32; LANES]; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        let mut off = [_mm512_setzero_ps(); R];
        for (b, p) in packed.iter().enumerate() {
            let mut isum = [_mm512_setzero_si512(); R];
            for (t, q) in p.q.iter().enumerate() {
                // SAFETY: `q` is 64 readable bytes; unaligned load.
                let w = unsafe { _mm512_loadu_si512(q.as_ptr() as *const __m512i) };
                for r in 0..R {
                    let a = &rows[r][b].qs;
                    let four = i32::from_le_bytes([a[4 * t] as u8, a[4 * t + 1] as u8, a[4 * t + 2] as u8, a[4 * t + 3] as u8]);
                    isum[r] = _mm512_dpbusd_epi32(isum[r], w, _mm512_set1_epi32(four));
                }
            }
            // SAFETY: `d` and `m` are 16 readable f32 each; unaligned loads.
            let (d, m) = unsafe { (_mm512_loadu_ps(p.d.as_ptr()), _mm512_loadu_ps(p.m.as_ptr())) };
            for r in 0..R {
                let a = &rows[r][b];
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_mul_ps(d, _mm512_set1_ps(a.d)), acc[r]);
                off[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(a.s), off[r]);
            }
        }
        let mut out = [[0f32; LANES]; R];
        for r in 0..R {
            // SAFETY: `out[r]` is 16 writable f32; unaligned store.
            unsafe { _mm512_storeu_ps(out[r].as_mut_ptr(), _mm512_add_ps(acc[r], off[r])) };
        }
        out
    }
}
