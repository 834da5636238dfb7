//! The official LaMP metrics: accuracy and macro-F1 over the fixed label
//! list (a prediction outside the list is wrong), MAE and RMSE for ratings
//! (an unparseable prediction counts as whichever of 1 or 5 is farther from
//! the gold rating), and bootstrap confidence intervals over users.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{LampError, Result};

/// Accuracy and macro-F1 of a classification task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Fraction of exact matches.
    pub accuracy: f64,
    /// Macro-F1 over every label of the list (labels never seen count 0, as
    /// in the official scorer).
    pub f1: f64,
    /// Fraction of predictions outside the label list.
    pub invalid_rate: f64,
}

/// MAE and RMSE of a rating task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    /// Mean absolute error.
    pub mae: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Fraction of predictions that are not numbers.
    pub invalid_rate: f64,
}

fn check_lengths(preds: usize, golds: usize) -> Result<()> {
    if preds != golds {
        return Err(LampError::Metrics(format!("{preds} predictions for {golds} gold outputs")));
    }
    if preds == 0 {
        return Err(LampError::Metrics("nothing to score".into()));
    }
    Ok(())
}

/// Scores a classification task exactly as the official scorer: both sides
/// are trimmed and looked up in `labels`; golds must be in the list.
pub fn classification(preds: &[String], golds: &[String], labels: &[&str]) -> Result<Classification> {
    check_lengths(preds.len(), golds.len())?;
    let index = |s: &str| labels.iter().position(|l| *l == s.trim());
    let n = labels.len();
    let (mut tp, mut fp, mut fn_) = (vec![0usize; n], vec![0usize; n], vec![0usize; n]);
    let (mut correct, mut invalid) = (0usize, 0usize);
    for (p, g) in preds.iter().zip(golds) {
        let g = index(g).ok_or_else(|| LampError::Metrics(format!("gold output {g:?} is not in the label list")))?;
        match index(p) {
            Some(p) if p == g => {
                correct += 1;
                tp[g] += 1;
            }
            Some(p) => {
                fp[p] += 1;
                fn_[g] += 1;
            }
            None => {
                invalid += 1;
                fn_[g] += 1;
            }
        }
    }
    let f1: f64 = (0..n)
        .map(|i| {
            let denom = 2 * tp[i] + fp[i] + fn_[i];
            if denom == 0 {
                0.0
            } else {
                2.0 * tp[i] as f64 / denom as f64
            }
        })
        .sum::<f64>()
        / n as f64;
    let total = preds.len() as f64;
    Ok(Classification { accuracy: correct as f64 / total, f1, invalid_rate: invalid as f64 / total })
}

/// Reads a number the way Python's `float()` does for these outputs
/// (surrounding whitespace allowed).
fn python_float(s: &str) -> Option<f64> {
    s.trim().replace('_', "").parse::<f64>().ok()
}

/// Scores a rating task exactly as the official scorer.
pub fn rating(preds: &[String], golds: &[String]) -> Result<Rating> {
    check_lengths(preds.len(), golds.len())?;
    let (mut abs, mut sq, mut invalid) = (0.0, 0.0, 0usize);
    for (p, g) in preds.iter().zip(golds) {
        let g = python_float(g).ok_or_else(|| LampError::Metrics(format!("gold rating {g:?} is not a number")))?;
        let p = python_float(p).unwrap_or_else(|| {
            invalid += 1;
            // The farther of 1 and 5; a tie (gold 3) gives 5, as in the scorer.
            if (1.0 - g).abs() > (5.0 - g).abs() {
                1.0
            } else {
                5.0
            }
        });
        abs += (p - g).abs();
        sq += (p - g) * (p - g);
    }
    let n = preds.len() as f64;
    Ok(Rating { mae: abs / n, rmse: (sq / n).sqrt(), invalid_rate: invalid as f64 / n })
}

/// A two-sided percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// A 95% bootstrap interval of `metric` over users: users are resampled
/// with replacement `resamples` times and the metric computed on the pooled
/// predictions of each resample. Deterministic for a seed.
pub fn bootstrap<T>(per_user: &[T], resamples: usize, seed: u64, metric: impl Fn(&[&T]) -> Result<f64>) -> Result<Interval> {
    if per_user.is_empty() || resamples == 0 {
        return Err(LampError::Metrics("bootstrap needs users and resamples".into()));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(resamples);
    let mut sample: Vec<&T> = Vec::with_capacity(per_user.len());
    for _ in 0..resamples {
        sample.clear();
        sample.extend((0..per_user.len()).map(|_| &per_user[rng.random_range(0..per_user.len())]));
        values.push(metric(&sample)?);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    Ok(Interval { low: at(0.025), high: at(0.975) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn classification_matches_hand_computed_values() {
        let labels = ["a", "b", "c"];
        // gold: a a b c; pred: a b b "zzz" (invalid)
        let m = classification(&s(&["a", " b", "b", "zzz"]), &s(&["a", "a", "b", "c"]), &labels).unwrap();
        assert!((m.accuracy - 0.5).abs() < 1e-12);
        // a: tp1 fn1 -> 2/3; b: tp1 fp1 -> 2/3; c: fn1 -> 0. Macro = 4/9.
        assert!((m.f1 - 4.0 / 9.0).abs() < 1e-12, "{}", m.f1);
        assert!((m.invalid_rate - 0.25).abs() < 1e-12);
        // Labels absent from golds and predictions still count (as 0).
        let m = classification(&s(&["a"]), &s(&["a"]), &labels).unwrap();
        assert!((m.f1 - 1.0 / 3.0).abs() < 1e-12);
        // Case matters in the official scorer.
        assert_eq!(classification(&s(&["A"]), &s(&["a"]), &labels).unwrap().accuracy, 0.0);
        assert!(classification(&s(&["a"]), &s(&["d"]), &labels).is_err());
        assert!(classification(&s(&["a"]), &s(&[]), &labels).is_err());
    }

    #[test]
    fn rating_uses_the_one_or_five_rule() {
        // preds: 4 (gold 5): 1; "great" (gold 2): counts 5 -> 3; " 3.0 " (gold 3): 0; "?" (gold 3): tie -> 5 -> 2.
        let m = rating(&s(&["4", "great", " 3.0 ", "?"]), &s(&["5", "2", "3", "3"])).unwrap();
        assert!((m.mae - (1.0 + 3.0 + 0.0 + 2.0) / 4.0).abs() < 1e-12);
        assert!((m.rmse - ((1.0 + 9.0 + 0.0 + 4.0) / 4.0f64).sqrt()).abs() < 1e-12);
        assert!((m.invalid_rate - 0.5).abs() < 1e-12);
        // Gold 4 and an unparseable prediction: 1 is farther.
        assert!((rating(&s(&["n/a"]), &s(&["4"])).unwrap().mae - 3.0).abs() < 1e-12);
        assert!(rating(&s(&["1"]), &s(&["x"])).is_err());
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_estimate() {
        let users: Vec<f64> = (0..40).map(|i| if i % 4 == 0 { 0.0 } else { 1.0 }).collect();
        let mean = |xs: &[&f64]| Ok(xs.iter().copied().sum::<f64>() / xs.len() as f64);
        let a = bootstrap(&users, 500, 7, mean).unwrap();
        let b = bootstrap(&users, 500, 7, mean).unwrap();
        assert_eq!(a, b);
        assert!(a.low < 0.75 && 0.75 < a.high && a.low > 0.5 && a.high <= 1.0, "{a:?}");
        let same = bootstrap(&[1.0f64; 5], 100, 1, mean).unwrap();
        assert_eq!((same.low, same.high), (1.0, 1.0));
    }
}
