//! Quantized weights interleaved by eight rows, for decoding on x86-64.
//!
//! The row kernels read one weight row after the other and reduce each
//! block's (or super-block's) sums across the lanes of a register. Here
//! eight rows are stored side by side (as llama.cpp's CPU backend repacks
//! Q4_0 and Q4_K for AVX2 at load), so that each 32-bit lane of a register
//! holds a different row: four weight bytes of eight rows are one load, the
//! four activation bytes they meet are broadcast, and the eight rows' sums
//! stay in their lanes to the end (no horizontal sums). The matrix is still
//! read as one stream.
//!
//! Layout: the rows in groups of [`ROWS`], each group's blocks (k-quants:
//! super-blocks) one after the other, [`group_bytes`] each (exactly eight
//! rows' bytes, Q4_K aside: 1,184 instead of 1,152). The nibbles of every
//! kind go in chunks of 32 bytes: chunk `t` holds bytes `4t..4t + 4` of each
//! row's nibbles (of a block, or of a Q4_K pair of blocks), row `r` in bytes
//! `4r..4r + 4`.
//!
//! Q4_1 (160 bytes):
//! - bytes 0-15: the eight rows' `d` (f16), 16-31: their `m` (f16);
//! - 32-159: the nibbles, four chunks (values `4t + b` in the low nibbles,
//!   `16 + 4t + b` in the high ones, as in Q4_1).
//!
//! Q5_0 (176 bytes):
//! - bytes 0-15: the rows' `d` (f16);
//! - 16-47: the high bits, byte `16 + 4r + b` of row `r` holding those of
//!   values `4t + b` (bit `2t`) and `16 + 4t + b` (bit `2t + 1`) for the
//!   four chunks `t`, so that a chunk's are two shifts away from its
//!   nibbles' bit 4;
//! - 48-175: the nibbles, four chunks.
//!
//! Q4_K:
//! - bytes 0-15: the eight rows' `d` (f16), 16-31: their `dmin` (f16);
//! - 32-95: the 6-bit scales, `32 + 8 j + r` for block `j` of row `r`;
//! - 96-159: the 6-bit mins, `96 + 16 c + 2 r + e` for block `2 c + e`;
//! - 160-1183: the nibbles, 256 bytes per pair of blocks `c` (blocks `2c`
//!   and `2c + 1` share bytes as in Q4_K), eight chunks each.
//!
//! Q6_K (1,680 bytes):
//! - bytes 0-15: the rows' `d` (f16);
//! - 16-143: the signed scales, `16 + 16 j + 2 r + e` for half `e` of
//!   block `j`;
//! - 144-1679: per half super-block `h` (768 bytes), the 64 bytes of low
//!   nibbles of each row in sixteen chunks, then its 32 bytes of high bit
//!   pairs in eight chunks the same way.
//!
//! Every output is computed as `super::dot_reference` computes it (a
//! block's or super-block's exact integer sums, then one multiply-add each,
//! lane by lane), so the results have the same bits as the other paths.

use super::{quantize_rows, Isa, Kind, BLOCK};
use crate::decoder::qblock::q4k_scale_bytes;

/// Rows per interleaved group.
pub const ROWS: usize = 8;

/// Bytes of one group's block (eight rows of [`Kind::block_values`]
/// values).
pub const fn group_bytes(kind: Kind) -> usize {
    match kind {
        Kind::Q4_1 => Q4_1_NIBBLES + 128,
        Kind::Q5_0 => Q5_0_NIBBLES + 128,
        Kind::Q6K => Q6_WEIGHTS + 2 * Q6_HALF,
        Kind::Q4K => NIBBLES + 4 * 256,
    }
}

/// Offsets in a Q4_1 / Q5_0 group block: Q4_1's offsets (`m`), Q5_0's
/// high bits, and each kind's nibbles.
const Q4_1_MINS: usize = 16;
const Q4_1_NIBBLES: usize = 32;
const Q5_0_HIGH: usize = 16;
const Q5_0_NIBBLES: usize = 48;

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
/// here: on x86-64 with AVX2 or better (the kernels in use, see
/// [`super::isa`]) and `n` a multiple of [`ROWS`]. The k-quants on every
/// such CPU; Q4_1 and Q5_0 where the row kernels have no VNNI (`vpdpbusd`
/// does a row block's product in one instruction there).
pub fn applies(kind: Kind, n: usize) -> bool {
    let isa = super::isa();
    let kind_fits = match kind {
        Kind::Q4K | Kind::Q6K => true,
        Kind::Q4_1 | Kind::Q5_0 => isa == Isa::Avx2,
    };
    kind_fits && cfg!(target_arch = "x86_64") && isa >= Isa::Avx2 && n.is_multiple_of(ROWS)
}

