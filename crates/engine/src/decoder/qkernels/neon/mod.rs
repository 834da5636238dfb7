//! The aarch64 row kernels: one activation row against a task's weight
//! rows, on NEON (widening byte multiplies) or NEON with the dot-product
//! extension (`sdot`); each gives the bits of [`super::dot_reference`]:
//! a block's integer dot product is exact either way, and the scaling is
//! the same scalar fused multiply-adds in the same order.

// SIMD intrinsics need `unsafe`: every entry point is only called after a
// runtime check of the CPU features it is compiled for, and all memory
// access goes through bounds-checked slices (loads read exactly one block).
#![allow(unsafe_code)]

use std::arch::aarch64::*;

use half::f16;

use super::{ActBlock, Kind, Weights};
use crate::decoder::qblock::q4k_scale_bytes;

pub(super) mod mmla;

/// Dot products of every weight row of `w` with the activation row
/// `acts`, into `out[r * m + i]` (NEON).
///
/// # Safety
/// The CPU must have NEON (every aarch64 CPU does).
#[target_feature(enable = "neon")]
pub(super) unsafe fn rows(w: &Weights<'_>, acts: &[ActBlock], out: &mut [f32], m: usize, i: usize) {
    for r in 0..w.rows() {
        out[r * m + i] = row::<false>(w.kind, w.row(r), acts);
    }
}

/// [`rows`] with `sdot`.
///
/// # Safety
/// The CPU must have NEON and the dot-product extension.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn rows_dot(w: &Weights<'_>, acts: &[ActBlock], out: &mut [f32], m: usize, i: usize) {
    for r in 0..w.rows() {
        out[r * m + i] = row::<true>(w.kind, w.row(r), acts);
    }
}

/// One weight row against one activation row, block by block as the
/// reference does: `acc = fma(isum, d * a.d, acc)`, `off = fma(m, a.s, off)`.
#[inline]
#[target_feature(enable = "neon")]
fn row<const DOT: bool>(kind: Kind, w: &[u8], acts: &[ActBlock]) -> f32 {
    let (mut acc, mut off) = (0f32, 0f32);
    match kind {
        Kind::Q4_1 | Kind::Q5_0 => {
            for (b, a) in w.chunks_exact(kind.block_bytes()).zip(acts) {
                let (d, m, lo, hi) = small_block(kind, b);
                let isum = block_isum::<DOT>(lo, hi, a);
                acc = (isum as f32).mul_add(d * a.d, acc);
                off = m.mul_add(a.s, off);
            }
        }
        Kind::Q6K => {
            let z = Kind::Q6K.zero();
            for (b, a8) in w.chunks_exact(kind.block_bytes()).zip(acts.chunks_exact(8)) {
                // The eight blocks share one activation scale: their exact
                // sums add up, then one multiply-add.
                let mut sum = 0i32;
                for (j, a) in a8.iter().enumerate() {
                    let (lo, hi) = q6k_block(b, j);
                    let (lo, hi) = block_halves::<DOT>(lo, hi, a);
                    let [s0, s1] = q6k_scales(b, j);
                    sum += s0 * (lo - z * a.hs[0]) + s1 * (hi - z * a.hs[1]);
                }
                acc = (sum as f32).mul_add(q6k_d(b) * a8[7].d, acc);
            }
            // The reference's offset sum stays +0 (Q6_K has no offset).
        }
        Kind::Q4K => {
            for (b, a8) in w.chunks_exact(kind.block_bytes()).zip(acts.chunks_exact(8)) {
                let (d, dmin, sc, mn) = q4k_head(b);
                // The eight blocks share one activation scale: their exact
                // scaled products and offset products add up, then one
                // multiply-add each.
                let (mut isum, mut msum) = (0i32, 0i32);
                for p in 0..4 {
                    for (j, (lo, hi)) in q4k_pair(b, p).into_iter().enumerate().map(|(h, v)| (2 * p + h, v)) {
                        isum += sc[j] as i32 * block_isum::<DOT>(lo, hi, &a8[j]);
                        msum += mn[j] as i32 * (a8[j].hs[0] + a8[j].hs[1]);
                    }
                }
                let ad = a8[7].d;
                acc = (isum as f32).mul_add(d * ad, acc);
                off = (msum as f32).mul_add(-dmin * ad, off);
            }
        }
    }
    acc + off
}

