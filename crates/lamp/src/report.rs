//! The benchmark report: per method the users scored, the task's metrics,
//! the invalid-output rate and bootstrap 95% intervals over users, as JSON
//! (`report.json`) and markdown tables shaped like the paper's Table 2
//! (methods) and Table 3 (ablations).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::methods::Method;
use crate::metrics::{bootstrap, classification, rating, Interval};
use crate::parse::Reading;
use crate::runner::ResultRow;
use crate::task::Task;

/// Bootstrap resamples for the intervals.
pub const RESAMPLES: usize = 1000;

/// One method's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    /// Users scored.
    pub n: usize,
    /// Accuracy (classification tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Macro-F1 (classification tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// MAE (rating task).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    /// RMSE (rating task).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    /// Fraction of outputs that could not be read as a valid output.
    pub invalid_rate: f64,
    /// 95% bootstrap intervals over users, per metric.
    pub ci: BTreeMap<String, Interval>,
    /// PersonaAgent minus this method on the users both answered, with a
    /// paired bootstrap interval (absent for PersonaAgent itself and for
    /// reports without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_persona_agent: Option<PairedDiff>,
    /// Wall time per user (the sum of the user's questions, alignment
    /// included), in seconds (absent in reports written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_per_user: Option<UserSeconds>,
}

/// Wall time per user over the users of a method, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UserSeconds {
    /// The median user's time.
    pub median: f64,
    /// The mean over users.
    pub mean: f64,
}

impl UserSeconds {
    /// Median and mean of each user's total time (`ms` of the user's rows
    /// added up); `None` without users.
    fn of(users: &[Vec<&ResultRow>]) -> Option<Self> {
        let mut totals: Vec<f64> = users.iter().map(|u| u.iter().map(|r| r.ms as f64 / 1000.0).sum()).collect();
        if totals.is_empty() {
            return None;
        }
        totals.sort_by(f64::total_cmp);
        let mid = totals.len() / 2;
        let median = if totals.len() % 2 == 1 { totals[mid] } else { (totals[mid - 1] + totals[mid]) / 2.0 };
        let mean = totals.iter().sum::<f64>() / totals.len() as f64;
        Some(UserSeconds { median, mean })
    }
}

/// A paired difference of the task's main metric (accuracy, or MAE for
/// ratings): PersonaAgent minus another method over the same users, with a
/// 95% interval from resampling those users (each resample scores both
/// methods on the same users). For accuracy above zero favours
/// PersonaAgent; for MAE below zero does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// The metric compared (`accuracy` or `mae`).
    pub metric: String,
    /// PersonaAgent's value minus the method's.
    pub diff: f64,
    /// Its 95% interval.
    pub ci: [f64; 2],
    /// Users both methods answered.
    pub users: usize,
    /// How many of the questions both methods answered got the same
    /// answer from both (absent in reports written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_answers: Option<SameAnswers>,
}

/// Questions on which two methods gave the same answer, of those both
/// answered: how much of PersonaAgent's result another method (or the
/// user's nearest records) already gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SameAnswers {
    /// Questions with the same answer from both.
    pub same: usize,
    /// Questions both answered.
    pub questions: usize,
}

impl SameAnswers {
    /// Counts the questions (by id) that both row sets answered, and those
    /// of them with the same output.
    fn of(a: &[&ResultRow], b: &[&ResultRow]) -> Self {
        let theirs: BTreeMap<(usize, &str), &str> = b.iter().map(|r| ((r.user, r.id.as_str()), r.output.as_str())).collect();
        let both: Vec<bool> = a.iter().filter_map(|r| theirs.get(&(r.user, r.id.as_str())).map(|o| *o == r.output)).collect();
        SameAnswers { same: both.iter().filter(|s| **s).count(), questions: both.len() }
    }
}

impl PairedDiff {
    /// Whether the interval excludes zero in PersonaAgent's favour.
    pub fn persona_agent_better(&self) -> bool {
        if self.metric == "mae" {
            self.ci[1] < 0.0
        } else {
            self.ci[0] > 0.0
        }
    }
}

/// The task's main metric on some rows.
fn main_metric(task: Task, rows: &[&ResultRow]) -> Result<f64> {
    let preds: Vec<String> = rows.iter().map(|r| r.output.clone()).collect();
    let golds: Vec<String> = rows.iter().map(|r| r.gold.clone()).collect();
    match task.labels() {
        Some(labels) => Ok(classification(&preds, &golds, labels)?.accuracy),
        None => Ok(rating(&preds, &golds)?.mae),
    }
}

