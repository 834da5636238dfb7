//! The persona: a user's system prompt, made of a role statement, a
//! description of the user (initialised from the semantic memory, rewritten
//! by alignment) and the tool-use rules. Every version is stored with its
//! parent and the feedback that produced it.

use persona_memory::semantic::{counts_line, COUNTS_LINE_PREFIX};
use persona_memory::{Memory, PersonaVersion, SemanticConfig, Summarizer, TaskKind};
use serde::Serialize;

use crate::error::{AgentError, Result};
use crate::prompts::{PERSONA_ROLE, PERSONA_RULES};

const PROFILE_HEADING: &str = "About this user:";
const RULES_HEADING: &str = "How to work:";

/// Builds the persona text from a description of the user.
pub fn compose(profile: &str) -> String {
    format!("{}\n\n{PROFILE_HEADING}\n{}\n\n{RULES_HEADING}\n{}", PERSONA_ROLE.trim(), profile.trim(), PERSONA_RULES.trim())
}

/// The description-of-the-user part of a persona text (the whole text when
/// it was not made by [`compose`]).
pub fn profile_of(text: &str) -> &str {
    let after = text.split_once(PROFILE_HEADING).map_or(text, |(_, rest)| rest);
    after.split_once(RULES_HEADING).map_or(after, |(profile, _)| profile).trim()
}

/// Why a persona rewrite was refused.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum Rejection {
    /// The rewrite says nothing about the user.
    #[error("the rewritten description is empty")]
    Empty,
    /// The tool-use rules are missing or changed.
    #[error("the rewrite drops or changes the tool-use rules")]
    MissingRules,
    /// The persona would be too long.
    #[error("the persona would take {tokens} tokens, over the budget of {max}")]
    TooLong {
        /// Its length in tokens.
        tokens: usize,
        /// The budget.
        max: usize,
    },
    /// The rewrite copies a replayed record or a feedback instead of
    /// describing the user.
    #[error("the rewrite copies {from} verbatim: \"{excerpt}\"")]
    Copied {
        /// What it copies: `record`, `feedback` or `replay` (it talks about
        /// the replay itself: real or simulated answers).
        from: &'static str,
        /// The copied words.
        excerpt: String,
    },
    /// The rewrite scores worse on the replays than the current persona.
    #[error("the rewrite scores {candidate} on the replays, the current persona {current}")]
    Worse {
        /// The rewrite's score.
        candidate: f64,
        /// The current persona's score.
        current: f64,
    },
    /// The rewrite scores only as well as the current persona on the
    /// replays, and the guard asks for better
    /// ([`crate::AlignConfig::strict_score_guard`]).
    #[error("the rewrite scores {score} on the replays, no better than the current persona")]
    NoBetter {
        /// Both personas' score.
        score: f64,
    },
}

impl Rejection {
    /// A short name of the guard that refused (`empty`, `copied`, ...).
    pub fn guard(&self) -> &'static str {
        match self {
            Rejection::Empty => "empty",
            Rejection::MissingRules => "missing_rules",
            Rejection::TooLong { .. } => "too_long",
            Rejection::Copied { .. } => "copied",
            Rejection::Worse { .. } => "worse",
            Rejection::NoBetter { .. } => "no_better",
        }
    }
}

/// Words that copying is measured in: a run of this many words of a
/// replayed question in the description is a copied record.
pub const COPY_RUN_WORDS: usize = 8;

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Feedback sentences shorter than this many words are not counted as
/// copies (short phrases recur by chance).
pub const FEEDBACK_SENTENCE_WORDS: usize = 6;

/// The share of a description's words that may come from whole feedback
/// sentences pasted into it. A small writer often keeps a sentence of good
/// advice ("The user tags dark comedies as satire") among its own words,
/// which is what the feedback is for; a description made mostly of pasted
/// feedback describes the replays, not the user.
pub const FEEDBACK_COPY_SHARE: f64 = 0.5;

