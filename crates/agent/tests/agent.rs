//! The agent with the real tiny chat model, the real MiniLM encoder and the
//! offline encyclopedia: constrained tool calls are always valid, and the
//! whole method runs end to end (history, semantic memory, persona,
//! alignment, answer).
//!
//! The models must be installed (`persona models fetch tiny minilm wiki`);
//! if they are not, these tests fail with a message saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_agent::{
    align, align_with, run_agent, run_agents, standard_tools, AgentConfig, AgentLlm, AlignConfig, AlignContext, Choices, Encyclopedia, Finish, Outcome,
    Question, Replay, ToolConfig, FINAL_ANSWER,
};
use persona_engine::GenerationParams;
use persona_engine::{BertEncoder, Device, GgufChatModel};
use persona_memory::{Memory, NewRecord};
use persona_testkit::model_path;

fn encoder() -> BertEncoder {
    let dir = model_path("minilm");
    BertEncoder::load(dir.parent().unwrap(), "minilm", &Device::Cpu).unwrap()
}

fn tiny() -> GgufChatModel {
    GgufChatModel::load(model_path("tiny"), &Device::Cpu).unwrap()
}

fn encyclopedia(dir: &std::path::Path) -> Encyclopedia {
    Encyclopedia::open(&model_path("wiki"), Some(&dir.join("encyclopedia"))).unwrap()
}

const TAGS: &str = "sci-fi, comedy, romance, horror, documentary";

/// A user who tags films, oldest first, in the LaMP movie-tagging shape.
fn history() -> Vec<NewRecord> {
    let films = [
        ("A crew travels through a wormhole to find a new home for humanity.", "sci-fi"),
        ("Two rival chefs fall in love while running a food truck.", "romance"),
        ("An android questions its creators on a distant mining colony.", "sci-fi"),
        ("A family moves into a house where the walls whisper at night.", "horror"),
        ("Astronauts stranded on Mars grow potatoes to survive.", "sci-fi"),
        ("A clumsy detective solves crimes by accident.", "comedy"),
        ("Time travellers try to stop a war that has not started yet.", "sci-fi"),
        ("The life of bees in an urban rooftop garden.", "documentary"),
        ("A spaceship's computer refuses to open the pod bay doors.", "sci-fi"),
        ("A robot learns to paint after humans leave Earth.", "sci-fi"),
    ];
    films
        .iter()
        .enumerate()
        .map(|(i, (plot, tag))| NewRecord {
            timestamp: Some(1_600_000_000 + i as i64 * 86_400),
            ..NewRecord::new(format!("Which tag fits this movie ({TAGS})? {plot}"), *tag)
        })
        .collect()
}

/// Ann's history in a fresh store, the encyclopedia, the tiny model and a
/// sci-fi persona.
struct Fixture {
    encoder: BertEncoder,
    memory: Memory,
    wiki: Encyclopedia,
    model: GgufChatModel,
    persona: String,
}

fn fixture(dir: &std::path::Path) -> Fixture {
    let encoder = encoder();
    let mut memory = Memory::open(dir).unwrap();
    memory.import("ann", &history(), &encoder, 16, &mut |_, _| {}).unwrap();
    let wiki = encyclopedia(dir);
    let persona = persona_agent::persona::compose("This user loves science fiction and tags most films sci-fi.");
    Fixture { encoder, memory, wiki, model: tiny(), persona }
}

