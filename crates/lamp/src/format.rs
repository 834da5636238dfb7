//! The official LaMP file format: a questions file
//! (`[{"id", "input", "profile": [...]}]`) and an outputs file
//! (`{"task", "golds": [{"id", "output"}]}`), joined on `id`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{LampError, Result};

/// One question: the task input and the user's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The query id (one per user in LaMP).
    pub id: String,
    /// The task input, with the instruction.
    pub input: String,
    /// The user's profile items (fields depend on the task).
    pub profile: Vec<Map<String, Value>>,
}

/// The gold outputs of a questions file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    /// The task name as written in the file (`LaMP_2` etc.).
    pub task: String,
    /// Gold output per question id.
    pub golds: Vec<Gold>,
}

/// One gold output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gold {
    /// The question id.
    pub id: String,
    /// The expected output.
    pub output: String,
}

/// A question with its gold output.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The question.
    pub question: Question,
    /// The gold output.
    pub gold: String,
    /// The user the question belongs to, where a user has several questions
    /// (the OPPU layout); `None` in the official format, where every
    /// question is its own user.
    pub user: Option<String>,
}

impl Example {
    /// The key that groups questions by user (`#<position>` when the file
    /// does not name users).
    pub fn user_key(&self, position: usize) -> String {
        self.user.clone().unwrap_or_else(|| format!("#{position}"))
    }
}

/// The user ordinal of each example (0, 1, ... by first appearance), so
/// the questions of one user share an ordinal.
pub fn user_ordinals(examples: &[Example]) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let next = seen.len();
            *seen.entry(e.user_key(i)).or_insert(next)
        })
        .collect()
}

/// The examples of the first `n` users (by first appearance).
pub fn first_users(mut examples: Vec<Example>, n: usize) -> Vec<Example> {
    let ordinals = user_ordinals(&examples);
    let mut i = 0;
    examples.retain(|_| {
        let keep = ordinals[i] < n;
        i += 1;
        keep
    });
    examples
}

pub(crate) fn format_error(path: &Path, message: String) -> LampError {
    LampError::Format { path: path.to_path_buf(), message }
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| LampError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| format_error(path, format!("invalid JSON: {e}")))
}

/// A string field (ids may be numbers in some files).
/// The `profile` array of `obj`: a list of JSON objects (errors name the
/// item, at `at` of the file at `path`).
pub(crate) fn profile_field(obj: &Map<String, Value>, at: &str, path: &Path) -> Result<Vec<Map<String, Value>>> {
    match obj.get("profile") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, v)| match v {
                Value::Object(m) => Ok(m.clone()),
                _ => Err(format_error(path, format!("{at}: field 'profile': item {} is not an object", j + 1))),
            })
            .collect(),
        Some(_) => Err(format_error(path, format!("{at}: field 'profile': expected an array"))),
        None => Err(format_error(path, format!("{at}: field 'profile': missing"))),
    }
}

pub(crate) fn text_field(obj: &Map<String, Value>, field: &str, at: &str, path: &Path) -> Result<String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format_error(path, format!("{at}: field '{field}': expected a string, got {other}"))),
        None => Err(format_error(path, format!("{at}: field '{field}': missing"))),
    }
}

/// Reads a questions file.
pub fn read_questions(path: &Path) -> Result<Vec<Question>> {
    let Value::Array(items) = read_json(path)? else {
        return Err(format_error(path, "a questions file is a JSON array of {id, input, profile}".into()));
    };
    let mut out = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("question {}", i + 1);
        let Value::Object(obj) = item else { return Err(format_error(path, format!("{at}: expected an object"))) };
        let id = text_field(&obj, "id", &at, path)?;
        if !seen.insert(id.clone()) {
            return Err(format_error(path, format!("{at}: id '{id}' appears twice")));
        }
        let input = text_field(&obj, "input", &at, path)?;
        let profile = profile_field(&obj, &at, path)?;
        out.push(Question { id, input, profile });
    }
    Ok(out)
}

/// Reads an outputs file.
pub fn read_outputs(path: &Path) -> Result<Outputs> {
    let Value::Object(obj) = read_json(path)? else {
        return Err(format_error(path, "an outputs file is a JSON object {task, golds}".into()));
    };
    let task = text_field(&obj, "task", "the file", path)?;
    let Some(Value::Array(items)) = obj.get("golds") else {
        return Err(format_error(path, "field 'golds': missing or not an array".into()));
    };
    let golds = items
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let at = format!("gold {}", i + 1);
            let Value::Object(o) = g else { return Err(format_error(path, format!("{at}: expected an object"))) };
            Ok(Gold { id: text_field(o, "id", &at, path)?, output: text_field(o, "output", &at, path)? })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Outputs { task, golds })
}

