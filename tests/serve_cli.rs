//! `persona serve` as a process: SIGKILL during 8 concurrent chats that
//! write memory; after a restart the store passes `PRAGMA
//! integrity_check`, every exchange the server had answered is stored
//! exactly once, and the server serves the same data again.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Starts the server on a free port; returns the process and its URL once
/// `/health` answers 200.
fn serve(data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(["--threads", "2", "--data-dir"])
        .arg(data)
        .args(["serve", "-m", "tiny", "--port", "0", "--no-encyclopedia", "--parallel", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the persona binary runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ureq::get(&format!("{url}/health")).call().is_err() {
        assert!(Instant::now() < deadline, "the server did not get ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}

#[test]
fn sigkill_during_concurrent_chats_loses_and_duplicates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, url) = serve(data.path());
    let answered = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (url, answered, stop) = (&url, &answered, &stop);
            s.spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(600)).build();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // Two users, four writers each; every question distinct.
                    let body = json!({"messages": [{"role": "user", "content": format!("Writer {t}, question {n}: name a fruit.")}], "max_tokens": 12, "temperature": 0.5, "seed": n});
                    let reply = agent.post(&format!("{url}/v1/chat/completions")).set("X-User-Id", &format!("user-{}", t % 2)).send_json(body);
                    match reply {
                        Ok(r) => {
                            let v: Value = r.into_json().unwrap();
                            answered.lock().unwrap().push(v["id"].as_str().unwrap().to_string());
                        }
                        // The server was killed under this request.
                        Err(_) => return,
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(900);
        while answered.lock().unwrap().len() < 24 {
            assert!(Instant::now() < deadline, "the server answered too few chats");
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGKILL: no chance to flush or clean up.
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
    });
    let answered = answered.into_inner().unwrap();
    assert!(answered.len() >= 24);

    let db = rusqlite::Connection::open(data.path().join("persona.sqlite3")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let stored =
        |id: &str| -> i64 { db.query_row("SELECT COUNT(*) FROM records WHERE json_extract(metadata, '$.completion_id') = ?1", [id], |r| r.get(0)).unwrap() };
    for id in &answered {
        assert_eq!(stored(id), 1, "answered exchange {id} is stored exactly once");
    }
    let total: i64 = db.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0)).unwrap();
    assert!(
        total as usize >= answered.len() && total as usize <= answered.len() + 8,
        "{total} records for {} answered chats (at most one per writer was stored but not yet answered)",
        answered.len()
    );
    drop(db);

    // The server comes back on the same data and finds every record.
    let (mut child, url) = serve(data.path());
    let mut found = 0;
    for user in ["user-0", "user-1"] {
        let v: Value =
            ureq::get(&format!("{url}/v1/users/{user}/records/search")).query("q", "name a fruit").query("k", "100").call().unwrap().into_json().unwrap();
        found += v["data"].as_array().unwrap().len();
    }
    assert_eq!(found as i64, total, "every stored record is found after the restart");
    child.kill().unwrap();
    child.wait().unwrap();
}
