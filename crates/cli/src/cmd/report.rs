//! What every benchmark report states and how it is written: the machine
//! and CPU flags it ran on, the code's revision, and the replaceable
//! sections of a markdown report.

use std::path::Path;

use anyhow::Result;

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let build = [
        ("avx2", cfg!(target_feature = "avx2")),
        ("fma", cfg!(target_feature = "fma")),
        ("f16c", cfg!(target_feature = "f16c")),
        ("avx512f", cfg!(target_feature = "avx512f")),
    ]
    .iter()
    .map(|(n, on)| format!("{n}={}", if *on { "on" } else { "off" }))
    .collect::<Vec<_>>()
    .join(" ");
    let kernels = persona_engine::kernels::isa().name();
    let mut capped = std::env::var(persona_engine::kernels::ISA_ENV).map(|v| format!(", capped by PERSONA_SIMD={v}")).unwrap_or_default();
    if let Some((key, value)) = persona_engine::kernels::candle_isa_env() {
        let value = std::env::var(key).unwrap_or_else(|_| value.to_string());
        capped.push_str(&format!(" (candle's x86 kernels too: {key}={value})"));
    }
    format!("{cpu}, {cores} cores; CPU SIMD: {}; build target features: {build}; own kernels: {kernels}{capped}", cpu_simd_flags())
}

/// The SIMD flags the CPU reports that decide which kernels run.
pub fn cpu_simd_flags() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let flags = [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
            ("avx-vnni", has!("avxvnni")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vnni", has!("avx512vnni")),
        ];
        let on: Vec<&str> = flags.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        let off: Vec<&str> = flags.iter().filter(|(_, on)| !*on).map(|(n, _)| *n).collect();
        if off.is_empty() {
            on.join(" ")
        } else {
            format!("{} (no {})", on.join(" "), off.join(", "))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

pub fn git_revision() -> String {
    // Built in by build.rs: the revision of the code that runs, not of the
    // folder the binary happens to run in.
    env!("PERSONA_GIT_REVISION").to_string()
}

/// Replaces the part of a markdown report between
/// `<!-- {tag}:start -->` and `<!-- {tag}:end -->` (appending it if absent).
pub fn write_section(path: &Path, tag: &str, section: &str) -> Result<()> {
    let (start, end) = (format!("<!-- {tag}:start -->"), format!("<!-- {tag}:end -->"));
    let (start, end) = (start.as_str(), end.as_str());
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmark results\n\n".to_string());
    let block = format!("{start}\n{section}\n{end}");
    let updated = match (existing.find(start), existing.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &existing[..a], block, &existing[b + end.len()..]),
        _ => format!("{}\n{}\n", existing.trim_end(), block),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, updated)?;
    Ok(())
}