/// Checks that a persona's description describes the user instead of
/// copying what alignment showed the writer: no run of
/// [`COPY_RUN_WORDS`] words of a replayed question (`records`), at most
/// [`FEEDBACK_COPY_SHARE`] of its words in whole feedback sentences of
/// [`FEEDBACK_SENTENCE_WORDS`] words or more (`feedback`), and no talk of
/// the replay's real or simulated answers.
pub fn check_copies(text: &str, records: &[&str], feedback: &[&str]) -> Result<(), Rejection> {
    let profile = profile_of(text);
    let lower = profile.to_lowercase();
    for phrase in ["real answer", "real response", "simulated answer", "simulated response", "the assistant answered"] {
        if lower.contains(phrase) {
            return Err(Rejection::Copied { from: "replay", excerpt: phrase.to_string() });
        }
    }
    let words = words_of(profile);
    let runs: std::collections::HashSet<&[String]> = words.windows(COPY_RUN_WORDS).collect();
    for record in records {
        let record_words = words_of(record);
        if let Some(run) = record_words.windows(COPY_RUN_WORDS).find(|w| runs.contains(w)) {
            return Err(Rejection::Copied { from: "record", excerpt: run.join(" ") });
        }
    }
    let joined = format!(" {} ", words.join(" "));
    let mut pasted = std::collections::HashSet::new();
    let mut first = None;
    for sentence in feedback.iter().flat_map(|f| f.split(['.', '!', '?', '\n'])) {
        let sentence_words = words_of(sentence);
        let run = sentence_words.join(" ");
        if sentence_words.len() >= FEEDBACK_SENTENCE_WORDS && joined.contains(&format!(" {run} ")) && pasted.insert(run) {
            first.get_or_insert_with(|| sentence.trim().to_string());
        }
    }
    let pasted_words: usize = pasted.iter().map(|run| run.split(' ').count()).sum();
    match first {
        Some(excerpt) if pasted_words as f64 > FEEDBACK_COPY_SHARE * words.len() as f64 => Err(Rejection::Copied { from: "feedback", excerpt }),
        _ => Ok(()),
    }
}

/// Checks a persona text: a non-empty description, the tool rules intact,
/// and at most `max_tokens` tokens.
pub fn check(text: &str, max_tokens: usize, count_tokens: &dyn Fn(&str) -> Result<usize>) -> Result<Result<(), Rejection>> {
    if profile_of(text).is_empty() {
        return Ok(Err(Rejection::Empty));
    }
    let normalise = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if !normalise(text).contains(&normalise(PERSONA_RULES)) {
        return Ok(Err(Rejection::MissingRules));
    }
    let tokens = count_tokens(text)?;
    if tokens > max_tokens {
        return Ok(Err(Rejection::TooLong { tokens, max: max_tokens }));
    }
    Ok(Ok(()))
}

/// Turns a model's rewrite of the persona `current` into a persona text:
/// the model writes the description only; if it wrote a whole persona
/// anyway, its description part is taken and the standard role and rules
/// are put around it. The label-counts line of the current description
/// (counted from the memory, see `SemanticConfig::counts_in_profile`) is
/// kept as it was: a rewrite describes the user, it does not recount, and
/// any counts line the model wrote itself is dropped.
pub fn from_rewrite(rewrite: &str, current: &str) -> String {
    let mut profile = profile_of(rewrite).to_string();
    // A rewrite that restates the rules must not carry its own version of them.
    if let Some(i) = profile.find(RULES_HEADING) {
        profile.truncate(i);
    }
    let described: Vec<&str> = profile.lines().filter(|line| !line.trim_start().starts_with(COUNTS_LINE_PREFIX)).collect();
    let described = described.join("\n");
    let described = described.trim();
    if described.is_empty() {
        // Still check the result: an empty description is rejected.
        return format!("{}\n\n{PROFILE_HEADING}\n\n\n{RULES_HEADING}\n{}", PERSONA_ROLE.trim(), PERSONA_RULES.trim());
    }
    match counts_line(profile_of(current)) {
        Some(counts) => compose(&format!("{counts}\n{described}")),
        None => compose(described),
    }
}

