//! The quantized block formats the own kernels read (Q4_1, Q5_0, Q4_K,
//! Q6_K), the 8-bit activation blocks they multiply with, and reading a
//! block's 32 unsigned weights with its scales and offset: shared by the row
//! kernels ([`super::qkernels`]) and the repacked tiles ([`super::qtile`]).

use half::f16;

/// A quantization type these kernels handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `d * q + m`, 4-bit `q`: f16 d, f16 m, 16 bytes of nibbles.
    Q4_1,
    /// `d * (q - 16)`, 5-bit `q`: f16 d, 32 high bits, 16 bytes of nibbles.
    Q5_0,
    /// k-quant super-blocks of 256 values (144 bytes): f16 `d`, f16 `dmin`,
    /// twelve bytes of 6-bit scales and mins for eight sub-blocks of 32,
    /// 128 bytes of nibbles; value `d * sc * q - dmin * m`. Each sub-block
    /// is one block of these kernels (see `Block`).
    Q4K,
    /// k-quant super-blocks of 256 values (210 bytes): 128 bytes of low
    /// nibbles, 64 bytes of high 2-bit pairs, sixteen signed 8-bit scales
    /// (one per 16 values), f16 `d` last; value `d * sc * (q - 32)` with
    /// 6-bit `q`. Each 32 values are one block of these kernels with two
    /// scales (see `Block`).
    Q6K,
}

impl Kind {
    /// Bytes per stored block ([`Kind::block_values`] values).
    pub const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => 20,
            Kind::Q5_0 => 22,
            Kind::Q4K => 144,
            Kind::Q6K => 210,
        }
    }

    /// Values per stored block (32, or 256 for a k-quant super-block).
    pub const fn block_values(self) -> usize {
        match self {
            Kind::Q4K | Kind::Q6K => 256,
            _ => BLOCK,
        }
    }

    /// Bytes of a row of `k` values (`k` a multiple of [`Kind::block_values`]).
    pub const fn row_bytes(self, k: usize) -> usize {
        k / self.block_values() * self.block_bytes()
    }

    /// Activation values that share one scale when multiplied with this
    /// kind: 32, or for Q6_K a whole super-block of 256 (as llama.cpp's
    /// Q8_K does), so that a super-block's eight integer products add up
    /// exactly and take one floating-point multiply-add.
    pub const fn act_group(self) -> usize {
        match self {
            Kind::Q4K | Kind::Q6K => 256,
            _ => BLOCK,
        }
    }

    /// Whether products go by super-block ([`Kind::act_group`] 256): the
    /// k-quants, whose blocks carry small integer scales.
    pub const fn is_super(self) -> bool {
        self.act_group() > BLOCK
    }

    /// The zero point subtracted from every unsigned weight before its
    /// half-block scale applies (Q6_K: 32; the others have none).
    pub const fn zero(self) -> i32 {
        match self {
            Kind::Q6K => 32,
            _ => 0,
        }
    }
}

/// Values per block.
pub const BLOCK: usize = 32;

/// One block of quantized activations: `d * qs`, with `s = d * sum(qs)`
/// and the integer sums `hs` of its two halves (values 0-15 and 16-31).
/// `d` is shared by the blocks of a group ([`Kind::act_group`]).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub struct ActBlock {
    pub(crate) qs: [i8; BLOCK],
    pub(crate) d: f32,
    pub(crate) s: f32,
    pub(crate) hs: [i32; 2],
    /// The integer sums of the (up to) eight blocks of the 256 values of
    /// its row this block belongs to (blocks `8c..8c + 8`), the same in
    /// each of them: a k-quant super-block's offset product reads them as
    /// one vector.
    pub(crate) bs: [i16; 8],
}

/// One block of 32 weights as the products use it: value `i` is
/// `d * sc[i / 16] * (u[i] - kind.zero()) + m * mi`.
///
/// Q4_1 and Q5_0: `d` and `m` the block's scale and offset, `sc = [1, 1]`,
/// `mi = 1`. The k-quants (super-blocks): `d` and `m` the super-block's
/// (Q4_K: `d` and `-dmin`; Q6_K: `d` and 0), `sc` the block's integer
/// scales (Q4_K: its 6-bit scale twice; Q6_K: one per 16 values) and `mi`
/// its integer offset multiplier (Q4_K: its 6-bit min; Q6_K: 0).
#[derive(Clone, Copy)]
pub(crate) struct Block {
    pub(crate) u: [u8; BLOCK],
    pub(crate) d: f32,
    pub(crate) m: f32,
    pub(crate) sc: [i8; 2],
    pub(crate) mi: i32,
}

impl Block {
    /// The block's exact integer product with an activation block:
    /// `sc[0] * (dot(u, qs) over 0-15 - zero * hs[0]) + sc[1] * (the same
    /// over 16-31)`; for Q4_1 and Q5_0 just `dot(u, qs)`.
    pub(crate) fn isum(&self, kind: Kind, a: &ActBlock) -> i32 {
        let half = |h: usize| -> i32 {
            let dot: i32 = (16 * h..16 * h + 16).map(|i| self.u[i] as i32 * a.qs[i] as i32).sum();
            dot - kind.zero() * a.hs[h]
        };
        if kind.is_super() {
            self.sc[0] as i32 * half(0) + self.sc[1] as i32 * half(1)
        } else {
            half(0) + half(1)
        }
    }