#[test]
fn constrained_tool_calls_are_always_valid() {
    let dir = tempfile::tempdir().unwrap();
    let Fixture { encoder, mut memory, wiki, mut model, persona } = fixture(dir.path());
    let questions = [
        format!("Which tag fits this movie ({TAGS})? A lonely astronaut befriends an alien on the Moon."),
        format!("Which tag fits this movie ({TAGS})? Two strangers meet on a train and fall in love."),
        "What is the capital of France?".to_string(),
        "Recommend a book for this user in one title.".to_string(),
        "Rate this product from 1 to 5 as the user would: a cheap plastic telescope.".to_string(),
    ];
    let config = AgentConfig::default();
    let mut calls = 0;
    for question in &questions {
        let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
        let trace = run_agent(&mut model, &persona, &mut tools, question, &config).unwrap();
        for step in &trace.steps {
            assert!(step.error.is_none(), "{question}: step {} was not a valid call: {:?}\n{}", step.step, step.error, trace.render());
            let name = step.tool.clone().unwrap_or_else(|| FINAL_ANSWER.to_string());
            assert!(step.allowed.contains(&name), "{question}: {name} not in {:?}", step.allowed);
            assert!(step.arguments.is_object(), "{question}: {:?}", step.arguments);
            calls += 1;
        }
        assert_eq!(trace.finish, Finish::Answer, "{question}\n{}", trace.render());
        assert!(!trace.answer.is_empty(), "{question}\n{}", trace.render());
        assert!(trace.tool_calls().any(|s| s.tool.as_deref() == Some("memory_search")), "{question}: no memory search\n{}", trace.render());
        assert!(trace.tool_calls().count() >= config.min_tool_calls);
        // After the first step the transcript extends the KV cache.
        assert!(trace.steps.iter().skip(1).all(|s| s.cached_tokens > 0), "{}", trace.render());
    }
    assert!(calls >= questions.len() * 3, "{calls} calls");
}

#[test]
fn end_to_end_history_persona_alignment_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let mut memory = Memory::open(dir.path()).unwrap();
    let report = memory.import("ann", &history(), &encoder, 16, &mut |_, _| {}).unwrap();
    assert_eq!(report.added, 10);
    let wiki = encyclopedia(dir.path());
    let mut model = tiny();

    // Alignment builds the semantic memory and persona version 1 first.
    // (The score guard is tested on its own below.)
    let config = AlignConfig { batch: 2, iterations: 1, score_guard: false, ..AlignConfig::default() };
    let mut events = Vec::new();
    let aligned =
        align(&mut model, &mut memory, &encoder, Some(&wiki), "ann", &config, &mut |e| events.push(format!("{e:?}").chars().take(40).collect::<String>()))
            .unwrap();
    let user = memory.store().require_user("ann").unwrap();
    assert!(memory.store().latest_semantic_profile(&user, None).unwrap().is_some(), "semantic memory built");
    assert_eq!(aligned.initial_version, 1);
    let iteration = &aligned.iterations[0];
    assert_eq!(iteration.simulations.len(), 2);
    // The replayed interactions are the two most recent ones.
    assert_eq!(iteration.simulations[0].real, "sci-fi");
    assert_eq!(iteration.simulations[1].real, "sci-fi");
    // Feedback where the answer missed the user's, none where it matched.
    assert!(
        iteration.simulations.iter().all(|s| s.feedback.is_empty() == (s.simulated.trim() == s.real)),
        "{:?}",
        iteration.simulations.iter().map(|s| (&s.simulated, &s.feedback)).collect::<Vec<_>>()
    );
    let Outcome::Accepted { version } = iteration.outcome else { panic!("rewrite rejected: {:?}", iteration.outcome) };
    assert_eq!(version, 2);
    let versions = memory.store().persona_versions(&user).unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].parent, Some(1));
    assert_eq!(versions[1].feedback.as_deref(), Some(iteration.feedback.as_str()));
    assert!(!iteration.feedback.is_empty());

    // Answer a new question with the aligned persona.
    let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
    let question = format!("Which tag fits this movie ({TAGS})? Explorers discover a signal from another galaxy.");
    let trace = run_agent(&mut model, &versions[1].text, &mut tools, &question, &AgentConfig::default()).unwrap();
    assert_eq!(trace.finish, Finish::Answer, "{}", trace.render());
    assert!(!trace.answer.is_empty());
    assert!(
        trace.steps.iter().any(|s| s.tool.as_deref() == Some("memory_search") && s.observation.as_deref().is_some_and(|o| o.contains("sci-fi"))),
        "{}",
        trace.render()
    );
    assert!(trace.steps.last().unwrap().tool.is_none(), "the last step is the final answer");
    eprintln!("{}\nanswer: {}\npersona v2:\n{}", trace.render(), trace.answer, versions[1].text);
}

