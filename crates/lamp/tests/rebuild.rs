//! The builders on the real raw data in `../shared/data` (or the folder
//! named by `PERSONA_SHARED_DATA`); fails with a message if it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_lamp::{build, read_examples, BuildOptions, Task};
use persona_testkit::shared_data;

#[test]
fn rebuilt_sets_keep_the_invariants() {
    let raw = shared_data();
    for (task, time_field) in [(Task::NewsCategorization, "date"), (Task::ProductRating, "time"), (Task::MovieTagging, "time"), (Task::Citation, "year")] {
        let options = BuildOptions::default();
        let built = build(task, &raw, &options).unwrap();
        assert!(built.examples.len() >= 20, "{task}: only {} users", built.examples.len());
        assert!(built.manifest.name.contains("rebuilt from"));
        for e in &built.examples {
            match task.labels() {
                Some(labels) => assert!(labels.contains(&e.gold.as_str()), "{task}: {:?}", e.gold),
                None => assert!(["1", "2", "3", "4", "5"].contains(&e.gold.as_str())),
            }
            assert!(e.question.profile.len() >= options.min_profile);
            let key = |p: &serde_json::Map<String, serde_json::Value>| match &p[time_field] {
                serde_json::Value::Number(n) => n.as_i64().unwrap().to_string(),
                v => v.as_str().unwrap().to_string(),
            };
            let times: Vec<String> = e.question.profile.iter().map(key).collect();
            assert!(times.windows(2).all(|w| w[0].len() != w[1].len() || w[0] <= w[1]), "{task}: profile out of order");
            let query_id = e.question.id.rsplit('/').next().unwrap();
            assert!(e.question.profile.iter().all(|p| p["id"] != query_id), "{task}: query in its own profile");
        }
        // Written in the official format, read back the same.
        let dir = tempfile::tempdir().unwrap();
        built.write(dir.path()).unwrap();
        let again = read_examples(&dir.path().join("questions.json"), &dir.path().join("outputs.json")).unwrap();
        assert_eq!(again, built.examples);
        assert!(dir.path().join("manifest.json").is_file());
        // Deterministic.
        assert_eq!(build(task, &raw, &options).unwrap().examples, built.examples);
        eprintln!("{task}: {} users, profile sizes {:?}, labels {:?}", built.manifest.users_kept, built.manifest.profile_sizes, built.manifest.query_labels);
    }
}
