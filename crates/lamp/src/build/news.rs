//! The LaMP-2N-style set, rebuilt from the HuffPost News Category Dataset
//! (Misra 2022): users are article authors, the query is an author's latest
//! article, the profile their earlier ones.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::{assemble, BuildOptions, Built, Collected, RawRecord};
use crate::error::{LampError, Result};
use crate::task::{Task, NEWS_CATEGORIES};

/// HuffPost categories -> the 15 LaMP-2N categories (the rest are dropped).
pub const CATEGORY_MAP: [(&str, &str); 21] = [
    ("FOOD & DRINK", "food & drink"),
    ("TASTE", "food & drink"),
    ("SPORTS", "sports"),
    ("EDUCATION", "education"),
    ("COLLEGE", "education"),
    ("PARENTS", "parents"),
    ("PARENTING", "parents"),
    ("RELIGION", "religion"),
    ("TRAVEL", "travel"),
    ("BUSINESS", "business"),
    ("CRIME", "crime"),
    ("SCIENCE", "science & technology"),
    ("TECH", "science & technology"),
    ("CULTURE & ARTS", "culture & arts"),
    ("ARTS & CULTURE", "culture & arts"),
    ("ENTERTAINMENT", "entertainment"),
    ("POLITICS", "politics"),
    ("WOMEN", "women"),
    ("STYLE & BEAUTY", "style & beauty"),
    ("HEALTHY LIVING", "healthy living"),
    ("WELLNESS", "healthy living"),
];

/// The task instruction, as LaMP words it.
pub fn instruction(article: &str) -> String {
    format!(
        "Which category does this article relate to among the following categories? Just answer with the category name without further explanation. categories: [{}] article: {article}",
        NEWS_CATEGORIES.join(", ")
    )
}

/// `YYYY-MM-DD` as a sortable number.
fn date_key(date: &str) -> Option<i64> {
    let mut parts = date.trim().splitn(3, '-');
    let (y, m, d) = (parts.next()?.parse::<i64>().ok()?, parts.next()?.parse::<i64>().ok()?, parts.next()?.get(..2)?.parse::<i64>().ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some(y * 10_000 + m * 100 + d)
}

/// Builds the set from the JSON Lines file.
pub fn build(path: &Path, options: &BuildOptions) -> Result<Built> {
    let text = std::fs::read_to_string(path).map_err(|source| LampError::Io { path: path.to_path_buf(), source })?;
    let map: BTreeMap<&str, &str> = CATEGORY_MAP.iter().copied().collect();
    let mut dropped_labels: BTreeMap<String, usize> = BTreeMap::new();
    let (mut read, mut incomplete) = (0usize, 0usize);
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        read += 1;
        let row: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| LampError::Format { path: path.to_path_buf(), message: format!("line {}: invalid JSON: {e}", i + 1) })?;
        let field = |k: &str| row.get(k).and_then(Value::as_str).map(str::trim).unwrap_or_default().to_string();
        let (author, category, headline, description, date) =
            (field("authors"), field("category"), field("headline"), field("short_description"), field("date"));
        let Some(time) = date_key(&date) else {
            incomplete += 1;
            continue;
        };
        if author.is_empty() || headline.is_empty() {
            incomplete += 1;
            continue;
        }
        let Some(label) = map.get(category.as_str()) else {
            *dropped_labels.entry(category).or_insert(0) += 1;
            continue;
        };
        let id = format!("n{}", i + 1);
        let body = if description.is_empty() { headline.clone() } else { format!("{headline}. {description}") };
        let item = json!({"id": id, "title": headline, "text": description, "category": label, "date": date});
        let Value::Object(item) = item else { continue };
        records.push(RawRecord { user: author, time, id, input: instruction(&body), gold: label.to_string(), item });
    }
    Ok(assemble(
        Collected {
            name: "LaMP-2N-style, rebuilt from HuffPost News Category (Misra 2022)".into(),
            task: Task::NewsCategorization,
            source: path.display().to_string(),
            split: "users are article authors; each author's articles sorted by date (ties by line); the latest is the query, the earlier ones the profile"
                .into(),
            records_read: read,
            dropped_labels,
            dropped_incomplete: incomplete,
            label_mapping: CATEGORY_MAP.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
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
    fn builds_per_author_time_ordered_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("news.jsonl");
        let mut lines = Vec::new();
        // Ann writes 4 articles (out of order), Bob 2, one unmapped category.
        for (author, cat, date, head) in [
            ("Ann", "POLITICS", "2020-03-01", "Vote"),
            ("Ann", "TECH", "2020-01-01", "Chips"),
            ("Ann", "WORLD NEWS", "2020-02-01", "Abroad"),
            ("Ann", "WELLNESS", "2020-04-01", "Sleep"),
            ("Ann", "SPORTS", "2020-02-15", "Goal"),
            ("Bob", "CRIME", "2021-01-01", "Heist"),
            ("Bob", "CRIME", "2021-01-02", "Trial"),
            ("", "CRIME", "2021-01-02", "Nobody"),
        ] {
            lines.push(json!({"authors": author, "category": cat, "date": date, "headline": head, "short_description": format!("About {head}")}).to_string());
        }
        std::fs::write(&path, lines.join("\n")).unwrap();
        let built = build(&path, &BuildOptions { min_profile: 2, ..BuildOptions::default() }).unwrap();
        check_invariants(&built, "date", "text");
        assert_eq!(built.examples.len(), 1, "Bob has too little history");
        let e = &built.examples[0];
        assert_eq!(e.gold, "healthy living");
        assert!(e.question.input.ends_with("article: Sleep. About Sleep"));
        let titles: Vec<&str> = e.question.profile.iter().map(|p| p["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["Chips", "Goal", "Vote"]);
        assert_eq!(built.manifest.dropped_labels["WORLD NEWS"], 1);
        assert_eq!(built.manifest.dropped_incomplete, 1);
        assert_eq!(built.manifest.users_seen, 2);
        assert_eq!(built.manifest.profile_sizes, [3, 3, 3]);
        let capped = build(&path, &BuildOptions { min_profile: 1, max_profile: Some(2), max_users: Some(1) }).unwrap();
        assert_eq!(capped.examples.len(), 1);
        assert_eq!(capped.examples[0].question.profile.len(), 2, "the most recent profile records are kept");
        assert_eq!(capped.examples[0].question.profile[0]["title"], "Goal");
    }
}
