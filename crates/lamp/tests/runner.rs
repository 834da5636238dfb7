//! The runner with the real tiny model and encoder: every requested query
//! is answered and scored, results are appended as they finish, and a
//! rerun skips what is done (also after a torn last line).
//!
//! The models must be installed (`persona models fetch tiny minilm`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::sync::Arc;

use persona_agent::{Runtime, SharedEncoder, SharedLlm};
use persona_engine::{BertEncoder, Device, GgufChatModel, SharedModel};
use persona_lamp::{read_results, run, score_all, Example, Method, MethodConfig, Question, Resources, Task};
use persona_memory::Memory;
use persona_testkit::model_path;

/// A runtime on `model` with its own store in `dir`.
fn runtime<M: persona_agent::AgentLlm>(model: M, encoder: &SharedEncoder, dir: &std::path::Path) -> Runtime<M> {
    Runtime::new(model, Arc::clone(encoder), Memory::open(&dir.join("memory")).unwrap(), None)
}

fn example(user: &str, review: &str, gold: &str) -> Example {
    let profile = [("Strings sound great and stay in tune.", "5"), ("Broke after a day.", "1"), ("Works, nothing special.", "3")]
        .iter()
        .enumerate()
        .map(|(i, (text, score))| serde_json::json!({"id": format!("{user}-{i}"), "text": text, "score": score, "time": 100 + i}).as_object().unwrap().clone())
        .collect();
    Example {
        question: Question {
            id: format!("{user}/q"),
            input: format!("What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without further explanation. review: {review}"),
            profile,
        },
        gold: gold.into(),
        user: None,
    }
}

