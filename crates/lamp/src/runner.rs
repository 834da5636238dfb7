//! Running methods over a set, resumably: every finished query is appended
//! to `results.jsonl` in the output folder, and a rerun skips what is done.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use persona_agent::{AgentLlm, AlignReport, Outcome};
use serde::{Deserialize, Serialize};

use crate::error::{LampError, Result};
use crate::format::{user_ordinals, Example};
use crate::methods::{answer, demonstrations, distractors, Method, Resources};
use crate::parse::{parse_output, Reading};
use crate::task::Task;

/// One scored query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// The method.
    pub method: Method,
    /// The question id.
    pub id: String,
    /// The user's ordinal in the set (questions of one user share it).
    pub user: usize,
    /// The model's raw output.
    pub raw: String,
    /// The output as scored.
    pub output: String,
    /// How the output was read.
    pub reading: Reading,
    /// The gold output.
    pub gold: String,
    /// Wall time, whole milliseconds.
    pub ms: u64,
}

/// Progress of a run.
#[derive(Debug, Clone, Copy)]
pub enum RunEvent<'a> {
    /// A method starts: how many users it has left and in all.
    Method {
        /// The method.
        method: Method,
        /// Users still to run.
        todo: usize,
        /// Users in all.
        total: usize,
    },
    /// A query finished.
    Done(&'a ResultRow),
}

/// The results file of an output folder.
pub fn results_path(dir: &Path) -> PathBuf {
    dir.join("results.jsonl")
}

/// The settings file of an output folder.
pub fn settings_path(dir: &Path) -> PathBuf {
    dir.join("settings.json")
}

/// Ties an output folder to the settings its results are made with, so
/// that a resumed run never mixes two setups in one results file: the
/// first run writes `settings.json` (a JSON object), a later run must
/// bring the same object or gets [`LampError::Settings`] naming the first
/// key that differs. A folder from before this check (results but no
/// settings file) is taken as it is.
pub fn pin_settings(dir: &Path, settings: &serde_json::Value) -> Result<()> {
    let path = settings_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let old: serde_json::Value = serde_json::from_str(&text).map_err(|e| LampError::Format { path: path.clone(), message: e.to_string() })?;
            if let Some((key, was, now)) = first_difference(&old, settings, "") {
                return Err(LampError::Settings { path, key, was, now });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|source| LampError::Io { path: dir.to_path_buf(), source })?;
            let text = serde_json::to_string_pretty(settings).map_err(|e| LampError::Format { path: path.clone(), message: e.to_string() })?;
            std::fs::write(&path, text).map_err(|source| LampError::Io { path, source })
        }
        Err(source) => Err(LampError::Io { path, source }),
    }
}

/// The first (dotted key, old value, new value) where two settings differ.
fn first_difference(old: &serde_json::Value, new: &serde_json::Value, prefix: &str) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                first_difference(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), &key)
            })
        }
        _ if old == new => None,
        _ => Some((prefix.to_string(), old.to_string(), new.to_string())),
    }
}

/// The alignment log of an output folder (one line per aligned user).
pub fn alignment_path(dir: &Path) -> PathBuf {
    dir.join("alignment.jsonl")
}

/// One user's alignment run, as logged: its scores on the replays and
/// what each iteration's guards did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignmentRow {
    /// The method that asked for the aligned persona.
    pub method: Method,
    /// The user's ordinal.
    pub user: usize,
    /// The starting persona's summed replay score.
    pub initial_score: f64,
    /// The final persona's summed replay score.
    pub final_score: f64,
    /// Per iteration: `accepted`, `no_gap` (every replay matched; alignment
    /// ended), `unchanged` (the rewrite repeated the persona; alignment
    /// ended), or the guard that rejected the rewrite (`empty`,
    /// `missing_rules`, `too_long`, `copied`, `worse`).
    pub outcomes: Vec<String>,
    /// Replays per iteration.
    pub replays: usize,
}

impl AlignmentRow {
    /// The row of one report.
    pub fn new(method: Method, user: usize, report: &AlignReport) -> AlignmentRow {
        let outcomes = report
            .iterations
            .iter()
            .map(|it| match &it.outcome {
                Outcome::Accepted { .. } => "accepted".to_string(),
                Outcome::NoGap => "no_gap".to_string(),
                Outcome::Unchanged => "unchanged".to_string(),
                Outcome::Rejected { rejection, .. } => rejection.guard().to_string(),
            })
            .collect();
        let replays = report.iterations.first().map_or(0, |it| it.simulations.len());
        AlignmentRow { method, user, initial_score: report.initial_score, final_score: report.final_score, outcomes, replays }
    }
}

