//! AVX2 / AVX-512 VNNI matrix multiplication for Q4_1 and Q5_0 weights.
//!
//! candle 0.11 has SIMD CPU kernels for Q4_0, Q8_0 and the k-quants only;
//! Q4_1 and Q5_0 (the tiny model is Q4_1, the small model mostly Q5_0) run
//! scalar code there. Converting them to Q8_0 at load made them fast but
//! 1.3-1.7x larger, and decoding is bound by memory bandwidth, so every
//! token read 30-70% more bytes than llama.cpp does. These kernels read the
//! original blocks: activations are quantized per 32 values to 8 bits (as
//! llama.cpp does: scale `max|x| / 127`), and each block product is an
//! integer dot product of 32 pairs (`maddubs` + `madd`, or one `vpdpbusd`
//! where the CPU has AVX-512 VNNI) scaled once.
//!
//! The work is split over output rows on candle's own CPU pool (the one
//! its quantized matmuls use: a second pool would make the two spin
//! against each other on a 2-core machine). Prefill works in register
//! tiles of two weight rows by four activation rows: each weight block is
//! decoded once per four activation rows and each activation block loaded
//! once per two weight rows, and a group of four activation rows meets all
//! of a task's weight rows while it sits in L1. Decoding (one activation
//! row) reads the weight rows one after the next. Every instruction set
//! and tile shape does the same arithmetic per output in the same order:
//! the results are the same bits (tests).
//!
//! `cargo run --release -p persona-engine --example qmatmul_speed` times
//! one product.

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

/// The instruction sets the kernels run on, from slowest to fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust (any CPU).
    Portable,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-512 with VNNI (byte dot products in one instruction);
    /// gives the same bits as [`Isa::Avx2`].
    Avx512Vnni,
}

/// The environment variable that caps the instruction set (`avx2` or
/// `portable`), to compare kernels or to work around a CPU problem.
pub const ISA_ENV: &str = "PERSONA_SIMD";

/// The best instruction set this CPU has.
pub fn detected_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx2") && has!("fma")) {
            return Isa::Portable;
        }
        if has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512vnni") {
            return Isa::Avx512Vnni;
        }
        Isa::Avx2
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Isa::Portable
    }
}

/// The instruction set the kernels use: the best detected, capped by
/// [`ISA_ENV`] (read once).
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var(ISA_ENV).map(|v| v.to_ascii_lowercase()).as_deref() {
            Ok("portable") => Isa::Portable,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512Vnni,
        };
        detected_isa().min(cap)
    })
}

/// The scales and sums of one block of four activation rows, side by
/// side, so that a tile reads them with one load each.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct Quad {
    d: [f32; 4],
    s: [f32; 4],
}

/// [`Quad`]s for every whole group of four activation rows: group `g`'s
/// block `b` is at `g * blocks + b`.
fn quads(acts: &[ActBlock], blocks: usize) -> Vec<Quad> {
    let groups = acts.len() / blocks / 4;
    let mut out = vec![Quad::default(); groups * blocks];
    for (g, quad) in out.chunks_exact_mut(blocks.max(1)).enumerate() {
        for (b, q) in quad.iter_mut().enumerate() {
            for r in 0..4 {
                let a = &acts[(g * 4 + r) * blocks + b];
                q.d[r] = a.d;
                q.s[r] = a.s;
            }
        }
    }
    out
}

/// Whether this CPU runs the SIMD kernels (x86-64 with AVX2 and FMA).
pub fn available() -> bool {
    isa() > Isa::Portable
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
    matmul_on(isa(), kind, weights, n, k, x, m)
}

