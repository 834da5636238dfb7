//! Real-model tests of the prefix cache (shared prefixes are prefilled once,
//! outputs do not change, scopes never share state, the byte budget holds)
//! and of batched generation (the same tokens as one-by-one calls), on the
//! tiny (Llama) and the small (Qwen2) model; and of the shared model
//! (callers on several threads decoded in one batch get what the model alone
//! gives, constraints travel with their sequence, bad requests fail alone).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_engine::{ChatMessage, ChatModel, Device, GenerationParams, GgufChatModel, SamplingParams};

fn load(name: &str) -> GgufChatModel {
    GgufChatModel::load(persona_testkit::model_path(name), &Device::Cpu).unwrap()
}

const PERSONA: &str = "You are the assistant of a reader who follows technology and science news closely, \
prefers short factual answers, dislikes celebrity gossip, and often asks about space exploration, \
renewable energy and programming languages. Answer in one sentence.";

fn prompt(model: &GgufChatModel, system: &str, user: &str) -> Vec<u32> {
    let text = model.render_chat(&[ChatMessage::system(system), ChatMessage::user(user)]).unwrap();
    model.encode_prompt(&text).unwrap()
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams { max_tokens, ..Default::default() }
}

fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn check_prefix_reuse(name: &str) {
    check_prefix_reuse_with(name, &|| load(name));
}

/// Prefix reuse of the models `load` makes (`name` for messages).
pub(crate) fn check_prefix_reuse_with(name: &str, load: &dyn Fn() -> GgufChatModel) {
    let mut warm = load();
    let mut cold = load();
    cold.set_prefix_cache_budget(0);
    let params = greedy(16);
    let first = prompt(&warm, PERSONA, "What is a rocket's escape velocity?");
    let second = prompt(&warm, PERSONA, "Which programming language is best for embedded systems?");
    let unrelated = prompt(&warm, "You are a poet.", "Write a line about autumn.");
    let shared = shared_prefix(&first, &second);
    assert!(shared > 40, "the two prompts share the persona ({shared} tokens)");

    warm.set_cache_scope("alice");
    assert_eq!(warm.generate_tokens(first.clone(), &params, None, &mut |_| true).unwrap().cached_tokens, 0);
    // Another call in between replaces the working cache; the prefix cache still has the persona.
    warm.generate_tokens(unrelated, &params, None, &mut |_| true).unwrap();
    let reused = warm.generate_tokens(second.clone(), &params, None, &mut |_| true).unwrap();
    assert_eq!(reused.cached_tokens, shared, "{name}: the shared prefix came from the prefix cache");

    cold.set_cache_scope("alice");
    let second_len = second.len();
    let fresh = cold.generate_tokens(second, &params, None, &mut |_| true).unwrap();
    assert_eq!(fresh.cached_tokens, 0);
    assert_eq!(reused.tokens, fresh.tokens, "{name}: reusing a prefix changed the output: {:?} vs {:?}", reused.text, fresh.text);
    // Only the tokens after the shared prefix were prefilled.
    assert_eq!((reused.prompt_tokens, fresh.prompt_tokens), (second_len, second_len));
    assert_eq!(reused.prompt_tokens - reused.cached_tokens, second_len - shared, "{name}: prefilled more than the unshared tail");
}

#[test]
fn a_shared_prefix_is_prefilled_once_and_the_output_is_unchanged_tiny() {
    check_prefix_reuse("tiny");
}

#[test]
fn a_shared_prefix_is_prefilled_once_and_the_output_is_unchanged_small() {
    check_prefix_reuse("small");
}

#[test]
fn cached_prefixes_never_serve_another_user() {
    let mut model = load("tiny");
    let params = greedy(4);
    let p = prompt(&model, PERSONA, "What is a rocket's escape velocity?");
    model.set_cache_scope("alice");
    let alice = model.generate_tokens(p.clone(), &params, None, &mut |_| true).unwrap();
    assert_eq!(alice.cached_tokens, 0);
    model.set_cache_scope("bob");
    let bob = model.generate_tokens(p.clone(), &params, None, &mut |_| true).unwrap();
    assert_eq!(bob.cached_tokens, 0, "bob's call must not reuse alice's state");
    let bob_batch = model.generate_batch(vec![p.clone()], &params).unwrap();
    assert_eq!(bob_batch[0].cached_tokens, p.len() - 1, "bob's own state is reused");
    model.set_cache_scope("carol");
    assert_eq!(model.generate_batch(vec![p.clone()], &params).unwrap()[0].cached_tokens, 0, "batches keep to their scope too");
    model.set_cache_scope("alice");
    assert_eq!(model.generate_tokens(p.clone(), &params, None, &mut |_| true).unwrap().cached_tokens, p.len() - 1, "alice's own state is kept");
    model.clear_caches();
    assert_eq!(model.generate_tokens(p, &params, None, &mut |_| true).unwrap().cached_tokens, 0);
}

