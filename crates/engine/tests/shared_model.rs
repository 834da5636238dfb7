//! Real-model tests of the shared model: callers on several threads have
//! their sequences decoded in one batch and get what the model alone gives,
//! constraints travel with their sequence, bad requests fail alone, and the
//! model's thread ends with its last client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_engine::{ChatMessage, ChatModel, Device, EngineError, GenerationParams, GgufChatModel, GrammarConstraint, JsonGrammar, Manifest, ModelStore, SharedModel, TokenConstraint};

fn load(name: &str) -> GgufChatModel {
    let manifest = Manifest::builtin().unwrap();
    let path = ModelStore::from_env()
        .require(manifest.get(name).unwrap())
        .unwrap_or_else(|e| panic!("model `{name}` is needed by these tests: {e}. Run `persona models fetch` (or .ci/run) first."));
    GgufChatModel::load(path, &Device::Cpu).unwrap()
}

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