/// PersonaAgent (`reference`) minus `other` over the users both have rows
/// for; `None` when they share no user.
pub fn paired_difference(task: Task, reference: &[&ResultRow], other: &[&ResultRow], seed: u64) -> Result<Option<PairedDiff>> {
    let group = |rows: &[&ResultRow]| {
        let mut by_user: BTreeMap<usize, Vec<ResultRow>> = BTreeMap::new();
        for r in rows {
            by_user.entry(r.user).or_default().push((*r).clone());
        }
        by_user
    };
    let (a, b) = (group(reference), group(other));
    let pairs: Vec<(&Vec<ResultRow>, &Vec<ResultRow>)> = a.iter().filter_map(|(u, ra)| b.get(u).map(|rb| (ra, rb))).collect();
    if pairs.is_empty() {
        return Ok(None);
    }
    let diff_of = |sample: &[&(&Vec<ResultRow>, &Vec<ResultRow>)]| -> Result<f64> {
        let left: Vec<&ResultRow> = sample.iter().flat_map(|(x, _)| x.iter()).collect();
        let right: Vec<&ResultRow> = sample.iter().flat_map(|(_, y)| y.iter()).collect();
        Ok(main_metric(task, &left)? - main_metric(task, &right)?)
    };
    let all: Vec<&(&Vec<ResultRow>, &Vec<ResultRow>)> = pairs.iter().collect();
    let diff = diff_of(&all)?;
    let ci = bootstrap(&pairs, RESAMPLES, seed, |s| diff_of(s))?;
    let metric = if task.is_rating() { "mae" } else { "accuracy" };
    let same_answers = Some(SameAnswers::of(reference, other));
    Ok(Some(PairedDiff { metric: metric.into(), diff, ci: [ci.low, ci.high], users: pairs.len(), same_answers }))
}

/// Scores the rows of one method.
pub fn score(task: Task, rows: &[&ResultRow], seed: u64) -> Result<MethodScores> {
    let preds: Vec<String> = rows.iter().map(|r| r.output.clone()).collect();
    let golds: Vec<String> = rows.iter().map(|r| r.gold.clone()).collect();
    let invalid_rate = rows.iter().filter(|r| r.reading == Reading::Invalid).count() as f64 / rows.len().max(1) as f64;
    let mut ci = BTreeMap::new();
    // Resample users, not questions: a user's questions stay together.
    let mut by_user: BTreeMap<usize, Vec<&ResultRow>> = BTreeMap::new();
    for r in rows {
        by_user.entry(r.user).or_default().push(r);
    }
    let users: Vec<Vec<&ResultRow>> = by_user.into_values().collect();
    let n = users.len();
    let seconds_per_user = UserSeconds::of(&users);
    let pick = |sample: &[&Vec<&ResultRow>]| -> (Vec<String>, Vec<String>) {
        let flat = || sample.iter().flat_map(|u| u.iter());
        (flat().map(|r| r.output.clone()).collect(), flat().map(|r| r.gold.clone()).collect())
    };
    match task.labels() {
        Some(labels) => {
            let m = classification(&preds, &golds, labels)?;
            ci.insert(
                "accuracy".into(),
                bootstrap(&users, RESAMPLES, seed, |s| {
                    let (p, g) = pick(s);
                    Ok(classification(&p, &g, labels)?.accuracy)
                })?,
            );
            ci.insert(
                "f1".into(),
                bootstrap(&users, RESAMPLES, seed, |s| {
                    let (p, g) = pick(s);
                    Ok(classification(&p, &g, labels)?.f1)
                })?,
            );
            Ok(MethodScores {
                n,
                accuracy: Some(m.accuracy),
                f1: Some(m.f1),
                mae: None,
                rmse: None,
                invalid_rate,
                ci,
                vs_persona_agent: None,
                seconds_per_user,
            })
        }
        None => {
            let m = rating(&preds, &golds)?;
            ci.insert(
                "mae".into(),
                bootstrap(&users, RESAMPLES, seed, |s| {
                    let (p, g) = pick(s);
                    Ok(rating(&p, &g)?.mae)
                })?,
            );
            ci.insert(
                "rmse".into(),
                bootstrap(&users, RESAMPLES, seed, |s| {
                    let (p, g) = pick(s);
                    Ok(rating(&p, &g)?.rmse)
                })?,
            );
            Ok(MethodScores { n, accuracy: None, f1: None, mae: Some(m.mae), rmse: Some(m.rmse), invalid_rate, ci, vs_persona_agent: None, seconds_per_user })
        }
    }
}

