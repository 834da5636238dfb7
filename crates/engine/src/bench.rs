//! Measuring the engine (`persona bench engine` reports it, side by side
//! with llama.cpp and sentence-transformers): prefill and decode speed,
//! time to first token, peak memory, what prefix reuse and batched decoding
//! gain, and the encoder's sentences per second. The figures have the same
//! JSON shape as the reference script's, so both sides print one
//! [`Measurement`].

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::chat::ChatMessage;
use crate::chat_model::{ChatModel, GgufChatModel};
use crate::encoder::{BertEncoder, Encoder};
use crate::error::Result;
use crate::generation::GenerationParams;

/// The candle release the engine is built on (named in the reports).
pub const CANDLE_VERSION: &str = "0.11";

/// One engine's figures for one model (the reference script prints the
/// same shape).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measurement {
    /// The engine and its build, in words.
    pub engine: String,
    /// Time to load the model, ms.
    pub load_ms: f64,
    /// Tokens of the measured prompt.
    #[serde(default)]
    pub prompt_tokens: usize,
    /// Prompt tokens per second (median).
    #[serde(default)]
    pub prefill_tok_s: f64,
    /// Time to first token, ms (median).
    #[serde(default)]
    pub ttft_ms: f64,
    /// Tokens generated per run.
    #[serde(default)]
    pub decode_tokens: usize,
    /// Generated tokens per second (median).
    #[serde(default)]
    pub decode_tok_s: f64,
    /// Sentences embedded per run (encoders).
    #[serde(default)]
    pub sentences: usize,
    /// Sentences embedded per second (median).
    #[serde(default)]
    pub sentences_per_s: f64,
    /// Peak resident memory of the process, MB.
    pub peak_rss_mb: f64,
    /// Prefix reuse, when measured.
    #[serde(default)]
    pub prefix: Option<PrefixMeasurement>,
    /// Batched decoding, one point per batch size measured.
    #[serde(default)]
    pub batches: Vec<BatchPoint>,
}

/// Time to first token of a prompt, cold and with its prefix cached.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PrefixMeasurement {
    /// Tokens the two prompts share.
    pub shared_tokens: usize,
    /// Tokens of the second prompt.
    pub prompt_tokens: usize,
    /// Tokens of the second prompt served from the cache.
    pub cached_tokens: usize,
    /// Median time to first token of the first (cold) call, ms.
    pub cold_ttft_ms: f64,
    /// Median time to first token of the second call, ms.
    pub warm_ttft_ms: f64,
}

/// Aggregate decode speed at one batch size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchPoint {
    /// Prompts decoded together.
    pub batch: usize,
    /// Tokens decoded per second, all sequences together (median).
    pub tok_s: f64,
}

/// What [`measure_chat`] runs.
#[derive(Debug, Clone)]
pub struct ChatBench {
    /// The prompt prefilled on every run (e.g. [`filler_text`]).
    pub prompt: String,
    /// Tokens generated per run (EOS ignored).
    pub gen_tokens: usize,
    /// Measured runs (medians reported), after one warm-up.
    pub runs: usize,
    /// Size of the shared system prompt of the prefix-reuse measurement,
    /// in tokens (0: not measured).
    pub prefix_tokens: usize,
    /// Batch sizes of the batched-decoding measurement (empty: not measured).
    pub batches: Vec<usize>,
}

/// The middle value (the upper one of an even count; 0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Peak resident memory of this process so far, MB (0 where the platform
/// does not say: it is read from `/proc/self/status`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Measures a loaded chat model: the plain generation of `bench.prompt`
/// (every run from empty caches), then prefix reuse and batched decoding
/// where asked. `load_ms` is what loading it took.
pub fn measure_chat(model: &mut GgufChatModel, load_ms: f64, bench: &ChatBench) -> Result<Measurement> {
    let params = GenerationParams { max_tokens: bench.gen_tokens, ignore_eos: true, ..Default::default() };
    let (mut prefill, mut ttft, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    let mut prompt_tokens = 0;
    for run in 0..=bench.runs {
        // Every run prefills the whole prompt: nothing may come from the caches.
        model.clear_caches();
        let g = model.generate(&bench.prompt, &params, &mut |_| true)?;
        if run == 0 {
            continue;
        }
        prompt_tokens = g.prompt_tokens;
        prefill.push(g.prefill_tokens_per_s());
        ttft.push(g.prefill_ms);
        decode.push(g.decode_tokens_per_s());
    }
    // Peak memory of the plain generation above, before the extra measurements.
    let peak_rss = peak_rss_mb();
    let prefix = if bench.prefix_tokens > 0 { Some(measure_prefix(model, &filler_text(bench.prefix_tokens), bench.runs)?) } else { None };
    let batches = measure_batches(model, &bench.batches, bench.gen_tokens.min(64), bench.runs)?;
    let engine = match &model.info().repacked {
        Some(_) => format!("persona-engine (candle {CANDLE_VERSION}, Q8_0 repack)"),
        None => format!("persona-engine (own forward + Q4_1/Q5_0/Q4_K/Q6_K kernels, candle {CANDLE_VERSION})"),
    };
    Ok(Measurement {
        engine,
        load_ms,
        prompt_tokens,
        prefill_tok_s: median(prefill),
        ttft_ms: median(ttft),
        decode_tokens: bench.gen_tokens,
        decode_tok_s: median(decode),
        peak_rss_mb: peak_rss,
        prefix,
        batches,
        ..Default::default()
    })
}

/// Measures a loaded encoder on `sentences`: one warm-up on the first 32,
/// then `runs` passes over all of them.
pub fn measure_encoder(encoder: &BertEncoder, load_ms: f64, sentences: &[&str], runs: usize) -> Result<Measurement> {
    encoder.embed(&sentences[..sentences.len().min(32)])?;
    let mut rates = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        encoder.embed(sentences)?;
        rates.push(sentences.len() as f64 / t.elapsed().as_secs_f64());
    }
    Ok(Measurement {
        engine: format!("persona-engine (candle {CANDLE_VERSION})"),
        load_ms,
        sentences: sentences.len(),
        sentences_per_s: median(rates),
        peak_rss_mb: peak_rss_mb(),
        ..Default::default()
    })
}

