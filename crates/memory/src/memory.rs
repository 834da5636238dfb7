//! Episodic memory: the store plus one persisted HNSW index per user.
//!
//! The store is the source of truth. A user's index lives in
//! `<data>/indexes/u<key>/` as a generation folder (`g<N>/`) and a
//! `meta.json` naming it, the records state it was built for (record count,
//! largest id, encoder, dimension) and the sha256 of its files. It is used
//! only if all of that still matches; otherwise (missing, stale, corrupt,
//! unreadable) it is rebuilt from the stored vectors and saved again.
//! Files are written to a temporary folder and renamed into place, so a
//! crash never leaves a half-written index in use.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use persona_engine::Encoder;
use persona_models::ModelsError;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, MemoryError, Result};
use crate::index::{IndexParams, VectorIndex};
use crate::index_cache::{IndexCache, DEFAULT_CAPACITY};
use crate::record::{Hit, NewRecord};
use crate::store::{RecordsState, Store, User};

/// The basename hnsw_rs gives the dumped files.
const BASENAME: &str = "episodic";
/// The version of `meta.json`'s layout.
const META_FORMAT: u32 = 1;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Records in the input.
    pub total: usize,
    /// Records stored now.
    pub added: usize,
    /// Records the user already had (or repeated in the input).
    pub duplicates: usize,
}

/// How a search found its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndexSource {
    /// Already in memory and current.
    Cached,
    /// Reloaded from disk.
    Loaded,
    /// Built from the store (and saved).
    Rebuilt,
    /// The user has no records.
    Empty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexMeta {
    format: u32,
    generation: u64,
    model: String,
    dim: usize,
    count: i64,
    max_id: i64,
    params: IndexParams,
    graph_sha256: String,
    data_sha256: String,
}

/// A user's memory: the store and the per-user indexes in one data folder.
#[derive(Debug)]
pub struct Memory {
    store: Store,
    dir: PathBuf,
    params: IndexParams,
    /// Indexes loaded in this process, with the state they match.
    cache: IndexCache<(RecordsState, VectorIndex)>,
}

/// The file's sha256 (the models store's digest, so that both verify files
/// the same way), with an I/O failure reported as this crate's error.
fn sha256_file(path: &Path) -> Result<String> {
    persona_models::sha256_file(path, &persona_models::NoProgress).map_err(|e| match e {
        ModelsError::Io { path, source } => MemoryError::Io { path, source },
        other => MemoryError::Io { path: path.to_path_buf(), source: std::io::Error::other(other) },
    })
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).at(path)
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

impl Memory {
    /// Opens the data folder (creating it), and removes index folders of
    /// users that no longer exist (left by a crash during deletion).
    pub fn open(dir: &Path) -> Result<Memory> {
        let store = Store::open(dir)?;
        let memory = Memory { store, dir: dir.to_path_buf(), params: IndexParams::default(), cache: IndexCache::new(DEFAULT_CAPACITY) };
        memory.remove_orphan_indexes()?;
        Ok(memory)
    }

    /// Uses other HNSW parameters for indexes built from now on.
    pub fn with_index_params(mut self, params: IndexParams) -> Self {
        self.params = params;
        self
    }

    /// Keeps at most `users` users' indexes loaded (the most recently
    /// used; 64 by default); the others are read from disk when needed.
    pub fn with_index_cache(mut self, users: usize) -> Self {
        self.cache = IndexCache::new(users);
        self
    }

