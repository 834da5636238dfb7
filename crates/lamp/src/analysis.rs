//! Persona analysis (the paper's Fig. 2 and 5): how similar the learned
//! personas are to each other, by the Jaccard similarity of their word sets,
//! and a 2-D map of their embeddings (the two principal components).

use std::cmp::Ordering;
use std::collections::BTreeSet;

/// Orders names the way a reader counts: runs of digits compare as numbers,
/// so `lamp-2` comes before `lamp-10` (ties fall back to plain order).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut digit = None;
        for (i, c) in s.char_indices() {
            let d = c.is_ascii_digit();
            if digit.is_some_and(|prev| prev != d) {
                out.push((digit == Some(true), &s[start..i]));
                start = i;
            }
            digit = Some(d);
        }
        if start < s.len() {
            out.push((digit == Some(true), &s[start..]));
        }
        out
    }
    let number = |t: &str| (t.trim_start_matches('0').len(), t.trim_start_matches('0').to_owned());
    let (x, y) = (chunks(a), chunks(b));
    for (p, q) in x.iter().zip(&y) {
        let order = match (p, q) {
            ((true, m), (true, n)) => number(m).cmp(&number(n)),
            ((_, m), (_, n)) => m.cmp(n),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    x.len().cmp(&y.len()).then_with(|| a.cmp(b))
}

/// The set of lowercased words of a text.
pub fn word_set(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// |A ∩ B| / |A ∪ B| (1 for two empty sets).
pub fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// The pairwise Jaccard similarity of the texts' word sets.
pub fn jaccard_matrix(texts: &[&str]) -> Vec<Vec<f64>> {
    let sets: Vec<BTreeSet<String>> = texts.iter().map(|t| word_set(t)).collect();
    sets.iter().map(|a| sets.iter().map(|b| jaccard(a, b)).collect()).collect()
}

/// Projects vectors onto their first two principal components (power
/// iteration with deflation; deterministic). Returns one point per vector.
pub fn pca_2d(vectors: &[Vec<f32>]) -> Vec<[f64; 2]> {
    let n = vectors.len();
    let Some(dim) = vectors.first().map(Vec::len) else { return Vec::new() };
    let mean: Vec<f64> = (0..dim).map(|j| vectors.iter().map(|v| f64::from(v[j])).sum::<f64>() / n as f64).collect();
    let x: Vec<Vec<f64>> = vectors.iter().map(|v| v.iter().zip(&mean).map(|(a, m)| f64::from(*a) - m).collect()).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    let mut components: Vec<Vec<f64>> = Vec::new();
    for c in 0..2 {
        // Start from a fixed, non-degenerate vector.
        let mut v: Vec<f64> = (0..dim).map(|j| 1.0 + ((j * 7 + c * 13) % 11) as f64 / 10.0).collect();
        for _ in 0..200 {
            // w = X^T X v, minus the components already found.
            let xv: Vec<f64> = x.iter().map(|row| dot(row, &v)).collect();
            let mut w = vec![0.0; dim];
            for (row, s) in x.iter().zip(&xv) {
                for (wj, rj) in w.iter_mut().zip(row) {
                    *wj += rj * s;
                }
            }
            for prev in &components {
                let p = dot(&w, prev);
                for (wj, pj) in w.iter_mut().zip(prev) {
                    *wj -= p * pj;
                }
            }
            let norm = dot(&w, &w).sqrt();
            if norm < 1e-12 {
                break;
            }
            v = w.iter().map(|a| a / norm).collect();
        }
        // Keep it orthogonal to the earlier components even when the data
        // has no variance left (fewer points than components).
        for prev in &components {
            let p = dot(&v, prev);
            for (vj, pj) in v.iter_mut().zip(prev) {
                *vj -= p * pj;
            }
        }
        let norm = dot(&v, &v).sqrt();
        if norm > 1e-12 {
            v.iter_mut().for_each(|a| *a /= norm);
        }
        // A fixed sign: the largest coordinate is positive.
        if let Some(big) = v.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs())) {
            if big < 0.0 {
                v.iter_mut().for_each(|a| *a = -*a);
            }
        }
        components.push(v);
    }
    x.iter().map(|row| [dot(row, &components[0]), dot(row, &components[1])]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_with_their_numbers_as_numbers() {
        let mut names = vec!["lamp-10", "lamp-2", "bob", "lamp-1", "lamp-02", "lamp-", "lamp-19", "alice7"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["alice7", "bob", "lamp-", "lamp-1", "lamp-02", "lamp-2", "lamp-10", "lamp-19"]);
        assert_eq!(natural_cmp("a2b", "a10a"), Ordering::Less);
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
    }

    #[test]
    fn jaccard_of_word_sets() {
        let m = jaccard_matrix(&["Likes sci-fi and jazz.", "likes jazz", ""]);
        // {likes, sci, fi, and, jazz} vs {likes, jazz}: 2 / 5.
        assert!((m[0][1] - 0.4).abs() < 1e-12);
        assert_eq!(m[0][0], 1.0);
        assert_eq!(m[1][0], m[0][1]);
        assert_eq!(m[0][2], 0.0);
        assert_eq!(m[2][2], 1.0);
    }

    #[test]
    fn pca_recovers_a_planar_layout() {
        // Points on a 2-D plane inside 6-D space, spread more along the first axis.
        let (a, b) = ([1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0f32, 0.0, 1.0, -1.0, 0.0, 0.0]);
        let coords = [(3.0f32, 0.5f32), (-3.0, 0.2), (1.0, -1.0), (-1.0, 1.0), (0.0, 0.0)];
        let vectors: Vec<Vec<f32>> = coords.iter().map(|(s, t)| (0..6).map(|j| s * a[j] + t * b[j] + 0.5).collect()).collect();
        let points = pca_2d(&vectors);
        assert_eq!(points.len(), 5);
        // Distances in the plane are preserved (up to rotation/sign).
        let d = |p: [f64; 2], q: [f64; 2]| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
        let scale = (2.0f64).sqrt();
        for i in 0..5 {
            for j in 0..5 {
                let (ci, cj) = (coords[i], coords[j]);
                let expected = scale * (f64::from(ci.0 - cj.0).powi(2) + f64::from(ci.1 - cj.1).powi(2)).sqrt();
                assert!((d(points[i], points[j]) - expected).abs() < 1e-6, "{i},{j}");
            }
        }
        // Two points: all the spread is on the first axis.
        let two = pca_2d(&vectors[..2]);
        assert!(two.iter().all(|p| p[1].abs() < 1e-9), "{two:?}");
        // The first component carries the larger spread.
        let spread = |k: usize| points.iter().map(|p| p[k] * p[k]).sum::<f64>();
        assert!(spread(0) > spread(1));
    }
}
