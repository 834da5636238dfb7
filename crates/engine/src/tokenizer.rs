//! Tokenizers built from GGUF metadata (as llama.cpp does) or read from a
//! `tokenizer.json`.
//!
//! GGUF files carry their vocabulary in `tokenizer.ggml.*` keys. For the
//! byte-level BPE models (`tokenizer.ggml.model = gpt2`) the pre-tokenizer is
//! chosen by `tokenizer.ggml.pre`, mirroring llama.cpp's table: `smollm`
//! splits digits one by one and then applies the GPT-2 regex, `qwen2` uses the
//! Qwen split regex, `llama-bpe` the Llama 3 regex. SentencePiece models
//! (`tokenizer.ggml.model = llama`) are built as a unigram model over the
//! token scores with byte fallback. Tokens of type 3 (control) are special:
//! they are only matched in text when special parsing is on; tokens of type 4
//! (user defined) are always matched, as in llama.cpp.

use std::collections::HashSet;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::{Prepend, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{EngineError, Result};
use crate::gguf::{value_as_u64, GgufFile};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

const REGEX_QWEN2: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_LLAMA3: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer for a chat model, with its special-token ids.
#[derive(Clone)]
pub struct GgufTokenizer {
    /// Parses special tokens written in the text.
    with_special: Tokenizer,
    /// Treats special-token text as plain text.
    plain: Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    end_of_generation: HashSet<u32>,
    /// The bytes of every token, built on first use (constrained decoding).
    token_bytes: std::sync::OnceLock<std::sync::Arc<TokenBytes>>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer").field("vocab_size", &self.vocab_size()).field("bos_id", &self.bos_id).field("eos_id", &self.eos_id).finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

fn string_array(gguf: &GgufFile, key: &str) -> Result<Vec<String>> {
    let value = gguf.get(key).ok_or_else(|| EngineError::Metadata { key: key.to_string(), reason: "missing".to_string() })?;
    let items = value.to_vec().map_err(|_| EngineError::Metadata { key: key.to_string(), reason: "expected an array".to_string() })?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| v.to_string().cloned().map_err(|_| EngineError::Metadata { key: key.to_string(), reason: format!("element {i} is not a string") }))
        .collect()
}

fn numeric_array(gguf: &GgufFile, key: &str) -> Option<Vec<f64>> {
    let items = gguf.get(key)?.to_vec().ok()?;
    items
        .iter()
        .map(|v| match v {
            Value::F32(x) => Some(f64::from(*x)),
            Value::F64(x) => Some(*x),
            other => value_as_u64(other).map(|x| x as f64),
        })
        .collect()
}

fn split_regex(pattern: &str) -> Result<PreTokenizerWrapper> {
    let split = Split::new(SplitPattern::Regex(pattern.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(tok_err)?;
    Ok(split.into())
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value (byte-level BPE).
fn bpe_pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    Ok(match pre {
        "qwen2" | "deepseek-r1-qwen" => Sequence::new(vec![split_regex(REGEX_QWEN2)?, ByteLevel::new(false, false, false).into()]).into(),
        "llama3" | "llama-bpe" | "smaug-bpe" | "falcon3" => Sequence::new(vec![split_regex(REGEX_LLAMA3)?, ByteLevel::new(false, false, false).into()]).into(),
        "smollm" | "starcoder" | "refact" | "codeshell" => Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
        other => {
            if other != "gpt2" && other != "default" {
                tracing::warn!(pre = other, "unknown tokenizer.ggml.pre, using the GPT-2 pre-tokenizer");
            }
            ByteLevel::new(false, true, true).into()
        }
    })
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let kind = gguf
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| EngineError::Metadata { key: "tokenizer.ggml.model".into(), reason: "missing (and no tokenizer.json beside the model)".into() })?;
        let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
        let types = numeric_array(gguf, "tokenizer.ggml.token_type").unwrap_or_default();
        let mut tokenizer = match kind {
            "gpt2" => {
                let merges = string_array(gguf, "tokenizer.ggml.merges")?
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| {
                        m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| EngineError::Metadata {
                            key: "tokenizer.ggml.merges".into(),
                            reason: format!("entry {i} `{m}` is not two space-separated tokens"),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
                let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(tok_err)?;
                let mut t = Tokenizer::new(bpe);
                let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("gpt2");
                t.with_pre_tokenizer(Some(bpe_pre_tokenizer(pre)?));
                t.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::new(false, false, false))));
                t
            }
            "llama" => {
                let scores = numeric_array(gguf, "tokenizer.ggml.scores").ok_or_else(|| EngineError::Metadata {
                    key: "tokenizer.ggml.scores".into(),
                    reason: "missing or not numeric (needed for a SentencePiece vocabulary)".into(),
                })?;
                let unk = gguf.get_u64("tokenizer.ggml.unknown_token_id").map(|v| v as usize);
                let vocab = tokens.iter().cloned().zip(scores).collect();
                let model = Unigram::from(vocab, unk, true).map_err(tok_err)?;
                let mut t = Tokenizer::new(model);
                let add_space = gguf.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.to_bool().ok()).unwrap_or(true);
                let mut normalizers = Vec::new();
                if add_space {
                    normalizers.push(Prepend::new("▁".to_string()).into());
                }
                normalizers.push(Replace::new(" ", "▁").map_err(tok_err)?.into());
                t.with_normalizer(Some(NormalizerSequence::new(normalizers))).map_err(tok_err)?;
                let mut decoders: Vec<DecoderWrapper> =
                    vec![tokenizers::normalizers::replace::Replace::new("▁", " ").map_err(tok_err)?.into(), ByteFallback::new().into(), Fuse::new().into()];
                if add_space {
                    decoders.push(Strip::new(' ', 1, 0).into());
                }
                t.with_decoder(Some(DecoderSequence::new(decoders)));
                t
            }
            other => {
                return Err(EngineError::Metadata {
                    key: "tokenizer.ggml.model".into(),
                    reason: format!("unsupported tokenizer model `{other}` (supported: gpt2, llama); put a tokenizer.json beside the model"),
                })
            }
        };
        let mut specials = Vec::new();
        let mut user_defined = Vec::new();
        for (id, ty) in types.iter().enumerate() {
            let Some(tok) = tokens.get(id) else { continue };
            match *ty as u64 {
                TOKEN_TYPE_CONTROL => specials.push(AddedToken::from(tok.clone(), true).normalized(false)),
                TOKEN_TYPE_USER_DEFINED => user_defined.push(AddedToken::from(tok.clone(), false).normalized(false)),
                _ => {}
            }
        }
        tokenizer.add_special_tokens(specials).map_err(tok_err)?;
        tokenizer.add_tokens(user_defined).map_err(tok_err)?;
        let bos_id = gguf.get_u64("tokenizer.ggml.bos_token_id").map(|v| v as u32);
        let eos_id = gguf.get_u64("tokenizer.ggml.eos_token_id").map(|v| v as u32);
        let mut eog: HashSet<u32> = eos_id.into_iter().collect();
        if let Some(eot) = gguf.get_u64("tokenizer.ggml.eot_token_id") {
            eog.insert(eot as u32);
        }
        Ok(Self::assemble(tokenizer, bos_id, eos_id, eog))
    }

    /// Reads a HuggingFace `tokenizer.json`; special ids come from the GGUF
    /// metadata when one is given, else from well-known token names.
    pub fn from_file(path: &Path, gguf: Option<&GgufFile>) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::FileNotFound { path: path.to_path_buf() });
        }
        let tokenizer = Tokenizer::from_file(path).map_err(|e| EngineError::Tokenizer(format!("reading {}: {e}", path.display())))?;
        let id = |key: &str| gguf.and_then(|g| g.get_u64(key)).map(|v| v as u32);
        let bos_id = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let eog = eos_id.into_iter().collect();
        Ok(Self::assemble(tokenizer, bos_id, eos_id, eog))
    }

    fn assemble(tokenizer: Tokenizer, bos_id: Option<u32>, eos_id: Option<u32>, mut eog: HashSet<u32>) -> Self {
        // Chat models end a turn with one of these; llama.cpp treats them as
        // end-of-generation tokens too.
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>"] {
            if let Some(id) = tokenizer.token_to_id(name) {
                eog.insert(id);
            }
        }
        let mut plain = tokenizer.clone();
        plain.set_encode_special_tokens(true);
        GgufTokenizer { with_special: tokenizer, plain, bos_id, eos_id, end_of_generation: eog, token_bytes: std::sync::OnceLock::new() }
    }

    /// Encodes text. With `parse_special`, control tokens written in the text
    /// (such as `<|im_start|>`) become their ids; without it they are encoded
    /// as ordinary text. No BOS token is added.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tok = if parse_special { &self.with_special } else { &self.plain };
        let enc = tok.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, leaving out special tokens when asked.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.with_special.decode(ids, skip_special).map_err(tok_err)
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.with_special.token_to_id(token)
    }

    /// The token string of an id.
    pub fn token(&self, id: u32) -> Option<String> {
        self.with_special.id_to_token(id)
    }

    /// The BOS id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The EOS id, if the model has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether generating `id` ends the turn (EOS, end-of-turn tokens).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }

    /// The number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.with_special.get_vocab_size(true)
    }

    /// The bytes each token stands for (computed once, then shared).
    pub fn token_bytes(&self) -> std::sync::Arc<TokenBytes> {
        std::sync::Arc::clone(self.token_bytes.get_or_init(|| std::sync::Arc::new(TokenBytes::from_tokenizer(self))))
    }

    /// The underlying HuggingFace tokenizer (special tokens parsed).
    pub fn inner(&self) -> &Tokenizer {
        &self.with_special
    }
}

