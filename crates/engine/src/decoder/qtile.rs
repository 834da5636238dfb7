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
//! per half block. Q6_K blocks (weights below 64, a scale per 16 values and
//! a zero point of 32) widen after two groups, and each half block's sum,
//! less 32 times the activations' half sum, is multiplied by its scale
//! before the two are added: the row kernels' exact integer. For both
//! k-quants (Q4_K: one integer scale per block, and its min times the
//! activation block's sum for the offset) a super-block's eight integer
//! sums share one activation scale and take one multiply-add. A block's integer sums are then scaled and accumulated exactly as
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

use super::qblock::{for_each_block, ActBlock, Kind, Weights, BLOCK};

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
    /// Each row's integer half-block scales (k-quants; 1 for the others).
    sc: [[i32; LANES]; 2],
    /// Each row's integer offset multiplier (Q4_K's min).
    mi: [i32; LANES],
}

impl Packed {
    const ZERO: Packed = Packed { q: [[0; 4 * LANES]; BLOCK / 4], d: [0.0; LANES], m: [0.0; LANES], sc: [[0; LANES]; 2], mi: [0; LANES] };
}

/// Repacks the rows of `w` (at most [`LANES`]) into `out`, one [`Packed`]
/// per block; missing rows are zero.
pub(crate) fn pack(w: &Weights<'_>, out: &mut Vec<Packed>) {
    let blocks = w.row_bytes / w.kind.block_bytes() * (w.kind.block_values() / BLOCK);
    out.clear();
    out.resize(blocks, Packed::ZERO);
    for r in 0..w.rows().min(LANES) {
        let mut b = 0;
        for_each_block(w.kind, w.row(r), |block| {
            if let Some(p) = out.get_mut(b) {
                for (t, quad) in block.u.chunks_exact(4).enumerate() {
                    p.q[t][4 * r..4 * r + 4].copy_from_slice(quad);
                }
                p.d[r] = block.d;
                p.m[r] = block.m;
                p.sc[0][r] = block.sc[0] as i32;
                p.sc[1][r] = block.sc[1] as i32;
                p.mi[r] = block.mi;
            }
            b += 1;
        });
    }
}

/// Dot products of the packed rows (`rows` of them) with every activation
/// row (`acts`, `blocks` per row) into `out` (by weight row: `out[r * m +
/// i]`, `m = out.len() / rows`); `kind` the weights' kind (the k-quants
/// sum a super-block's integer products before scaling them).
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL and VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(crate) unsafe fn times_acts(kind: Kind, packed: &[Packed], acts: &[ActBlock], blocks: usize, rows: usize, out: &mut [f32]) {
    let m = out.len() / rows.max(1);
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    let mut put = |i: usize, lanes: &[f32; LANES]| {
        for (r, &v) in lanes.iter().enumerate().take(rows) {
            out[r * m + i] = v;
        }
    };
    let mut i = 0;
    while i + 4 <= m {
        let group = [act(i), act(i + 1), act(i + 2), act(i + 3)];
        let y = match kind {
            Kind::Q6K => x86::tile::<4, true, true>(packed, group),
            Kind::Q4K => x86::tile::<4, true, false>(packed, group),
            _ => x86::tile::<4, false, false>(packed, group),
        };
        for (k, lanes) in y.iter().enumerate() {
            put(i + k, lanes);
        }
        i += 4;
    }
    while i < m {
        let y = match kind {
            Kind::Q6K => x86::tile::<1, true, true>(packed, [act(i)]),
            Kind::Q4K => x86::tile::<1, true, false>(packed, [act(i)]),
            _ => x86::tile::<1, false, false>(packed, [act(i)]),
        };
        put(i, &y[0]);
        i += 1;
    }
}

