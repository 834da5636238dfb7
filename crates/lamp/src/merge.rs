//! Runs of one benchmark split by method (for example the cheap baselines
//! on one machine, PersonaAgent on another, or in two sessions) or by users
//! (`--shard I/N`), merged into one report from their result rows.
//!
//! Every call of a method is seeded on its own, and only MemBank carries
//! state from one user to the next (its own memory, inside its run), so a
//! method scores the same whether it runs alone or beside others. Merging
//! is therefore exact as long as the parts ran the same set, model, seed and
//! settings; [`merge`] checks that and refuses parts that disagree, or that
//! both hold a method.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{LampError, Result};
use crate::methods::Method;
use crate::report::{score_all, MethodScores};
use crate::runner::{read_results, ResultRow};
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

/// The meta fields every part must share: the same model, seed and
/// settings. (`lock_step` only changes how replays are scheduled, not what
/// they produce, and `shard` is what tells shards apart.)
pub const SHARED_META: &[&str] = &["model", "model_sha256", "seed", "config"];

/// Settings that change only how agents answer (PersonaAgent, its
/// ablations, ReAct): a part of one-call methods alone merges with parts
/// that differ in them, and the merged settings are the agents' parts'.
pub const AGENT_CONFIG: &[&str] = &["answer_turn", "answer_turn_records", "answer_turn_closeness", "label_repeat_penalty"];

/// Settings that change only the methods that align a persona
/// (PersonaAgent and no-action): the model that writes the rewrites. A
/// part without those methods (the baselines, ReAct, the other ablations)
/// merges with parts that differ in them, so that PersonaAgent with
/// `--align-model large` is paired with baselines run once.
pub const ALIGN_CONFIG: &[&str] = &["align_model"];

/// A group of settings and the methods that read them.
struct Group {
    keys: &'static [&'static str],
    reads: fn(Method) -> bool,
}

/// Every group of settings that only some methods read.
const GROUPS: [Group; 2] = [Group { keys: AGENT_CONFIG, reads: Method::uses_agent }, Group { keys: ALIGN_CONFIG, reads: Method::aligns }];

impl Group {
    /// Whether any of a part's rows is of a method that reads the group.
    fn read_by(&self, part: &Part) -> bool {
        part.rows.iter().any(|r| (self.reads)(r.method))
    }
}

/// `key` of a part's meta as compared, without the settings in `unread`
/// (those one of the two compared parts has no method to read).
fn shared(meta: &Value, key: &str, unread: &[&str]) -> Value {
    let mut v = meta.get(key).cloned().unwrap_or(Value::Null);
    if let Value::Object(config) = &mut v {
        config.remove("lock_step");
        config.remove("shard");
        for k in unread {
            config.remove(*k);
        }
    }
    v
}

/// The settings of [`GROUPS`] that `a` or `b` has no method to read.
fn unread(a: &Part, b: &Part) -> Vec<&'static str> {
    GROUPS.iter().filter(|g| !g.read_by(a) || !g.read_by(b)).flat_map(|g| g.keys.iter().copied()).collect()
}

/// One finished run: its folder's report and result rows.
#[derive(Debug, Clone)]
pub struct Part {
    /// Where it came from (named in errors and in the merged meta).
    pub path: PathBuf,
    /// Its `report.json`.
    pub report: Report,
    /// Its `results.jsonl`.
    pub rows: Vec<ResultRow>,
}

impl Part {
    /// Reads a run folder (`report.json` and `results.jsonl`).
    pub fn read(dir: &Path) -> Result<Part> {
        let report = Report::read(&dir.join("report.json"))?;
        let rows = read_results(dir)?;
        if rows.is_empty() {
            return Err(LampError::Merge(format!("{} has no results.jsonl rows", dir.display())));
        }
        Ok(Part { path: dir.to_path_buf(), report, rows })
    }
}

