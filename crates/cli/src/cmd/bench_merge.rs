//! `persona bench merge`: one report from `bench lamp` runs that split a
//! benchmark by method (e.g. the baselines in one run, PersonaAgent in
//! another, on different machines or days) or by users (`--shard I/N`).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use persona_lamp::merge::Part;
use persona_lamp::{markdown, merge};

use crate::cmd::bench_lamp::methods;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// A finished run's folder (it holds report.json and results.jsonl).
    /// Repeat for each part; the parts must share the model, seed and
    /// settings (a part without agents may differ in the settings only
    /// agents read, `--answer-turn`; a part without PersonaAgent or
    /// no-action in `--align-model`), no question may be answered by one
    /// method in two parts, and together every method must cover the same
    /// questions.
    #[arg(long = "run", value_name = "DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Keep only these methods' rows from the parts, comma-separated, or
    /// `all` (the method names of `bench lamp --method`): e.g. the
    /// baselines of a part that also holds ablations run with another
    /// `--align-model`. Every part must keep some.
    #[arg(long, default_value = "all")]
    pub method: String,
    /// Where to write the merged report.json and report.md.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: MergeArgs) -> Result<()> {
    let methods = methods(&args.method)?;
    let mut parts = args.runs.iter().map(|dir| Part::read(dir).with_context(|| format!("--run {}", dir.display()))).collect::<Result<Vec<_>>>()?;
    for part in &mut parts {
        part.rows.retain(|r| methods.contains(&r.method));
        if part.rows.is_empty() {
            bail!("--run {} holds none of the methods asked for (--method {})", part.path.display(), args.method);
        }
    }
    let (merged, rows) = merge(&parts)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&merged)?)?;
    // The joined rows, so that the merged folder can itself be merged or compared.
    let lines: Vec<String> = rows.iter().map(serde_json::to_string).collect::<std::result::Result<_, _>>()?;
    std::fs::write(args.out.join("results.jsonl"), lines.join("\n") + "\n")?;
    // One set, or the same set rebuilt in each part's folder.
    let set = match &merged.meta["questions"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(all) => all.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" + "),
        other => other.to_string(),
    };
    let md = markdown(merged.task, &set, &merged.methods, &merged.meta);
    std::fs::write(args.out.join("report.md"), &md)?;
    println!("{md}");
    Ok(())
}
