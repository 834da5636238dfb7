//! Generation requests and results: limits, stop rules, timings.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::sampling::SamplingParams;

/// What to do when the prompt and the requested completion do not fit the
/// model's context window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContextPolicy {
    /// Refuse with [`EngineError::ContextOverflow`].
    #[default]
    Error,
    /// Drop the oldest prompt tokens until prompt + max tokens fit.
    TruncateStart,
}

/// Parameters of one generation call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// Maximum number of new tokens.
    pub max_tokens: usize,
    /// Generation stops before any of these strings (they are not returned).
    pub stop: Vec<String>,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// What to do with a prompt that is too long.
    pub context_policy: ContextPolicy,
    /// Keep generating through end-of-turn tokens (for benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams { max_tokens: 256, stop: Vec::new(), sampling: SamplingParams::default(), context_policy: ContextPolicy::Error, ignore_eos: false }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted an end-of-turn / EOS token.
    EndOfTurn,
    /// A stop string was produced.
    StopString,
    /// `max_tokens` was reached.
    Length,
    /// The streaming callback asked to stop.
    Cancelled,
    /// A decoding constraint was satisfied (the structured text is complete).
    Complete,
}

/// The result of a generation call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text (stop strings and end tokens removed).
    pub text: String,
    /// The generated token ids.
    pub tokens: Vec<u32>,
    /// Number of prompt tokens actually fed to the model.
    pub prompt_tokens: usize,
    /// How many of the prompt tokens were already in the KV cache (a prompt
    /// that extends the previous request's tokens is not prefilled again).
    #[serde(default)]
    pub cached_tokens: usize,
    /// Number of generated tokens.
    pub completion_tokens: usize,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Time to process the prompt and produce the first token's logits, ms.
    pub prefill_ms: f64,
    /// Time spent generating after the first token's logits, ms.
    pub decode_ms: f64,
}

impl Generation {
    /// Prompt tokens per second during prefill.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_ms)
    }

    /// Generated tokens per second during decode (the first token comes from
    /// the prefill, so it is not counted).
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.completion_tokens.saturating_sub(1), self.decode_ms)
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms <= 0.0 {
        0.0
    } else {
        n as f64 * 1000.0 / ms
    }
}

/// Applies the context policy: returns the prompt tokens to feed.
pub(crate) fn fit_context(prompt: Vec<u32>, max_tokens: usize, context_length: usize, policy: ContextPolicy) -> Result<Vec<u32>> {
    if max_tokens >= context_length {
        return Err(EngineError::InvalidParameter {
            name: "max_tokens",
            reason: format!("{max_tokens} does not leave room for a prompt in a context of {context_length} tokens"),
        });
    }
    if prompt.len() + max_tokens <= context_length {
        return Ok(prompt);
    }
    match policy {
        ContextPolicy::Error => Err(EngineError::ContextOverflow { prompt_tokens: prompt.len(), max_tokens, context_length }),
        ContextPolicy::TruncateStart => {
            let keep = context_length - max_tokens;
            Ok(prompt[prompt.len() - keep..].to_vec())
        }
    }
}

/// Tracks generated text against stop strings and decides what may be
/// streamed: text that could still become a stop string is held back.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

impl StopMatcher {
    pub(crate) fn new(stops: &[String]) -> Self {
        StopMatcher { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), text: String::new(), emitted: 0 }
    }

    /// Adds a decoded piece; returns the text that is now safe to stream and
    /// whether a stop string was hit.
    pub(crate) fn push(&mut self, piece: &str) -> (String, bool) {
        let search_from = self.emitted;
        self.text.push_str(piece);
        let hit = self.stops.iter().filter_map(|s| self.text[search_from..].find(s.as_str()).map(|i| i + search_from)).min();
        if let Some(end) = hit {
            let out = self.text[self.emitted..end].to_string();
            self.text.truncate(end);
            self.emitted = end;
            return (out, true);
        }
        let hold = self.held_back_len();
        let safe = self.text.len() - hold;
        let out = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        (out, false)
    }

    /// Text not yet streamed (at the end of generation it is all safe).
    pub(crate) fn flush(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Length of the longest suffix of the text that starts some stop string.
    fn held_back_len(&self) -> usize {
        let tail = &self.text[self.emitted..];
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in tail.char_indices() {
                let suffix = &tail[i..];
                if suffix.len() > best && stop.starts_with(suffix) {
                    best = suffix.len();
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_cut_and_partial_matches_held_back() {
        let mut m = StopMatcher::new(&["\nUser:".to_string()]);
        assert_eq!(m.push("Hello"), ("Hello".to_string(), false));
        assert_eq!(m.push(" world\nUs"), (" world".to_string(), false));
        assert_eq!(m.push("er: more"), (String::new(), true));
        assert_eq!(m.text(), "Hello world");
    }

    #[test]
    fn held_back_text_is_released_when_it_diverges() {
        let mut m = StopMatcher::new(&["STOP".to_string()]);
        assert_eq!(m.push("ST").0, "");
        assert_eq!(m.push("ay").0, "STay");
        assert_eq!(m.push("S").0, "");
        assert_eq!(m.flush(), "S");
    }

    #[test]
    fn context_policy_errors_or_truncates() {
        let prompt: Vec<u32> = (0..10).collect();
        let err = fit_context(prompt.clone(), 5, 12, ContextPolicy::Error).unwrap_err();
        assert!(matches!(err, EngineError::ContextOverflow { prompt_tokens: 10, max_tokens: 5, context_length: 12 }));
        assert_eq!(fit_context(prompt.clone(), 5, 12, ContextPolicy::TruncateStart).unwrap(), (3..10).collect::<Vec<_>>());
        assert_eq!(fit_context(prompt, 2, 12, ContextPolicy::Error).unwrap().len(), 10);
    }
}
