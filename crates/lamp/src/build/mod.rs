//! Rebuilding LaMP-style tasks from the raw public data, the way LaMP did:
//! per user, records sorted by time; the latest record is the query and the
//! earlier ones the user's profile; only users with enough history; raw
//! labels mapped onto the task's label list (records with other labels are
//! dropped). The result is written in the official format with a manifest
//! of every choice and count. The sets are named for what they are
//! ("LaMP-2N-style, rebuilt from HuffPost"), never by LaMP's own names.

pub mod amazon;
pub mod citation;
pub mod movies;
pub mod news;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{LampError, Result};
use crate::format::{write_examples, Example, Question};
use crate::task::Task;

/// Choices of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// Fewest profile records a user needs (the query comes on top).
    pub min_profile: usize,
    /// Most profile records kept (the most recent ones); `None`: all.
    pub max_profile: Option<usize>,
    /// Keep at most this many users (those with the most history, as the
    /// paper does); `None`: all.
    pub max_users: Option<usize>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { min_profile: 8, max_profile: None, max_users: None }
    }
}

/// Everything a rebuilt set is made of and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The honest name of the set.
    pub name: String,
    /// The task it imitates.
    pub task: Task,
    /// The raw file read.
    pub source: String,
    /// How the split was made.
    pub split: String,
    /// The options used.
    pub options: BuildOptions,
    /// Raw records read.
    pub records_read: usize,
    /// Records dropped because their label is not in the list (by raw label).
    pub dropped_labels: BTreeMap<String, usize>,
    /// Records dropped for other reasons (missing user, text or time).
    pub dropped_incomplete: usize,
    /// Raw label -> task label.
    pub label_mapping: BTreeMap<String, String>,
    /// Users with at least one usable record.
    pub users_seen: usize,
    /// Users kept (one query each).
    pub users_kept: usize,
    /// Profile sizes of the kept users: min, median, max.
    pub profile_sizes: [usize; 3],
    /// Gold outputs of the queries, by label.
    pub query_labels: BTreeMap<String, usize>,
}

/// One usable raw record of a user.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRecord {
    /// The user.
    pub user: String,
    /// Sort key: time (unix seconds or an ISO date string compare the same way).
    pub time: i64,
    /// A stable id (for ties and for the profile item).
    pub id: String,
    /// The task input for this record as a query.
    pub input: String,
    /// The gold output.
    pub gold: String,
    /// The profile item for this record.
    pub item: Map<String, Value>,
}

/// Groups records per user, orders them by time, and splits each user into
/// one query (the latest record) and a profile (the earlier ones).
pub(crate) fn split_users(records: Vec<RawRecord>, options: &BuildOptions) -> (Vec<Example>, usize, [usize; 3]) {
    let mut by_user: BTreeMap<String, Vec<RawRecord>> = BTreeMap::new();
    for r in records {
        by_user.entry(r.user.clone()).or_default().push(r);
    }
    let users_seen = by_user.len();
    let mut users: Vec<(String, Vec<RawRecord>)> = by_user.into_iter().filter(|(_, rs)| rs.len() > options.min_profile).collect();
    // The users with the most history first (ties by id, for determinism).
    users.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    if let Some(n) = options.max_users {
        users.truncate(n);
    }
    let mut sizes = Vec::new();
    let mut examples = Vec::with_capacity(users.len());
    for (user, mut rs) in users {
        rs.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        let Some(query) = rs.pop() else { continue };
        if let Some(max) = options.max_profile {
            let drop = rs.len().saturating_sub(max);
            rs.drain(..drop);
        }
        sizes.push(rs.len());
        let profile = rs.into_iter().map(|r| r.item).collect();
        examples.push(Example { question: Question { id: format!("{user}/{}", query.id), input: query.input, profile }, gold: query.gold, user: None });
    }
    sizes.sort_unstable();
    let stats = if sizes.is_empty() { [0, 0, 0] } else { [sizes[0], sizes[sizes.len() / 2], sizes[sizes.len() - 1]] };
    (examples, users_seen, stats)
}

