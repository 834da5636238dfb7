//! `persona bench compare`: put finished `bench lamp` runs side by side —
//! e.g. the same task on several backbones (paper Fig. 4) — as a markdown
//! table, JSON and a grouped bar chart per task.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use persona_lamp::plot::{grouped_bars_with_intervals, Labels};
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
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--run {name}: reading {} (run `persona bench lamp --out {}` first)", path.display(), dir.display()))?;
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

/// One method of one run: its main metric, its interval and the cell
/// "0.412 [0.30, 0.53] n=20, 5% invalid; PA − it +0.10 [+0.02, +0.18]".
struct Cell {
    value: Option<f64>,
    ci: Option<[f64; 2]>,
    text: String,
}

/// The task's main metric of a method, with its interval and its paired
/// difference to PersonaAgent when the report has one.
fn cell(task: Task, scores: Option<&Value>) -> Cell {
    let metric = if task.is_rating() { "mae" } else { "accuracy" };
    let empty = Cell { value: None, ci: None, text: "-".into() };
    let Some(s) = scores else { return empty };
    let Some(v) = s[metric].as_f64() else { return empty };
    let ci = &s["ci"][metric];
    let interval = ci["low"].as_f64().zip(ci["high"].as_f64()).map(|(lo, hi)| [lo, hi]);
    let mut text = match interval {
        Some([lo, hi]) => format!("{v:.3} [{lo:.2}, {hi:.2}] n={}", s["n"]),
        None => format!("{v:.3} n={}", s["n"]),
    };
    if let Some(invalid) = s["invalid_rate"].as_f64().filter(|r| *r > 0.0) {
        text.push_str(&format!(", {:.0}% invalid", invalid * 100.0));
    }
    let paired = &s["vs_persona_agent"];
    if let (Some(d), Some(lo), Some(hi)) = (paired["diff"].as_f64(), paired["ci"][0].as_f64(), paired["ci"][1].as_f64()) {
        text.push_str(&format!("; PA − it {d:+.3} [{lo:+.2}, {hi:+.2}]"));
        if let (Some(same), Some(of)) = (paired["same_answers"]["same"].as_u64(), paired["same_answers"]["questions"].as_u64()) {
            text.push_str(&format!(", same answer {same}/{of}"));
        }
    }
    Cell { value: Some(v), ci: interval, text }
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
        md.push_str(&format!("\n## {task}: {metric}, 95% CI over users (bars' whiskers); PA − it: PersonaAgent minus the method on the same users, paired 95% CI\n\n| method | {} |\n|---|{}\n", of_task.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" | "), "---|".repeat(of_task.len())));
        let mut series: Vec<(String, Vec<Option<f64>>)> = of_task.iter().map(|r| (r.name.clone(), Vec::new())).collect();
        let mut intervals: Vec<Vec<Option<[f64; 2]>>> = vec![Vec::new(); of_task.len()];
        for m in &methods {
            let cells: Vec<Cell> = of_task.iter().map(|r| cell(task, r.methods.get(*m))).collect();
            md.push_str(&format!("| {m} | {} |\n", cells.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" | ")));
            for ((s, i), c) in series.iter_mut().zip(&mut intervals).zip(&cells) {
                s.1.push(c.value);
                i.push(c.ci);
            }
        }
        let groups: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        let labels = Labels { title: format!("{task}: {metric} by method"), x: "method".into(), y: metric.into() };
        files.extend(grouped_bars_with_intervals(&args.out.join(format!("compare-{task}")), &labels, &groups, &series, &intervals)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_shows_the_paired_difference_and_the_same_answers() {
        let s = json!({"n": 57, "accuracy": 0.316, "ci": {"accuracy": {"low": 0.21, "high": 0.44}}, "invalid_rate": 0.0,
            "vs_persona_agent": {"metric": "accuracy", "diff": 0.105, "ci": [-0.018, 0.228], "users": 57, "same_answers": {"same": 29, "questions": 57}}});
        let c = cell(Task::MovieTagging, Some(&s));
        assert_eq!(c.text, "0.316 [0.21, 0.44] n=57; PA − it +0.105 [-0.02, +0.23], same answer 29/57");
        assert_eq!((c.value, c.ci), (Some(0.316), Some([0.21, 0.44])));
        // Reports written before the count: the difference alone.
        let mut old = s.clone();
        old["vs_persona_agent"].as_object_mut().unwrap().remove("same_answers");
        assert!(cell(Task::MovieTagging, Some(&old)).text.ends_with("[-0.02, +0.23]"));
        assert_eq!(cell(Task::MovieTagging, None).text, "-");
    }
}
