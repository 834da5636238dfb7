//! The parts of `bench engine` that measure what PersonaAgent's call
//! pattern gains: prefix reuse (a second prompt sharing a long persona +
//! tools prefix) and batched decoding of independent prompts.

use crate::cmd::report::median;
use anyhow::Result;
use persona_engine::{ChatMessage, ChatModel, GenerationParams, GgufChatModel};
use serde::{Deserialize, Serialize};

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

/// A long system prompt of about `tokens` tokens (a stand-in for a persona
/// plus tool descriptions) and a question.
fn chat_prompt(model: &GgufChatModel, system: &str, question: &str) -> Result<Vec<u32>> {
    let text = model.render_chat(&[ChatMessage::system(system), ChatMessage::user(question)])?;
    Ok(model.encode_prompt(&text)?)
}

/// Cold call, then a second call with the same system prompt and another
/// question; `runs` times from empty caches, medians.
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

/// The markdown tables for the models measured.
pub fn render(rows: &[(&str, Option<&PrefixMeasurement>, &[BatchPoint])]) -> String {
    let mut s = String::new();
    if rows.iter().any(|r| r.1.is_some()) {
        s.push_str("\n### Prefix reuse (persona-engine)\n\nTwo chat prompts with the same long system prompt (a stand-in for a persona plus tool descriptions) and different questions, from empty caches; the second call prefills only what follows the shared prefix. Median time to first token.\n\n");
        s.push_str("| model | shared tokens | 2nd prompt tokens | served from cache | TTFT cold ms | TTFT 2nd call ms | 2nd / cold |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (model, p, _) in rows {
            if let Some(p) = p {
                let share = if p.cold_ttft_ms > 0.0 { format!("{:.1}%", 100.0 * p.warm_ttft_ms / p.cold_ttft_ms) } else { "-".into() };
                s.push_str(&format!(
                    "| {model} | {} | {} | {} | {:.0} | {:.0} | {share} |\n",
                    p.shared_tokens, p.prompt_tokens, p.cached_tokens, p.cold_ttft_ms, p.warm_ttft_ms
                ));
            }
        }
    }
    if rows.iter().any(|r| !r.2.is_empty()) {
        s.push_str("\n### Batched decoding (persona-engine)\n\nDistinct short prompts decoded together (`generate_batch`), EOS ignored; aggregate decode tokens/s of all sequences, and the gain over batch 1.\n\n");
        let sizes: Vec<usize> = rows.iter().flat_map(|r| r.2.iter().map(|p| p.batch)).fold(Vec::new(), |mut v, b| {
            if !v.contains(&b) {
                v.push(b);
            }
            v
        });
        s.push_str(&format!(
            "| model | {} |\n|---|{}\n",
            sizes.iter().map(|b| format!("batch {b} tok/s")).collect::<Vec<_>>().join(" | "),
            "---:|".repeat(sizes.len())
        ));
        for (model, _, points) in rows {
            let base = points.iter().find(|p| p.batch == 1).map(|p| p.tok_s).unwrap_or(0.0);
            let cells: Vec<String> = sizes
                .iter()
                .map(|b| match points.iter().find(|p| p.batch == *b) {
                    Some(p) if base > 0.0 => format!("{:.1} ({:.2}x)", p.tok_s, p.tok_s / base),
                    Some(p) => format!("{:.1}", p.tok_s),
                    None => "-".into(),
                })
                .collect();
            s.push_str(&format!("| {model} | {} |\n", cells.join(" | ")));
        }
    }
    s
}