/// The bytes each token id stands for (`None` for special tokens, which a
/// grammar never allows).
#[derive(Debug, Clone)]
pub struct TokenBytes {
    bytes: Vec<Option<Box<[u8]>>>,
}

impl TokenBytes {
    /// Reads every token of a tokenizer. Byte-level BPE tokens are mapped
    /// back through the GPT-2 byte table; SentencePiece tokens have `▁`
    /// replaced by a space and `<0xNN>` read as one byte.
    pub fn from_tokenizer(tokenizer: &GgufTokenizer) -> TokenBytes {
        let inner = tokenizer.inner();
        let specials: std::collections::HashSet<u32> = inner.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(id, _)| *id).collect();
        let byte_level = matches!(inner.get_decoder(), Some(tokenizers::DecoderWrapper::ByteLevel(_)));
        let unicode_to_byte = gpt2_unicode_to_byte();
        let n = tokenizer.vocab_size();
        let mut bytes = Vec::with_capacity(n);
        for id in 0..n as u32 {
            if specials.contains(&id) {
                bytes.push(None);
                continue;
            }
            let Some(text) = inner.id_to_token(id) else {
                bytes.push(None);
                continue;
            };
            let raw: Vec<u8> = if byte_level {
                let mapped: Option<Vec<u8>> = text.chars().map(|c| unicode_to_byte.get(&c).copied()).collect();
                mapped.unwrap_or_else(|| text.as_bytes().to_vec())
            } else if let Some(b) = sentencepiece_byte(&text) {
                vec![b]
            } else {
                text.replace('\u{2581}', " ").into_bytes()
            };
            bytes.push(if raw.is_empty() { None } else { Some(raw.into_boxed_slice()) });
        }
        TokenBytes { bytes }
    }

    /// Builds the table from explicit byte strings (for tests and custom
    /// vocabularies).
    pub fn from_vec(bytes: Vec<Option<Vec<u8>>>) -> TokenBytes {
        TokenBytes { bytes: bytes.into_iter().map(|b| b.filter(|b| !b.is_empty()).map(Vec::into_boxed_slice)).collect() }
    }

    /// The bytes of a token, `None` for special tokens and unknown ids.
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).and_then(|b| b.as_deref())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// `<0xNN>` byte-fallback tokens of SentencePiece vocabularies.
fn sentencepiece_byte(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The inverse of GPT-2's byte-to-unicode table (printable bytes map to
/// themselves, the rest to code points from 256 up).
fn gpt2_unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_table_is_a_bijection() {
        let map = gpt2_unicode_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'\u{120}'], b' ');
        assert_eq!(map[&'\u{10a}'], b'\n');
        assert_eq!(map[&'a'], b'a');
        assert_eq!(sentencepiece_byte("<0x0A>"), Some(b'\n'));
        assert_eq!(sentencepiece_byte("<0x0A"), None);
    }
}
