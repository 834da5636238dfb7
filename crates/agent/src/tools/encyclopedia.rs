//! The offline encyclopedia: a corpus of articles (by default the Wikipedia
//! "Vital Articles" summaries installed with the models, `persona models
//! fetch wiki`), indexed once with BM25 and persisted beside the user data.
//!
//! A corpus is a JSON object of articles keyed by title (the shipped
//! format), a JSON array of articles, or JSON Lines. Each article needs a
//! `title` and a text field (`extract`, `text` or `content`);
//! `description` is used when present.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::bm25::Bm25;
use super::{clip, Tool, ToolSpec};
use crate::error::{AgentError, IoContext, Result};

/// Bumped when the index format or tokenisation changes.
const INDEX_VERSION: u32 = 1;

/// One article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    /// Its title.
    pub title: String,
    /// A one-line description (may be empty).
    pub description: String,
    /// The text.
    pub text: String,
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    corpus_sha256: String,
    index: Bm25,
}

/// How the index was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexOrigin {
    /// Read from the persisted index file.
    Loaded,
    /// Built now (and persisted when a folder was given).
    Built,
}

/// A searchable corpus.
#[derive(Debug, Clone)]
pub struct Encyclopedia {
    articles: Vec<Article>,
    index: Bm25,
    path: PathBuf,
    origin: IndexOrigin,
}

impl Encyclopedia {
    /// Reads a corpus and its index. The index lives in `index_dir` under a
    /// name made from the corpus's sha256; it is built (and written) when
    /// missing, unreadable, or made from another corpus.
    pub fn open(corpus: &Path, index_dir: Option<&Path>) -> Result<Encyclopedia> {
        let bytes = fs::read(corpus).at(corpus)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let articles = parse_corpus(&bytes, corpus)?;
        let index_path = index_dir.map(|d| d.join(format!("bm25-{}.json", &sha[..16])));
        if let Some(path) = &index_path {
            if let Some(index) = read_index(path, &sha, articles.len()) {
                return Ok(Encyclopedia { articles, index, path: corpus.to_path_buf(), origin: IndexOrigin::Loaded });
            }
        }
        let index = Bm25::build(articles.iter().map(|a| vec![(a.title.as_str(), 2), (a.description.as_str(), 1), (a.text.as_str(), 1)]));
        if let (Some(path), Some(dir)) = (&index_path, index_dir) {
            fs::create_dir_all(dir).at(dir)?;
            let file = IndexFile { version: INDEX_VERSION, corpus_sha256: sha, index };
            let text = serde_json::to_vec(&file).map_err(|e| AgentError::Corpus { path: path.clone(), message: e.to_string() })?;
            let tmp = path.with_extension("json.tmp");
            fs::write(&tmp, text).at(&tmp)?;
            fs::rename(&tmp, path).at(path)?;
            tracing::info!(index = %path.display(), articles = articles.len(), "encyclopedia indexed");
            return Ok(Encyclopedia { articles, index: file.index, path: corpus.to_path_buf(), origin: IndexOrigin::Built });
        }
        Ok(Encyclopedia { articles, index, path: corpus.to_path_buf(), origin: IndexOrigin::Built })
    }

    /// The corpus file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the index was loaded or built.
    pub fn origin(&self) -> IndexOrigin {
        self.origin
    }

    /// Number of articles.
    pub fn len(&self) -> usize {
        self.articles.len()
    }

    /// Whether the corpus is empty.
    pub fn is_empty(&self) -> bool {
        self.articles.is_empty()
    }

    /// The `k` best articles for a query, with BM25 scores.
    pub fn search(&self, query: &str, k: usize) -> Vec<(f32, &Article)> {
        self.index.search(query, k).into_iter().filter_map(|(i, s)| self.articles.get(i).map(|a| (s, a))).collect()
    }
}

fn read_index(path: &Path, sha: &str, articles: usize) -> Option<Bm25> {
    let bytes = fs::read(path).ok()?;
    let file: IndexFile = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(index = %path.display(), error = %e, "unreadable encyclopedia index, rebuilding");
            return None;
        }
    };
    (file.version == INDEX_VERSION && file.corpus_sha256 == sha && file.index.len() == articles).then_some(file.index)
}

fn corpus_error(path: &Path, message: String) -> AgentError {
    AgentError::Corpus { path: path.to_path_buf(), message }
}

/// Reads articles from any of the accepted shapes.
fn parse_corpus(bytes: &[u8], path: &Path) -> Result<Vec<Article>> {
    let text = std::str::from_utf8(bytes).map_err(|e| corpus_error(path, format!("not UTF-8 text ({e})")))?;
    let trimmed = text.trim_start();
    let entries: Vec<(String, Value)> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(text) {
            // One article on one line is JSON Lines, not a map of articles.
            Ok(Value::Object(map)) if map.get("title").is_some_and(Value::is_string) => vec![("line 1".to_string(), Value::Object(map))],
            Ok(Value::Object(map)) => map.into_iter().collect(),
            Ok(Value::Array(items)) => items.into_iter().enumerate().map(|(i, v)| (format!("item {}", i + 1), v)).collect(),
            Ok(_) => return Err(corpus_error(path, "expected a JSON object of articles, a JSON array of articles, or JSON Lines".into())),
            Err(_) if trimmed.starts_with('{') => json_lines(text, path)?,
            Err(e) => return Err(corpus_error(path, format!("invalid JSON: {e}"))),
        }
    } else {
        json_lines(text, path)?
    };
    let mut articles = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Value::Object(obj) = value else {
            return Err(corpus_error(path, format!("{key}: an article must be an object")));
        };
        articles.push(article(&obj, &key, path)?);
    }
    if articles.is_empty() {
        return Err(corpus_error(path, "no articles".into()));
    }
    Ok(articles)
}

