// SIMD intrinsics need `unsafe`: `group` is only called after a runtime
// check of AVX2 and FMA, and every load reads a bounds-checked slice.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::*;
use crate::decoder::qblock::ActBlock;

/// One group's eight outputs for each of the `m` (at most four)
/// activation rows of `acts` (`blocks` blocks each): `[row][act]`.
/// `stream`: the group's weights are read for the first time (a decoding
/// step, or prefill's first four rows), so the kernel asks for the ones it
/// reads next ahead of time; later passes find them in the caches.
pub(super) fn group(kind: Kind, group: &[u8], acts: &[ActBlock], blocks: usize, m: usize, stream: bool) -> [[f32; 4]; ROWS] {
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    // SAFETY: the caller checked AVX2 and FMA (F16C comes with them).
    let y: [[f32; ROWS]; 4] = unsafe {
        match (kind, m) {
            (Kind::Q5_0, _) => group_b32::<true>(group, acts, blocks, m, stream),
            (Kind::Q4_1, _) => group_b32::<false>(group, acts, blocks, m, stream),
            (Kind::Q6K, 1) => pad(group_q6k::<1>(group, [act(0)], stream)),
            (Kind::Q6K, 2) => pad(group_q6k::<2>(group, [act(0), act(1)], stream)),
            (Kind::Q6K, 3) => pad(group_q6k::<3>(group, [act(0), act(1), act(2)], stream)),
            (Kind::Q6K, _) => group_q6k::<4>(group, [act(0), act(1), act(2), act(3)], stream),
            (_, 1) => pad(group_q4k::<1>(group, [act(0)], stream)),
            (_, 2) => pad(group_q4k::<2>(group, [act(0), act(1)], stream)),
            (_, 3) => pad(group_q4k::<3>(group, [act(0), act(1), act(2)], stream)),
            _ => group_q4k::<4>(group, [act(0), act(1), act(2), act(3)], stream),
        }
    };
    std::array::from_fn(|r| std::array::from_fn(|i| y[i][r]))
}

/// How far ahead the kernels ask for the weights they will read next: the
/// same eight rows' weights 1,024 columns on (four super-blocks, 32 blocks
/// of 32: 4.5-6.6 KiB of the stream). A decoding step reads each weight
/// once, from memory, and the hardware prefetchers alone left the loads
/// waiting: large model, 2 AVX2 threads on an AMD EPYC with AVX-512, decode
/// 34.4 -> 38.0 tok/s (two, four and eight super-blocks ahead all gain;
/// one does not).
const AHEAD_VALUES: usize = 1024;