/// [`matmul`] on a given instruction set (one this CPU lacks falls back to
/// the best it has).
pub fn matmul_on(isa: Isa, kind: Kind, weights: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let isa = isa.min(detected_isa());
    let blocks = k / BLOCK;
    let row_bytes = blocks * kind.block_bytes();
    debug_assert_eq!(weights.len(), n * row_bytes);
    debug_assert_eq!(x.len(), m * k);
    let acts = quantize_rows(x, k);
    let quad = quads(&acts, blocks);
    // Results by weight row first (each task owns whole weight rows), then
    // transposed to `(m, n)`.
    let mut by_row = vec![0f32; n * m];
    {
        // One uncontended lock per task hands each worker its own rows.
        let tasks: Vec<Mutex<&mut [f32]>> = by_row.chunks_mut(ROWS_PER_TASK * m).map(Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(tasks.len(), |range| {
            for task in range {
                let Ok(mut out) = tasks[task].lock() else { continue };
                let first = task * ROWS_PER_TASK * row_bytes;
                let w = &weights[first..first + out.len() / m * row_bytes];
                rows_times_acts(isa, &Weights { kind, data: w, row_bytes }, &acts, &quad, blocks, &mut out);
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

/// Dot products of a few weight rows (`w`, `row_bytes` each) with every
/// activation row, into `out` (by weight row: `out[r * m + i]`), in tiles
/// of two weight rows by four activation rows. Each group of four
/// activation rows meets every weight row before the next group is loaded,
/// so it stays in L1 and the activations stream from L2 once per task
/// rather than once per weight row. `isa` is at most [`detected_isa`].
fn rows_times_acts(isa: Isa, w: &Weights<'_>, acts: &[ActBlock], quad: &[Quad], blocks: usize, out: &mut [f32]) {
    let weight_rows = w.rows();
    let m = out.len() / weight_rows.max(1);
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    #[cfg(target_arch = "x86_64")]
    if isa > Isa::Portable {
        let vnni = isa == Isa::Avx512Vnni;
        let mut i = 0;
        while i < m {
            // SAFETY: `isa` was detected on this CPU (AVX2 + FMA, and the
            // AVX-512 VNNI features for `vnni`).
            unsafe {
                if i + 4 <= m {
                    let group = [act(i), act(i + 1), act(i + 2), act(i + 3)];
                    let quad = &quad[i / 4 * blocks..(i / 4 + 1) * blocks];
                    if vnni { avx2::dot_column_vnni::<4>(w, group, quad, out, m, i) } else { avx2::dot_column::<4>(w, group, quad, out, m, i) }
                    i += 4;
                } else {
                    if vnni { avx2::dot_column_vnni::<1>(w, [act(i)], &[], out, m, i) } else { avx2::dot_column::<1>(w, [act(i)], &[], out, m, i) }
                    i += 1;
                }
            }
        }
        return;
    }
    let _ = isa;
    for i in 0..m {
        for r in 0..weight_rows {
            out[r * m + i] = dot_reference(w.kind, w.row(r), act(i));
        }
    }
}

/// Weight rows of one quantization type, `row_bytes` each.
struct Weights<'a> {
    kind: Kind,
    data: &'a [u8],
    row_bytes: usize,
}

impl Weights<'_> {
    fn rows(&self) -> usize {
        self.data.len() / self.row_bytes
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// Writes a tile of results for weight rows `r..r + W` and activation rows
/// `i..i + R` into `out` (by weight row, `m` per row).
#[inline]
fn store<const W: usize, const R: usize>(out: &mut [f32], m: usize, r: usize, i: usize, y: [[f32; R]; W]) {
    for (w, ys) in y.iter().enumerate() {
        let at = (r + w) * m + i;
        out[at..at + R].copy_from_slice(ys);
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

    use super::{store, ActBlock, Kind, Quad, Weights, BLOCK};
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

    /// The same product with AVX-512 VNNI: one `vpdpbusd` for
    /// maddubs + madd. The four-byte groups summed per lane are the same,
    /// and no product saturates either way (weights < 32, activations
    /// within +-127), so the lanes, and every result, are bit for bit those
    /// of [`dot_u8_i8`].
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
    fn dot_u8_i8_vnni(u: __m256i, s: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s))
    }

    /// [`high_bits`] with an AVX-512 byte mask: one masked move.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni")]
    fn high_bits_vnni(bits: u32) -> __m256i {
        _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(0x10))
    }

    /// `dot_tile` for one instruction set: `$dot` multiplies 32 unsigned
    /// weight bytes by 32 signed activation bytes, `$high` expands Q5_0's
    /// high bits.
    macro_rules! dot_tile_for {
        ($(#[$doc:meta])* $name:ident, $quad:ident, $column:ident, $decode:ident, $features:literal, $dot:ident, $high:ident) => {
            /// Dot products of every weight row of `w` (`row_bytes` each)
            /// with `R` activation rows (those from `i` on), into `out` (by
            /// weight row, `m` per row): tiles of two weight rows beside
            /// four activation rows (whose scales and sums, block by block,
            /// are `quad`), else one weight row at a time (the decoding
            /// case, where the weights stream from memory and one row after
            /// the next is what the prefetcher follows best). The loop
            /// lives here so that the tile inlines into it.
            #[target_feature(enable = $features)]
            pub(super) fn $column<const R: usize>(w: &Weights<'_>, acts: [&[ActBlock]; R], quad: &[Quad], out: &mut [f32], m: usize, i: usize) {
                let (kind, rows) = (w.kind, w.rows());
                let weight = |r: usize| w.row(r);
                let mut r = 0;
                if let Ok(four) = <[&[ActBlock]; 4]>::try_from(&acts[..]) {
                    while r + 2 <= rows {
                        store(out, m, r, i, $quad::<2>(kind, [weight(r), weight(r + 1)], four, quad));
                        r += 2;
                    }
                    if r < rows {
                        store(out, m, r, i, $quad::<1>(kind, [weight(r)], four, quad));
                    }
                    return;
                }
                while r < rows {
                    store(out, m, r, i, $name::<1, R>(kind, [weight(r)], acts));
                    r += 1;
                }
            }

            /// The next block of each of `W` weight rows, decoded: scales,
            /// offsets (`d * q + min`, Q5_0's `q` counted from 0) and the
            /// 32 unsigned bytes `q`.
            #[inline]
            #[target_feature(enable = $features)]
            fn $decode<const W: usize>(kind: Kind, blocks: &mut [std::slice::ChunksExact<'_, u8>; W]) -> Option<([f32; W], [f32; W], [__m256i; W])> {
                let mut d = [0f32; W];
                let mut min = [0f32; W];
                let mut u = [_mm256_setzero_si256(); W];
                for w in 0..W {
                    let block = blocks[w].next()?;
                    d[w] = f16::from_le_bytes([block[0], block[1]]).to_f32();
                    match kind {
                        Kind::Q4_1 => {
                            min[w] = f16::from_le_bytes([block[2], block[3]]).to_f32();
                            u[w] = nibbles(<&[u8; 16]>::try_from(&block[4..20]).ok()?);
                        }
                        Kind::Q5_0 => {
                            // The unsigned 5-bit values u = q + 16 in [0, 31]
                            // go straight into the byte product; the offset
                            // comes back as -16 * d * sum(a), from the
                            // activation block's sum.
                            min[w] = -16.0 * d[w];
                            let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                            u[w] = _mm256_or_si256(nibbles(<&[u8; 16]>::try_from(&block[6..22]).ok()?), $high(qh));
                        }
                    }
                }
                Some((d, min, u))
            }

            $(#[$doc])*
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn $name<const W: usize, const R: usize>(kind: Kind, ws: [&[u8]; W], rows: [&[ActBlock]; R]) -> [[f32; R]; W] {
                let mut acc = [[_mm256_setzero_ps(); R]; W];
                let mut mins = [[0f32; R]; W];
                let blocks = ws[0].len() / kind.block_bytes();
                let mut weight_blocks = ws.map(|w| w.chunks_exact(kind.block_bytes()));
                for b in 0..blocks {
                    let Some((d, min, u)) = $decode(kind, &mut weight_blocks) else { return [[0.0; R]; W] };
                    for r in 0..R {
                        let a = &rows[r][b];
                        let x = load_acts(a);
                        for w in 0..W {
                            let dot = $dot(u[w], x);
                            acc[w][r] = _mm256_fmadd_ps(_mm256_set1_ps(d[w] * a.d), dot, acc[w][r]);
                            mins[w][r] += min[w] * a.s;
                        }
                    }
                }
                let _ = BLOCK;
                let mut out = [[0f32; R]; W];
                for w in 0..W {
                    for r in 0..R {
                        out[w][r] = hsum(acc[w][r]) + mins[w][r];
                    }
                }
                out
            }

            /// The tile of `W` weight rows by four activation rows, with the
            /// four rows' scales and sums per block side by side (`quad`):
            /// one vector product gives the four combined scales, one more
            /// the four offset terms. Each lane does the scalar tile's
            /// arithmetic in the same order, so the results are the same
            /// bits.
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn $quad<const W: usize>(kind: Kind, ws: [&[u8]; W], rows: [&[ActBlock]; 4], quad: &[Quad]) -> [[f32; 4]; W] {
                let mut acc = [[_mm256_setzero_ps(); 4]; W];
                let mut mins = [_mm_setzero_ps(); W];
                let mut weight_blocks = ws.map(|w| w.chunks_exact(kind.block_bytes()));
                let lane = [_mm256_set1_epi32(0), _mm256_set1_epi32(1), _mm256_set1_epi32(2), _mm256_set1_epi32(3)];
                for (b, q) in quad.iter().enumerate() {
                    let Some((d, min, u)) = $decode(kind, &mut weight_blocks) else { return [[0.0; 4]; W] };
                    // SAFETY: `q.d` and `q.s` are four readable f32 each.
                    let (ad, asum) = unsafe { (_mm_loadu_ps(q.d.as_ptr()), _mm_loadu_ps(q.s.as_ptr())) };
                    let mut scale = [_mm256_setzero_ps(); W];
                    for w in 0..W {
                        scale[w] = _mm256_castps128_ps256(_mm_mul_ps(_mm_set1_ps(d[w]), ad));
                        mins[w] = _mm_add_ps(mins[w], _mm_mul_ps(_mm_set1_ps(min[w]), asum));
                    }
                    for r in 0..4 {
                        let x = load_acts(&rows[r][b]);
                        for w in 0..W {
                            let dot = $dot(u[w], x);
                            acc[w][r] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(scale[w], lane[r]), dot, acc[w][r]);
                        }
                    }
                }
                let mut out = [[0f32; 4]; W];
                for w in 0..W {
                    let mut m = [0f32; 4];
                    // SAFETY: `m` is four writable f32.
                    unsafe { _mm_storeu_ps(m.as_mut_ptr(), mins[w]) };
                    for r in 0..4 {
                        out[w][r] = hsum(acc[w][r]) + m[r];
                    }
                }
                out
            }
        };
    }

    dot_tile_for!(
        /// Dot products of `W` weight rows with `R` activation rows (a
        /// register tile): each weight block is decoded once and each
        /// activation block loaded once per tile (AVX2 + FMA).
        dot_tile, dot_quad, dot_column, decode, "avx2,fma", dot_u8_i8, high_bits
    );
    dot_tile_for!(
        /// [`dot_tile`] on AVX-512 VNNI: the same results, fewer instructions.
        dot_tile_vnni, dot_quad_vnni, dot_column_vnni, decode_vnni, "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni", dot_u8_i8_vnni, high_bits_vnni
    );
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
    fn every_instruction_set_gives_the_same_bits() {
        // On a CPU without AVX-512 VNNI the fast path falls back to AVX2:
        // the test still compares what runs with the reference.
        for kind in [Kind::Q4_1, Kind::Q5_0] {
            let (n, k, m) = (19, 128, 7);
            let w = blocks(kind, n * k / BLOCK, 5);
            // Activations that reach +-127 after quantization in every block.
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 29 % 89) as f32 - 44.0) / 11.0).collect();
            let avx2 = matmul_on(Isa::Avx2, kind, &w, n, k, &x, m);
            let vnni = matmul_on(Isa::Avx512Vnni, kind, &w, n, k, &x, m);
            assert_eq!(avx2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), vnni.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{kind:?}");
            let portable = matmul_on(Isa::Portable, kind, &w, n, k, &x, m);
            for (a, p) in avx2.iter().zip(&portable) {
                assert!((a - p).abs() <= 1e-4 * p.abs().max(1.0), "{kind:?}: {a} vs {p}");
            }
        }
        assert!(isa() <= detected_isa());
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
