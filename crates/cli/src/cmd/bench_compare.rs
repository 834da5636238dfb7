//! `persona bench compare`: put finished `bench lamp` runs side by side —
//! e.g. the same task on several backbones (paper Fig. 4) — as a markdown
//! table, JSON and a grouped bar chart per task. Where runs of one task
//! still hold their rows (`results.jsonl`), each method of each later run
//! is also paired with the same method of the task's first run over the
//! users both answered the same questions for (e.g. PersonaAgent with the
//! 1.5B writer against the 0.5B one).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use persona_lamp::plot::{grouped_bars_with_intervals, Labels};
use persona_lamp::report::{paired_difference, PairedDiff};
use persona_lamp::{read_results, Method, ResultRow, Task};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A finished run: NAME=DIR (DIR holds report.json), e.g.
    /// `small=runs/2n-small`. Repeat for each run; the order is kept. The
    /// first run of each task is the one the others are paired with (where
    /// the folders still hold results.jsonl).
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
    seed: u64,
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
        seed: meta["seed"].as_u64().unwrap_or(42),
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

/// One method of a later run paired with the same method of the task's
/// first run: the later run's value minus the first's, over the users for
/// whom both answered the same questions.
struct PairedToFirst {
    diff: PairedDiff,
    /// Users both runs answered whose questions differ (left out).
    mismatched: usize,
}

/// Rows of one method, keeping only users whose question ids are the
/// same in both runs; returns (first's rows, later's rows, users left out).
fn same_questions<'a>(first: &'a [ResultRow], later: &'a [ResultRow], method: &str) -> (Vec<&'a ResultRow>, Vec<&'a ResultRow>, usize) {
    let ids = |rows: &'a [ResultRow]| {
        let mut by_user: BTreeMap<usize, Vec<&'a str>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.method.name() == method) {
            by_user.entry(r.user).or_default().push(r.id.as_str());
        }
        for v in by_user.values_mut() {
            v.sort_unstable();
        }
        by_user
    };
    let (a, b) = (ids(first), ids(later));
    let keep: std::collections::BTreeSet<usize> = a.iter().filter(|(u, q)| b.get(u) == Some(q)).map(|(u, _)| *u).collect();
    let mismatched = a.keys().filter(|u| b.contains_key(u) && !keep.contains(u)).count();
    let pick = |rows: &'a [ResultRow]| rows.iter().filter(|r| r.method.name() == method && keep.contains(&r.user)).collect::<Vec<_>>();
    (pick(first), pick(later), mismatched)
}

/// `later`'s method minus `first`'s on the same users, or `None` where the
/// runs share no user with the same questions.
fn pair_with_first(task: Task, first: &[ResultRow], later: &[ResultRow], method: &str, seed: u64) -> Result<Option<PairedToFirst>> {
    let (a, b, mismatched) = same_questions(first, later, method);
    Ok(paired_difference(task, &b, &a, seed)?.map(|diff| PairedToFirst { diff, mismatched }))
}

/// The cell of a paired difference: "+0.025 [-0.06, +0.12] over 80 users,
/// same answer 66/80".
fn paired_text(p: &PairedToFirst) -> String {
    let d = &p.diff;
    let mut text = format!("{:+.3} [{:+.2}, {:+.2}] over {} users", d.diff, d.ci[0], d.ci[1], d.users);
    if let Some(s) = d.same_answers {
        text.push_str(&format!(", same answer {}/{}", s.same, s.questions));
    }
    if p.mismatched > 0 {
        text.push_str(&format!(" (left out, other questions: {} users)", p.mismatched));
    }
    text
}