fn log_alignment(dir: &Path, row: &AlignmentRow) -> Result<()> {
    let path = alignment_path(dir);
    let line = serde_json::to_string(row).map_err(|e| LampError::Format { path: path.clone(), message: e.to_string() })?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|source| LampError::Io { path: path.clone(), source })?;
    writeln!(file, "{line}").and_then(|()| file.sync_data()).map_err(|source| LampError::Io { path, source })
}

/// Reads an output folder's alignment log (empty when there is none).
pub fn read_alignments(dir: &Path) -> Result<Vec<AlignmentRow>> {
    read_jsonl(&alignment_path(dir))
}

/// Reads the rows finished so far (a torn last line from a killed run is ignored).
pub fn read_results(dir: &Path) -> Result<Vec<ResultRow>> {
    read_jsonl(&results_path(dir))
}

/// Reads a JSON Lines file of `T` (empty when missing; a torn last line
/// from a killed run is ignored).
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LampError::Io { path: path.to_path_buf(), source }),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(r) => rows.push(r),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => return Err(LampError::Format { path: path.to_path_buf(), message: format!("line {}: {e}", i + 1) }),
        }
    }
    Ok(rows)
}

/// Runs `methods` on `examples`, appending each result to the folder's
/// results file and skipping those already there. `first_user` is the set
/// ordinal of the examples' first user (non-zero when they are a later
/// slice of the set: a shard, or the users after a dev split), so that user
/// ordinals, and the store's user ids, stay those of the whole set and the
/// rows of several slices can be merged. Returns the rows of
/// these examples: the new ones and those already in the file, for every
/// method the file has.
///
/// `workers` holds one set of resources per user in flight: with more
/// than one, that many users run at once, each on its own thread (their
/// models are clients of one shared model, so their calls are decoded
/// together), and rows are written as users finish. A user's questions
/// stay on one worker, in order. MemBank, whose memory carries over from
/// one user to the next, always runs its users one after another.
pub fn run<M: AgentLlm + Send>(
    task: Task,
    examples: &[Example],
    methods: &[Method],
    out_dir: &Path,
    first_user: usize,
    workers: &mut [Resources<'_, M>],
    progress: &mut dyn FnMut(RunEvent<'_>),
) -> Result<Vec<ResultRow>> {
    if workers.is_empty() {
        return Err(LampError::Config { name: "jobs", reason: "at least one worker is needed".into() });
    }
    std::fs::create_dir_all(out_dir).map_err(|source| LampError::Io { path: out_dir.to_path_buf(), source })?;
    let mut rows = read_results(out_dir)?;
    // Rewrite the file without a torn last line before appending to it.
    let path = results_path(out_dir);
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).map(|s| s + "\n"))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| LampError::Format { path: path.clone(), message: e.to_string() })?;
    std::fs::write(&path, text).map_err(|source| LampError::Io { path: path.clone(), source })?;
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|source| LampError::Io { path: path.clone(), source })?;
    let done: HashSet<(Method, String)> = rows.iter().map(|r| (r.method, r.id.clone())).collect();
    let ordinals: Vec<usize> = user_ordinals(examples).into_iter().map(|u| u + first_user).collect();
    for &method in methods {
        let todo: Vec<usize> = (0..examples.len()).filter(|&i| !done.contains(&(method, examples[i].question.id.clone()))).collect();
        progress(RunEvent::Method { method, todo: todo.len(), total: examples.len() });
        let mut finish = |finished: Finished| -> Result<()> {
            for report in &finished.alignments {
                log_alignment(out_dir, &AlignmentRow::new(method, finished.row.user, report))?;
            }
            let line = serde_json::to_string(&finished.row).map_err(|e| LampError::Format { path: path.clone(), message: e.to_string() })?;
            writeln!(file, "{line}").and_then(|()| file.sync_data()).map_err(|source| LampError::Io { path: path.clone(), source })?;
            progress(RunEvent::Done(&finished.row));
            rows.push(finished.row);
            Ok(())
        };
        let job = Job { task, method, examples, ordinals: &ordinals };
        if workers.len() == 1 || method == Method::Membank {
            for i in todo {
                finish(job.answer(i, &mut workers[0])?)?;
            }
        } else {
            job.run_parallel(todo, workers, &mut finish)?;
        }
    }
    // The report covers these examples only (the file may hold more users
    // from a larger run), with every method the file has for them.
    let ids: HashSet<&str> = examples.iter().map(|e| e.question.id.as_str()).collect();
    rows.retain(|r| ids.contains(r.id.as_str()));
    Ok(rows)
}