/// Scores every method present in `rows`.
pub fn score_all(task: Task, rows: &[ResultRow], seed: u64) -> Result<BTreeMap<String, MethodScores>> {
    let mut out = BTreeMap::new();
    let reference: Vec<&ResultRow> = rows.iter().filter(|r| r.method == Method::PersonaAgent).collect();
    for method in Method::ALL {
        let mine: Vec<&ResultRow> = rows.iter().filter(|r| r.method == method).collect();
        if !mine.is_empty() {
            let mut s = score(task, &mine, seed)?;
            if method != Method::PersonaAgent {
                s.vs_persona_agent = paired_difference(task, &reference, &mine, seed)?;
            }
            out.insert(method.name().to_string(), s);
        }
    }
    Ok(out)
}

fn cell(value: Option<f64>, ci: Option<&Interval>) -> String {
    match (value, ci) {
        (Some(v), Some(c)) => format!("{v:.3} [{:.3}, {:.3}]", c.low, c.high),
        (Some(v), None) => format!("{v:.3}"),
        _ => "-".into(),
    }
}

/// The headers of a task's two metric columns.
fn metric_heads(task: Task) -> (&'static str, &'static str) {
    if task.is_rating() {
        ("MAE ↓", "RMSE ↓")
    } else {
        ("Accuracy ↑", "F1 ↑")
    }
}

/// A row's cells after its name: users scored, the task's two metrics with
/// their intervals, and the invalid rate.
fn score_cells(task: Task, s: &MethodScores) -> String {
    let (a, b) = if task.is_rating() { ("mae", "rmse") } else { ("accuracy", "f1") };
    let (va, vb) = if task.is_rating() { (s.mae, s.rmse) } else { (s.accuracy, s.f1) };
    format!("{} | {} | {} | {:.1}%", s.n, cell(va, s.ci.get(a)), cell(vb, s.ci.get(b)), s.invalid_rate * 100.0)
}

/// The time cell: median seconds per user (mean in brackets).
fn seconds_cell(s: &MethodScores) -> String {
    match s.seconds_per_user {
        Some(t) => format!("{:.0} ({:.0})", t.median, t.mean),
        None => "-".into(),
    }
}

/// The paired-difference cell: `+0.150 [+0.050, +0.250]`, starred when
/// the interval excludes zero in PersonaAgent's favour.
fn paired_cell(d: Option<&PairedDiff>) -> String {
    match d {
        Some(d) => format!("{:+.3} [{:+.3}, {:+.3}]{}", d.diff, d.ci[0], d.ci[1], if d.persona_agent_better() { " *" } else { "" }),
        None => "-".into(),
    }
}

/// The agreement cell: `57 / 80` questions with PersonaAgent's answer.
fn same_cell(d: Option<&PairedDiff>) -> String {
    match d.and_then(|d| d.same_answers) {
        Some(s) => format!("{} / {}", s.same, s.questions),
        None => "-".into(),
    }
}

fn table(task: Task, scores: &BTreeMap<String, MethodScores>, methods: &[Method]) -> String {
    let (ha, hb) = metric_heads(task);
    let (metric, _) = metric_heads(task);
    if !methods.iter().any(|m| scores.contains_key(m.name())) {
        return "None of these was run.\n".into();
    }
    let mut out = format!(
        "| method | n | {ha} | {hb} | invalid | PersonaAgent − method, {metric} (paired) | same answer as PersonaAgent | s per user, median (mean) |\n|---|---|---|---|---|---|---:|---:|\n"
    );
    for m in methods {
        let Some(s) = scores.get(m.name()) else { continue };
        let d = s.vs_persona_agent.as_ref();
        out.push_str(&format!("| {} | {} | {} | {} | {} |\n", m.name(), score_cells(task, s), paired_cell(d), same_cell(d), seconds_cell(s)));
    }
    out
}