    /// The block's exact integer offset product (super-blocks): `mi` times
    /// the activations' sum.
    pub(crate) fn msum(&self, a: &ActBlock) -> i32 {
        self.mi * (a.hs[0] + a.hs[1])
    }
}

/// Weight rows of one quantization type, `row_bytes` each.
pub(crate) struct Weights<'a> {
    pub(crate) kind: Kind,
    pub(crate) data: &'a [u8],
    pub(crate) row_bytes: usize,
}

impl Weights<'_> {
    pub(crate) fn rows(&self) -> usize {
        self.data.len() / self.row_bytes
    }

    pub(crate) fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }
}

/// Calls `f` with every 32-value block of a row in order, as the dot
/// products use it (see [`q4_1_block`], [`q5_0_block`]); k-quant super-blocks give eight.
pub(crate) fn for_each_block(kind: Kind, row: &[u8], mut f: impl FnMut(&Block)) {
    for b in row.chunks_exact(kind.block_bytes()) {
        match kind {
            Kind::Q4K => {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let dmin = f16::from_le_bytes([b[2], b[3]]).to_f32();
                let (sc, mn) = q4k_scale_bytes(&b[4..16]);
                let qs = &b[16..144];
                for j in 0..8 {
                    let half = &qs[32 * (j / 2)..32 * (j / 2) + 32];
                    let u: [u8; BLOCK] = std::array::from_fn(|l| if j % 2 == 0 { half[l] & 0x0f } else { half[l] >> 4 });
                    f(&Block { u, d, m: -dmin, sc: [sc[j] as i8; 2], mi: mn[j] as i32 });
                }
            }
            Kind::Q6K => {
                let d = f16::from_le_bytes([b[208], b[209]]).to_f32();
                for j in 0..8 {
                    let u = q6k_unsigned(b, j);
                    f(&Block { u, d, m: 0.0, sc: [b[192 + 2 * j] as i8, b[193 + 2 * j] as i8], mi: 0 });
                }
            }
            Kind::Q4_1 | Kind::Q5_0 => {
                let (u, d, m) = if kind == Kind::Q4_1 { q4_1_block(b) } else { q5_0_block(b) };
                f(&Block { u, d, m, sc: [1, 1], mi: 1 });
            }
        }
    }
}

/// The 32 unsigned 6-bit weights of block `j` (0-7) of a Q6_K super-block,
/// laid out as GGML lays them: each half of 128 values takes 64 bytes of
/// low nibbles and 32 bytes of high pairs; its block `k` (0-3) reads the low
/// (k < 2) or high nibbles of bytes `32 (k % 2)..` and bits `2k, 2k + 1` of
/// the pairs.
pub(crate) fn q6k_unsigned(b: &[u8], j: usize) -> [u8; BLOCK] {
    let (h, k) = (j / 4, j % 4);
    let ql = &b[64 * h + 32 * (k % 2)..64 * h + 32 * (k % 2) + 32];
    let qh = &b[128 + 32 * h..128 + 32 * h + 32];
    std::array::from_fn(|l| ((ql[l] >> (4 * (k / 2))) & 0x0f) | (((qh[l] >> (2 * k)) & 3) << 4))
}

/// A Q4_K super-block's eight 6-bit sub-block scales and eight 6-bit mins,
/// from the twelve bytes that pack them (as GGML packs them: scales and
/// mins 0-3 in the low six bits of bytes 0-3 and 4-7; 4-7 in the nibbles of
/// bytes 8-11 with their top two bits in the top bits of bytes 0-7).
pub(crate) fn q4k_scale_bytes(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut scale = [0u8; 8];
    let mut min = [0u8; 8];
    for j in 0..8 {
        (scale[j], min[j]) =
            if j < 4 { (q[j] & 63, q[j + 4] & 63) } else { ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)) };
    }
    (scale, min)
}

/// The 32 unsigned weights (0..16) of a Q4_1 block, its scale and offset:
/// `(u, d, m)` meaning `d * u + m`.
pub(crate) fn q4_1_block(b: &[u8]) -> ([u8; BLOCK], f32, f32) {
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    let min = f16::from_le_bytes([b[2], b[3]]).to_f32();
    let mut u = [0u8; BLOCK];
    for (j, &byte) in b[4..20].iter().enumerate() {
        u[j] = byte & 0x0f;
        u[j + 16] = byte >> 4;
    }
    (u, d, min)
}

/// The 32 unsigned weights (0..32, the high bits from the block's 32-bit
/// mask) of a Q5_0 block, its scale and offset: `(u, d, -16 d)` meaning
/// `d * u - 16 d`.
pub(crate) fn q5_0_block(b: &[u8]) -> ([u8; BLOCK], f32, f32) {
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let mut u = [0u8; BLOCK];
    for (j, &byte) in b[6..22].iter().enumerate() {
        u[j] = (byte & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
        u[j + 16] = (byte >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    (u, d, -16.0 * d)
}
