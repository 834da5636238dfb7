//! End-to-end tests of `persona ask`, `persona align` and `persona persona
//! show` with the real tiny model and encoder (run `persona models fetch`
//! first, which `scripts/test` does).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn persona<S: AsRef<OsStr>>(data: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persona")).arg("--data-dir").arg(data).args(args).output().expect("the persona binary runs")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn ok_json(out: &Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/movie-fan.json")
}

#[test]
fn ask_align_and_show_the_persona() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&persona(&data, &["user", "import", "--user", "ann", example().to_str().unwrap()]));

    // No persona before the first ask/align: a clear error, not a panic.
    let none = persona(&data, &["persona", "show", "--user", "ann"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no persona yet"), "{}", String::from_utf8_lossy(&none.stderr));

    let question = "Which tag fits this movie (sci-fi, comedy, romance, horror, documentary)? Explorers decode a signal from another galaxy.";
    let answer = ok_json(&persona(&data, &["ask", "--user", "ann", "-m", "tiny", "--json", question]));
    assert!(answer["answer"].as_str().is_some_and(|a| !a.trim().is_empty()), "{answer}");
    assert_eq!(answer["persona_version"], 1);
    let steps = answer["trace"].as_array().unwrap();
    assert!(steps.iter().all(|s| s.get("tool").is_some() && s["arguments"].is_object()), "{answer}");
    assert!(steps.iter().any(|s| s["tool"] == "memory_search"), "{answer}");
    assert!(steps.last().unwrap()["tool"].is_null(), "the last step is the answer: {answer}");

    let aligned = ok(&persona(&data, &["align", "--user", "ann", "-m", "tiny", "--batch", "2", "--iterations", "1"]));
    assert!(aligned.contains("iteration 1:"), "{aligned}");

    let history = ok_json(&persona(&data, &["persona", "show", "--user", "ann", "--history", "--json"]));
    let versions = history.as_array().unwrap();
    assert!(!versions.is_empty());
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(v["version"], i as u64 + 1);
        assert!(v["text"].as_str().unwrap().contains("memory_search"), "the rules are in every version");
        assert!(v.get("feedback").is_some());
    }
    if versions.len() == 2 {
        assert!(aligned.contains("--- v1") && aligned.contains("+++ v2"), "a diff is printed: {aligned}");
        assert!(versions[1]["feedback"].as_str().is_some_and(|f| !f.is_empty()));
        assert_eq!(versions[1]["parent"], 1);
    } else {
        assert!(aligned.contains("rejected"), "{aligned}");
    }

    let verbose = ok(&persona(&data, &["ask", "--user", "ann", "-m", "tiny", "--verbose", "--no-encyclopedia", question]));
    assert!(verbose.contains("[step 1] Thought:") && verbose.contains("Action: memory_search"), "{verbose}");
    assert!(!verbose.contains("encyclopedia_search"), "{verbose}");

    // With the labels' votes from the user's nearest records in the answer turn.
    let tags = "sci-fi,comedy,romance,horror,documentary";
    let voted = ok_json(&persona(&data, &["ask", "--user", "ann", "-m", "tiny", "--json", "--choices", tags, "--closeness", question]));
    assert!(tags.split(',').any(|t| voted["answer"] == t), "{voted}");
    let last = voted["trace"].as_array().unwrap().last().unwrap().clone();
    let votes = last["arguments"]["closeness"].as_array().unwrap_or_else(|| panic!("the answer step has the votes: {voted}"));
    assert_eq!(votes.len(), 5, "{voted}");
    assert!(votes.iter().all(|v| v.as_f64().is_some_and(|v| v >= 0.0)) && votes.iter().any(|v| v.as_f64() > Some(0.0)), "{voted}");
}