/// Asks for the cache lines of the block `AHEAD_VALUES` columns past
/// `block` (a group's block of `kind`) into the L1 cache. Past the group's
/// end they are the next group's, which the same task reads next. A
/// prefetch never faults, so the addresses need not be in the slice.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn prefetch(kind: Kind, block: &[u8]) {
    let p = block.as_ptr().wrapping_add(AHEAD_VALUES / kind.block_values() * group_bytes(kind));
    for off in (0..block.len()).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8);
    }
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
fn group_q4k<const N: usize>(group: &[u8], acts: [&[ActBlock]; N], stream: bool) -> [[f32; ROWS]; N] {
    let mask = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); N];
    let mut off = [_mm256_setzero_ps(); N];
    for (s, sb) in group.chunks_exact(group_bytes(Kind::Q4K)).enumerate() {
        if stream {
            prefetch(Kind::Q4K, sb);
        }
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

/// [`group_32`] for `m` (at most four) activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
fn group_b32<const Q5: bool>(group: &[u8], acts: &[ActBlock], blocks: usize, m: usize, stream: bool) -> [[f32; ROWS]; 4] {
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    match m {
        1 => pad(group_32::<1, Q5>(group, [act(0)], stream)),
        2 => pad(group_32::<2, Q5>(group, [act(0), act(1)], stream)),
        3 => pad(group_32::<3, Q5>(group, [act(0), act(1), act(2)], stream)),
        _ => group_32::<4, Q5>(group, [act(0), act(1), act(2), act(3)], stream),
    }
}

/// [`super::super::dot_reference`] of eight interleaved Q4_1 rows (`Q5`
/// false) or Q5_0 rows (`Q5` true) with `N` activation rows, lane `r` for
/// row `r`. Per block, four chunks of four bytes per row: the low nibbles
/// meet activations `4t..4t + 4`, the high ones `16 + 4t..`; Q5_0's fifth
/// bits come from the block's high-bit bytes, two shifts per chunk.
/// `maddubs` pairs stay below 2 * 31 * 127, so a half block's four chunks
/// add up in 16 bits (31,496); one `madd` by ones each widens them to the
/// rows' 32-bit lanes. Then, as the reference does per block, `acc +=
/// isum * (d * d_a)` and `off += m * s_a` (Q5_0's `m` is `-16 d`, exact).
#[target_feature(enable = "avx2,fma,f16c")]
fn group_32<const N: usize, const Q5: bool>(group: &[u8], acts: [&[ActBlock]; N], stream: bool) -> [[f32; ROWS]; N] {
    let mask = _mm256_set1_epi8(0x0f);
    let fifth = _mm256_set1_epi8(0x10);
    let ones = _mm256_set1_epi16(1);
    let (kind, nibbles) = if Q5 { (Kind::Q5_0, Q5_0_NIBBLES) } else { (Kind::Q4_1, Q4_1_NIBBLES) };
    let mut acc = [_mm256_setzero_ps(); N];
    let mut off = [_mm256_setzero_ps(); N];
    // Checked once, not per block: every activation row covers the group.
    if acts.iter().any(|a| a.len() < group.len() / group_bytes(kind)) {
        return [[0.0; ROWS]; N];
    }
    for (j, gb) in group.chunks_exact(group_bytes(kind)).enumerate() {
        if stream {
            prefetch(kind, gb);
        }
        let mut high = if Q5 { load32(&gb[Q5_0_HIGH..]) } else { _mm256_setzero_si256() };
        let mut lo16 = [_mm256_setzero_si256(); N];
        let mut hi16 = [_mm256_setzero_si256(); N];
        for t in 0..4 {
            let v = load32(&gb[nibbles + 32 * t..]);
            let (mut lo, mut hi) = (_mm256_and_si256(v, mask), _mm256_and_si256(_mm256_srli_epi16(v, 4), mask));
            if Q5 {
                // This chunk's bits are bits 0 (low values) and 1 (high
                // values) of each byte of `high`: to bit 4. (16-bit shifts:
                // what crosses into the next byte is masked off.)
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(high, 4), fifth));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(high, 3), fifth));
                high = _mm256_srli_epi16(high, 2);
            }
            for i in 0..N {
                lo16[i] = _mm256_add_epi16(lo16[i], _mm256_maddubs_epi16(lo, four(&acts[i][j], t)));
                hi16[i] = _mm256_add_epi16(hi16[i], _mm256_maddubs_epi16(hi, four(&acts[i][j], 4 + t)));
            }
        }
        let d = _mm256_cvtph_ps(load16(&gb[0..]));
        let m = if Q5 { _mm256_mul_ps(d, _mm256_set1_ps(-16.0)) } else { _mm256_cvtph_ps(load16(&gb[Q4_1_MINS..])) };
        for i in 0..N {
            let a = &acts[i][j];
            let isum = _mm256_add_epi32(_mm256_madd_epi16(lo16[i], ones), _mm256_madd_epi16(hi16[i], ones));
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, _mm256_set1_ps(a.d)), acc[i]);
            off[i] = _mm256_fmadd_ps(m, _mm256_set1_ps(a.s), off[i]);
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
fn group_q6k<const N: usize>(group: &[u8], acts: [&[ActBlock]; N], stream: bool) -> [[f32; ROWS]; N] {
    let low = _mm256_set1_epi8(0x0f);
    let pair = _mm256_set1_epi8(0x30);
    let mut acc = [_mm256_setzero_ps(); N];
    for (s, sb) in group.chunks_exact(group_bytes(Kind::Q6K)).enumerate() {
        if stream {
            prefetch(Kind::Q6K, sb);
        }
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
