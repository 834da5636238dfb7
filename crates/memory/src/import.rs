//! Reading a user's history from a file: a JSON array or JSON Lines of
//! records (`query`, `response`, optional `timestamp` and `metadata`), or a
//! question file in the official LaMP format whose `profile` items become
//! records.
//!
//! The whole file is checked before anything is stored: a malformed file
//! imports nothing, and the error names the file, the record and the field.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{MemoryError, Result};
use crate::record::NewRecord;

/// The shape of an import file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportFormat {
    /// A JSON array of records.
    JsonArray,
    /// One JSON record per line.
    JsonLines,
    /// LaMP questions (`[{id, input, profile: [...]}]`); the profile items
    /// are the records.
    LampQuestions,
}

impl std::fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImportFormat::JsonArray => "JSON array",
            ImportFormat::JsonLines => "JSON Lines",
            ImportFormat::LampQuestions => "LaMP questions",
        })
    }
}

/// Choices for reading an import file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// In a LaMP file with several questions, the id of the one to import.
    pub question: Option<String>,
}

/// A parsed import file.
#[derive(Debug, Clone)]
pub struct ParsedImport {
    /// The file.
    pub path: PathBuf,
    /// Its detected format.
    pub format: ImportFormat,
    /// The records, in file order.
    pub records: Vec<NewRecord>,
    /// For LaMP files, the question whose profile was read.
    pub question: Option<String>,
}

/// Reads and checks an import file.
pub fn read_import_file(path: &Path, options: &ImportOptions) -> Result<ParsedImport> {
    let text = std::fs::read_to_string(path).map_err(|source| MemoryError::Io { path: path.to_path_buf(), source })?;
    parse_import(&text, path, options)
}

/// Parses the text of an import file (`path` is used in errors).
pub fn parse_import(text: &str, path: &Path, options: &ImportOptions) -> Result<ParsedImport> {
    let file_err = |message: String| MemoryError::ImportFile { file: path.to_path_buf(), message };
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.is_empty() {
        return Err(file_err("the file is empty".into()));
    }
    let (format, records, question) = if trimmed.starts_with('[') {
        let items: Vec<Value> =
            serde_json::from_str(trimmed).map_err(|e| file_err(format!("not a valid JSON array (line {}, column {}): {e}", e.line(), e.column())))?;
        if !items.is_empty() && items.iter().all(|v| v.get("profile").is_some()) {
            let (records, question) = lamp_records(&items, path, options)?;
            (ImportFormat::LampQuestions, records, Some(question))
        } else {
            let records = items.iter().enumerate().map(|(i, v)| record_from_value(v, path, i + 1, "")).collect::<Result<Vec<_>>>()?;
            (ImportFormat::JsonArray, records, None)
        }
    } else {
        let mut records = Vec::new();
        for (i, line) in trimmed.lines().enumerate() {
            // Line numbers count from the first non-blank line of the file.
            let line_no = i + 1 + text.lines().take_while(|l| l.trim().is_empty()).count();
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).map_err(|e| MemoryError::ImportRecord {
                file: path.to_path_buf(),
                record: line_no,
                field: "(line)".into(),
                message: format!("not valid JSON: {e}"),
            })?;
            records.push(record_from_value(&v, path, line_no, "")?);
        }
        (ImportFormat::JsonLines, records, None)
    };
    if records.is_empty() {
        return Err(file_err("no records in the file".into()));
    }
    Ok(ParsedImport { path: path.to_path_buf(), format, records, question })
}

fn field_err(path: &Path, record: usize, field: &str, message: impl Into<String>) -> MemoryError {
    MemoryError::ImportRecord { file: path.to_path_buf(), record, field: field.to_string(), message: message.into() }
}

/// A required non-empty text field; numbers and booleans are accepted as
/// their text (ratings are often numbers).
fn text_field(obj: &Map<String, Value>, key: &str, path: &Path, n: usize, prefix: &str) -> Result<String> {
    let name = format!("{prefix}{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Err(field_err(path, n, &name, "missing")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(field_err(path, n, &name, "empty")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(x)) => Ok(x.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(other) => Err(field_err(path, n, &name, format!("expected text, found {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a timestamp: unix seconds (number or digits), RFC 3339, or a
/// calendar date (`YYYY-MM-DD`, taken as midnight UTC).
pub fn parse_timestamp(v: &Value) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64)).map(Some).ok_or_else(|| format!("{n} is not a unix time"))
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(secs) = s.parse::<i64>() {
                return Ok(Some(secs));
            }
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return Ok(Some(t.timestamp()));
            }
            if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()));
            }
            Err(format!("{s:?} is neither unix seconds, RFC 3339 (2024-05-01T12:00:00Z) nor a date (2024-05-01)"))
        }
        other => Err(format!("expected unix seconds or RFC 3339 text, found {}", kind(other))),
    }
}