/// [`times_acts`] on 256-bit registers: AVX2 + FMA (`vnni` false) or
/// AVX-VNNI (`vnni` true). Same bits as every other path.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and AVX-VNNI when `vnni` is set.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn times_acts_256(vnni: bool, kind: Kind, packed: &[Packed], acts: &[ActBlock], blocks: usize, rows: usize, out: &mut [f32]) {
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
            let y = unsafe { tile_256::<TILE_ROWS>(vnni, kind, packed, half, group) };
            for (k, lanes) in y.iter().enumerate() {
                put(half, i + k, lanes);
            }
        }
        i += TILE_ROWS;
    }
    while i < m {
        for half in 0..halves {
            // SAFETY: as above.
            let y = unsafe { tile_256::<1>(vnni, kind, packed, half, [act(i)]) };
            put(half, i, &y[0]);
        }
        i += 1;
    }
}

/// The 256-bit tile for the instruction set and block kind.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and AVX-VNNI when `vnni` is set.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn tile_256<const R: usize>(vnni: bool, kind: Kind, packed: &[Packed], half: usize, rows: [&[ActBlock]; R]) -> [[f32; HALF]; R] {
    // SAFETY: the caller checked the CPU features.
    unsafe {
        match (vnni, kind) {
            (true, Kind::Q6K) => x86::tile_vnni::<R, true, true>(packed, half, rows),
            (true, Kind::Q4K) => x86::tile_vnni::<R, true, false>(packed, half, rows),
            (true, _) => x86::tile_vnni::<R, false, false>(packed, half, rows),
            (false, Kind::Q6K) => x86::tile_avx2::<R, true, true>(packed, half, rows),
            (false, Kind::Q4K) => x86::tile_avx2::<R, true, false>(packed, half, rows),
            (false, _) => x86::tile_avx2::<R, false, false>(packed, half, rows),
        }
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
    use crate::decoder::qblock::{ActBlock, Kind, BLOCK};

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
    /// computes a block's integer sums by half block; `SUPER` for the
    /// k-quants (a super-block's integer sums scaled once), `SIX` for Q6_K.
    macro_rules! tile_256 {
        ($name:ident, $features:literal, $block:ident) => {
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn $name<const R: usize, const SUPER: bool, const SIX: bool>(
                packed: &[Packed],
                half: usize,
                rows: [&[ActBlock]; R],
            ) -> [[f32; HALF]; R] {
                let mut acc = [_mm256_setzero_ps(); R];
                let mut off = [_mm256_setzero_ps(); R];
                // k-quants: the super-block's integer sums and offset sums so far.
                let mut sb = [_mm256_setzero_si256(); R];
                let mut mb = [_mm256_setzero_si256(); R];
                for (b, p) in packed.iter().enumerate() {
                    let acts: [&ActBlock; R] = std::array::from_fn(|r| &rows[r][b]);
                    let isum = combine_256::<R, SUPER, SIX>(p, half, &acts, $block::<R, SIX>(p, half, &acts));
                    // SAFETY: `d` and `m` hold 16 f32 each, this half 8 of them; unaligned loads.
                    let (d, m) = unsafe { (_mm256_loadu_ps(p.d[HALF * half..].as_ptr()), _mm256_loadu_ps(p.m[HALF * half..].as_ptr())) };
                    if SUPER {
                        // One multiply-add each per super-block (its eight
                        // blocks share the activation scale); Q6_K has no
                        // offsets (`off` stays +0, as in the reference).
                        for r in 0..R {
                            sb[r] = _mm256_add_epi32(sb[r], isum[r]);
                        }
                        if !SIX {
                            // SAFETY: `mi` holds 16 i32, this half 8 of them; unaligned load.
                            let mi = unsafe { _mm256_loadu_si256(p.mi[HALF * half..].as_ptr() as *const __m256i) };
                            for r in 0..R {
                                mb[r] = _mm256_add_epi32(mb[r], _mm256_mullo_epi32(mi, _mm256_set1_epi32(acts[r].hs[0] + acts[r].hs[1])));
                            }
                        }
                        if b % 8 == 7 {
                            for r in 0..R {
                                let ad = _mm256_set1_ps(acts[r].d);
                                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sb[r]), _mm256_mul_ps(d, ad), acc[r]);
                                if !SIX {
                                    off[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mb[r]), _mm256_mul_ps(m, ad), off[r]);
                                }
                                sb[r] = _mm256_setzero_si256();
                                mb[r] = _mm256_setzero_si256();
                            }
                        }
                        continue;
                    }
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

    /// A block's integer sums from its two half blocks' (values 0-15 and
    /// 16-31): added; for Q4_K (`SUPER`) times the row's block scale; for
    /// Q6_K (`SIX`) each less the zero point times the activations' half
    /// sum and times the row's half-block scale, as
    /// [`crate::decoder::qblock::Block::isum`] computes it (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn combine_256<const R: usize, const SUPER: bool, const SIX: bool>(
        p: &Packed,
        half: usize,
        acts: &[&ActBlock; R],
        sums: [[__m256i; R]; 2],
    ) -> [__m256i; R] {
        // SAFETY: `sc[h]` holds 16 i32, this half 8 of them; unaligned loads.
        let (lo, hi) = unsafe {
            (_mm256_loadu_si256(p.sc[0][HALF * half..].as_ptr() as *const __m256i), _mm256_loadu_si256(p.sc[1][HALF * half..].as_ptr() as *const __m256i))
        };
        if !SIX {
            return std::array::from_fn(|r| {
                let sum = _mm256_add_epi32(sums[0][r], sums[1][r]);
                if SUPER {
                    _mm256_mullo_epi32(sum, lo)
                } else {
                    sum
                }
            });
        }
        let z = Kind::Q6K.zero();
        std::array::from_fn(|r| {
            let h0 = _mm256_sub_epi32(sums[0][r], _mm256_set1_epi32(z * acts[r].hs[0]));
            let h1 = _mm256_sub_epi32(sums[1][r], _mm256_set1_epi32(z * acts[r].hs[1]));
            _mm256_add_epi32(_mm256_mullo_epi32(h0, lo), _mm256_mullo_epi32(h1, hi))
        })
    }

    /// A block's integer sums by half block on AVX2: `maddubs` pairs added
    /// in 16 bits over a run of byte groups, then widened. The 16-bit sums
    /// cannot overflow: a run is four groups for weights below 32 (4 * 2 *
    /// 31 * 127 = 31,496) and two for Q6_K's below 64 (2 * 2 * 63 * 127 =
    /// 32,004).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn block_avx2<const R: usize, const SIX: bool>(p: &Packed, half: usize, acts: &[&ActBlock; R]) -> [[__m256i; R]; 2] {
        let ones = _mm256_set1_epi16(1);
        let run = if SIX { 2 } else { 4 };
        let mut sums = [[_mm256_setzero_si256(); R]; 2];
        for start in (0..BLOCK / 4).step_by(run) {
            let mut s16 = [_mm256_setzero_si256(); R];
            for t in start..start + run {
                let w = half_row(p, t, half);
                for r in 0..R {
                    s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(w, four(acts[r], t)));
                }
            }
            let h = start / 4;
            for r in 0..R {
                sums[h][r] = _mm256_add_epi32(sums[h][r], _mm256_madd_epi16(s16[r], ones));
            }
        }
        sums
    }

    /// A block's integer sums by half block on AVX-VNNI: one `vpdpbusd`
    /// per byte group.
    #[inline]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    fn block_vnni<const R: usize, const SIX: bool>(p: &Packed, half: usize, acts: &[&ActBlock; R]) -> [[__m256i; R]; 2] {
        let mut sums = [[_mm256_setzero_si256(); R]; 2];
        for t in 0..BLOCK / 4 {
            let w = half_row(p, t, half);
            let h = t / 4;
            for r in 0..R {
                sums[h][r] = _mm256_dpbusd_avx_epi32(sums[h][r], w, four(acts[r], t));
            }
        }
        sums
    }

    tile_256!(tile_avx2, "avx2,fma", block_avx2);
    tile_256!(tile_vnni, "avx2,fma,avxvnni", block_vnni);

    /// Sixteen outputs (one per packed row) for each of `R` activation
    /// rows; `SUPER` and `SIX` as for the 256-bit tiles (Q6_K's two half
    /// blocks' sums kept apart and combined as `combine_256` does).
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
    pub(super) fn tile<const R: usize, const SUPER: bool, const SIX: bool>(packed: &[Packed], rows: [&[ActBlock]; R]) -> [[f32; LANES]; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        let mut off = [_mm512_setzero_ps(); R];
        // k-quants: the super-block's integer sums and offset sums so far.
        let mut sb = [_mm512_setzero_si512(); R];
        let mut mb = [_mm512_setzero_si512(); R];
        let z = Kind::Q6K.zero();
        for (b, p) in packed.iter().enumerate() {
            let mut sums = [[_mm512_setzero_si512(); R]; 2];
            for (t, q) in p.q.iter().enumerate() {
                // SAFETY: `q` is 64 readable bytes; unaligned load.
                let w = unsafe { _mm512_loadu_si512(q.as_ptr() as *const __m512i) };
                let h = if SIX { t / 4 } else { 0 };
                for r in 0..R {
                    let a = &rows[r][b].qs;
                    let four = i32::from_le_bytes([a[4 * t] as u8, a[4 * t + 1] as u8, a[4 * t + 2] as u8, a[4 * t + 3] as u8]);
                    sums[h][r] = _mm512_dpbusd_epi32(sums[h][r], w, _mm512_set1_epi32(four));
                }
            }
            let isum: [__m512i; R] = if SIX {
                // SAFETY: `sc[h]` is 16 readable i32; unaligned loads.
                let (lo, hi) = unsafe { (_mm512_loadu_si512(p.sc[0].as_ptr() as *const __m512i), _mm512_loadu_si512(p.sc[1].as_ptr() as *const __m512i)) };
                std::array::from_fn(|r| {
                    let a = &rows[r][b];
                    let h0 = _mm512_sub_epi32(sums[0][r], _mm512_set1_epi32(z * a.hs[0]));
                    let h1 = _mm512_sub_epi32(sums[1][r], _mm512_set1_epi32(z * a.hs[1]));
                    _mm512_add_epi32(_mm512_mullo_epi32(h0, lo), _mm512_mullo_epi32(h1, hi))
                })
            } else if SUPER {
                // SAFETY: `sc[0]` is 16 readable i32; unaligned load.
                let sc = unsafe { _mm512_loadu_si512(p.sc[0].as_ptr() as *const __m512i) };
                std::array::from_fn(|r| _mm512_mullo_epi32(sums[0][r], sc))
            } else {
                sums[0]
            };
            // SAFETY: `d` and `m` are 16 readable f32 each; unaligned loads.
            let (d, m) = unsafe { (_mm512_loadu_ps(p.d.as_ptr()), _mm512_loadu_ps(p.m.as_ptr())) };
            if SUPER {
                // As in the 256-bit tiles: one multiply-add each per super-block.
                for r in 0..R {
                    sb[r] = _mm512_add_epi32(sb[r], isum[r]);
                }
                if !SIX {
                    // SAFETY: `mi` is 16 readable i32; unaligned load.
                    let mi = unsafe { _mm512_loadu_si512(p.mi.as_ptr() as *const __m512i) };
                    for r in 0..R {
                        let a = &rows[r][b];
                        mb[r] = _mm512_add_epi32(mb[r], _mm512_mullo_epi32(mi, _mm512_set1_epi32(a.hs[0] + a.hs[1])));
                    }
                }
                if b % 8 == 7 {
                    for r in 0..R {
                        let ad = _mm512_set1_ps(rows[r][b].d);
                        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb[r]), _mm512_mul_ps(d, ad), acc[r]);
                        if !SIX {
                            off[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mb[r]), _mm512_mul_ps(m, ad), off[r]);
                        }
                        sb[r] = _mm512_setzero_si512();
                        mb[r] = _mm512_setzero_si512();
                    }
                }
                continue;
            }
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
