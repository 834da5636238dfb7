//! `persona persona`: show a user's persona and its versions.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::display::date;
use crate::resolve::Context;

#[derive(Debug, Subcommand)]
pub enum PersonaCommand {
    /// Print the user's current persona (system prompt), or every version
    /// with the feedback that produced it.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The user id.
    #[arg(long)]
    pub user: String,
    /// Every version, oldest first, with its parent and feedback.
    #[arg(long)]
    pub history: bool,
    /// Print JSON: one version {version, parent, text, feedback,
    /// created_at}, or with --history a list of them.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, command: PersonaCommand) -> Result<()> {
    match command {
        PersonaCommand::Show(args) => show(ctx, args),
    }
}

fn show(ctx: &Context, args: ShowArgs) -> Result<()> {
    let memory = ctx.memory()?;
    let user = memory.store().require_user(&args.user)?;
    let versions = memory.store().persona_versions(&user)?;
    let Some(latest) = versions.last() else {
        bail!("user '{}' has no persona yet: `persona ask` or `persona align` builds it from the user's history", args.user);
    };
    match (args.history, args.json) {
        (true, true) => println!("{}", serde_json::to_string_pretty(&versions)?),
        (false, true) => println!("{}", serde_json::to_string_pretty(latest)?),
        (false, false) => println!("persona v{} of '{}' ({})\n\n{}", latest.version, args.user, date(Some(latest.created_at)), latest.text),
        (true, false) => {
            for v in &versions {
                let parent = v.parent.map_or("initial".to_string(), |p| format!("from v{p}"));
                println!("=== v{} ({parent}, {}) ===", v.version, date(Some(v.created_at)));
                if let Some(f) = &v.feedback {
                    println!("feedback:\n{}\n", f.trim());
                }
                println!("{}\n", v.text);
            }
        }
    }
    Ok(())
}