/// The markdown report: a header with `meta` (model, config, seed,
/// revision), then the methods table and the ablations table.
pub fn markdown(task: Task, set_name: &str, scores: &BTreeMap<String, MethodScores>, meta: &Value) -> String {
    let methods: Vec<Method> = Method::ALL.iter().copied().filter(|m| !m.is_ablation()).collect();
    let ablations: Vec<Method> = std::iter::once(Method::PersonaAgent).chain(Method::ALL.iter().copied().filter(|m| m.is_ablation())).collect();
    let mut out = format!("# {task}: {set_name}\n\n");
    if let Value::Object(m) = meta {
        for (k, v) in m {
            out.push_str(&format!(
                "- {k}: {}\n",
                match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            ));
        }
    }
    out.push_str("\nValues with 95% bootstrap intervals over users. \"PersonaAgent − method\" is PersonaAgent's value minus the method's on the users both answered, with a paired bootstrap interval (* where it excludes zero in PersonaAgent's favour: above zero for accuracy, below zero for MAE); \"same answer as PersonaAgent\" counts the questions both answered on which the method gave PersonaAgent's answer. Time per user is wall time on the machine that ran the method (alignment included; time a process was paused, or shared the cores with another run, counts too).\n\n## Methods (Table 2)\n\n");
    out.push_str(&table(task, scores, &methods));
    out.push_str("\n## Ablations (Table 3)\n\n");
    out.push_str(&table(task, scores, &ablations));
    out
}