    /// Another connection to the same data folder, with the same HNSW
    /// parameters and index cache (for work on another thread; SQLite keeps the writes of
    /// both in order).
    pub fn reopen(&self) -> Result<Memory> {
        Ok(Memory::open(&self.dir)?.with_index_params(self.params).with_index_cache(self.cache.capacity()))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, for writes.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a user's index files live.
    pub fn index_dir(&self, user: &User) -> PathBuf {
        self.dir.join("indexes").join(format!("u{}", user.key))
    }

    fn remove_orphan_indexes(&self) -> Result<()> {
        let root = self.dir.join("indexes");
        let Ok(entries) = std::fs::read_dir(&root) else { return Ok(()) };
        let keys: HashSet<i64> = self.store.user_keys()?.into_iter().collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let key = name.strip_prefix('u').and_then(|k| k.parse::<i64>().ok());
            if key.is_some_and(|k| !keys.contains(&k)) {
                tracing::info!(folder = %entry.path().display(), "removing the index of a deleted user");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// Stores `records` for user `id` (created if new): embeds their
    /// queries in batches of `batch_size` and writes each batch in one
    /// transaction, skipping records the user already has; then brings the
    /// user's index up to date. `progress` gets (records done, total).
    pub fn import(
        &mut self,
        id: &str,
        records: &[NewRecord],
        encoder: &dyn Encoder,
        batch_size: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ImportReport> {
        let user = self.store.ensure_user(id)?;
        let before = self.store.records_state(&user)?;
        self.check_encoder(&user, &before, encoder)?;
        // Load the current index first, so new records can be added to it.
        let (mut index, _, _) = self.current_index(&user, encoder.name(), encoder.dimension())?;

        let mut report = ImportReport { total: records.len(), ..Default::default() };
        let hashes: Vec<[u8; 32]> = records.iter().map(NewRecord::content_hash).collect();
        let existing = self.store.existing_hashes(&user, &hashes)?;
        let mut seen = HashSet::new();
        let todo: Vec<&NewRecord> = records.iter().zip(&hashes).filter(|(_, h)| !existing.contains(*h) && seen.insert(**h)).map(|(r, _)| r).collect();
        report.duplicates = records.len() - todo.len();
        progress(report.duplicates, records.len());
        for batch in todo.chunks(batch_size.max(1)) {
            let texts: Vec<&str> = batch.iter().map(|r| r.query.as_str()).collect();
            let vectors = encoder.embed(&texts)?;
            let rows: Vec<(NewRecord, Vec<f32>)> = batch.iter().map(|r| (*r).clone()).zip(vectors).collect();
            let done = self.store.insert_records(&user, encoder.name(), &rows)?;
            report.added += done.added;
            report.duplicates += done.duplicates;
            progress(report.duplicates + report.added, records.len());
        }

        // Add the new records to the index if it matched the store before
        // the import; otherwise rebuild it.
        let after = self.store.records_state(&user)?;
        if after == before {
            if after.count > 0 {
                self.cache.insert(user.key, (after, index));
            }
            return Ok(report);
        }
        if index.len() as i64 == before.count && before.count > 0 {
            let mut fresh = Vec::new();
            self.store.for_each_vector(&user, encoder.dimension(), before.max_id, |rid, v| fresh.push((rid, v)))?;
            index.insert(&fresh).map_err(|source| MemoryError::Index { path: self.index_dir(&user), source })?;
            if index.len() as i64 == after.count {
                self.save_index(&user, &after, encoder.name(), &index);
                self.cache.insert(user.key, (after, index));
                return Ok(report);
            }
        }
        let (index, _, state) = self.current_index(&user, encoder.name(), encoder.dimension())?;
        self.cache.insert(user.key, (state, index));
        Ok(report)
    }

    fn check_encoder(&self, user: &User, state: &RecordsState, encoder: &dyn Encoder) -> Result<()> {
        match state.models.as_slice() {
            [] => Ok(()),
            [m] if m == encoder.name() => Ok(()),
            models => Err(MemoryError::EncoderMismatch { user: user.id.clone(), stored: models.join(", "), current: encoder.name().into() }),
        }
    }

    /// The `k` records of user `id` most similar to `query`, with their
    /// cosine similarities, most similar first. Only this user's records
    /// can be returned.
    pub fn search(&mut self, id: &str, query: &str, k: usize, encoder: &dyn Encoder) -> Result<Vec<Hit>> {
        let vector = encoder.embed(&[query])?.into_iter().next().unwrap_or_default();
        self.search_vector(id, &vector, k, encoder.name())
    }

    /// Like [`search`](Self::search) with an already embedded query.
    pub fn search_vector(&mut self, id: &str, vector: &[f32], k: usize, model: &str) -> Result<Vec<Hit>> {
        let user = self.store.require_user(id)?;
        let (index, _, state) = self.current_index(&user, model, vector.len())?;
        let found = index.search(vector, k);
        self.cache.insert(user.key, (state, index));
        let ids: Vec<i64> = found.iter().map(|(rid, _)| *rid).collect();
        let records = self.store.records_by_ids(&user, &ids)?;
        let scores: HashMap<i64, f32> = found.into_iter().collect();
        Ok(records.into_iter().map(|record| Hit { score: scores.get(&record.id).copied().unwrap_or(0.0), record }).collect())
    }

    /// Makes sure user `id`'s index on disk is current (rebuilding it if
    /// needed) and tells how it was found.
    pub fn ensure_index(&mut self, id: &str, model: &str, dim: usize) -> Result<IndexSource> {
        let user = self.store.require_user(id)?;
        let (index, source, state) = self.current_index(&user, model, dim)?;
        self.cache.insert(user.key, (state, index));
        Ok(source)
    }

    /// The user's index, current with the store: from this process's
    /// cache, else from disk, else rebuilt (and saved). Takes it out of the
    /// cache; callers put it back, with the store state it matches (also
    /// returned).
    fn current_index(&mut self, user: &User, model: &str, dim: usize) -> Result<(VectorIndex, IndexSource, RecordsState)> {
        let state = self.store.records_state(user)?;
        if state.count == 0 {
            return Ok((VectorIndex::new(dim, 16, self.params), IndexSource::Empty, state));
        }
        match state.models.as_slice() {
            [m] if m == model => {}
            models => return Err(MemoryError::EncoderMismatch { user: user.id.clone(), stored: models.join(", "), current: model.into() }),
        }
        if let Some((cached_state, index)) = self.cache.remove(&user.key) {
            if cached_state == state && index.dim() == dim {
                return Ok((index, IndexSource::Cached, state));
            }
        }
        match self.load_index(user, &state, model, dim) {
            Ok(index) => return Ok((index, IndexSource::Loaded, state)),
            Err(reason) => tracing::info!(user = %user.id, %reason, "rebuilding the vector index"),
        }
        let index = self.build_index(user, &state, dim)?;
        self.save_index(user, &state, model, &index);
        Ok((index, IndexSource::Rebuilt, state))
    }

    fn build_index(&self, user: &User, state: &RecordsState, dim: usize) -> Result<VectorIndex> {
        let mut index = VectorIndex::new(dim, state.count as usize, self.params);
        let mut batch = Vec::with_capacity(4096);
        let mut failure = None;
        self.store.for_each_vector(user, dim, 0, |rid, v| {
            batch.push((rid, v));
            if batch.len() == 4096 && failure.is_none() {
                failure = index.insert(&batch).err();
                batch.clear();
            }
        })?;
        if failure.is_none() {
            failure = index.insert(&batch).err();
        }
        match failure {
            Some(source) => Err(MemoryError::Index { path: self.index_dir(user), source }),
            None => Ok(index),
        }
    }

    fn load_index(&self, user: &User, state: &RecordsState, model: &str, dim: usize) -> Result<VectorIndex, String> {
        let dir = self.index_dir(user);
        let meta_path = dir.join("meta.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| format!("{}: {e}", meta_path.display()))?;
        let meta: IndexMeta = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", meta_path.display()))?;
        if meta.format != META_FORMAT {
            return Err(format!("index format {} (expected {META_FORMAT})", meta.format));
        }
        if meta.count != state.count || meta.max_id != state.max_id {
            return Err(format!("stale: built for {} records (max id {}), the store has {} (max id {})", meta.count, meta.max_id, state.count, state.max_id));
        }
        if meta.model != model || meta.dim != dim {
            return Err(format!("built with encoder {} ({} dims), now {model} ({dim} dims)", meta.model, meta.dim));
        }
        if meta.params != self.params {
            return Err("built with other HNSW parameters".into());
        }
        let gen_dir = dir.join(format!("g{}", meta.generation));
        for (suffix, want) in [("hnsw.graph", &meta.graph_sha256), ("hnsw.data", &meta.data_sha256)] {
            let file = gen_dir.join(format!("{BASENAME}.{suffix}"));
            let got = sha256_file(&file).map_err(|e| e.to_string())?;
            if &got != want {
                return Err(format!("{} is corrupt (sha256 {got}, expected {want})", file.display()));
            }
        }
        let index = VectorIndex::load(&gen_dir, BASENAME, dim, self.params).map_err(|e| e.to_string())?;
        if index.len() as i64 != state.count {
            return Err(format!("index holds {} vectors, the store {}", index.len(), state.count));
        }
        Ok(index)
    }

    /// Saves the index as a new generation. Failure only costs a rebuild
    /// later, so it is logged, not returned.
    fn save_index(&self, user: &User, state: &RecordsState, model: &str, index: &VectorIndex) {
        if let Err(e) = self.try_save_index(user, state, model, index) {
            tracing::warn!(user = %user.id, error = %e, "could not save the vector index; it will be rebuilt when needed");
        }
    }

    fn try_save_index(&self, user: &User, state: &RecordsState, model: &str, index: &VectorIndex) -> Result<()> {
        let dir = self.index_dir(user);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let generation = std::fs::read_dir(&dir)
            .at(&dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix('g')).and_then(|g| g.parse::<u64>().ok()))
            .max()
            .unwrap_or(0)
            + 1;
        let tmp = dir.join(format!(".tmp-{}", unique_suffix()));
        std::fs::create_dir_all(&tmp).at(&tmp)?;
        let result = (|| -> Result<u64> {
            index.dump(&tmp, BASENAME).map_err(|source| MemoryError::Index { path: tmp.clone(), source })?;
            let graph = tmp.join(format!("{BASENAME}.hnsw.graph"));
            let data = tmp.join(format!("{BASENAME}.hnsw.data"));
            sync_file(&graph)?;
            sync_file(&data)?;
            let meta = IndexMeta {
                format: META_FORMAT,
                generation,
                model: model.into(),
                dim: index.dim(),
                count: state.count,
                max_id: state.max_id,
                params: index.params(),
                graph_sha256: sha256_file(&graph)?,
                data_sha256: sha256_file(&data)?,
            };
            let gen_dir = dir.join(format!("g{generation}"));
            std::fs::rename(&tmp, &gen_dir).at(&gen_dir)?;
            let meta_tmp = dir.join(format!(".meta-{}.json", unique_suffix()));
            let text = serde_json::to_string_pretty(&meta)
                .map_err(|e| MemoryError::Index { path: dir.clone(), source: crate::index::IndexError::Meta(e.to_string()) })?;
            std::fs::write(&meta_tmp, text).at(&meta_tmp)?;
            sync_file(&meta_tmp)?;
            std::fs::rename(&meta_tmp, dir.join("meta.json")).at(&dir)?;
            sync_file(&dir)?;
            Ok(generation)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        let generation = result?;
        // Old generations and temporaries left by killed processes.
        for entry in std::fs::read_dir(&dir).at(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let old_gen = name.strip_prefix('g').and_then(|g| g.parse::<u64>().ok()).is_some_and(|g| g < generation);
            let old_tmp = name.starts_with(".tmp-") || name.starts_with(".meta-");
            let stale = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 600);
            if old_gen || (old_tmp && stale) {
                let _ = if entry.path().is_dir() { std::fs::remove_dir_all(entry.path()) } else { std::fs::remove_file(entry.path()) };
            }
        }
        Ok(())
    }

    /// Deletes user `id`: all records, profiles and persona versions (one
    /// transaction), then the index files.
    pub fn delete_user(&mut self, id: &str) -> Result<User> {
        let user = self.store.delete_user(id)?;
        self.cache.remove(&user.key);
        let dir = self.index_dir(&user);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).at(&dir)?;
        }
        Ok(user)
    }
}
