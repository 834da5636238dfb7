//! k-quant weights (Q4_K, Q6_K) interleaved by eight rows, for decoding on
//! x86-64.
//!
//! The row kernels read one weight row after the other and reduce each
//! super-block's sums across the lanes of a register. Here eight rows are
//! stored side by side (as llama.cpp's CPU backend repacks Q4_K for AVX2 at
//! load), so that each 32-bit lane of a register holds a different row: four
//! weight bytes of eight rows are one load, the four activation bytes they
//! meet are broadcast, and the eight rows' sums stay in their lanes to the
//! end (no horizontal sums). The matrix is still read as one stream.
//!
//! Layout: the rows in groups of [`ROWS`], each group's super-blocks one
//! after the other, [`group_bytes`] each (exactly eight rows' bytes: Q4_K
//! 1,184 instead of 1,152, Q6_K 1,680). Q4_K:
//! - bytes 0-15: the eight rows' `d` (f16), 16-31: their `dmin` (f16);
//! - 32-95: the 6-bit scales, `32 + 8 j + r` for block `j` of row `r`;
//! - 96-159: the 6-bit mins, `96 + 16 c + 2 r + e` for block `2 c + e`;
//! - 160-1183: the nibbles, 256 bytes per pair of blocks `c` (blocks `2c`
//!   and `2c + 1` share bytes as in Q4_K), in eight chunks of 32 bytes:
//!   chunk `t` holds bytes `4t..4t + 4` of each row's 32 bytes of the pair,
//!   row `r` in bytes `4r..4r + 4`.
//!
//! Q6_K:
//! - bytes 0-15: the rows' `d` (f16);
//! - 16-143: the signed scales, `16 + 16 j + 2 r + e` for half `e` of
//!   block `j`;
//! - 144-1679: per half super-block `h` (768 bytes), the 64 bytes of low
//!   nibbles of each row in sixteen chunks of 32 (chunk `t` holds bytes
//!   `4t..4t + 4` of each row's, row `r` at `4r`), then its 32 bytes of high
//!   bit pairs in eight chunks the same way.
//!
//! Every output is computed as [`super::dot_reference`] computes it (the
//! super-block's exact integer sums, then one multiply-add each, lane by
//! lane), so the results have the same bits as the other paths.

use super::{quantize_rows, Isa, Kind, BLOCK};
use crate::decoder::qblock::q4k_scale_bytes;

/// Rows per interleaved group.
pub const ROWS: usize = 8;

/// Bytes of one group's super-block (eight rows of 256 values).
pub const fn group_bytes(kind: Kind) -> usize {
    match kind {
        Kind::Q6K => Q6_WEIGHTS + 2 * Q6_HALF,
        _ => NIBBLES + 4 * 256,
    }
}

/// Offsets in a Q4_K group super-block: scales, mins, nibbles.
const SCALES: usize = 32;
const MINS: usize = 96;
const NIBBLES: usize = 160;

/// Offsets in a Q6_K group super-block: scales, weights; bytes per half
/// super-block and the offset of its high bit pairs in it.
const Q6_SCALES: usize = 16;
const Q6_WEIGHTS: usize = 144;
const Q6_HALF: usize = 768;
const Q6_HIGH: usize = 512;

/// Whether a matrix of `kind` with `n` rows is multiplied interleaved
/// here: the k-quants on x86-64 with AVX2 or better (the kernels in use,
/// see [`super::isa`]) and `n` a multiple of [`ROWS`].
pub fn applies(kind: Kind, n: usize) -> bool {
    matches!(kind, Kind::Q4K | Kind::Q6K) && cfg!(target_arch = "x86_64") && super::isa() >= Isa::Avx2 && n.is_multiple_of(ROWS)
}