#[test]
fn lock_step_runs_give_the_traces_of_single_runs() {
    // Three questions answered together (one batch per step) and one after
    // another: the tiny model's kernels give the same logits for one row or
    // many, so every thought, call, observation and answer must agree.
    let dir = tempfile::tempdir().unwrap();
    let Fixture { encoder, mut memory, wiki, mut model, persona } = fixture(dir.path());
    let texts = [
        format!("Which tag fits this movie ({TAGS})? A lonely astronaut befriends an alien on the Moon."),
        format!("Which tag fits this movie ({TAGS})? Two strangers meet on a train and fall in love."),
        "Recommend a book for this user in one title.".to_string(),
    ];
    let config = AgentConfig::default();
    let single: Vec<_> = texts
        .iter()
        .map(|q| {
            let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
            run_agent(&mut model, &persona, &mut tools, q, &config).unwrap()
        })
        .collect();
    let questions: Vec<Question<'_>> = texts.iter().map(|t| Question { text: t, hidden_records: &[], reordered: None, options: None }).collect();
    let batched = {
        let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
        run_agents(&mut model, &persona, &mut tools, &questions, &config).unwrap()
    };
    assert_eq!(batched.len(), 3);
    for (a, b) in single.iter().zip(&batched) {
        assert_eq!(a.answer, b.answer, "{}\n---\n{}", a.render(), b.render());
        assert_eq!(a.finish, b.finish);
        assert_eq!(a.steps.len(), b.steps.len(), "{}\n---\n{}", a.render(), b.render());
        for (x, y) in a.steps.iter().zip(&b.steps) {
            assert_eq!((&x.thought, &x.tool, &x.arguments, &x.observation, &x.error), (&y.thought, &y.tool, &y.arguments, &y.observation, &y.error));
            assert_eq!(x.completion_tokens, y.completion_tokens);
        }
        assert!(b.tool_calls().any(|s| s.tool.as_deref() == Some("memory_search")), "{}", b.render());
    }

    // A question's hidden records never come back from its memory searches,
    // while the other questions of the batch still see them.
    let user = memory.store().require_user("ann").unwrap();
    let records = memory.store().records(&user).unwrap();
    let sci_fi: Vec<i64> = records.iter().filter(|r| r.response == "sci-fi").map(|r| r.id).collect();
    let hidden_texts: Vec<String> = records.iter().filter(|r| r.response == "sci-fi").map(|r| r.query.clone()).collect();
    let questions = [
        Question { text: &texts[0], hidden_records: &sci_fi, reordered: None, options: None },
        Question { text: &texts[0], hidden_records: &[], reordered: None, options: None },
    ];
    let traces = {
        let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
        run_agents(&mut model, &persona, &mut tools, &questions, &config).unwrap()
    };
    let memory_observations = |t: &persona_agent::Trace| -> String {
        t.steps.iter().filter(|s| s.tool.as_deref() == Some("memory_search")).filter_map(|s| s.observation.clone()).collect::<Vec<_>>().join("\n")
    };
    let (hidden_run, open_run) = (memory_observations(&traces[0]), memory_observations(&traces[1]));
    assert!(!hidden_run.is_empty() && !open_run.is_empty(), "{}\n---\n{}", traces[0].render(), traces[1].render());
    let plots: Vec<&str> = hidden_texts.iter().map(|t| t.split("? ").nth(1).unwrap()).collect();
    for plot in &plots {
        assert!(!hidden_run.contains(plot), "hidden record returned: {plot}\n{hidden_run}");
    }
    assert!(plots.iter().any(|p| open_run.contains(p)), "the other run sees them: {open_run}");
}

