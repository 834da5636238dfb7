//! How close each option of a choice question is to the user's own
//! records, said in the answer turn ([`AgentConfig::answer_turn_closeness`]).
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
use crate::tools::{CallContext, ToolRegistry};

/// The closeness of each of the question's options to the user's memory,
/// when the config asks for it and the question says what its labels
/// stand for; `None` otherwise or when the memory has nothing to compare.
pub(super) fn of_options(tools: &mut ToolRegistry<'_>, config: &AgentConfig, question: &Question<'_>) -> Result<Option<Vec<f32>>> {
    let (true, Some(options)) = (config.answer_turn_closeness, question.options) else {
        return Ok(None);
    };
    let n = config.choices.as_ref().map_or(0, |c| c.labels().len());
    if options.len() != n {
        return Err(AgentError::Config { name: "options", reason: format!("{} option texts for {n} labels", options.len()) });
    }
    let scores = tools.memory_closeness(options, &CallContext { hidden_records: question.hidden_records })?;
    Ok(scores.filter(|s| s.len() == n))
}

/// The names of the options in the question as asked (option `i` is label
/// `i`) and in the reordered one (option `i` is label `re.labels[i]`).
pub(super) fn names_in_both_orders<'c>(choices: &'c Choices, re: &Reordered) -> Result<(Vec<&'c str>, Vec<&'c str>)> {
    let labels: Vec<&str> = choices.labels().iter().map(String::as_str).collect();
    re.check(labels.len())?;
    let swapped = re.labels.iter().map(|&j| labels[j]).collect();
    Ok((labels, swapped))
}

/// One line naming the option closest to the user's records, with its
/// similarity and the others' (by number only: a small model follows the
/// label it reads, so the note names one):
/// `Closest to this user's own records: [2] (similarity 0.64, against 0.21).`
pub(super) fn note(names: &[&str], scores: &[f32]) -> String {
    let mut order: Vec<usize> = (0..names.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let Some((&first, rest)) = order.split_first() else {
        return String::new();
    };
    let others: Vec<String> = rest.iter().map(|&i| format!("{:.2}", scores[i])).collect();
    let against = if others.is_empty() { String::new() } else { format!(", against {}", others.join(" and ")) };
    format!("Closest to this user's own records: {} (similarity {:.2}{against}).", names[first], scores[first])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_note_names_the_closest_option_alone() {
        assert_eq!(note(&["[1]", "[2]"], &[0.21, 0.64]), "Closest to this user's own records: [2] (similarity 0.64, against 0.21).");
        assert_eq!(note(&["a", "b", "c"], &[0.5, 0.3, 0.9]), "Closest to this user's own records: c (similarity 0.90, against 0.50 and 0.30).");
        assert_eq!(note(&["a", "b"], &[0.5, 0.5]), "Closest to this user's own records: a (similarity 0.50, against 0.50).", "ties: the first");
        assert_eq!(note(&["a"], &[0.3]), "Closest to this user's own records: a (similarity 0.30).");
        assert_eq!(note(&[], &[]), "");
    }

    #[test]
    fn reordered_names_follow_the_label_map() {
        let choices = Choices::new(&["[1]", "[2]"]).unwrap();
        let re = Reordered { text: String::new(), labels: vec![1, 0] };
        let (asked, swapped) = names_in_both_orders(&choices, &re).unwrap();
        assert_eq!((asked, swapped), (vec!["[1]", "[2]"], vec!["[2]", "[1]"]));
        // In the swapped question option 0 (first reference) is `[2]`, so
        // the same scores name the other label first.
        assert_eq!(note(&["[2]", "[1]"], &[0.21, 0.64]), "Closest to this user's own records: [1] (similarity 0.64, against 0.21).");
        assert!(names_in_both_orders(&choices, &Reordered { text: String::new(), labels: vec![0, 0] }).is_err());
    }
}