/// Merges runs that split one benchmark by method (the baselines in one
/// run, PersonaAgent in another) or by users (`--shard I/N`), or both: the
/// parts must share the task, model, seed and settings; no question may be
/// answered by one method in two parts; and in the merged rows every method
/// must have answered the same questions. The scores are computed afresh
/// from the joined rows (so paired differences pair users across parts).
/// Returns the report and the joined rows.
pub fn merge(parts: &[Part]) -> Result<(Report, Vec<ResultRow>)> {
    let Some(first) = parts.first() else {
        return Err(LampError::Merge("no reports to merge".into()));
    };
    let mut rows: Vec<ResultRow> = Vec::new();
    let mut owner: BTreeMap<(Method, String), &Path> = BTreeMap::new();
    let mut revisions: Vec<String> = Vec::new();
    let mut sources: Vec<Value> = Vec::new();
    let mut listed = Vec::new();
    // Each group's first part with a method that reads it.
    let readers: Vec<Option<&Part>> = GROUPS.iter().map(|g| parts.iter().find(|p| g.read_by(p))).collect();
    for part in parts {
        let (path, report) = (part.path.as_path(), &part.report);
        if report.task != first.report.task {
            return Err(LampError::Merge(format!("{} is {} but {} is {}", path.display(), report.task, first.path.display(), first.report.task)));
        }
        // Every part against the first, and against each group's first
        // reader in the settings both read.
        let mut against = vec![first];
        against.extend(GROUPS.iter().zip(&readers).filter(|(g, _)| g.read_by(part)).filter_map(|(_, r)| *r));
        for other in against {
            let unread = unread(other, part);
            for key in SHARED_META {
                let (a, b) = (shared(&other.report.meta, key, &unread), shared(&report.meta, key, &unread));
                if a != b {
                    return Err(LampError::Merge(format!("meta.{key} differs: {a} in {} but {b} in {}", other.path.display(), path.display())));
                }
            }
        }
        for row in &part.rows {
            if let Some(other) = owner.insert((row.method, row.id.clone()), path) {
                return Err(LampError::Merge(format!("method '{}' is in both {} and {} (question {})", row.method, other.display(), path.display(), row.id)));
            }
            rows.push(row.clone());
        }
        let revision = report.meta.get("git_revision").and_then(Value::as_str).unwrap_or("unknown").to_string();
        if !revisions.contains(&revision) {
            revisions.push(revision.clone());
        }
        let source = report.meta.get("questions").cloned().unwrap_or(Value::Null);
        if !sources.contains(&source) {
            sources.push(source.clone());
        }
        let methods: BTreeSet<&str> = part.rows.iter().map(|r| r.method.name()).collect();
        listed.push(json!({"run": path.display().to_string(), "git_revision": revision, "questions": source, "methods": methods, "shard": report.meta.get("config").and_then(|c| c.get("shard"))}));
    }
    // Every method over the same questions.
    let mut questions: BTreeMap<Method, BTreeSet<&str>> = BTreeMap::new();
    for r in &rows {
        questions.entry(r.method).or_default().insert(r.id.as_str());
    }
    if let Some(((m1, q1), (m2, q2))) = questions.iter().next().and_then(|a| questions.iter().find(|b| b.1 != a.1).map(|b| (a, b))) {
        return Err(LampError::Merge(format!(
            "method '{m1}' has {} questions and method '{m2}' {}, but the set of questions differs: merge parts that cover the same users for every method",
            q1.len(),
            q2.len()
        )));
    }
    let seed = first.report.meta.get("seed").and_then(Value::as_u64).unwrap_or(0);
    let methods = score_all(first.report.task, &rows, seed)?;
    let mut meta: Map<String, Value> = first.report.meta.as_object().cloned().unwrap_or_default();
    meta.insert("git_revision".into(), Value::String(revisions.join(", ")));
    meta.insert("users".into(), json!(rows.iter().map(|r| r.user).collect::<BTreeSet<_>>().len()));
    meta.insert("questions_asked".into(), json!(rows.iter().map(|r| r.id.as_str()).collect::<BTreeSet<_>>().len()));
    if let Some(Value::Object(config)) = meta.get_mut("config") {
        config.remove("shard");
        // Each group's settings from a part with a method that reads them.
        for (group, reader) in GROUPS.iter().zip(&readers) {
            let settings = reader.and_then(|p| p.report.meta.get("config")).and_then(Value::as_object);
            for k in group.keys {
                match settings.and_then(|c| c.get(*k)) {
                    Some(v) => config.insert(k.to_string(), v.clone()),
                    None => config.remove(*k),
                };
            }
        }
    }
    if sources.len() > 1 {
        meta.insert("questions".into(), Value::Array(sources));
    }
    meta.insert("parts".into(), Value::Array(listed));
    Ok((Report { task: first.report.task, meta: Value::Object(meta), methods }, rows))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::parse::Reading;

    fn row(method: Method, user: usize, output: &str, gold: &str) -> ResultRow {
        ResultRow { method, id: format!("q{user}"), user, raw: output.into(), output: output.into(), reading: Reading::Exact, gold: gold.into(), ms: 1 }
    }

    fn part(dir: &str, task: Task, seed: u64, shard: Option<&str>, rows: Vec<ResultRow>) -> Part {
        let report = Report {
            task,
            meta: json!({"model": "small", "model_sha256": "ab", "seed": seed, "users": 2, "questions_asked": 2,
                         "config": {"n": 3, "E": 3, "K": 4, "lock_step": dir == "b", "shard": shard}, "git_revision": format!("r-{dir}"), "questions": "set/questions.json"}),
            methods: BTreeMap::new(),
        };
        Part { path: PathBuf::from(dir), report, rows }
    }

    #[test]
    fn parts_split_by_method_merge_with_paired_differences() {
        let t = Task::NewsCategorization;
        let a = part("a", t, 42, None, vec![row(Method::Prompt, 0, "sports", "politics"), row(Method::Prompt, 1, "sports", "sports")]);
        let b = part("b", t, 42, None, vec![row(Method::PersonaAgent, 0, "politics", "politics"), row(Method::PersonaAgent, 1, "sports", "sports")]);
        let (m, rows) = merge(&[a, b]).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(m.methods.keys().collect::<Vec<_>>(), ["persona-agent", "prompt"]);
        assert_eq!(m.methods["prompt"].accuracy, Some(0.5));
        let d = m.methods["prompt"].vs_persona_agent.as_ref().unwrap();
        assert_eq!((d.diff, d.users), (0.5, 2), "paired across the two parts");
        assert_eq!(m.meta["git_revision"], "r-a, r-b");
        assert_eq!(m.meta["parts"][1]["methods"], json!(["persona-agent"]));
        assert_eq!(m.meta["questions"], "set/questions.json", "one source stays a string");
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), m);
    }

    #[test]
    fn shards_merge_into_one_run_over_all_their_users() {
        let t = Task::ProductRating;
        let s0 = part("s0", t, 42, Some("0/2"), vec![row(Method::Prompt, 0, "4", "4"), row(Method::PersonaAgent, 0, "4", "4")]);
        let s1 = part("s1", t, 42, Some("1/2"), vec![row(Method::Prompt, 1, "1", "5"), row(Method::PersonaAgent, 1, "5", "5")]);
        let (m, _) = merge(&[s0, s1]).unwrap();
        assert_eq!((m.meta["users"].as_u64(), m.meta["questions_asked"].as_u64()), (Some(2), Some(2)));
        assert_eq!(m.methods["prompt"].mae, Some(2.0));
        assert_eq!(m.methods["prompt"].vs_persona_agent.as_ref().unwrap().diff, -2.0);
        assert!(m.meta["config"].get("shard").is_none());
        assert_eq!(m.meta["parts"][1]["shard"], "1/2");
    }

    #[test]
    fn parts_that_disagree_or_overlap_are_refused() {
        let t = Task::NewsCategorization;
        let base = || part("a", t, 42, None, vec![row(Method::Prompt, 0, "x", "x")]);
        let err = merge(&[base(), part("b", t, 7, None, vec![row(Method::Icl, 0, "x", "x")])]).unwrap_err().to_string();
        assert!(err.contains("meta.seed differs") && err.contains('b'), "{err}");
        let err = merge(&[base(), part("b", Task::ProductRating, 42, None, vec![row(Method::Icl, 0, "1", "1")])]).unwrap_err().to_string();
        assert!(err.contains("LaMP-3"), "{err}");
        let err = merge(&[base(), part("b", t, 42, None, vec![row(Method::Prompt, 0, "y", "x")])]).unwrap_err().to_string();
        assert!(err.contains("method 'prompt' is in both a and b"), "{err}");
        let err = merge(&[base(), part("b", t, 42, None, vec![row(Method::Icl, 1, "x", "x")])]).unwrap_err().to_string();
        assert!(err.contains("differs"), "other users for another method: {err}");
        let mut other_model = base();
        other_model.path = PathBuf::from("b");
        other_model.report.meta["model_sha256"] = json!("cd");
        other_model.rows[0].method = Method::Icl;
        assert!(merge(&[base(), other_model]).unwrap_err().to_string().contains("model_sha256"));
        assert!(merge(&[]).is_err());
    }

    #[test]
    fn agent_only_settings_separate_agent_parts_but_not_one_call_parts() {
        let t = Task::ProductRating;
        let with_turn = |mut p: Part| {
            p.report.meta["config"]["answer_turn"] = json!(true);
            p
        };
        let base = part("a", t, 42, None, vec![row(Method::Prompt, 0, "4", "4"), row(Method::Prompt, 1, "5", "5")]);
        let agent = with_turn(part("b", t, 42, None, vec![row(Method::PersonaAgent, 0, "4", "4"), row(Method::PersonaAgent, 1, "4", "5")]));
        let (m, _) = merge(&[base.clone(), agent.clone()]).unwrap();
        assert_eq!(m.meta["config"]["answer_turn"], true, "the agents' setting, though the first part has none");
        // Agent shards that differ in it are refused.
        let s0 = with_turn(part("s0", t, 42, Some("0/2"), vec![row(Method::PersonaAgent, 0, "4", "4")]));
        let s1 = part("s1", t, 42, Some("1/2"), vec![row(Method::PersonaAgent, 1, "4", "5")]);
        assert!(merge(&[s0.clone(), s1.clone()]).unwrap_err().to_string().contains("meta.config differs"));
        // Also when a one-call part comes first.
        let p2 = part("p", t, 42, None, vec![row(Method::Prompt, 0, "4", "4"), row(Method::Prompt, 1, "5", "5")]);
        let err = merge(&[p2, s0, s1]).unwrap_err().to_string();
        assert!(err.contains("meta.config differs") && err.contains("in s0 but"), "{err}");
        // Without agents the merged settings do not claim it.
        let other = part("c", t, 42, None, vec![row(Method::Icl, 0, "4", "4"), row(Method::Icl, 1, "5", "5")]);
        let (m, _) = merge(&[base, with_turn(other)]).unwrap();
        assert!(m.meta["config"].get("answer_turn").is_none());
    }

    #[test]
    fn the_alignment_writer_separates_only_parts_that_align() {
        let t = Task::ProductRating;
        let writer = |mut p: Part, model: &str| {
            p.report.meta["config"]["align_model"] = json!(model);
            p
        };
        // Baselines and ReAct (an agent, but it aligns nothing) run once...
        let base = part("base", t, 42, None, vec![row(Method::Rag1, 0, "4", "4"), row(Method::React, 0, "5", "4")]);
        let large = writer(part("large", t, 42, None, vec![row(Method::PersonaAgent, 0, "4", "4")]), "large");
        // ...merge with PersonaAgent aligned by another writer.
        let (m, rows) = merge(&[base.clone(), large.clone()]).unwrap();
        assert_eq!((m.meta["config"]["align_model"].clone(), rows.len()), (json!("large"), 3));
        assert!(m.methods.contains_key("rag-1") && m.methods.contains_key("persona-agent"));
        // A part whose no-action aligned with the serving model does not.
        let ablations = part("abl", t, 42, None, vec![row(Method::NoAction, 0, "4", "4")]);
        let err = merge(&[base.clone(), large.clone(), ablations.clone()]).unwrap_err().to_string();
        assert!(err.contains("meta.config differs") && err.contains("in large but") && err.contains("abl"), "{err}");
        // Without a method that aligns, the merged settings do not claim a writer.
        let (m, _) = merge(&[writer(base, "large"), part("icl", t, 42, None, vec![row(Method::Icl, 0, "4", "4")])]).unwrap();
        assert!(m.meta["config"].get("align_model").is_none());
        // Aligning parts merge only with the same writer.
        let pa = || part("pa", t, 42, None, vec![row(Method::PersonaAgent, 0, "4", "4")]);
        assert!(merge(&[ablations.clone(), pa()]).is_ok());
        assert!(merge(&[ablations, writer(pa(), "small")]).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_report_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "{\"task\": \"LaMP-9\"}").unwrap();
        let err = Report::read(&path).unwrap_err().to_string();
        assert!(err.contains("report.json") && err.contains("not a bench lamp report"), "{err}");
        assert!(Report::read(&dir.path().join("none.json")).unwrap_err().to_string().contains("none.json"));
        assert!(Part::read(dir.path()).is_err());
    }
}
