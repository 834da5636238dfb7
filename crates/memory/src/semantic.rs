//! Semantic memory: an LLM-written profile of a user's stable preferences,
//! made from their episodic records with a summarization prompt per task
//! kind. Histories longer than the context are summarised in chunks that
//! fit, and the partial profiles are then merged (again in pieces if
//! needed).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use persona_engine::{ChatMessage, ChatModel, GenerationParams, SamplingParams};
use serde::Serialize;

use crate::error::{MemoryError, Result};
use crate::record::Record;

/// What kind of history is summarised; picks the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Any question/response history.
    General,
    /// Papers a researcher wrote (LaMP-1 style).
    Citation,
    /// Movie descriptions and the user's tags (LaMP-2M style).
    MovieTags,
    /// Articles and their categories (LaMP-2N style).
    NewsCategory,
    /// Reviews and 1-5 ratings (LaMP-3 style).
    ProductRating,
}

impl TaskKind {
    /// Every kind, for help texts.
    pub const ALL: [TaskKind; 5] = [TaskKind::General, TaskKind::Citation, TaskKind::MovieTags, TaskKind::NewsCategory, TaskKind::ProductRating];

    /// The kind's name (`news-category`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::General => "general",
            TaskKind::Citation => "citation",
            TaskKind::MovieTags => "movie-tags",
            TaskKind::NewsCategory => "news-category",
            TaskKind::ProductRating => "product-rating",
        }
    }

    /// The summarization prompt (with `{{stats}}` and `{{records}}`).
    pub fn prompt(self) -> &'static str {
        match self {
            TaskKind::General => include_str!("../prompts/semantic/general.txt"),
            TaskKind::Citation => include_str!("../prompts/semantic/citation.txt"),
            TaskKind::MovieTags => include_str!("../prompts/semantic/movie-tags.txt"),
            TaskKind::NewsCategory => include_str!("../prompts/semantic/news-category.txt"),
            TaskKind::ProductRating => include_str!("../prompts/semantic/product-rating.txt"),
        }
    }

    /// Whether responses are labels worth counting.
    fn has_labels(self) -> bool {
        matches!(self, TaskKind::MovieTags | TaskKind::NewsCategory | TaskKind::ProductRating | TaskKind::General)
    }

    /// The kind recorded in LaMP imports' metadata (`lamp_task`), if all
    /// records agree on one.
    pub fn detect(records: &[Record]) -> TaskKind {
        let mut kinds = records.iter().map(|r| r.metadata.get("lamp_task").and_then(|v| v.as_str()).and_then(|s| s.parse::<TaskKind>().ok()));
        match kinds.next().flatten() {
            Some(first) if kinds.all(|k| k == Some(first)) => first,
            _ => TaskKind::General,
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TaskKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = TaskKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown task kind '{s}' (known: {})", names.join(", "))
        })
    }
}

/// The model calls summarization needs; implemented for every
/// [`ChatModel`].
pub trait Summarizer {
    /// The model's name (stored with the profile).
    fn model_name(&self) -> String;
    /// The context window in tokens.
    fn context_length(&self) -> usize;
    /// How many tokens `text` takes.
    fn count_tokens(&self, text: &str) -> Result<usize>;
    /// Answers one system + user turn.
    fn complete(&mut self, system: &str, user: &str, params: &GenerationParams) -> Result<String>;
}

impl<M: ChatModel> Summarizer for M {
    fn model_name(&self) -> String {
        self.info().name.clone()
    }
    fn context_length(&self) -> usize {
        self.info().context_length
    }
    fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenizer().encode(text, false)?.len())
    }
    fn complete(&mut self, system: &str, user: &str, params: &GenerationParams) -> Result<String> {
        let messages = [ChatMessage::system(system), ChatMessage::user(user)];
        Ok(self.chat(&messages, params, &mut |_| true)?.text)
    }
}

