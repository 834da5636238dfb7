//! Reading and validating GGUF files before any weights are loaded.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{EngineError, Result};

/// Model families this engine can run from a GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama-style decoders (Llama 2/3, SmolLM2, Mistral).
    Llama,
    /// Qwen2 / Qwen2.5.
    Qwen2,
    /// Qwen3.
    Qwen3,
    /// Phi-3 / Phi-3.5.
    Phi3,
    /// Gemma 3.
    Gemma3,
}

impl Architecture {
    /// Every supported architecture.
    pub const ALL: [Architecture; 5] = [Architecture::Llama, Architecture::Qwen2, Architecture::Qwen3, Architecture::Phi3, Architecture::Gemma3];

    /// The `general.architecture` string used in GGUF metadata.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Phi3 => "phi3",
            Architecture::Gemma3 => "gemma3",
        }
    }

    /// Parses a `general.architecture` string.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Architecture::ALL.into_iter().find(|a| a.gguf_name() == name)
    }

    /// Longest sequence the candle implementation supports, if it caps it
    /// below the model's own context length.
    pub fn implementation_limit(self) -> Option<usize> {
        match self {
            Architecture::Gemma3 => Some(candle_transformers::models::quantized_gemma3::MAX_SEQ_LEN),
            _ => None,
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.gguf_name())
    }
}

/// A GGUF file whose header has been read and checked against the file size.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    architecture: Architecture,
}

impl GgufFile {
    /// Opens `path`, reads the header and checks that every tensor's data lies
    /// inside the file and that the architecture is supported.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| EngineError::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(&path, e))?.len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| EngineError::InvalidGguf { path: path.clone(), reason: describe_read_error(&e, file_len) })?;
        check_tensor_extents(&path, &content, file_len)?;
        let arch_name = metadata_str(&content, "general.architecture")?;
        let architecture = Architecture::from_gguf_name(arch_name).ok_or_else(|| EngineError::UnsupportedArchitecture {
            arch: arch_name.to_string(),
            path: path.clone(),
            supported: Architecture::ALL.map(|a| a.gguf_name()).join(", "),
        })?;
        Ok(GgufFile { path, content, architecture })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header: metadata and tensor infos.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The model family.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// A string metadata value, if present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.to_string().ok()).map(String::as_str)
    }

    /// An integer metadata value, if present and integral.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(value_as_u64)
    }

    /// The model's context length from `{arch}.context_length`, capped by what
    /// the candle implementation supports.
    pub fn context_length(&self) -> usize {
        let declared = self.get_u64(&format!("{}.context_length", self.architecture.gguf_name())).map(|v| v as usize).unwrap_or(2048);
        match self.architecture.implementation_limit() {
            Some(limit) => declared.min(limit),
            None => declared,
        }
    }

    /// The model's display name (`general.name`), or the file stem.
    pub fn model_name(&self) -> String {
        self.get_str("general.name").map(str::to_string).or_else(|| self.path.file_stem().map(|s| s.to_string_lossy().into_owned())).unwrap_or_default()
    }

    /// Splits into path and content (the loaders take the content by value).
    pub(crate) fn into_parts(self) -> (PathBuf, Content, Architecture) {
        (self.path, self.content, self.architecture)
    }
}

/// Reads an integer of any width as u64.
pub(crate) fn value_as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(u64::from(*x)),
        Value::U16(x) => Some(u64::from(*x)),
        Value::U32(x) => Some(u64::from(*x)),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

/// A required string metadata value.
pub(crate) fn metadata_str<'a>(content: &'a Content, key: &str) -> Result<&'a str> {
    let value = content.metadata.get(key).ok_or_else(|| EngineError::Metadata { key: key.to_string(), reason: "missing".to_string() })?;
    value
        .to_string()
        .map(String::as_str)
        .map_err(|_| EngineError::Metadata { key: key.to_string(), reason: format!("expected a string, found {:?}", value.value_type()) })
}

fn describe_read_error(e: &candle_core::Error, file_len: u64) -> String {
    let text = e.to_string();
    if text.contains("failed to fill whole buffer") || text.contains("UnexpectedEof") {
        format!("the header ends early (file is {file_len} bytes): the file is truncated or not a GGUF file")
    } else {
        text
    }
}

fn check_tensor_extents(path: &Path, content: &Content, file_len: u64) -> Result<()> {
    let mut worst: Option<(&str, u64)> = None;
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count() as u64;
        let block = info.ggml_dtype.block_size() as u64;
        let bytes = elems / block.max(1) * info.ggml_dtype.type_size() as u64;
        let end = content.tensor_data_offset + info.offset + bytes;
        if end > file_len && worst.is_none_or(|(_, w)| end > w) {
            worst = Some((name.as_str(), end));
        }
    }
    match worst {
        Some((tensor, needed)) => Err(EngineError::TruncatedGguf { path: path.to_path_buf(), tensor: tensor.to_string(), needed, actual: file_len }),
        None => Ok(()),
    }
}
