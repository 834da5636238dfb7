//! AVX2 / AVX-VNNI / AVX-512 VNNI (x86-64) and NEON / NEON dot-product /
//! i8mm (aarch64) matrix multiplication for Q4_1, Q5_0, Q4_K and Q6_K weights,
//! the instruction set chosen at run time.
//!
//! candle 0.11 has SIMD CPU kernels for Q4_0, Q8_0 and the k-quants only;
//! Q4_1 and Q5_0 (the tiny model is Q4_1, the small model mostly Q5_0) run
//! scalar code there. The k-quants (Q4_K: most of the large model; Q6_K:
//! its output layer and half its `ffn_down` and `attn_v`) have candle
//! kernels, but they need the weights in memory (plus a repacked copy), and
//! candle's Q6_K rounds differently in its tiled and per-row forms. These
//! kernels read the original blocks in place from the memory-mapped file.
//! (Converting Q4_1/Q5_0 to Q8_0 at load made them fast but 1.3-1.7x larger,
//! and decoding is bound by memory bandwidth.) Activations are quantized to
//! 8 bits (scale `max|x| / 127`) per 32 values for Q4_1 and Q5_0, and per
//! 256 for the k-quants (as llama.cpp's Q8_K); each block product is an
//! integer dot product of 32 pairs (`maddubs` + `madd`, or one `vpdpbusd`
//! where the CPU has VNNI).
//!
//! Every path computes one output the same way. Q4_1 and Q5_0, block by
//! block: the block's exact integer dot product `isum` of the unsigned
//! weights with the 8-bit activations, then `acc = fma(isum, d_w * d_a,
//! acc)` and `off = fma(m_w, s_a, off)` (`m_w` the block's offset: Q4_1's
//! min, Q5_0's `-16 d`; `s_a` the activation block's scaled sum). The
//! k-quants, super-block by super-block: the eight blocks' integer products
//! times their integer scales (Q6_K: a signed scale per 16 values and a
//! zero point of 32; see [`super::qblock::Block::isum`]) summed exactly,
//! likewise Q4_K's 6-bit mins times the activation blocks' sums, then one
//! `fma` each with the super-block's `d` (and `-dmin`) times the shared
//! activation scale. At the end `acc + off`. So a row's result has the same
//! bits alone, in a batch, on AVX2, AVX-512, NEON or plain Rust (tests),
//! which the prefix cache relies on (a cached prefix followed by a short
//! suffix must give the logits of the whole prompt).
//!
//! The work is split over output rows (tasks of 16) on candle's own CPU
//! pool (the one its quantized matmuls use: a second pool would make the
//! two spin against each other on a 2-core machine). Decoding one sequence
//! reads each weight row one after the next (reading two side by side was
//! 3x slower on a matrix larger than the caches: the prefetcher follows
//! one stream best); a batch of two to seven rows decodes each weight
//! block once for four of them. On x86-64 the k-quant matrices (and Q4_1
//! and Q5_0 ones where the CPU has no VNNI) are instead stored interleaved
//! by eight rows at load ([`x8`], one stream again), so that a decoding
//! step needs no horizontal sums: Q4_K about 2x faster per row than the row
//! kernel. From eight rows on (prefill; six on AVX2),
//! a task's 16 weight rows are repacked so that each 32-bit lane of a
//! register holds a different row ([`super::qtile`]): four activation bytes
//! are broadcast per `vpdpbusd` (AVX-512 VNNI: sixteen rows; AVX-VNNI:
//! eight) or per `maddubs` pair (AVX2: eight rows), with no horizontal
//! sums. On AVX2 that made a 512-row prefill product about 3x faster than
//! the small-batch path it replaced. On aarch64 with `i8mm`, prefill goes
//! by tiles of two weight rows by two activation rows (`smmla`,
//! `neon::mmla`).
//!
//! `cargo run --release -p persona-engine --example qmatmul_speed` times
//! one product.

// SIMD intrinsics need `unsafe`: every call is guarded by a runtime check
// of the CPU features the function was compiled for, and all memory access
// goes through bounds-checked slices (loads read exactly one block).
#![allow(unsafe_code)]

