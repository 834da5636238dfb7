//! `nearest`: a reference line with no language model. The sentence
//! encoder alone answers from the user's own records: where the labels
//! stand for options written in the question (LaMP-1's two references),
//! the option closest to any of the user's records (the closeness
//! PersonaAgent's answer turn reports with `--answer-turn-closeness`);
//! otherwise the label of the user's K records most similar to the input,
//! by a vote weighted by similarity. It says how much of a method's score
//! the user's nearest records already give.

use persona_agent::tools::{CallContext, MemorySearch, Tool};
use persona_agent::Choices;
use persona_engine::Encoder;
use persona_memory::Memory;

use crate::error::Result;

/// The label the user's nearest records point to (see the module docs);
/// without labels (free-text runs) the response of the most similar
/// record. A user with no records gets the first label.
pub fn answer(
    memory: &mut Memory,
    encoder: &dyn Encoder,
    user: &str,
    input: &str,
    choices: Option<&Choices>,
    options: Option<&[String]>,
    k: usize,
) -> Result<String> {
    let first = choices.and_then(|c| c.labels().first().cloned()).unwrap_or_default();
    if let (Some(c), Some(options)) = (choices, options) {
        let scores = MemorySearch::new(memory, encoder, user, 1, 0).closeness(options, &CallContext::default())?;
        let best = scores.as_deref().and_then(persona_agent::orders::best);
        return Ok(best.and_then(|i| c.labels().get(i).cloned()).unwrap_or(first));
    }
    let hits = memory.search(user, input, k.max(1), encoder)?;
    let Some(c) = choices else {
        return Ok(hits.into_iter().next().map(|h| h.record.response.trim().to_string()).unwrap_or_default());
    };
    let votes: Vec<(f32, &str)> = hits.iter().map(|h| (h.score, h.record.response.as_str())).collect();
    Ok(vote(c, &votes).unwrap_or(&first).to_string())
}

/// The label with the largest summed similarity among `hits` (similarity,
/// response), responses that are no label left out; ties go to the label
/// of the more similar record. `None` if no response is a label.
fn vote<'c>(choices: &'c Choices, hits: &[(f32, &str)]) -> Option<&'c str> {
    let mut totals: Vec<(&str, f32, f32)> = Vec::new(); // label, sum, best single score
    for &(score, response) in hits {
        let Some(label) = choices.find(response) else { continue };
        match totals.iter_mut().find(|(l, _, _)| *l == label) {
            Some(t) => {
                t.1 += score;
                t.2 = t.2.max(score);
            }
            None => totals.push((label, score, score)),
        }
    }
    totals.into_iter().max_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)).then(std::cmp::Ordering::Greater)).map(|(l, _, _)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vote_sums_similarities_per_label() {
        let c = Choices::new(&["politics", "sports", "food"]).unwrap();
        // Two weaker politics records outweigh one strong sports record.
        assert_eq!(vote(&c, &[(0.8, "sports"), (0.5, "politics"), (0.45, "politics")]), Some("politics"));
        assert_eq!(vote(&c, &[(0.8, "sports"), (0.5, "politics"), (0.2, "food")]), Some("sports"));
        // Responses that are no label do not vote; nothing left: none.
        assert_eq!(vote(&c, &[(0.9, "science"), (0.1, " food ")]), Some("food"));
        assert_eq!(vote(&c, &[(0.9, "science")]), None);
        assert_eq!(vote(&c, &[]), None);
        // Equal sums: the label whose best record is closer.
        assert_eq!(vote(&c, &[(0.6, "food"), (0.3, "sports"), (0.3, "sports")]), Some("food"));
        let ratings = Choices::new(&["1", "2", "3", "4", "5"]).unwrap();
        assert_eq!(vote(&ratings, &[(0.7, "4"), (0.6, "5"), (0.5, "5")]), Some("5"));
    }
}