#[test]
fn the_prefix_cache_stays_within_its_byte_budget() {
    let mut model = load("tiny");
    let params = greedy(2);
    let questions = ["Name a planet.", "Name a metal.", "Name a river.", "Name a poet.", "Name a bird.", "Name a tree."];
    let one = prompt(&model, PERSONA, questions[0]).len() + 2;
    let stats = model.prefix_cache_stats().expect("the tiny model runs on the own decoder");
    assert!(stats.budget > 0 && stats.entries == 0);
    // Room for about two conversations.
    let per_position = {
        model.generate_tokens(prompt(&model, "x", "y"), &params, None, &mut |_| true).unwrap();
        let s = model.prefix_cache_stats().unwrap();
        s.bytes / s.entries.max(1) / model.cached_tokens().len()
    };
    let budget = per_position * one * 5 / 2;
    model.clear_caches();
    model.set_prefix_cache_budget(budget);
    for (i, q) in questions.iter().enumerate() {
        model.set_cache_scope(&format!("user{i}"));
        model.generate_tokens(prompt(&model, PERSONA, q), &params, None, &mut |_| true).unwrap();
        let s = model.prefix_cache_stats().unwrap();
        assert!(s.bytes <= budget, "{} bytes held over a budget of {budget}", s.bytes);
        assert!(s.entries >= 1 && s.entries <= 2, "{} entries", s.entries);
    }
    // The most recent user's prefix is still there, the first one's is gone.
    model.set_cache_scope("user5");
    let p = prompt(&model, PERSONA, questions[5]);
    assert_eq!(model.generate_batch(vec![p.clone()], &params).unwrap()[0].cached_tokens, p.len() - 1);
    model.set_cache_scope("user0");
    let p = prompt(&model, PERSONA, questions[0]);
    assert_eq!(model.generate_batch(vec![p], &params).unwrap()[0].cached_tokens, 0);
}

fn check_batch(name: &str, sampled_too: bool) {
    check_batch_with(name, &mut load(name), sampled_too);
}

/// Batched against one-by-one generation on `model` (`name` for messages).
pub(crate) fn check_batch_with(name: &str, model: &mut GgufChatModel, sampled_too: bool) {
    let questions = ["What is the capital of France?", "Give me one tip for learning Rust.", "Why is the sky blue? Explain briefly.", "Name two noble gases."];
    let prompts: Vec<Vec<u32>> = questions.iter().map(|q| prompt(model, PERSONA, q)).collect();
    let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    assert!(lengths.windows(2).any(|w| w[0] != w[1]), "prompts of different lengths: {lengths:?}");
    let mut cases = vec![GenerationParams { max_tokens: 24, stop: vec!["\n\n".into()], ..Default::default() }];
    if sampled_too {
        cases.push(GenerationParams { max_tokens: 16, sampling: SamplingParams { temperature: 0.8, seed: 7, ..Default::default() }, ..Default::default() });
    }
    for params in cases {
        model.clear_caches();
        let one_by_one: Vec<_> = prompts
            .iter()
            .map(|p| {
                model.clear_caches();
                model.generate_tokens(p.clone(), &params, None, &mut |_| true).unwrap()
            })
            .collect();
        model.clear_caches();
        let batched = model.generate_batch(prompts.clone(), &params).unwrap();
        assert_eq!(batched.len(), prompts.len());
        for (i, (a, b)) in one_by_one.iter().zip(&batched).enumerate() {
            assert_eq!(a.tokens, b.tokens, "{name}, prompt {i}: {:?} vs {:?}", a.text, b.text);
            // The persona is prefilled once, by the first prompt; the others copy it.
            let shared = prompts[..i].iter().map(|p| shared_prefix(p, &prompts[i])).max().unwrap_or(0);
            assert_eq!(b.cached_tokens, shared, "{name}, prompt {i}: tokens taken from another sequence of the batch");
            assert_eq!(a.text, b.text);
            assert_eq!(a.finish_reason, b.finish_reason);
            assert_eq!(b.prompt_tokens, lengths[i]);
        }
        assert!(batched.iter().any(|g| g.completion_tokens > 4), "{name}: something was generated");
    }
}