/// Summarization settings.
#[derive(Debug, Clone)]
pub struct SemanticConfig {
    /// The most prompt tokens of records per call (also capped by the
    /// model's context).
    pub chunk_tokens: usize,
    /// Longest summary, in tokens.
    pub max_summary_tokens: usize,
    /// Longest text kept of one record's query (characters).
    pub max_query_chars: usize,
    /// Summarise only the most recent records (None: all).
    pub max_records: Option<usize>,
    /// Sampling temperature (the paper uses 0.1).
    pub temperature: f64,
    /// Penalty on recently generated tokens (small models loop without it).
    pub repeat_penalty: f32,
    /// Seed for sampling.
    pub seed: u64,
    /// Begin the profile with the user's label counts, counted, not
    /// written by the model (`- Past answers (all 24 entries): 5 (18
    /// times), 4 (5 times), 3 (once)`), for label-like histories. Small
    /// writers garble the counts the prompt shows them ("very generous
    /// overall (3 stars)"); this line keeps them exact.
    pub counts_in_profile: bool,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig {
            chunk_tokens: 1536,
            max_summary_tokens: 256,
            max_query_chars: 400,
            max_records: None,
            temperature: 0.1,
            repeat_penalty: 1.15,
            seed: 42,
            counts_in_profile: false,
        }
    }
}

/// A finished summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The profile text.
    pub text: String,
    /// The task kind it was made for.
    pub task: TaskKind,
    /// Records summarised.
    pub records: usize,
    /// Chunks the records were split into.
    pub chunks: usize,
    /// Model calls made (chunks plus merges).
    pub calls: usize,
}

const SYSTEM: &str = include_str!("../prompts/semantic/system.txt");
const MERGE: &str = include_str!("../prompts/semantic/merge.txt");

fn fill(template: &str, stats: &str, records: &str) -> String {
    crate::text::fill(template, &[("stats", stats), ("records", records)])
}

/// One record as a prompt line.
fn render_record(r: &Record, config: &SemanticConfig) -> String {
    let query = crate::text::clip_exact(&r.query, config.max_query_chars).replace('\n', " ");
    format!("- Given: {query}\n  Response: {}\n", crate::text::clip_exact(&r.response, 200).replace('\n', " "))
}

/// How often each response occurs, most frequent first, when responses
/// look like labels (few distinct values cover the records).
fn label_counts(records: &[Record], task: TaskKind) -> Vec<(&str, usize)> {
    if !task.has_labels() {
        return Vec::new();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        counts.entry(r.response.trim()).and_modify(|c| *c += 1).or_insert(1);
    }
    // Free-text answers are not labels: only count when few distinct values
    // cover the records.
    if counts.is_empty() || counts.len() > 20 || counts.len() * 2 > records.len().max(2) {
        return Vec::new();
    }
    let mut sorted: Vec<(&str, usize)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    sorted
}

/// The label counts of `total` records as the summary prompt shows them.
fn label_stats(counts: &[(&str, usize)], total: usize) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(label, n)| format!("{label} ({n})")).collect();
    format!("Over all {total} entries, the responses were: {}.\n", parts.join(", "))
}

/// How the profile's label-counts line begins (see
/// [`SemanticConfig::counts_in_profile`]).
pub const COUNTS_LINE_PREFIX: &str = "- Past answers (all ";

/// The label-counts line of a profile, when it has one (its first line,
/// written by [`summarize`] with [`SemanticConfig::counts_in_profile`]).
pub fn counts_line(profile: &str) -> Option<&str> {
    profile.trim_start().lines().next().filter(|line| line.starts_with(COUNTS_LINE_PREFIX))
}

/// The label counts of `total` records as the profile's first bullet
/// (empty when the responses are not labels).
fn counts_bullet(counts: &[(&str, usize)], total: usize) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let times = |n: usize| if n == 1 { "once".to_string() } else { format!("{n} times") };
    let parts: Vec<String> = counts.iter().map(|(label, n)| format!("{label} ({})", times(*n))).collect();
    format!("{COUNTS_LINE_PREFIX}{total} entries): {}", parts.join(", "))
}