#[test]
fn answers_under_labels_are_always_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let Fixture { encoder, mut memory, wiki, mut model, persona } = fixture(dir.path());
    // Direct answers: the tiny model left alone writes sentences; under the
    // grammar it can only write a label, also where labels share a prefix.
    let sets = [
        Choices::parse_list("sci-fi,social commentary,comedy,dark comedy,romance").unwrap(),
        Choices::parse_list("style & beauty,sports,science & technology,politics").unwrap(),
        Choices::parse_list("1,2,3,4,5").unwrap(),
        Choices::parse_list("[1],[2]").unwrap(),
    ];
    let prompts = [
        "Tell me about this movie: two comedians fall in love on a spaceship.",
        "Which section is this article for? The senate voted on the new budget.",
        "How many stars for a kettle that broke after a day?",
        "Which one? [1]: \"Parsing\" [2]: \"Tagging\"",
    ];
    let params = GenerationParams { max_tokens: 16, ..GenerationParams::default() };
    for (choices, prompt) in sets.iter().zip(prompts) {
        let answer = model.complete_choice("Answer with the label only.", prompt, choices, &params).unwrap();
        assert!(choices.labels().contains(&answer), "{answer:?} is not one of {:?}", choices.labels());
        let free = persona_memory::Summarizer::complete(&mut model, "Answer with the label only.", prompt, &params).unwrap();
        eprintln!("{prompt}\n  under labels: {answer:?}\n  free text: {free:?}");
    }
    // The agent's final answer under labels, with every rule kept.
    let tags = Choices::parse_list(TAGS).unwrap();
    let config = AgentConfig { choices: Some(tags.clone()), ..AgentConfig::default() };
    for plot in ["A lonely astronaut befriends an alien on the Moon.", "Two strangers meet on a train and fall in love.", "A ghost haunts a lighthouse keeper."]
    {
        let question = format!("Which tag fits this movie ({TAGS})? {plot}");
        let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
        let trace = run_agent(&mut model, &persona, &mut tools, &question, &config).unwrap();
        assert!(tags.labels().contains(&trace.answer), "{:?} is not a tag\n{}", trace.answer, trace.render());
        assert!(trace.steps.iter().all(|s| s.error.is_none()), "{}", trace.render());
        assert!(trace.tool_calls().any(|s| s.tool.as_deref() == Some("memory_search")), "{}", trace.render());
    }
}

#[test]
fn the_score_guard_keeps_only_rewrites_that_do_as_well_on_the_replays() {
    let dir = tempfile::tempdir().unwrap();
    let Fixture { encoder, mut memory, wiki, mut model, .. } = fixture(dir.path());
    let user = memory.store().require_user("ann").unwrap();
    let latest = memory.store().latest_records(&user, 2).unwrap();
    let replays: Vec<Replay> = latest.iter().rev().map(Replay::from_record).collect();
    let mut config = AlignConfig { batch: 2, iterations: 2, ..AlignConfig::default() };
    config.agent.choices = Some(Choices::parse_list(TAGS).unwrap());
    let ctx = AlignContext { model: &mut model, writer: None, memory: &mut memory, encoder: &encoder, encyclopedia: Some(&wiki) };
    let report = align_with(ctx, "ann", &config, Some(replays.clone()), &mut |_| {}).unwrap();
    let tags = Choices::parse_list(TAGS).unwrap();
    let mut score = report.initial_score;
    for it in &report.iterations {
        assert_eq!(it.simulations.len(), 2);
        for (sim, replay) in it.simulations.iter().zip(&replays) {
            assert_eq!((&sim.query, &sim.real), (&replay.question, &replay.real));
            assert!(tags.labels().contains(&sim.simulated), "{:?}", sim.simulated);
        }
        assert_eq!(it.score(), score, "each iteration starts from the kept persona's replays");
        match &it.outcome {
            Outcome::Accepted { .. } => {
                let s = it.candidate_score.expect("an accepted rewrite was replayed");
                assert!(s >= score, "accepted a rewrite scoring {s} < {score}");
                score = s;
            }
            Outcome::Rejected { rejection, .. } => {
                if let Some(s) = it.candidate_score {
                    assert!(s < score && rejection.guard() == "worse", "{rejection:?} at {s} vs {score}");
                }
            }
            Outcome::NoGap => {
                assert!(it.simulations.iter().all(|s| s.simulated == s.real), "no gap means every replay matched");
                assert_eq!(score, 2.0);
            }
            Outcome::Unchanged => assert!(it.candidate_score.is_none(), "an unchanged rewrite is not replayed"),
        }
    }
    assert_eq!(report.final_score, score);
    assert!(report.final_score >= report.initial_score);
    let rejected = report.iterations.iter().position(|it| matches!(it.outcome, Outcome::Rejected { .. } | Outcome::NoGap | Outcome::Unchanged));
    if let Some(i) = rejected {
        assert_eq!(i + 1, report.iterations.len(), "alignment stops at a rejection");
    }
    eprintln!(
        "scores {} -> {}; outcomes {:?}",
        report.initial_score,
        report.final_score,
        report.iterations.iter().map(|i| format!("{:?}", i.outcome).chars().take(40).collect::<String>()).collect::<Vec<_>>()
    );
}