fn json_lines(text: &str, path: &Path) -> Result<Vec<(String, Value)>> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line).map_err(|e| corpus_error(path, format!("line {}: invalid JSON: {e}", i + 1)))?;
        items.push((format!("line {}", i + 1), v));
    }
    Ok(items)
}

fn article(obj: &Map<String, Value>, key: &str, path: &Path) -> Result<Article> {
    let field = |name: &str| obj.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let title = field("title").ok_or_else(|| corpus_error(path, format!("{key}: field 'title': missing or empty")))?;
    let text = field("extract")
        .or_else(|| field("text"))
        .or_else(|| field("content"))
        .ok_or_else(|| corpus_error(path, format!("{key}: field 'extract' (or 'text', 'content'): missing or empty")))?;
    Ok(Article { title: title.to_string(), description: field("description").unwrap_or_default().to_string(), text: text.to_string() })
}

/// The `encyclopedia_search` tool.
#[derive(Debug)]
pub struct EncyclopediaSearch<'a> {
    encyclopedia: &'a Encyclopedia,
    spec: ToolSpec,
    k: usize,
    max_chars: usize,
}

impl<'a> EncyclopediaSearch<'a> {
    /// The tool over `encyclopedia`, returning `k` articles cut to
    /// `max_chars` characters each.
    pub fn new(encyclopedia: &'a Encyclopedia, k: usize, max_chars: usize) -> Self {
        let spec = ToolSpec::with_string(
            "encyclopedia_search",
            "Looks up general knowledge in an offline encyclopedia and returns short articles.",
            "query",
            "a few keywords naming the topic",
            200,
        );
        EncyclopediaSearch { encyclopedia, spec, k: k.max(1), max_chars }
    }
}

impl Tool for EncyclopediaSearch<'_> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&mut self, arguments: &Map<String, Value>) -> Result<String> {
        let query = arguments.get("query").and_then(Value::as_str).unwrap_or_default();
        let hits = self.encyclopedia.search(query, self.k);
        if hits.is_empty() {
            return Ok("No article matches these words.".to_string());
        }
        Ok(hits
            .iter()
            .enumerate()
            .map(|(i, (_, a))| {
                let desc = if a.description.is_empty() { String::new() } else { format!(" ({})", a.description) };
                format!("{}. {}{}: {}", i + 1, a.title, desc, clip(&a.text, self.max_chars).replace('\n', " "))
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_shape_and_persists_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let object = dir.path().join("wiki.json");
        fs::write(
            &object,
            r#"{"Paris": {"title": "Paris", "extract": "Paris is the capital of France.", "description": "capital city"},
                "Jupiter": {"title": "Jupiter", "extract": "Jupiter is the largest planet in the Solar System."}}"#,
        )
        .unwrap();
        let index_dir = dir.path().join("index");
        let e = Encyclopedia::open(&object, Some(&index_dir)).unwrap();
        assert_eq!(e.origin(), IndexOrigin::Built);
        assert_eq!(e.search("largest planet", 1)[0].1.title, "Jupiter");
        let again = Encyclopedia::open(&object, Some(&index_dir)).unwrap();
        assert_eq!(again.origin(), IndexOrigin::Loaded);
        // A changed corpus is indexed anew; a corrupt index is rebuilt.
        fs::write(&object, r#"[{"title": "Rome", "text": "Rome is the capital of Italy."}]"#).unwrap();
        let changed = Encyclopedia::open(&object, Some(&index_dir)).unwrap();
        assert_eq!(changed.origin(), IndexOrigin::Built);
        assert_eq!(changed.len(), 1);
        for entry in fs::read_dir(&index_dir).unwrap() {
            fs::write(entry.unwrap().path(), b"garbage").unwrap();
        }
        assert_eq!(Encyclopedia::open(&object, Some(&index_dir)).unwrap().origin(), IndexOrigin::Built);
        let lines = dir.path().join("mine.jsonl");
        fs::write(&lines, "{\"title\": \"Notes\", \"content\": \"My own notes about tea.\"}\n\n").unwrap();
        let mine = Encyclopedia::open(&lines, None).unwrap();
        let mut tool = EncyclopediaSearch::new(&mine, 3, 100);
        let out = tool.call(&serde_json::json!({"query": "tea"}).as_object().unwrap().clone()).unwrap();
        assert_eq!(out, "1. Notes: My own notes about tea.");
    }

    #[test]
    fn bad_corpora_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.json", "[{\"title\": \"x\"}]", "item 1: field 'extract'"),
            ("b.json", "{\"k\": {\"extract\": \"y\"}}", "k: field 'title'"),
            ("c.jsonl", "{\"title\": \"x\", \"text\": \"y\"}\nnot json", "line 2: invalid JSON"),
            ("d.json", "[]", "no articles"),
            ("e.json", "[1]", "item 1: an article must be an object"),
        ];
        for (name, text, expected) in cases {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            let err = Encyclopedia::open(&path, None).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expected), "{name}: {err}");
        }
        assert!(Encyclopedia::open(&dir.path().join("missing.json"), None).unwrap_err().to_string().contains("missing.json"));
    }
}