/// Summarises `records` (oldest first) into a profile.
pub fn summarize(model: &mut dyn Summarizer, records: &[Record], task: TaskKind, config: &SemanticConfig) -> Result<Summary> {
    if records.is_empty() {
        return Err(MemoryError::Summary("the user has no records to summarise".into()));
    }
    // The label counts cover the whole history (cheap); the text shown to
    // the model only the most recent records when capped.
    let label_counts = label_counts(records, task);
    let stats = label_stats(&label_counts, records.len());
    let counts = if config.counts_in_profile { counts_bullet(&label_counts, records.len()) } else { String::new() };
    let records = match config.max_records {
        Some(n) if records.len() > n => &records[records.len() - n..],
        _ => records,
    };
    let params = GenerationParams {
        max_tokens: config.max_summary_tokens,
        sampling: SamplingParams { temperature: config.temperature, seed: config.seed, repeat_penalty: config.repeat_penalty, ..Default::default() },
        ..Default::default()
    };
    let longest_template = if task.prompt().len() >= MERGE.len() { task.prompt() } else { MERGE };
    let overhead = model.count_tokens(SYSTEM)? + model.count_tokens(&fill(longest_template, &stats, ""))? + 64;
    let room = model.context_length().saturating_sub(overhead + config.max_summary_tokens);
    let budget = config.chunk_tokens.min(room);
    if budget < 64 {
        return Err(MemoryError::Summary(format!("the model's context ({} tokens) leaves no room for records", model.context_length())));
    }
    let lines: Vec<String> = records.iter().map(|r| render_record(r, config)).collect();
    let chunks = pack(model, &lines, budget)?;
    let mut calls = 0;
    let mut partials = Vec::with_capacity(chunks.len());
    for chunk in &chunks {
        let prompt = fill(task.prompt(), &stats, chunk);
        partials.push(clean(&model.complete(SYSTEM, &prompt, &params)?)?);
        calls += 1;
    }
    // Merge until one profile is left.
    while partials.len() > 1 {
        let lines: Vec<String> = partials.iter().enumerate().map(|(i, p)| format!("Profile {}:\n{p}\n\n", i + 1)).collect();
        let groups = pack(model, &lines, budget)?;
        if groups.len() == partials.len() {
            // Each partial alone fills the budget: merging cannot shrink
            // them further, keep the most recent.
            partials = vec![partials.pop().unwrap_or_default()];
            break;
        }
        let mut next = Vec::with_capacity(groups.len());
        for group in &groups {
            next.push(clean(&model.complete(SYSTEM, &fill(MERGE, &stats, group), &params)?)?);
            calls += 1;
        }
        partials = next;
    }
    let written = partials.pop().unwrap_or_default();
    let text = if counts.is_empty() { written } else { format!("{counts}\n{written}") };
    Ok(Summary { text, task, records: records.len(), chunks: chunks.len(), calls })
}

