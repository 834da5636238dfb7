//! Episodic and semantic memory with the real models: the MiniLM encoder
//! (and real news texts from `../shared/data`) and the tiny chat model.
//!
//! The models must be installed (`persona models fetch`) and the data folder
//! present (or named by `PERSONA_SHARED_DATA`); otherwise these tests fail
//! with a message saying so. They never skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::sync::OnceLock;

use persona_engine::{BertEncoder, Device, Encoder, GgufChatModel};
use persona_memory::memory::IndexSource;
use persona_memory::semantic::{summarize, SemanticConfig, TaskKind};
use persona_memory::{IndexParams, Memory, NewRecord, VectorIndex};
use persona_testkit::{model_path, shared_data};
use serde_json::Value;

fn encoder() -> &'static BertEncoder {
    static ENCODER: OnceLock<BertEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| BertEncoder::load(model_path("minilm").parent().unwrap(), "minilm", &Device::Cpu).unwrap().with_batch_size(64))
}

/// Short real texts: HuffPost headlines and Amazon review summaries
/// (distinct), shuffled with a fixed seed.
fn short_texts() -> Vec<String> {
    let data = shared_data();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let news = std::fs::read_to_string(data.join("news/huffpost_news_category_subset.jsonl")).unwrap();
    for line in news.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        out.push(v["headline"].as_str().unwrap_or("").trim().to_string());
    }
    let mut reviews = csv::Reader::from_path(data.join("amazon/musical_instruments_5core.csv")).unwrap();
    let col = reviews.headers().unwrap().iter().position(|h| h == "summary").unwrap();
    for row in reviews.records() {
        out.push(row.unwrap().get(col).unwrap_or("").trim().to_string());
    }
    out.retain(|s| s.len() >= 8 && seen.insert(s.to_lowercase()));
    use rand::seq::SliceRandom;
    out.shuffle(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11));
    out
}

/// News articles as records (headline + description -> category).
fn news_records(range: std::ops::Range<usize>) -> Vec<NewRecord> {
    let path = shared_data().join("news/huffpost_news_category_subset.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .skip(range.start)
        .take(range.len())
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let mut r = NewRecord::new(
                format!("{}\n{}", v["headline"].as_str().unwrap(), v["short_description"].as_str().unwrap()),
                v["category"].as_str().unwrap().to_lowercase(),
            );
            r.metadata.insert("lamp_task".into(), "news-category".into());
            r
        })
        .collect()
}

#[test]
fn hnsw_recall_at_10_on_10k_real_minilm_embeddings() {
    let texts = short_texts();
    assert!(texts.len() >= 10_200, "only {} texts", texts.len());
    let refs: Vec<&str> = texts[..10_200].iter().map(String::as_str).collect();
    let vectors = encoder().embed(&refs).unwrap();
    let (base, queries) = vectors.split_at(10_000);
    let items: Vec<(i64, Vec<f32>)> = base.iter().cloned().enumerate().map(|(i, v)| (i as i64, v)).collect();
    let mut index = VectorIndex::new(encoder().dimension(), items.len(), IndexParams::default());
    index.insert(&items).unwrap();
    let mut found = 0usize;
    for q in queries {
        let mut exact: Vec<(usize, f32)> = base.iter().enumerate().map(|(i, v)| (i, persona_engine::cosine(q, v))).collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: std::collections::HashSet<i64> = exact[..10].iter().map(|(i, _)| *i as i64).collect();
        found += index.search(q, 10).iter().filter(|(id, _)| truth.contains(id)).count();
    }
    let recall = found as f64 / (10.0 * queries.len() as f64);
    eprintln!("recall@10 over {} queries against 10,000 vectors: {recall:.4}", queries.len());
    assert!(recall >= 0.95, "recall@10 = {recall:.4}");
}

