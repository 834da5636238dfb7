//! Records the git revision the binary is built from, for `--version` and
//! benchmark reports (`PERSONA_GIT_REVISION`; "unknown" outside a git
//! checkout; `+dirty` when tracked files under `crates/` or the Cargo
//! files differ from that revision, so a report never names a commit that
//! did not hold the code it ran).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // The manifest folder of this build (read when the script runs: a build
    // script compiled for one checkout is reused by another that shares the
    // target folder, so `env!` would name the first one).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = format!("{manifest}/../..");
    let mut rev = git(&["-C", &root, "rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let changed = git(&["-C", &root, "status", "--porcelain", "--untracked-files=no", "--", "crates", "Cargo.toml", "Cargo.lock"]);
    if rev != "unknown" && changed.is_some_and(|c| !c.is_empty()) {
        rev.push_str("+dirty");
    }
    println!("cargo:rustc-env=PERSONA_GIT_REVISION={rev}");
    // Rerun when the sources change, so the dirty mark follows them.
    println!("cargo:rerun-if-changed={root}/crates");
    println!("cargo:rerun-if-changed={root}/Cargo.toml");
    println!("cargo:rerun-if-changed={root}/Cargo.lock");
    // Rebuild when HEAD moves (a commit, a checkout).
    if let Some(dir) = git(&["-C", &root, "rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