/// Packs lines, in order, into pieces of at most `budget` tokens (a line
/// longer than the budget is a piece of its own).
fn pack(model: &dyn Summarizer, lines: &[String], budget: usize) -> Result<Vec<String>> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for line in lines {
        let n = model.count_tokens(line)?;
        if used + n > budget && !current.is_empty() {
            pieces.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push_str(line);
        used += n;
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    Ok(pieces)
}

/// Trims a model's summary; an empty one is an error.
fn clean(text: &str) -> Result<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(MemoryError::Summary("the model wrote an empty summary".into()));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted model: counts words as tokens, answers with a numbered
    /// summary, records the prompts it saw.
    struct Scripted {
        context: usize,
        prompts: Vec<String>,
    }

    impl Summarizer for Scripted {
        fn model_name(&self) -> String {
            "scripted".into()
        }
        fn context_length(&self) -> usize {
            self.context
        }
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text.split_whitespace().count())
        }
        fn complete(&mut self, _system: &str, user: &str, _params: &GenerationParams) -> Result<String> {
            self.prompts.push(user.to_string());
            Ok(format!("- summary {}", self.prompts.len()))
        }
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                id: i as i64,
                query: format!("article number {i} about things"),
                response: if i % 3 == 0 { "sports".into() } else { "politics".into() },
                metadata: serde_json::json!({"lamp_task": "news-category"}),
                timestamp: None,
                created_at: 0,
            })
            .collect()
    }

    #[test]
    fn short_history_is_one_call() {
        let mut m = Scripted { context: 4096, prompts: vec![] };
        let s = summarize(&mut m, &records(6), TaskKind::NewsCategory, &SemanticConfig::default()).unwrap();
        assert_eq!((s.chunks, s.calls), (1, 1));
        assert_eq!(s.text, "- summary 1");
        assert!(m.prompts[0].contains("politics (4), sports (2)"), "{}", m.prompts[0]);
        assert!(m.prompts[0].contains("article number 5"));
    }

    #[test]
    fn long_history_is_chunked_then_merged() {
        let mut m = Scripted { context: 4096, prompts: vec![] };
        let config = SemanticConfig { chunk_tokens: 100, ..Default::default() };
        let s = summarize(&mut m, &records(40), TaskKind::NewsCategory, &config).unwrap();
        assert!(s.chunks > 1);
        assert_eq!(s.calls, s.chunks + 1, "one merge call for the partial profiles");
        assert!(m.prompts.last().unwrap().contains("Profile 1:"));
        // Every record was shown exactly once.
        for i in 0..40 {
            let needle = format!("article number {i} about");
            assert_eq!(m.prompts.iter().filter(|p| p.contains(&needle)).count(), 1);
        }
        assert_eq!(s.text, format!("- summary {}", s.calls));
    }

    #[test]
    fn max_records_keeps_the_newest_and_empty_fails() {
        let mut m = Scripted { context: 4096, prompts: vec![] };
        let config = SemanticConfig { max_records: Some(5), ..Default::default() };
        let s = summarize(&mut m, &records(30), TaskKind::General, &config).unwrap();
        assert_eq!(s.records, 5);
        assert!(m.prompts[0].contains("article number 29") && !m.prompts[0].contains("article number 24 "));
        assert!(summarize(&mut m, &[], TaskKind::General, &config).is_err());
        let mut tiny = Scripted { context: 100, prompts: vec![] };
        assert!(summarize(&mut tiny, &records(3), TaskKind::General, &config).unwrap_err().to_string().contains("no room"));
    }

    #[test]
    fn counts_in_profile_lead_the_profile_exactly_and_only_for_labels() {
        let mut m = Scripted { context: 4096, prompts: vec![] };
        let config = SemanticConfig { counts_in_profile: true, max_records: Some(4), ..Default::default() };
        // Counted over the whole history, also when the text shows fewer records.
        let s = summarize(&mut m, &records(7), TaskKind::NewsCategory, &config).unwrap();
        assert_eq!(s.text, "- Past answers (all 7 entries): politics (4 times), sports (3 times)\n- summary 1");
        assert_eq!(counts_line(&s.text), Some("- Past answers (all 7 entries): politics (4 times), sports (3 times)"));
        assert_eq!(counts_line("- summary 1\n- Past answers (all 7 entries): x (7 times)"), None);
        let mut one = records(6);
        one[5].response = "business".into();
        let s = summarize(&mut m, &one, TaskKind::NewsCategory, &config).unwrap();
        assert!(s.text.starts_with("- Past answers (all 6 entries): politics (3 times), sports (2 times), business (once)\n"), "{}", s.text);
        // Not for histories without labels, nor when off.
        let next = m.prompts.len() + 1;
        assert_eq!(summarize(&mut m, &records(6), TaskKind::Citation, &config).unwrap().text, format!("- summary {next}"));
        let off = SemanticConfig { max_records: Some(4), ..Default::default() };
        assert!(!summarize(&mut m, &records(6), TaskKind::NewsCategory, &off).unwrap().text.contains("Past answers"));
    }

    #[test]
    fn task_kinds_parse_and_detect() {
        assert_eq!("movie-tags".parse::<TaskKind>().unwrap(), TaskKind::MovieTags);
        assert!("lamp".parse::<TaskKind>().unwrap_err().contains("known: general"));
        assert_eq!(TaskKind::detect(&records(3)), TaskKind::NewsCategory);
        let mut mixed = records(2);
        mixed[1].metadata = serde_json::json!({});
        assert_eq!(TaskKind::detect(&mixed), TaskKind::General);
    }
}
