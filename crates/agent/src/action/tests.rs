//! Unit tests of the action loop (scripted model; the real-model tests are
//! in `tests/agent.rs`).

use super::*;
use crate::scripted::{FakeTool, Scripted};

fn registry() -> ToolRegistry<'static> {
    let mut r = ToolRegistry::new();
    r.register(FakeTool::encyclopedia()).unwrap();
    r.register(FakeTool::memory()).unwrap();
    r
}

const MEM: &str = r#"{"tool": "memory_search", "arguments": {"query": "jazz"}}"#;
const ENC: &str = r#"{"tool": "encyclopedia_search", "arguments": {"query": "jazz"}}"#;
const FINAL: &str = r#"{"tool": "final_answer", "arguments": {"answer": "Jazz"}}"#;

#[test]
fn a_run_calls_tools_then_answers() {
    let mut model = Scripted::new(&[" I should check the user's history.", MEM, " And the genre.", ENC, " Done.", FINAL]);
    let trace = run_agent(&mut model, "persona", &mut registry(), "Which genre?", &AgentConfig::default()).unwrap();
    assert_eq!(trace.answer, "Jazz");
    assert_eq!(trace.finish, Finish::Answer);
    let tools: Vec<Option<&str>> = trace.steps.iter().map(|s| s.tool.as_deref()).collect();
    assert_eq!(tools, [Some("memory_search"), Some("encyclopedia_search"), None]);
    assert_eq!(trace.steps[0].thought, "I should check the user's history.");
    assert_eq!(trace.steps[0].observation.as_deref(), Some("1. liked: jazz"));
    assert_eq!(trace.steps[2].arguments["answer"], "Jazz");
    assert!(model.constrained.iter().all(|(_, ok)| *ok), "every scripted call was grammatical");
    // Before two tool calls the grammar does not offer the final answer.
    assert!(!model.constrained[0].0.contains(&FINAL_ANSWER.to_string()));
    assert!(!model.constrained[1].0.contains(&FINAL_ANSWER.to_string()));
    assert!(model.constrained[2].0.contains(&FINAL_ANSWER.to_string()));
    assert!(model.replies.is_empty());
}

#[test]
fn a_run_that_answers_when_done_answers_right_after_its_calls() {
    // No thought before the answer: the script has none to give.
    let mut model = Scripted::new(&[" Check the encyclopedia.", ENC, " Now the user's history.", MEM, FINAL]);
    let config = AgentConfig { answer_when_done: true, ..AgentConfig::default() };
    let trace = run_agent(&mut model, "persona", &mut registry(), "Which genre?", &config).unwrap();
    assert_eq!(trace.answer, "Jazz");
    assert_eq!(trace.steps.len(), 3);
    assert_eq!(trace.steps[2].thought, "");
    assert_eq!(model.constrained[2].0, [FINAL_ANSWER], "only the answer once the calls are done");
    assert_eq!(trace.model_calls, 5);
    assert!(model.replies.is_empty());
}

#[test]
fn the_answer_turn_asks_again_and_takes_a_bare_label() {
    let choices = Choices::new(&["jazz", "rock", "folk"]).unwrap();
    let config = AgentConfig { answer_when_done: true, answer_turn: true, choices: Some(choices), ..AgentConfig::default() };
    let mut model = Scripted::new(&[" Check the encyclopedia.", ENC, " Now the user's history.", MEM, " rock"]);
    let questions = [Question { text: "Which genre? Answer with jazz, rock or folk.", hidden_records: &[], reordered: None, options: None }];
    let mut traces = run_agents(&mut model, "persona", &mut registry(), &questions, &config).unwrap();
    let trace = traces.pop().unwrap();
    assert_eq!((trace.answer.as_str(), trace.finish), ("rock", Finish::Answer));
    assert_eq!(trace.steps.len(), 3);
    let last = &trace.steps[2];
    assert_eq!((last.thought.as_str(), last.tool.as_deref(), last.error.as_deref()), ("", None, None));
    assert_eq!(last.arguments["answer"], "rock");
    // The last grammar admits the labels alone, and the label came after
    // the question asked again in a user turn that follows the observations.
    assert_eq!(model.constrained[2], (vec!["jazz".to_string(), "rock".into(), "folk".into()], true));
    assert_eq!(trace.model_calls, 5);
    assert!(model.replies.is_empty());
}

