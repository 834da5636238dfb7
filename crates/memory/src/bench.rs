//! Measuring the vector index against exact search (`persona bench
//! memory` reports it): build, dump and reload times, search latency and
//! throughput, and recall@k, on vectors the caller brings.

use std::path::Path;
use std::time::Instant;

use crate::error::{MemoryError, Result};
use crate::index::{IndexError, IndexParams, VectorIndex};

/// One index size measured: build, dump and reload times, search latency
/// and throughput of the HNSW index and of exact search, and recall@k.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexMeasurement {
    /// Vectors in the index.
    pub vectors: usize,
    /// Seconds to insert every vector.
    pub build_s: f64,
    /// Vectors inserted per second.
    pub inserts_per_s: f64,
    /// Seconds to write the graph.
    pub dump_s: f64,
    /// Seconds to read it back.
    pub reload_s: f64,
    /// Median HNSW search time (ms).
    pub hnsw_p50_ms: f64,
    /// 99th-percentile HNSW search time (ms).
    pub hnsw_p99_ms: f64,
    /// HNSW searches per second, one thread.
    pub hnsw_qps: f64,
    /// Seconds to append every vector to the exact-search matrix.
    pub brute_insert_s: f64,
    /// Median exact search time (ms).
    pub brute_p50_ms: f64,
    /// 99th-percentile exact search time (ms).
    pub brute_p99_ms: f64,
    /// Exact searches per second, one thread.
    pub brute_qps: f64,
    /// Share of the exact top-k the index found.
    pub recall: f64,
}

/// The value at quantile `p` of sorted values (0 for none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Exact top-k by dot product over a row-major matrix.
fn brute_top_k(matrix: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<usize> {
    let mut scores: Vec<(f32, usize)> = matrix.chunks_exact(dim).enumerate().map(|(i, row)| (crate::index::dot(row, q), i)).collect();
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    scores.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    scores.truncate(k);
    scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    scores.into_iter().map(|(_, i)| i).collect()
}

/// Builds an HNSW index of `base`, writes it to `scratch` and reads it
/// back, then answers `queries` with it and by exact search, timing each.
pub fn measure_index(base: &[Vec<f32>], queries: &[Vec<f32>], k: usize, dim: usize, scratch: &Path) -> Result<IndexMeasurement> {
    let n = base.len();
    let params = IndexParams::default();
    let items: Vec<(i64, Vec<f32>)> = base.iter().cloned().enumerate().map(|(i, v)| (i as i64, v)).collect();
    let t = Instant::now();
    let mut index = VectorIndex::new(dim, n, params);
    index.insert(&items).map_err(|source| MemoryError::Index { path: scratch.to_path_buf(), source })?;
    let build_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    index.dump(scratch, "bench").map_err(|source| MemoryError::Index { path: scratch.to_path_buf(), source })?;
    let dump_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reloaded = VectorIndex::load(scratch, "bench", dim, params).map_err(|source| MemoryError::Index { path: scratch.to_path_buf(), source })?;
    let reload_s = t.elapsed().as_secs_f64();
    if reloaded.len() != n {
        let reason = format!("reloaded index holds {} vectors, expected {n}", reloaded.len());
        return Err(MemoryError::Index { path: scratch.to_path_buf(), source: IndexError::Unreadable(reason) });
    }

    let t = Instant::now();
    let mut matrix = Vec::with_capacity(n * dim);
    for v in base {
        matrix.extend_from_slice(v);
    }
    let brute_insert_s = t.elapsed().as_secs_f64();

    let (mut hnsw_ms, mut brute_ms) = (Vec::new(), Vec::new());
    let mut found = 0usize;
    for q in queries {
        let t = Instant::now();
        let hits = index.search(q, k);
        hnsw_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let truth = brute_top_k(&matrix, dim, q, k);
        brute_ms.push(t.elapsed().as_secs_f64() * 1e3);
        found += hits.iter().filter(|(id, _)| truth.contains(&(*id as usize))).count();
    }
    let total_h: f64 = hnsw_ms.iter().sum();
    let total_b: f64 = brute_ms.iter().sum();
    hnsw_ms.sort_by(f64::total_cmp);
    brute_ms.sort_by(f64::total_cmp);
    Ok(IndexMeasurement {
        vectors: n,
        build_s,
        inserts_per_s: n as f64 / build_s,
        dump_s,
        reload_s,
        hnsw_p50_ms: percentile(&hnsw_ms, 0.5),
        hnsw_p99_ms: percentile(&hnsw_ms, 0.99),
        hnsw_qps: queries.len() as f64 / (total_h / 1e3),
        brute_insert_s,
        brute_p50_ms: percentile(&brute_ms, 0.5),
        brute_p99_ms: percentile(&brute_ms, 0.99),
        brute_qps: queries.len() as f64 / (total_b / 1e3),
        recall: found as f64 / (k * queries.len()) as f64,
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn a_small_index_finds_the_exact_neighbours() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut unit = || {
            let mut v: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            crate::index::normalize(&mut v);
            v
        };
        let base: Vec<Vec<f32>> = (0..200).map(|_| unit()).collect();
        let queries: Vec<Vec<f32>> = (0..20).map(|_| unit()).collect();
        let scratch = tempfile::tempdir().unwrap();
        let m = measure_index(&base, &queries, 5, 16, scratch.path()).unwrap();
        assert_eq!(m.vectors, 200);
        // 200 points are far below what HNSW needs to miss anything.
        assert_eq!(m.recall, 1.0);
        assert!(m.hnsw_qps > 0.0 && m.brute_qps > 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(brute_top_k(&[1.0, 0.0, 0.0, 1.0], 2, &[0.0, 1.0], 1), vec![1]);
    }
}
