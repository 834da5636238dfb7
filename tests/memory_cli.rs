//! End-to-end tests of `persona user` and `persona memory` (real encoder;
//! run `persona models fetch` first, which `scripts/test` does), including
//! a crash test that SIGKILLs imports at random points.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

fn persona(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persona")).arg("--data-dir").arg(data).args(args).output().expect("the persona binary runs")
}

fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn write_jsonl(path: &Path, n: usize, offset: usize) {
    let topics = ["guitar strings", "jazz piano", "tax law", "mountain hiking", "sourdough bread", "chess openings", "electric cars", "bird watching"];
    let mut text = String::new();
    for i in offset..offset + n {
        let topic = topics[i % topics.len()];
        let row = serde_json::json!({
            "query": format!("Question {i}: what do you think about {topic} number {}?", i * 7919 % 1000),
            "response": format!("I rate {topic} {}", i % 5 + 1),
            "timestamp": 1_600_000_000 + i as i64 * 3600,
            "metadata": {"n": i}
        });
        text.push_str(&row.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn import_list_show_search_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let history = tmp.path().join("h.jsonl");
    write_jsonl(&history, 24, 0);
    let report = ok_json(&persona(&data, &["user", "import", "--user", "ann", "--json", history.to_str().unwrap()]));
    assert_eq!((report["added"].as_u64(), report["format"].as_str()), (Some(24), Some("json-lines")));

    let lamp = tmp.path().join("lamp.json");
    std::fs::write(
        &lamp,
        r#"[{"id":"310","input":"What is the score of this review?","profile":[
            {"id":"1","text":"These strings sound bright and stay in tune.","score":"5"},
            {"id":"2","text":"The strap broke after a week.","score":"1"},
            {"id":"3","text":"Decent cable, a bit noisy.","score":"3"}]}]"#,
    )
    .unwrap();
    ok_json(&persona(&data, &["user", "import", "--user", "ben", "--json", lamp.to_str().unwrap()]));

    let users = ok_json(&persona(&data, &["user", "list", "--json"]));
    let ids: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ann", "ben"]);
    let show = ok_json(&persona(&data, &["user", "show", "ben", "--json"]));
    assert_eq!((show["id"].as_str(), show["records"].as_i64()), (Some("ben"), Some(3)));

    let hits = ok_json(&persona(&data, &["memory", "search", "--user", "ben", "-k", "2", "--json", "guitar strings that keep their tuning"]));
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["response"], "5", "{hits:?}");
    assert!(hits[0]["score"].as_f64().unwrap() > hits[1]["score"].as_f64().unwrap());
    assert!(hits[0]["query"].as_str().unwrap().contains("strings"));
    // Isolation: ann's memory never answers with ben's records.
    let hits = ok_json(&persona(&data, &["memory", "search", "--user", "ann", "-k", "30", "--json", "The strap broke after a week."]));
    assert_eq!(hits.as_array().unwrap().len(), 24);
    assert!(hits.as_array().unwrap().iter().all(|h| h["query"].as_str().unwrap().starts_with("Question")));

    // The env var chooses the folder too.
    let out = Command::new(env!("CARGO_BIN_EXE_persona")).env("PERSONA_DATA_DIR", &data).args(["user", "list", "--json"]).output().unwrap();
    assert_eq!(ok_json(&out).as_array().unwrap().len(), 2);

    let out = persona(&data, &["user", "delete", "ann"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("24 records"));
    let out = persona(&data, &["user", "show", "ann"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user 'ann'"));
    // Only ben's index folder is left.
    let left: Vec<_> = std::fs::read_dir(data.join("indexes")).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn a_malformed_file_names_file_record_and_field_and_imports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"[{"query":"a","response":"b"},{"query":"c","response":"d"},{"query":"e"}]"#).unwrap();
    let out = persona(&data, &["user", "import", "--user", "cy", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json") && err.contains("record 3") && err.contains("'response'"), "{err}");
    let bad_time = tmp.path().join("bad_time.jsonl");
    std::fs::write(&bad_time, "{\"query\":\"a\",\"response\":\"b\",\"timestamp\":\"next tuesday\"}\n").unwrap();
    let err = String::from_utf8_lossy(&persona(&data, &["user", "import", "--user", "cy", bad_time.to_str().unwrap()]).stderr).to_string();
    assert!(err.contains("record 1") && err.contains("'timestamp'"), "{err}");
    let users = ok_json(&persona(&data, &["user", "list", "--json"]));
    assert!(users.as_array().unwrap().is_empty(), "nothing may be stored: {users}");
}

/// Reads the store directly and checks it is consistent: every record has
/// its full vector and encoder, and records came in whole batches.
fn check_store(data: &Path, batch: i64, total: i64) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(data.join("persona.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0)).unwrap();
    let bad: i64 = conn.query_row("SELECT COUNT(*) FROM records WHERE length(embedding) != 384 * 4 OR embedding_model != 'minilm'", [], |r| r.get(0)).unwrap();
    assert_eq!(bad, 0, "records without a full vector");
    let distinct: i64 = conn.query_row("SELECT COUNT(DISTINCT query) FROM records", [], |r| r.get(0)).unwrap();
    assert_eq!(distinct, count, "duplicate records");
    assert!(count == total || count % batch == 0, "{count} records is not a whole number of {batch}-record transactions");
    count
}

#[test]
fn sigkill_during_import_leaves_a_consistent_store_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let history = tmp.path().join("big.jsonl");
    let total = 1500;
    write_jsonl(&history, total, 1000);
    let mut rng = rand::rng();
    let mut before = 0;
    for round in 0..3 {
        let delay = Duration::from_millis(rng.random_range(1500..9000));
        let mut child = Command::new(env!("CARGO_BIN_EXE_persona"))
            .arg("--data-dir")
            .arg(&data)
            .args(["user", "import", "--user", "dee", "--batch-size", "50", history.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let count = check_store(&data, 50, total as i64);
        eprintln!("round {round}: killed after {delay:?}, {count} records stored");
        assert!(count >= before, "records were lost");
        before = count;
        if count > 0 {
            // Search works; the index is rebuilt to match the store.
            let hits = ok_json(&persona(&data, &["memory", "search", "--user", "dee", "-k", "3", "--json", "jazz piano"]));
            assert_eq!(hits.as_array().unwrap().len(), 3.min(count as usize));
            let meta_path = std::fs::read_dir(data.join("indexes")).unwrap().next().unwrap().unwrap().path().join("meta.json");
            let meta: Value = serde_json::from_str(&std::fs::read_to_string(meta_path).unwrap()).unwrap();
            assert_eq!(meta["count"].as_i64(), Some(count), "index and store disagree");
        }
    }
    let report = ok_json(&persona(&data, &["user", "import", "--user", "dee", "--json", "--batch-size", "50", history.to_str().unwrap()]));
    assert_eq!(report["added"].as_i64().unwrap() + before, total as i64);
    assert_eq!(report["duplicates"].as_i64(), Some(before));
    assert_eq!(check_store(&data, 50, total as i64), total as i64);
    let show = ok_json(&persona(&data, &["user", "show", "dee", "--json"]));
    assert_eq!(show["records"].as_i64(), Some(total as i64));
}