#[test]
fn an_answer_turn_in_both_orders_takes_the_best_label_over_both() {
    let choices = Choices::new(&["[1]", "[2]"]).unwrap();
    let config = AgentConfig { answer_when_done: true, answer_turn: true, choices: Some(choices), ..AgentConfig::default() };
    let swapped = Reordered { text: "Which one? [1]: B [2]: A".into(), labels: vec![1, 0] };
    // Asked as is the model prefers [1] (A) a little; swapped it
    // prefers [1] (now B) a lot: B wins over both orders.
    let mut model = Scripted::new(&[" Check the encyclopedia.", ENC, " Now the user's history.", MEM]);
    model.scores = vec![vec![-0.5, -0.9], vec![-0.1, -2.0]].into();
    let both = Question { text: "Which one? [1]: A [2]: B", hidden_records: &[], reordered: Some(&swapped), options: None };
    let trace = run_agents(&mut model, "persona", &mut registry(), &[both], &config).unwrap().pop().unwrap();
    assert_eq!((trace.answer.as_str(), trace.finish), ("[2]", Finish::Answer));
    let last = trace.steps.last().unwrap();
    assert_eq!(last.arguments["answer"], "[2]");
    assert_eq!(last.arguments["scores"], serde_json::json!([-0.5f32 + -2.0f32, -0.9f32 + -0.1f32]));
    // The swapped turn is scored second, after the same calls and
    // observations, with the swapped question in both user turns.
    assert_eq!(model.scored.len(), 2);
    assert!(model.scored[0].ends_with("[1]: A [2]: B\n[assistant]Final answer:"), "{}", model.scored[0]);
    let (one, two) = (&model.scored[0], &model.scored[1]);
    assert!(two.ends_with("[1]: B [2]: A\n[assistant]Final answer:") && !two.contains("[1]: A [2]: B"), "{two}");
    assert!(two.starts_with("[system]persona") && two.contains("[user]Which one? [1]: B [2]: A[assistant]"), "{two}");
    let calls = |t: &str| t[t.find("[assistant]").unwrap()..t.rfind("[user]").unwrap()].to_string();
    assert_eq!(calls(one), calls(two), "the same calls and observations");
    assert!(calls(one).contains("Observation:"));
    assert_eq!(model.constrained.len(), 2, "no label was decoded");
    assert_eq!(trace.model_calls, 6);
}

