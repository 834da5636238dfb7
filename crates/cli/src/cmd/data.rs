//! `persona data`: rebuild LaMP-style benchmark sets from the raw data.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use persona_lamp::{build, BuildOptions, Task};

use crate::resolve::Context;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Rebuild a LaMP-style task from the raw public data (per user, time
    /// ordered: the latest record is the query, earlier ones the profile),
    /// written in the official format (questions.json, outputs.json) with a
    /// manifest.json of every choice and count.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The task: LaMP-1 (from the ACL Anthology Network), LaMP-2M (from
    /// MovieLens tags), LaMP-2N (from HuffPost), LaMP-3 (from Amazon reviews).
    #[arg(long)]
    pub task: Task,
    /// The raw data folder (holding news/, amazon/, ...).
    #[arg(long, env = "PERSONA_SHARED_DATA", default_value = "../shared/data")]
    pub raw: PathBuf,
    /// Where to write the set.
    #[arg(long)]
    pub out: PathBuf,
    /// Fewest profile records a user needs.
    #[arg(long, default_value_t = BuildOptions::default().min_profile)]
    pub min_profile: usize,
    /// Keep only the most recent N profile records.
    #[arg(long, value_name = "N")]
    pub max_profile: Option<usize>,
    /// Keep the N users with the most history.
    #[arg(long, value_name = "N")]
    pub max_users: Option<usize>,
}

pub fn run(_ctx: &Context, command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Build(args) => {
            let options = BuildOptions { min_profile: args.min_profile, max_profile: args.max_profile, max_users: args.max_users };
            let built = build(args.task, &args.raw, &options).with_context(|| format!("rebuilding {} from {}", args.task, args.raw.display()))?;
            built.write(&args.out)?;
            let m = &built.manifest;
            println!("{}", m.name);
            println!(
                "  {} users kept of {} ({} raw records; profile sizes min/median/max {}/{}/{})",
                m.users_kept, m.users_seen, m.records_read, m.profile_sizes[0], m.profile_sizes[1], m.profile_sizes[2]
            );
            println!("  query labels: {}", m.query_labels.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
            println!("  written to {} (questions.json, outputs.json, manifest.json)", args.out.display());
            Ok(())
        }
    }
}
