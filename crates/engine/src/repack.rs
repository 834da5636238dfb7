//! Repacking quantized weights once, at first load.
//!
//! candle's CPU `vec_dot` has SIMD (AVX2/NEON) kernels for Q4_0, Q8_0 and the
//! k-quants, but Q4_1, Q5_0 and Q5_1 fall back to scalar code. Many GGUFs use
//! them (the tiny model is Q4_1; the small model's "Q4_K_M" file is mostly
//! Q5_0, because its 896-wide rows are not multiples of 256). Those tensors
//! are converted to Q8_0 (exact for Q5_0's 5-bit integers up to the shared
//! block scale; for Q4_1 the 8-bit requantization error is ~16x below the
//! 4-bit step) and the converted GGUF is cached beside the models, so later
//! loads are plain loads.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;

use crate::error::{CandleContext, EngineError, Result};

/// Quantization types without a SIMD CPU kernel in candle.
const SLOW_TYPES: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// Whether a tensor would be repacked.
fn is_slow(dtype: GgmlDType, dims: &[usize]) -> bool {
    SLOW_TYPES.contains(&dtype) && dims.len() == 2 && dims[1].is_multiple_of(32)
}

/// Whether any tensor of the file uses a type without a SIMD kernel in
/// candle, other than the types in `native` (which the loader multiplies
/// with its own kernels).
pub fn needs_repack(content: &Content, native: &[GgmlDType]) -> bool {
    content.tensor_infos.values().any(|t| is_slow(t.ggml_dtype, t.shape.dims()) && !native.contains(&t.ggml_dtype))
}

/// Where the repacked copy of `original` is cached: keyed on the original's
/// name, size and modification time, so a changed file is repacked again.
pub fn repacked_path(cache_dir: &Path, original: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(original).map_err(|e| EngineError::io(original, e))?;
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()).unwrap_or(0);
    let stem = original.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    Ok(cache_dir.join(format!("{stem}.{}-{mtime}.q8_0-repack.gguf", meta.len())))
}

/// Bytes of one Q5_0 block: f16 scale, 32 high bits, 16 bytes of nibbles.
const Q5_0_BLOCK: usize = 22;
/// Bytes of one Q8_0 block: f16 scale, 32 signed bytes.
const Q8_0_BLOCK: usize = 34;

/// Converts Q5_0 blocks to Q8_0 blocks exactly: Q5_0 stores 5-bit integers
/// `q` meaning `d * (q - 16)`, which fit Q8_0's `d * i8` with the same scale.
/// Returns `None` if the data is not whole blocks.
pub fn q5_0_to_q8_0(data: &[u8]) -> Option<Vec<u8>> {
    if !data.len().is_multiple_of(Q5_0_BLOCK) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / Q5_0_BLOCK * Q8_0_BLOCK);
    for block in data.chunks_exact(Q5_0_BLOCK) {
        let (scale, rest) = block.split_at(2);
        let (qh, qs) = rest.split_at(4);
        let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
        out.extend_from_slice(scale);
        let mut values = [0i8; 32];
        for (j, &byte) in qs.iter().enumerate() {
            let high_lo = (((qh >> j) << 4) & 0x10) as u8;
            let high_hi = ((qh >> (j + 12)) & 0x10) as u8;
            values[j] = (((byte & 0x0f) | high_lo) as i16 - 16) as i8;
            values[j + 16] = (((byte >> 4) | high_hi) as i16 - 16) as i8;
        }
        out.extend(values.iter().map(|&v| v as u8));
    }
    Some(out)
}