/// The section pairing each later run of a task with its first, or `None`
/// where fewer than two of its runs hold rows.
fn paired_section(task: Task, of_task: &[&Run], methods: &[&str]) -> Result<Option<(String, Value)>> {
    let mut with_rows: Vec<(&Run, Vec<ResultRow>)> = Vec::with_capacity(of_task.len());
    for (i, r) in of_task.iter().enumerate() {
        let read = read_results(&r.dir).with_context(|| format!("--run {}: reading its results.jsonl", r.name))?;
        if i == 0 && read.is_empty() {
            return Ok(None);
        }
        if !read.is_empty() {
            with_rows.push((*r, read));
        }
    }
    let Some(((first_run, first), later)) = with_rows.split_first() else { return Ok(None) };
    if later.is_empty() {
        return Ok(None);
    }
    let metric = if task.is_rating() { "MAE" } else { "accuracy" };
    let mut md = format!(
        "\n### {task}: each run minus {} on the same users (paired 95% CI of {metric} over the users both answered the same questions for)\n\n| method | {} |\n|---|{}\n",
        first_run.name,
        later.iter().map(|(r, _)| format!("{} − {}", r.name, first_run.name)).collect::<Vec<_>>().join(" | "),
        "---|".repeat(later.len())
    );
    let mut json_runs = serde_json::Map::new();
    for m in methods {
        let mut cells = Vec::with_capacity(later.len());
        for (run, theirs) in later {
            match pair_with_first(task, first, theirs, m, first_run.seed)? {
                Some(p) => {
                    cells.push(paired_text(&p));
                    let entry = json_runs.entry(run.name.clone()).or_insert_with(|| json!({}));
                    entry[*m] = json!({"diff": p.diff, "mismatched_users": p.mismatched});
                }
                None => cells.push("-".into()),
            }
        }
        if cells.iter().any(|c| c != "-") {
            md.push_str(&format!("| {m} | {} |\n", cells.join(" | ")));
        }
    }
    Ok(Some((md, json!({"first": first_run.name, "runs": json_runs}))))
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
        let mut json_task = json!({
            "task": task,
            "runs": of_task.iter().map(|r| json!({"name": r.name, "dir": r.dir.display().to_string(), "model": r.model, "users": r.users, "methods": r.methods})).collect::<Vec<_>>(),
        });
        if let Some((section, paired)) = paired_section(task, &of_task, &methods)? {
            md.push_str(&section);
            json_task["paired_to_first"] = paired;
        }
        json_tasks.push(json_task);
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

    /// A run folder with a report and, when `rows` is given, its rows:
    /// (user, question id, output, gold) of PersonaAgent on LaMP-3.
    fn run_dir(root: &std::path::Path, name: &str, rows: Option<&[(usize, &str, &str, &str)]>) -> String {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let report = json!({"task": "LaMP-3", "meta": {"model": "small", "users": 5, "seed": 42},
            "methods": {"persona-agent": {"n": 5, "mae": 0.5, "ci": {"mae": {"low": 0.0, "high": 1.0}}, "invalid_rate": 0.0}}});
        std::fs::write(dir.join("report.json"), report.to_string()).unwrap();
        if let Some(rows) = rows {
            let lines: Vec<String> = rows
                .iter()
                .map(|(user, id, output, gold)| {
                    json!({"method": "persona-agent", "id": id, "user": user, "raw": output, "output": output, "reading": "exact", "gold": gold, "ms": 1})
                        .to_string()
                })
                .collect();
            std::fs::write(dir.join("results.jsonl"), lines.join("\n") + "\n").unwrap();
        }
        format!("{name}={}", dir.display())
    }

    #[test]
    fn later_runs_are_paired_with_the_first_on_the_same_questions() {
        let root = tempfile::tempdir().unwrap();
        // Four users with the same questions: the 0.5B writer misses two
        // by one point, the other run none; user 9 was asked another
        // question in each run and must be left out.
        let small = run_dir(root.path(), "small", Some(&[(0, "a", "4", "5"), (1, "b", "4", "5"), (2, "c", "5", "5"), (3, "d", "5", "5"), (9, "x", "1", "5")]));
        let large = run_dir(root.path(), "large", Some(&[(0, "a", "5", "5"), (1, "b", "5", "5"), (2, "c", "5", "5"), (3, "d", "5", "5"), (9, "y", "5", "5")]));
        let out = root.path().join("out");
        run(CompareArgs { runs: vec![small.clone(), large], out: out.clone() }).unwrap();
        let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
        assert!(md.contains("each run minus small on the same users"), "{md}");
        let line = md.lines().find(|l| l.starts_with("| persona-agent | -0.500 [")).unwrap_or_else(|| panic!("no paired row in:\n{md}"));
        assert!(line.contains("over 4 users, same answer 2/4 (left out, other questions: 1 users)"), "{line}");
        let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
        let paired = &json["tasks"][0]["paired_to_first"];
        assert_eq!(paired["first"], "small");
        assert_eq!(paired["runs"]["large"]["persona-agent"]["diff"]["users"], 4);
        // Reports alone (no rows kept, as committed): no paired section.
        let bare = run_dir(root.path(), "bare", None);
        let out2 = root.path().join("out2");
        run(CompareArgs { runs: vec![bare, small], out: out2.clone() }).unwrap();
        assert!(!std::fs::read_to_string(out2.join("compare.md")).unwrap().contains("each run minus"));
    }
}
