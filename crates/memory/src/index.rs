//! An HNSW index (hnsw_rs) over L2-normalised embeddings, searched by
//! cosine similarity, with ids that are the store's record ids.
//!
//! Two hnsw_rs pitfalls are handled here: its dot-product distance asserts
//! that `1 - a·b >= 0`, which rounding breaks for unit vectors (we use our
//! own clamped distance), and a reloaded graph borrows its loader (we keep
//! both together in a self-referential cell).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anndists::dist::Distance;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use serde::{Deserialize, Serialize};

/// Cosine distance `1 - a·b` for unit vectors, clamped to `[0, 2]` so that
/// rounding never yields a negative distance.
#[derive(Debug, Default, Clone, Copy)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot(va, vb)).clamp(0.0, 2.0)
    }
}

/// What can go wrong with a vector index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A vector of the wrong length.
    #[error("vector of record {id} has {got} dimensions, the index {want}")]
    Dimensions {
        /// The record id.
        id: i64,
        /// Its vector's length.
        got: usize,
        /// The index's dimension.
        want: usize,
    },
    /// Record ids are non-negative.
    #[error("negative id {0}")]
    NegativeId(i64),
    /// hnsw_rs could not write the graph.
    #[error("writing the graph: {0}")]
    Dump(String),
    /// The index's description (`meta.json`) could not be written.
    #[error("writing meta.json: {0}")]
    Meta(String),
    /// The files are not a graph hnsw_rs can read.
    #[error("unreadable index: {0}")]
    Unreadable(String),
}

pub use persona_engine::dot;

/// HNSW construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// Neighbours kept per node and layer (M).
    pub max_connections: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to k when k is larger).
    pub ef_search: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams { max_connections: 16, ef_construction: 200, ef_search: 128 }
    }
}

/// Layers of the graph (hnsw_rs caps it at 16).
const MAX_LAYERS: usize = 16;

type CosineHnsw<'a> = Hnsw<'a, f32, CosineDistance>;

self_cell::self_cell!(
    /// A graph reloaded from disk together with the loader it borrows from.
    struct Reloaded {
        owner: HnswIo,
        #[not_covariant]
        dependent: CosineHnsw,
    }
);

enum Graph {
    Built(CosineHnsw<'static>),
    Reloaded(Reloaded),
}

/// A cosine-similarity HNSW index whose ids are record ids.
pub struct VectorIndex {
    graph: Graph,
    dim: usize,
    params: IndexParams,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex").field("len", &self.len()).field("dim", &self.dim).field("params", &self.params).finish()
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

impl VectorIndex {
    /// An empty index for vectors of `dim` dimensions, sized for about
    /// `capacity` of them.
    pub fn new(dim: usize, capacity: usize, params: IndexParams) -> Self {
        let graph = Hnsw::new(params.max_connections, capacity.max(16), MAX_LAYERS, params.ef_construction, CosineDistance);
        VectorIndex { graph: Graph::Built(graph), dim, params }
    }

    fn with_graph<R>(&self, f: impl for<'a> FnOnce(&CosineHnsw<'a>) -> R) -> R {
        match &self.graph {
            Graph::Built(g) => f(g),
            Graph::Reloaded(r) => r.with_dependent(|_, g| f(g)),
        }
    }

    /// The vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters it was built with.
    pub fn params(&self) -> IndexParams {
        self.params
    }