use std::sync::Mutex;

use super::qblock::for_each_block;
use super::qblock::Weights;
pub use super::qblock::{ActBlock, Kind, BLOCK};
use super::qtile::Packed;

/// Output rows per unit of parallel work.
const ROWS_PER_TASK: usize = 16;

/// The instruction sets the kernels run on, from slowest to fastest. Every
/// one gives the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust (any CPU).
    Portable,
    /// aarch64 NEON (every aarch64 CPU): widening byte multiplies.
    Neon,
    /// aarch64 NEON with the dot-product extension (`sdot`: Cortex-A55/A76
    /// and newer, Apple M1 and newer, Graviton 2 and newer).
    NeonDot,
    /// aarch64 NEON with the dot-product and 8-bit matrix-multiply
    /// extensions (`smmla` for prefill tiles: Cortex-A510/A710 and newer,
    /// Apple M2 and newer, Graviton 3 and newer).
    NeonI8mm,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-VNNI: byte dot products in one instruction on 256-bit
    /// registers (Intel client CPUs since Alder Lake, AMD Zen 5).
    AvxVnni,
    /// x86-64 AVX-512 with VNNI (byte dot products in one instruction on
    /// 512-bit registers).
    Avx512Vnni,
}

impl Isa {
    /// Every instruction set, slowest first.
    pub const ALL: [Isa; 7] = [Isa::Portable, Isa::Neon, Isa::NeonDot, Isa::NeonI8mm, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni];

    /// The name [`ISA_ENV`] takes for it.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Neon => "neon",
            Isa::NeonDot => "dotprod",
            Isa::NeonI8mm => "i8mm",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// Whether this CPU can run it.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            match self {
                Isa::Portable => true,
                Isa::Neon | Isa::NeonDot | Isa::NeonI8mm => false,
                Isa::Avx2 => avx2,
                Isa::AvxVnni => avx2 && has!("avxvnni"),
                Isa::Avx512Vnni => avx2 && has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512vnni"),
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            use std::arch::is_aarch64_feature_detected as has;
            match self {
                Isa::Portable => true,
                Isa::Neon => has!("neon"),
                Isa::NeonDot => has!("neon") && has!("dotprod"),
                Isa::NeonI8mm => has!("neon") && has!("dotprod") && has!("i8mm"),
                _ => false,
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            self == Isa::Portable
        }
    }

    /// The fastest instruction set this CPU has, at most `self`.
    pub fn or_supported_below(self) -> Isa {
        Isa::ALL.into_iter().rev().find(|isa| *isa <= self && isa.supported()).unwrap_or(Isa::Portable)
    }
}

/// The environment variable that caps the instruction set (`avx512vnni`,
/// `avxvnni`, `avx2`, `i8mm`, `dotprod`, `neon` or `portable`), to compare kernels or to work around a
/// CPU problem.
pub const ISA_ENV: &str = "PERSONA_SIMD";

/// The best instruction set this CPU has.
pub fn detected_isa() -> Isa {
    Isa::Avx512Vnni.or_supported_below()
}

/// The instruction set the kernels use: the best detected, capped by
/// [`ISA_ENV`] (read once; an unknown value does not cap).
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let cap =
            std::env::var(ISA_ENV).ok().and_then(|v| Isa::ALL.into_iter().find(|isa| isa.name().eq_ignore_ascii_case(v.trim()))).unwrap_or(Isa::Avx512Vnni);
        cap.or_supported_below()
    })
}

/// The environment variable (and value) that keeps candle's own x86
/// kernels within the instruction set these kernels are capped at by
/// [`ISA_ENV`]: candle 0.11 picks its repacked Q4_K / Q6_K / Q8_0 kernels
/// by CPU detection alone (AVX-512 VNNI where present), so without it an
/// "AVX2" run would still multiply the layers that go through candle (the
/// small model's Q8_0 output layer) with AVX-512. `None` when nothing is
/// capped. candle reads it once, at its first quantized product: a binary
/// sets it at startup, before any thread exists.
pub fn candle_isa_env() -> Option<(&'static str, &'static str)> {
    candle_cap(isa(), detected_isa())
}