/// A chat prompt: `system` and `question` rendered with the model's
/// template, tokenized.
fn chat_prompt(model: &GgufChatModel, system: &str, question: &str) -> Result<Vec<u32>> {
    let text = model.render_chat(&[ChatMessage::system(system), ChatMessage::user(question)])?;
    model.encode_prompt(&text)
}

/// Cold call, then a second call with the same system prompt (a stand-in
/// for a persona plus tool descriptions) and another question; `runs`
/// times from empty caches, medians.
pub fn measure_prefix(model: &mut GgufChatModel, system: &str, runs: usize) -> Result<PrefixMeasurement> {
    let first = chat_prompt(model, system, "Which sailors first charted the coastline described above?")?;
    let second = chat_prompt(model, system, "Summarise in one sentence how printing changed maps.")?;
    let shared = first.iter().zip(&second).take_while(|(a, b)| a == b).count();
    let params = GenerationParams { max_tokens: 1, ignore_eos: true, ..Default::default() };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut cached = 0;
    model.set_cache_scope("bench");
    for _ in 0..runs.max(1) {
        model.clear_caches();
        let a = model.generate_tokens(first.clone(), &params, None, &mut |_| true)?;
        let b = model.generate_tokens(second.clone(), &params, None, &mut |_| true)?;
        cold.push(a.prefill_ms);
        warm.push(b.prefill_ms);
        cached = b.cached_tokens;
    }
    Ok(PrefixMeasurement { shared_tokens: shared, prompt_tokens: second.len(), cached_tokens: cached, cold_ttft_ms: median(cold), warm_ttft_ms: median(warm) })
}

/// Aggregate decode tokens/s for each batch size (distinct short prompts,
/// `gen_tokens` each, EOS ignored), median of `runs` after one warm-up.
pub fn measure_batches(model: &mut GgufChatModel, batches: &[usize], gen_tokens: usize, runs: usize) -> Result<Vec<BatchPoint>> {
    const TOPICS: [&str; 8] = [
        "a lighthouse keeper",
        "a lost umbrella",
        "the first snow",
        "a chess tournament",
        "a bakery at dawn",
        "a broken compass",
        "a night train",
        "an old violin",
    ];
    let params = GenerationParams { max_tokens: gen_tokens, ignore_eos: true, ..Default::default() };
    let mut points = Vec::new();
    for &batch in batches {
        let prompts = (0..batch)
            .map(|i| chat_prompt(model, "You are a storyteller.", &format!("Tell a short story about {}.", TOPICS[i % TOPICS.len()])))
            .collect::<Result<Vec<_>>>()?;
        let mut rates = Vec::new();
        for run in 0..=runs {
            model.clear_caches();
            let out = model.generate_batch(prompts.clone(), &params)?;
            let decoded: usize = out.iter().map(|g| g.completion_tokens.saturating_sub(1)).sum();
            let ms = out.first().map(|g| g.decode_ms).unwrap_or(0.0);
            if run > 0 && ms > 0.0 {
                rates.push(decoded as f64 * 1000.0 / ms);
            }
        }
        points.push(BatchPoint { batch, tok_s: median(rates) });
    }
    Ok(points)
}

/// A deterministic English text of about `tokens` tokens (about 5
/// characters a token with both reference tokenizers).
pub fn filler_text(tokens: usize) -> String {
    const PARAGRAPH: &str = "The history of cartography traces the development of maps from early sketches on clay tablets to satellite imagery. \
Sailors relied on charts that recorded coastlines, currents and the positions of stars, while surveyors measured land with chains and theodolites. \
Printing made maps cheaper, and national mapping agencies standardised symbols, scales and projections. ";
    let mut s = String::new();
    let mut i = 0;
    while s.len() < tokens * 5 {
        s.push_str(&format!("Section {i}. "));
        s.push_str(PARAGRAPH);
        i += 1;
    }
    s
}

/// 256 distinct short sentences, one a line, for the encoder measurement.
pub fn bench_sentences() -> String {
    let subjects = [
        "The committee",
        "A young musician",
        "Our neighbour",
        "The research team",
        "My grandmother",
        "The city council",
        "A small startup",
        "The football club",
    ];
    let verbs = ["announced", "questioned", "celebrated", "postponed", "reviewed", "described", "rejected", "funded"];
    let objects = [
        "a new plan for public transport",
        "the results of the annual survey",
        "an unusual guitar made of recycled wood",
        "the recipe for a traditional soup",
        "a proposal to plant more trees downtown",
        "the design of a faster electric bicycle",
        "the schedule for next season",
        "a report on rising rents",
    ];
    let mut out = String::new();
    for (i, s) in subjects.iter().enumerate() {
        for (j, v) in verbs.iter().enumerate() {
            for k in 0..4 {
                let o = objects[(i + j + k) % objects.len()];
                out.push_str(&format!("{s} {v} {o} on day {}.\n", i * 32 + j * 4 + k));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_and_sentences_are_distinct() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(Vec::new()), 0.0);
        let text = bench_sentences();
        let lines: std::collections::HashSet<&str> = text.lines().collect();
        assert_eq!((text.lines().count(), lines.len()), (256, 256));
        assert!(filler_text(100).len() >= 500);
    }
}