/// A Q4_1 or Q5_0 block: its scale `d`, its offset (Q4_1's min, Q5_0's
/// `-16 d`) and its 32 unsigned weights (`lo`: values 0-15, `hi`: 16-31;
/// each below 32).
#[inline]
#[target_feature(enable = "neon")]
fn small_block(kind: Kind, b: &[u8]) -> (f32, f32, uint8x16_t, uint8x16_t) {
    let low = vdupq_n_u8(0x0f);
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    if kind == Kind::Q4_1 {
        let min = f16::from_le_bytes([b[2], b[3]]).to_f32();
        let raw = load16(&b[4..20]);
        return (d, min, vandq_u8(raw, low), vshrq_n_u8::<4>(raw));
    }
    // Q5_0. Byte j of a half looks at bit j of its 16 high bits.
    let bit = vld1q_u8_array(&[1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128]);
    let five = vdupq_n_u8(0x10);
    let high = |lo_byte: u8, hi_byte: u8| vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(lo_byte), vdup_n_u8(hi_byte)), bit), five);
    let raw = load16(&b[6..22]);
    let lo = vorrq_u8(vandq_u8(raw, low), high(b[2], b[3]));
    let hi = vorrq_u8(vshrq_n_u8::<4>(raw), high(b[4], b[5]));
    (d, -16.0 * d, lo, hi)
}

/// A Q4_K super-block's scale `d`, min scale `dmin`, and its eight blocks'
/// 6-bit scales and mins.
#[inline]
fn q4k_head(b: &[u8]) -> (f32, f32, [u8; 8], [u8; 8]) {
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    let dmin = f16::from_le_bytes([b[2], b[3]]).to_f32();
    let (sc, mn) = q4k_scale_bytes(&b[4..16]);
    (d, dmin, sc, mn)
}

/// Blocks `2p` and `2p + 1` of a Q4_K super-block (the low and high
/// nibbles of the same 32 bytes), each as (values 0-15, values 16-31).
#[inline]
#[target_feature(enable = "neon")]
fn q4k_pair(b: &[u8], p: usize) -> [(uint8x16_t, uint8x16_t); 2] {
    let low = vdupq_n_u8(0x0f);
    let (h0, h1) = (load16(&b[16 + 32 * p..32 + 32 * p]), load16(&b[32 + 32 * p..48 + 32 * p]));
    [(vandq_u8(h0, low), vandq_u8(h1, low)), (vshrq_n_u8::<4>(h0), vshrq_n_u8::<4>(h1))]
}

/// Block `j` of a Q6_K super-block as unsigned weights below 64 (values
/// 0-15, values 16-31): half `j / 4`, quarter `j % 4` (see
/// `qblock::q6k_unsigned`).
#[inline]
#[target_feature(enable = "neon")]
fn q6k_block(b: &[u8], j: usize) -> (uint8x16_t, uint8x16_t) {
    let (h, k) = (j / 4, j % 4);
    let ql = 64 * h + 32 * (k % 2);
    let qh = 128 + 32 * h;
    let low = vdupq_n_u8(0x0f);
    let pair = vdupq_n_u8(0x30);
    // The pairs' bits 2k and 2k + 1 moved to bits 4 and 5.
    let up = vdupq_n_s8(4 - 2 * k as i8);
    let bits = |at: usize| vandq_u8(vshlq_u8(load16(&b[at..at + 16]), up), pair);
    let nib = |at: usize| {
        let v = load16(&b[at..at + 16]);
        if k < 2 {
            vandq_u8(v, low)
        } else {
            vshrq_n_u8::<4>(v)
        }
    };
    (vorrq_u8(nib(ql), bits(qh)), vorrq_u8(nib(ql + 16), bits(qh + 16)))
}

