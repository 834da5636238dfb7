//! The four LaMP tasks the paper evaluates, with their label sets.

use persona_agent::{Choices, Reordered};
use persona_memory::TaskKind;
use serde::{Deserialize, Serialize};

use crate::error::LampError;

/// LaMP-2M's 15 movie tags, in the official order.
pub const MOVIE_TAGS: [&str; 15] = [
    "sci-fi",
    "based on a book",
    "comedy",
    "action",
    "twist ending",
    "dystopia",
    "dark comedy",
    "classic",
    "psychology",
    "fantasy",
    "romance",
    "thought-provoking",
    "social commentary",
    "violence",
    "true story",
];

/// LaMP-2N's 15 news categories, in the official order.
pub const NEWS_CATEGORIES: [&str; 15] = [
    "food & drink",
    "sports",
    "education",
    "parents",
    "religion",
    "travel",
    "business",
    "crime",
    "science & technology",
    "culture & arts",
    "entertainment",
    "politics",
    "women",
    "style & beauty",
    "healthy living",
];

/// LaMP-1's two answers.
pub const CITATION_CHOICES: [&str; 2] = ["[1]", "[2]"];

/// LaMP-3's five ratings.
pub const RATINGS: [&str; 5] = ["1", "2", "3", "4", "5"];

/// A LaMP task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// Personalized citation identification (binary choice).
    #[serde(rename = "LaMP-1")]
    Citation,
    /// Personalized movie tagging (15 tags).
    #[serde(rename = "LaMP-2M")]
    MovieTagging,
    /// Personalized news categorization (15 categories).
    #[serde(rename = "LaMP-2N")]
    NewsCategorization,
    /// Personalized product rating (1-5).
    #[serde(rename = "LaMP-3")]
    ProductRating,
}

impl Task {
    /// Every task, in the paper's order.
    pub const ALL: [Task; 4] = [Task::Citation, Task::MovieTagging, Task::NewsCategorization, Task::ProductRating];

    /// The official name (`LaMP-2N`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Task::Citation => "LaMP-1",
            Task::MovieTagging => "LaMP-2M",
            Task::NewsCategorization => "LaMP-2N",
            Task::ProductRating => "LaMP-3",
        }
    }

    /// The fixed label list of a classification task (none for ratings).
    pub fn labels(self) -> Option<&'static [&'static str]> {
        match self {
            Task::Citation => Some(&CITATION_CHOICES),
            Task::MovieTagging => Some(&MOVIE_TAGS),
            Task::NewsCategorization => Some(&NEWS_CATEGORIES),
            Task::ProductRating => None,
        }
    }

    /// Every valid answer: the label list, or the ratings `1`-`5`. Answers
    /// are decoded under this set, so none can be invalid.
    pub fn choices(self) -> Result<Choices, LampError> {
        let labels: &[&str] = self.labels().unwrap_or(&RATINGS);
        Ok(Choices::new(labels)?)
    }

    /// The question with its options in another order, where the labels
    /// name positions in the question (LaMP-1: the two references
    /// swapped, so `[1]` there is `[2]` here); `None` for the other tasks
    /// and for an input not in the task's shape.
    pub fn reordered(self, input: &str) -> Option<Reordered> {
        match self {
            Task::Citation => swap_options(input).map(|text| Reordered { text, labels: vec![1, 0] }),
            _ => None,
        }
    }

    /// What each label stands for, in the order of the labels, where the
    /// labels name options written in the question (LaMP-1: the titles of
    /// references `[1]` and `[2]`); `None` for the other tasks and for an
    /// input not in the task's shape.
    pub fn options(self, input: &str) -> Option<Vec<String>> {
        match self {
            Task::Citation => TwoOptions::parse(input).map(|o| vec![o.first.to_string(), o.second.to_string()]),
            _ => None,
        }
    }

    /// The kind of history its profiles are, for the user's memory.
    pub fn memory_kind(self) -> TaskKind {
        match self {
            Task::Citation => TaskKind::Citation,
            Task::MovieTagging => TaskKind::MovieTags,
            Task::NewsCategorization => TaskKind::NewsCategory,
            Task::ProductRating => TaskKind::ProductRating,
        }
    }

    /// Whether it is scored with MAE/RMSE rather than accuracy/F1.
    pub fn is_rating(self) -> bool {
        self == Task::ProductRating
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Task {
    type Err = LampError;

    /// Accepts `LaMP-2N`, `lamp-2n`, `2N`, `2n`, `LaMP_2N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let key = key.strip_prefix("lamp").unwrap_or(&key);
        match key {
            "1" => Ok(Task::Citation),
            "2m" => Ok(Task::MovieTagging),
            "2n" => Ok(Task::NewsCategorization),
            "3" => Ok(Task::ProductRating),
            _ => Err(LampError::UnknownTask(s.to_string())),
        }
    }
}

/// The question with its two references swapped (`[1]` and `[2]`
/// exchange titles); `None` when `input` does not end with LaMP's two
/// options (`[1]: "A" [2]: "B"`).
pub fn swap_options(input: &str) -> Option<String> {
    let o = TwoOptions::parse(input)?;
    Some(format!("{}{FIRST}{}\" {SECOND}{}\"{}", o.head, o.second, o.first, o.tail))
}

const FIRST: &str = "[1]: \"";
const SECOND: &str = "[2]: \"";

/// A LaMP-1 question split around its two quoted references.
struct TwoOptions<'a> {
    head: &'a str,
    first: &'a str,
    second: &'a str,
    tail: &'a str,
}

impl<'a> TwoOptions<'a> {
    fn parse(input: &'a str) -> Option<TwoOptions<'a>> {
        let second_at = input.rfind(SECOND)?;
        let first_at = input[..second_at].rfind(FIRST)?;
        let first = input[first_at + FIRST.len()..second_at].trim_end().strip_suffix('"')?;
        let rest = &input[second_at + SECOND.len()..];
        let end = rest.rfind('"')?;
        Some(TwoOptions { head: &input[..first_at], first, second: &rest[..end], tail: &rest[end + 1..] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_round_trip() {
        for t in Task::ALL {
            assert_eq!(t.name().parse::<Task>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.name()));
        }
        assert_eq!("2m".parse::<Task>().unwrap(), Task::MovieTagging);
        assert_eq!("lamp_3".parse::<Task>().unwrap(), Task::ProductRating);
        assert!("LaMP-7".parse::<Task>().is_err());
        assert_eq!(Task::MovieTagging.labels().unwrap().len(), 15);
        assert_eq!(Task::NewsCategorization.labels().unwrap().len(), 15);
        assert!(Task::ProductRating.labels().is_none());
        for t in Task::ALL {
            let choices = t.choices().unwrap();
            assert!(!choices.labels().is_empty());
            if let Some(labels) = t.labels() {
                assert_eq!(choices.labels(), labels);
            }
        }
        assert_eq!(Task::ProductRating.choices().unwrap().labels(), RATINGS);
    }
}
