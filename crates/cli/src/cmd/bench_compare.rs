//! `persona bench compare`: put finished `bench lamp` runs side by side —
//! e.g. the same task on several backbones (paper Fig. 4) — as a markdown
//! table, JSON and a grouped bar chart per task.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use persona_lamp::plot::{grouped_bars, Labels};
use persona_lamp::{Method, Task};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A finished run: NAME=DIR (DIR holds report.json), e.g.
    /// `small=runs/2n-small`. Repeat for each run; the order is kept.
    #[arg(long = "run", value_name = "NAME=DIR", required = true)]
    pub runs: Vec<String>,
    /// Where to write compare.md, compare.json and compare-<task>.{svg,png}.
    #[arg(long)]
    pub out: PathBuf,
}

/// One run's report, as read back.
struct Run {
    name: String,
    dir: PathBuf,
    task: Task,
    model: String,
    users: u64,
    methods: BTreeMap<String, Value>,
}

fn read_run(spec: &str) -> Result<Run> {
    let Some((name, dir)) = spec.split_once('=') else { bail!("--run '{spec}': expected NAME=DIR") };
    let (name, dir) = (name.trim(), PathBuf::from(dir.trim()));
    if name.is_empty() {
        bail!("--run '{spec}': the name is empty");
    }
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("--run {name}: reading {} (run `persona bench lamp --out {}` first)", path.display(), dir.display()))?;
    let report: Value = serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    let task_name = report["task"].as_str().with_context(|| format!("{}: field 'task' missing", path.display()))?;
    let task: Task = task_name.parse().with_context(|| format!("{}: field 'task'", path.display()))?;
    let Some(Value::Object(methods)) = report.get("methods") else { bail!("{}: field 'methods' missing or not an object", path.display()) };
    let meta = &report["meta"];
    Ok(Run {
        name: name.to_string(),
        dir,
        task,
        model: meta["model"].as_str().unwrap_or("?").to_string(),
        users: meta["users"].as_u64().unwrap_or(0),
        methods: methods.clone().into_iter().collect(),
    })
}

/// The task's main metric and a cell "0.412 [0.30, 0.53] n=20, 5% invalid".
fn cell(task: Task, scores: Option<&Value>) -> (Option<f64>, String) {
    let metric = if task.is_rating() { "mae" } else { "accuracy" };
    let Some(s) = scores else { return (None, "-".into()) };
    let Some(v) = s[metric].as_f64() else { return (None, "-".into()) };
    let ci = &s["ci"][metric];
    let mut text = match (ci["low"].as_f64(), ci["high"].as_f64()) {
        (Some(lo), Some(hi)) => format!("{v:.3} [{lo:.2}, {hi:.2}] n={}", s["n"]),
        _ => format!("{v:.3} n={}", s["n"]),
    };
    if let Some(invalid) = s["invalid_rate"].as_f64().filter(|r| *r > 0.0) {
        text.push_str(&format!(", {:.0}% invalid", invalid * 100.0));
    }
    (Some(v), text)
}

pub fn run(args: CompareArgs) -> Result<()> {
    let runs = args.runs.iter().map(|s| read_run(s)).collect::<Result<Vec<_>>>()?;
    let mut names = std::collections::HashSet::new();
    if let Some(r) = runs.iter().find(|r| !names.insert(r.name.clone())) {
        bail!("--run name '{}' is given twice", r.name);
    }
    let mut tasks: Vec<Task> = Vec::new();
    for r in &runs {
        if !tasks.contains(&r.task) {
            tasks.push(r.task);
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut md = String::from("# Runs compared\n\n| run | task | model | users | folder |\n|---|---|---|---|---|\n");
    for r in &runs {
        md.push_str(&format!("| {} | {} | {} | {} | {} |\n", r.name, r.task, r.model, r.users, r.dir.display()));
    }
    let mut files = Vec::new();
    let mut json_tasks = Vec::new();
    for task in tasks {
        let of_task: Vec<&Run> = runs.iter().filter(|r| r.task == task).collect();
        // Methods in the paper's order, those that any run has.
        let methods: Vec<&str> = Method::ALL.iter().map(|m| m.name()).filter(|m| of_task.iter().any(|r| r.methods.contains_key(*m))).collect();
        let metric = if task.is_rating() { "MAE (lower is better)" } else { "accuracy" };
        md.push_str(&format!("\n## {task}: {metric}, 95% CI over users\n\n| method | {} |\n|---|{}\n", of_task.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" | "), "---|".repeat(of_task.len())));
        let mut series: Vec<(String, Vec<Option<f64>>)> = of_task.iter().map(|r| (r.name.clone(), Vec::new())).collect();
        for m in &methods {
            let cells: Vec<(Option<f64>, String)> = of_task.iter().map(|r| cell(task, r.methods.get(*m))).collect();
            md.push_str(&format!("| {m} | {} |\n", cells.iter().map(|c| c.1.as_str()).collect::<Vec<_>>().join(" | ")));
            for (s, c) in series.iter_mut().zip(&cells) {
                s.1.push(c.0);
            }
        }
        let groups: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        let labels = Labels { title: format!("{task}: {metric} by method"), x: "method".into(), y: metric.into() };
        files.extend(grouped_bars(&args.out.join(format!("compare-{task}")), &labels, &groups, &series)?);
        json_tasks.push(json!({
            "task": task,
            "runs": of_task.iter().map(|r| json!({"name": r.name, "dir": r.dir.display().to_string(), "model": r.model, "users": r.users, "methods": r.methods})).collect::<Vec<_>>(),
        }));
    }
    std::fs::write(args.out.join("compare.md"), &md)?;
    std::fs::write(args.out.join("compare.json"), serde_json::to_string_pretty(&json!({"tasks": json_tasks}))?)?;
    println!("{md}");
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}
