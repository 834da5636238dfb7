//! What alignment replays, in the task's own shape: each of the user's
//! latest profile items becomes the question the task asks (the builders'
//! instruction with its label list), with the user's real label as the
//! gold, so the persona is judged on exactly the kind of question it will
//! answer.
//!
//! LaMP-1 profiles hold only the user's papers, no question/answer pairs.
//! A replay is built from the profile alone in the task's shape: "for an
//! author who has written paper A (one of the user's papers), which
//! reference is related?", where the related reference is another of the
//! user's own papers (the gold) and the other option a paper from another
//! user's profile; which of `[1]`/`[2]` holds the gold is fixed by the
//! record id, so reruns ask the same questions.

use persona_agent::{Reordered, Replay};
use persona_memory::Record;

use crate::build::{amazon, citation, movies, news};
use crate::task::Task;

/// The replays for a user of `task` from their latest records (`latest`,
/// newest first): at most `n`, oldest first. LaMP-1 needs two of the
/// user's papers and one `distractors` title (papers of other users) per
/// replay; it gives fewer replays (possibly none) when those run short.
///
/// With `both_orders`, a replay whose labels name positions in the
/// question (LaMP-1) carries the question with its options swapped, so
/// that it is answered over both orders as the test question is.
pub fn task_replays(task: Task, latest: &[Record], n: usize, distractors: &[String], both_orders: bool) -> Vec<Replay> {
    let mut replays: Vec<Replay> = match task {
        Task::Citation => citation_replays(latest, n, distractors, both_orders),
        _ => latest
            .iter()
            .take(n)
            .map(|r| {
                let question = match task {
                    Task::MovieTagging => movies::instruction(&r.query),
                    Task::NewsCategorization => news::instruction(&r.query),
                    _ => amazon::instruction(&r.query),
                };
                Replay { question, real: r.response.trim().to_string(), hidden: vec![r.id], reordered: None, options: None }
            })
            .collect(),
    };
    replays.reverse();
    replays
}

fn citation_replays(latest: &[Record], n: usize, distractors: &[String], both_orders: bool) -> Vec<Replay> {
    if latest.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (j, gold) in latest.iter().take(n).enumerate() {
        // The paper the question is about: the user's next paper (cyclically).
        let authored = &latest[(j + 1) % latest.len().min(n + 1)];
        let salt = gold.id.unsigned_abs() as usize;
        let distractor = (0..distractors.len())
            .map(|k| distractors[(salt + j + k) % distractors.len()].trim())
            .find(|d| !d.is_empty() && *d != gold.query.trim() && *d != authored.query.trim());
        let Some(distractor) = distractor else { break };
        let gold_first = gold.id % 2 == 0;
        let (first, second) = if gold_first { (gold.query.trim(), distractor) } else { (distractor, gold.query.trim()) };
        out.push(Replay {
            question: citation::instruction(authored.query.trim(), first, second),
            real: if gold_first { "[1]" } else { "[2]" }.to_string(),
            hidden: vec![gold.id],
            reordered: both_orders.then(|| Reordered { text: citation::instruction(authored.query.trim(), second, first), labels: vec![1, 0] }),
            options: Some(vec![first.to_string(), second.to_string()]),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::task::{MOVIE_TAGS, NEWS_CATEGORIES};

    fn record(id: i64, query: &str, response: &str) -> Record {
        Record { id, query: query.into(), response: response.into(), metadata: serde_json::json!({}), timestamp: Some(id), created_at: 0 }
    }

    #[test]
    fn a_replay_asks_the_task_s_question_with_its_labels_and_gold() {
        let latest = [record(3, "Senate passes the budget", "politics"), record(2, "Lakers win", "sports"), record(1, "Old news", "crime")];
        let r = task_replays(Task::NewsCategorization, &latest, 2, &[], false);
        assert_eq!(r.len(), 2);
        // Oldest first.
        assert_eq!((r[0].real.as_str(), r[0].hidden.as_slice()), ("sports", &[2][..]));
        assert_eq!(r[1].question, news::instruction("Senate passes the budget"));
        assert!(r[1].question.contains("Just answer with the category name") && NEWS_CATEGORIES.iter().all(|c| r[1].question.contains(c)));
        let r = task_replays(Task::MovieTagging, &[record(5, "A robot in space", "sci-fi")], 3, &[], false);
        assert_eq!(r.len(), 1);
        assert!(r[0].question.contains("Which tag does this movie relate to") && MOVIE_TAGS.iter().all(|t| r[0].question.contains(t)));
        assert!(r[0].question.ends_with("description: A robot in space"));
        assert_eq!(r[0].real, "sci-fi");
        let r = task_replays(Task::ProductRating, &[record(7, "Broke after a day", " 1 ")], 3, &[], false);
        assert!(r[0].question.contains("just answer with 1, 2, 3, 4, or 5") && r[0].question.ends_with("review: Broke after a day"));
        assert_eq!(r[0].real, "1");
    }

    #[test]
    fn citation_replays_come_from_the_profile_alone() {
        let latest = [record(10, "Neural parsing", "Neural parsing"), record(9, "CRF tagging", "CRF tagging"), record(8, "Chunking", "Chunking")];
        let others = ["Protein folding".to_string(), "Galaxy surveys".to_string()];
        let r = task_replays(Task::Citation, &latest, 2, &others, false);
        assert_eq!(r.len(), 2);
        for replay in &r {
            assert!(replay.question.starts_with("For an author who has written the paper with the title"));
            assert!(replay.question.contains("Just answer with [1] or [2] without explanation."));
            assert!(replay.real == "[1]" || replay.real == "[2]");
            // The gold option is the user's own paper; the other is another user's.
            let gold_pos = replay.question.find(&format!("{}: \"", replay.real)).unwrap();
            let gold_title = replay.question[gold_pos + 6..].split('"').next().unwrap();
            let gold = latest.iter().find(|p| p.query == gold_title).unwrap();
            assert_eq!(replay.hidden, vec![gold.id]);
            assert!(others.iter().any(|o| replay.question.contains(o.as_str())));
            // The paper asked about is another of the user's papers, not the gold.
            let asked = replay.question.split('"').nth(1).unwrap();
            assert!(latest.iter().any(|p| p.query == asked) && asked != gold_title);
        }
        // Id 10 is even: gold first; id 9 odd: gold second. Oldest first.
        assert_eq!(r[0].real, "[2]");
        assert_eq!(r[1].real, "[1]");
        assert!(r.iter().all(|replay| replay.reordered.is_none()));
        // In both orders each replay also carries its question with the two
        // options swapped, the labels exchanged.
        let both = task_replays(Task::Citation, &latest, 2, &others, true);
        for (one, two) in r.iter().zip(&both) {
            let re = two.reordered.as_ref().unwrap();
            assert_eq!((&one.question, &one.real), (&two.question, &two.real));
            assert_eq!(re.labels, [1, 0]);
            assert_eq!(Some(re.text.clone()), crate::task::swap_options(&one.question));
            // The labels stand for the two titles as asked.
            assert_eq!(two.options.as_ref(), Task::Citation.options(&one.question).as_ref());
        }
        assert!(task_replays(Task::Citation, &latest[..1], 2, &others, false).is_empty(), "one paper is not enough");
        assert!(task_replays(Task::Citation, &latest, 2, &[], false).is_empty(), "no other user's papers");
    }
}