/// A record object: `query`, `response`, optional `timestamp` and
/// `metadata`; any other fields are kept in the metadata.
fn record_from_value(v: &Value, path: &Path, n: usize, prefix: &str) -> Result<NewRecord> {
    let obj = v.as_object().ok_or_else(|| field_err(path, n, "(record)", format!("expected a JSON object, found {}", kind(v))))?;
    let query = text_field(obj, "query", path, n, prefix)?;
    let response = text_field(obj, "response", path, n, prefix)?;
    let timestamp = match obj.get("timestamp") {
        None => None,
        Some(t) => parse_timestamp(t).map_err(|m| field_err(path, n, &format!("{prefix}timestamp"), m))?,
    };
    let mut metadata = Map::new();
    for (k, val) in obj {
        if !matches!(k.as_str(), "query" | "response" | "timestamp" | "metadata") {
            metadata.insert(k.clone(), val.clone());
        }
    }
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => metadata.extend(m.clone()),
        Some(other) => return Err(field_err(path, n, &format!("{prefix}metadata"), format!("expected an object, found {}", kind(other)))),
    }
    Ok(NewRecord { query, response, metadata, timestamp })
}

/// The profile of the one question to import from a LaMP questions file.
fn lamp_records(items: &[Value], path: &Path, options: &ImportOptions) -> Result<(Vec<NewRecord>, String)> {
    let id_of = |v: &Value| match v.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let (index, question) = match &options.question {
        Some(want) => items.iter().enumerate().find(|(_, v)| id_of(v) == *want).ok_or_else(|| MemoryError::ImportFile {
            file: path.to_path_buf(),
            message: format!("no question with id {want:?} (the file has {} questions)", items.len()),
        })?,
        None if items.len() == 1 => (0, &items[0]),
        None => {
            return Err(MemoryError::ImportFile {
                file: path.to_path_buf(),
                message: format!(
                    "a LaMP questions file with {} questions: each question is one user's profile; choose one with --question ID (first id: {})",
                    items.len(),
                    id_of(&items[0])
                ),
            })
        }
    };
    let profile =
        question.get("profile").and_then(Value::as_array).ok_or_else(|| field_err(path, index + 1, "profile", "expected an array of profile items"))?;
    let records = profile.iter().enumerate().map(|(i, item)| lamp_item(item, path, i + 1)).collect::<Result<Vec<_>>>()?;
    Ok((records, id_of(question)))
}

