//! The x86-64 row kernels: one weight row (decoding) or a few activation
//! rows (small batches) at a time, on AVX2, AVX-VNNI or AVX-512 VNNI; each
//! gives the bits of [`super::dot_reference`].

// SIMD intrinsics need `unsafe`: every entry point is only called after a
// runtime check of the CPU features it is compiled for, and all memory
// access goes through bounds-checked slices (loads read exactly one block).
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{ActBlock, Kind, Weights};
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

/// [`high_bits`] with an AVX-512 byte mask: one masked move.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
fn high_bits_vnni(bits: u32) -> __m256i {
    _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(0x10))
}

/// Products of 32 unsigned bytes `u` (< 128) and 32 signed bytes `s`,
/// summed in groups of four: 8 exact integers (no pair overflows 16 bits
/// with weights below 32 and activations within +-127).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn idot(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// [`idot`] in one `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
fn idot_vnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// [`idot`] in one AVX-VNNI `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx2,fma,avxvnni")]
fn idot_avxvnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
}

/// Sum of eight integers (exact).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// The sums of four vectors of eight integers each, as floats (exact:
/// a block's sum stays far below 2^24). The conversion is one vector
/// instruction: a scalar `cvtsi2ss` per sum merges into, and so waits
/// for, whatever register the compiler picks, often an accumulator.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum4_f32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> [f32; 4] {
    // [a b c d partial sums | the same for lanes 4-7] -> add the halves.
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    let mut out = [0f32; 4];
    // SAFETY: `out` is 16 writable bytes; unaligned store.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm_cvtepi32_ps(s)) };
    out
}

/// 32 bytes of a slice of exactly 32; `None` for any other length.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load32(bytes: &[u8]) -> Option<__m256i> {
    let bytes = <&[u8; 32]>::try_from(bytes).ok()?;
    // SAFETY: `bytes` is 32 readable bytes; unaligned load.
    Some(unsafe { _mm256_loadu_si256(bytes.as_ptr() as *const __m256i) })
}

/// [`super::dot_reference`] of one Q6_K weight row, same bits (one
/// version for every x86 instruction set: `maddubs` + `madd` applies the
/// half-block scales in the instruction that sums the pairs). Per block of
/// 32: `maddubs` of the 6-bit weights (below 64, so a pair stays below
/// 2^15) with the activations, less `maddubs` of 32 with them (the zero
/// point; the difference stays below 2^13), then `madd` with the block's
/// two scales (eight 16-bit lanes each). The eight blocks of a super-block
/// share one activation scale, so their exact integer sums add up in the
/// lanes of one register: one reduction and one multiply-add per 256
/// weights.
///
/// `N` activation rows at once (a decode batch): each weight super-block
/// is decoded once for all of them, each row accumulating as alone.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn row_q6k<const N: usize>(w: &[u8], acts: [&[ActBlock]; N]) -> [f32; N] {
    let low = _mm256_set1_epi8(0x0f);
    let pair = _mm256_set1_epi8(0x30);
    let zero = _mm256_set1_epi8(Kind::Q6K.zero() as i8);
    let mut acc = [0f32; N];
    let supers = w.len() / Kind::Q6K.block_bytes();
    if acts.iter().any(|a| a.len() < 8 * supers) {
        return [0.0; N];
    }
    for (s, sb) in w.chunks_exact(Kind::Q6K.block_bytes()).enumerate() {
        let (Some(sc), Some(dh)) = (sb.get(192..208).and_then(|s| <&[u8; 16]>::try_from(s).ok()), sb.get(208..210)) else { return [0.0; N] };
        let a8: [&[ActBlock]; N] = std::array::from_fn(|r| &acts[r][8 * s..8 * s + 8]);
        let d = f16::from_le_bytes([dh[0], dh[1]]).to_f32();
        // SAFETY: `sc` is 16 readable bytes; unaligned load.
        let scales = unsafe { _mm_loadu_si128(sc.as_ptr() as *const __m128i) };
        let mut sum = [_mm256_setzero_si256(); N];
        for h in 0..2 {
            let (Some(ql0), Some(ql1), Some(qh)) =
                (load32(&sb[64 * h..64 * h + 32]), load32(&sb[64 * h + 32..64 * h + 64]), load32(&sb[128 + 32 * h..160 + 32 * h]))
            else {
                return [0.0; N];
            };
            // Block k: low (k < 2) or high nibbles of ql0 / ql1, bits 2k and
            // 2k + 1 of qh moved to bits 4 and 5 (shifts of 16-bit lanes
            // only carry bits the mask then drops).
            let u = [
                _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_and_si256(_mm256_slli_epi16(qh, 4), pair)),
                _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_and_si256(_mm256_slli_epi16(qh, 2), pair)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), _mm256_and_si256(qh, pair)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), _mm256_and_si256(_mm256_srli_epi16(qh, 2), pair)),
            ];
            for (k, &u) in u.iter().enumerate() {
                let j = 4 * h + k;
                // Scales 2j (eight 16-bit lanes) and 2j + 1 (the other eight).
                let pick = _mm_set_epi64x((0x0101_0101_0101_0101u64 * (2 * j as u64 + 1)) as i64, (0x0101_0101_0101_0101u64 * 2 * j as u64) as i64);
                let by = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
                for r in 0..N {
                    let a = load_acts(&a8[r][j]);
                    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, a), _mm256_maddubs_epi16(zero, a));
                    sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(p, by));
                }
            }
        }
        for r in 0..N {
            acc[r] = (hsum_i32(sum[r]) as f32).mul_add(d * a8[r][7].d, acc[r]);
        }
    }
    // The reference's offset sum stays +0 (Q6_K has no offset).
    acc.map(|a| a + 0.0)
}