    /// Number of vectors indexed.
    pub fn len(&self) -> usize {
        self.with_graph(|g| g.get_nb_point())
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds vectors (normalised on the way in). Ids must be non-negative and
    /// new to the index; vectors must have `dim` entries.
    pub fn insert(&mut self, items: &[(i64, Vec<f32>)]) -> Result<(), IndexError> {
        let mut prepared = Vec::with_capacity(items.len());
        for (id, v) in items {
            if v.len() != self.dim {
                return Err(IndexError::Dimensions { id: *id, got: v.len(), want: self.dim });
            }
            let id = usize::try_from(*id).map_err(|_| IndexError::NegativeId(*id))?;
            let mut v = v.clone();
            normalize(&mut v);
            prepared.push((v, id));
        }
        let refs: Vec<(&[f32], usize)> = prepared.iter().map(|(v, id)| (v.as_slice(), *id)).collect();
        self.with_graph(|g| g.parallel_insert_slice(&refs));
        Ok(())
    }

    /// The `k` nearest records to `query` as (record id, cosine similarity),
    /// most similar first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<(i64, f32)> {
        if k == 0 || self.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        let mut q = query.to_vec();
        normalize(&mut q);
        let ef = self.params.ef_search.max(k);
        let found = self.with_graph(|g| g.search(&q, k, ef));
        let mut hits: Vec<(i64, f32)> = found.into_iter().map(|n| (n.d_id as i64, 1.0 - n.distance)).collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1));
        hits
    }

    /// Writes the graph as `<basename>.hnsw.graph` and `.hnsw.data` in
    /// `dir` (which should be empty).
    pub fn dump(&self, dir: &Path, basename: &str) -> Result<(), IndexError> {
        let written = self.with_graph(|g| g.file_dump(dir, basename)).map_err(|e| IndexError::Dump(e.to_string()))?;
        if written != basename {
            return Err(IndexError::Dump(format!("hnsw_rs wrote '{written}' instead of '{basename}'")));
        }
        Ok(())
    }

    /// Reads a graph written by [`dump`](Self::dump). Files that hnsw_rs
    /// cannot read (it asserts on some) give an error, not a panic.
    pub fn load(dir: &Path, basename: &str, dim: usize, params: IndexParams) -> Result<Self, IndexError> {
        let io = HnswIo::new(dir, basename);
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            Reloaded::try_new(io, |io| io.load_hnsw_with_dist::<f32, CosineDistance>(CosineDistance).map_err(|e| IndexError::Unreadable(e.to_string())))
        }))
        .map_err(|panic| {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            IndexError::Unreadable(msg.unwrap_or_else(|| "hnsw_rs panicked".into()))
        })??;
        Ok(VectorIndex { graph: Graph::Reloaded(loaded), dim, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_unit(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        normalize(&mut v);
        v
    }

    #[test]
    fn finds_itself_and_reloads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let items: Vec<(i64, Vec<f32>)> = (0..500).map(|i| (i * 3 + 1, random_unit(&mut rng, 32))).collect();
        let mut index = VectorIndex::new(32, items.len(), IndexParams::default());
        index.insert(&items).unwrap();
        assert_eq!(index.len(), 500);
        for (id, v) in items.iter().step_by(50) {
            let hits = index.search(v, 3);
            assert_eq!(hits[0].0, *id);
            assert!((hits[0].1 - 1.0).abs() < 1e-4, "self-similarity {}", hits[0].1);
            assert!(hits[0].1 >= hits[1].1 && hits[1].1 >= hits[2].1);
        }
        let dir = tempfile::tempdir().unwrap();
        index.dump(dir.path(), "episodic").unwrap();
        let mut reloaded = VectorIndex::load(dir.path(), "episodic", 32, IndexParams::default()).unwrap();
        assert_eq!(reloaded.len(), 500);
        for (_, v) in items.iter().step_by(37) {
            assert_eq!(reloaded.search(v, 5), index.search(v, 5));
        }
        // A reloaded graph takes new points.
        let extra = random_unit(&mut rng, 32);
        reloaded.insert(&[(10_000, extra.clone())]).unwrap();
        assert_eq!(reloaded.search(&extra, 1)[0].0, 10_000);
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for len in [0, 1, 7, 8, 9, 384, 389] {
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{len}");
        }
    }

    #[test]
    fn rounding_above_one_does_not_panic() {
        // Vectors slightly longer than 1 make a·b > 1; hnsw_rs's DistDot
        // asserts on that, ours clamps.
        let v = vec![1.000_000_1f32, 0.0, 0.0];
        assert_eq!(CosineDistance.eval(&v, &v), 0.0);
        let mut index = VectorIndex::new(3, 4, IndexParams::default());
        index.insert(&[(1, v.clone()), (2, v.clone()), (3, vec![0.0, 1.0, 0.0])]).unwrap();
        assert_eq!(index.search(&v, 2).len(), 2);
    }

    #[test]
    fn corrupt_files_are_an_error_not_a_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let items: Vec<(i64, Vec<f32>)> = (0..50).map(|i| (i, random_unit(&mut rng, 8))).collect();
        let mut index = VectorIndex::new(8, 50, IndexParams::default());
        index.insert(&items).unwrap();
        let dir = tempfile::tempdir().unwrap();
        index.dump(dir.path(), "episodic").unwrap();
        std::fs::write(dir.path().join("episodic.hnsw.data"), b"garbage").unwrap();
        assert!(VectorIndex::load(dir.path(), "episodic", 8, IndexParams::default()).is_err());
        std::fs::remove_file(dir.path().join("episodic.hnsw.graph")).unwrap();
        assert!(VectorIndex::load(dir.path(), "episodic", 8, IndexParams::default()).is_err());
    }

    #[test]
    fn rejects_wrong_dimensions_and_negative_ids() {
        let mut index = VectorIndex::new(4, 4, IndexParams::default());
        assert!(index.insert(&[(1, vec![1.0; 3])]).is_err());
        assert!(index.insert(&[(-1, vec![1.0; 4])]).is_err());
        assert!(index.search(&[1.0; 3], 1).is_empty());
    }
}