/// [`candle_isa_env`] for kernels capped at `used` on a CPU whose best is
/// `best`. candle's x86 levels are AVX-512 VNNI, AVX-VNNI and AVX2 (its
/// lowest); `used` is AVX-VNNI only where the CPU has it, so forcing that
/// level is safe.
fn candle_cap(used: Isa, best: Isa) -> Option<(&'static str, &'static str)> {
    if best <= Isa::NeonI8mm || used >= best {
        return None;
    }
    Some(if used == Isa::AvxVnni { ("MISTRALRS_FORCE_AVXVNNI", "1") } else { ("MISTRALRS_FORCE_AVX2", "1") })
}

/// Whether this CPU runs the SIMD kernels (x86-64 with AVX2 and FMA, or
/// aarch64).
pub fn available() -> bool {
    isa() > Isa::Portable
}

/// Quantizes each row of `x` (`k` values per row, `k` a multiple of
/// `group`) to 8-bit blocks of 32, one scale per `group` values (32, or
/// 256 for Q6_K: [`Kind::act_group`]).
pub fn quantize_rows(x: &[f32], k: usize, group: usize) -> Vec<ActBlock> {
    debug_assert!(group.is_multiple_of(BLOCK) && k.is_multiple_of(group));
    let mut out = Vec::with_capacity(x.len() / BLOCK);
    for g in x.chunks_exact(group) {
        // Eight running maxima (the compiler keeps them in one register);
        // the maximum is the same in any order.
        let mut lanes = [0f32; 8];
        for c in g.chunks_exact(8) {
            for (l, &a) in lanes.iter_mut().zip(c) {
                *l = l.max(a.abs());
            }
        }
        let amax = lanes.iter().fold(0f32, |m, &l| m.max(l));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for v in g.chunks_exact(BLOCK) {
            let mut qs = [0i8; BLOCK];
            for (q, &a) in qs.iter_mut().zip(v) {
                *q = (a * id).round() as i8;
            }
            let half = |h: &[i8]| h.iter().map(|&q| q as i32).sum::<i32>();
            let hs = [half(&qs[..16]), half(&qs[16..])];
            out.push(ActBlock { qs, d, s: d * (hs[0] + hs[1]) as f32, hs, bs: [0; 8] });
        }
    }
    for row in out.chunks_mut(k / BLOCK) {
        for chunk in row.chunks_mut(8) {
            let mut bs = [0i16; 8];
            for (sum, b) in bs.iter_mut().zip(chunk.iter()) {
                // At most 32 * 127 in magnitude.
                *sum = (b.hs[0] + b.hs[1]) as i16;
            }
            for b in chunk {
                b.bs = bs;
            }
        }
    }
    out
}

/// Activation rows from which prefill takes the repacked path (below it,
/// repacking a task's weights would cost more than it saves).
#[cfg(target_arch = "x86_64")]
const PACK_FROM_ROWS: usize = 8;

/// The same for the 256-bit tiles (AVX2, AVX-VNNI).
#[cfg(target_arch = "x86_64")]
const PACK_FROM_ROWS_256: usize = 6;

/// `out[i * n + j] = dot(x row i, weight row j)` for `m` activation rows and
/// `n` weight rows of `k` values each. `weights` holds `n * k / 32` blocks of
/// `kind`. Without AVX2 the portable code runs (same results).
pub fn matmul(kind: Kind, weights: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    matmul_on(isa(), kind, weights, n, k, x, m)
}

/// [`matmul`] on a given instruction set (one this CPU lacks falls back to
/// the best it has).
pub fn matmul_on(isa: Isa, kind: Kind, weights: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let isa = isa.or_supported_below();
    let blocks = k / BLOCK;
    let row_bytes = kind.row_bytes(k);
    debug_assert_eq!(weights.len(), n * row_bytes);
    debug_assert_eq!(x.len(), m * k);
    let acts = quantize_rows(x, k, kind.act_group());
    over_tasks(n, m, |first, out, scratch| {
        let w = Weights { kind, data: &weights[first * row_bytes..(first + out.len() / m) * row_bytes], row_bytes };
        rows_times_acts(isa, &w, &acts, blocks, out, &mut scratch.packed);
    })
}