/// Four activation rows' block scales and scaled sums (a lane per
/// activation row of a group).
struct Lanes {
    d: [f32; 4],
    s: [f32; 4],
}

impl Lanes {
    fn of(acts: &[&[ActBlock]; 4], b: usize) -> Self {
        Lanes { d: acts.map(|r| r[b].d), s: acts.map(|r| r[b].s) }
    }
}

/// Four running sums `acc` and offsets `off`, each lane accumulating as
/// [`super::dot_reference`] does: `acc = fma(isum, d_w * d_a, acc)`,
/// `off = fma(m_w, s_a, off)`.
struct Sums {
    acc: __m128,
    off: __m128,
}

impl Sums {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn new() -> Self {
        Sums { acc: _mm_setzero_ps(), off: _mm_setzero_ps() }
    }

    /// Adds one block: the integer products `p` of the weight block (scale
    /// `d`, offset `mw`) with the four activation rows' blocks.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn add(&mut self, p: [__m256i; 4], d: f32, mw: f32, lanes: &Lanes) {
        // [p0 p1 p2 p3 partial sums | the same for lanes 4-7] -> add the halves.
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let isum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        // SAFETY: both arrays are 16 readable bytes; unaligned loads.
        let (ad, asum) = unsafe { (_mm_loadu_ps(lanes.d.as_ptr()), _mm_loadu_ps(lanes.s.as_ptr())) };
        self.acc = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), _mm_mul_ps(_mm_set1_ps(d), ad), self.acc);
        self.off = _mm_fmadd_ps(_mm_set1_ps(mw), asum, self.off);
    }

    /// `acc + off` of every lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn total(&self) -> [f32; 4] {
        let mut out = [0f32; 4];
        // SAFETY: `out` is 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm_add_ps(self.acc, self.off)) };
        out
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn load_acts(a: &ActBlock) -> __m256i {
    // SAFETY: `qs` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i) }
}

