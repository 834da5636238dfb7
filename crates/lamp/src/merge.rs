//! Reports of one benchmark split by method into several runs (for example
//! the cheap baselines on one machine, PersonaAgent on another, or in two
//! sessions), merged into one report.
//!
//! Every call of a method is seeded on its own, and only MemBank carries
//! state from one user to the next (its own memory, inside its run), so a
//! method scores the same whether it runs alone or beside others. Merging
//! is therefore exact as long as the parts ran the same set, model, seed and
//! settings; [`merge`] checks that and refuses parts that disagree, or that
//! both hold a method.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{LampError, Result};
use crate::report::MethodScores;
use crate::task::Task;

/// A `report.json` as written by `persona bench lamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The task.
    pub task: Task,
    /// Model, config, seed, users, revision.
    pub meta: Value,
    /// Scores per method name.
    pub methods: BTreeMap<String, MethodScores>,
}

impl Report {
    /// Reads a report file, naming the file in any error.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LampError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|e| LampError::Format { path: path.to_path_buf(), message: format!("not a bench lamp report: {e}") })
    }
}

/// The meta fields every part must share: the same questions asked of the
/// same model with the same settings and seed. (`lock_step` only changes
/// how replays are scheduled, not what they produce, so it may differ.)
pub const SHARED_META: &[&str] = &["model", "model_sha256", "seed", "users", "questions_asked", "config"];

fn shared(meta: &Value, key: &str) -> Value {
    let mut v = meta.get(key).cloned().unwrap_or(Value::Null);
    if let Value::Object(config) = &mut v {
        config.remove("lock_step");
    }
    v
}

/// Merges the reports of runs that split one benchmark by method; `parts`
/// pairs each report with where it came from (named in errors and in the
/// merged meta's `parts`).
pub fn merge(parts: &[(PathBuf, Report)]) -> Result<Report> {
    let Some((first_path, first)) = parts.first() else {
        return Err(LampError::Merge("no reports to merge".into()));
    };
    let mut methods = BTreeMap::new();
    let mut owner: BTreeMap<String, &Path> = BTreeMap::new();
    let mut revisions: Vec<String> = Vec::new();
    let mut sources: Vec<Value> = Vec::new();
    let mut listed = Vec::new();
    for (path, report) in parts {
        if report.task != first.task {
            return Err(LampError::Merge(format!("{} is {} but {} is {}", path.display(), report.task, first_path.display(), first.task)));
        }
        for key in SHARED_META {
            let (a, b) = (shared(&first.meta, key), shared(&report.meta, key));
            if a != b {
                return Err(LampError::Merge(format!("meta.{key} differs: {a} in {} but {b} in {}", first_path.display(), path.display())));
            }
        }
        for (name, scores) in &report.methods {
            if let Some(other) = owner.insert(name.clone(), path) {
                return Err(LampError::Merge(format!("method '{name}' is in both {} and {}", other.display(), path.display())));
            }
            methods.insert(name.clone(), scores.clone());
        }
        let revision = report.meta.get("git_revision").and_then(Value::as_str).unwrap_or("unknown").to_string();
        if !revisions.contains(&revision) {
            revisions.push(revision.clone());
        }
        let source = report.meta.get("questions").cloned().unwrap_or(Value::Null);
        if !sources.contains(&source) {
            sources.push(source.clone());
        }
        listed.push(json!({"report": path.display().to_string(), "git_revision": revision, "questions": source, "methods": report.methods.keys().collect::<Vec<_>>()}));
    }
    let mut meta: Map<String, Value> = first.meta.as_object().cloned().unwrap_or_default();
    meta.insert("git_revision".into(), Value::String(revisions.join(", ")));
    if sources.len() > 1 {
        meta.insert("questions".into(), Value::Array(sources));
    }
    meta.insert("parts".into(), Value::Array(listed));
    Ok(Report { task: first.task, meta: Value::Object(meta), methods })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(task: Task, methods: &[&str], seed: u64, lock_step: bool, rev: &str) -> Report {
        let scores = MethodScores { n: 20, accuracy: Some(0.5), f1: Some(0.4), mae: None, rmse: None, invalid_rate: 0.0, vs_persona_agent: None, ci: BTreeMap::new() };
        Report {
            task,
            meta: json!({"model": "small", "model_sha256": "ab", "seed": seed, "users": 20, "questions_asked": 20,
                         "config": {"n": 3, "E": 3, "K": 4, "lock_step": lock_step}, "git_revision": rev, "questions": "set/questions.json"}),
            methods: methods.iter().map(|m| (m.to_string(), scores.clone())).collect(),
        }
    }

    #[test]
    fn parts_with_the_same_setup_merge_and_say_where_each_method_came_from() {
        let a = (PathBuf::from("a/report.json"), report(Task::NewsCategorization, &["prompt", "rag-4"], 42, false, "r1"));
        let b = (PathBuf::from("b/report.json"), report(Task::NewsCategorization, &["persona-agent"], 42, true, "r2"));
        let m = merge(&[a, b]).unwrap();
        assert_eq!(m.methods.keys().collect::<Vec<_>>(), ["persona-agent", "prompt", "rag-4"]);
        assert_eq!(m.meta["git_revision"], "r1, r2");
        assert_eq!(m.meta["parts"][1]["methods"], json!(["persona-agent"]));
        assert_eq!(m.meta["questions"], "set/questions.json", "one source stays a string");
        // The merged report reads back as a report.
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), m);
    }

    #[test]
    fn parts_that_disagree_or_overlap_are_refused() {
        let p = |dir: &str, r: Report| (PathBuf::from(dir), r);
        let base = || p("a", report(Task::NewsCategorization, &["prompt"], 42, false, "r"));
        let err = merge(&[base(), p("b", report(Task::NewsCategorization, &["icl"], 7, false, "r"))]).unwrap_err().to_string();
        assert!(err.contains("meta.seed differs") && err.contains('b'), "{err}");
        let err = merge(&[base(), p("b", report(Task::ProductRating, &["icl"], 42, false, "r"))]).unwrap_err().to_string();
        assert!(err.contains("LaMP-3"), "{err}");
        let err = merge(&[base(), p("b", report(Task::NewsCategorization, &["prompt"], 42, false, "r"))]).unwrap_err().to_string();
        assert!(err.contains("method 'prompt' is in both a and b"), "{err}");
        let mut other_model = report(Task::NewsCategorization, &["icl"], 42, false, "r");
        other_model.meta["model_sha256"] = json!("cd");
        assert!(merge(&[base(), p("b", other_model)]).unwrap_err().to_string().contains("model_sha256"));
        assert!(merge(&[]).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_report_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "{\"task\": \"LaMP-9\"}").unwrap();
        let err = Report::read(&path).unwrap_err().to_string();
        assert!(err.contains("report.json") && err.contains("not a bench lamp report"), "{err}");
        assert!(Report::read(&dir.path().join("none.json")).unwrap_err().to_string().contains("none.json"));
    }
}