/// Reads both files and joins them on `id`; every question needs a gold.
pub fn read_examples(questions: &Path, outputs: &Path) -> Result<Vec<Example>> {
    let qs = read_questions(questions)?;
    let out = read_outputs(outputs)?;
    let golds: HashMap<&str, &str> = out.golds.iter().map(|g| (g.id.as_str(), g.output.as_str())).collect();
    qs.into_iter()
        .map(|q| {
            let gold = golds
                .get(q.id.as_str())
                .ok_or_else(|| format_error(outputs, format!("no gold output for question id '{}' of {}", q.id, questions.display())))?;
            Ok(Example { gold: gold.to_string(), question: q, user: None })
        })
        .collect()
}

/// Writes a questions file and an outputs file (pretty JSON).
pub fn write_examples(examples: &[Example], task_name: &str, questions: &Path, outputs: &Path) -> Result<()> {
    let qs: Vec<&Question> = examples.iter().map(|e| &e.question).collect();
    let golds = Outputs { task: task_name.to_string(), golds: examples.iter().map(|e| Gold { id: e.question.id.clone(), output: e.gold.clone() }).collect() };
    write_json(questions, &qs)?;
    write_json(outputs, &golds)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| format_error(path, e.to_string()))?;
    let tmp: PathBuf = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|source| LampError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| LampError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUESTIONS: &str = r#"[
      {"id": "210", "input": "Which category does this article relate to among the following categories? Just answer with the category name without further explanation. categories: [travel, education, parents] article: Kids go back to school",
       "profile": [{"id": "2100", "text": "Best beaches of 2019", "title": "Beaches", "category": "travel", "date": "2019-05-01"},
                   {"id": "2101", "text": "How to pack lunch", "title": "Lunch", "category": "parents"}]},
      {"id": 211, "input": "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without further explanation. review: Great strings",
       "profile": []}
    ]"#;
    const OUTPUTS: &str = r#"{"task": "LaMP_2", "golds": [{"id": "211", "output": "5"}, {"id": "210", "output": "education"}]}"#;

    #[test]
    fn reads_and_joins_the_official_format() {
        let dir = tempfile::tempdir().unwrap();
        let (q, o) = (dir.path().join("q.json"), dir.path().join("o.json"));
        std::fs::write(&q, QUESTIONS).unwrap();
        std::fs::write(&o, OUTPUTS).unwrap();
        let examples = read_examples(&q, &o).unwrap();
        assert_eq!(examples.len(), 2);
        assert_eq!(examples[0].question.id, "210");
        assert_eq!(examples[0].gold, "education");
        assert_eq!(examples[0].question.profile[0]["category"], "travel");
        assert_eq!(examples[1].question.id, "211", "numeric ids are read as text");
        assert_eq!(examples[1].gold, "5");
        // Writing and reading back gives the same examples.
        let (q2, o2) = (dir.path().join("q2.json"), dir.path().join("o2.json"));
        write_examples(&examples, "LaMP_2", &q2, &o2).unwrap();
        assert_eq!(read_examples(&q2, &o2).unwrap(), examples);
    }

    #[test]
    fn malformed_files_name_the_entry_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.json", r#"[{"id": "1", "profile": []}]"#, "question 1: field 'input': missing"),
            ("b.json", r#"[{"id": "1", "input": "x", "profile": [3]}]"#, "question 1: field 'profile': item 1 is not an object"),
            ("c.json", r#"[{"id": "1", "input": "x", "profile": []}, {"id": "1", "input": "y", "profile": []}]"#, "question 2: id '1' appears twice"),
            ("d.json", r#"{"id": "1"}"#, "JSON array"),
            ("e.json", "[", "invalid JSON"),
        ];
        for (name, text, expected) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let err = read_questions(&p).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expected), "{err}");
        }
        let q = dir.path().join("q.json");
        std::fs::write(&q, QUESTIONS).unwrap();
        let o = dir.path().join("o.json");
        std::fs::write(&o, r#"{"task": "LaMP_2", "golds": [{"id": "210", "output": "education"}]}"#).unwrap();
        assert!(read_examples(&q, &o).unwrap_err().to_string().contains("no gold output for question id '211'"));
        std::fs::write(&o, r#"{"task": "LaMP_2", "golds": [{"id": "210"}]}"#).unwrap();
        assert!(read_outputs(&o).unwrap_err().to_string().contains("gold 1: field 'output': missing"));
    }
}
