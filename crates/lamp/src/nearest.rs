//! `nearest`: a reference line with no language model. The sentence
//! encoder alone answers from the user's own records: where the labels
//! stand for options written in the question (LaMP-1's two references),
//! the option closest to any of the user's records (the closeness
//! PersonaAgent's answer turn reports with `--answer-turn-closeness`);
//! otherwise the label of the user's K records most similar to the input,
//! by a vote weighted by similarity. It says how much of a method's score
//! the user's nearest records already give.

use persona_agent::orders::best;
use persona_agent::tools::{CallContext, Evidence, MemorySearch, Tool};
use persona_agent::Choices;
use persona_engine::Encoder;
use persona_memory::Memory;

use crate::error::Result;

/// The label the user's nearest records point to (see the module docs);
/// without labels (free-text runs) the response of the most similar
/// record. A user with no records (or none with a label) gets the first
/// label.
pub fn answer(
    memory: &mut Memory,
    encoder: &dyn Encoder,
    user: &str,
    input: &str,
    choices: Option<&Choices>,
    options: Option<&[String]>,
    k: usize,
) -> Result<String> {
    let Some(c) = choices else {
        let hits = memory.search(user, input, 1, encoder)?;
        return Ok(hits.into_iter().next().map(|h| h.record.response.trim().to_string()).unwrap_or_default());
    };
    let evidence = match options {
        Some(options) => Evidence::Options(options),
        None => Evidence::Labels { query: input, labels: c.labels() },
    };
    let scores = MemorySearch::new(memory, encoder, user, k, 0).closeness(evidence, &CallContext::default())?;
    let at = scores.as_deref().and_then(best).unwrap_or(0);
    Ok(c.labels().get(at).cloned().unwrap_or_default())
}
