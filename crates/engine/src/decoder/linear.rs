//! A linear layer over quantized weights: the SIMD kernels of
//! [`super::qkernels`] for Q4_1, Q5_0, Q4_K and Q6_K on CPUs that have them
//! (interleaved by eight rows on x86-64: [`super::qkernels::x8`]),
//! candle's `QMatMul` for every other type and device.

use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Shape, Tensor};

use super::arena;
use super::mapped::{Layout, MappedTensor, ModelMap, WeightBytes};
use super::qkernels::{self, Kind};

/// `y = x W^T` for quantized `W` of shape `(out, in)`.
pub(crate) enum Linear {
    Candle(QMatMul),
    Native { kind: Kind, weights: WeightBytes, out: usize, inner: usize, device: Device },
}

/// The kernel kind for `dtype`, when the own kernels run on `device`.
pub(crate) fn native_kind(dtype: GgmlDType, device: &Device) -> Option<Kind> {
    if !device.is_cpu() || !qkernels::available() {
        return None;
    }
    match dtype {
        GgmlDType::Q4_1 => Some(Kind::Q4_1),
        GgmlDType::Q5_0 => Some(Kind::Q5_0),
        GgmlDType::Q4K => Some(Kind::Q4K),
        GgmlDType::Q6K => Some(Kind::Q6K),
        _ => None,
    }
}

impl Linear {
    /// A layer over `weights`; `native` allows the own kernels.
    pub(crate) fn new(native: bool, weights: QTensor) -> candle_core::Result<Self> {
        Self::from_arc(native, Arc::new(weights))
    }

    pub(crate) fn from_arc(native: bool, weights: Arc<QTensor>) -> candle_core::Result<Self> {
        let device = weights.device();
        if let Some((kind, out, inner)) = Self::native_shape(native, weights.dtype(), weights.shape(), &device) {
            return Ok(Linear::Native { kind, weights: WeightBytes::Tensor(weights), out, inner, device });
        }
        Ok(Linear::Candle(QMatMul::from_arc(weights)?))
    }

    /// The kernel and `(out, in)` when the own kernels take these weights.
    fn native_shape(native: bool, dtype: GgmlDType, shape: &Shape, device: &Device) -> Option<(Kind, usize, usize)> {
        if !native {
            return None;
        }
        let kind = native_kind(dtype, device)?;
        let (out, inner) = shape.dims2().ok()?;
        (inner % kind.block_values() == 0).then_some((kind, out, inner))
    }

    /// A layer over tensor `name` of `content`: read in place from `map`
    /// when the own kernels take it (see [`super::mapped`]), otherwise
    /// loaded by candle from `reader`.
    pub(crate) fn load<R: std::io::Read + std::io::Seek>(
        native: bool,
        content: &gguf_file::Content,
        map: Option<&ModelMap>,
        reader: &mut R,
        name: &str,
        device: &Device,
    ) -> candle_core::Result<Self> {
        if let (Some(map), Some(info)) = (map, content.tensor_infos.get(name)) {
            if let Some((kind, out, inner)) = Self::native_shape(native, info.ggml_dtype, &info.shape, device) {
                let weights: MappedTensor = map.tensor(content, name)?;
                // Decoding is fastest on eight rows interleaved (x86, see
                // `x8::applies`); the copy replaces the mapped pages in
                // memory.
                if let Some(len) = qkernels::x8::packed_len(kind, out, inner).filter(|_| qkernels::x8::applies(kind, out)) {
                    if let Some(packed) = map.repacked(len, |dst| qkernels::x8::pack_into(kind, weights.bytes(), out, inner, dst))? {
                        weights.release();
                        return Ok(Linear::Native { kind, weights: WeightBytes::Interleaved(packed), out, inner, device: device.clone() });
                    }
                }
                // The rest is read as it is, from huge pages where the
                // system has them (see `arena`).
                if arena::huge_pages_available() {
                    let bytes = weights.bytes();
                    if let Some(copy) = map.repacked(bytes.len(), |dst| {
                        dst.copy_from_slice(bytes);
                        true
                    })? {
                        weights.release();
                        return Ok(Linear::Native { kind, weights: WeightBytes::Copied(copy), out, inner, device: device.clone() });
                    }
                }
                return Ok(Linear::Native { kind, weights: WeightBytes::Mapped(weights), out, inner, device: device.clone() });
            }
        }
        Self::new(native, content.tensor(reader, name, device)?)
    }

