//! The forward pass a GPU runs, tested with and without a GPU.
//!
//! On every machine (CI included), [`LoadOptions::device_ops`] runs the
//! GPU's code path on the CPU: a dense embedding table, candle's quantized
//! matmuls on the file's own types (no repacking, no own kernels), and
//! attention as tensor ops under a causal mask. It must pass what the CPU
//! path passes: llama.cpp's greedy tokens, the CPU path's tokens (apart
//! from near-ties), batched generation equal to one-by-one, and prefix
//! reuse that changes nothing.
//!
//! On a GPU (`cargo test -p persona-engine --features cuda`, or `metal`):
//! the device named by `PERSONA_TEST_DEVICE` (default `cuda:0`, `metal` in
//! a Metal build) must give the CPU's greedy tokens for the tiny and small
//! models, batch and reuse prefixes as the CPU does, and embed within 1e-3
//! of the CPU's encoder. Where no GPU opens, those tests say why on stderr
//! and pass; `PERSONA_REQUIRE_GPU=1` turns that into a failure (for CI
//! machines that have one).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_engine::{BertEncoder, ChatModel, Device, DeviceChoice, Encoder, GgufChatModel, LoadOptions};
use persona_testkit::{model_dir, model_path};

use crate::engine::{check_greedy, fixture, greedy_cases, NEAR_TIE};
use crate::prefix_batch::{check_batch_with, check_prefix_reuse_with};

/// The GPU named by `PERSONA_TEST_DEVICE`, or `None` (with the reason on
/// stderr) where this build or machine has none.
fn gpu() -> Option<Device> {
    let default = if cfg!(feature = "metal") { "metal" } else { "cuda:0" };
    let name = std::env::var("PERSONA_TEST_DEVICE").unwrap_or_else(|_| default.to_string());
    let choice: DeviceChoice = name.parse().unwrap_or_else(|e| panic!("PERSONA_TEST_DEVICE: {e}"));
    assert_ne!(choice, DeviceChoice::Cpu, "PERSONA_TEST_DEVICE={name} names the CPU: name a GPU (cuda:N or metal)");
    match choice.open() {
        Ok(device) => Some(device),
        Err(e) => {
            let required = std::env::var("PERSONA_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "PERSONA_REQUIRE_GPU=1 but {name} did not open: {e}");
            eprintln!("skipped: no GPU for this test ({name}: {e})");
            None
        }
    }
}

fn gpu_path_options() -> LoadOptions {
    LoadOptions { device_ops: true, ..Default::default() }
}

/// The index where two token sequences first differ (`None`: equal).
fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// `model`'s greedy continuations of the fixture's prompts against the CPU
/// path's. They may part only where llama.cpp's top two logits nearly tie
/// (recorded in the fixture), or after the CPU path itself left llama.cpp's
/// tokens at such a tie; at least half must agree on every token.
fn check_against_cpu(name: &str, fixture_name: &str, model: &mut GgufChatModel) {
    let mut cpu = GgufChatModel::load(model_path(name), &Device::Cpu).unwrap();
    let cases = greedy_cases(fixture_name);
    let mut same = 0;
    for case in &cases {
        let prompt = case.prompt.as_str();
        let ours = cpu.generate(prompt, &case.params(), &mut |_| true).unwrap();
        let theirs = model.generate(prompt, &case.params(), &mut |_| true).unwrap();
        let Some(i) = first_difference(&ours.tokens, &theirs.tokens) else {
            same += 1;
            continue;
        };
        let cpu_left_llama_cpp_before = first_difference(&ours.tokens, &case.ids).is_some_and(|j| j < i);
        if !cpu_left_llama_cpp_before {
            let margin = case.margins.get(i).copied().unwrap_or(f64::INFINITY);
            assert!(
                margin < NEAR_TIE,
                "{name}: token {i} differs from the CPU path's for {prompt:?} where llama.cpp's margin is {margin:.3} (not a near-tie): {:?} vs {:?}",
                theirs.text,
                ours.text
            );
        }
    }
    assert!(same * 2 >= cases.len(), "{name}: only {same} of {} prompts give the CPU path's tokens", cases.len());
}

fn load_gpu_path(name: &str, device: &Device) -> GgufChatModel {
    GgufChatModel::load_with(model_path(name), device, &gpu_path_options()).unwrap()
}

#[test]
fn the_gpu_path_on_the_cpu_gives_llama_cpp_and_cpu_tokens_tiny() {
    let mut model = load_gpu_path("tiny", &Device::Cpu);
    check_greedy(&mut model, "llama_cpp_tiny.json");
    check_against_cpu("tiny", "llama_cpp_tiny.json", &mut model);
}

#[test]
fn the_gpu_path_on_the_cpu_gives_llama_cpp_and_cpu_tokens_small() {
    let mut model = load_gpu_path("small", &Device::Cpu);
    check_greedy(&mut model, "llama_cpp_small.json");
    check_against_cpu("small", "llama_cpp_small.json", &mut model);
}

#[test]
fn the_gpu_path_on_the_cpu_batches_and_reuses_prefixes() {
    // Several sequences in one forward, each with its own causal mask, and
    // a prompt tail prefilled after a cached prefix (a mask with an offset).
    check_batch_with("tiny (GPU path on the CPU)", &mut load_gpu_path("tiny", &Device::Cpu), true);
    check_prefix_reuse_with("tiny (GPU path on the CPU)", &|| load_gpu_path("tiny", &Device::Cpu));
}

/// Model `name` on the GPU (when one opens) against llama.cpp and the CPU.
fn check_gpu_tokens(name: &str) {
    let Some(device) = gpu() else { return };
    let mut model = GgufChatModel::load(model_path(name), &device).unwrap();
    let fixture_name = format!("llama_cpp_{name}.json");
    check_greedy(&mut model, &fixture_name);
    check_against_cpu(name, &fixture_name, &mut model);
}

#[test]
fn the_gpu_gives_the_cpu_tokens_tiny() {
    check_gpu_tokens("tiny");
}

#[test]
fn the_gpu_gives_the_cpu_tokens_small() {
    check_gpu_tokens("small");
}

#[test]
fn the_gpu_batches_and_reuses_prefixes() {
    let Some(device) = gpu() else { return };
    for name in ["tiny", "small"] {
        let load = || GgufChatModel::load(model_path(name), &device).unwrap();
        check_batch_with(&format!("{name} on {device:?}"), &mut load(), false);
        check_prefix_reuse_with(&format!("{name} on {device:?}"), &load);
    }
}

#[test]
fn the_gpu_encoder_matches_the_cpu_within_1e_3() {
    let Some(device) = gpu() else { return };
    let sentences: Vec<String> =
        fixture("sentence_transformers_minilm.json")["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    let sentences: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let dir = model_dir("minilm");
    let on_cpu = BertEncoder::load(&dir, "minilm", &Device::Cpu).unwrap().embed(&sentences).unwrap();
    let on_gpu = BertEncoder::load(&dir, "minilm", &device).unwrap().embed(&sentences).unwrap();
    for (i, (a, b)) in on_cpu.iter().zip(&on_gpu).enumerate() {
        assert_eq!(a.len(), b.len());
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "sentence {i}: the GPU's vector is {worst} away from the CPU's in some dimension");
    }
}