/// A worker's scratch space, kept from one task to the next.
#[derive(Default)]
struct TaskScratch {
    /// Repacked tiles ([`super::qtile`]).
    packed: Vec<Packed>,
    /// Weight bytes (a task's rows unpacked from another layout).
    bytes: Vec<u8>,
}

/// Runs `f(first, out, scratch)` for the tasks of [`ROWS_PER_TASK`] weight
/// rows (of `n`) on candle's CPU pool: `first` the task's first weight row,
/// `out` its results by weight row (`out[r * m + i]` for activation row
/// `i`), so that each task owns whole weight rows; returns the results as
/// `(m, n)`.
fn over_tasks(n: usize, m: usize, f: impl Fn(usize, &mut [f32], &mut TaskScratch) + Sync) -> Vec<f32> {
    let mut by_row = vec![0f32; n * m];
    {
        // One uncontended lock per task hands each worker its own rows.
        let tasks: Vec<Mutex<&mut [f32]>> = by_row.chunks_mut(ROWS_PER_TASK * m).map(Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(tasks.len(), |range| {
            let mut scratch = TaskScratch::default();
            for task in range {
                let Ok(mut out) = tasks[task].lock() else { continue };
                f(task * ROWS_PER_TASK, &mut out, &mut scratch);
            }
        });
    }
    by_row_to_rows(by_row, n, m)
}

/// Results by weight row (`by_row[j * m + i]`, each task's own rows) to
/// `(m, n)`.
fn by_row_to_rows(by_row: Vec<f32>, n: usize, m: usize) -> Vec<f32> {
    if m == 1 {
        return by_row;
    }
    // In blocks of 16 weight rows: each output row gets 16 adjacent values
    // at a time while the block's 16 source rows stay in the cache.
    const BLOCK: usize = 16;
    let mut out = vec![0f32; m * n];
    for j0 in (0..n).step_by(BLOCK) {
        let j1 = (j0 + BLOCK).min(n);
        for (i, out_row) in out.chunks_exact_mut(n).enumerate() {
            for (j, o) in (j0..j1).zip(&mut out_row[j0..j1]) {
                *o = by_row[j * m + i];
            }
        }
    }
    out
}

/// Dot products of a task's weight rows (at most [`ROWS_PER_TASK`]) with
/// every activation row, into `out` (by weight row: `out[r * m + i]`);
/// `packed` is scratch space for the repacked path. `isa` is at most
/// [`detected_isa`].
fn rows_times_acts(isa: Isa, w: &Weights<'_>, acts: &[ActBlock], blocks: usize, out: &mut [f32], packed: &mut Vec<Packed>) {
    let weight_rows = w.rows();
    let m = out.len() / weight_rows.max(1);
    let act = |i: usize| &acts[i * blocks..(i + 1) * blocks];
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512Vnni && m >= PACK_FROM_ROWS {
            super::qtile::pack(w, packed);
            // SAFETY: `isa` was detected on this CPU (AVX-512 VNNI).
            unsafe { super::qtile::times_acts(w.kind, packed, acts, blocks, weight_rows, out) };
            return;
        }
        if matches!(isa, Isa::Avx2 | Isa::AvxVnni) && m >= PACK_FROM_ROWS_256 {
            super::qtile::pack(w, packed);
            // SAFETY: `isa` was detected on this CPU (AVX2 + FMA, and
            // AVX-VNNI when it says so).
            unsafe { super::qtile::times_acts_256(isa == Isa::AvxVnni, w.kind, packed, acts, blocks, weight_rows, out) };
            return;
        }
        if isa > Isa::Portable {
            if m == 1 {
                // SAFETY: `isa` was detected on this CPU (AVX2 + FMA, and
                // the VNNI features of the variant chosen).
                unsafe {
                    match isa {
                        Isa::Avx512Vnni => avx2::rows_vnni(w, act(0), out, m, 0),
                        Isa::AvxVnni => avx2::rows_avxvnni(w, act(0), out, m, 0),
                        _ => avx2::rows(w, act(0), out, m, 0),
                    }
                };
                return;
            }
            for i in (0..m).step_by(4) {
                let group: Vec<&[ActBlock]> = (i..m.min(i + 4)).map(act).collect();
                // SAFETY: as above.
                unsafe {
                    match isa {
                        Isa::Avx512Vnni => avx2::group_vnni(w, &group, out, m, i),
                        Isa::AvxVnni => avx2::group_avxvnni(w, &group, out, m, i),
                        _ => avx2::group(w, &group, out, m, i),
                    }
                };
            }
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if isa == Isa::NeonI8mm && m >= 2 {
            // SAFETY: `isa` was detected on this CPU (NEON, dot product,
            // i8mm).
            unsafe { neon::mmla::times_acts(w, acts, blocks, out, m) };
            return;
        }
        if matches!(isa, Isa::Neon | Isa::NeonDot | Isa::NeonI8mm) {
            // Each activation row in turn over the task's weight rows
            // (still in the caches after the first).
            for i in 0..m {
                // SAFETY: `isa` was detected on this CPU (NEON, and the
                // dot-product extension for `NeonDot` and `NeonI8mm`).
                unsafe {
                    if isa == Isa::Neon {
                        neon::rows(w, act(i), out, m, i)
                    } else {
                        neon::rows_dot(w, act(i), out, m, i)
                    }
                };
            }
            return;
        }
    }
    let _ = (isa, packed);
    for i in 0..m {
        for r in 0..weight_rows {
            out[r * m + i] = dot_reference(w.kind, w.row(r), act(i));
        }
    }
}

/// Portable dot product of one weight row with one activation row: the
/// definition every SIMD path matches bit for bit.
pub fn dot_reference(kind: Kind, w: &[u8], acts: &[ActBlock]) -> f32 {
    let (mut acc, mut off) = (0f32, 0f32);
    let mut i = 0;
    if kind.is_super() {
        // One activation scale per super-block: its eight blocks' exact
        // integer products and offset products summed, then one
        // multiply-add each (Q6_K's offsets are 0, so `off` stays +0).
        let (mut isum, mut msum) = (0i32, 0i32);
        for_each_block(kind, w, |b| {
            isum += b.isum(kind, &acts[i]);
            msum += b.msum(&acts[i]);
            i += 1;
            if i % 8 == 0 {
                let ad = acts[i - 1].d;
                acc = (isum as f32).mul_add(b.d * ad, acc);
                off = (msum as f32).mul_add(b.m * ad, off);
                (isum, msum) = (0, 0);
            }
        });
        return acc + off;
    }
    for_each_block(kind, w, |b| {
        let a = &acts[i];
        i += 1;
        acc = (b.isum(kind, a) as f32).mul_add(b.d * a.d, acc);
        off = b.m.mul_add(a.s, off);
    });
    acc + off
}

/// Dequantizes a whole tensor (tests and checks).
#[cfg(test)]
pub fn dequantize(kind: Kind, data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / kind.block_bytes() * kind.block_values());
    for_each_block(kind, data, |b| out.extend((0..BLOCK).map(|i| b.d * b.sc[i / 16] as f32 * (b.u[i] as i32 - kind.zero()) as f32 + b.m * b.mi as f32)));
    out
}

