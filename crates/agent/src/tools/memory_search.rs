//! The `memory_search` tool: the user's own past interactions most similar
//! to a query, with their real responses.

use std::collections::HashSet;

use persona_engine::Encoder;
use persona_memory::{Memory, Record, TaskKind};
use serde_json::{Map, Value};

use super::{clip, CallContext, Evidence, Tool, ToolSpec};
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
        Ok(hits.iter().enumerate().map(|(i, h)| format!("{}. {}", i + 1, render(&h.record, self.max_chars))).collect::<Vec<_>>().join("\n"))
    }

    fn closeness(&mut self, evidence: Evidence<'_>, context: &CallContext<'_>) -> Result<Option<Vec<f32>>> {
        let hidden = |id: i64| self.exclude.contains(&id) || context.hidden_records.contains(&id);
        let spare = self.exclude.len() + context.hidden_records.len();
        match evidence {
            Evidence::Options(texts) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let vectors = self.encoder.embed(&refs)?;
                let mut scores = Vec::with_capacity(texts.len());
                for vector in &vectors {
                    let hits = self.memory.search_vector(&self.user, vector, 1 + spare, self.encoder.name())?;
                    match hits.into_iter().find(|h| !hidden(h.record.id)) {
                        Some(hit) => scores.push(hit.score),
                        None => return Ok(None),
                    }
                }
                Ok(Some(scores))
            }
            Evidence::Labels { query, labels } => {
                let hits = self.memory.search(&self.user, query, self.k + spare, self.encoder)?;
                let votes: Vec<(f32, &str)> =
                    hits.iter().filter(|h| !hidden(h.record.id)).take(self.k).map(|h| (h.score, h.record.response.as_str())).collect();
                Ok(label_votes(labels, &votes))
            }
        }
    }
}

/// Each label's votes: the summed similarity of the records (similarity,
/// response) whose response is that label (spaces around it aside);
/// `None` if no record's response is a label.
pub fn label_votes(labels: &[String], records: &[(f32, &str)]) -> Option<Vec<f32>> {
    let mut votes = vec![0.0f32; labels.len()];
    let mut any = false;
    for &(score, response) in records {
        if let Some(i) = labels.iter().position(|l| l == response.trim()) {
            votes[i] += score;
            any = true;
        }
    }
    any.then_some(votes)
}

/// A record as the model reads it, in its task's shape when the record
/// says which task it comes from (`lamp_task` metadata): a paper the user
/// wrote is a paper, not a question answered with its own title.
fn render(record: &Record, max_chars: usize) -> String {
    render_shaped(TaskKind::detect(std::slice::from_ref(record)), &record.query, &record.response, max_chars)
}

/// One of the user's records as a line in the shape of its task kind, each
/// text cut to `max_chars` characters: `Article: ... | The user's
/// category: politics`, `A paper this user wrote: ...`, and for other
/// histories `The user was given: ... | The user's response: ...`.
pub fn render_shaped(kind: TaskKind, query: &str, response: &str, max_chars: usize) -> String {
    let query = clip(query, max_chars).replace('\n', " ");
    let response = clip(response, max_chars).replace('\n', " ");
    match kind {
        TaskKind::Citation => format!("A paper this user wrote: {query}"),
        TaskKind::MovieTags => format!("Movie: {query} | The user's tag: {response}"),
        TaskKind::NewsCategory => format!("Article: {query} | The user's category: {response}"),
        TaskKind::ProductRating => format!("Review: {query} | The user's rating: {response}"),
        TaskKind::General => format!("The user was given: {query} | The user's response: {response}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(task: Option<&str>, query: &str, response: &str) -> Record {
        let metadata = match task {
            Some(t) => serde_json::json!({ "lamp_task": t }),
            None => serde_json::json!({}),
        };
        Record { id: 1, query: query.into(), response: response.into(), metadata, timestamp: None, created_at: 0 }
    }

    #[test]
    fn labels_get_the_similarity_of_the_records_that_carry_them() {
        let labels: Vec<String> = ["politics", "sports", "food"].iter().map(|s| s.to_string()).collect();
        let votes = label_votes(&labels, &[(0.8, "sports"), (0.5, "politics"), (0.25, " politics "), (0.9, "science")]).unwrap();
        assert_eq!(votes, [0.75, 0.8, 0.0], "two weaker politics records, one sports, and no vote for what is no label");
        assert_eq!(label_votes(&labels, &[(0.9, "science")]), None);
        assert_eq!(label_votes(&labels, &[]), None);
    }

    #[test]
    fn records_show_in_their_task_s_shape() {
        assert_eq!(render(&record(Some("citation"), "Parsing with CRFs", "Parsing with CRFs"), 100), "A paper this user wrote: Parsing with CRFs");
        assert_eq!(render(&record(Some("news-category"), "Senate votes", "politics"), 100), "Article: Senate votes | The user's category: politics");
        assert_eq!(render(&record(Some("product-rating"), "Great", "5"), 100), "Review: Great | The user's rating: 5");
        assert_eq!(render(&record(Some("movie-tags"), "Space", "sci-fi"), 100), "Movie: Space | The user's tag: sci-fi");
        assert_eq!(render(&record(None, "Q", "A"), 100), "The user was given: Q | The user's response: A");
    }
}