#[test]
fn batched_decoding_gives_the_same_tokens_as_one_by_one_tiny() {
    // The tiny model's matrices are all Q8_0 after repacking, computed by
    // the same kernel for one row or many: even sampled draws agree.
    check_batch("tiny", true);
}

#[test]
fn batched_decoding_gives_the_same_tokens_as_one_by_one_small() {
    // candle multiplies Q6_K matrices with a tiled kernel when several rows
    // run together (same math, another summation order), so logits can
    // differ in the last bits: greedy tokens agree, a sampled draw that
    // lands on a boundary may not.
    check_batch("small", false);
}

#[test]
fn a_bad_batch_is_a_clear_error() {
    let mut model = load("tiny");
    let err = model.generate_batch(vec![vec![1, 2], vec![]], &greedy(4)).unwrap_err().to_string();
    assert!(err.contains("prompt 1 of the batch is empty"), "{err}");
    let err = model.generate_batch(vec![vec![1, 2]], &greedy(0)).unwrap_err().to_string();
    assert!(err.contains("max_tokens"), "{err}");
    assert!(model.generate_batch(Vec::new(), &greedy(4)).unwrap().is_empty());
}

#[test]
fn sequences_join_a_running_batch_and_leave_it() {
    use persona_engine::{Batch, SeqEvent, SeqRequest};
    let mut model = load("tiny");
    let params = GenerationParams { max_tokens: 20, stop: vec!["\n\n".into()], ..Default::default() };
    let prompts = [prompt(&model, PERSONA, "Name two noble gases."), prompt(&model, PERSONA, "What is the capital of France?")];
    let one_by_one: Vec<_> = prompts
        .iter()
        .map(|p| {
            model.clear_caches();
            model.generate_tokens(p.clone(), &params, None, &mut |_| true).unwrap()
        })
        .collect();
    model.clear_caches();
    let request = |p: &Vec<u32>, scope: &str| SeqRequest { prompt: p.clone(), params: params.clone(), constraint: None, scope: scope.into() };
    // Longer than one prefill chunk (512 tokens): two steps to start.
    let long = prompt(&model, &PERSONA.repeat(14), "Say hi.");
    assert!(long.len() > 512, "{}", long.len());

    let mut batch = Batch::new();
    let mut events = Vec::new();
    let a = model.join(&mut batch, request(&prompts[0], "alice")).unwrap();
    for _ in 0..3 {
        model.step(&mut batch, &mut events).unwrap();
    }
    assert!(batch.started(a));
    let b = model.join(&mut batch, request(&prompts[1], "bob")).unwrap();
    let c = model.join(&mut batch, request(&long, "carol")).unwrap();
    model.step(&mut batch, &mut events).unwrap();
    assert!(batch.started(b) && !batch.started(c), "the long prompt is still being prefilled");
    assert!(batch.cancel(c), "a sequence is dropped in the middle of its prompt");
    assert!(!batch.contains(c) && !batch.cancel(c));
    while !batch.is_empty() {
        model.step(&mut batch, &mut events).unwrap();
    }
    for (id, want) in [(a, &one_by_one[0]), (b, &one_by_one[1])] {
        let streamed: String = events
            .iter()
            .filter_map(|e| match e {
                SeqEvent::Text { id: i, text } if *i == id => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let done: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SeqEvent::Done { id: i, generation } if *i == id => Some(generation),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 1, "one Done per sequence");
        assert_eq!(done[0].tokens, want.tokens, "joining a running batch changed the output: {:?} vs {:?}", done[0].text, want.text);
        assert_eq!(streamed, want.text, "the streamed pieces make the text");
        assert_eq!(done[0].finish_reason, want.finish_reason);
    }
    assert!(events.iter().all(|e| !matches!(e, SeqEvent::Done { id, .. } | SeqEvent::Text { id, .. } if *id == c)), "a cancelled sequence reports nothing");

    // Each sequence keeps to its own scope in the prefix cache.
    let shared = shared_prefix(&prompts[0], &prompts[1]);
    for (scope, cached) in [("dave", 0), ("bob", shared), ("alice", prompts[0].len() - 1)] {
        let mut batch = Batch::new();
        model.join(&mut batch, request(&prompts[0], scope)).unwrap();
        let mut events = Vec::new();
        while !batch.is_empty() {
            model.step(&mut batch, &mut events).unwrap();
        }
        let Some(SeqEvent::Done { generation, .. }) = events.last() else { panic!("no result: {events:?}") };
        assert_eq!(generation.cached_tokens, cached, "scope {scope}");
    }
}

#[test]
fn sequences_of_a_batch_prefill_a_shared_prefix_once() {
    use persona_engine::{Batch, Generation, SeqEvent, SeqRequest};
    let mut model = load("tiny");
    let params = GenerationParams { max_tokens: 12, stop: vec!["\n\n".into()], ..Default::default() };
    // A system prompt longer than one prefill chunk (512 tokens): the first
    // sequence needs two steps to feed it, the others wait for it.
    let system = PERSONA.repeat(14);
    let prompts =
        [prompt(&model, &system, "Name two noble gases."), prompt(&model, &system, "What is the capital of France?"), prompt(&model, &system, "Say hi.")];
    let shared = shared_prefix(&prompts[0], &prompts[1]);
    assert!(shared > 512, "{shared}");
    let one_by_one: Vec<Generation> = prompts
        .iter()
        .map(|p| {
            model.clear_caches();
            model.generate_tokens(p.clone(), &params, None, &mut |_| true).unwrap()
        })
        .collect();
    let request = |p: &Vec<u32>, scope: &str| SeqRequest { prompt: p.clone(), params: params.clone(), constraint: None, scope: scope.into() };
    let run = |model: &mut GgufChatModel, batch: &mut Batch<'_>, events: &mut Vec<SeqEvent>| {
        while !batch.is_empty() {
            model.step(batch, events).unwrap();
        }
    };
    let done = |events: &[SeqEvent], id| {
        events
            .iter()
            .find_map(|e| match e {
                SeqEvent::Done { id: i, generation } if *i == id => Some(generation.clone()),
                _ => None,
            })
            .expect("a result")
    };

    // Joined together: the second waits for the first, then copies; another
    // scope never shares (a user's prompt state never serves another user).
    model.clear_caches();
    let mut batch = Batch::new();
    let mut events = Vec::new();
    let a = model.join(&mut batch, request(&prompts[0], "alice")).unwrap();
    let b = model.join(&mut batch, request(&prompts[1], "alice")).unwrap();
    let c = model.join(&mut batch, request(&prompts[1], "bob")).unwrap();
    run(&mut model, &mut batch, &mut events);
    let (ga, gb, gc) = (done(&events, a), done(&events, b), done(&events, c));
    assert_eq!((ga.cached_tokens, gb.cached_tokens, gc.cached_tokens), (0, shared, 0));
    for (g, want) in [(&ga, &one_by_one[0]), (&gb, &one_by_one[1]), (&gc, &one_by_one[1])] {
        assert_eq!(g.tokens, want.tokens, "a copied prefix changed the output: {:?} vs {:?}", g.text, want.text);
    }

    // A sequence joining once the other has fed the prefix copies it at once.
    model.clear_caches();
    let mut batch = Batch::new();
    let mut events = Vec::new();
    let a = model.join(&mut batch, request(&prompts[0], "alice")).unwrap();
    while !batch.started(a) {
        model.step(&mut batch, &mut events).unwrap();
    }
    let d = model.join(&mut batch, request(&prompts[2], "alice")).unwrap();
    model.step(&mut batch, &mut events).unwrap();
    assert!(batch.started(d) || !batch.contains(d), "the copied prefix left one step of prompt to feed");
    run(&mut model, &mut batch, &mut events);
    let gd = done(&events, d);
    assert_eq!(gd.cached_tokens, shared_prefix(&prompts[0], &prompts[2]));
    assert_eq!(gd.tokens, one_by_one[2].tokens, "{:?} vs {:?}", gd.text, one_by_one[2].text);

    // The sequence it waits for is cancelled half-way: it feeds the prompt itself.
    model.clear_caches();
    let mut batch = Batch::new();
    let mut events = Vec::new();
    let a = model.join(&mut batch, request(&prompts[0], "alice")).unwrap();
    let b = model.join(&mut batch, request(&prompts[1], "alice")).unwrap();
    model.step(&mut batch, &mut events).unwrap();
    assert!(!batch.started(a) && !batch.started(b), "the first chunk of the shared prompt is fed");
    assert!(batch.cancel(a));
    run(&mut model, &mut batch, &mut events);
    let gb = done(&events, b);
    assert_eq!(gb.cached_tokens, 0);
    assert_eq!(gb.tokens, one_by_one[1].tokens, "{:?} vs {:?}", gb.text, one_by_one[1].text);
}