/// Writes a copy of `original` (whose header is `content`) to `dest` with
/// every slow-type matrix converted to Q8_0. Written to a temporary name and
/// renamed, so an interrupted repack never leaves a half file, and two
/// processes repacking at once do not collide.
pub fn repack(original: &Path, content: &Content, dest: &Path) -> Result<()> {
    let file = File::open(original).map_err(|e| EngineError::io(original, e))?;
    let mut reader = BufReader::new(file);
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let info = &content.tensor_infos[name];
        let tensor = content.tensor(&mut reader, name, &Device::Cpu).during(&format!("reading tensor `{name}`"))?;
        let tensor = if info.ggml_dtype == GgmlDType::Q5_0 && is_slow(info.ggml_dtype, info.shape.dims()) {
            let bytes = tensor.data().during(&format!("reading `{name}`"))?;
            let q8 = q5_0_to_q8_0(&bytes).ok_or_else(|| EngineError::InvalidGguf {
                path: original.to_path_buf(),
                reason: format!("tensor `{name}`: Q5_0 data is not a whole number of blocks"),
            })?;
            let storage = QStorage::from_data(std::borrow::Cow::Owned(q8), &Device::Cpu, GgmlDType::Q8_0).during(&format!("building Q8_0 `{name}`"))?;
            QTensor::new(storage, info.shape.clone()).during(&format!("building Q8_0 `{name}`"))?
        } else if is_slow(info.ggml_dtype, info.shape.dims()) {
            let dense = tensor.dequantize(&Device::Cpu).during(&format!("dequantizing `{name}`"))?;
            QTensor::quantize(&dense, GgmlDType::Q8_0).during(&format!("requantizing `{name}` to Q8_0"))?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let origin = Value::String(original.display().to_string());
    let mut metadata: Vec<(&str, &Value)> = content.metadata.iter().filter(|(k, _)| k.as_str() != "general.alignment").map(|(k, v)| (k.as_str(), v)).collect();
    metadata.push(("persona.repacked_from", &origin));
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    }
    // Written to a temporary file beside `dest` and renamed into place, so
    // two processes repacking the same model never share a half-written one.
    let dir = dest.parent().unwrap_or(Path::new("."));
    let partial = tempfile::Builder::new().suffix(".partial").tempfile_in(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut writer = BufWriter::new(partial.as_file());
    gguf_file::write(&mut writer, &metadata, &refs).during("writing the repacked GGUF")?;
    writer.flush().map_err(|e| EngineError::io(partial.path(), e))?;
    drop(writer);
    partial.persist(dest).map_err(|e| EngineError::io(dest, e.error))?;
    remove_stale_copies(dest);
    Ok(())
}

/// Removes older repacked copies of the same model (same file stem, other
/// size or modification time), so an updated model does not leave its old
/// copy behind.
fn remove_stale_copies(dest: &Path) {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name().and_then(|n| n.to_str())) else { return };
    let Some((stem, _)) = name.rsplit_once(".q8_0-repack.gguf").and_then(|(head, _)| head.rsplit_once('.')) else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let other = entry.file_name().to_string_lossy().into_owned();
        let same_model = other.strip_prefix(stem).and_then(|rest| rest.strip_prefix('.')).is_some_and(|rest| {
            rest.ends_with(".q8_0-repack.gguf")
                && rest.split('.').next().is_some_and(|key| key.contains('-') && key.chars().all(|c| c.is_ascii_digit() || c == '-'))
        });
        if same_model && other != name {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn q5_0_to_q8_0_is_exact() {
        let values: Vec<f32> = (0..64 * 32).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let dense = Tensor::from_vec(values, (64, 32), &Device::Cpu).unwrap();
        let q5 = QTensor::quantize(&dense, GgmlDType::Q5_0).unwrap();
        let want = q5.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let q8 = q5_0_to_q8_0(&q5.data().unwrap()).unwrap();
        let storage = QStorage::from_data(std::borrow::Cow::Owned(q8), &Device::Cpu, GgmlDType::Q8_0).unwrap();
        let got = QTensor::new(storage, (64, 32)).unwrap().dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, want);
        assert!(q5_0_to_q8_0(&[0u8; 23]).is_none());
    }

    #[test]
    fn stale_copies_of_the_same_model_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |n: &str| std::fs::write(dir.path().join(n), b"x").unwrap();
        touch("m.q4.100-1.q8_0-repack.gguf");
        touch("m.q4.100-2.q8_0-repack.gguf");
        touch("other.100-1.q8_0-repack.gguf");
        touch("m.q4.extra.100-1.q8_0-repack.gguf");
        remove_stale_copies(&dir.path().join("m.q4.100-2.q8_0-repack.gguf"));
        let mut left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["m.q4.100-2.q8_0-repack.gguf", "m.q4.extra.100-1.q8_0-repack.gguf", "other.100-1.q8_0-repack.gguf"]);
    }
}
