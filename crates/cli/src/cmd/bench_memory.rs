//! `persona bench memory`: the per-user vector index (HNSW via hnsw_rs)
//! against brute-force search, at several sizes, on real MiniLM embeddings
//! of real texts from the data folder (news, reviews, paper titles, movie
//! overviews). Embeddings are cached in the data folder, never in the
//! repository.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use persona_engine::Encoder;
use persona_memory::bench::measure_index;
use persona_memory::IndexParams;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::cmd::report::{git_revision, machine, write_section};
use crate::progress::item_bar;
use crate::resolve::{Context, DEFAULT_ENCODER};

#[derive(Debug, Args)]
pub struct MemoryBenchArgs {
    /// Index sizes (number of vectors).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub sizes: Vec<usize>,
    /// Held-out query texts.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Neighbours per query.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// The real-data folder (news/, amazon/, aan/, movielens/).
    #[arg(long, env = "PERSONA_SHARED_DATA", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Encoder.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Markdown report to update (the memory-bench section).
    #[arg(long, default_value = "benches/RESULTS.md")]
    pub out: PathBuf,
    /// Also print the measurements as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Splits review-like text into sentences worth embedding.
fn sentences(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(['.', '!', '?']).map(|s| s.trim().to_string()).filter(|s| s.len() >= 12)
}

/// Distinct real texts from the data folder, shuffled with a fixed seed.
fn collect_texts(data: &Path) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    let news = data.join("news/huffpost_news_category_subset.jsonl");
    for line in std::fs::read_to_string(&news).with_context(|| format!("reading {}", news.display()))?.lines() {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: bad line", news.display()))?;
        for key in ["headline", "short_description"] {
            texts.extend(v[key].as_str().map(str::to_string));
        }
    }
    let reviews = data.join("amazon/musical_instruments_5core.csv");
    let mut rdr = csv::Reader::from_path(&reviews).with_context(|| format!("reading {}", reviews.display()))?;
    let headers = rdr.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (text_col, summary_col) = (col("reviewText"), col("summary"));
    for row in rdr.records() {
        let row = row.with_context(|| format!("{}: bad row", reviews.display()))?;
        texts.extend(summary_col.and_then(|c| row.get(c)).map(str::to_string));
        if let Some(t) = text_col.and_then(|c| row.get(c)) {
            texts.extend(sentences(t));
        }
    }
    // Some of these files are not valid UTF-8 throughout.
    let read_lossy = |path: PathBuf| std::fs::read(path).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
    if let Some(meta) = read_lossy(data.join("aan/acl-metadata.txt")) {
        texts.extend(meta.lines().filter_map(|l| l.strip_prefix("title = {")).map(|t| t.trim_end_matches('}').to_string()));
    }
    for (file, column) in [("movielens/tmdb_5000_movies.csv", "overview"), ("movielens/imdb_top_1000.csv", "Overview")] {
        if let Ok(mut rdr) = csv::Reader::from_path(data.join(file)) {
            let headers = rdr.headers()?.clone();
            if let Some(c) = headers.iter().position(|h| h == column) {
                for row in rdr.records().flatten() {
                    texts.extend(row.get(c).map(sentences).into_iter().flatten());
                }
            }
        }
    }
    // MovieLens tags (`user;movie;tag;time`) and movie titles (`id;title;genres`).
    for (file, field) in [("movielens/ml-10m/tags.dat", 2), ("movielens/ml-10m/movies.dat", 1)] {
        if let Some(t) = read_lossy(data.join(file)) {
            texts.extend(t.lines().filter_map(|l| l.split(';').nth(field)).map(str::to_string));
        }
    }
    let mut seen = std::collections::HashSet::new();
    texts.retain(|t| t.trim().len() >= 12 && seen.insert(t.trim().to_lowercase()));
    texts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(20_250_606));
    Ok(texts)
}

