//! Choosing the next token from the logits: greedy, temperature, top-k,
//! top-p, repeat penalty, all seeded.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens (None: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p (None: all).
    pub top_p: Option<f64>,
    /// Seed of the random generator.
    pub seed: u64,
    /// Penalty for tokens seen in the last `repeat_last_n` tokens (1.0: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_k: None, top_p: None, seed: 299_792_458, repeat_penalty: 1.0, repeat_last_n: 64 }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams::default()
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(EngineError::InvalidParameter { name: "temperature", reason: format!("{} is not a finite number >= 0", self.temperature) });
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(EngineError::InvalidParameter { name: "top_p", reason: format!("{p} is not in (0, 1]") });
            }
        }
        if self.top_k == Some(0) {
            return Err(EngineError::InvalidParameter { name: "top_k", reason: "must be at least 1".into() });
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(EngineError::InvalidParameter { name: "repeat_penalty", reason: format!("{} is not a positive number", self.repeat_penalty) });
        }
        Ok(())
    }
}

/// A stateful sampler (it owns the random generator and scratch buffers).
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    scratch: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler for `params`, seeded with `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = StdRng::seed_from_u64(params.seed);
        Ok(Sampler { params, rng, scratch: Vec::new() })
    }

    /// Picks the next token. `logits` is modified in place; `history` is the
    /// token sequence so far (for the repeat penalty).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        if self.params.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(self.params.repeat_last_n);
            apply_repeat_penalty(logits, self.params.repeat_penalty, &history[start..]);
        }
        if self.params.temperature <= 1e-7 {
            return argmax(logits);
        }
        let temperature = self.params.temperature as f32;
        self.scratch.clear();
        self.scratch.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l / temperature)));
        // Sort by logit, descending (NaN last), then cut to top-k / top-p.
        self.scratch.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = self.params.top_k {
            self.scratch.truncate(k.max(1));
        }
        let max = self.scratch.first().map(|x| x.1).unwrap_or(0.0);
        let mut total = 0.0f32;
        for item in self.scratch.iter_mut() {
            item.1 = (item.1 - max).exp();
            total += item.1;
        }
        if let Some(p) = self.params.top_p {
            let mut cumulative = 0.0f32;
            let mut keep = self.scratch.len();
            for (i, item) in self.scratch.iter().enumerate() {
                cumulative += item.1 / total;
                if cumulative >= p as f32 {
                    keep = i + 1;
                    break;
                }
            }
            self.scratch.truncate(keep);
            total = self.scratch.iter().map(|x| x.1).sum();
        }
        let mut target = self.rng.random::<f32>() * total;
        for &(id, weight) in &self.scratch {
            if target < weight {
                return id;
            }
            target -= weight;
        }
        self.scratch.last().map(|x| x.0).unwrap_or(0)
    }
}

/// Index of the largest logit (the first one on ties, as llama.cpp does).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

/// The CTRL-style repeat penalty: seen tokens' positive logits are divided by
/// the penalty, negative ones multiplied.
pub fn apply_repeat_penalty(logits: &mut [f32], penalty: f32, recent: &[u32]) {
    let mut seen = std::collections::HashSet::with_capacity(recent.len());
    for &id in recent {
        if !seen.insert(id) {
            continue;
        }
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l >= 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&mut [0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_even_when_hot() {
        let params = SamplingParams { temperature: 5.0, top_k: Some(1), ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 0.5], &[]), 1);
        }
    }

    #[test]
    fn same_seed_same_samples_and_top_p_cuts_the_tail() {
        let params = SamplingParams { temperature: 1.0, top_p: Some(0.5), seed: 7, ..Default::default() };
        let logits = [2.0f32, 1.9, -5.0, -6.0];
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(p).unwrap();
            (0..40).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = run(params.clone());
        assert_eq!(a, run(params));
        assert!(a.iter().all(|&t| t <= 1), "tail token sampled: {a:?}");
    }

    #[test]
    fn repeat_penalty_demotes_seen_tokens() {
        let params = SamplingParams { repeat_penalty: 10.0, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&mut [1.0, 2.0, 0.5], &[1]), 0);
    }

    #[test]
    fn invalid_values_are_rejected_with_their_name() {
        let err = Sampler::new(SamplingParams { top_p: Some(1.5), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("top_p"));
        let err = Sampler::new(SamplingParams { temperature: -1.0, ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("temperature"));
    }
}