/// A Q4_K super-block's eight 6-bit scales and eight 6-bit mins as the
/// bytes of two words (as [`crate::decoder::qblock::q4k_scale_bytes`],
/// with 32-bit masks as GGML does: the scalar bit picking took a third of a
/// Q4_K decode row).
#[inline]
fn q4k_scale_words(head: &[u8; 16]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([head[4 + 4 * i], head[5 + 4 * i], head[6 + 4 * i], head[7 + 4 * i]]);
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    // Scales: bytes 0-3 low 6 bits of w0; 4-7 low nibbles of w2 with the
    // top two bits of w0's bytes above them. Mins: the same of w1, and
    // the high nibbles of w2 with the top bits of w1's bytes.
    let scales = (w0 & LOW6) as u64 | (((w2 & LOW4) | (((w0 >> 6) & TOP2) << 4)) as u64) << 32;
    let mins = (w1 & LOW6) as u64 | ((((w2 >> 4) & LOW4) | (((w1 >> 6) & TOP2) << 4)) as u64) << 32;
    (scales, mins)
}

/// [`super::dot_reference`] of one Q4_K weight row with `N` activation
/// rows (a decode batch decodes each super-block once), same bits: per
/// block `maddubs` of the nibbles with the activations and `madd` with
/// the block's 6-bit scale (exact: pairs below 2 * 15 * 127), the eight
/// blocks' sums added in one register (they share the activation scale),
/// the mins times the activations' block sums in integers; then one
/// multiply-add each for the super-block's product and offset.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn row_q4k<const N: usize>(w: &[u8], acts: [&[ActBlock]; N]) -> [f32; N] {
    let mask = _mm256_set1_epi8(0x0f);
    // Per activation row: lane 0 the product sum, lane 1 the offset sum.
    let mut acc = [_mm_setzero_ps(); N];
    let supers = w.len() / Kind::Q4K.block_bytes();
    if acts.iter().any(|a| a.len() < 8 * supers) {
        return [0.0; N];
    }
    for (s, sb) in w.chunks_exact(Kind::Q4K.block_bytes()).enumerate() {
        let Some(head) = sb.get(..16).and_then(|h| <&[u8; 16]>::try_from(h).ok()) else { return [0.0; N] };
        let d = f16::from_le_bytes([head[0], head[1]]).to_f32();
        let dmin = f16::from_le_bytes([head[2], head[3]]).to_f32();
        let (scales, mins) = q4k_scale_words(head);
        let sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64)));
        let mn = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mins as i64));
        let a8: [&[ActBlock]; N] = std::array::from_fn(|r| &acts[r][8 * s..8 * s + 8]);
        let mut sum = [_mm256_setzero_si256(); N];
        for c in 0..4 {
            let Some(v) = load32(&sb[16 + 32 * c..48 + 32 * c]) else { return [0.0; N] };
            // Blocks 2c and 2c + 1: the low and high nibbles of 32 bytes;
            // their scales (16-bit lanes 2c and 2c + 1 of `sc`) broadcast.
            let pick = |j: usize| _mm256_set1_epi16((2 * j as i16) | ((2 * j as i16 + 1) << 8));
            let (lo, hi) = (_mm256_and_si256(v, mask), _mm256_and_si256(_mm256_srli_epi16(v, 4), mask));
            let (by_lo, by_hi) = (_mm256_shuffle_epi8(sc, pick(2 * c)), _mm256_shuffle_epi8(sc, pick(2 * c + 1)));
            for r in 0..N {
                let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load_acts(&a8[r][2 * c])), by_lo);
                let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load_acts(&a8[r][2 * c + 1])), by_hi);
                sum[r] = _mm256_add_epi32(sum[r], _mm256_add_epi32(p_lo, p_hi));
            }
        }
        for r in 0..N {
            // SAFETY: `bs` is 16 readable bytes; unaligned load.
            let bs = unsafe { _mm_loadu_si128(a8[r][0].bs.as_ptr() as *const __m128i) };
            let m4 = _mm_madd_epi16(mn, bs);
            let s4 = _mm_add_epi32(_mm256_castsi256_si128(sum[r]), _mm256_extracti128_si256(sum[r], 1));
            // [products, offsets, ..]: both exact integers.
            let h = _mm_hadd_epi32(s4, m4);
            let h = _mm_hadd_epi32(h, h);
            let ad = a8[r][0].d;
            let by = _mm_mul_ps(_mm_setr_ps(d, -dmin, 0.0, 0.0), _mm_set1_ps(ad));
            acc[r] = _mm_fmadd_ps(_mm_cvtepi32_ps(h), by, acc[r]);
        }
    }
    std::array::from_fn(|r| {
        let mut v = [0f32; 4];
        // SAFETY: `v` is 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_ps(v.as_mut_ptr(), acc[r]) };
        v[0] + v[1]
    })
}