/// The user's current persona, creating version 1 from the semantic memory
/// when there is none (and the semantic memory from the episodic records
/// when that is missing too).
pub fn current_or_init(model: &mut dyn Summarizer, memory: &mut Memory, user: &str, semantic: &SemanticConfig) -> Result<PersonaVersion> {
    let u = memory.store().require_user(user)?;
    if let Some(p) = memory.store().latest_persona(&u)? {
        return Ok(p);
    }
    let profile = match memory.store().latest_semantic_profile(&u, None)? {
        Some(p) => p.summary,
        None => {
            let records = memory.store().records(&u)?;
            if records.is_empty() {
                return Err(AgentError::NoPersona {
                    user: user.to_string(),
                    reason: "no history to learn from; import some with `persona user import`".into(),
                });
            }
            let task = TaskKind::detect(&records);
            let summary = persona_memory::semantic::summarize(model, &records, task, semantic)?;
            let model_name = model.model_name();
            memory.store_mut().add_semantic_profile(&u, task.name(), task.prompt(), &model_name, &summary.text, records.len() as i64)?;
            summary.text
        }
    };
    Ok(memory.store_mut().add_persona_version(&u, &compose(&profile), None, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Result<usize> {
        Ok(s.split_whitespace().count())
    }

    #[test]
    fn compose_and_extract_round_trip() {
        let text = compose("Likes sci-fi.\nHates horror.");
        assert_eq!(profile_of(&text), "Likes sci-fi.\nHates horror.");
        assert!(text.starts_with(PERSONA_ROLE.trim()));
        assert!(check(&text, 1000, &words).unwrap().is_ok());
    }

    #[test]
    fn guards_reject_empty_missing_rules_and_over_budget() {
        assert_eq!(check(&from_rewrite("   ", ""), 1000, &words).unwrap(), Err(Rejection::Empty));
        assert_eq!(check("This user likes jazz.", 1000, &words).unwrap(), Err(Rejection::MissingRules));
        let edited = compose("Likes jazz.").replace("at least once", "never");
        assert_eq!(check(&edited, 1000, &words).unwrap(), Err(Rejection::MissingRules));
        let long = compose(&"jazz ".repeat(500));
        assert!(matches!(check(&long, 300, &words).unwrap(), Err(Rejection::TooLong { max: 300, .. })));
    }

    #[test]
    fn copies_of_records_and_feedback_are_rejected() {
        let record = "Which category does this article relate to? article: Senate passes the budget bill after a long night of votes";
        let feedback = ["The user files budget stories under politics. Keep that in mind."];
        let copied_record = compose("This user reads: senate passes the budget bill after a long night of votes.");
        assert!(matches!(check_copies(&copied_record, &[record], &feedback), Err(Rejection::Copied { from: "record", .. })));
        let copied_feedback = compose("The user files budget stories under politics. They like sports too.");
        assert!(matches!(check_copies(&copied_feedback, &[record], &feedback), Err(Rejection::Copied { from: "feedback", .. })));
        let quoted = compose("This user's real answer is \"politics.\"");
        assert!(matches!(check_copies(&quoted, &[record], &feedback), Err(Rejection::Copied { from: "replay", .. })));
        let fine = compose("This user files news about government, budgets and elections under politics.");
        assert_eq!(check_copies(&fine, &[record], &feedback), Ok(()));
        // The pasted sentence of advice above is 7 of 11 words; among more
        // of the writer's own words (7 of 16) it is kept.
        let advice = compose("The user files budget stories under politics. Elections, parliaments and taxes go there as well, always.");
        assert_eq!(check_copies(&advice, &[record], &feedback), Ok(()));
        assert_eq!(Rejection::Copied { from: "record", excerpt: String::new() }.guard(), "copied");
    }

    #[test]
    fn a_rewrite_keeps_the_standard_rules() {
        // The model wrote a whole persona with its own (weaker) rules.
        let rewrite = format!("{PROFILE_HEADING}\nThis user loves jazz.\n\n{RULES_HEADING}\nJust answer.");
        let text = from_rewrite(&rewrite, &compose("This user likes music."));
        assert_eq!(profile_of(&text), "This user loves jazz.");
        assert!(check(&text, 1000, &words).unwrap().is_ok());
        assert_eq!(profile_of(&from_rewrite("This user reads history books.", "")), "This user reads history books.");
    }

    #[test]
    fn a_rewrite_keeps_the_counted_labels_and_cannot_recount() {
        let counts = "- Past answers (all 31 entries): 5 (18 times), 4 (10 times), 3 (2 times), 2 (once)";
        let current = compose(&format!("{counts}\n- Very generous overall."));
        // The writer dropped the counts line (as the 1.5B writer did on LaMP-3 dev user 4).
        assert_eq!(
            profile_of(&from_rewrite("This user is generous with quality products.", &current)),
            format!("{counts}\nThis user is generous with quality products.")
        );
        // ... or garbled it: its own version goes, the counted one stays.
        let garbled = "- Past answers (all 31 entries): 3 (18 times)\n- Rates durable things high.";
        assert_eq!(profile_of(&from_rewrite(garbled, &current)), format!("{counts}\n- Rates durable things high."));
        // Kept word for word, the rewrite equals itself (so `unchanged` still stops alignment).
        assert_eq!(from_rewrite(profile_of(&current), &current), current);
        // Only counts: nothing describes the user.
        assert_eq!(check(&from_rewrite(counts, &current), 1000, &words).unwrap(), Err(Rejection::Empty));
        // Without counts in the current persona, none are added.
        assert_eq!(profile_of(&from_rewrite("Likes jazz.", &compose("Likes music."))), "Likes jazz.");
    }
}