    /// `x` of shape `(rows, in)` through each of `layers` (all reading it):
    /// one product over all of them where the interleaved decoding kernel
    /// takes them ([`qkernels::x8::matmul_parts`]: the small key and value
    /// projections stream at a fraction of the bandwidth alone), otherwise
    /// one layer after the other. The same bits either way.
    pub(crate) fn forward_all<const N: usize>(layers: [&Linear; N], x: &Tensor) -> candle_core::Result<[Tensor; N]> {
        if let Some((parts, xs, device)) = Self::decoding_parts(&layers, x)? {
            let rows = x.dim(0)?;
            if let Some(ys) = qkernels::x8::matmul_parts(&parts, xs.len() / rows, &xs, rows) {
                let mut out = Vec::with_capacity(N);
                for (y, part) in ys.into_iter().zip(&parts) {
                    out.push(Tensor::from_vec(y, (rows, part.n), &device)?);
                }
                if let Ok(out) = out.try_into() {
                    return Ok(out);
                }
            }
        }
        let mut ys = Vec::with_capacity(N);
        for layer in layers {
            ys.push(layer.forward(x)?);
        }
        ys.try_into().map_err(|_| candle_core::Error::Msg("a layer gave no output".into()))
    }

    /// `silu(x G^T) * (x U^T)` for the gate and up projections of a gated
    /// feed-forward layer: products and combination in the same tasks where
    /// the interleaved decoding kernel takes them
    /// ([`qkernels::x8::matmul_swiglu`]), otherwise two products and
    /// candle's `silu` and product. The same bits either way.
    pub(crate) fn forward_swiglu(gate: &Linear, up: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some((parts, xs, device)) = Self::decoding_parts(&[gate, up], x)? {
            let rows = x.dim(0)?;
            if let Some(y) = qkernels::x8::matmul_swiglu(parts[0], parts[1], xs.len() / rows, &xs, rows) {
                return Tensor::from_vec(y, (rows, parts[0].n), &device);
            }
        }
        candle_nn::ops::silu(&gate.forward(x)?)? * up.forward(x)?
    }

    /// The interleaved weights of `layers`, the values of `x` and the
    /// device, when every layer has interleaved weights and `x` (of
    /// `(rows, in)`) is a decoding step's (at most four rows); `None`
    /// otherwise.
    #[allow(clippy::type_complexity)]
    fn decoding_parts<'a>(layers: &[&'a Linear], x: &Tensor) -> candle_core::Result<Option<(Vec<qkernels::x8::Part<'a>>, Vec<f32>, Device)>> {
        let (rows, width) = x.dims2()?;
        let mut parts = Vec::with_capacity(layers.len());
        let mut device = None;
        for layer in layers {
            let Linear::Native { kind, weights, out, inner, device: d } = layer else { return Ok(None) };
            let Layout::Interleaved(packed) = weights.layout()? else { return Ok(None) };
            if *inner != width {
                candle_core::bail!("linear layer expects {inner} inputs, got {width}");
            }
            parts.push(qkernels::x8::Part { kind: *kind, packed, n: *out });
            device = Some(d.clone());
        }
        let Some(device) = device.filter(|_| rows <= 4) else { return Ok(None) };
        Ok(Some((parts, x.contiguous()?.flatten_all()?.to_vec1::<f32>()?, device)))
    }

    /// `x` of shape `(rows, in)` to `(rows, out)`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Candle(m) => m.forward(x),
            Linear::Native { kind, weights, out, inner, device } => {
                let (rows, width) = x.dims2()?;
                if width != *inner {
                    candle_core::bail!("linear layer expects {inner} inputs, got {width}");
                }
                let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let y = match weights.layout()? {
                    Layout::Interleaved(data) => qkernels::x8::matmul(*kind, data, *out, *inner, &xs, rows),
                    Layout::Rows(data) => qkernels::matmul(*kind, &data, *out, *inner, &xs, rows),
                };
                Tensor::from_vec(y, (rows, *out), device)
            }
        }
    }
}