/// A question answered: its row and the alignment runs it made.
struct Finished {
    row: ResultRow,
    alignments: Vec<AlignReport>,
}

/// One method over a set's questions.
struct Job<'j> {
    task: Task,
    method: Method,
    examples: &'j [Example],
    ordinals: &'j [usize],
}

impl Job<'_> {
    /// Answers question `i` with one worker's resources and scores it.
    fn answer<M: AgentLlm>(&self, i: usize, res: &mut Resources<'_, M>) -> Result<Finished> {
        let example = &self.examples[i];
        let start = Instant::now();
        let demos = demonstrations(self.task, self.examples, i, res.config.icl_demos);
        let others = distractors(self.task, self.examples, &[i]);
        let mut local = Resources {
            runtime: &mut *res.runtime,
            config: res.config,
            demos: &demos,
            distractors: &others,
            writer: res.writer.as_mut().map(|w| &mut **w as &mut (dyn AgentLlm + Send)),
            alignments: Vec::new(),
        };
        let raw = answer(self.method, self.task, example, self.ordinals[i], &mut local)?;
        let alignments = local.alignments;
        let parsed = parse_output(self.task, &raw);
        let row = ResultRow {
            method: self.method,
            id: example.question.id.clone(),
            user: self.ordinals[i],
            raw,
            output: parsed.output,
            reading: parsed.reading,
            gold: example.gold.clone(),
            ms: start.elapsed().as_millis() as u64,
        };
        Ok(Finished { row, alignments })
    }

    /// Runs the questions `todo` with one thread per worker, a user at a
    /// time per thread (a user's questions in order, on one thread), and
    /// hands each finished question to `finish` on this thread. The first
    /// error stops every thread after its current question.
    fn run_parallel<M: AgentLlm + Send>(
        &self,
        todo: Vec<usize>,
        workers: &mut [Resources<'_, M>],
        finish: &mut dyn FnMut(Finished) -> Result<()>,
    ) -> Result<()> {
        let mut users: Vec<(usize, Vec<usize>)> = Vec::new();
        for i in todo {
            match users.last_mut() {
                Some((user, questions)) if *user == self.ordinals[i] => questions.push(i),
                _ => users.push((self.ordinals[i], vec![i])),
            }
        }
        let queue = Mutex::new(users.into_iter().collect::<VecDeque<_>>());
        let stop = AtomicBool::new(false);
        let (sender, results) = mpsc::channel::<Result<Finished>>();
        std::thread::scope(|s| {
            for res in workers.iter_mut() {
                let (sender, queue, stop) = (sender.clone(), &queue, &stop);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                        let Some((_, questions)) = next else { return };
                        for i in questions {
                            let result = self.answer(i, res);
                            let failed = result.is_err();
                            if sender.send(result).is_err() || failed {
                                stop.store(true, Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                });
            }
            drop(sender);
            let mut first_error = None;
            for result in results {
                match result.and_then(&mut *finish) {
                    Ok(()) => {}
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_folder_resumes_only_with_its_own_settings() {
        let dir = tempfile::tempdir().unwrap();
        let settings = json!({"task": "LaMP-2N", "seed": 42, "config": {"E": 3, "K": 4}});
        pin_settings(dir.path(), &settings).unwrap();
        assert!(settings_path(dir.path()).is_file());
        pin_settings(dir.path(), &settings).unwrap();
        let other = json!({"task": "LaMP-2N", "seed": 42, "config": {"E": 1, "K": 4}});
        match pin_settings(dir.path(), &other) {
            Err(LampError::Settings { key, was, now, .. }) => assert_eq!((key.as_str(), was.as_str(), now.as_str()), ("config.E", "3", "1")),
            r => panic!("expected a settings error, got {r:?}"),
        }
        let added = json!({"task": "LaMP-2N", "seed": 42, "config": {"E": 3, "K": 4}, "model": "tiny"});
        let e = pin_settings(dir.path(), &added).unwrap_err().to_string();
        assert!(e.contains("model = null") && e.contains("\"tiny\"") && e.contains("settings.json"), "{e}");
        // The folder keeps its first settings.
        let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(settings_path(dir.path())).unwrap()).unwrap();
        assert_eq!(kept, settings);
        std::fs::write(settings_path(dir.path()), "{not json").unwrap();
        assert!(matches!(pin_settings(dir.path(), &settings), Err(LampError::Format { .. })));
    }
}
