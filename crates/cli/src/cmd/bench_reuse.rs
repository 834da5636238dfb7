//! The tables of `bench engine` that show what PersonaAgent's call
//! pattern gains: prefix reuse (a second prompt sharing a long persona +
//! tools prefix) and batched decoding of independent prompts (measured by
//! `persona_engine::bench`).

use persona_engine::bench::{BatchPoint, PrefixMeasurement};

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