/// What a builder read, before the per-user split.
pub(crate) struct Collected {
    pub name: String,
    pub task: Task,
    pub source: String,
    pub split: String,
    pub records_read: usize,
    pub dropped_labels: BTreeMap<String, usize>,
    pub dropped_incomplete: usize,
    pub label_mapping: BTreeMap<String, String>,
    pub records: Vec<RawRecord>,
}

/// Splits the collected records per user and writes the manifest.
pub(crate) fn assemble(c: Collected, options: &BuildOptions) -> Built {
    let (examples, users_seen, profile_sizes) = split_users(c.records, options);
    let manifest = Manifest {
        name: c.name,
        task: c.task,
        source: c.source,
        split: c.split,
        options: options.clone(),
        records_read: c.records_read,
        dropped_labels: c.dropped_labels,
        dropped_incomplete: c.dropped_incomplete,
        label_mapping: c.label_mapping,
        users_seen,
        users_kept: examples.len(),
        profile_sizes,
        query_labels: label_counts(&examples),
    };
    Built { examples, manifest }
}

/// Counts of the queries' gold outputs.
pub(crate) fn label_counts(examples: &[Example]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in examples {
        *counts.entry(e.gold.clone()).or_insert(0) += 1;
    }
    counts
}

/// A rebuilt set: the examples and how they were made.
#[derive(Debug, Clone)]
pub struct Built {
    /// Questions with their gold outputs.
    pub examples: Vec<Example>,
    /// The choices and counts.
    pub manifest: Manifest,
}

impl Built {
    /// Writes `questions.json`, `outputs.json` and `manifest.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| LampError::Io { path: dir.to_path_buf(), source })?;
        write_examples(&self.examples, self.manifest.task.name(), &dir.join("questions.json"), &dir.join("outputs.json"))?;
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(&self.manifest).map_err(|e| LampError::Format { path: path.clone(), message: e.to_string() })?;
        std::fs::write(&path, text).map_err(|source| LampError::Io { path, source })
    }
}

/// Rebuilds `task` from the raw data folder (`news/`, `amazon/`, ...).
pub fn build(task: Task, raw_dir: &Path, options: &BuildOptions) -> Result<Built> {
    match task {
        Task::NewsCategorization => news::build(&raw_dir.join("news/huffpost_news_category_subset.jsonl"), options),
        Task::ProductRating => amazon::build(&raw_dir.join("amazon/musical_instruments_5core.csv"), options),
        Task::MovieTagging => movies::build(&raw_dir.join("movielens"), options),
        Task::Citation => citation::build(&raw_dir.join("aan"), options),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks the invariants every rebuilt set must keep.
    pub(crate) fn check_invariants(built: &Built, time_field: &str, text_field: &str) {
        let labels = built.manifest.task.labels();
        assert!(!built.examples.is_empty());
        for e in &built.examples {
            if let Some(labels) = labels {
                assert!(labels.contains(&e.gold.as_str()), "gold {:?} outside the label list", e.gold);
            }
            assert!(e.question.profile.len() >= built.manifest.options.min_profile);
            let times: Vec<String> = e.question.profile.iter().map(|p| p[time_field].to_string()).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "profile not in time order: {times:?}");
            let query_id = e.question.id.rsplit('/').next().unwrap();
            assert!(e.question.profile.iter().all(|p| p["id"] != query_id), "the query leaks into its own profile");
            for p in &e.question.profile {
                let text = p[text_field].as_str().unwrap();
                assert!(!e.question.input.ends_with(text) || text.is_empty(), "the query's text is in its profile");
            }
        }
        assert_eq!(built.manifest.users_kept, built.examples.len());
        assert_eq!(label_counts(&built.examples).values().sum::<usize>(), built.examples.len());
    }
}
