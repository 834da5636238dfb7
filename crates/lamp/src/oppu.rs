//! The per-user layout of OPPU (Tan et al., 2024), which the PersonaAgent
//! paper follows: one JSON array of users, each with their whole profile
//! and several queries,
//! `[{"user_id", "profile": [...], "query": [{"id", "input", "gold"?}]}]`,
//! conventionally `<task>/user_top_100_history.json`. Gold outputs come
//! from each query's `gold` (or `output`) field or from an official
//! outputs file joined on the query id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::Result;
use crate::format::{format_error, profile_field, read_json, read_outputs, text_field, Example, Question};

/// The file name OPPU uses inside a task folder.
pub const USERS_FILE: &str = "user_top_100_history.json";

/// The users file for `path`: the path itself, or `path/user_top_100_history.json`
/// when it is a folder.
pub fn users_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(USERS_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Reads an OPPU users file (or a folder holding one); every query becomes
/// an [`Example`] carrying its user's id and whole profile. With `outputs`,
/// golds come from that file; otherwise from each query's `gold` or
/// `output` field.
pub fn read_oppu(path: &Path, outputs: Option<&Path>) -> Result<Vec<Example>> {
    let path = users_file(path);
    let path = path.as_path();
    let Value::Array(users) = read_json(path)? else {
        return Err(format_error(path, "an OPPU users file is a JSON array of {user_id, profile, query}".into()));
    };
    let golds: Option<HashMap<String, String>> = match outputs {
        Some(o) => Some(read_outputs(o)?.golds.into_iter().map(|g| (g.id, g.output)).collect()),
        None => None,
    };
    let mut examples = Vec::new();
    let mut seen_users = std::collections::HashSet::new();
    let mut seen_ids = std::collections::HashSet::new();
    for (i, user) in users.iter().enumerate() {
        let at = format!("user {}", i + 1);
        let Value::Object(obj) = user else { return Err(format_error(path, format!("{at}: expected an object"))) };
        let user_id = match obj.get("user_id") {
            Some(_) => text_field(obj, "user_id", &at, path)?,
            None => format!("user-{}", i + 1),
        };
        if !seen_users.insert(user_id.clone()) {
            return Err(format_error(path, format!("{at}: user_id '{user_id}' appears twice")));
        }
        let profile = profile_field(obj, &at, path)?;
        let queries = match obj.get("query") {
            Some(Value::Array(q)) if !q.is_empty() => q,
            Some(Value::Array(_)) => return Err(format_error(path, format!("{at}: field 'query': empty"))),
            // A single query object is accepted too.
            Some(Value::Object(_)) => std::slice::from_ref(&obj["query"]),
            Some(_) => return Err(format_error(path, format!("{at}: field 'query': expected an array of {{id, input}}"))),
            None => return Err(format_error(path, format!("{at}: field 'query': missing"))),
        };
        for (j, q) in queries.iter().enumerate() {
            let at = format!("{at}, query {}", j + 1);
            let Value::Object(q) = q else { return Err(format_error(path, format!("{at}: expected an object"))) };
            let id = text_field(q, "id", &at, path)?;
            if !seen_ids.insert(id.clone()) {
                return Err(format_error(path, format!("{at}: id '{id}' appears twice")));
            }
            let input = text_field(q, "input", &at, path)?;
            let gold = match &golds {
                Some(map) => map
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format_error(outputs.unwrap_or(path), format!("no gold output for query id '{id}' ({at} of {})", path.display())))?,
                None => match (q.get("gold"), q.get("output")) {
                    (Some(_), _) => text_field(q, "gold", &at, path)?,
                    (None, Some(_)) => text_field(q, "output", &at, path)?,
                    (None, None) => return Err(format_error(path, format!("{at}: no 'gold' or 'output' field; pass the outputs file with the golds"))),
                },
            };
            examples.push(Example { question: Question { id, input, profile: profile.clone() }, gold, user: Some(user_id.clone()) });
        }
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{first_users, user_ordinals};

    const USERS: &str = r#"[
      {"user_id": "u7", "profile": [{"id": "p1", "text": "Fine strings", "score": "4"}, {"id": "p2", "text": "Broke fast", "score": "1"}],
       "query": [{"id": "q1", "input": "What is the score of the following review on a scale of 1 to 5? review: Great", "gold": "5"},
                 {"id": "q2", "input": "What is the score of the following review on a scale of 1 to 5? review: Bad", "gold": "1"}]},
      {"user_id": 8, "profile": [], "query": {"id": 3, "input": "review: Ok", "output": "3"}}
    ]"#;

    #[test]
    fn reads_users_with_several_queries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("product_rating")).unwrap();
        let file = dir.path().join("product_rating").join(USERS_FILE);
        std::fs::write(&file, USERS).unwrap();
        // A folder finds the conventional file name.
        let examples = read_oppu(&dir.path().join("product_rating"), None).unwrap();
        assert_eq!(examples.len(), 3);
        assert_eq!((examples[0].question.id.as_str(), examples[0].gold.as_str(), examples[0].user.as_deref()), ("q1", "5", Some("u7")));
        assert_eq!(examples[1].question.profile.len(), 2, "every query carries the user's whole profile");
        assert_eq!((examples[2].question.id.as_str(), examples[2].gold.as_str(), examples[2].user.as_deref()), ("3", "3", Some("8")));
        assert_eq!(user_ordinals(&examples), vec![0, 0, 1]);
        assert_eq!(first_users(examples.clone(), 1).len(), 2, "the first user's two queries");
        // Golds from an outputs file take precedence.
        let o = dir.path().join("o.json");
        std::fs::write(&o, r#"{"task": "LaMP_3", "golds": [{"id": "q1", "output": "4"}, {"id": "q2", "output": "2"}, {"id": "3", "output": "1"}]}"#).unwrap();
        let with = read_oppu(&file, Some(&o)).unwrap();
        assert_eq!(with.iter().map(|e| e.gold.as_str()).collect::<Vec<_>>(), ["4", "2", "1"]);
        std::fs::write(&o, r#"{"task": "LaMP_3", "golds": [{"id": "q1", "output": "4"}]}"#).unwrap();
        let e = read_oppu(&file, Some(&o)).unwrap_err().to_string();
        assert!(e.contains("no gold output for query id 'q2' (user 1, query 2"), "{e}");
    }

    #[test]
    fn malformed_users_name_the_user_query_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (r#"{"profile": []}"#, "JSON array"),
            (r#"[{"user_id": "a", "query": []}]"#, "user 1: field 'profile': missing"),
            (r#"[{"user_id": "a", "profile": [1], "query": []}]"#, "user 1: field 'profile': item 1 is not an object"),
            (r#"[{"user_id": "a", "profile": [], "query": []}]"#, "user 1: field 'query': empty"),
            (r#"[{"user_id": "a", "profile": [], "query": [{"id": "1", "input": "x"}]}]"#, "user 1, query 1: no 'gold' or 'output' field"),
            (r#"[{"user_id": "a", "profile": [], "query": [{"id": "1", "gold": "x"}]}]"#, "user 1, query 1: field 'input': missing"),
            (
                r#"[{"user_id": "a", "profile": [], "query": [{"id": "1", "input": "x", "gold": "y"}]}, {"user_id": "a", "profile": [], "query": [{"id": "2", "input": "x", "gold": "y"}]}]"#,
                "user 2: user_id 'a' appears twice",
            ),
            (
                r#"[{"user_id": "a", "profile": [], "query": [{"id": "1", "input": "x", "gold": "y"}, {"id": "1", "input": "z", "gold": "y"}]}]"#,
                "user 1, query 2: id '1' appears twice",
            ),
        ];
        for (i, (text, expected)) in cases.iter().enumerate() {
            let p = dir.path().join(format!("case{i}.json"));
            std::fs::write(&p, text).unwrap();
            let err = read_oppu(&p, None).unwrap_err().to_string();
            assert!(err.contains(&format!("case{i}.json")) && err.contains(expected), "{err}");
        }
    }
}
