//! Weights read in place from a memory-mapped GGUF file.
//!
//! candle reads every tensor into memory it allocates (a `read` copy into
//! freshly zeroed pages, then a conversion into its block type). Matrices
//! that the own kernels multiply ([`super::qkernels`]) need no candle
//! tensor at all: they are read straight from the mapped file, with no
//! conversion. Where the system has transparent huge pages they are then
//! copied into huge pages once ([`super::arena`]: decoding streams every
//! weight per token, and 4 KiB pages cost it 6% on the 0.5B model with the
//! VNNI kernels, 10% on the 1.5B with the AVX2 ones, both on two cores of
//! an AMD EPYC with AVX-512 VNNI) and the file's pages are dropped from
//! this process; elsewhere they are used in place, the way llama.cpp maps
//! its models, shared with the file cache and with other processes using
//! the model.
//!
//! The file must not change while it is mapped: installed models are
//! written once (to a temporary name, then renamed) and verified by sha256.

// Mapping a file is `unsafe` in Rust because another process could change
// it under the mapping; see the module documentation.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, QTensor};
use memmap2::Mmap;

use super::arena::{Arena, ArenaBytes};

/// A read-only map of a whole model file, and the memory its repacked
/// matrices are copied into.
#[derive(Clone)]
pub(crate) struct ModelMap(Arc<Mmap>, Arc<Arena>);

impl ModelMap {
    /// Maps `file` read-only.
    pub(crate) fn new(file: &File) -> std::io::Result<Self> {
        // SAFETY: read-only map of a model file that is not modified while
        // in use (module documentation); a change would show wrong weights,
        // not break memory safety of this process beyond what a truncation
        // (SIGBUS) would, as with llama.cpp's mmap loading.
        let map = unsafe { Mmap::map(file)? };
        Ok(ModelMap(Arc::new(map), Arc::default()))
    }

    /// The bytes of tensor `name` of `content`, checked against the
    /// tensor's shape and the file's length.
    pub(crate) fn tensor(&self, content: &gguf_file::Content, name: &str) -> candle_core::Result<MappedTensor> {
        let Some(info) = content.tensor_infos.get(name) else { candle_core::bail!("cannot find tensor info for {name}") };
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        if elems % block != 0 {
            candle_core::bail!("tensor {name} has {elems} values, not a multiple of the block size {block}");
        }
        let len = elems / block * info.ggml_dtype.type_size();
        let start = usize::try_from(content.tensor_data_offset.saturating_add(info.offset)).unwrap_or(usize::MAX);
        match start.checked_add(len) {
            Some(end) if end <= self.0.len() => Ok(MappedTensor { map: self.clone(), range: start..end }),
            _ => candle_core::bail!("tensor {name} needs {len} bytes at offset {start}, beyond the end of the file ({} bytes)", self.0.len()),
        }
    }

    /// `len` bytes of the model's repacked (or copied) weights, written by
    /// `write`
    /// ([`Arena::fill`]).
    pub(crate) fn repacked(&self, len: usize, write: impl FnOnce(&mut [u8]) -> bool) -> std::io::Result<Option<ArenaBytes>> {
        self.1.fill(len, write)
    }
}

/// One tensor's bytes inside a [`ModelMap`].
#[derive(Clone)]
pub(crate) struct MappedTensor {
    map: ModelMap,
    range: Range<usize>,
}

impl MappedTensor {
    /// The raw GGML blocks.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map.0[self.range.clone()]
    }

    /// Takes the tensor's pages out of this process's resident memory
    /// after a copy of it was made (they stay in the page cache, and a later
    /// read maps them again): without it, a repacked tensor would count
    /// twice in the peak RSS. Only whole pages inside the tensor; best
    /// effort (an error leaves the pages mapped).
    pub(crate) fn release(&self) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let start = self.range.start.next_multiple_of(PAGE);
            let end = self.range.end / PAGE * PAGE;
            if end > start {
                // SAFETY: a read-only shared map of a file that does not
                // change (module documentation): dropping its pages only
                // makes the next access read them from the page cache
                // again, with the same bytes; no borrow of these pages
                // outlives `bytes()` callers, which read them again.
                let _ = unsafe { self.map.0.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
            }
        }
    }
}

/// Quantized weights in candle's memory, in the mapped file, copied, or
/// repacked.
#[derive(Clone)]
pub(crate) enum WeightBytes {
    /// A tensor candle loaded.
    Tensor(Arc<QTensor>),
    /// Bytes in the mapped file.
    Mapped(MappedTensor),
    /// Rows interleaved by eight ([`super::qkernels::x8`]).
    Interleaved(ArenaBytes),
    /// The file's bytes copied into huge pages.
    Copied(ArenaBytes),
}

/// Weight bytes in the layout they are stored in.
pub(crate) enum Layout<'a> {
    /// GGML's blocks, one row after the other.
    Rows(Cow<'a, [u8]>),
    /// Rows interleaved by eight ([`super::qkernels::x8::pack`]).
    Interleaved(&'a [u8]),
}

impl WeightBytes {
    /// The bytes and their layout.
    pub(crate) fn layout(&self) -> candle_core::Result<Layout<'_>> {
        Ok(match self {
            WeightBytes::Tensor(t) => Layout::Rows(t.data()?),
            WeightBytes::Mapped(m) => Layout::Rows(Cow::Borrowed(m.bytes())),
            WeightBytes::Interleaved(b) => Layout::Interleaved(b.bytes()),
            WeightBytes::Copied(b) => Layout::Rows(Cow::Borrowed(b.bytes())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_tensor_past_the_end_of_the_file_is_refused() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&[7u8; 64]).unwrap();
        let map = ModelMap::new(file.as_file()).unwrap();
        let info = |offset| gguf_file::TensorInfo { ggml_dtype: candle_core::quantized::GgmlDType::Q8_0, shape: (1, 32).into(), offset };
        let content = |offset| gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata: Default::default(),
            tensor_infos: [("w".to_string(), info(offset))].into_iter().collect(),
            tensor_data_offset: 16,
        };
        // One Q8_0 block is 34 bytes: at 16 + 8 it fits, at 16 + 16 it does not.
        assert_eq!(map.tensor(&content(8), "w").unwrap().bytes(), &[7u8; 34][..]);
        let err = map.tensor(&content(16), "w").err().unwrap().to_string();
        assert!(err.contains("beyond the end of the file"), "{err}");
        assert!(map.tensor(&content(0), "missing").is_err());
    }

    #[test]
    fn released_pages_read_the_same_bytes_again() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let bytes: Vec<u8> = (0..5 * 4096 + 100).map(|i| (i * 31 % 251) as u8).collect();
        file.write_all(&bytes).unwrap();
        let map = ModelMap::new(file.as_file()).unwrap();
        // A tensor over three and a half pages, not page-aligned.
        let t = MappedTensor { map: map.clone(), range: 1000..1000 + 14_500 };
        assert_eq!(t.bytes(), &bytes[1000..15_500]);
        t.release();
        assert_eq!(t.bytes(), &bytes[1000..15_500]);
        assert_eq!(&map.0[..], &bytes[..], "the pages around it are intact");
    }
}