#[test]
fn the_answer_turn_says_which_option_is_closest_to_the_user_s_records() {
    let choices = Choices::new(&["[1]", "[2]"]).unwrap();
    let config = AgentConfig { answer_when_done: true, answer_turn: true, answer_turn_closeness: true, choices: Some(choices), ..AgentConfig::default() };
    let swapped = Reordered { text: "Which one? [1]: jazz [2]: rock".into(), labels: vec![1, 0] };
    // The memory mentions jazz, the second option as asked.
    let options = ["rock".to_string(), "jazz".to_string()];
    let mut model = Scripted::new(&[" Check the encyclopedia.", ENC, " Now the user's history.", MEM]);
    model.scores = vec![vec![-0.5, -0.9], vec![-0.5, -0.9]].into();
    let both = Question { text: "Which one? [1]: rock [2]: jazz", hidden_records: &[], reordered: Some(&swapped), options: Some(&options) };
    let trace = run_agents(&mut model, "persona", &mut registry(), &[both], &config).unwrap().pop().unwrap();
    let last = trace.steps.last().unwrap();
    assert_eq!(last.arguments["closeness"], serde_json::json!([0.2f32, 0.9f32]));
    // Each order names the closest option by its own label.
    let note = |first: &str, _second: &str| format!("Closest to this user's own records: {first} (similarity 0.90, against 0.20).");
    assert!(model.scored[0].ends_with(&format!("[1]: rock [2]: jazz\n{}\n[assistant]Final answer:", note("[2]", "[1]"))), "{}", model.scored[0]);
    assert!(model.scored[1].ends_with(&format!("[1]: jazz [2]: rock\n{}\n[assistant]Final answer:", note("[1]", "[2]"))), "{}", model.scored[1]);
    // Decoded in one order, the note comes right after the question too.
    let mut model = Scripted::new(&[" Check the encyclopedia.", ENC, " Now the user's history.", MEM, " [2]"]);
    let one = Question { text: "Which one? [1]: rock [2]: jazz", hidden_records: &[], reordered: None, options: Some(&options) };
    let trace = run_agents(&mut model, "persona", &mut registry(), &[one], &config).unwrap().pop().unwrap();
    assert_eq!(trace.answer, "[2]");
    assert_eq!(trace.steps.last().unwrap().arguments["closeness"], serde_json::json!([0.2f32, 0.9f32]));
    assert!(model.extended.last().unwrap().ends_with(&format!("[2]: jazz\n{}\n[assistant]Final answer:", note("[2]", "[1]"))));
    // Labels that stand for nothing else: the label the memory votes for.
    let labels = AgentConfig { choices: Some(Choices::new(&["rock", "jazz", "folk"]).unwrap()), ..config.clone() };
    let mut model = Scripted::new(&[" Check the encyclopedia.", ENC, " Now the user's history.", MEM, " jazz"]);
    let genre = Question { text: "Which genre?", hidden_records: &[], reordered: None, options: None };
    let trace = run_agents(&mut model, "persona", &mut registry(), &[genre], &labels).unwrap().pop().unwrap();
    assert_eq!(trace.steps.last().unwrap().arguments["closeness"], serde_json::json!([0.0, 1.0, 0.0]));
    assert!(trace.render().contains("  Closeness (per label): 0.00, 1.00, 0.00\n  Final answer: jazz\n"), "{}", trace.render());
    assert!(model.extended.last().unwrap().ends_with("Which genre?\nClosest to this user's own records: jazz (votes 1.00).\n[assistant]Final answer:"));
    // Off, or with the memory's records hidden, there is no note.
    for (closeness, hidden) in [(false, &[][..]), (true, &[7][..])] {
        let config = AgentConfig { answer_turn_closeness: closeness, ..config.clone() };
        let mut model = Scripted::new(&[" Check the encyclopedia.", ENC, " Now the user's history.", MEM, " [2]"]);
        let one = Question { text: "Which one? [1]: rock [2]: jazz", hidden_records: hidden, reordered: None, options: Some(&options) };
        let trace = run_agents(&mut model, "persona", &mut registry(), &[one], &config).unwrap().pop().unwrap();
        assert!(trace.steps.last().unwrap().arguments.get("closeness").is_none());
        assert!(!model.extended.last().unwrap().contains("Closest"));
    }
}

#[test]
fn the_answer_turn_is_the_last_step_whatever_came_before() {
    let choices = Choices::new(&["jazz", "rock"]).unwrap();
    let config = AgentConfig { answer_turn: true, choices: Some(choices), ..AgentConfig::default() };
    let broken = r#"{"tool": "memory_search", "arguments": {"query": "ja"#;
    let mut model = Scripted::new(&["", broken, "", broken, "", broken, " jazz"]);
    let trace = run_agent(&mut model, "persona", &mut registry(), "Which genre?", &config).unwrap();
    assert_eq!((trace.answer.as_str(), trace.steps.len()), ("jazz", 4));
    assert_eq!(model.constrained.last().unwrap(), &(vec!["jazz".to_string(), "rock".into()], true));
    assert!(model.replies.is_empty());
    // Without labels there is no answer turn: the last step is a call.
    let mut model = Scripted::new(&["", broken, "", broken, "", broken, "", broken, " Blue"]);
    let config = AgentConfig { answer_turn: true, ..AgentConfig::default() };
    let trace = run_agent(&mut model, "persona", &mut registry(), "Favourite colour?", &config).unwrap();
    assert_eq!((trace.answer.as_str(), trace.finish), ("Blue", Finish::StepLimit));
}