/// A k-quant row ([`row_q4k`] or [`row_q6k`]) with up to four activation
/// rows `acts` (those from `i` on), into `out[r * m + i + k]` for every
/// weight row `r` of `w`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn rows_super(w: &Weights<'_>, acts: &[&[ActBlock]], out: &mut [f32], m: usize, i: usize) {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn run<const N: usize>(kind: Kind, row: &[u8], acts: [&[ActBlock]; N]) -> [f32; N] {
        if kind == Kind::Q6K {
            row_q6k::<N>(row, acts)
        } else {
            row_q4k::<N>(row, acts)
        }
    }
    for r in 0..w.rows() {
        let (row, at) = (w.row(r), r * m + i);
        match *acts {
            [a] => out[at] = run::<1>(w.kind, row, [a])[0],
            [a, b] => out[at..at + 2].copy_from_slice(&run::<2>(w.kind, row, [a, b])),
            [a, b, c] => out[at..at + 3].copy_from_slice(&run::<3>(w.kind, row, [a, b, c])),
            [a, b, c, d, ..] => out[at..at + 4].copy_from_slice(&run::<4>(w.kind, row, [a, b, c, d])),
            [] => {}
        }
    }
}

macro_rules! rows_for {
    ($rows:ident, $row:ident, $group:ident, $unpack:ident, $features:literal, $idot:ident, $high:ident) => {
        /// One weight block as the products use it: the 32 unsigned
        /// weights (Q5_0's high bits expanded by `$high`), the scale `d`
        /// and the offset `m` per unit of activation sum (see
        /// [`crate::decoder::qblock::q5_0_block`]); `None` for a short block.
        #[inline]
        #[target_feature(enable = $features)]
        fn $unpack(kind: Kind, block: &[u8]) -> Option<(__m256i, f32, f32)> {
            let d = f16::from_le_bytes([*block.first()?, *block.get(1)?]).to_f32();
            Some(match kind {
                Kind::Q4K | Kind::Q6K => return None,
                Kind::Q4_1 => (nibbles(<&[u8; 16]>::try_from(block.get(4..20)?).ok()?), d, f16::from_le_bytes([block[2], block[3]]).to_f32()),
                Kind::Q5_0 => {
                    let qh = u32::from_le_bytes(<[u8; 4]>::try_from(block.get(2..6)?).ok()?);
                    (_mm256_or_si256(nibbles(<&[u8; 16]>::try_from(block.get(6..22)?).ok()?), $high(qh)), d, -16.0 * d)
                }
            })
        }

        /// Dot products of every weight row of `w` with up to four
        /// activation rows `acts` (those from `i` on) into `out[r * m +
        /// i + k]` (decoding batches of a few sequences): each weight block
        /// is decoded once for all four activation rows, and their four
        /// sums share one reduction and one multiply-add in the lanes of
        /// a register, lane `k` accumulating block after block as
        /// [`super::dot_reference`] does (same bits).
        #[target_feature(enable = $features)]
        pub(super) fn $group(w: &Weights<'_>, acts: &[&[ActBlock]], out: &mut [f32], m: usize, i: usize) {
            let n = acts.len().min(4);
            if w.kind.is_super() {
                rows_super(w, &acts[..n], out, m, i);
                return;
            }
            let Some(&first) = acts.first() else { return };
            // Missing activation rows repeat the first; their lanes are dropped.
            let a4: [&[ActBlock]; 4] = std::array::from_fn(|k| if k < n { acts[k] } else { first });
            let lanes: Vec<Lanes> = (0..first.len()).map(|b| Lanes::of(&a4, b)).collect();
            let size = w.kind.block_bytes();
            for r in 0..w.rows() {
                let mut sums = Sums::new();
                for (s, block) in w.row(r).chunks_exact(size).enumerate() {
                    let Some((u, d, mw)) = $unpack(w.kind, block) else { return };
                    let a = a4.map(|act| load_acts(&act[s]));
                    sums.add([$idot(u, a[0]), $idot(u, a[1]), $idot(u, a[2]), $idot(u, a[3])], d, mw, &lanes[s]);
                }
                let v = sums.total();
                out[r * m + i..r * m + i + n].copy_from_slice(&v[..n]);
            }
        }

        /// Dot products of every weight row of `w` with the activation
        /// row `act` into `out[r * m + i]`: one weight row after the
        /// next (as the weights stream from memory when decoding). The
        /// loop lives here so that the row product inlines into it.
        #[target_feature(enable = $features)]
        pub(super) fn $rows(w: &Weights<'_>, act: &[ActBlock], out: &mut [f32], m: usize, i: usize) {
            if w.kind.is_super() {
                rows_super(w, &[act], out, m, i);
                return;
            }
            for r in 0..w.rows() {
                out[r * m + i] = $row(w.kind, w.row(r), act);
            }
        }

        /// [`super::dot_reference`] of one weight row, same bits. Blocks
        /// go four at a time so that one horizontal reduction serves
        /// their four integer sums.
        #[inline]
        #[target_feature(enable = $features)]
        fn $row(kind: Kind, w: &[u8], act: &[ActBlock]) -> f32 {
            let size = kind.block_bytes();
            let (mut acc, mut off) = (0f32, 0f32);
            let mut quads = w.chunks_exact(4 * size).zip(act.chunks_exact(4));
            for (four, a) in quads.by_ref() {
                let (Some((u0, d0, m0)), Some((u1, d1, m1)), Some((u2, d2, m2)), Some((u3, d3, m3))) = (
                    $unpack(kind, &four[..size]),
                    $unpack(kind, &four[size..2 * size]),
                    $unpack(kind, &four[2 * size..3 * size]),
                    $unpack(kind, &four[3 * size..]),
                ) else {
                    return 0.0;
                };
                let s = hsum4_f32($idot(u0, load_acts(&a[0])), $idot(u1, load_acts(&a[1])), $idot(u2, load_acts(&a[2])), $idot(u3, load_acts(&a[3])));
                for (k, (d, m)) in [(d0, m0), (d1, m1), (d2, m2), (d3, m3)].into_iter().enumerate() {
                    acc = s[k].mul_add(d * a[k].d, acc);
                    off = m.mul_add(a[k].s, off);
                }
            }
            let done = w.len() / (4 * size) * 4;
            for (block, a) in w[done * size..].chunks_exact(size).zip(&act[done..]) {
                let Some((u, d, m)) = $unpack(kind, block) else { return 0.0 };
                let isum = hsum_i32($idot(u, load_acts(a)));
                acc = (isum as f32).mul_add(d * a.d, acc);
                off = m.mul_add(a.s, off);
            }
            acc + off
        }
    };
}

rows_for!(rows, row, group, unpack, "avx2,fma", idot, high_bits);
rows_for!(rows_vnni, row_vnni, group_vnni, unpack_vnni, "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni", idot_vnni, high_bits_vnni);
rows_for!(rows_avxvnni, row_avxvnni, group_avxvnni, unpack_avxvnni, "avx2,fma,avxvnni", idot_avxvnni, high_bits);
