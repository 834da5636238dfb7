//! Answers that do not depend on the order of a question's options.
//!
//! Where a task's labels name positions in the question (LaMP-1: "which
//! reference, `[1]` or `[2]`?"), a small model's choice follows the
//! position more than the content: asked as is, the 0.5B model answers
//! `[1]` for every user. Asking the question a second time with the
//! options in the other order and adding each option's scores from both
//! orders cancels that bias: option A's score is the model's
//! log-probability of A's label where A comes first plus that of A's label
//! where A comes second. The label scores come from teacher forcing
//! ([`AgentLlm::score_choices`]), so nothing is sampled.

use serde::Serialize;

use crate::choice::Choices;
use crate::error::{AgentError, Result};
use crate::llm::AgentLlm;

/// The same question with its options in another order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reordered {
    /// The question's text with the options reordered.
    pub text: String,
    /// For each label (by its index in the task's [`Choices`]), the index
    /// of the label that names the same option in the reordered text
    /// (LaMP-1's swap: `[1]` is `[2]` there and `[2]` is `[1]`: `[1, 0]`).
    pub labels: Vec<usize>,
}

impl Reordered {
    /// Checks that `labels` maps the `n` labels one to one.
    pub fn check(&self, n: usize) -> Result<()> {
        let mut seen = vec![false; n];
        let ok = self.labels.len() == n && self.labels.iter().all(|&j| j < n && !std::mem::replace(&mut seen[j], true));
        if ok {
            return Ok(());
        }
        Err(AgentError::Config { name: "reordered", reason: format!("{:?} does not map {n} labels one to one", self.labels) })
    }

    /// Each label's score over both orders: its score in the question as
    /// asked plus the score of its counterpart in the reordered one.
    pub fn combine(&self, asked: &[f32], reordered: &[f32]) -> Result<Vec<f32>> {
        self.check(asked.len())?;
        if reordered.len() != asked.len() {
            return Err(AgentError::Config { name: "reordered", reason: format!("{} scores for {} labels", reordered.len(), asked.len()) });
        }
        Ok(asked.iter().zip(&self.labels).map(|(a, &j)| a + reordered[j]).collect())
    }
}

/// The index of the highest score (the first of equal ones).
pub fn best(scores: &[f32]) -> Option<usize> {
    scores
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, &s)| match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        })
        .map(|(i, _)| i)
}

/// The label chosen over both orders, and each label's combined score.
pub fn choose(choices: &Choices, re: &Reordered, asked: &[f32], reordered: &[f32]) -> Result<(String, Vec<f32>)> {
    let scores = re.combine(asked, reordered)?;
    let label = best(&scores).and_then(|i| choices.labels().get(i)).cloned().unwrap_or_default();
    Ok((label, scores))
}

/// Answers one (system, user) turn with a label of `choices`, asked in
/// both orders (`user`, then `re.text`) and scored over both.
pub fn complete_choice_both_orders(model: &mut dyn AgentLlm, system: &str, user: &str, re: &Reordered, choices: &Choices) -> Result<(String, Vec<f32>)> {
    re.check(choices.labels().len())?;
    let asked = model.start(system, user)?;
    let asked = model.score_choices(&asked, "", choices)?;
    let other = model.start(system, &re.text)?;
    let other = model.score_choices(&other, "", choices)?;
    choose(choices, re, &asked, &other)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn swap() -> Reordered {
        Reordered { text: "B or A?".into(), labels: vec![1, 0] }
    }

    #[test]
    fn a_position_bias_cancels_over_both_orders() {
        let choices = Choices::new(&["[1]", "[2]"]).unwrap();
        // Asked as is, [1] wins by 1.0; reordered, [1] (now option B) wins
        // by 0.2: the model prefers the first place, and A over B.
        let (label, scores) = choose(&choices, &swap(), &[-0.3, -1.3], &[-0.6, -0.8]).unwrap();
        assert_eq!(label, "[1]");
        assert_eq!(scores, vec![-0.3 + -0.8, -1.3 + -0.6]);
        // Both orders answer [1], but B loses less in second place than A
        // does: B is the answer.
        let (label, _) = choose(&choices, &swap(), &[-0.2, -1.5], &[-0.05, -3.0]).unwrap();
        assert_eq!(label, "[2]");
    }

    #[test]
    fn a_map_that_is_not_one_to_one_is_refused() {
        let bad = Reordered { text: String::new(), labels: vec![0, 0] };
        assert!(bad.check(2).is_err());
        assert!(Reordered { labels: vec![1], ..bad.clone() }.check(2).is_err());
        assert!(Reordered { labels: vec![2, 0], ..bad }.check(2).is_err());
        assert!(swap().combine(&[0.0, 0.0], &[0.0]).is_err());
    }

    #[test]
    fn the_best_score_is_the_first_of_equals() {
        assert_eq!(best(&[-1.0, -0.5, -0.5]), Some(1));
        assert_eq!(best(&[]), None);
    }
}