pub mod x8;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;

#[cfg(test)]
pub(super) mod tests {
    use half::f16;

    use super::*;
    use crate::decoder::qblock::q5_0_block;

    const ALL: [Kind; 4] = [Kind::Q4_1, Kind::Q5_0, Kind::Q4K, Kind::Q6K];

    #[test]
    fn results_by_weight_row_transpose_to_activation_rows() {
        // n not a multiple of the 16-row block, several activation rows.
        for (n, m) in [(37, 5), (16, 3), (7, 1), (5, 2)] {
            let by_row: Vec<f32> = (0..n * m).map(|x| x as f32).collect();
            let out = by_row_to_rows(by_row.clone(), n, m);
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(out[i * n + j], by_row[j * m + i], "n {n} m {m} at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn quantizing_gives_the_scalar_definitions_values() {
        // Ties of rounding (x.5 after scaling), exact zeros, a NaN (which
        // `max` skips), rows of 32- and 256-value groups.
        let k = 512;
        let mut x: Vec<f32> = (0..2 * k).map(|i| ((i * 7919) % 4001) as f32 / 1000.0 - 2.0).collect();
        x[3] = 127.0 * 0.5 / 127.0;
        x[40] = -2.5;
        x[41] = 2.5;
        x[300] = f32::NAN;
        x[600..632].fill(0.0);
        for group in [BLOCK, 256] {
            let got = quantize_rows(&x, k, group);
            assert_eq!(got.len(), x.len() / BLOCK);
            for (g, values) in x.chunks_exact(group).enumerate() {
                let amax = values.iter().fold(0f32, |m, &a| m.max(a.abs()));
                let d = amax / 127.0;
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                for (b, v) in values.chunks_exact(BLOCK).enumerate() {
                    let block = &got[g * group / BLOCK + b];
                    let qs: Vec<i8> = v.iter().map(|&a| (a * id).round() as i8).collect();
                    let hs = [qs[..16].iter().map(|&q| q as i32).sum::<i32>(), qs[16..].iter().map(|&q| q as i32).sum::<i32>()];
                    assert_eq!(block.qs.to_vec(), qs, "group {group}, block {b} of {g}");
                    assert_eq!((block.d.to_bits(), block.hs), (d.to_bits(), hs), "group {group}, block {b} of {g}");
                    assert_eq!(block.s.to_bits(), (d * (hs[0] + hs[1]) as f32).to_bits());
                }
            }
        }
    }

    /// A row width near `k` that `kind`'s blocks divide.
    fn width(kind: Kind, k: usize) -> usize {
        k.div_ceil(kind.block_values()) * kind.block_values()
    }

    /// Random-looking blocks of `kind` with scales around 0.01.
    pub(super) fn blocks(kind: Kind, count: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut out = Vec::new();
        for _ in 0..count {
            if kind == Kind::Q6K {
                // 192 bytes of 6-bit values, sixteen signed scales (both
                // extremes included), d last.
                for _ in 0..192 {
                    out.push(next() as u8);
                }
                for j in 0..16 {
                    out.push(match j {
                        0 => 127,
                        1 => 0x80,
                        _ => next() as u8,
                    });
                }
                out.extend_from_slice(&f16::from_f32(0.0002 + (next() % 100) as f32 * 0.00001).to_le_bytes());
                continue;
            }
            let d = f16::from_f32(0.005 + (next() % 100) as f32 * 0.0001);
            out.extend_from_slice(&d.to_le_bytes());
            match kind {
                Kind::Q4_1 => out.extend_from_slice(&f16::from_f32(-0.08 + (next() % 100) as f32 * 0.001).to_le_bytes()),
                Kind::Q5_0 => out.extend_from_slice(&next().to_le_bytes()),
                Kind::Q4K => {
                    // d was written with a k-quant's smaller scale in mind: scales go up to 63.
                    out.extend_from_slice(&f16::from_f32(0.0002 + (next() % 100) as f32 * 0.00001).to_le_bytes());
                    for _ in 0..12 {
                        out.push(next() as u8);
                    }
                    for _ in 0..112 {
                        out.push(next() as u8);
                    }
                }
                Kind::Q6K => unreachable!("written above"),
            }
            for _ in 0..16 {
                out.push(next() as u8);
            }
        }
        out
    }

    #[test]
    fn simd_matches_the_reference_and_the_dequantized_product() {
        for kind in ALL {
            let (n, k) = (37, width(kind, 96)); // n not a multiple of the task size
            let w = blocks(kind, n * k / kind.block_values(), 7);
            for m in [1, 3, 4, 9] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                let out = matmul(kind, &w, n, k, &x, m);
                let acts = quantize_rows(&x, k, kind.act_group());
                let dense = dequantize(kind, &w);
                for i in 0..m {
                    for j in 0..n {
                        let rb = kind.row_bytes(k);
                        let reference = dot_reference(kind, &w[j * rb..(j + 1) * rb], &acts[i * k / BLOCK..(i + 1) * k / BLOCK]);
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
        // Five rows take the path for small batches, six the repacked
        // prefill path on AVX2, eleven on AVX-512 VNNI; 20 weight rows leave
        // a partial task.
        for kind in ALL {
            for m in [5, 6, 11] {
                let (n, k) = (20, width(kind, 160));
                let w = blocks(kind, n * k / kind.block_values(), 11);
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 17.0).collect();
                let all = matmul(kind, &w, n, k, &x, m);
                for i in 0..m {
                    let alone = matmul(kind, &w, n, k, &x[i * k..(i + 1) * k], 1);
                    assert_eq!(alone, all[i * n..(i + 1) * n].to_vec(), "{kind:?} m={m} row {i}");
                }
            }
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        // Every instruction set this CPU has against plain Rust (one it
        // lacks falls back to the best below it, which the loop checks
        // too). Nine and thirteen activation rows take the repacked tiles
        // (a full tile plus a remainder); one the row path; two, three and
        // six (on AVX-512) the groups of four; 19 weight rows leave a
        // partial task and a partial half; k-quant rows have two
        // super-blocks.
        for kind in ALL {
            for m in [1, 2, 3, 6, 9, 13] {
                let (n, k) = (19, width(kind, 288));
                let w = blocks(kind, n * k / kind.block_values(), 5);
                // Activations that reach +-127 after quantization in every block.
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 29 % 89) as f32 - 44.0) / 11.0).collect();
                let bits = |isa: Isa| matmul_on(isa, kind, &w, n, k, &x, m).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let portable = bits(Isa::Portable);
                for isa in Isa::ALL {
                    assert_eq!(bits(isa), portable, "{kind:?} m={m} {isa:?} (runs as {:?})", isa.or_supported_below());
                }
            }
        }
        assert!(isa() <= detected_isa());
        assert!(Isa::Avx512Vnni.or_supported_below().supported());
        // A run that means to test a given instruction set says so (the
        // aarch64 run under qemu: `i8mm`), so that it cannot fall back
        // to a slower one unnoticed.
        if let Ok(expected) = std::env::var("PERSONA_EXPECT_ISA") {
            assert_eq!(detected_isa().name(), expected, "this CPU's best instruction set");
        }
        #[cfg(target_arch = "aarch64")]
        assert!(Isa::Neon.supported(), "every aarch64 CPU has NEON");
    }

    #[test]
    fn the_16_bit_sums_of_the_avx2_tile_cannot_overflow() {
        // All weights at their largest (31) against activations at +-127:
        // four groups of maddubs pairs summed in 16 bits reach 4 * 2 * 31 *
        // 127 = 31,496 < 32,767.
        let kind = Kind::Q5_0;
        let (n, k, m) = (8, 64, 9);
        let mut w = Vec::new();
        for _ in 0..n * k / BLOCK {
            w.extend_from_slice(&f16::from_f32(0.01).to_le_bytes());
            w.extend_from_slice(&u32::MAX.to_le_bytes());
            w.extend_from_slice(&[0xff; 16]);
        }
        for sign in [1.0f32, -1.0] {
            let x = vec![sign; m * k];
            let y = matmul_on(Isa::Avx2, kind, &w, n, k, &x, m);
            // Every weight is d * (31 - 16), every input +-1.
            let expected = sign * f16::from_f32(0.01).to_f32() * 15.0 * k as f32;
            for v in y {
                assert!((v - expected).abs() < 1e-4 * expected.abs(), "{v} vs {expected}");
            }
        }
    }

    #[test]
    fn candle_is_capped_with_the_own_kernels() {
        let avx2 = Some(("MISTRALRS_FORCE_AVX2", "1"));
        assert_eq!(candle_cap(Isa::Avx2, Isa::Avx512Vnni), avx2);
        assert_eq!(candle_cap(Isa::Portable, Isa::Avx512Vnni), avx2);
        assert_eq!(candle_cap(Isa::Avx2, Isa::AvxVnni), avx2);
        assert_eq!(candle_cap(Isa::AvxVnni, Isa::Avx512Vnni), Some(("MISTRALRS_FORCE_AVXVNNI", "1")));
        // Nothing capped, or not x86: candle chooses as it does.
        for best in [Isa::Avx512Vnni, Isa::AvxVnni, Isa::Avx2] {
            assert_eq!(candle_cap(best, best), None);
        }
        assert_eq!(candle_cap(Isa::Portable, Isa::NeonDot), None);
        assert_eq!(candle_cap(Isa::Neon, Isa::NeonDot), None);
    }

    #[test]
    fn k_quant_integer_sums_cannot_overflow_on_any_path() {
        // The largest products against activations at +-127. Q6_K: every
        // weight at 63 and every scale at -128 (the AVX2 tile's 16-bit sums
        // over two groups reach 2 * 2 * 63 * 127 = 32,004 < 32,767). Q4_K:
        // every nibble 15, every 6-bit scale and min 63 (a super-block's
        // integer sum reaches 8 * 63 * 32 * 15 * 127, 2^24.9, and its offset
        // sum 8 * 63 * 32 * 127).
        let (n, k, m) = (16, 512, 9);
        let d = f16::from_f32(0.001);
        let dmin = f16::from_f32(0.0005);
        let mut q6 = Vec::new();
        let mut q4 = Vec::new();
        for _ in 0..n * k / 256 {
            q6.extend_from_slice(&[0xff; 192]);
            q6.extend_from_slice(&[0x80; 16]);
            q6.extend_from_slice(&d.to_le_bytes());
            q4.extend_from_slice(&d.to_le_bytes());
            q4.extend_from_slice(&dmin.to_le_bytes());
            q4.extend_from_slice(&[0xff; 140]);
        }
        // Every Q6_K weight is d * -128 * (63 - 32); every Q4_K weight
        // d * 63 * 15 - dmin * 63.
        let cases = [(Kind::Q6K, q6, d.to_f32() * -128.0 * 31.0), (Kind::Q4K, q4, d.to_f32() * 63.0 * 15.0 - dmin.to_f32() * 63.0)];
        for (kind, w, weight) in cases {
            for sign in [1.0f32, -1.0] {
                let x = vec![sign; m * k];
                let expected = sign * weight * k as f32;
                for isa in Isa::ALL {
                    for rows in [1, 2, 4, m] {
                        for v in matmul_on(isa, kind, &w, n, k, &x[..rows * k], rows) {
                            assert!((v - expected).abs() < 1e-4 * expected.abs(), "{kind:?} {isa:?} m={rows}: {v} vs {expected}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn q5_0_decoding_matches_the_exact_q8_0_conversion() {
        let w = blocks(Kind::Q5_0, 4, 3);
        let q8 = crate::repack::q5_0_to_q8_0(&w).unwrap();
        for (b, (q5, q8)) in w.chunks_exact(22).zip(q8.chunks_exact(34)).enumerate() {
            let (u, _, _) = q5_0_block(q5);
            let expected: Vec<i8> = q8[2..].iter().map(|&v| v as i8).collect();
            assert_eq!(u.map(|v| v as i8 - 16).to_vec(), expected, "block {b}");
        }
    }

    #[test]
    fn k_quant_blocks_decode_as_candle_decodes_them() {
        // candle's own dequantization is the reference for the formats
        // (Q4_K: scales and mins packed in 6 bits, nibbles by sub-block
        // pairs; Q6_K: nibbles and 2-bit pairs by quarter of a half, a
        // signed scale per 16 values).
        for (kind, dtype) in [(Kind::Q4K, candle_core::quantized::GgmlDType::Q4K), (Kind::Q6K, candle_core::quantized::GgmlDType::Q6K)] {
            let w = blocks(kind, 3, 9);
            let theirs = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &w, vec![3 * 256], &candle_core::Device::Cpu)
                .unwrap()
                .dequantize(&candle_core::Device::Cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let ours = dequantize(kind, &w);
            assert_eq!(ours.len(), theirs.len());
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{kind:?} value {i}: {a} vs candle {b}");
            }
        }
    }
}