/// The shared model (its own thread, clients on several threads).
mod shared_model {
    use super::load;
    use persona_engine::{ChatMessage, ChatModel, ContextPolicy, EngineError, GenerationParams, GrammarConstraint, JsonGrammar, SharedModel, TokenConstraint};

    const QUESTIONS: [&str; 4] = ["Name a planet.", "What is rust made of?", "Say hello in French.", "Count to five."];

    #[test]
    fn threads_sharing_a_model_get_what_the_model_alone_gives() {
        let mut alone = load("tiny");
        let params = GenerationParams { max_tokens: 24, ..Default::default() };
        let prompts: Vec<Vec<u32>> = QUESTIONS
            .iter()
            .map(|q| {
                let text = alone.render_chat(&[ChatMessage::system("You answer briefly."), ChatMessage::user(*q)]).unwrap();
                alone.encode_prompt(&text).unwrap()
            })
            .collect();
        let expected = alone.generate_batch(prompts.clone(), &params).unwrap();

        let shared = SharedModel::spawn(load("tiny"), 8).unwrap();
        let client = shared.client();
        // The client builds the same prompts on its own thread.
        let text = client.render_chat(&[ChatMessage::system("You answer briefly."), ChatMessage::user(QUESTIONS[0])]).unwrap();
        assert_eq!(client.encode_prompt(&text).unwrap(), prompts[0]);
        let got: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut client = shared.client();
                    client.set_scope(&format!("user-{i}"));
                    let params = params.clone();
                    s.spawn(move || client.generate(p.clone(), &params, None).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.tokens, e.tokens, "question {i}: {:?} vs {:?}", g.text, e.text);
            assert_eq!(g.text, e.text);
            assert!(g.completion_tokens > 0);
        }
        // Several prompts of one client, in order.
        let many = client.generate_many(prompts.iter().map(|p| (p.clone(), None)).collect(), &params).unwrap();
        assert_eq!(many.iter().map(|g| &g.tokens).collect::<Vec<_>>(), expected.iter().map(|g| &g.tokens).collect::<Vec<_>>());
        // A client in a scope that ran the prompt before reuses its prefix.
        let mut again = shared.client();
        again.set_scope("user-0");
        let repeat = again.generate(prompts[0].clone(), &params, None).unwrap();
        assert_eq!(repeat.tokens, expected[0].tokens);
        assert!(repeat.cached_tokens > 0, "the prefix cache serves the scope's repeated prompt");
    }

    #[test]
    fn a_constraint_travels_with_its_sequence_and_a_bad_request_fails_alone() {
        let mut alone = load("tiny");
        let text = alone.render_chat(&[ChatMessage::user("Describe a cat as JSON.")]).unwrap();
        let prompt = alone.encode_prompt(&text).unwrap();
        let params = GenerationParams { max_tokens: 40, ..Default::default() };
        let mut json = GrammarConstraint::new(JsonGrammar::object(), alone.tokenizer().token_bytes());
        let expected = alone.generate_tokens(prompt.clone(), &params, Some(&mut json), &mut |_| true).unwrap();
        assert!(expected.text.trim_start().starts_with('{'), "{:?}", expected.text);

        let shared = SharedModel::spawn(load("tiny"), 2).unwrap();
        let client = shared.client();
        let json = GrammarConstraint::new(JsonGrammar::object(), client.tokenizer().token_bytes());
        let results = client.generate_many(vec![(prompt.clone(), Some(Box::new(json))), (Vec::new(), None), (prompt.clone(), None)], &params);
        // The empty prompt is refused; its error is the call's.
        let err = results.unwrap_err().to_string();
        assert!(err.contains("prompt"), "{err}");
        // The model still serves, and the constraint decides the tokens as it
        // does on the model alone.
        let json = GrammarConstraint::new(JsonGrammar::object(), client.tokenizer().token_bytes());
        let g = client.generate(prompt, &params, Some(Box::new(json))).unwrap();
        assert_eq!(g.tokens, expected.tokens, "{:?} vs {:?}", g.text, expected.text);
        let zero = client.generate(vec![1, 2, 3], &GenerationParams { max_tokens: 0, ..Default::default() }, None).unwrap_err().to_string();
        assert!(zero.contains("max_tokens"), "{zero}");
        drop(client);
        shared.join().unwrap();
    }

    #[test]
    fn scores_through_a_shared_model_are_the_model_s_own_while_a_batch_runs() {
        let mut alone = load("tiny");
        let text = alone.render_chat(&[ChatMessage::system("Answer with one word."), ChatMessage::user(QUESTIONS[0])]).unwrap();
        let prompt = alone.encode_prompt(&text).unwrap();
        let continuations: Vec<Vec<u32>> = ["yes", "no", "maybe so"].iter().map(|c| alone.tokenizer().encode(c, false).unwrap()).collect();
        let expected = alone.score_continuations(prompt.clone(), &continuations, ContextPolicy::TruncateStart).unwrap();
        assert!(expected.iter().all(|s| s.is_finite() && *s < 0.0), "{expected:?}");
        let params = GenerationParams { max_tokens: 24, ignore_eos: true, ..Default::default() };
        let generated = alone.generate_tokens(prompt.clone(), &params, None, &mut |_| true).unwrap();

        let shared = SharedModel::spawn(load("tiny"), 4).unwrap();
        let (scores, generation) = std::thread::scope(|s| {
            // A generation in the batch while another client scores.
            let running = s.spawn(|| shared.client().generate(prompt.clone(), &params, None));
            let mut client = shared.client();
            client.set_scope("user-7");
            let scores: Vec<Vec<f32>> =
                (0..3).map(|_| client.score_continuations(prompt.clone(), continuations.clone(), ContextPolicy::TruncateStart).unwrap()).collect();
            (scores, running.join().unwrap().unwrap())
        });
        for got in &scores {
            assert_eq!(
                got.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
                "{got:?} vs {expected:?}"
            );
        }
        assert_eq!(generation.tokens, generated.tokens, "the batch's sequence is untouched by the scoring");
        let err = shared.client().score_continuations(prompt, vec![Vec::new()], ContextPolicy::TruncateStart).unwrap_err().to_string();
        assert!(err.contains("continuation 0"), "{err}");
    }

    #[test]
    fn parallel_must_be_positive() {
        let err = SharedModel::spawn(load("tiny"), 0).unwrap_err().to_string();
        assert!(err.contains("parallel"), "{err}");
    }

    /// A constraint that allows everything for `left` tokens, then fails.
    struct FailsAfter {
        left: usize,
    }

    impl TokenConstraint for FailsAfter {
        fn mask_logits(&mut self, _logits: &mut [f32]) -> persona_engine::Result<()> {
            if self.left == 0 {
                return Err(EngineError::Constraint("no token may follow (test)".into()));
            }
            self.left -= 1;
            Ok(())
        }
        fn accept_token(&mut self, _token: u32) -> persona_engine::Result<()> {
            Ok(())
        }
        fn accept_text(&mut self, _text: &str) -> persona_engine::Result<()> {
            Ok(())
        }
        fn is_complete(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_sequence_whose_constraint_fails_leaves_alone_and_the_others_go_on() {
        let mut alone = load("tiny");
        let text = alone.render_chat(&[ChatMessage::user(QUESTIONS[1])]).unwrap();
        let prompt = alone.encode_prompt(&text).unwrap();
        let params = GenerationParams { max_tokens: 20, ignore_eos: true, ..Default::default() };
        let expected = alone.generate_tokens(prompt.clone(), &params, None, &mut |_| true).unwrap();

        let shared = SharedModel::spawn(load("tiny"), 4).unwrap();
        let (failed, fine) = std::thread::scope(|s| {
            let failing = s.spawn(|| shared.client().generate(prompt.clone(), &params, Some(Box::new(FailsAfter { left: 3 }))));
            let fine = s.spawn(|| shared.client().generate(prompt.clone(), &params, None));
            (failing.join().unwrap(), fine.join().unwrap())
        });
        let err = failed.unwrap_err().to_string();
        assert!(err.contains("no token may follow (test)"), "{err}");
        let fine = fine.unwrap();
        assert_eq!(fine.tokens, expected.tokens, "the other sequence is untouched");
        assert_eq!(fine.completion_tokens, 20);
    }
}
