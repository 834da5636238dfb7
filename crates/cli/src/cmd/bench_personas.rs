//! `persona bench personas`: how different the learned personas are —
//! pairwise Jaccard similarity of their word sets and a 2-D map of their
//! embeddings (the paper's Fig. 2 and 5), as JSON, markdown and plots
//! (jaccard.{svg,png}, map.{svg,png}).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use persona_engine::Encoder;
use persona_lamp::analysis::{jaccard_matrix, natural_cmp, pca_2d};
use persona_lamp::plot::{heatmap, scatter, Labels};
use serde_json::json;

use crate::resolve::{Context, DEFAULT_ENCODER};

#[derive(Debug, Args)]
pub struct PersonasArgs {
    /// The data folder holding the users [default: the global --data-dir];
    /// for a `bench lamp` run, its `OUT/memory`.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Compare each user's N-th persona version (1 = the initial persona,
    /// before any alignment); users with fewer versions are left out.
    /// Default: each user's latest version.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
    /// Encoder for the 2-D map.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Where to write personas.json, personas.md and the plots.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(ctx: &Context, args: PersonasArgs) -> Result<()> {
    let dir = args.store.clone().unwrap_or_else(|| ctx.data_dir.clone());
    let memory = persona_memory::Memory::open(&dir)?;
    let mut users = Vec::new();
    for summary in memory.store().users()? {
        let user = memory.store().require_user(&summary.id)?;
        let versions = memory.store().persona_versions(&user)?;
        let chosen = match args.version {
            Some(n) => versions.get(n as usize - 1),
            None => versions.last(),
        };
        if let Some(p) = chosen {
            users.push((summary.id.clone(), p.version, versions.len(), p.text.clone()));
        }
    }
    users.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    if users.len() < 2 {
        let with = args.version.map_or_else(|| "a persona".to_owned(), |v| format!("a version {v} persona"));
        bail!("{} has {} user(s) with {with}; the analysis needs at least two", dir.display(), users.len());
    }
    let texts: Vec<&str> = users.iter().map(|u| u.3.as_str()).collect();
    let jaccard = jaccard_matrix(&texts);
    let encoder = ctx.load_encoder(&args.encoder, false)?;
    let vectors = encoder.embed(&texts)?;
    let map = pca_2d(&vectors);
    let n = users.len();
    let off: Vec<f64> = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| jaccard[i][j]).collect();
    let mean = off.iter().sum::<f64>() / off.len() as f64;
    std::fs::create_dir_all(&args.out)?;
    let report = json!({
        "store": dir.display().to_string(),
        "version": args.version,
        "users": users.iter().zip(&map).map(|((id, v, count, text), p)| json!({"user": id, "version": v, "versions": count, "text": text, "map": p})).collect::<Vec<_>>(),
        "jaccard": jaccard,
        "mean_pairwise_jaccard": mean,
    });
    std::fs::write(args.out.join("personas.json"), serde_json::to_string_pretty(&report)?)?;
    let mut md = format!(
        "# Persona similarity\n\n{n} users from {} (each user's {} persona); mean pairwise Jaccard similarity of persona word sets: {mean:.3}\n\n",
        dir.display(),
        which_version(args.version)
    );
    md.push_str(&format!("| user | version | map x | map y | {} |\n", users.iter().map(|u| u.0.as_str()).collect::<Vec<_>>().join(" | ")));
    md.push_str(&format!("|---|---|---|---|{}\n", "---|".repeat(n)));
    for (i, (id, v, _, _)) in users.iter().enumerate() {
        let row: Vec<String> = jaccard[i].iter().map(|x| format!("{x:.2}")).collect();
        md.push_str(&format!("| {id} | v{v} | {:.3} | {:.3} | {} |\n", map[i][0], map[i][1], row.join(" | ")));
    }
    std::fs::write(args.out.join("personas.md"), &md)?;
    let names: Vec<String> = users.iter().map(|u| u.0.clone()).collect();
    let mut files = heatmap(&args.out.join("jaccard"), &format!("Persona word-set Jaccard similarity (mean {mean:.3})"), &names, &jaccard)?;
    let labels = Labels { title: "Personas: 2-D PCA map of their embeddings".into(), x: "PC 1".into(), y: "PC 2".into() };
    files.extend(scatter(&args.out.join("map"), &labels, &names, &map)?);
    println!("{md}");
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

/// Which persona version the analysis compares, in words ("latest", "version 1").
fn which_version(version: Option<u32>) -> String {
    version.map_or_else(|| "latest".to_owned(), |v| format!("version {v}"))
}