#[test]
fn agent_commands_name_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = persona(&data, &["ask", "--user", "ghost", "-m", "tiny", "hello"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user 'ghost'"), "{}", String::from_utf8_lossy(&out.stderr));
    ok(&persona(&data, &["user", "import", "--user", "ann", example().to_str().unwrap()]));
    let bad = tmp.path().join("corpus.json");
    std::fs::write(&bad, r#"[{"title": "x"}]"#).unwrap();
    let out = persona(&data, &["ask", "--user", "ann", "-m", "tiny", "--corpus", bad.to_str().unwrap(), "hello"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("corpus.json") && err.contains("field 'extract'"), "{err}");
    let out = persona(&data, &["align", "--user", "ann", "-m", "tiny", "--max-steps", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("max_steps"), "{err}");
}

#[test]
fn persona_analysis_compares_the_users_personas() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let mut store = persona_memory::Store::open(&data).unwrap();
        for (id, text) in [("ann", "This user loves science fiction films."), ("bob", "This user loves horror films."), ("cy", "Cooking, gardening and bees.")]
        {
            let user = store.ensure_user(id).unwrap();
            store.add_persona_version(&user, text, None, None).unwrap();
        }
    }
    let out = tmp.path().join("out");
    let md = ok(&persona(&data, &["bench", "personas", "--out", out.to_str().unwrap()]));
    assert!(md.contains("3 users"), "{md}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("personas.json")).unwrap()).unwrap();
    let j = &report["jaccard"];
    // ann and bob share "this user loves films": 4 of 7 words.
    assert!((j[0][1].as_f64().unwrap() - 4.0 / 7.0).abs() < 1e-9, "{j}");
    assert_eq!(j[0][2], 0.0);
    assert_eq!(report["users"].as_array().unwrap().len(), 3);
    assert!(report["users"][0]["map"].as_array().unwrap().len() == 2);
    for plot in ["jaccard.svg", "jaccard.png", "map.svg", "map.png"] {
        assert!(std::fs::metadata(out.join(plot)).unwrap().len() > 1000, "{plot}");
    }
    assert!(std::fs::read_to_string(out.join("map.svg")).unwrap().contains("bob"));
    // An earlier version: ann's rewrite is compared against nobody's at
    // version 2, her initial persona against the others' at version 1.
    {
        let mut store = persona_memory::Store::open(&data).unwrap();
        let ann = store.require_user("ann").unwrap();
        store.add_persona_version(&ann, "Cooking and bees.", None, None).unwrap();
    }
    let md = ok(&persona(&data, &["bench", "personas", "--version", "1", "--out", out.to_str().unwrap()]));
    assert!(md.contains("3 users") && md.contains("version 1"), "{md}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("personas.json")).unwrap()).unwrap();
    assert!((report["jaccard"][0][1].as_f64().unwrap() - 4.0 / 7.0).abs() < 1e-9, "{report}");
    let md = ok(&persona(&data, &["bench", "personas", "--out", out.to_str().unwrap()]));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("personas.json")).unwrap()).unwrap();
    assert!(md.contains("latest") && report["users"][0]["version"] == 2 && report["jaccard"][0][2].as_f64().unwrap() > 0.0, "{md}");
    let err = persona(&data, &["bench", "personas", "--version", "2", "--out", out.to_str().unwrap()]);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stderr).contains("1 user(s) with a version 2 persona"));
    // Fewer than two personas: a clear error.
    let lonely = tmp.path().join("lonely");
    persona_memory::Store::open(&lonely).unwrap();
    let err = persona(&lonely, &["bench", "personas", "--out", out.to_str().unwrap()]);
    assert!(!err.status.success() && String::from_utf8_lossy(&err.stderr).contains("0 user(s) with a persona; the analysis needs at least two"));
}

