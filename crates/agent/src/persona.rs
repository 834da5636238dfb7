//! The persona: a user's system prompt, made of a role statement, a
//! description of the user (initialised from the semantic memory, rewritten
//! by alignment) and the tool-use rules. Every version is stored with its
//! parent and the feedback that produced it.

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
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

/// Turns a model's rewrite into a persona text: the model writes the
/// description only; if it wrote a whole persona anyway, its description
/// part is taken and the standard role and rules are put around it.
pub fn from_rewrite(rewrite: &str) -> String {
    let mut profile = profile_of(rewrite).to_string();
    // A rewrite that restates the rules must not carry its own version of them.
    if let Some(i) = profile.find(RULES_HEADING) {
        profile.truncate(i);
    }
    let profile = profile.trim();
    if profile.is_empty() {
        // Still check the result: an empty description is rejected.
        return format!("{}\n\n{PROFILE_HEADING}\n\n\n{RULES_HEADING}\n{}", PERSONA_ROLE.trim(), PERSONA_RULES.trim());
    }
    compose(profile)
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
                return Err(AgentError::NoPersona { user: user.to_string(), reason: "no history to learn from; import some with `persona user import`".into() });
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
        assert_eq!(check(&from_rewrite("   "), 1000, &words).unwrap(), Err(Rejection::Empty));
        assert_eq!(check("This user likes jazz.", 1000, &words).unwrap(), Err(Rejection::MissingRules));
        let edited = compose("Likes jazz.").replace("at least once", "never");
        assert_eq!(check(&edited, 1000, &words).unwrap(), Err(Rejection::MissingRules));
        let long = compose(&"jazz ".repeat(500));
        assert!(matches!(check(&long, 300, &words).unwrap(), Err(Rejection::TooLong { max: 300, .. })));
    }

    #[test]
    fn a_rewrite_keeps_the_standard_rules() {
        // The model wrote a whole persona with its own (weaker) rules.
        let rewrite = format!("{PROFILE_HEADING}\nThis user loves jazz.\n\n{RULES_HEADING}\nJust answer.");
        let text = from_rewrite(&rewrite);
        assert_eq!(profile_of(&text), "This user loves jazz.");
        assert!(check(&text, 1000, &words).unwrap().is_ok());
        assert_eq!(profile_of(&from_rewrite("This user reads history books.")), "This user reads history books.");
    }
}
