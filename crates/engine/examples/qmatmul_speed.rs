//! Time of the engine's own quantized matmul (Q4_1 / Q5_0 / Q4_K / Q6_K weights times f32
//! activations) on random blocks of a given shape, e.g. the small model's
//! MLP up-projection during a 512-token prefill:
//!
//! `cargo run --release -p persona-engine --example qmatmul_speed q5_0 4864 896 512 5`
//!
//! Each kind is timed in the original layout and interleaved by eight rows
//! (the layout decoding reads on x86-64 where it applies).
//!
//! Prints the median time and a checksum of the output (which must not
//! change when the kernel changes). Threads: `RAYON_NUM_THREADS` (default:
//! all cores); with 1 it also runs under `valgrind --tool=callgrind` for a
//! repeatable instruction count.

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example: a panic is a report

use std::time::Instant;

use half::f16;
use persona_engine::kernels::{isa, matmul, Kind};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let kind = match arg(0, "q5_0").as_str() {
        "q4_1" => Kind::Q4_1,
        "q5_0" => Kind::Q5_0,
        "q4_k" => Kind::Q4K,
        "q6_k" => Kind::Q6K,
        other => panic!("kind '{other}': q4_1, q5_0, q4_k or q6_k"),
    };
    let (n, k, m, reps): (usize, usize, usize, usize) =
        (arg(1, "4864").parse().unwrap(), arg(2, "896").parse().unwrap(), arg(3, "512").parse().unwrap(), arg(4, "5").parse().unwrap());
    let mut state = 0x9e37_79b9u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut weights = Vec::new();
    for _ in 0..n * k / kind.block_values() {
        if kind == Kind::Q6K {
            // 192 bytes of 6-bit values, sixteen scales, d last.
            for _ in 0..208 {
                weights.push(next() as u8);
            }
            weights.extend_from_slice(&f16::from_f32(0.0001).to_le_bytes());
            continue;
        }
        weights.extend_from_slice(&f16::from_f32(0.002 + (next() % 100) as f32 * 0.0001).to_le_bytes());
        match kind {
            Kind::Q4_1 => weights.extend_from_slice(&f16::from_f32(-0.05 + (next() % 100) as f32 * 0.001).to_le_bytes()),
            Kind::Q5_0 => weights.extend_from_slice(&next().to_le_bytes()),
            // dmin, 12 bytes of scales and mins, the first 112 bytes of nibbles.
            Kind::Q4K => {
                weights.extend_from_slice(&f16::from_f32(0.0001).to_le_bytes());
                for _ in 0..124 {
                    weights.push(next() as u8);
                }
            }
            Kind::Q6K => unreachable!("written above"),
        }
        for _ in 0..16 {
            weights.push(next() as u8);
        }
    }
    let x: Vec<f32> = (0..m * k).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
    let report = |who: &str, f: &dyn Fn() -> Vec<f32>| {
        let mut times = Vec::new();
        let mut checksum = 0f64;
        for _ in 0..reps {
            let t = Instant::now();
            let y = f();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            checksum = y.iter().map(|&v| v as f64).sum();
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        let gops = 2.0 * (n * k * m) as f64 / ms / 1e6;
        println!("{who} {kind:?} n={n} k={k} m={m}: median {ms:.2} ms over {reps} runs ({gops:.1} GOP/s), checksum {checksum:.6}");
    };
    report(&format!("{:?}", isa()), &|| matmul(kind, &weights, n, k, &x, m));
    // Also interleaved by eight rows (the layout decoding reads on x86-64).
    if let Some(packed) = persona_engine::kernels::x8::pack(kind, &weights, n, k) {
        report(&format!("{:?} x8", isa()), &|| persona_engine::kernels::x8::matmul(kind, &packed, n, k, &x, m));
    }
    // The same blocks through candle's quantized matmul, for comparison
    // (`candle` as the sixth argument; candle quantizes the activations its
    // own way, so the checksum differs slightly).
    if arg(5, "") == "candle" {
        use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul};
        use candle_core::{Device, Module, Tensor};
        let dtype = match kind {
            Kind::Q4_1 => GgmlDType::Q4_1,
            Kind::Q5_0 => GgmlDType::Q5_0,
            Kind::Q4K => GgmlDType::Q4K,
            Kind::Q6K => GgmlDType::Q6K,
        };
        let qmm = QMatMul::from_qtensor(qtensor_from_ggml(dtype, &weights, vec![n, k], &Device::Cpu).unwrap()).unwrap();
        let xs = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
        report("candle", &|| qmm.forward(&xs).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