/// Bytes of `kind` (`n` rows of `k` values) interleaved by eight rows;
/// `None` for a kind other than Q4_K / Q6_K, `n` not a multiple of
/// [`ROWS`], `k` not one of 256, or bytes that do not hold `n` such rows.
pub fn pack(kind: Kind, w: &[u8], n: usize, k: usize) -> Option<Vec<u8>> {
    let row_bytes = kind.row_bytes(k);
    if !matches!(kind, Kind::Q4K | Kind::Q6K) || !n.is_multiple_of(ROWS) || !k.is_multiple_of(kind.block_values()) || w.len() != n * row_bytes {
        return None;
    }
    let supers = k / kind.block_values();
    let size = group_bytes(kind);
    let mut out = vec![0u8; n / ROWS * supers * size];
    {
        // Groups spread over the CPU pool (a model's worth is about a
        // second of copying on one core).
        let groups: Vec<std::sync::Mutex<&mut [u8]>> = out.chunks_exact_mut(supers * size).map(std::sync::Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(groups.len(), |range| {
            for g in range {
                let Ok(mut group) = groups[g].lock() else { continue };
                for (s, dst) in group.chunks_exact_mut(size).enumerate() {
                    for r in 0..ROWS {
                        let at = (g * ROWS + r) * row_bytes + s * kind.block_bytes();
                        let src = &w[at..at + kind.block_bytes()];
                        place(kind, src, dst, r);
                    }
                }
            }
        });
    }
    Some(out)
}

/// Calls `f(from, to, len)` for each run of bytes that goes from row
/// `r`'s super-block of `kind` to its place in a group super-block (Q4_K's
/// packed 6-bit scales and mins aside: they are unpacked to bytes).
fn for_each_move(kind: Kind, r: usize, mut f: impl FnMut(usize, usize, usize)) {
    if kind == Kind::Q6K {
        // `d`; the scales; per half, sixteen chunks of low nibbles and eight
        // of high bit pairs.
        f(208, 2 * r, 2);
        for j in 0..16 {
            f(192 + j, Q6_SCALES + 16 * (j / 2) + 2 * r + j % 2, 1);
        }
        for h in 0..2 {
            let base = Q6_WEIGHTS + Q6_HALF * h;
            for t in 0..16 {
                f(64 * h + 4 * t, base + 32 * t + 4 * r, 4);
            }
            for t in 0..8 {
                f(128 + 32 * h + 4 * t, base + Q6_HIGH + 32 * t + 4 * r, 4);
            }
        }
        return;
    }
    // `d`, `dmin`, and per pair of blocks eight chunks of nibbles.
    f(0, 2 * r, 2);
    f(2, 16 + 2 * r, 2);
    for c in 0..4 {
        for t in 0..8 {
            f(16 + 32 * c + 4 * t, NIBBLES + 256 * c + 32 * t + 4 * r, 4);
        }
    }
}

/// Copies one row's super-block `src` into its place `r` of a group
/// super-block.
fn place(kind: Kind, src: &[u8], dst: &mut [u8], r: usize) {
    for_each_move(kind, r, |from, to, len| dst[to..to + len].copy_from_slice(&src[from..from + len]));
    if kind == Kind::Q4K {
        let (sc, mn) = q4k_scale_bytes(&src[4..16]);
        for j in 0..8 {
            dst[SCALES + 8 * j + r] = sc[j];
            dst[MINS + 16 * (j / 2) + 2 * r + j % 2] = mn[j];
        }
    }
}

/// The inverse of [`place`].
fn take(kind: Kind, src: &[u8], dst: &mut [u8], r: usize) {
    for_each_move(kind, r, |to, from, len| dst[to..to + len].copy_from_slice(&src[from..from + len]));
    if kind == Kind::Q4K {
        let sc: [u8; 8] = std::array::from_fn(|j| src[SCALES + 8 * j + r]);
        let mn: [u8; 8] = std::array::from_fn(|j| src[MINS + 16 * (j / 2) + 2 * r + j % 2]);
        // GGML's packing of eight 6-bit scales and mins in twelve bytes
        // (the inverse of `q4k_scale_bytes`).
        for j in 0..4 {
            dst[4 + j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            dst[8 + j] = mn[j] | ((mn[j + 4] >> 4) << 6);
            dst[12 + j] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
        }
    }
}

/// The bytes of rows `rows` (whole groups) of an interleaved matrix of
/// `kind` with `k` values per row, in the original layout, into `out`.
pub(crate) fn unpack_rows(kind: Kind, packed: &[u8], k: usize, rows: std::ops::Range<usize>, out: &mut Vec<u8>) {
    let supers = k / kind.block_values();
    let size = group_bytes(kind);
    out.clear();
    out.resize(rows.len() * kind.row_bytes(k), 0);
    for (i, row) in rows.enumerate() {
        let (g, r) = (row / ROWS, row % ROWS);
        for s in 0..supers {
            let src = &packed[(g * supers + s) * size..][..size];
            let dst = &mut out[(i * supers + s) * kind.block_bytes()..][..kind.block_bytes()];
            take(kind, src, dst, r);
        }
    }
}

/// `out[i * n + j] = dot(x row i, weight row j)` for `m` activation rows
/// and the `n` rows of `k` values of an interleaved matrix of `kind`
/// ([`pack`]); the same bits as [`super::matmul`] on the original bytes.
/// Up to four activation rows (decoding) take the interleaved kernel; more
/// (prefill) go through the other paths on each task's rows unpacked.
pub fn matmul(kind: Kind, packed: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    matmul_on(super::isa(), kind, packed, n, k, x, m)
}

/// [`matmul`] on a given instruction set (one this CPU lacks falls back to
/// the best it has).
pub fn matmul_on(isa: Isa, kind: Kind, packed: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let isa = isa.or_supported_below();
    let acts = quantize_rows(x, k, kind.act_group());
    let blocks = k / BLOCK;
    let mut by_row = vec![0f32; n * m];
    {
        let tasks: Vec<std::sync::Mutex<&mut [f32]>> = by_row.chunks_mut(super::ROWS_PER_TASK * m).map(std::sync::Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(tasks.len(), |range| {
            let (mut unpacked, mut scratch) = (Vec::new(), Vec::new());
            for task in range {
                let Ok(mut out) = tasks[task].lock() else { continue };
                let first = task * super::ROWS_PER_TASK;
                let rows = out.len() / m;
                #[cfg(target_arch = "x86_64")]
                if m <= 4 && isa >= Isa::Avx2 {
                    let group_len = k / kind.block_values() * group_bytes(kind);
                    for g in 0..rows / ROWS {
                        let at = (first / ROWS + g) * group_len;
                        let group = &packed[at..at + group_len];
                        let y = avx2::group(kind, group, &acts, blocks, m);
                        for (r, lanes) in y.iter().enumerate() {
                            out[(g * ROWS + r) * m..(g * ROWS + r + 1) * m].copy_from_slice(&lanes[..m]);
                        }
                    }
                    continue;
                }
                unpack_rows(kind, packed, k, first..first + rows, &mut unpacked);
                let w = super::Weights { kind, data: &unpacked, row_bytes: kind.row_bytes(k) };
                super::rows_times_acts(isa, &w, &acts, blocks, &mut out, &mut scratch);
            }
        });
    }
    super::by_row_to_rows(by_row, n, m)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    // SIMD intrinsics need `unsafe`: `group` is only called after a runtime
    // check of AVX2 and FMA, and every load reads a bounds-checked slice.
    #![allow(unsafe_code)]

    use std::arch::x86_64::*;

    use super::*;
    use crate::decoder::qblock::ActBlock;

    /// One group's eight outputs for each of the `m` (at most four)
    /// activation rows of `acts` (`blocks` blocks each): `[row][act]`.
    pub(super) fn group(kind: Kind, group: &[u8], acts: &[ActBlock], blocks: usize, m: usize) -> [[f32; 4]; ROWS] {
        let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
        // SAFETY: the caller checked AVX2 and FMA (F16C comes with them).
        let y: [[f32; ROWS]; 4] = unsafe {
            match (kind, m) {
                (Kind::Q6K, 1) => pad(group_q6k::<1>(group, [act(0)])),
                (Kind::Q6K, 2) => pad(group_q6k::<2>(group, [act(0), act(1)])),
                (Kind::Q6K, 3) => pad(group_q6k::<3>(group, [act(0), act(1), act(2)])),
                (Kind::Q6K, _) => group_q6k::<4>(group, [act(0), act(1), act(2), act(3)]),
                (_, 1) => pad(group_q4k::<1>(group, [act(0)])),
                (_, 2) => pad(group_q4k::<2>(group, [act(0), act(1)])),
                (_, 3) => pad(group_q4k::<3>(group, [act(0), act(1), act(2)])),
                _ => group_q4k::<4>(group, [act(0), act(1), act(2), act(3)]),
            }
        };
        std::array::from_fn(|r| std::array::from_fn(|i| y[i][r]))
    }

    fn pad<const N: usize>(y: [[f32; ROWS]; N]) -> [[f32; ROWS]; 4] {
        std::array::from_fn(|i| if i < N { y[i] } else { [0.0; ROWS] })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load16(b: &[u8]) -> __m128i {
        let b: &[u8; 16] = b[..16].try_into().unwrap_or(&[0; 16]);
        // SAFETY: 16 readable bytes; unaligned load.
        unsafe { _mm_loadu_si128(b.as_ptr() as *const __m128i) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load32(b: &[u8]) -> __m256i {
        let b: &[u8; 32] = b[..32].try_into().unwrap_or(&[0; 32]);
        // SAFETY: 32 readable bytes; unaligned load.
        unsafe { _mm256_loadu_si256(b.as_ptr() as *const __m256i) }
    }

    /// Block `j`'s eight 6-bit scales as sixteen 16-bit lanes, each row's
    /// twice (lanes `2r` and `2r + 1`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn scales(sb: &[u8], j: usize) -> __m256i {
        let s = &sb[SCALES + 8 * j..SCALES + 8 * j + 8];
        let eight = u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let x = _mm_cvtsi64_si128(eight as i64);
        _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(x, x))
    }

    /// Four activation bytes (values `4t..4t + 4` of a block) in every
    /// 32-bit lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn four(a: &ActBlock, t: usize) -> __m256i {
        let q = &a.qs[4 * t..4 * t + 4];
        _mm256_set1_epi32(i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]))
    }

    /// Each activation row's eight blocks of super-block `s`; `None` when
    /// a row is too short for it.
    #[inline]
    fn window<'a, const N: usize>(acts: &[&'a [ActBlock]; N], s: usize) -> Option<[&'a [ActBlock]; N]> {
        acts.iter().all(|a| a.len() >= 8 * s + 8).then(|| std::array::from_fn(|i| &acts[i][8 * s..8 * s + 8]))
    }

    /// The eight lanes of each of `v`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lanes<const N: usize>(v: [__m256; N]) -> [[f32; ROWS]; N] {
        std::array::from_fn(|i| {
            let mut out = [0f32; ROWS];
            // SAFETY: `out` is 32 writable bytes; unaligned store.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v[i]) };
            out
        })
    }

    /// [`super::super::dot_reference`] of eight interleaved rows with `N`
    /// activation rows, lane `r` for row `r`. Per pair of blocks, eight
    /// chunks of four bytes per row: the low nibbles meet the first
    /// block's activations, the high ones the second's (`maddubs`, pairs
    /// below 2 * 15 * 127, so eight chunks add up in 16 bits: at most
    /// 30,480); each row's sum is then multiplied by its scale in `madd`
    /// (the row's two 16-bit lanes, one scale) and added in 32 bits. The
    /// mins meet the activation blocks' sums in one more `madd` per pair.
    // F16C converts the eight rows' scales at once (every AVX2 CPU has it,
    // and the x86-64-v3 build requires it).
    #[target_feature(enable = "avx2,fma,f16c")]
    fn group_q4k<const N: usize>(group: &[u8], acts: [&[ActBlock]; N]) -> [[f32; ROWS]; N] {
        let mask = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut off = [_mm256_setzero_ps(); N];
        for (s, sb) in group.chunks_exact(group_bytes(Kind::Q4K)).enumerate() {
            let Some(a8) = window(&acts, s) else { return [[0.0; ROWS]; N] };
            let mut sum = [_mm256_setzero_si256(); N];
            let mut msum = [_mm256_setzero_si256(); N];
            for c in 0..4 {
                let q = &sb[NIBBLES + 256 * c..NIBBLES + 256 * c + 256];
                let mut lo16 = [_mm256_setzero_si256(); N];
                let mut hi16 = [_mm256_setzero_si256(); N];
                for t in 0..8 {
                    let v = load32(&q[32 * t..]);
                    let (lo, hi) = (_mm256_and_si256(v, mask), _mm256_and_si256(_mm256_srli_epi16(v, 4), mask));
                    for i in 0..N {
                        lo16[i] = _mm256_add_epi16(lo16[i], _mm256_maddubs_epi16(lo, four(&a8[i][2 * c], t)));
                        hi16[i] = _mm256_add_epi16(hi16[i], _mm256_maddubs_epi16(hi, four(&a8[i][2 * c + 1], t)));
                    }
                }
                let (sc_lo, sc_hi) = (scales(sb, 2 * c), scales(sb, 2 * c + 1));
                let mins = _mm256_cvtepu8_epi16(load16(&sb[MINS + 16 * c..]));
                for i in 0..N {
                    let p = _mm256_add_epi32(_mm256_madd_epi16(lo16[i], sc_lo), _mm256_madd_epi16(hi16[i], sc_hi));
                    sum[i] = _mm256_add_epi32(sum[i], p);
                    let bs = &a8[i][0].bs;
                    let pair = (bs[2 * c] as u16 as u32 | (bs[2 * c + 1] as u16 as u32) << 16) as i32;
                    msum[i] = _mm256_add_epi32(msum[i], _mm256_madd_epi16(mins, _mm256_set1_epi32(pair)));
                }
            }
            let d = _mm256_cvtph_ps(load16(&sb[0..]));
            // -dmin: the sign flipped exactly, as the reference's `m`.
            let neg_dmin = _mm256_xor_ps(_mm256_cvtph_ps(load16(&sb[16..])), _mm256_set1_ps(-0.0));
            for i in 0..N {
                let ad = _mm256_set1_ps(a8[i][0].d);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]), _mm256_mul_ps(d, ad), acc[i]);
                off[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum[i]), _mm256_mul_ps(neg_dmin, ad), off[i]);
            }
        }
        lanes(std::array::from_fn(|i| _mm256_add_ps(acc[i], off[i])))
    }

    /// Half `e` of block `j`'s scales of the eight rows as sixteen 16-bit
    /// lanes, each row's twice (lanes `2r` and `2r + 1`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn half_scales(both: __m128i, e: usize) -> __m256i {
        // Bytes `2r + e` of the block's sixteen, each twice.
        let pick = if e == 0 {
            _mm_setr_epi8(0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14)
        } else {
            _mm_setr_epi8(1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15)
        };
        _mm256_cvtepi8_epi16(_mm_shuffle_epi8(both, pick))
    }

    /// [`super::super::dot_reference`] of eight interleaved Q6_K rows with
    /// `N` activation rows, lane `r` for row `r`. Per half super-block and
    /// four positions `t`: the low nibbles of two chunks and the high bit
    /// pairs of one give the four blocks' 6-bit weights (as `row_q6k`
    /// builds them); `maddubs` with the broadcast activations (pairs below
    /// 2 * 63 * 127, so two chunks add up in 16 bits: 32,004), then `madd`
    /// with the half block's scale every two chunks. The zero point 32
    /// comes off once per super-block: the scales times the activations'
    /// half sums (one `madd` per block), times 32.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn group_q6k<const N: usize>(group: &[u8], acts: [&[ActBlock]; N]) -> [[f32; ROWS]; N] {
        let low = _mm256_set1_epi8(0x0f);
        let pair = _mm256_set1_epi8(0x30);
        let mut acc = [_mm256_setzero_ps(); N];
        for (s, sb) in group.chunks_exact(group_bytes(Kind::Q6K)).enumerate() {
            let Some(a8) = window(&acts, s) else { return [[0.0; ROWS]; N] };
            let mut sum = [_mm256_setzero_si256(); N];
            let mut zsum = [_mm256_setzero_si256(); N];
            for h in 0..2 {
                let half = &sb[Q6_WEIGHTS + Q6_HALF * h..Q6_WEIGHTS + Q6_HALF * (h + 1)];
                let both: [__m128i; 4] = std::array::from_fn(|k| load16(&sb[Q6_SCALES + 16 * (4 * h + k)..]));
                let mut p16 = [[_mm256_setzero_si256(); 4]; N];
                for t in 0..8 {
                    let (ql0, ql1, qh) = (load32(&half[32 * t..]), load32(&half[256 + 32 * t..]), load32(&half[Q6_HIGH + 32 * t..]));
                    let u = [
                        _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_and_si256(_mm256_slli_epi16(qh, 4), pair)),
                        _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_and_si256(_mm256_slli_epi16(qh, 2), pair)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), _mm256_and_si256(qh, pair)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), _mm256_and_si256(_mm256_srli_epi16(qh, 2), pair)),
                    ];
                    for i in 0..N {
                        for k in 0..4 {
                            p16[i][k] = _mm256_add_epi16(p16[i][k], _mm256_maddubs_epi16(u[k], four(&a8[i][4 * h + k], t)));
                        }
                    }
                    if t % 2 == 1 {
                        // Chunks 0-3 are the blocks' first halves, 4-7 their second.
                        for k in 0..4 {
                            let sc = half_scales(both[k], t / 4);
                            for i in 0..N {
                                sum[i] = _mm256_add_epi32(sum[i], _mm256_madd_epi16(p16[i][k], sc));
                                p16[i][k] = _mm256_setzero_si256();
                            }
                        }
                    }
                }
                for k in 0..4 {
                    let zv = _mm256_cvtepi8_epi16(both[k]);
                    for i in 0..N {
                        let hs = a8[i][4 * h + k].hs;
                        let halves = (hs[0] as i16 as u16 as u32 | (hs[1] as i16 as u16 as u32) << 16) as i32;
                        zsum[i] = _mm256_add_epi32(zsum[i], _mm256_madd_epi16(zv, _mm256_set1_epi32(halves)));
                    }
                }
            }
            let d = _mm256_cvtph_ps(load16(&sb[0..]));
            for i in 0..N {
                let total = _mm256_sub_epi32(sum[i], _mm256_slli_epi32(zsum[i], 5));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(d, _mm256_set1_ps(a8[i][0].d)), acc[i]);
            }
        }
        // The reference's offset sum stays +0 (Q6_K has no offsets).
        lanes(acc.map(|a| _mm256_add_ps(a, _mm256_setzero_ps())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::qkernels::tests::blocks;

    #[test]
    fn interleaving_round_trips_and_multiplies_with_the_same_bits() {
        let (n, k) = (24, 512);
        for kind in [Kind::Q4K, Kind::Q6K] {
            let w = blocks(kind, n * k / 256, 5);
            let packed = pack(kind, &w, n, k).unwrap();
            assert_eq!(packed.len(), n / ROWS * (k / 256) * group_bytes(kind));
            let mut back = Vec::new();
            unpack_rows(kind, &packed, k, 0..n, &mut back);
            assert!(back == w, "{kind:?}: unpacking gives the original bytes");
            for m in [1, 2, 3, 4, 5, 9] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
                let expected = super::super::matmul_on(Isa::Portable, kind, &w, n, k, &x, m);
                for isa in Isa::ALL {
                    let got = matmul_on(isa, kind, &packed, n, k, &x, m);
                    assert!(got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()), "{kind:?} {isa:?} m={m}: {got:?} vs {expected:?}");
                }
            }
            assert!(pack(kind, &w, n - 8, k).is_none(), "bytes for more rows than said");
            assert!(pack(kind, &w[..(n - 1) * kind.row_bytes(k)], n - 1, k).is_none(), "rows not a multiple of eight");
            assert!(pack(kind, &w[1..], n, k).is_none(), "short bytes");
        }
        assert!(pack(Kind::Q4_1, &blocks(Kind::Q4_1, 16, 1), 16, 32).is_none(), "not a k-quant");
    }

    #[test]
    fn interleaved_sums_cannot_overflow() {
        // Activations +-127 against the largest weights. Q4_K: every nibble
        // 15, every 6-bit scale and min 63 (eight chunks of `maddubs` pairs
        // reach 8 * 2 * 15 * 127 = 30,480 in 16 bits, a super-block's sum
        // 2^24.9 in 32). Q6_K: every weight 63 and every scale -128 (two
        // chunks reach 2 * 2 * 63 * 127 = 32,004 in 16 bits).
        let (n, k) = (16, 512);
        let (d, dmin) = (half::f16::from_f32(0.001), half::f16::from_f32(0.0005));
        let (mut q4, mut q6) = (Vec::new(), Vec::new());
        for _ in 0..n * k / 256 {
            q4.extend_from_slice(&d.to_le_bytes());
            q4.extend_from_slice(&dmin.to_le_bytes());
            q4.extend_from_slice(&[0xff; 140]);
            q6.extend_from_slice(&[0xff; 192]);
            q6.extend_from_slice(&[0x80; 16]);
            q6.extend_from_slice(&d.to_le_bytes());
        }
        let cases = [(Kind::Q4K, q4, d.to_f32() * 63.0 * 15.0 - dmin.to_f32() * 63.0), (Kind::Q6K, q6, d.to_f32() * -128.0 * 31.0)];
        for (kind, w, weight) in cases {
            let packed = pack(kind, &w, n, k).unwrap();
            for sign in [1.0f32, -1.0] {
                for m in [1, 4] {
                    let x = vec![sign; m * k];
                    let expected = super::super::matmul_on(Isa::Portable, kind, &w, n, k, &x, m);
                    for isa in Isa::ALL {
                        let got = matmul_on(isa, kind, &packed, n, k, &x, m);
                        assert!(got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()), "{kind:?} {isa:?} m={m}: {got:?} vs {expected:?}");
                        let want = sign * weight * k as f32;
                        assert!((got[0] - want).abs() < 1e-4 * want.abs(), "{kind:?} {isa:?} m={m}: {} vs {want}", got[0]);
                    }
                }
            }
        }
    }
}