#[test]
fn the_answer_turn_is_a_new_user_turn_of_the_model_s_own_template() {
    use persona_engine::{ChatMessage, ChatModel};
    let mut model = tiny();
    let mut transcript = model.start("You tag films.", "Which tag? A ghost haunts a lighthouse.").unwrap();
    model.append(&mut transcript, "Thought: check.\nObservation: <|im_end|> is plain text here").unwrap();
    model.ask(&mut transcript, "Asked again: which tag?").unwrap();
    // The same text as the template renders for the whole conversation,
    // and the turn markers are the special tokens, not their spelling.
    let rendered = model
        .render_chat(&[
            ChatMessage::system("You tag films."),
            ChatMessage::user("Which tag? A ghost haunts a lighthouse."),
            ChatMessage::assistant("Thought: check.\nObservation: <|im_end|> is plain text here"),
            ChatMessage::user("Asked again: which tag?"),
        ])
        .unwrap();
    assert_eq!(transcript.text, rendered);
    let im_end = model.tokenizer().token_id("<|im_end|>").expect("a ChatML model");
    let ends = transcript.tokens.iter().filter(|&&t| t == im_end).count();
    assert_eq!(ends, 4, "the ends of the system, user, assistant and new user turns; the observation's spelling stays text");

    // In the loop: the label is decoded after the question asked again.
    let dir = tempfile::tempdir().unwrap();
    let Fixture { encoder, mut memory, wiki, mut model, persona } = fixture(dir.path());
    let tags = Choices::parse_list(TAGS).unwrap();
    let config = AgentConfig { choices: Some(tags.clone()), answer_when_done: true, answer_turn: true, ..AgentConfig::default() };
    let question = format!("Which tag fits this movie ({TAGS})? A lonely astronaut befriends an alien on the Moon.");
    let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
    let trace = run_agent(&mut model, &persona, &mut tools, &question, &config).unwrap();
    assert!(tags.labels().contains(&trace.answer), "{:?} is not a tag\n{}", trace.answer, trace.render());
    let last = trace.steps.last().unwrap();
    assert_eq!((last.tool.as_deref(), last.error.as_deref(), last.thought.as_str()), (None, None, ""), "{}", trace.render());
    assert!(last.cached_tokens > 0, "the answer turn reuses the loop's KV cache: {last:?}");
}

#[test]
fn answers_in_both_orders_do_not_depend_on_the_order_asked() {
    use persona_agent::{complete_choice_both_orders, Reordered};
    let mut model = tiny();
    let choices = Choices::parse_list("[1],[2]").unwrap();
    let ask = |a: &str, b: &str| format!("Which paper is about parsing? Answer [1] or [2]. [1]: \"{a}\" [2]: \"{b}\"");
    let (parsing, galaxies) = ("Neural dependency parsing", "Galaxy surveys of the southern sky");
    let swapped = |text: String| Reordered { text, labels: vec![1, 0] };
    // The label scores are log-probabilities: finite, at most 0.
    let start = model.start("Answer with the label only.", &ask(parsing, galaxies)).unwrap();
    let scores = model.score_choices(&start, "", &choices).unwrap();
    assert!(scores.len() == 2 && scores.iter().all(|s| s.is_finite() && *s <= 0.0), "{scores:?}");
    // Asked either way round, the chosen paper is the same (its label
    // follows it), with the same combined scores.
    let (one, s1) =
        complete_choice_both_orders(&mut model, "Answer with the label only.", &ask(parsing, galaxies), &swapped(ask(galaxies, parsing)), &choices).unwrap();
    let (two, s2) =
        complete_choice_both_orders(&mut model, "Answer with the label only.", &ask(galaxies, parsing), &swapped(ask(parsing, galaxies)), &choices).unwrap();
    assert!(s1[0] != s1[1], "the scores tie: {s1:?}");
    assert!((s1[0] - s2[1]).abs() < 1e-3 && (s1[1] - s2[0]).abs() < 1e-3, "{s1:?} vs {s2:?}");
    assert_eq!(one == "[1]", two == "[2]", "{one} then {two}");
    // A model shared by several users in flight (`bench lamp --jobs N`)
    // scores the same, between the steps of its batch.
    let shared = persona_engine::SharedModel::spawn(tiny(), 2).unwrap();
    let mut client = persona_agent::SharedLlm(shared.client());
    let (three, s3) =
        complete_choice_both_orders(&mut client, "Answer with the label only.", &ask(parsing, galaxies), &swapped(ask(galaxies, parsing)), &choices).unwrap();
    assert_eq!((three.as_str(), s3.iter().map(|s| s.to_bits()).collect::<Vec<_>>()), (one.as_str(), s1.iter().map(|s| s.to_bits()).collect::<Vec<_>>()));

    // The agent's answer turn in both orders scores instead of decoding.
    let dir = tempfile::tempdir().unwrap();
    let Fixture { encoder, mut memory, wiki, mut model, persona } = fixture(dir.path());
    let config = AgentConfig { choices: Some(choices.clone()), answer_when_done: true, answer_turn: true, ..AgentConfig::default() };
    let re = swapped(ask(galaxies, parsing));
    let question = ask(parsing, galaxies);
    let mut tools = standard_tools(&mut memory, &encoder, Some(&wiki), "ann", &ToolConfig::default(), &[]).unwrap();
    let trace =
        run_agents(&mut model, &persona, &mut tools, &[Question { text: &question, hidden_records: &[], reordered: Some(&re), options: None }], &config)
            .unwrap()
            .pop()
            .unwrap();
    assert!(choices.labels().contains(&trace.answer), "{:?}\n{}", trace.answer, trace.render());
    let last = trace.steps.last().unwrap();
    let scores = last.arguments["scores"].as_array().expect("the answer turn's scores");
    assert_eq!(scores.len(), 2, "{}", trace.render());
    assert!(last.error.is_none() && last.tool.is_none(), "{}", trace.render());
}

