//! Memory bandwidth of one decoding step's matrix products, shape by
//! shape: the 1.5B model's layer stack (Qwen2.5 1.5B, Q4_K_M: q, k, v, o,
//! gate, up, down per layer) on random interleaved weights, one activation
//! row, in the order a decode step runs them. One large matrix
//! (`qmatmul_speed`) streams at a bandwidth that these short products, one
//! after the other, do not reach; this shows how far each shape falls short.
//!
//! `HUGE=1 RAYON_NUM_THREADS=2 cargo run --release -p persona-engine --example decode_stream 28`
//!
//! `HUGE=1` advises the weights for transparent huge pages (as the engine
//! does); the argument is the number of layers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example: a panic is a report

use std::time::Instant;

use persona_engine::kernels::{x8, Kind};

/// `len` random bytes of `kind`'s blocks, with small scales.
fn rnd(len: usize, seed: u32, kind: Kind) -> Vec<u8> {
    let mut state = seed | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let bb = match kind {
        Kind::Q4K => 144,
        Kind::Q6K => 210,
        _ => unreachable!(),
    };
    for b in v.chunks_exact_mut(bb) {
        let d = half::f16::from_f32(0.0001).to_le_bytes();
        if kind == Kind::Q4K {
            b[0..2].copy_from_slice(&d);
            b[2..4].copy_from_slice(&d);
        } else {
            b[208..210].copy_from_slice(&d);
        }
    }
    v
}

fn main() {
    let layers: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(28);
    let (h, f) = (1536usize, 8960usize);
    let shapes = [(Kind::Q4K, h, h), (Kind::Q4K, 256, h), (Kind::Q6K, 256, h), (Kind::Q4K, h, h), (Kind::Q4K, f, h), (Kind::Q4K, f, h), (Kind::Q6K, h, f)];
    let mut mats = Vec::new();
    let mut total = 0usize;
    for l in 0..layers {
        for (i, &(kind, n, k)) in shapes.iter().enumerate() {
            let bb = if kind == Kind::Q4K { 144 } else { 210 };
            let w = rnd(n * k / 256 * bb, (l * 7 + i) as u32 * 2654435761, kind);
            let p = x8::pack(kind, &w, n, k).unwrap();
            let mut huge = memmap2::MmapOptions::new().len(p.len()).map_anon().unwrap();
            if std::env::var("HUGE").is_ok() {
                huge.advise(memmap2::Advice::HugePage).unwrap();
            }
            huge.copy_from_slice(&p);
            total += p.len();
            mats.push((kind, n, k, huge));
        }
    }
    let xh: Vec<f32> = (0..h).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
    let xf: Vec<f32> = (0..f).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
    let mut per = [(0f64, 0usize); 7];
    for _ in 0..10 {
        for (j, (kind, n, k, m)) in mats.iter().enumerate() {
            let x = if *k == h { &xh } else { &xf };
            let t = Instant::now();
            std::hint::black_box(x8::matmul(*kind, m, *n, *k, x, 1));
            per[j % 7].0 += t.elapsed().as_secs_f64();
            per[j % 7].1 += m.len();
        }
    }
    for (j, (t, b)) in per.iter().enumerate() {
        println!("shape {:?}: {:.1} GB/s, {:.2} ms per pass", shapes[j], *b as f64 / t / 1e9, t * 100.0);
    }
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let mut s = 0f32;
        for (kind, n, k, m) in &mats {
            let x = if *k == h { &xh } else { &xf };
            s += x8::matmul(*kind, m, *n, *k, x, 1)[0];
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(s);
    }
    times.sort_by(f64::total_cmp);
    let ms = times[times.len() / 2];
    println!("{} MB in {ms:.2} ms: {:.1} GB/s", total / 1_000_000, total as f64 / ms / 1e6);
}
