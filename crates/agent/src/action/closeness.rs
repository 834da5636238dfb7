//! The answer the user's own records support most, said in the answer turn
//! ([`AgentConfig::answer_turn_closeness`]): the option closest to the
//! user's records, or the label their nearest records vote for.
//!
//! On LaMP-1 ("which of these two references would this author cite?") the
//! 0.5B model answers `[1]` in either order, even with each option's
//! similarity to the author's papers written next to it; the sentence
//! encoder ranks the cited reference first for 19 of the 20 dev users. The
//! note names the closest option alone (the others by their similarity
//! only), so the model reads a label instead of comparing numbers.

use super::{AgentConfig, Question};
use crate::choice::Choices;
use crate::error::{AgentError, Result};
use crate::orders::Reordered;
use crate::tools::{CallContext, Evidence, ToolRegistry};

/// How strongly the user's memory supports each answer of a question.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Support {
    /// One score per label, in the labels' order.
    pub scores: Vec<f32>,
    /// Options' similarities (the labels stand for texts) or labels' votes.
    pub votes: bool,
}

/// The support of each answer, when the config asks for it: where the
/// question says what its labels stand for, each option's closeness to
/// the user's records; otherwise each label's votes among the records
/// nearest to the question. `None` otherwise or when the memory has
/// nothing to compare.
pub(super) fn of_question(tools: &mut ToolRegistry<'_>, config: &AgentConfig, question: &Question<'_>) -> Result<Option<Support>> {
    let (true, Some(choices)) = (config.answer_turn_closeness, &config.choices) else {
        return Ok(None);
    };
    let n = choices.labels().len();
    let context = CallContext { hidden_records: question.hidden_records };
    let (evidence, votes) = match question.options {
        Some(options) if options.len() != n => {
            return Err(AgentError::Config { name: "options", reason: format!("{} option texts for {n} labels", options.len()) });
        }
        Some(options) => (Evidence::Options(options), false),
        None => (Evidence::Labels { query: question.text, labels: choices.labels() }, true),
    };
    let scores = tools.memory_closeness(evidence, &context)?;
    Ok(scores.filter(|s| s.len() == n).map(|scores| Support { scores, votes }))
}

/// The names of the options in the question as asked (option `i` is label
/// `i`) and in the reordered one (option `i` is label `re.labels[i]`).
pub(super) fn names_in_both_orders<'c>(choices: &'c Choices, re: &Reordered) -> Result<(Vec<&'c str>, Vec<&'c str>)> {
    let labels: Vec<&str> = choices.labels().iter().map(String::as_str).collect();
    re.check(labels.len())?;
    let swapped = re.labels.iter().map(|&j| labels[j]).collect();
    Ok((labels, swapped))
}

/// One line naming the answer the user's records support most, with its
/// score and the others' (by number only: a small model follows the label
/// it reads, so the note names one; labels with no vote are left out):
/// `Closest to this user's own records: [2] (similarity 0.64, against 0.21).`
/// or `Closest to this user's own records: politics (votes 1.12, against 0.40).`
pub(super) fn note(names: &[&str], support: &Support) -> String {
    let scores = &support.scores;
    let mut order: Vec<usize> = (0..names.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let Some((&first, rest)) = order.split_first() else {
        return String::new();
    };
    let others: Vec<String> = rest.iter().filter(|&&i| !support.votes || scores[i] > 0.0).map(|&i| format!("{:.2}", scores[i])).collect();
    let against = if others.is_empty() { String::new() } else { format!(", against {}", others.join(" and ")) };
    let unit = if support.votes { "votes" } else { "similarity" };
    format!("Closest to this user's own records: {} ({unit} {:.2}{against}).", names[first], scores[first])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sim(scores: &[f32]) -> Support {
        Support { scores: scores.to_vec(), votes: false }
    }

    #[test]
    fn the_note_names_the_closest_option_alone() {
        assert_eq!(note(&["[1]", "[2]"], &sim(&[0.21, 0.64])), "Closest to this user's own records: [2] (similarity 0.64, against 0.21).");
        assert_eq!(note(&["a", "b", "c"], &sim(&[0.5, 0.3, 0.9])), "Closest to this user's own records: c (similarity 0.90, against 0.50 and 0.30).");
        assert_eq!(note(&["a", "b"], &sim(&[0.5, 0.5])), "Closest to this user's own records: a (similarity 0.50, against 0.50).", "ties: the first");
        assert_eq!(note(&["a"], &sim(&[0.3])), "Closest to this user's own records: a (similarity 0.30).");
        assert_eq!(note(&[], &sim(&[])), "");
        // Votes: labels no record voted for are left out.
        let votes = Support { scores: vec![0.0, 1.12, 0.4, 0.0], votes: true };
        assert_eq!(note(&["a", "politics", "b", "c"], &votes), "Closest to this user's own records: politics (votes 1.12, against 0.40).");
        let one = Support { scores: vec![0.0, 0.7], votes: true };
        assert_eq!(note(&["a", "b"], &one), "Closest to this user's own records: b (votes 0.70).");
    }

    #[test]
    fn reordered_names_follow_the_label_map() {
        let choices = Choices::new(&["[1]", "[2]"]).unwrap();
        let re = Reordered { text: String::new(), labels: vec![1, 0] };
        let (asked, swapped) = names_in_both_orders(&choices, &re).unwrap();
        assert_eq!((asked, swapped), (vec!["[1]", "[2]"], vec!["[2]", "[1]"]));
        // In the swapped question option 0 (first reference) is `[2]`, so
        // the same scores name the other label first.
        assert_eq!(note(&["[2]", "[1]"], &sim(&[0.21, 0.64])), "Closest to this user's own records: [1] (similarity 0.64, against 0.21).");
        assert!(names_in_both_orders(&choices, &Reordered { text: String::new(), labels: vec![0, 0] }).is_err());
    }
}
