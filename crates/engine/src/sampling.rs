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

/// How far below the best scaled logit a token's weight is exactly zero in
/// f32 (exp(-110) is below the smallest subnormal).
const NEGLIGIBLE: f32 = 110.0;

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
        let max = logits.iter().map(|&l| l / temperature).fold(f32::NEG_INFINITY, f32::max);
        self.scratch.clear();
        // A token whose scaled logit is more than NEGLIGIBLE below the best
        // has weight exp(-NEGLIGIBLE) = 0 in f32: it can never be drawn and
        // adds nothing to the total, so only the others are sorted (at T =
        // 0.1 a few hundred of a 150k vocabulary, instead of all of them).
        self.scratch.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l / temperature)).filter(|&(_, s)| s - max >= -NEGLIGIBLE));
        if self.scratch.is_empty() {
            return argmax(logits);
        }
        // Most likely first; equal logits by token id, so the order (and
        // the draw) does not depend on the sort algorithm.
        self.scratch.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.params.top_k {
            self.scratch.truncate(k.max(1));
        }
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

    /// The sampler as it was before it skipped zero-weight tokens: every
    /// token sorted (ties by id) and weighted.
    fn full_sort_reference(logits: &[f32], temperature: f32, rng: &mut StdRng) -> u32 {
        let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / temperature)).collect();
        all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let max = all[0].1;
        let weights: Vec<f32> = all.iter().map(|x| (x.1 - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut target = rng.random::<f32>() * total;
        for (&(id, _), &w) in all.iter().zip(&weights) {
            if target < w {
                return id;
            }
            target -= w;
        }
        all.last().unwrap().0
    }

    #[test]
    fn skipping_zero_weight_tokens_draws_what_a_full_sort_draws() {
        // A vocabulary-sized row of logits spread like a model's (with
        // masked tokens and ties), at the paper's temperature and a hot one.
        let mut rng = StdRng::seed_from_u64(5);
        let mut logits: Vec<f32> = (0..50_000).map(|_| rng.random::<f32>() * 30.0 - 10.0).collect();
        for i in (0..50_000).step_by(7) {
            logits[i] = f32::NEG_INFINITY;
        }
        logits[123] = logits[456];
        for temperature in [0.1f32, 1.0, 5.0] {
            let params = SamplingParams { temperature: temperature as f64, seed: 11, ..Default::default() };
            let mut sampler = Sampler::new(params).unwrap();
            let mut reference_rng = StdRng::seed_from_u64(11);
            for draw in 0..200 {
                let mut row = logits.clone();
                // Move the peak around so that draws differ.
                row[(draw * 7919) % 50_000 + 1] = 20.5 + (draw % 3) as f32 * 0.01;
                let expected = full_sort_reference(&row, temperature, &mut reference_rng);
                assert_eq!(sampler.sample(&mut row, &[]), expected, "T = {temperature}, draw {draw}");
            }
        }
        // Only masked tokens left: the argmax (the first) rather than a panic.
        let mut s = Sampler::new(SamplingParams { temperature: 0.5, ..Default::default() }).unwrap();
        assert_eq!(s.sample(&mut [f32::NEG_INFINITY; 4], &[]), 0);
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