#[test]
fn runs_scores_and_resumes() {
    let examples = vec![example("a", "Excellent cable, no noise at all.", "5"), example("b", "The strap snapped on day one.", "1")];
    let dir = tempfile::tempdir().unwrap();
    let minilm = model_path("minilm");
    let encoder: SharedEncoder = Arc::new(BertEncoder::load(minilm.parent().unwrap(), "minilm", &Device::Cpu).unwrap());
    let mut local = runtime(GgufChatModel::load(model_path("tiny"), &Device::Cpu).unwrap(), &encoder, dir.path());
    let config = MethodConfig::with_seed(7);
    let methods = [Method::Prompt, Method::Rag1];
    let mut res = Resources { runtime: &mut local, config: &config, demos: &[], distractors: &[], writer: None, alignments: Vec::new() };
    let mut done = 0;
    let rows = run(Task::ProductRating, &examples, &methods, dir.path(), 0, std::slice::from_mut(&mut res), &mut |e| {
        if let persona_lamp::RunEvent::Done(_) = e {
            done += 1;
        }
    })
    .unwrap();
    assert_eq!((rows.len(), done), (4, 4));
    assert_eq!(read_results(dir.path()).unwrap(), rows, "every result is on disk");
    assert!(rows.iter().all(|r| !r.raw.is_empty()));
    let scores = score_all(Task::ProductRating, &rows, 7).unwrap();
    assert_eq!(scores["prompt"].n, 2);
    // Answers are decoded under the rating labels, so each is one of 1..=5,
    // and the scorer's MAE is exactly their mean distance to the golds.
    let errors: Vec<f64> = rows
        .iter()
        .filter(|r| r.method == Method::Rag1)
        .map(|r| {
            let rating: u8 = r.output.parse().unwrap_or_else(|_| panic!("not a rating: {:?}", r.output));
            assert!((1..=5).contains(&rating), "{rating}");
            (f64::from(rating) - r.gold.parse::<f64>().unwrap()).abs()
        })
        .collect();
    assert_eq!(errors.len(), 2);
    let want = errors.iter().sum::<f64>() / 2.0;
    assert!((scores["rag-1"].mae.unwrap() - want).abs() < 1e-12, "{:?} vs {want}", scores["rag-1"].mae);

    // A killed run leaves a torn line: it is ignored, and a rerun does nothing new.
    let path = dir.path().join("results.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"method\": \"prom");
    std::fs::write(&path, text).unwrap();
    let mut again = 0;
    let rows2 = run(Task::ProductRating, &examples, &methods, dir.path(), 0, std::slice::from_mut(&mut res), &mut |e| {
        if let persona_lamp::RunEvent::Done(_) = e {
            again += 1;
        }
    })
    .unwrap();
    assert_eq!(again, 0);
    assert_eq!(rows2, rows);
    // A smaller selection (the first user) reports only its own rows, for
    // every method the file holds, and runs nothing new.
    let first = run(Task::ProductRating, &examples[..1], &[Method::Prompt], dir.path(), 0, std::slice::from_mut(&mut res), &mut |e| {
        assert!(!matches!(e, persona_lamp::RunEvent::Done(_)), "nothing to run")
    })
    .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|r| r.id == "a/q"));
    assert_eq!(score_all(Task::ProductRating, &first, 7).unwrap()["rag-1"].n, 1);
    // Deterministic for a seed: a fresh run gives the same outputs.
    let fresh = tempfile::tempdir().unwrap();
    let mut again_runtime = runtime(GgufChatModel::load(model_path("tiny"), &Device::Cpu).unwrap(), &encoder, fresh.path());
    let mut res2 = Resources { runtime: &mut again_runtime, config: &config, demos: &[], distractors: &[], writer: None, alignments: Vec::new() };
    let rows3 = run(Task::ProductRating, &examples, &methods, fresh.path(), 0, std::slice::from_mut(&mut res2), &mut |_| {}).unwrap();
    let raw = |rs: &[persona_lamp::ResultRow]| rs.iter().map(|r| r.raw.clone()).collect::<Vec<_>>();
    assert_eq!(raw(&rows3), raw(&rows));

    // Users in flight together (two workers on clients of one shared
    // model, one store connection each) give the same answers, whatever
    // order they finish in; every row is on disk once.
    let parallel = tempfile::tempdir().unwrap();
    let shared = SharedModel::spawn(GgufChatModel::load(model_path("tiny"), &Device::Cpu).unwrap(), 8).unwrap();
    let mut runtimes = [runtime(SharedLlm(shared.client()), &encoder, parallel.path()), runtime(SharedLlm(shared.client()), &encoder, parallel.path())];
    let mut workers: Vec<Resources<'_, SharedLlm>> =
        runtimes.iter_mut().map(|runtime| Resources { runtime, config: &config, demos: &[], distractors: &[], writer: None, alignments: Vec::new() }).collect();
    let mut finished = 0;
    let rows4 = run(Task::ProductRating, &examples, &methods, parallel.path(), 0, &mut workers, &mut |e| {
        if let persona_lamp::RunEvent::Done(_) = e {
            finished += 1;
        }
    })
    .unwrap();
    assert_eq!(finished, 4);
    let by_id = |rs: &[persona_lamp::ResultRow]| {
        let mut v: Vec<_> = rs.iter().map(|r| (r.method, r.id.clone(), r.user, r.raw.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(by_id(&rows4), by_id(&rows));
    assert_eq!(by_id(&read_results(parallel.path()).unwrap()), by_id(&rows));
}

#[test]
fn nearest_answers_from_the_user_s_records_alone() {
    let dir = tempfile::tempdir().unwrap();
    let minilm = model_path("minilm");
    let encoder = BertEncoder::load(minilm.parent().unwrap(), "minilm", &Device::Cpu).unwrap();
    let mut memory = Memory::open(dir.path()).unwrap();
    let papers = ["Dependency parsing with beam search", "A treebank for spoken dialogue", "Shift-reduce constituency parsing"];
    let records: Vec<persona_memory::NewRecord> = papers.iter().map(|t| persona_memory::NewRecord::new(*t, *t)).collect();
    memory.import("ann", &records, &encoder, 8, &mut |_, _| {}).unwrap();
    let choices = persona_agent::Choices::new(&["[1]", "[2]"]).unwrap();
    // The option closer to the user's papers, in either order.
    let options = ["Protein folding in yeast cells".to_string(), "Neural networks for syntactic parsing".to_string()];
    let answer =
        |memory: &mut Memory, options: &[String]| persona_lamp::nearest::answer(memory, &encoder, "ann", "", Some(&choices), Some(options), 4).unwrap();
    assert_eq!(answer(&mut memory, &options), "[2]");
    assert_eq!(answer(&mut memory, &[options[1].clone(), options[0].clone()]), "[1]");
    // Labels: the label of the most similar record (K = 1), and without
    // labels that record's response.
    let news = [("The senate passed the budget bill", "politics"), ("The striker scored twice in the cup final", "sports")];
    let records: Vec<persona_memory::NewRecord> = news.iter().map(|(q, r)| persona_memory::NewRecord::new(*q, *r)).collect();
    memory.import("bob", &records, &encoder, 8, &mut |_, _| {}).unwrap();
    let labels = persona_agent::Choices::new(&["politics", "sports", "food"]).unwrap();
    let input = "The goalkeeper saved a penalty in the final minute";
    assert_eq!(persona_lamp::nearest::answer(&mut memory, &encoder, "bob", input, Some(&labels), None, 1).unwrap(), "sports");
    assert_eq!(persona_lamp::nearest::answer(&mut memory, &encoder, "bob", input, None, None, 1).unwrap(), "sports");
}
