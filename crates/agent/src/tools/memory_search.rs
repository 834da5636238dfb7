//! The `memory_search` tool: the user's own past interactions most similar
//! to a query, with their real responses.

use std::collections::HashSet;

use persona_engine::Encoder;
use persona_memory::Memory;
use serde_json::{Map, Value};

use super::{clip, CallContext, Tool, ToolSpec};
use crate::error::Result;

/// Searches one user's episodic memory.
pub struct MemorySearch<'a> {
    memory: &'a mut Memory,
    encoder: &'a dyn Encoder,
    user: String,
    spec: ToolSpec,
    k: usize,
    max_chars: usize,
    exclude: HashSet<i64>,
}

impl std::fmt::Debug for MemorySearch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySearch").field("user", &self.user).field("k", &self.k).finish()
    }
}

impl<'a> MemorySearch<'a> {
    /// The tool over `user`'s memory, returning the top `k` records with
    /// each text cut to `max_chars` characters.
    pub fn new(memory: &'a mut Memory, encoder: &'a dyn Encoder, user: &str, k: usize, max_chars: usize) -> Self {
        let spec = ToolSpec::with_string(
            "memory_search",
            "Searches this user's own past interactions and returns the most similar ones with the user's real responses.",
            "query",
            "what to look for in the user's history",
            200,
        );
        MemorySearch { memory, encoder, user: user.to_string(), spec, k: k.max(1), max_chars, exclude: HashSet::new() }
    }

    /// Leaves these records out of results (alignment replays a user's
    /// interaction and must not retrieve its real answer).
    pub fn excluding(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.exclude.extend(ids);
        self
    }
}

impl Tool for MemorySearch<'_> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn is_personal_memory(&self) -> bool {
        true
    }

    fn call(&mut self, arguments: &Map<String, Value>) -> Result<String> {
        self.call_in(arguments, &CallContext::default())
    }

    fn call_in(&mut self, arguments: &Map<String, Value>, context: &CallContext<'_>) -> Result<String> {
        let query = arguments.get("query").and_then(Value::as_str).unwrap_or_default();
        let hidden = |id: i64| self.exclude.contains(&id) || context.hidden_records.contains(&id);
        let hits = self.memory.search(&self.user, query, self.k + self.exclude.len() + context.hidden_records.len(), self.encoder)?;
        let hits: Vec<_> = hits.into_iter().filter(|h| !hidden(h.record.id)).take(self.k).collect();
        if hits.is_empty() {
            return Ok("This user has no past interactions yet.".to_string());
        }
        Ok(hits
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!(
                    "{}. The user was given: {} | The user's response: {}",
                    i + 1,
                    clip(&h.record.query, self.max_chars).replace('\n', " "),
                    clip(&h.record.response, self.max_chars).replace('\n', " ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
