//! Time of one temperature draw over a vocabulary-sized row of logits:
//! the engine's sampler (zero-weight tokens skipped before sorting) against
//! sorting the whole vocabulary, on the same logits and seed (the draws
//! must agree).
//!
//! `cargo run --release -p persona-engine --example sampler_speed [VOCAB] [DRAWS]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example: a panic is a report

use std::time::Instant;

use persona_engine::{Sampler, SamplingParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every token sorted (ties by id) and weighted, then one draw.
fn full_sort(logits: &[f32], temperature: f32, rng: &mut StdRng) -> u32 {
    let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / temperature)).collect();
    all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let max = all[0].1;
    let weights: Vec<f32> = all.iter().map(|x| (x.1 - max).exp()).collect();
    let mut target = rng.random::<f32>() * weights.iter().sum::<f32>();
    for (&(id, _), &w) in all.iter().zip(&weights) {
        if target < w {
            return id;
        }
        target -= w;
    }
    all.last().unwrap().0
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("VOCAB and DRAWS are numbers")).collect();
    let (vocab, draws) = (args.first().copied().unwrap_or(151_936), args.get(1).copied().unwrap_or(200));
    // Logits shaped like a language model's: a bulk around 0 (sd ~2.9) and
    // a few candidates 14-18 above it.
    let mut rng = StdRng::seed_from_u64(1);
    let mut logits: Vec<f32> = (0..vocab).map(|_| (0..4).map(|_| rng.random::<f32>()).sum::<f32>() * 5.0 - 10.0).collect();
    for i in 0..20 {
        logits[(i * 7001) % vocab] = 14.0 + i as f32 * 0.2;
    }
    println!("vocabulary {vocab}, {draws} draws per row");
    for temperature in [0.1f32, 0.7, 1.0] {
        let mut sampler = Sampler::new(SamplingParams { temperature: temperature as f64, seed: 9, ..Default::default() }).unwrap();
        let mut reference = StdRng::seed_from_u64(9);
        let (mut ours, mut full) = (Vec::with_capacity(draws), Vec::with_capacity(draws));
        let start = Instant::now();
        for _ in 0..draws {
            ours.push(sampler.sample(&mut logits.clone(), &[]));
        }
        let ours_ms = start.elapsed().as_secs_f64() * 1000.0 / draws as f64;
        let start = Instant::now();
        for _ in 0..draws {
            full.push(full_sort(&logits, temperature, &mut reference));
        }
        let full_ms = start.elapsed().as_secs_f64() * 1000.0 / draws as f64;
        assert_eq!(ours, full, "the draws differ at T = {temperature}");
        println!("T = {temperature}: sampler {ours_ms:.3} ms, full sort {full_ms:.3} ms ({:.1}x), same draws", full_ms / ours_ms);
    }
}
