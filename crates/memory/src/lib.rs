//! # persona-memory
//!
//! PersonaAgent's personal memory, one per user:
//!
//! - a durable **store** ([`Store`]): SQLite with WAL and foreign keys,
//!   versioned schema, every write a transaction;
//! - **episodic memory** ([`Memory`]): the user's past interactions with
//!   their embeddings, retrieved top-K by cosine similarity through a
//!   per-user HNSW index ([`VectorIndex`]) that is persisted beside the
//!   database and rebuilt from the store whenever it is missing, stale or
//!   unreadable;
//! - **semantic memory** ([`semantic`]): an LLM-written profile of the
//!   user's stable preferences, stored as versions.

pub mod bench;
pub mod error;
pub mod import;
pub mod index;
mod index_cache;
pub mod memory;
pub mod record;
pub mod semantic;
pub mod store;
pub mod text;

pub use error::{MemoryError, Result};
pub use import::{read_import_file, ImportFormat, ImportOptions, ParsedImport};
pub use index::{IndexError, IndexParams, VectorIndex};
pub use memory::{ImportReport, Memory};
pub use record::{Hit, NewRecord, Record};
pub use semantic::{SemanticConfig, Summarizer, TaskKind};
pub use store::{PersonaVersion, SemanticProfile, Store, User, UserSummary};