/// Block `j`'s two signed scales (one per 16 values) of a Q6_K super-block.
#[inline]
fn q6k_scales(b: &[u8], j: usize) -> [i32; 2] {
    [b[192 + 2 * j] as i8 as i32, b[193 + 2 * j] as i8 as i32]
}

/// A Q6_K super-block's scale.
#[inline]
fn q6k_d(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[208], b[209]]).to_f32()
}

/// The exact integer dot product of 32 unsigned weights (`lo` then `hi`,
/// each below 32) with the block's 32 signed activations.
#[inline]
#[target_feature(enable = "neon")]
fn block_isum<const DOT: bool>(lo: uint8x16_t, hi: uint8x16_t, a: &ActBlock) -> i32 {
    let a0 = load16_i8(&a.qs[..16]);
    let a1 = load16_i8(&a.qs[16..]);
    // Weights below 128 read the same as signed bytes.
    let (u0, u1) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
    if DOT {
        // SAFETY: `DOT` is only set by `rows_dot`, whose callers checked
        // that the CPU has the dot-product extension.
        vaddvq_s32(unsafe { sdot(sdot(vdupq_n_s32(0), u0, a0), u1, a1) })
    } else {
        // Each product is at most 31 * 128 in magnitude: four summed per
        // 16-bit lane stay below 16,000.
        let p = vmull_s8(vget_low_s8(u0), vget_low_s8(a0));
        let p = vmlal_high_s8(p, u0, a0);
        let p = vmlal_s8(p, vget_low_s8(u1), vget_low_s8(a1));
        let p = vmlal_high_s8(p, u1, a1);
        vaddlvq_s16(p)
    }
}

/// The exact integer dot products of the block's two halves: 16 unsigned
/// weights `lo` (each below 64) with activations 0-15, and `hi` with 16-31.
#[inline]
#[target_feature(enable = "neon")]
fn block_halves<const DOT: bool>(lo: uint8x16_t, hi: uint8x16_t, a: &ActBlock) -> (i32, i32) {
    let a0 = load16_i8(&a.qs[..16]);
    let a1 = load16_i8(&a.qs[16..]);
    let (u0, u1) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
    if DOT {
        // SAFETY: as in `block_isum`.
        unsafe { (vaddvq_s32(sdot(vdupq_n_s32(0), u0, a0)), vaddvq_s32(sdot(vdupq_n_s32(0), u1, a1))) }
    } else {
        // Two products of at most 63 * 128 per 16-bit lane: below 16,200.
        let half = |u: int8x16_t, a: int8x16_t| vaddlvq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(u), vget_low_s8(a)), u, a));
        (half(u0, a0), half(u1, a1))
    }
}

/// `acc + dot(a, b)` in groups of four bytes (`sdot`), through inline
/// assembly since the intrinsic is not stable Rust yet.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: the function's target features include the dot-product
    // extension; registers only, no memory.
    unsafe {
        std::arch::asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// 16 bytes of a slice of exactly 16.
#[inline]
#[target_feature(enable = "neon")]
fn load16(bytes: &[u8]) -> uint8x16_t {
    // Callers slice exactly 16 bytes out of a whole block; zeros (a wrong
    // result, never a read out of bounds) would mean a bug there.
    debug_assert_eq!(bytes.len(), 16);
    let bytes: &[u8; 16] = bytes.try_into().unwrap_or(&[0; 16]);
    vld1q_u8_array(bytes)
}

#[inline]
#[target_feature(enable = "neon")]
fn load16_i8(bytes: &[i8]) -> int8x16_t {
    debug_assert_eq!(bytes.len(), 16);
    let bytes: &[i8; 16] = bytes.try_into().unwrap_or(&[0; 16]);
    // SAFETY: `bytes` is 16 readable bytes.
    unsafe { vld1q_s8(bytes.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn vld1q_u8_array(bytes: &[u8; 16]) -> uint8x16_t {
    // SAFETY: `bytes` is 16 readable bytes.
    unsafe { vld1q_u8(bytes.as_ptr()) }
}