/// Bytes of `kind` (`n` rows of `k` values) interleaved by eight rows;
/// `None` for `n` not a multiple of [`ROWS`], `k` not one of the kind's
/// block, or bytes that do not hold `n` such rows.
pub fn pack(kind: Kind, w: &[u8], n: usize, k: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; packed_len(kind, n, k)?];
    pack_into(kind, w, n, k, &mut out).then_some(out)
}

/// Bytes of one group of eight whole rows of `k` values (a multiple of
/// the kind's block).
pub(super) const fn group_row_bytes(kind: Kind, k: usize) -> usize {
    k / kind.block_values() * group_bytes(kind)
}

/// Group `g` (rows `8g..8g + 8`) of an interleaved matrix of `kind` with
/// `k` values per row.
pub(super) fn group_at(packed: &[u8], kind: Kind, k: usize, g: usize) -> &[u8] {
    let len = group_row_bytes(kind, k);
    &packed[g * len..(g + 1) * len]
}

/// The length of [`pack`]'s result; `None` for `n` not a multiple of
/// [`ROWS`] or `k` not one of the kind's block.
pub fn packed_len(kind: Kind, n: usize, k: usize) -> Option<usize> {
    (n.is_multiple_of(ROWS) && k.is_multiple_of(kind.block_values())).then(|| n / ROWS * group_row_bytes(kind, k))
}

/// [`pack`] into `out` ([`packed_len`] bytes); false (and `out` left as it
/// was) for a shape [`packed_len`] refuses, bytes that do not hold `n` such
/// rows, or `out` of another length.
pub fn pack_into(kind: Kind, w: &[u8], n: usize, k: usize, out: &mut [u8]) -> bool {
    let row_bytes = kind.row_bytes(k);
    if packed_len(kind, n, k) != Some(out.len()) || w.len() != n * row_bytes {
        return false;
    }
    let per_row = k / kind.block_values();
    let size = group_bytes(kind);
    // Groups spread over the CPU pool (a model's worth is about a second
    // of copying on one core).
    let groups: Vec<std::sync::Mutex<&mut [u8]>> = out.chunks_exact_mut(per_row * size).map(std::sync::Mutex::new).collect();
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
    true
}

