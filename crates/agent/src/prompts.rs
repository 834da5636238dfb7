//! The agent's prompts, one file each under `crates/agent/prompts/`.

/// The persona's role statement.
pub const PERSONA_ROLE: &str = include_str!("../prompts/persona_role.txt");
/// The persona's tool-use rules.
pub const PERSONA_RULES: &str = include_str!("../prompts/persona_rules.txt");
/// How the action loop's steps are written (`{{tools}}`).
pub const AGENT_FORMAT: &str = include_str!("../prompts/agent_format.txt");
/// System prompt of the feedback call of alignment.
pub const FEEDBACK_SYSTEM: &str = include_str!("../prompts/feedback_system.txt");
/// User turn of the feedback call (`{{persona}}`, `{{query}}`,
/// `{{simulated}}`, `{{real}}`).
pub const FEEDBACK_USER: &str = include_str!("../prompts/feedback_user.txt");
/// System prompt of the persona rewrite.
pub const REWRITE_SYSTEM: &str = include_str!("../prompts/rewrite_system.txt");
/// User turn of the persona rewrite (`{{profile}}`, `{{feedback}}`).
pub const REWRITE_USER: &str = include_str!("../prompts/rewrite_user.txt");
/// The user turn of the answer turn (`{{question}}`): the question asked
/// again after the tool results, as the one-call methods ask it.
pub const ANSWER_TURN: &str = include_str!("../prompts/answer_turn.txt");
/// The answer turn's user turn with the records the run's memory searches
/// returned (`{{records}}`, `{{question}}`), as the RAG prompt shows them.
pub const ANSWER_TURN_RECORDS: &str = include_str!("../prompts/answer_turn_records.txt");
/// How the assistant's reply in the answer turn begins: without it a model
/// that has just followed the step format goes on with `Thought:`, and a
/// label forced in its place is noise. The label follows after a space
/// ([`ChoiceGrammar::after_space`](crate::ChoiceGrammar::after_space)).
pub const ANSWER_TURN_START: &str = "Final answer:";
/// Appended when the step limit ends the loop without an answer.
pub const FALLBACK_ANSWER: &str = include_str!("../prompts/fallback_answer.txt");

pub use persona_memory::text::fill;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_their_placeholders() {
        assert!(AGENT_FORMAT.contains("{{tools}}"));
        for p in ["{{persona}}", "{{query}}", "{{simulated}}", "{{real}}"] {
            assert!(FEEDBACK_USER.contains(p), "{p}");
        }
        assert!(ANSWER_TURN.contains("{{question}}"));
        assert!(ANSWER_TURN_RECORDS.contains("{{question}}") && ANSWER_TURN_RECORDS.contains("{{records}}"));
        assert!(REWRITE_USER.contains("{{profile}}") && REWRITE_USER.contains("{{feedback}}"));
        assert_eq!(fill("a {{x}} b {{x}}", &[("x", "1")]), "a 1 b 1");
    }
}