/// One LaMP profile item as a record. The item's shape tells the task:
/// `tag` (movie tagging), `category` (news categorization), `score`
/// (product rating), `title`/`abstract` (citation), or `query`/`response`.
fn lamp_item(item: &Value, path: &Path, n: usize) -> Result<NewRecord> {
    let obj = item.as_object().ok_or_else(|| field_err(path, n, "profile", format!("expected an object, found {}", kind(item))))?;
    let p = "profile.";
    let has = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    let (task, query, response, used): (&str, String, String, &[&str]) = if has("tag") {
        ("movie-tags", text_field(obj, "description", path, n, p)?, text_field(obj, "tag", path, n, p)?, &["description", "tag"])
    } else if has("category") {
        let title = obj.get("title").and_then(Value::as_str).unwrap_or("").trim();
        let text = obj.get("text").and_then(Value::as_str).unwrap_or("").trim();
        let query = match (title.is_empty(), text.is_empty()) {
            (true, true) => return Err(field_err(path, n, "profile.text", "missing (and no title either)")),
            (false, true) => title.to_string(),
            (true, false) => text.to_string(),
            (false, false) => format!("{title}\n{text}"),
        };
        ("news-category", query, text_field(obj, "category", path, n, p)?, &["title", "text", "category"])
    } else if has("score") {
        ("product-rating", text_field(obj, "text", path, n, p)?, text_field(obj, "score", path, n, p)?, &["text", "score"])
    } else if has("title") {
        let title = text_field(obj, "title", path, n, p)?;
        let response = match obj.get("abstract").and_then(Value::as_str).map(str::trim) {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => title.clone(),
        };
        ("citation", title, response, &["title", "abstract"])
    } else if has("query") {
        let r = record_from_value(item, path, n, p)?;
        return Ok(r);
    } else {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        return Err(field_err(
            path,
            n,
            "profile",
            format!("an item with none of the LaMP fields tag, category, score, title or query (it has: {})", keys.join(", ")),
        ));
    };
    let timestamp = match obj.get("date") {
        None => None,
        Some(t) => parse_timestamp(t).map_err(|m| field_err(path, n, "profile.date", m))?,
    };
    let mut metadata = Map::new();
    metadata.insert("lamp_task".into(), Value::String(task.into()));
    for (k, v) in obj {
        if !used.contains(&k.as_str()) && k != "date" {
            metadata.insert(k.clone(), v.clone());
        }
    }
    Ok(NewRecord { query, response, metadata, timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedImport> {
        parse_import(text, Path::new("h.json"), &ImportOptions::default())
    }

    #[test]
    fn json_array_with_metadata_and_times() {
        let p = parse(
            r#"[{"query":"q1","response":"r1","timestamp":"2024-05-01T12:00:00Z","metadata":{"src":"a"},"extra":1},
                         {"query":"q2","response":5,"timestamp":1700000000}]"#,
        )
        .unwrap();
        assert_eq!(p.format, ImportFormat::JsonArray);
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[0].timestamp, Some(1_714_564_800));
        assert_eq!(p.records[0].metadata["src"], "a");
        assert_eq!(p.records[0].metadata["extra"], 1);
        assert_eq!(p.records[1].response, "5");
        assert_eq!(p.records[1].timestamp, Some(1_700_000_000));
    }

    #[test]
    fn json_lines_skip_blank_lines() {
        let p = parse("{\"query\":\"a\",\"response\":\"b\"}\n\n{\"query\":\"c\",\"response\":\"d\",\"timestamp\":\"2020-01-02\"}\n").unwrap();
        assert_eq!(p.format, ImportFormat::JsonLines);
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.records[1].timestamp, Some(1_577_923_200));
    }

    #[test]
    fn errors_name_record_and_field() {
        let e = parse(r#"[{"query":"a","response":"b"},{"query":"c"}]"#).unwrap_err().to_string();
        assert_eq!(e, "h.json: record 2: field 'response': missing");
        let e = parse("{\"query\":\"a\",\"response\":\"b\"}\n{\"query\":\"c\",\"response\":\"d\",\"timestamp\":\"yesterday\"}").unwrap_err().to_string();
        assert!(e.starts_with("h.json: record 2: field 'timestamp':"), "{e}");
        let e = parse("{\"query\":\"a\",\"response\":\"b\"}\n{oops").unwrap_err().to_string();
        assert!(e.starts_with("h.json: record 2: field '(line)': not valid JSON"), "{e}");
        let e = parse(r#"[{"query":"a","response":"b","metadata":[1]}]"#).unwrap_err().to_string();
        assert!(e.contains("record 1: field 'metadata': expected an object"), "{e}");
        let e = parse(r#"[{"query":["a"],"response":"b"}]"#).unwrap_err().to_string();
        assert!(e.contains("field 'query': expected text, found an array"), "{e}");
        assert!(parse("  ").unwrap_err().to_string().contains("empty"));
        assert!(parse("[]").unwrap_err().to_string().contains("no records"));
        assert!(parse("[{\"query\": 1,").unwrap_err().to_string().contains("not a valid JSON array (line 1"));
    }

    #[test]
    fn lamp_questions_profiles_become_records() {
        let news = r#"[{"id":"110","input":"Which category does this article relate to?","profile":[
            {"id":"1100","title":"A title","text":"Body","category":"politics","date":"2018-05-26"},
            {"id":"1101","text":"Only body","category":"sports"}]}]"#;
        let p = parse(news).unwrap();
        assert_eq!(p.format, ImportFormat::LampQuestions);
        assert_eq!(p.question.as_deref(), Some("110"));
        assert_eq!(p.records[0].query, "A title\nBody");
        assert_eq!(p.records[0].response, "politics");
        assert_eq!(p.records[0].metadata["id"], "1100");
        assert_eq!(p.records[0].metadata["lamp_task"], "news-category");
        assert!(p.records[0].timestamp.is_some());
        let movies = r#"[{"id":"2","input":"x","profile":[{"id":"20","description":"A heist","tag":"twist ending"}]}]"#;
        assert_eq!(parse(movies).unwrap().records[0].response, "twist ending");
        let reviews = r#"[{"id":"3","input":"x","profile":[{"id":"30","text":"Great strings","score":"5"}]}]"#;
        assert_eq!(parse(reviews).unwrap().records[0].response, "5");
        let papers = r#"[{"id":"4","input":"x","profile":[{"id":"40","title":"Parsing","abstract":""}]}]"#;
        let r = &parse(papers).unwrap().records[0];
        assert_eq!((r.query.as_str(), r.response.as_str()), ("Parsing", "Parsing"));
        let bad = r#"[{"id":"5","input":"x","profile":[{"id":"50","description":"d","tag":""}]}]"#;
        assert_eq!(parse(bad).unwrap_err().to_string(), "h.json: record 1: field 'profile.tag': empty");
    }

    #[test]
    fn several_lamp_questions_need_a_choice() {
        let two = r#"[{"id":"a","input":"x","profile":[{"text":"t","score":1}]},{"id":"b","input":"y","profile":[{"text":"u","score":2}]}]"#;
        assert!(parse(two).unwrap_err().to_string().contains("--question"));
        let p = parse_import(two, Path::new("h.json"), &ImportOptions { question: Some("b".into()) }).unwrap();
        assert_eq!(p.records[0].query, "u");
        assert!(parse_import(two, Path::new("h.json"), &ImportOptions { question: Some("c".into()) }).is_err());
    }
}