/// Calls `f(from, to, len)` for each run of bytes that goes from row
/// `r`'s block of `kind` to its place in a group block (Q4_K's packed 6-bit
/// scales and mins and Q5_0's high bits aside: they are rearranged bit by
/// bit).
fn for_each_move(kind: Kind, r: usize, mut f: impl FnMut(usize, usize, usize)) {
    if matches!(kind, Kind::Q4_1 | Kind::Q5_0) {
        // `d`, Q4_1's `m`, and four chunks of nibbles.
        f(0, 2 * r, 2);
        let (qs, nibbles) = if kind == Kind::Q4_1 {
            f(2, Q4_1_MINS + 2 * r, 2);
            (4, Q4_1_NIBBLES)
        } else {
            (6, Q5_0_NIBBLES)
        };
        for t in 0..4 {
            f(qs + 4 * t, nibbles + 32 * t + 4 * r, 4);
        }
        return;
    }
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

/// Copies one row's block (k-quants: super-block) `src` into its place
/// `r` of a group block.
fn place(kind: Kind, src: &[u8], dst: &mut [u8], r: usize) {
    for_each_move(kind, r, |from, to, len| dst[to..to + len].copy_from_slice(&src[from..from + len]));
    if kind == Kind::Q5_0 {
        let qh = u32::from_le_bytes([src[2], src[3], src[4], src[5]]);
        for b in 0..4 {
            let bit = |i: usize| ((qh >> i) & 1) as u8;
            dst[Q5_0_HIGH + 4 * r + b] = (0..4).fold(0, |byte, t| byte | bit(4 * t + b) << (2 * t) | bit(16 + 4 * t + b) << (2 * t + 1));
        }
    }
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
    if kind == Kind::Q5_0 {
        let mut qh = 0u32;
        for b in 0..4 {
            let byte = src[Q5_0_HIGH + 4 * r + b] as u32;
            for t in 0..4 {
                qh |= ((byte >> (2 * t)) & 1) << (4 * t + b) | ((byte >> (2 * t + 1)) & 1) << (16 + 4 * t + b);
            }
        }
        dst[2..6].copy_from_slice(&qh.to_le_bytes());
    }
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
    let per_row = k / kind.block_values();
    let size = group_bytes(kind);
    out.clear();
    out.resize(rows.len() * kind.row_bytes(k), 0);
    for (i, row) in rows.enumerate() {
        let (g, r) = (row / ROWS, row % ROWS);
        for s in 0..per_row {
            let src = &packed[(g * per_row + s) * size..][..size];
            let dst = &mut out[(i * per_row + s) * kind.block_bytes()..][..kind.block_bytes()];
            take(kind, src, dst, r);
        }
    }
}

/// `out[i * n + j] = dot(x row i, weight row j)` for `m` activation rows
/// and the `n` rows of `k` values of an interleaved matrix of `kind`
/// ([`pack`]); the same bits as [`super::matmul`] on the original bytes.
/// Decoding (up to four activation rows) takes the interleaved kernel, and
/// so does prefill on AVX2 (four activation rows at a time) but of Q6_K;
/// other prefill goes through the tiles on each task's rows unpacked.
pub fn matmul(kind: Kind, packed: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    matmul_on(super::isa(), kind, packed, n, k, x, m)
}

/// [`matmul`] on a given instruction set (one this CPU lacks falls back to
/// the best it has).
pub fn matmul_on(isa: Isa, kind: Kind, packed: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let isa = isa.or_supported_below();
    let acts = quantize_rows(x, k, kind.act_group());
    let blocks = k / BLOCK;
    super::over_tasks(n, m, |first, out, scratch| {
        let rows = out.len() / m;
        #[cfg(target_arch = "x86_64")]
        if m <= 4 && isa >= Isa::Avx2 || isa == Isa::Avx2 && kind != Kind::Q6K {
            // Up to four activation rows against both groups of the task
            // before the next four, so that the task's weights stay in the
            // caches while the activations stream once. (Q6_K's prefill is
            // faster in the tiles: 123 against 145 ms for 1536 x 8960 by
            // 512 rows on two AVX2 cores.)
            for i in (0..m).step_by(4) {
                let take = (m - i).min(4);
                for g in 0..rows / ROWS {
                    let y = avx2::group(kind, group_at(packed, kind, k, first / ROWS + g), &acts[i * blocks..], blocks, take, i == 0);
                    for (r, lanes) in y.iter().enumerate() {
                        let to = (g * ROWS + r) * m + i;
                        out[to..to + take].copy_from_slice(&lanes[..take]);
                    }
                }
            }
            return;
        }
        // Prefill with VNNI (or of Q6_K): the task's rows unpacked for the
        // tiles.
        unpack_rows(kind, packed, k, first..first + rows, &mut scratch.bytes);
        let w = super::Weights { kind, data: &scratch.bytes, row_bytes: kind.row_bytes(k) };
        super::rows_times_acts(isa, &w, &acts, blocks, out, &mut scratch.packed);
    })
}

mod joint;
pub use joint::{matmul_parts, matmul_parts_on, matmul_swiglu, matmul_swiglu_on, Part};

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::qkernels::tests::blocks;

    #[test]
    fn interleaving_round_trips_and_multiplies_with_the_same_bits() {
        let (n, k) = (24, 512);
        for kind in [Kind::Q4_1, Kind::Q5_0, Kind::Q4K, Kind::Q6K] {
            let w = blocks(kind, n * k / kind.block_values(), 5);
            let packed = pack(kind, &w, n, k).unwrap();
            assert_eq!(packed.len(), n / ROWS * (k / kind.block_values()) * group_bytes(kind));
            let mut back = Vec::new();
            unpack_rows(kind, &packed, k, 0..n, &mut back);
            assert!(back == w, "{kind:?}: unpacking gives the original bytes");
            for m in [1, 2, 3, 4, 5, 6, 7, 9] {
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
    }

    #[test]
    fn interleaved_sums_cannot_overflow() {
        // Activations +-127 against the largest weights. Q4_K: every nibble
        // 15, every 6-bit scale and min 63 (eight chunks of `maddubs` pairs
        // reach 8 * 2 * 15 * 127 = 30,480 in 16 bits, a super-block's sum
        // 2^24.9 in 32). Q6_K: every weight 63 and every scale -128 (two
        // chunks reach 2 * 2 * 63 * 127 = 32,004 in 16 bits). Q5_0: every
        // weight 31 (a half block's four chunks reach 4 * 2 * 31 * 127 =
        // 31,496 in 16 bits); Q4_1: every nibble 15.
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
        let (mut q5_0, mut q4_1) = (Vec::new(), Vec::new());
        for _ in 0..n * k / 32 {
            q5_0.extend_from_slice(&d.to_le_bytes());
            q5_0.extend_from_slice(&[0xff; 20]);
            q4_1.extend_from_slice(&d.to_le_bytes());
            q4_1.extend_from_slice(&dmin.to_le_bytes());
            q4_1.extend_from_slice(&[0xff; 16]);
        }
        let cases = [
            (Kind::Q4K, q4, d.to_f32() * 63.0 * 15.0 - dmin.to_f32() * 63.0),
            (Kind::Q6K, q6, d.to_f32() * -128.0 * 31.0),
            (Kind::Q5_0, q5_0, d.to_f32() * 15.0),
            (Kind::Q4_1, q4_1, d.to_f32() * 15.0 + dmin.to_f32()),
        ];
        for (kind, w, weight) in cases {
            let packed = pack(kind, &w, n, k).unwrap();
            for sign in [1.0f32, -1.0] {
                for m in [1, 4, 9] {
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