#[test]
fn retrieval_isolation_rebuild_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = Memory::open(dir.path()).unwrap();
    let alice = news_records(0..120);
    let bob = news_records(120..200);
    let report = memory.import("alice", &alice, encoder(), 32, &mut |_, _| {}).unwrap();
    assert_eq!((report.added, report.duplicates), (120, 0));
    memory.import("bob", &bob, encoder(), 32, &mut |_, _| {}).unwrap();

    // Bob's own text finds his record first; asked of Alice it finds only hers.
    let probe = &bob[7].query;
    let hits = memory.search("bob", probe, 4, encoder()).unwrap();
    assert_eq!(hits[0].record.query, *probe);
    assert!(hits[0].score > 0.99 && hits.windows(2).all(|w| w[0].score >= w[1].score));
    let alice_queries: std::collections::HashSet<&str> = alice.iter().map(|r| r.query.as_str()).collect();
    for k in [1, 4, 50, 500] {
        let hits = memory.search("alice", probe, k, encoder()).unwrap();
        assert_eq!(hits.len(), k.min(120));
        assert!(hits.iter().all(|h| alice_queries.contains(h.record.query.as_str())), "a record of bob came back for alice");
    }

    // Re-importing adds nothing.
    let again = memory.import("alice", &alice, encoder(), 32, &mut |_, _| {}).unwrap();
    assert_eq!((again.added, again.duplicates), (0, 120));

    // The index is persisted and reloaded by a new process (a new Memory).
    let expected = memory.search("alice", "election results and the senate", 5, encoder()).unwrap();
    let user = memory.store().require_user("alice").unwrap();
    let index_dir = memory.index_dir(&user);
    drop(memory);
    let mut memory = Memory::open(dir.path()).unwrap();
    assert_eq!(memory.ensure_index("alice", "minilm", 384).unwrap(), IndexSource::Loaded);
    assert_eq!(memory.search("alice", "election results and the senate", 5, encoder()).unwrap(), expected);

    // Missing index files: rebuilt, same answers.
    drop(memory);
    std::fs::remove_dir_all(&index_dir).unwrap();
    let mut memory = Memory::open(dir.path()).unwrap();
    assert_eq!(memory.ensure_index("alice", "minilm", 384).unwrap(), IndexSource::Rebuilt);
    assert!(index_dir.join("meta.json").is_file());
    assert_eq!(memory.search("alice", "election results and the senate", 5, encoder()).unwrap(), expected);

    // Corrupt index files (data and graph): detected, rebuilt, same answers.
    for file in ["episodic.hnsw.data", "episodic.hnsw.graph"] {
        drop(memory);
        let meta: Value = serde_json::from_str(&std::fs::read_to_string(index_dir.join("meta.json")).unwrap()).unwrap();
        let gen_dir = index_dir.join(format!("g{}", meta["generation"]));
        let path = gen_dir.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        bytes.truncate(bytes.len() - 7);
        std::fs::write(&path, bytes).unwrap();
        memory = Memory::open(dir.path()).unwrap();
        assert_eq!(memory.ensure_index("alice", "minilm", 384).unwrap(), IndexSource::Rebuilt, "{file}");
        assert_eq!(memory.search("alice", "election results and the senate", 5, encoder()).unwrap(), expected);
    }
    // An unreadable meta file too.
    drop(memory);
    std::fs::write(index_dir.join("meta.json"), "{not json").unwrap();
    let mut memory = Memory::open(dir.path()).unwrap();
    assert_eq!(memory.ensure_index("alice", "minilm", 384).unwrap(), IndexSource::Rebuilt);

    // A stale index (records deleted behind its back): rebuilt, and the
    // deleted record is never returned.
    let top = memory.search("alice", probe, 1, encoder()).unwrap()[0].record.clone();
    let user = memory.store().require_user("alice").unwrap();
    assert!(memory.store_mut().delete_record(&user, top.id).unwrap());
    let hits = memory.search("alice", probe, 119, encoder()).unwrap();
    assert_eq!(hits.len(), 119);
    assert!(hits.iter().all(|h| h.record.id != top.id));

    // Deleting a user removes their data and index; the other is untouched.
    let bob_user = memory.store().require_user("bob").unwrap();
    let bob_dir = memory.index_dir(&bob_user);
    assert!(bob_dir.exists());
    memory.delete_user("bob").unwrap();
    assert!(!bob_dir.exists());
    assert!(memory.search("bob", probe, 4, encoder()).is_err());
    assert_eq!(memory.search("alice", probe, 4, encoder()).unwrap().len(), 4);
}

/// The real encoder under another name, as if the user's records had been
/// embedded by a different model.
struct Renamed<'a>(&'a BertEncoder);

impl Encoder for Renamed<'_> {
    fn name(&self) -> &str {
        "other-encoder"
    }
    fn dimension(&self) -> usize {
        self.0.dimension()
    }
    fn embed(&self, texts: &[&str]) -> persona_engine::Result<Vec<Vec<f32>>> {
        self.0.embed(texts)
    }
}

#[test]
fn a_different_encoder_is_refused_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = Memory::open(dir.path()).unwrap();
    memory.import("carol", &news_records(300..310), encoder(), 8, &mut |_, _| {}).unwrap();
    let err = memory.import("carol", &news_records(310..312), &Renamed(encoder()), 8, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("other-encoder"), "{err}");
    assert!(memory.search("carol", "sports", 2, &Renamed(encoder())).is_err());
    assert_eq!(memory.store().user_summary("carol").unwrap().records, 10);
}

#[test]
fn semantic_profile_with_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = Memory::open(dir.path()).unwrap();
    memory.import("dana", &news_records(400..412), encoder(), 16, &mut |_, _| {}).unwrap();
    let user = memory.store().require_user("dana").unwrap();
    let records = memory.store().records(&user).unwrap();
    assert_eq!(TaskKind::detect(&records), TaskKind::NewsCategory);
    let mut model = GgufChatModel::load(model_path("tiny"), &Device::Cpu).unwrap();
    // A small chunk budget forces chunking and a merge with a real model.
    let config = SemanticConfig { chunk_tokens: 400, max_summary_tokens: 80, ..Default::default() };
    let summary = summarize(&mut model, &records, TaskKind::NewsCategory, &config).unwrap();
    assert!(summary.chunks >= 2, "{} chunks", summary.chunks);
    assert!(summary.calls > summary.chunks);
    assert!(!summary.text.trim().is_empty());
    let stored = memory.store_mut().add_semantic_profile(&user, "news-category", TaskKind::NewsCategory.prompt(), "tiny", &summary.text, 12).unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(memory.store().latest_semantic_profile(&user, None).unwrap().unwrap().summary, summary.text);
}