/// A two-user LaMP-3 set in the official format; returns the questions
/// file, the outputs file and the questions.
fn rating_set(dir: &Path) -> (PathBuf, PathBuf, Value) {
    let (q, o) = (dir.join("q.json"), dir.join("o.json"));
    let questions = serde_json::json!([
        {"id": "u1/1", "input": "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without further explanation. review: Perfect strings.",
         "profile": [{"id": "a", "text": "Love it", "score": "5"}, {"id": "b", "text": "Bad", "score": "1"}]},
        {"id": "u2/1", "input": "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without further explanation. review: Broke at once.",
         "profile": [{"id": "c", "text": "Okay", "score": "3"}]}
    ]);
    std::fs::write(&q, questions.to_string()).unwrap();
    std::fs::write(&o, r#"{"task": "LaMP-3", "golds": [{"id": "u1/1", "output": "5"}, {"id": "u2/1", "output": "1"}]}"#).unwrap();
    (q, o, questions)
}

/// `persona bench lamp` on a questions/outputs pair: the set, then `extra`,
/// then `--out`.
fn lamp_args(q: &Path, o: &Path, extra: &[&str], out: &Path) -> Vec<String> {
    let set = ["bench", "lamp", "--questions", path_str(q), "--outputs", path_str(o)];
    set.iter().chain(extra).chain(&["--out", path_str(out)]).map(|s| s.to_string()).collect()
}

/// The tiny model without the encyclopedia: what the bench tests run.
const TINY: [&str; 3] = ["-m", "tiny", "--no-encyclopedia"];

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

#[test]
fn bench_lamp_runs_scores_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (q, o, questions) = rating_set(tmp.path());
    let out = tmp.path().join("run");
    let args = lamp_args(&q, &o, &[&["--method", "prompt,rag-1"][..], &TINY].concat(), &out);
    let md = ok(&persona(&data, &args));
    assert!(md.contains("| prompt | 2 |") && md.contains("| rag-1 | 2 |"), "{md}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for m in ["prompt", "rag-1"] {
        let s = &report["methods"][m];
        assert_eq!(s["n"], 2);
        assert!(s["mae"].is_number() && s["rmse"].is_number() && s["invalid_rate"].is_number() && s["ci"]["mae"]["low"].is_number(), "{s}");
    }
    assert_eq!(report["meta"]["model_sha256"].as_str().map(str::len), Some(64));
    let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 4);
    // A rerun finds everything done and writes the same report.
    ok(&persona(&data, &args));
    assert_eq!(std::fs::read_to_string(out.join("results.jsonl")).unwrap(), results);
    // A rerun with other settings would mix two setups in one results file.
    let other = persona(&data, &lamp_args(&q, &o, &[&["--method", "prompt,rag-1", "-k", "2"][..], &TINY].concat(), &out));
    let e = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && e.contains("config.K = 4, this run has config.K = 2"), "{e}");
    assert_eq!(std::fs::read_to_string(out.join("results.jsonl")).unwrap(), results, "the results are kept");
    let bad = persona(&data, &lamp_args(&q, &o, &["--method", "best"], &out));
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown method 'best'"));

    // The same users in the OPPU layout: one user with two queries.
    let oppu = tmp.path().join("users.json");
    let users = serde_json::json!([
        {"user_id": "u1", "profile": questions[0]["profile"], "query": [
            {"id": "u1/1", "input": questions[0]["input"], "gold": "5"},
            {"id": "u1/2", "input": questions[1]["input"], "gold": "1"}]},
        {"user_id": "u2", "profile": questions[1]["profile"], "query": [{"id": "u2/1", "input": questions[1]["input"], "gold": "1"}]}
    ]);
    std::fs::write(&oppu, users.to_string()).unwrap();
    let out2 = tmp.path().join("run-oppu");
    let oppu_args = [&["bench", "lamp", "--oppu", path_str(&oppu), "--task", "LaMP-3", "--users", "1", "--method", "prompt"][..], &TINY].concat();
    let md = ok(&persona(&data, &[&oppu_args[..], &["--out", path_str(&out2)]].concat()));
    assert!(md.contains("| prompt | 1 |"), "one user scored: {md}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out2.join("report.json")).unwrap()).unwrap();
    assert_eq!((report["meta"]["users"].as_u64(), report["meta"]["questions_asked"].as_u64()), (Some(1), Some(2)));
    assert_eq!(std::fs::read_to_string(out2.join("results.jsonl")).unwrap().lines().count(), 2);
    let no_task = persona(&data, &["bench", "lamp", "--oppu", oppu.to_str().unwrap(), "--out", out2.to_str().unwrap()]);
    assert!(!no_task.status.success() && String::from_utf8_lossy(&no_task.stderr).contains("--task"));

    // Runs side by side: a table per task and a bar chart.
    let cmp = tmp.path().join("cmp");
    let md = ok(&persona(
        &data,
        &["bench", "compare", "--run", &format!("official={}", out.display()), "--run", &format!("oppu={}", out2.display()), "--out", cmp.to_str().unwrap()],
    ));
    assert!(md.contains("| method | official | oppu |") && md.contains(" n=2") && md.contains(" n=1"), "{md}");
    assert!(md.contains("| rag-1 |") && md.contains("| - |"), "rag-1 is missing from the OPPU run: {md}");
    for f in ["compare.md", "compare.json", "compare-LaMP-3.svg", "compare-LaMP-3.png"] {
        assert!(cmp.join(f).is_file(), "{f}");
    }
    let dup = persona(
        &data,
        &["bench", "compare", "--run", &format!("a={}", out.display()), "--run", &format!("a={}", out2.display()), "--out", cmp.to_str().unwrap()],
    );
    assert!(!dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("'a' is given twice"));
    let missing = persona(&data, &["bench", "compare", "--run", &format!("x={}", tmp.path().join("nowhere").display()), "--out", cmp.to_str().unwrap()]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("report.json"));

    // A benchmark split by method: a method run alone gives the same outputs
    // as beside others, and the parts merge into one report.
    let lamp = |method: &str, dir: &Path| ok(&persona(&data, &lamp_args(&q, &o, &[&["--method", method][..], &TINY].concat(), dir)));
    let raw_of = |dir: &std::path::Path, method: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|r| r["method"] == method).map(|r| r["raw"].clone()).collect()
    };
    let (alone, icl) = (tmp.path().join("rag-alone"), tmp.path().join("icl"));
    lamp("rag-1", &alone);
    lamp("icl", &icl);
    assert_eq!(raw_of(&alone, "rag-1"), raw_of(&out, "rag-1"));
    let merged = tmp.path().join("merged");
    let md = ok(&persona(&data, &["bench", "merge", "--run", alone.to_str().unwrap(), "--run", icl.to_str().unwrap(), "--out", merged.to_str().unwrap()]));
    assert!(md.contains("| icl | 2 |") && md.contains("| rag-1 | 2 |") && !md.contains("| prompt |"), "{md}");
    let report = |dir: &std::path::Path| -> Value { serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap() };
    let (m, a) = (report(&merged), report(&alone));
    assert_eq!(m["methods"]["rag-1"], a["methods"]["rag-1"]);
    assert_eq!(m["meta"]["parts"].as_array().map(Vec::len), Some(2));
    assert!(merged.join("report.md").is_file());
    let twice = persona(&data, &["bench", "merge", "--run", out.to_str().unwrap(), "--run", alone.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("method 'rag-1' is in both"));
    // --method keeps some methods' rows (here the first part's prompt, not its rag-1).
    let picked = tmp.path().join("picked");
    let md = ok(&persona(
        &data,
        &["bench", "merge", "--method", "prompt,icl", "--run", out.to_str().unwrap(), "--run", icl.to_str().unwrap(), "--out", picked.to_str().unwrap()],
    ));
    assert!(md.contains("| icl | 2 |") && md.contains("| prompt | 2 |") && !md.contains("| rag-1 |"), "{md}");
    let none = persona(
        &data,
        &["bench", "merge", "--method", "icl", "--run", out.to_str().unwrap(), "--run", icl.to_str().unwrap(), "--out", picked.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && err.contains(out.to_str().unwrap()) && err.contains("none of the methods"), "{err}");
    let other_users = persona(&data, &["bench", "merge", "--run", icl.to_str().unwrap(), "--run", out2.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert!(!other_users.status.success() && String::from_utf8_lossy(&other_users.stderr).contains("differs"));

    // A benchmark split by users: two shards give the unsplit run's rows,
    // with the set's own user ordinals, and merge into its report.
    let shard = |spec: &str, dir: &Path| ok(&persona(&data, &lamp_args(&q, &o, &[&["--method", "prompt,rag-1"][..], &TINY, &["--shard", spec]].concat(), dir)));
    let (s0, s1) = (tmp.path().join("shard-0"), tmp.path().join("shard-1"));
    assert!(shard("0/2", &s0).contains("| prompt | 1 |"));
    shard("1/2", &s1);
    let rows_of = |dir: &std::path::Path| -> Vec<Value> {
        let mut rows: Vec<Value> =
            std::fs::read_to_string(dir.join("results.jsonl")).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect();
        for r in &mut rows {
            r.as_object_mut().unwrap().remove("ms");
        }
        rows.sort_by_key(|r| (r["method"].to_string(), r["id"].to_string()));
        rows
    };
    let joined = tmp.path().join("joined");
    let md = ok(&persona(&data, &["bench", "merge", "--run", s0.to_str().unwrap(), "--run", s1.to_str().unwrap(), "--out", joined.to_str().unwrap()]));
    assert!(md.contains("| prompt | 2 |") && md.contains("| rag-1 | 2 |"), "{md}");
    assert_eq!(rows_of(&joined), rows_of(&out), "the shards' rows are the unsplit run's");
    // The same scores (times per user differ from run to run, and are there).
    let scores = |dir: &Path| {
        let mut m = report(dir)["methods"]["prompt"].clone();
        assert!(m.as_object_mut().unwrap().remove("seconds_per_user").is_some_and(|t| t["median"].as_f64().is_some_and(|s| s > 0.0)));
        m
    };
    assert_eq!(scores(&joined), scores(&out));
    let bad = persona(&data, &lamp_args(&q, &o, &["--shard", "2/2"], &tmp.path().join("x")));
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("shard '2/2'"));
}

#[test]
fn bench_scaling_sweeps_a_setting_and_plots_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (q, o, _) = rating_set(tmp.path());
    let out = tmp.path().join("scaling");
    let sweep = |values: &str| {
        persona(
            &data,
            &[
                "bench",
                "scaling",
                "--questions",
                q.to_str().unwrap(),
                "--outputs",
                o.to_str().unwrap(),
                "--users",
                "1",
                "--method",
                "no-alignment",
                "-m",
                "tiny",
                "--no-encyclopedia",
                "--param",
                "K",
                "--values",
                values,
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    let md = ok(&sweep("1,2"));
    assert!(md.contains("| K | method |") && md.contains("| 1 | no-alignment | 1 |") && md.contains("| 2 | no-alignment | 1 |"), "{md}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("scaling.json")).unwrap()).unwrap();
    assert_eq!((report["task"].as_str(), report["param"].as_str()), (Some("LaMP-3"), Some("K")));
    let points = report["points"].as_array().unwrap();
    assert_eq!(points.iter().map(|p| p["value"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    for p in points {
        let s = &p["methods"]["no-alignment"];
        assert!(s["n"] == 1 && s["mae"].is_number() && s["ci"]["mae"]["low"].is_number(), "{s}");
    }
    // Each value ran in its own folder with that value in its settings.
    for k in [1, 2] {
        let run: Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("K-{k}/report.json"))).unwrap()).unwrap();
        assert_eq!(run["meta"]["config"]["K"], k);
        assert!(std::fs::read_to_string(out.join(format!("K-{k}/report.md"))).unwrap().contains("| no-alignment | 1 |"));
        assert_eq!(std::fs::read_to_string(out.join(format!("K-{k}/results.jsonl"))).unwrap().lines().count(), 1);
    }
    assert_eq!(std::fs::read_to_string(out.join("scaling.md")).unwrap().trim(), md.trim());
    for f in ["scaling-K.svg", "scaling-K.png"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 1000, "{f}");
    }
    assert!(std::fs::read_to_string(out.join("scaling-K.svg")).unwrap().contains("no-alignment"));
    // Bad values are refused before anything runs.
    for (values, says) in [("1,0", "K must be at least 1"), ("2,2", "K = 2 is given twice")] {
        let bad = sweep(values);
        let e = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && e.contains(says), "{e}");
    }
}