#[test]
fn the_memory_tells_which_option_is_closest_to_the_user_s_records() {
    use persona_agent::tools::{CallContext, Evidence, MemorySearch, Tool};
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let mut memory = Memory::open(dir.path()).unwrap();
    memory.import("ann", &history(), &encoder, 16, &mut |_, _| {}).unwrap();
    let user = memory.store().require_user("ann").unwrap();
    let ids: Vec<i64> = memory.store().records(&user).unwrap().iter().map(|r| r.id).collect();
    let mut tool = MemorySearch::new(&mut memory, &encoder, "ann", 4, 300);
    let options = ["A documentary about tax law reform".to_string(), "A spaceship crew travels to a distant planet".to_string()];
    let scores = tool.closeness(Evidence::Options(&options), &CallContext::default()).unwrap().unwrap();
    assert_eq!(scores.len(), 2);
    assert!(scores[1] > scores[0], "the space film is closer to a sci-fi fan's records: {scores:?}");
    assert!(scores.iter().all(|s| (-1.0..=1.0).contains(s)));
    // Records the question must not see are not compared with.
    // Only the food-truck romance left:
    let all_but_romance: Vec<i64> = ids.iter().copied().filter(|&id| id != ids[1]).collect();
    let hidden = tool.closeness(Evidence::Options(&options), &CallContext { hidden_records: &all_but_romance }).unwrap().unwrap();
    assert!(hidden[1] < scores[1], "with the space films hidden the space option is farther: {hidden:?} vs {scores:?}");
    assert_eq!(tool.closeness(Evidence::Options(&options), &CallContext { hidden_records: &ids }).unwrap(), None, "nothing left to compare with");
    // Labels: the four records nearest to a space film vote with their
    // similarity; most are the user's sci-fi films.
    let labels: Vec<String> = TAGS.split(", ").map(str::to_string).collect();
    let query = format!("Which tag fits this movie ({TAGS})? A starship crew lands on an alien moon.");
    let votes = tool.closeness(Evidence::Labels { query: &query, labels: &labels }, &CallContext::default()).unwrap().unwrap();
    assert_eq!(votes.len(), labels.len());
    assert_eq!(persona_agent::orders::best(&votes), Some(0), "sci-fi: {votes:?}");
    assert!(votes.iter().filter(|v| **v > 0.0).count() <= 4, "only the four nearest records vote: {votes:?}");
    assert_eq!(tool.closeness(Evidence::Labels { query: &query, labels: &labels }, &CallContext { hidden_records: &ids }).unwrap(), None);
}