/// Embeds `texts`, reusing a cache file keyed by the texts and encoder.
fn embed_cached(encoder: &dyn Encoder, texts: &[String], cache_dir: &Path) -> Result<Vec<Vec<f32>>> {
    let mut h = Sha256::new();
    h.update(encoder.name());
    for t in texts {
        h.update(t.as_bytes());
        h.update([0]);
    }
    let key = hex::encode(&h.finalize()[..8]);
    let path = cache_dir.join(format!("{}-{}-{key}.f32", encoder.name(), texts.len()));
    let dim = encoder.dimension();
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() == texts.len() * dim * 4 {
            eprintln!("using cached embeddings {}", path.display());
            let flat: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            return Ok(flat.chunks(dim).map(<[f32]>::to_vec).collect());
        }
    }
    let bar = item_bar(texts.len() as u64, "embedding bench texts", "texts");
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(1024) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(encoder.embed(&refs)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(cache_dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for v in &out {
        for x in v {
            f.write_all(&x.to_le_bytes())?;
        }
    }
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(out)
}

pub fn run(ctx: &Context, args: MemoryBenchArgs) -> Result<()> {
    let texts = collect_texts(&args.data).with_context(|| format!("collecting texts from {} (set --data)", args.data.display()))?;
    let largest = args.sizes.iter().copied().max().unwrap_or(0);
    if texts.len() < largest + args.queries {
        bail!("{} holds {} distinct texts; {} are needed ({} + {} queries)", args.data.display(), texts.len(), largest + args.queries, largest, args.queries);
    }
    let texts = &texts[..largest + args.queries];
    let encoder = ctx.load_encoder(&args.encoder, false)?;
    let started = Instant::now();
    let vectors = embed_cached(&encoder, texts, &ctx.data_dir.join("bench-cache"))?;
    let embed_s = started.elapsed().as_secs_f64();
    let (base, queries) = vectors.split_at(largest);
    let mut results = Vec::new();
    for &n in &args.sizes {
        eprintln!("measuring {n} vectors...");
        let scratch = tempfile::tempdir()?;
        let r = measure_index(&base[..n], queries, args.k, encoder.dimension(), scratch.path())?;
        eprintln!(
            "  build {:.2} s ({:.0}/s), HNSW p50 {:.3} ms, brute p50 {:.3} ms, recall@{} {:.4}",
            r.build_s, r.inserts_per_s, r.hnsw_p50_ms, r.brute_p50_ms, args.k, r.recall
        );
        results.push(r);
    }
    let threads = std::env::var("RAYON_NUM_THREADS").ok().unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.to_string()).unwrap_or_default());
    let p = IndexParams::default();
    let mut s = String::new();
    s.push_str("## Memory: HNSW (hnsw_rs) vs brute force\n\n");
    s.push_str(&format!(
        "Machine: {}; {threads} threads; git {}. Command: `persona bench memory --sizes {} --queries {} -k {}`.\n\n",
        machine(),
        git_revision(),
        args.sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        args.queries,
        args.k
    ));
    s.push_str(&format!(
        "Vectors: real all-MiniLM-L6-v2 embeddings (384 dims) of distinct real texts from the data folder (news headlines and descriptions, review sentences, ACL paper titles, movie overviews and tags), shuffled with a fixed seed; {} held-out texts are the queries (embedding them all took {embed_s:.0} s, or came from the cache). HNSW: M={}, ef_construction={}, ef_search={}; cosine similarity. Brute force: one thread, exact dot products (the same SIMD-friendly dot product as the index's distance) over a contiguous matrix.\n\n",
        args.queries, p.max_connections, p.ef_construction, p.ef_search
    ));
    s.push_str(&format!("| vectors | HNSW build s | inserts/s | dump s | reload s | HNSW p50 ms | HNSW p99 ms | HNSW QPS | brute append s | brute p50 ms | brute p99 ms | brute QPS | speed-up (p50) | recall@{} |\n", args.k));
    s.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &results {
        s.push_str(&format!(
            "| {} | {:.2} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.4} | {:.3} | {:.3} | {:.0} | {:.1}x | {:.4} |\n",
            r.vectors,
            r.build_s,
            r.inserts_per_s,
            r.dump_s,
            r.reload_s,
            r.hnsw_p50_ms,
            r.hnsw_p99_ms,
            r.hnsw_qps,
            r.brute_insert_s,
            r.brute_p50_ms,
            r.brute_p99_ms,
            r.brute_qps,
            r.brute_p50_ms / r.hnsw_p50_ms.max(1e-9),
            r.recall
        ));
    }
    write_section(&args.out, "memory-bench", &s)?;
    println!("{s}");
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
