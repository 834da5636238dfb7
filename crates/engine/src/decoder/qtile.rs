//! Prefill on AVX-512 VNNI: a task's weight rows (up to 16) repacked so
//! that each 32-bit lane of a 512-bit register belongs to a different row.
//!
//! For every block of 32 weights and every group of four of them, one
//! register holds those four bytes of all sixteen rows; `vpdpbusd` with the
//! activation's four bytes broadcast adds them into sixteen integer sums at
//! once. A block's integer sums are then scaled and accumulated exactly as
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

use super::qkernels::{unsigned_block, ActBlock, Weights, BLOCK};

/// Rows per repacked block (the 32-bit lanes of a 512-bit register).
pub(crate) const LANES: usize = 16;

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
    let blocks = w.row_bytes / w.kind.block_bytes();
    out.clear();
    out.resize(blocks, Packed::ZERO);
    for r in 0..w.rows().min(LANES) {
        for (p, block) in out.iter_mut().zip(w.row(r).chunks_exact(w.kind.block_bytes())) {
            let (u, d, m) = unsigned_block(w.kind, block);
            for (t, quad) in u.chunks_exact(4).enumerate() {
                p.q[t][4 * r..4 * r + 4].copy_from_slice(quad);
            }
            p.d[r] = d;
            p.m[r] = m;
        }
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Packed, LANES};
    use crate::decoder::qkernels::ActBlock;

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
