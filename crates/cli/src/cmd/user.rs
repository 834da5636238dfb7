//! `persona user`: import a user's history, list, show and delete users.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use persona_memory::{read_import_file, ImportOptions};

use crate::display::{date, one_line};
use crate::progress::item_bar;
use crate::resolve::{Context, DEFAULT_ENCODER};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Import a user's history (creating the user if new).
    ///
    /// FILE is a JSON array or JSON Lines of records with `query`,
    /// `response`, optional `timestamp` (RFC 3339, a date, or unix seconds)
    /// and optional `metadata` (an object; other fields are kept there too);
    /// or a LaMP questions file (`[{id, input, profile: [...]}]`), whose
    /// profile items become records. The whole file is checked first: a
    /// malformed file imports nothing. Records the user already has are
    /// skipped, so an interrupted import can simply be run again.
    Import(ImportArgs),
    /// List users with their record and version counts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a user: counts, latest semantic profile and persona, recent records.
    Show {
        /// The user id.
        id: String,
        /// How many recent records to show.
        #[arg(long, default_value_t = 5)]
        recent: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user and all of their data (records, profiles, personas, index files).
    Delete {
        /// The user id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The user id.
    #[arg(long)]
    pub user: String,
    /// The history file.
    pub file: PathBuf,
    /// In a LaMP file with several questions, the question whose profile to import.
    #[arg(long, value_name = "ID")]
    pub question: Option<String>,
    /// Records embedded (and committed) per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Encoder: a manifest name or a folder.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Import(args) => import(ctx, args),
        UserCommand::List { json } => list(ctx, json),
        UserCommand::Show { id, recent, json } => show(ctx, &id, recent, json),
        UserCommand::Delete { id } => {
            let mut memory = ctx.memory()?;
            let summary = memory.store().user_summary(&id)?;
            memory.delete_user(&id)?;
            println!(
                "deleted user '{id}': {} records, {} semantic profiles, {} persona versions, and the index files",
                summary.records, summary.semantic_versions, summary.persona_versions
            );
            Ok(())
        }
    }
}

fn import(ctx: &Context, args: ImportArgs) -> Result<()> {
    let started = Instant::now();
    let parsed = read_import_file(&args.file, &ImportOptions { question: args.question.clone() })?;
    persona_memory::store::validate_user_id(&args.user)?;
    let encoder = ctx.load_encoder(&args.encoder, false)?;
    let mut memory = ctx.memory()?;
    let bar = item_bar(parsed.records.len() as u64, &format!("importing into '{}'", args.user), "records");
    let report = memory.import(&args.user, &parsed.records, &encoder, args.batch_size, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let out = serde_json::json!({
            "user": args.user, "file": parsed.path, "format": parsed.format, "question": parsed.question,
            "total": report.total, "added": report.added, "duplicates": report.duplicates, "seconds": seconds,
        });
        println!("{out}");
    } else {
        println!(
            "imported {} of {} records for '{}' from {} ({}{}; {} already stored) in {seconds:.1} s",
            report.added,
            report.total,
            args.user,
            args.file.display(),
            parsed.format,
            parsed.question.map(|q| format!(", question {q}")).unwrap_or_default(),
            report.duplicates
        );
    }
    Ok(())
}

fn list(ctx: &Context, json: bool) -> Result<()> {
    let memory = ctx.memory()?;
    let users = memory.store().users()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&users)?);
        return Ok(());
    }
    if users.is_empty() {
        println!("no users in {} (import one with `persona user import --user ID FILE`)", ctx.data_dir.display());
        return Ok(());
    }
    println!("{:<24} {:>8} {:>9} {:>9}  latest", "user", "records", "profiles", "personas");
    for u in users {
        println!("{:<24} {:>8} {:>9} {:>9}  {}", u.id, u.records, u.semantic_versions, u.persona_versions, date(u.latest_record));
    }
    Ok(())
}

fn show(ctx: &Context, id: &str, recent: usize, json: bool) -> Result<()> {
    let memory = ctx.memory()?;
    let store = memory.store();
    let summary = store.user_summary(id)?;
    let user = store.require_user(id)?;
    let profile = store.latest_semantic_profile(&user, None)?;
    let persona = store.latest_persona(&user)?;
    let latest = store.latest_records(&user, recent)?;
    if json {
        let out = serde_json::json!({
            "id": summary.id, "records": summary.records, "semantic_versions": summary.semantic_versions,
            "persona_versions": summary.persona_versions, "latest_record": summary.latest_record, "created_at": summary.created_at,
            "semantic_profile": profile, "persona": persona, "recent_records": latest,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("user:      {}", summary.id);
    println!("records:   {} (latest {})", summary.records, date(summary.latest_record));
    println!("profiles:  {}    personas: {}", summary.semantic_versions, summary.persona_versions);
    match profile {
        Some(p) => println!("\nsemantic profile v{} ({}, {} records, by {}):\n{}", p.version, p.task, p.record_count, p.model, p.summary),
        None => println!("\nno semantic profile yet (`persona memory summarize --user {id}`)"),
    }
    if let Some(p) = persona {
        println!("\npersona v{}:\n{}", p.version, p.text);
    }
    if !latest.is_empty() {
        println!("\nmost recent records:");
        for r in latest {
            println!("  [{}] {} -> {}", date(r.timestamp), one_line(&r.query, 70), one_line(&r.response, 30));
        }
    }
    Ok(())
}
