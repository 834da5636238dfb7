//! The LaMP-3-style set, rebuilt from Amazon reviews (McAuley et al. 2014,
//! Musical Instruments 5-core): users are reviewers, the query is a
//! reviewer's latest review, the profile their earlier reviews with scores.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::{assemble, BuildOptions, Built, Collected, RawRecord};
use crate::error::{LampError, Result};
use crate::task::Task;

/// The task instruction, as LaMP words it.
pub fn instruction(review: &str) -> String {
    format!("What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without further explanation. review: {review}")
}

/// Builds the set from the reviews CSV.
pub fn build(path: &Path, options: &BuildOptions) -> Result<Built> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| LampError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    let headers = reader.headers().map_err(|e| LampError::Format { path: path.to_path_buf(), message: e.to_string() })?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| LampError::Format { path: path.to_path_buf(), message: format!("no column '{name}'") })
    };
    let (user_col, text_col, score_col, time_col, asin_col) =
        (column("reviewerID")?, column("reviewText")?, column("overall")?, column("unixReviewTime")?, column("asin")?);
    let (mut read, mut incomplete) = (0usize, 0usize);
    let mut dropped_labels: BTreeMap<String, usize> = BTreeMap::new();
    let mut records = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| LampError::Format { path: path.to_path_buf(), message: format!("row {}: {e}", i + 2) })?;
        read += 1;
        let get = |c: usize| row.get(c).unwrap_or_default().trim().to_string();
        let (user, text, score, time) = (get(user_col), get(text_col), get(score_col), get(time_col));
        let (Ok(time), false, false) = (time.parse::<i64>(), user.is_empty(), text.is_empty()) else {
            incomplete += 1;
            continue;
        };
        let label = match score.parse::<f64>() {
            Ok(v) if v.fract() == 0.0 && (1.0..=5.0).contains(&v) => format!("{}", v as u8),
            _ => {
                *dropped_labels.entry(score).or_insert(0) += 1;
                continue;
            }
        };
        let id = format!("r{}", i + 2);
        let Value::Object(item) = json!({"id": id, "text": text, "score": label, "asin": get(asin_col), "time": time}) else {
            continue;
        };
        records.push(RawRecord { user, time, id, input: instruction(&text), gold: label, item });
    }
    Ok(assemble(
        Collected {
            name: "LaMP-3-style, rebuilt from Amazon Musical Instruments reviews (McAuley et al. 2014)".into(),
            task: Task::ProductRating,
            source: path.display().to_string(),
            split: "users are reviewers; each reviewer's reviews sorted by unixReviewTime (ties by row); the latest is the query, the earlier ones the profile"
                .into(),
            records_read: read,
            dropped_labels,
            dropped_incomplete: incomplete,
            label_mapping: (1..=5).map(|v| (format!("{v}.0"), v.to_string())).collect(),
            records,
        },
        options,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::check_invariants;

    #[test]
    fn builds_per_reviewer_time_ordered_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reviews.csv");
        let mut csv = String::from("reviewerID,asin,reviewerName,helpful,reviewText,overall,summary,unixReviewTime,reviewTime\n");
        for (user, text, score, time) in [
            ("A", "good strings", "5.0", 300),
            ("A", "broke fast", "1.0", 100),
            ("A", "\"fine, I guess\"", "3.0", 200),
            ("A", "latest one", "4.0", 400),
            ("B", "ok", "4.0", 50),
            ("A", "half star?", "2.5", 150),
        ] {
            csv.push_str(&format!("{user},x1,N,\"[0, 0]\",{text},{score},s,{time},t\n"));
        }
        std::fs::write(&path, csv).unwrap();
        let built = build(&path, &BuildOptions { min_profile: 3, ..BuildOptions::default() }).unwrap();
        check_invariants(&built, "time", "text");
        assert_eq!(built.examples.len(), 1);
        let e = &built.examples[0];
        assert_eq!(e.gold, "4");
        assert!(e.question.input.ends_with("review: latest one"));
        let texts: Vec<&str> = e.question.profile.iter().map(|p| p["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["broke fast", "fine, I guess", "good strings"]);
        assert_eq!(built.manifest.dropped_labels["2.5"], 1);
    }
}