/// The markdown table of a scaling sweep: one row per (value of the swept
/// setting `name`, method): users scored, the task's two metrics with their
/// intervals and the invalid rate. (The user count is headed "users", not
/// the reports' "n", which would read as the batch size n in an n sweep.)
pub fn scaling_markdown(task: Task, name: &str, points: &[(usize, BTreeMap<String, MethodScores>)]) -> String {
    let (ha, hb) = metric_heads(task);
    let mut out = format!("# {task}: scaling over {name}\n\nValues with 95% bootstrap intervals over users.\n\n| {name} | method | users | {ha} | {hb} | invalid |\n|---|---|---|---|---|---|\n");
    for (value, scores) in points {
        for (method, s) in scores {
            out.push_str(&format!("| {value} | {method} | {} |\n", score_cells(task, s)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: Method, user: usize, output: &str, gold: &str, reading: Reading) -> ResultRow {
        ResultRow { method, id: format!("q{user}"), user, raw: output.into(), output: output.into(), reading, gold: gold.into(), ms: 1 }
    }

    #[test]
    fn scores_each_method_with_intervals() {
        let rows = vec![
            row(Method::Prompt, 0, "4", "4", Reading::Exact),
            row(Method::Prompt, 1, "bad", "2", Reading::Invalid),
            row(Method::PersonaAgent, 0, "4", "4", Reading::Exact),
            row(Method::PersonaAgent, 1, "2", "2", Reading::Exact),
        ];
        let scores = score_all(Task::ProductRating, &rows, 1).unwrap();
        let p = &scores["prompt"];
        assert_eq!(p.n, 2);
        // "bad" with gold 2 counts as 5: errors 0 and 3.
        assert!((p.mae.unwrap() - 1.5).abs() < 1e-12);
        assert!((p.invalid_rate - 0.5).abs() < 1e-12);
        assert_eq!(scores["persona-agent"].mae, Some(0.0));
        assert!(p.ci["mae"].low <= 1.5 && p.ci["mae"].high >= 1.5);
        let json = serde_json::to_value(&scores).unwrap();
        assert!(json["prompt"].get("accuracy").is_none() && json["prompt"]["rmse"].is_number());
        let md = markdown(Task::ProductRating, "test set", &scores, &serde_json::json!({"model": "m", "seed": 1}));
        assert!(md.contains("| prompt | 2 | 1.500") && md.contains("## Ablations") && md.contains("- model: m"), "{md}");
        // PersonaAgent's MAE 0 minus prompt's 1.5.
        let d = scores["prompt"].vs_persona_agent.as_ref().unwrap();
        assert_eq!((d.metric.as_str(), d.diff, d.users), ("mae", -1.5, 2));
        assert!(scores["persona-agent"].vs_persona_agent.is_none());
        assert!(json["prompt"]["vs_persona_agent"]["ci"].is_array());
        assert!(md.contains("| -1.500 ["), "{md}");
        // One of the two questions (user 0's "4") has PersonaAgent's answer.
        assert_eq!(d.same_answers, Some(SameAnswers { same: 1, questions: 2 }));
        assert!(md.contains("] | 1 / 2 | "), "{md}");
        let sweep = scaling_markdown(Task::ProductRating, "K", &[(1, scores.clone()), (4, scores)]);
        assert!(sweep.contains("| K | method | users | MAE ↓ | RMSE ↓ | invalid |") && sweep.contains("| 4 | prompt | 2 | 1.500 ["), "{sweep}");
        assert_eq!(sweep.lines().filter(|l| l.starts_with("| 1 |")).count(), 2);
    }

    #[test]
    fn paired_differences_resample_users_together() {
        // PersonaAgent right on users 0..8, wrong on 8, 9; the other method
        // right on users 0..2 only; user 10 answered by PersonaAgent alone.
        let mut rows = Vec::new();
        for u in 0..10 {
            rows.push(row(Method::PersonaAgent, u, if u < 8 { "[1]" } else { "[2]" }, "[1]", Reading::Exact));
            rows.push(row(Method::Prompt, u, if u < 2 { "[1]" } else { "[2]" }, "[1]", Reading::Exact));
        }
        rows.push(row(Method::PersonaAgent, 10, "[1]", "[1]", Reading::Exact));
        let scores = score_all(Task::Citation, &rows, 7).unwrap();
        let d = scores["prompt"].vs_persona_agent.clone().unwrap();
        assert_eq!(d.users, 10, "only users both answered");
        assert!((d.diff - 0.6).abs() < 1e-12, "{d:?}");
        assert!(d.ci[0] > 0.0 && d.ci[1] <= 1.0 && d.persona_agent_better(), "{d:?}");
        // Same answers on users 0, 1 ([1]) and 8, 9 ([2]); user 10 is not shared.
        assert_eq!(d.same_answers, Some(SameAnswers { same: 4, questions: 10 }));
        // Identical answers: zero difference, and a zero-width interval.
        let same: Vec<ResultRow> =
            rows.iter().filter(|r| r.method == Method::PersonaAgent).flat_map(|r| [r.clone(), ResultRow { method: Method::Rag4, ..r.clone() }]).collect();
        let d = score_all(Task::Citation, &same, 7).unwrap()["rag-4"].vs_persona_agent.clone().unwrap();
        assert_eq!((d.diff, d.ci), (0.0, [0.0, 0.0]));
        assert_eq!(d.same_answers, Some(SameAnswers { same: 11, questions: 11 }));
        assert!(!d.persona_agent_better());
    }

    #[test]
    fn users_with_several_questions_count_once_and_resample_together() {
        let mut a = row(Method::Rag4, 0, "politics", "politics", Reading::Exact);
        let mut b = row(Method::Rag4, 0, "politics", "sports", Reading::Exact);
        a.id = "a".into();
        b.id = "b".into();
        let rows = vec![a, b, row(Method::Rag4, 1, "sports", "sports", Reading::Exact)];
        let s = &score_all(Task::NewsCategorization, &rows, 3).unwrap()["rag-4"];
        assert_eq!(s.n, 2, "two users");
        assert!((s.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12, "pooled over the three questions");
        // A resample holds whole users: user 0 alone scores 0.5, user 1 alone 1.0,
        // so no resample can give 0 (which splitting user 0's rows could).
        assert!(s.ci["accuracy"].low >= 0.5 - 1e-12 && s.ci["accuracy"].high <= 1.0 + 1e-12, "{:?}", s.ci["accuracy"]);
    }

    #[test]
    fn time_per_user_adds_a_users_questions_and_takes_median_and_mean() {
        // User 0: two questions of 3 s and 5 s (8 s); users 1 and 2: 2 s and 20 s.
        let timed = |user: usize, id: &str, ms: u64| ResultRow { id: id.into(), ms, ..row(Method::PersonaAgent, user, "[1]", "[1]", Reading::Exact) };
        let rows = vec![timed(0, "a", 3000), timed(0, "b", 5000), timed(1, "c", 2000), timed(2, "d", 20_000)];
        let s = &score_all(Task::Citation, &rows, 1).unwrap()["persona-agent"];
        assert_eq!(s.seconds_per_user, Some(UserSeconds { median: 8.0, mean: 10.0 }));
        let md = markdown(Task::Citation, "t", &score_all(Task::Citation, &rows, 1).unwrap(), &serde_json::json!({}));
        assert!(md.contains("s per user, median (mean)") && md.contains("| - | - | 8 (10) |"), "{md}");
        // An even number of users: the mean of the middle two.
        let s = &score_all(Task::Citation, &rows[..3], 1).unwrap()["persona-agent"];
        assert_eq!(s.seconds_per_user.map(|t| t.median), Some(5.0));
        // Reports written before the field still read.
        let mut json = serde_json::to_value(s).unwrap();
        json.as_object_mut().unwrap().remove("seconds_per_user");
        assert_eq!(serde_json::from_value::<MethodScores>(json).unwrap().seconds_per_user, None);
    }
}