#[test]
fn the_answer_turn_can_show_the_records_found_each_once() {
    let mut lines = Vec::new();
    remember_lines(&mut lines, "1. Review: great | The user's rating: 5\n2. Review: fine | The user's rating: 4");
    remember_lines(&mut lines, "1. Review: fine | The user's rating: 4\n2. Review: bad. Broke. | The user's rating: 1\n");
    assert_eq!(lines, ["Review: great | The user's rating: 5", "Review: fine | The user's rating: 4", "Review: bad. Broke. | The user's rating: 1"]);
    let config = AgentConfig { answer_turn: true, answer_turn_records: true, ..AgentConfig::default() };
    let text = answer_turn_text(&config, "Rate it: 1-5.", &lines, None);
    assert!(text.contains("1. Review: great") && text.contains("3. Review: bad. Broke.") && text.ends_with("Rate it: 1-5.\n"), "{text}");
    assert!(text.find("3. Review").unwrap() < text.find("Rate it").unwrap());
    // Off, or with nothing found: the question alone.
    assert!(!answer_turn_text(&AgentConfig { answer_turn_records: false, ..config.clone() }, "Rate it: 1-5.", &lines, None).contains("Review"));
    assert_eq!(answer_turn_text(&config, "Rate it: 1-5.", &[], None), fill(ANSWER_TURN, &[("question", "Rate it: 1-5.")]));
}

#[test]
fn the_memory_rule_is_enforced_by_the_loop() {
    // The model tries to answer at once, then keeps using the
    // encyclopedia: the loop refuses the answer and, when only one tool
    // step is left, allows nothing but the memory search.
    let mut model = Scripted::new(&["", FINAL, "", ENC, "", MEM, "", FINAL]);
    let trace = run_agent(&mut model, "persona", &mut registry(), "Which genre?", &AgentConfig::default()).unwrap();
    assert!(trace.steps[0].error.as_deref().unwrap().contains("not allowed"), "{:?}", trace.steps[0]);
    assert!(!model.constrained[0].1, "the grammar did not allow it either");
    assert_eq!(model.constrained[2].0, ["memory_search"], "last tool step: memory only");
    assert_eq!(model.constrained[3].0, [FINAL_ANSWER], "last step: answer only");
    assert_eq!(trace.answer, "Jazz");
    assert_eq!(trace.tool_calls().filter(|s| s.tool.as_deref() == Some("memory_search")).count(), 1);
}

