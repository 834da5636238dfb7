//! Reading a model's free text as a task output, the way a fair reader
//! would: the exact label first, then the label after normalising case,
//! quotes, brackets and a leading "Answer:", then a label the text names
//! alone. Anything else is kept as it is and scored as invalid.

use serde::{Deserialize, Serialize};

use crate::task::Task;

/// How an output was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// The text was exactly a valid output.
    Exact,
    /// A valid output after normalisation.
    Normalised,
    /// The only valid output the text names.
    Found,
    /// No valid output (scored as the task's scorer scores invalid ones).
    Invalid,
}

/// An output ready for the scorer, and how it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    /// The canonical label (or rating), or the raw text when invalid.
    pub output: String,
    /// How it was read.
    pub reading: Reading,
}

fn normalise(s: &str) -> String {
    let mut t = s.trim().to_lowercase();
    for prefix in ["final answer:", "answer:", "category:", "tag:", "rating:", "score:", "reference:"] {
        if let Some(rest) = t.strip_prefix(prefix) {
            t = rest.trim().to_string();
        }
    }
    let t = t.trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '*' | '.' | ',' | ';' | ':' | '!' | ' '));
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `needle` occurs in `hay` as whole words.
fn contains_phrase(hay: &str, needle: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    hay.match_indices(needle).any(|(i, _)| boundary(hay[..i].chars().next_back()) && boundary(hay[i + needle.len()..].chars().next()))
}

/// Reads `text` as an output of `task`.
pub fn parse_output(task: Task, text: &str) -> Parsed {
    let invalid = || Parsed { output: text.trim().to_string(), reading: Reading::Invalid };
    match task.labels() {
        Some(labels) => {
            if let Some(l) = labels.iter().find(|l| **l == text.trim()) {
                return Parsed { output: l.to_string(), reading: Reading::Exact };
            }
            let norm = normalise(text);
            let norm_label = |l: &str| l.trim_matches(|c| c == '[' || c == ']').to_lowercase();
            let stripped = norm.trim_matches(|c| c == '[' || c == ']' || c == '(' || c == ')');
            if let Some(l) = labels.iter().find(|l| norm_label(l) == stripped) {
                return Parsed { output: l.to_string(), reading: Reading::Normalised };
            }
            let named: Vec<&&str> = labels.iter().filter(|l| contains_phrase(&norm, &norm_label(l))).collect();
            // A label inside a longer one ("comedy" in "dark comedy") does not count twice.
            let named: Vec<&&str> =
                named.iter().copied().filter(|l| !named.iter().any(|m| m != l && contains_phrase(&norm_label(m), &norm_label(l)))).collect();
            match named.as_slice() {
                [one] => Parsed { output: one.to_string(), reading: Reading::Found },
                _ => invalid(),
            }
        }
        None => {
            let t = text.trim();
            if let Ok(v) = t.parse::<u8>() {
                if (1..=5).contains(&v) {
                    return Parsed { output: v.to_string(), reading: Reading::Exact };
                }
            }
            let norm = normalise(t);
            if let Ok(v) = norm.parse::<f64>() {
                if (1.0..=5.0).contains(&v) {
                    return Parsed { output: format!("{}", v.round() as u8), reading: Reading::Normalised };
                }
            }
            // The first rating-like number the text names ("4 stars", "4/5").
            let first = norm.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).find_map(|w| w.parse::<u8>().ok().filter(|v| (1..=5).contains(v)));
            match first {
                Some(v) => Parsed { output: v.to_string(), reading: Reading::Found },
                None => invalid(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(task: Task, text: &str) -> (String, Reading) {
        let p = parse_output(task, text);
        (p.output, p.reading)
    }

    #[test]
    fn labels_are_read_like_a_fair_reader_would() {
        let t = Task::MovieTagging;
        assert_eq!(read(t, "sci-fi"), ("sci-fi".into(), Reading::Exact));
        assert_eq!(read(t, " Sci-Fi. "), ("sci-fi".into(), Reading::Normalised));
        assert_eq!(read(t, "Answer: \"dark comedy\""), ("dark comedy".into(), Reading::Normalised));
        assert_eq!(read(t, "The tag is dark comedy because it is grim."), ("dark comedy".into(), Reading::Found));
        assert_eq!(read(t, "comedy or romance"), ("comedy or romance".into(), Reading::Invalid));
        assert_eq!(read(t, "horror"), ("horror".into(), Reading::Invalid));
        assert_eq!(read(t, "fantasyland"), ("fantasyland".into(), Reading::Invalid), "whole words only");
        let n = Task::NewsCategorization;
        assert_eq!(read(n, "Category: Science & Technology"), ("science & technology".into(), Reading::Normalised));
        let c = Task::Citation;
        assert_eq!(read(c, "[2]"), ("[2]".into(), Reading::Exact));
        assert_eq!(read(c, "2"), ("[2]".into(), Reading::Normalised));
        assert_eq!(read(c, "Reference: [1]."), ("[1]".into(), Reading::Normalised));
    }

    #[test]
    fn ratings_are_read_as_numbers_from_one_to_five() {
        let t = Task::ProductRating;
        assert_eq!(read(t, "4"), ("4".into(), Reading::Exact));
        assert_eq!(read(t, " 4.0 "), ("4".into(), Reading::Normalised));
        assert_eq!(read(t, "Rating: 3"), ("3".into(), Reading::Normalised));
        assert_eq!(read(t, "I would give it 5 stars"), ("5".into(), Reading::Found));
        assert_eq!(read(t, "4/5"), ("4".into(), Reading::Found));
        assert_eq!(read(t, "great product"), ("great product".into(), Reading::Invalid));
        assert_eq!(read(t, "7"), ("7".into(), Reading::Invalid));
    }
}