#[test]
fn broken_calls_are_reported_and_the_step_limit_ends_the_run() {
    let broken = r#"{"tool": "memory_search", "arguments": {"query": "ja"#;
    let mut model = Scripted::new(&["", broken, "", "not json at all", "", r#"{"tool": "web", "arguments": {}}"#, "", broken, " Blue"]);
    let trace = run_agent(&mut model, "persona", &mut registry(), "Favourite colour?", &AgentConfig::default()).unwrap();
    assert_eq!(trace.steps.len(), 4);
    assert!(trace.steps.iter().all(|s| s.error.is_some()), "{:#?}", trace.steps);
    assert!(trace.steps[0].error.as_deref().unwrap().contains("not valid JSON"));
    assert!(trace.steps[2].error.as_deref().unwrap().contains("not allowed"));
    assert_eq!(trace.finish, Finish::StepLimit);
    assert_eq!(trace.answer, "Blue");
}

#[test]
fn a_repeated_call_is_not_run_again_and_does_not_count() {
    let mut model = Scripted::new(&["", ENC, "", ENC, "", MEM, "", FINAL]);
    let trace = run_agent(&mut model, "persona", &mut registry(), "Which genre?", &AgentConfig::default()).unwrap();
    assert_eq!(trace.steps[1].repeat_of, Some(1));
    assert!(trace.steps[1].observation.as_deref().unwrap().contains("same call as in step 1"));
    // Only enc + memory count: two calls, so the answer is allowed at step 4.
    assert_eq!(model.constrained[2].0, ["memory_search"]);
    assert_eq!(trace.answer, "Jazz");
    assert_eq!(trace.tool_calls().filter(|s| s.repeat_of.is_none()).count(), 2);
}

#[test]
fn a_run_that_repeats_itself_after_the_memory_search_must_answer() {
    let mut model = Scripted::new(&["", MEM, "", MEM, "", FINAL]);
    let trace = run_agent(&mut model, "persona", &mut registry(), "Which genre?", &AgentConfig::default()).unwrap();
    assert_eq!(trace.steps.len(), 3);
    assert_eq!(trace.steps[1].repeat_of, Some(1));
    assert_eq!(model.constrained[2].0, [FINAL_ANSWER], "the step after a repeat answers");
    assert_eq!((trace.answer.as_str(), trace.finish), ("Jazz", Finish::Answer));
    assert!(model.replies.is_empty());
}

#[test]
fn lock_step_runs_keep_their_own_state() {
    // Run A answers at step 3; run B keeps writing broken calls and is
    // asked for its answer after the step limit. Each step: both
    // thoughts, then both calls (B alone once A is done).
    let broken = r#"{"tool": "memory_search", "arguments": {"query": "ja"#;
    let mut model = Scripted::new(&["", "", MEM, broken, "", "", ENC, broken, "", "", FINAL, broken, "", broken, " Blue"]);
    let questions = [
        Question { text: "Which genre?", hidden_records: &[], reordered: None, options: None },
        Question { text: "Favourite colour?", hidden_records: &[7], reordered: None, options: None },
    ];
    let traces = run_agents(&mut model, "persona", &mut registry(), &questions, &AgentConfig::default()).unwrap();
    assert!(model.replies.is_empty());
    let (a, b) = (&traces[0], &traces[1]);
    assert_eq!((a.answer.as_str(), a.finish, a.steps.len(), a.question.as_str()), ("Jazz", Finish::Answer, 3, "Which genre?"));
    assert_eq!((b.answer.as_str(), b.finish, b.steps.len(), b.question.as_str()), ("Blue", Finish::StepLimit, 4, "Favourite colour?"));
    assert!(a.steps.iter().all(|s| s.error.is_none()));
    assert!(b.steps.iter().all(|s| s.error.is_some()));
    // B's failures did not count for A and the other way round: A could
    // answer at step 3, B never made a call.
    assert!(a.steps[2].allowed.contains(&FINAL_ANSWER.to_string()));
    assert!(!b.steps[2].allowed.contains(&FINAL_ANSWER.to_string()));
    assert_eq!(b.steps[2].allowed, ["memory_search"], "B's last tool step: memory only");
    assert_eq!((a.model_calls, b.model_calls), (6, 9));
}

#[test]
fn labels_are_decoded_without_the_calls_repeat_penalty() {
    // Run A makes its two calls and answers at step 3; run B writes
    // broken calls and is made to answer at the last step. In the same
    // step B's call keeps the calls' penalty and A's label gets none,
    // and each run still gets its own continuation.
    let choices = Choices::new(&["Jazz", "Blue"]).unwrap();
    let config = AgentConfig { answer_when_done: true, choices: Some(choices), ..AgentConfig::default() };
    let broken = r#"{"tool": "memory_search", "arguments": {"query": "ja"#;
    let blue = r#"{"tool": "final_answer", "arguments": {"answer": "Blue"}}"#;
    let mut model = Scripted::new(&["", "", MEM, broken, "", "", ENC, broken, "", broken, FINAL, blue]);
    let questions = [
        Question { text: "Which genre?", hidden_records: &[], reordered: None, options: None },
        Question { text: "Favourite colour?", hidden_records: &[], reordered: None, options: None },
    ];
    let traces = run_agents(&mut model, "persona", &mut registry(), &questions, &config).unwrap();
    assert!(model.replies.is_empty());
    assert_eq!((traces[0].answer.as_str(), traces[0].finish), ("Jazz", Finish::Answer));
    assert_eq!((traces[1].answer.as_str(), traces[1].steps.len()), ("Blue", 4));
    assert_eq!(model.penalties, [1.1, 1.1, 1.1, 1.1, 1.1, 1.0, 1.0]);
    // With the penalty set, labels get it too.
    let config = AgentConfig { label_repeat_penalty: 1.3, ..config };
    let mut model = Scripted::new(&["", MEM, "", ENC, FINAL]);
    run_agent(&mut model, "persona", &mut registry(), "Which genre?", &config).unwrap();
    assert_eq!(model.penalties, [1.1, 1.1, 1.3]);
}

#[test]
fn settings_that_cannot_meet_the_rules_are_refused() {
    let config = AgentConfig { max_steps: 2, min_tool_calls: 2, ..AgentConfig::default() };
    let err = run_agent(&mut Scripted::new(&[]), "p", &mut registry(), "q", &config).unwrap_err();
    assert!(err.to_string().contains("max_steps"), "{err}");
    // Without tools only the answer is allowed.
    let mut model = Scripted::new(&["", FINAL]);
    let config = AgentConfig { min_tool_calls: 0, ..AgentConfig::default() };
    let trace = run_agent(&mut model, "p", &mut ToolRegistry::new(), "q", &config).unwrap();
    assert_eq!(trace.answer, "Jazz");
    assert_eq!(model.constrained[0].0, [FINAL_ANSWER]);
}
